/**
 * systemd/licd-firstboot, the script licd-firstboot.service runs at a box's first boot, run here
 * against temporary roots (ROOT=): every box gets its own secrets, with the owners and modes
 * mosquitto and licd need; a second run changes nothing; a run cut short is finished by the next;
 * and a real mosquitto, with the shipped config, takes the passwords it made.
 */
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { tempDir } from '../helpers/daemon.ts';
import { mosquittoBinaries, renderConfig, SHIPPED } from '../helpers/mosquitto.ts';

const SCRIPT = fileURLToPath(new URL('../../systemd/licd-firstboot', import.meta.url));
// Group numbers of the target root (deliberately not the host's: the script must read ROOT/etc/group).
const LICD_GID = 4711;
const MOSQUITTO_GID = 4712;

function newRoot(host: string): string {
  const root = tempDir('licd-firstboot-');
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc/group'), `root:x:0:\nlicd:x:${LICD_GID}:\nmosquitto:x:${MOSQUITTO_GID}:\n`);
  writeFileSync(join(root, 'etc/hostname'), `${host}\n`);
  return root;
}

function firstboot(root: string, ...args: string[]) {
  const r = spawnSync(SCRIPT, args, { encoding: 'utf8', env: { ...process.env, ROOT: root, MOSQUITTO_PASSWD: mosquittoBinaries().passwd } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const SECRET_FILES = [
  'etc/licd/admin.password',
  'etc/licd/mqtt.password',
  'etc/mosquitto/licd.passwd',
  'etc/mosquitto/licd-plain.passwd',
  'etc/licd/tls/key.pem',
  'etc/licd/tls/cert.pem',
  'etc/licd/label.txt',
  'etc/issue.d/licd.issue',
];

function snapshot(root: string): Record<string, string> {
  return Object.fromEntries(SECRET_FILES.map((f) => [f, readFileSync(join(root, f), 'utf8')]));
}
const line = (root: string, f: string) => readFileSync(join(root, f), 'utf8').trim();
const fingerprint = (root: string) =>
  `SHA256:${new X509Certificate(readFileSync(join(root, 'etc/licd/tls/cert.pem'))).fingerprint256}`;

test('two boxes get different secrets, with the owners and modes mosquitto and licd need; a second run changes nothing', (t) => {
  const a = newRoot('box-a');
  const b = newRoot('box-b');
  t.teardown(() => {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  });
  for (const root of [a, b]) {
    const r = firstboot(root);
    t.is(r.status, 0, r.out);
    t.regex(r.out, /done: per-box secrets made/);
  }

  // No secret is shared.
  const sa = snapshot(a);
  const sb = snapshot(b);
  for (const f of SECRET_FILES) t.not(sa[f], sb[f], `${f} differs between the two boxes`);
  t.not(fingerprint(a), fingerprint(b));

  for (const root of [a, b]) {
    // The admin password: typed by a person from a label or the console.
    const admin = line(root, 'etc/licd/admin.password');
    t.regex(admin, /^[A-HJKMNP-Z2-9]{4}(-[A-HJKMNP-Z2-9]{4}){3}$/);
    const licd = line(root, 'etc/licd/mqtt.password');
    t.regex(licd, /^[A-Za-z0-9_-]{24}$/);
    // mosquitto's files are hashed: no plain password in them; the plain listener's has licd only.
    const hashed = line(root, 'etc/mosquitto/licd.passwd');
    t.false(hashed.includes(admin) || hashed.includes(licd));
    t.deepEqual(hashed.split('\n').map((l) => l.split(':')[0]), ['licd', 'admin']);
    t.regex(hashed, /^admin:\$7\$/m);
    t.deepEqual(line(root, 'etc/mosquitto/licd-plain.passwd').split('\n'), hashed.split('\n').filter((l) => l.startsWith('licd:')));

    const owner = (f: string) => {
      const s = statSync(join(root, f));
      return { uid: s.uid, gid: s.gid, mode: (s.mode & 0o7777).toString(8) };
    };
    t.deepEqual(owner('etc/licd/admin.password'), { uid: 0, gid: 0, mode: '600' });
    t.deepEqual(owner('etc/licd/mqtt.password'), { uid: 0, gid: LICD_GID, mode: '640' });
    t.deepEqual(owner('etc/mosquitto/licd.passwd'), { uid: 0, gid: MOSQUITTO_GID, mode: '640' });
    t.deepEqual(owner('etc/mosquitto/licd-plain.passwd'), { uid: 0, gid: MOSQUITTO_GID, mode: '640' });
    t.deepEqual(owner('etc/licd/tls/key.pem'), { uid: 0, gid: MOSQUITTO_GID, mode: '640' });
    t.like(owner('etc/licd/tls/cert.pem'), { uid: 0, mode: '644' });
    t.deepEqual(owner('etc/licd/label.txt'), { uid: 0, gid: 0, mode: '600' });
    t.deepEqual(owner('etc/issue.d/licd.issue'), { uid: 0, gid: 0, mode: '600' });
    // No temporary file is left behind.
    for (const d of ['etc/licd', 'etc/mosquitto', 'etc/issue.d', 'etc/licd/tls']) {
      t.deepEqual(readdirSync(join(root, d)).filter((f) => f.endsWith('.new')), [], d);
    }

    // The console banner and the label line show this box's admin password and certificate.
    const banner = line(root, 'etc/issue.d/licd.issue');
    t.true(banner.includes(`admin password: ${admin}`), banner);
    t.true(banner.includes(fingerprint(root)), banner);
    t.true(banner.includes('\\4'), 'the banner shows the address (agetty expands \\4)');
    const label = firstboot(root, '--label');
    t.is(label.status, 0);
    t.is(label.out.trim(), line(root, 'etc/licd/label.txt'));
    t.true(label.out.includes(admin) && label.out.includes(fingerprint(root).slice(0, 30)), label.out);
  }
  t.true(line(a, 'etc/licd/label.txt').startsWith('licd box-a |'));

  // A second run leaves everything as it was.
  const again = firstboot(a);
  t.is(again.status, 0, again.out);
  t.regex(again.out, /already done/);
  t.deepEqual(snapshot(a), sa);
});

test('a first boot cut short is finished by the next one, keeping what was made', (t) => {
  const root = newRoot('box-c');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  t.is(firstboot(root).status, 0);
  const made = snapshot(root);
  // As if the power went off before the end: the marker and the mosquitto files are gone.
  unlinkSync(join(root, 'etc/licd/firstboot.done'));
  unlinkSync(join(root, 'etc/mosquitto/licd.passwd'));
  writeFileSync(join(root, 'etc/mosquitto/licd-plain.passwd.new'), 'half');
  const r = firstboot(root);
  t.is(r.status, 0, r.out);
  t.notRegex(r.out, /made the admin password|made licd's broker password/);
  const now = snapshot(root);
  for (const f of ['etc/licd/admin.password', 'etc/licd/mqtt.password', 'etc/licd/tls/key.pem', 'etc/licd/tls/cert.pem', 'etc/licd/label.txt', 'etc/issue.d/licd.issue']) {
    t.is(now[f], made[f], `${f} kept`);
  }
  t.regex(now['etc/mosquitto/licd.passwd']!, /^licd:\$7\$.*\nadmin:\$7\$/s);
  t.deepEqual(readdirSync(join(root, 'etc/mosquitto')).sort(), ['licd-plain.passwd', 'licd.passwd']);
});

test('a root without the licd group is refused with the cause', (t) => {
  const root = newRoot('box-d');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, 'etc/group'), `root:x:0:\nmosquitto:x:${MOSQUITTO_GID}:\n`);
  const r = firstboot(root);
  t.not(r.status, 0);
  t.regex(r.out, /group licd is not in .*etc\/group \(systemd-sysusers makes licd/);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function login(url: string, username: string, password: string, ca?: Buffer): Promise<string> {
  try {
    const c = await mqtt.connectAsync(url, { username, password, reconnectPeriod: 0, connectTimeout: 5000, ...(ca ? { ca, servername: 'localhost' } : {}) });
    await c.endAsync();
    return 'accepted';
  } catch (e) {
    return `refused: ${(e as Error).message}`;
  }
}

test('mosquitto, with the shipped config, takes the passwords first boot made: licd on both listeners, admin over TLS only', async (t) => {
  t.timeout(60_000);
  const root = newRoot('box-e');
  const dir = tempDir('licd-firstboot-mosquitto-');
  let child: ChildProcess | undefined;
  t.teardown(() => {
    child?.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  t.is(firstboot(root).status, 0);
  const etc = join(root, 'etc');
  const port = await freePort();
  let tlsPort = await freePort();
  while (tlsPort === port) tlsPort = await freePort();
  const conf = renderConfig(readFileSync(SHIPPED.config, 'utf8'), {
    host: '127.0.0.1',
    port,
    tlsPort,
    passwordFile: join(etc, 'mosquitto/licd.passwd'),
    plainPasswordFile: join(etc, 'mosquitto/licd-plain.passwd'),
    aclFile: SHIPPED.acl,
    certFile: join(etc, 'licd/tls/cert.pem'),
    keyFile: join(etc, 'licd/tls/key.pem'),
    dir,
    isLicdConfig: true,
  });
  writeFileSync(join(dir, 'mosquitto.conf'), `${conf}\nlog_dest stderr\nuser ${userInfo().username}\n`);
  child = spawn(mosquittoBinaries().mosquitto, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const licd = line(root, 'etc/licd/mqtt.password');
  const admin = line(root, 'etc/licd/admin.password');
  const ca = readFileSync(join(etc, 'licd/tls/cert.pem'));
  // Until mosquitto takes connections (generous: the machine is shared).
  const deadline = Date.now() + 30_000;
  let first = '';
  while ((first = await login(`mqtt://127.0.0.1:${port}`, 'licd', licd)) !== 'accepted' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.is(first, 'accepted', log);
  t.is(await login(`mqtts://127.0.0.1:${tlsPort}`, 'licd', licd, ca), 'accepted', log);
  t.is(await login(`mqtts://127.0.0.1:${tlsPort}`, 'admin', admin, ca), 'accepted', log);
  t.regex(await login(`mqtt://127.0.0.1:${port}`, 'admin', admin), /^refused: .*(Not authorized|Bad username or password)/i);
  t.regex(await login(`mqtts://127.0.0.1:${tlsPort}`, 'admin', 'WRONG-PASS-WORD-0000', ca), /^refused/);
  // The certificate mosquitto presents is the one the banner names.
  t.true(readFileSync(join(etc, 'issue.d/licd.issue'), 'utf8').includes(`SHA256:${createHash('sha256').update(new X509Certificate(ca).raw).digest('hex').toUpperCase().match(/../g)!.join(':')}`));
});
