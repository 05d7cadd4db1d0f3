import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, ROOT, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function daemon(dir: string, port = '0') {
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: port });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  return { d, url, vendor };
}

function status(json: string, feature: string) {
  return (JSON.parse(json) as { features: Array<{ feature: string; borrowed: number; free: number; borrows: Array<{ user: string }> }> }).features.find((f) => f.feature === feature)!;
}

test('borrow, work offline with licctl run, come back and return early', async (t) => {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  let { d, url, vendor } = await daemon(dir);
  const env = { LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice' };
  const b = await run(['borrow', '--feature', 'vray_render', '--hours', '24', '--yes'], env);
  t.is(b.code, 0, b.stderr);
  t.regex(b.stdout, /Licenses available offline until/);
  t.regex(b.stdout, /V-Ray Render Node\s+0\s+1\s+0/);
  let s = status((await run(['status', '--json'], env)).stdout, 'vray_render');
  t.is(s.borrowed, 1);
  t.is(s.borrows[0]!.user, 'alice');

  // The appliance goes away: the licensed command still runs.
  d.child.kill('SIGTERM');
  await d.exited;
  const off = await run(['run', 'vray_render', '--', 'sh', '-c', 'echo rendering offline'], env);
  t.is(off.code, 0, off.stderr);
  t.regex(off.stdout, /rendering offline/);
  t.regex(off.stderr, /using borrowed vray_render \(offline token/);
  // Without a borrowed token there is nothing to fall back on.
  const none = await run(['run', 'vray_interface', '--timeout', '2000', '--', 'true'], env);
  t.not(none.code, 0);
  t.regex(none.stderr, /no borrowed license to fall back on/);

  // Back on the network: the seat is still reserved, then returned early and free at once.
  ({ d } = await daemon(dir, url.split(':').pop()!));
  s = status((await run(['status', '--json'], env)).stdout, 'vray_render');
  t.is(s.borrowed, 1);
  const r = await run(['return', 'vray_render'], env);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /returned 1 vray_render/);
  s = status((await run(['status', '--json'], env)).stdout, 'vray_render');
  t.is(s.borrowed, 0);
  t.is(s.free, 4);
  const after = await run(['run', 'vray_render', '--', 'true'], { ...env, LICD_BROKER: 'mqtt://127.0.0.1:1', LICD_HOME: home });
  t.not(after.code, 0, 'a returned token no longer runs offline');
});

test('the interactive wizard through a pseudo-terminal: products, preview, adjust, borrow, summary', async (t) => {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const { url, vendor } = await daemon(dir);
  // socat gives licctl a real pty as its terminal; the answers are typed into it.
  const p = spawn('socat', ['-', `EXEC:${process.execPath} ${join(ROOT, 'bin', 'licctl.mjs')} borrow,pty,setsid,ctty,stderr,echo=0`], {
    env: { ...process.env, LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'bob', LICD_HOST: 'laptop-9' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (x) => (out += x));
  p.stderr.on('data', (x) => (out += x));
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 400 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    if (!re.test(out)) throw new Error(`wizard never showed ${re}:\n${out}`);
  };
  const type = (s: string) => p.stdin.write(s + '\n');
  await waitFor(/how many of V-Ray for Maya at once \[0\]/);
  type('1');
  await waitFor(/how many of V-Ray Render Node at once \[0\]/);
  type('0');
  await waitFor(/how many of Nuke Interactive at once \[0\]/);
  type('0');
  await waitFor(/Step 2\/4/);
  t.regex(out, /V-Ray for Maya\s+1\s+1\s+1\s+0/);
  t.regex(out, /V-Ray Render Node\s+0\s+0\s+0\s+0/);
  type('vray_render_node=1');
  await waitFor(/V-Ray Render Node\s+1\s+0\s+1\s+0/);
  type('');
  await waitFor(/hours to borrow \(at most 336\)/);
  type('12');
  await waitFor(/auto-renew/);
  type('y');
  await waitFor(/borrow 1 V-Ray for Maya, 1 V-Ray Render Node \(1 vray_interface, 2 vray_render\) for 12 h\?/);
  type('y');
  await waitFor(/Step 4\/4: summary/);
  await waitFor(/V-Ray Render Node\s+0\s+1\s+0/);
  // The summary and the line after it are separate writes: wait for the last one.
  await waitFor(/renew when this machine reaches the server/);
  t.regex(out, /V-Ray for Maya\s+1\s+1\s+0/);
  p.stdin.end();
  await new Promise((r) => p.on('exit', r));
  const s = status((await run(['status', '--json'], { LICD_BROKER: url })).stdout, 'vray_render');
  t.is(s.borrowed, 2);
  t.is(s.borrows[0]!.user, 'bob');
});

test('air-gapped: request file, token file made by an admin, import, offline use, return file', async (t) => {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  const files = tempDir('licd-files-');
  t.teardown(() => {
    for (const x of [dir, home, files]) rmSync(x, { recursive: true, force: true });
  });
  const { url, vendor } = await daemon(dir);
  const offline = { LICD_HOME: home, LICD_VENDOR_KEY: vendor, LICD_BROKER: 'mqtt://127.0.0.1:1', LICD_USER: 'carol' };
  const admin = { LICD_BROKER: url, LICD_DATA_DIR: dir, LICD_HOME: tempDir('licd-admin-') };
  const req = join(files, 'req.json');
  const tok = join(files, 'tokens.json');
  const ret = join(files, 'return.json');
  t.is((await run(['borrow', 'request', '--feature', 'nuke_i', '--hours', '48', '--out', req], offline)).code, 0);
  const made = await run(['borrow', '--request', req, '--out', tok], admin);
  t.is(made.code, 0, made.stderr);
  t.regex(made.stdout, /token file written .* for 1 nuke_i \(carol@/);
  const imp = await run(['borrow', 'import', tok], offline);
  t.is(imp.code, 0, imp.stderr);
  const use = await run(['run', 'nuke_i', '--', 'true'], offline);
  t.is(use.code, 0, use.stderr);
  const listed = await run(['borrows'], admin);
  t.regex(listed.stdout, /nuke_i\s+1 carol .* active .*\(by file\)/);
  t.is((await run(['return', '--all', '--out', ret], offline)).code, 0);
  t.not((await run(['run', 'nuke_i', '--', 'true'], offline)).code, 0);
  const back = await run(['return', '--process', ret], admin);
  t.regex(back.stdout, /returned 1 borrow/);
  const s = status((await run(['status', '--json'], admin)).stdout, 'nuke_i');
  t.is(s.borrowed, 0);
});
