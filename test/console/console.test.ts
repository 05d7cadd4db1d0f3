/**
 * The maintenance console (issue 13) through a real pseudo-terminal pair (socat): licd-console
 * serves one end as its serial line; the test is the admin's terminal on the other end (a program
 * that types and reads the screen, through serialport as screen or minicom would open it). Against a
 * real licd on its development defaults; box operations on the dry-run backend.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, ROOT, run, start, type Proc } from '../helpers/procs.ts';
import { box, feature, spec } from '../helpers/activation-box.ts';

test.after.always(killAll);

async function ptyPair(dir: string, name = 'line'): Promise<{ device: string; term: string; socat: ChildProcess }> {
  const device = join(dir, `${name}-console`);
  const term = join(dir, `${name}-term`);
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${term}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (let i = 0; i < 200 && !(existsSync(device) && existsSync(term)); i++) await new Promise((r) => setTimeout(r, 25));
  return { device, term, socat };
}

/** The admin's terminal: types, and reads the screen from the last thing it expected. */
async function terminal(path: string) {
  const port = new SerialPort({ path, baudRate: 115200, autoOpen: false, lock: false });
  await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
  let screen = '';
  let seen = 0;
  port.on('data', (d: Buffer) => (screen += d.toString('latin1')));
  return {
    get screen() {
      return screen;
    },
    type(s: string) {
      port.write(Buffer.from(s, 'latin1'));
    },
    line(s: string) {
      port.write(Buffer.from(s + '\r', 'latin1'));
    },
    async expect(re: RegExp, timeoutMs = 20_000): Promise<string> {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(screen.slice(seen));
        if (m) {
          const between = screen.slice(seen, seen + m.index + m[0].length);
          seen += m.index + m[0].length;
          return between;
        }
        if (Date.now() > end) throw new Error(`the console never showed ${re} after:\n${JSON.stringify(screen.slice(seen))}\n--- the whole screen:\n${JSON.stringify(screen)}`);
        await new Promise((r) => setTimeout(r, 30));
      }
    },
    close: () => new Promise<void>((res) => (port.isOpen ? port.close(() => res()) : res())),
  };
}

/** The console as a process; stopped when its test ends (before its temp dir is removed: it writes its audit log there). */
function consoleProcess(t: { teardown(f: () => void): void }, tty: string, dir: string, env: Record<string, string>, extra: string[] = []): Proc {
  const p = start(process.execPath, [join(ROOT, 'bin', 'licd-console.mjs'), '--tty', tty, '--dry-run', '--state-dir', join(dir, 'state'), ...extra], env);
  t.teardown(() => p.child.kill('SIGKILL'));
  return p;
}

/**
 * A console on a fresh pseudo-terminal pair (`line` names it) in `dir`, its broker nowhere
 * (mqtt://127.0.0.1:1), and the admin's terminal showing the password prompt.
 */
async function consoleOnLine(t: ExecutionContext, dir: string, args: string[], line?: string) {
  const { device, term, socat } = await ptyPair(dir, line);
  t.teardown(() => socat.kill());
  const c = consoleProcess(t, device, dir, {}, ['--admin-password-file', join(dir, 'admin.password'), '--broker', 'mqtt://127.0.0.1:1', ...args]);
  await c.waitFor(/serving/);
  const tty = await terminal(term);
  t.teardown(() => tty.close());
  tty.line('');
  await tty.expect(/console password: $/);
  return { c, socat, term, tty };
}

/** A console with an admin password (correct horse battery) on a fresh pseudo-terminal pair, at its password prompt. */
async function consoleAtLogin(t: ExecutionContext, extra: (dir: string) => string[] = () => []) {
  const dir = tempDir('licd-console-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
  writeFileSync(join(dir, 'admin.password'), 'correct horse battery\n', { mode: 0o600 });
  return { dir, ...(await consoleOnLine(t, dir, extra(dir))) };
}

test('login: nothing typed is echoed, wrong passwords wait longer each time, also after the console restarts', async (t) => {
  t.timeout(120_000);
  const first = await consoleAtLogin(t, () => ['--idle', '10']);
  const { dir, c, socat } = first;
  let tty = first.tty;
  tty.line('hunter2');
  const said = await tty.expect(/wrong password; wait 1 s/);
  t.false(said.includes('hunter2'), 'the password is not echoed');
  await tty.expect(/console password: $/);
  tty.line('hunter3');
  await tty.expect(/wrong password; wait 2 s/);
  // The console restarts (the line dropped, or the service restarted): the count goes on from 2.
  c.child.kill('SIGTERM');
  await c.exited;
  socat.kill();
  tty = (await consoleOnLine(t, dir, ['--idle', '10'], 'line2')).tty;
  tty.line('hunter4');
  await tty.expect(/wrong password; wait 4 s/);
  await tty.expect(/console password: $/, 20_000);
  tty.line('correct horse battery');
  const ok = await tty.expect(/logged in/);
  t.false(ok.includes('correct horse'), 'the password is not echoed');
  await tty.expect(/> $/);
  // licd is down (nothing on port 1): its commands say so; the box's still work.
  tty.line('status');
  await tty.expect(/error: licd is not answering at mqtt:\/\/127\.0\.0\.1:1 .*logs, service, network and reboot still work/);
  tty.line('logs 5 err');
  await tty.expect(/\(dry run\) journalctl -u licd -u mosquitto -n 5 -p err/);
  // No input for --idle 10 s: logged out.
  await tty.expect(/logged out after 10 seconds without input[\s\S]*console password: $/, 40_000);
  // The audit log, printed for copying: one JSON object per line, the wrong tries included.
  tty.line(readFileSync(join(dir, 'admin.password'), 'utf8').trim());
  await tty.expect(/> $/);
  tty.line('export audit 50');
  const exported = (await tty.expect(/-----\r\n([\s\S]*?)-----\r\n/)).split('-----\r\n')[1]!.trim().split('\r\n');
  t.true(exported.length >= 5);
  t.deepEqual(exported.map((l) => (JSON.parse(l) as { event: string }).event).slice(0, 4), ['login', 'login', 'login', 'login']);
  const audit = readFileSync(join(dir, 'state', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; ok: boolean; detail?: string });
  t.deepEqual(audit.filter((a) => a.event === 'login').map((a) => a.ok), [false, false, false, true, true]);
  t.true(audit.some((a) => a.event === 'command' && a.detail === 'logs 5 err' && a.ok));
  t.true(audit.some((a) => a.event === 'logout' && a.detail === 'logged out after 10 seconds without input'));
  t.false(JSON.stringify(audit).includes('hunter'), 'no password in the audit log');
});

test('commands through the admin API: status, leases, revoke with confirmation; editing, completion, garbage, Ctrl-C, Ctrl-D, idle logout, a dropped line', async (t) => {
  t.timeout(180_000);
  const s = await devDaemonProcess(t, { LICD_USER: 'anna', LICD_HOST: 'ws-7' });
  const dir = tempDir('licd-console-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
  let pair = await ptyPair(dir);
  t.teardown(() => pair.socat.kill());
  const c = consoleProcess(t, pair.device, dir, {}, ['--admin-password-file', join(s.dir, 'admin.password'), '--broker', s.url]);
  await c.waitFor(/serving/);
  let tty = await terminal(pair.term);
  t.teardown(() => tty.close());
  tty.line('');
  await tty.expect(/console password: $/);
  tty.line(readFileSync(join(s.dir, 'admin.password'), 'utf8').trim());
  await tty.expect(/> $/);

  // Tab completion and line editing: "sta<Tab>" completes; a typo fixed with Backspace.
  tty.type('sta\t');
  await tty.expect(/status \x1b\[K$/);
  tty.type('\x15'); // Ctrl-U clears it
  tty.type('statuz\x7fs\r');
  await tty.expect(/FEATURE +TOTAL[\s\S]*nuke_i[\s\S]*> $/);

  // A seat held by a render node, revoked from the console after a confirmation.
  const holder = licctl(['checkout', 'nuke_i'], s.env);
  await holder.waitFor(/holding/);
  tty.line('leases nuke_i');
  const leaseId = /(\S+) {2}nuke_i x1 {2}anna@ws-7/.exec(await tty.expect(/anna@ws-7[^\n]*\n/))?.[1];
  t.truthy(leaseId);
  await tty.expect(/> $/);
  tty.line(`revoke ${leaseId}`);
  await tty.expect(/revoke lease .*\? \(y\/n\) $/);
  tty.line('n');
  await tty.expect(/nothing done/);
  tty.line(`revoke ${leaseId} 30m`);
  await tty.expect(/\(y\/n\) $/);
  tty.line('y');
  await tty.expect(/revoked nuke_i held by anna@ws-7; blocked until/);
  t.is((await holder.exited).code, 5, 'the holder was told and exits with 5');
  // The revoked lease is in the usage history: hours per user as CSV, from the same report as licctl report users.
  tty.line('export usage 1');
  const usage = (await tty.expect(/-----\r\n([\s\S]*?)-----\r\n/)).split('-----\r\n')[1]!.trim().split('\r\n');
  t.is(usage[0], 'USER,SEAT-H,LEASE-H,BORROW-H,WAIT-H,SESSIONS,FEATURES');
  t.regex(usage.find((l) => l.startsWith('anna,')) ?? '', /^anna,[\d.]+,[\d.]+,[\d.]+,0,1,nuke_i$/);
  await tty.expect(/> $/);

  // Binary garbage and broken escape sequences: no crash, a fresh prompt, commands still work.
  tty.type(Buffer.from([0x00, 0xff, 0xfe, 0x1b, 0x5b, 0x39, 0x39, 0x39, 0x7a, 0x80, 0x9b, 0x1b, 0x1b, 0x07, 0x0e]).toString('latin1'));
  tty.type('\x03');
  await tty.expect(/\^C\r\n.*> $/);
  tty.line('help tls');
  await tty.expect(/tls +the box's TLS certificate fingerprint/);

  // Ctrl-C cancels a paste; a service restart asks first and runs on the dry-run backend.
  tty.line('quarantine release');
  await tty.expect(/paste the release file/);
  tty.line('{"half": ');
  tty.type('\x03');
  await tty.expect(/cancelled/);
  tty.line('service restart licd');
  await tty.expect(/restart licd\? \(y\/n\) $/);
  tty.line('yes');
  await tty.expect(/\(dry run\) systemctl restart licd\.service/);

  // Ctrl-D logs out.
  tty.type('\x04');
  await tty.expect(/logged out[\s\S]*console password: $/);

  // The line drops (the cable is pulled) and comes back: the console serves it again.
  await tty.close();
  pair.socat.kill('SIGKILL');
  await c.waitFor(/closed; reopening/);
  pair = await ptyPair(dir);
  tty = await terminal(pair.term);
  await c.waitFor(/serving[\s\S]*serving/, 20_000);
  tty.line('');
  await tty.expect(/console password: $/);
  const audit = readFileSync(join(dir, 'state', 'audit.log'), 'utf8');
  t.regex(audit, /"event":"command","ok":true,"detail":"revoke \S+ 30m"/);
  t.regex(audit, /"event":"logout","ok":true,"detail":"logged out"/);
});

test('network: a static address and back to DHCP, each value checked, written as networkd\'s file after a confirmation', async (t) => {
  t.timeout(120_000);
  const { dir, tty } = await consoleAtLogin(t, (d) => ['--network-dir', join(d, 'network')]);
  const file = join(dir, 'network', '50-wired.network');
  tty.line('correct horse battery');
  await tty.expect(/> $/);
  for (const [line, error] of [
    ['network static 192.168.10.2/33 192.168.10.1', /the prefix \/33 does not fit an IPv4 address \(1 to 32\); nothing changed/],
    ['network static 192.168.10.300/24 192.168.10.1', /"192\.168\.10\.300" is not an IPv4 or IPv6 address; nothing changed/],
    ['network static 192.168.10.2/24 fe80::1', /the gateway "fe80::1" is not an IPv4 address like 192\.168\.10\.2; nothing changed/],
    ['network static 192.168.10.2/24 192.168.10.1 dns ntp.studio.lan', /the DNS server "ntp\.studio\.lan" is not an IP address; nothing changed/],
  ] as const) {
    tty.line(line);
    await tty.expect(error);
    await tty.expect(/> $/);
  }
  t.false(existsSync(file), 'nothing written for a refused setting');
  tty.line('network static 192.168.10.2/24 192.168.10.1 dns 192.168.10.1 ntp ntp.studio.lan');
  await tty.expect(/new network settings: static 192\.168\.10\.2\/24, gateway 192\.168\.10\.1, DNS 192\.168\.10\.1, NTP ntp\.studio\.lan[\s\S]*\(y\/n\) $/);
  tty.line('y');
  await tty.expect(/\(dry run\) networkctl reload/);
  t.deepEqual(readFileSync(file, 'utf8').split('\n').filter((l) => /=/.test(l) && !l.startsWith('#')), ['Name=en* eth*', 'Address=192.168.10.2/24', 'Gateway=192.168.10.1', 'DNS=192.168.10.1', 'NTP=ntp.studio.lan']);
  tty.line('network dhcp');
  await tty.expect(/\(y\/n\) $/);
  tty.line('y');
  await tty.expect(/\(dry run\) networkctl reload \(network: DHCP/);
  // Back to DHCP is the file the image ships.
  const settings = (text: string) => text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  t.deepEqual(settings(readFileSync(file, 'utf8')), settings(readFileSync(join(ROOT, 'systemd', 'network', '50-wired.network'), 'utf8')));
});

test('export audit ymodem: rz receives the console audit log in a file', async (t) => {
  t.timeout(120_000);
  const { dir, term, tty: first } = await consoleAtLogin(t);
  let tty = first;
  tty.line('wrong one');
  await tty.expect(/wrong password; wait 1 s[\s\S]*console password: $/);
  tty.line('correct horse battery');
  await tty.expect(/> $/);
  tty.line('export audit ymodem');
  await tty.expect(/start the YMODEM receive/);
  // The terminal program hands the line to rz, as minicom does for Ctrl-A R.
  await tty.close();
  const into = join(dir, 'received');
  mkdirSync(into);
  const rz = spawn('sh', ['-c', 'cd "$1" && rz --ymodem < "$2" > "$2"', 'rz', into, term], { stdio: ['ignore', 'ignore', 'pipe'] });
  let rzErr = '';
  rz.stderr.on('data', (d) => (rzErr += d));
  const rzCode = await new Promise<number | null>((r) => rz.on('exit', (code) => r(code)));
  t.is(rzCode, 0, rzErr);
  tty = await terminal(term);
  t.teardown(() => tty.close());
  await tty.expect(/sent licd-console-audit\.jsonl \(\d+ bytes\)[\s\S]*> $/);
  const got = readFileSync(join(into, 'licd-console-audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; ok: boolean });
  t.deepEqual(got.slice(0, 2).map((e) => [e.event, e.ok]), [['login', false], ['login', true]], 'the wrong try and the login are in the file');
  t.is(got.length, readFileSync(join(dir, 'state', 'audit.log'), 'utf8').trim().split('\n').length - 1, 'every line of the audit log before the export itself');
});

test('export audit ymodem to a receiver that empties its input after every byte it sends, as rz does', async (t) => {
  // rz sends 'C', NAK or ACK and then throws away what it has read so far; when nothing comes it
  // asks again ('C' until the first data block has arrived, NAK after). On a busy CI machine the
  // console's answers came back before rz emptied its input and were thrown away: first the
  // closing block, then the first data block, whose second request (a 'C') the console ignored.
  // This receiver is rz on a slow machine: what arrives within 300 ms of any byte it sends is lost.
  t.timeout(120_000);
  const { tty } = await consoleAtLogin(t);
  tty.line('correct horse battery');
  await tty.expect(/> $/);
  tty.line('export audit ymodem');
  await tty.expect(/start the YMODEM receive/);
  let at = tty.screen.length;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Sends `bytes`, empties its input 300 ms later, and waits for a block of `size` bytes starting with `head`. */
  const ask = async (bytes: string, again: string, head: number, size: number, what: string) => {
    let send = bytes;
    for (let tries = 0; tries < 5; tries++, send = again) {
      tty.type(send);
      await sleep(300);
      at = tty.screen.length;
      for (const end = Date.now() + 3000; Date.now() < end; await sleep(20)) {
        const i = tty.screen.indexOf(String.fromCharCode(head), at);
        if (i >= 0 && tty.screen.length >= i + size) {
          at = i + size;
          return Buffer.from(tty.screen.slice(i, i + size), 'latin1');
        }
      }
    }
    throw new Error(`no ${what} after asking 5 times`);
  };
  const C = 'C';
  const ACK = '\x06';
  const NAK = '\x15';
  const first = await ask(C, C, 0x01, 133, "block 0 (the file's name)");
  t.regex(first.subarray(3, 40).toString('latin1'), /^licd-console-audit\.jsonl\0/);
  const size = Number(first.subarray(3).toString('latin1').split('\0')[1]!.split(' ')[0]);
  t.true(size > 0 && size <= 1024, 'one data block');
  const data = await ask(ACK + C, C, 0x02, 1029, 'the data block');
  await ask(ACK, NAK, 0x04, 1, 'EOT');
  const end = await ask(ACK + C, C, 0x01, 133, 'the empty block 0 that ends the batch');
  t.is(end[3], 0, 'the batch ends');
  tty.type(ACK);
  await tty.expect(/sent licd-console-audit\.jsonl \(\d+ bytes\)[\s\S]*> $/);
  const lines = data.subarray(3, 3 + size).toString('utf8').trim().split('\n');
  t.deepEqual(JSON.parse(lines[0]!).event, 'login');
});

/**
 * A box, the vendor's license for it with a new feature (houdini_engine, 3 seats), and an admin
 * logged in on the console.
 */
async function boxWithLicense(t: ExecutionContext) {
  const b = await box(t);
  await b.start();
  const dir = tempDir('licd-console-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
  // The vendor answers this box's activation request with a license for a new feature.
  const req = join(dir, 'request.json');
  const r1 = await run(['activate', 'request', '--out', req, ...b.admin()]);
  t.is(r1.code, 0, r1.stderr);
  const specFile = join(dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec([{ name: 'houdini_engine', seats: 3 }])));
  const lic = join(dir, 'license.json');
  const v = await run(['vendor', 'activate', req, '--key', b.key, '--spec', specFile, '--out', lic]);
  t.is(v.code, 0, v.stderr);

  const { device, term, socat } = await ptyPair(dir);
  t.teardown(() => socat.kill());
  const c = consoleProcess(t, device, dir, {}, ['--admin-password-file', join(b.dir, 'admin.password'), '--broker', b.state.url]);
  await c.waitFor(/serving/);
  const tty = await terminal(term);
  t.teardown(() => tty.close());
  tty.line('');
  await tty.expect(/console password: $/);
  tty.line(readFileSync(join(b.dir, 'admin.password'), 'utf8').trim());
  await tty.expect(/> $/);
  return { b, lic, term, tty };
}

test('license import by paste: the file and the "." pasted in one block, as a terminal sends a paste', async (t) => {
  t.timeout(180_000);
  const { b, lic, tty } = await boxWithLicense(t);
  tty.line('license import');
  await tty.expect(/a line with a single "\."/);
  // Every line of the file, and the line with the dot, in one write: the rest of the block must
  // not be lost while the console takes the first line (it was: the console waited forever).
  tty.type(readFileSync(lic, 'utf8').replace(/\r?\n/g, '\r') + '.\r');
  await tty.expect(/install this license\? \(y\/n\) $/);
  tty.line('y');
  await tty.expect(/license ACT-\S+ for ACME Studio installed/);
  t.is(feature(await b.status(), 'houdini_engine')?.total, 3, 'the new feature is served without a restart');
  // Commands typed ahead while one runs are run after it, in order.
  tty.type('tls\rhelp tls\r');
  await tty.expect(/TLS is off[\s\S]*> help tls/);
});

test('license import by YMODEM: sz sends the license file, the box installs it without a restart', async (t) => {
  t.timeout(180_000);
  const { b, lic, term, tty: first } = await boxWithLicense(t);
  let tty = first;
  tty.line('license import ymodem');
  await tty.expect(/start the YMODEM send/);
  // The terminal program hands the line to sz, as minicom does for Ctrl-A S.
  await tty.close();
  const sz = spawn('sh', ['-c', 'sz --ymodem "$1" < "$2" > "$2"', 'sz', lic, term], { stdio: ['ignore', 'ignore', 'pipe'] });
  let szErr = '';
  sz.stderr.on('data', (d) => (szErr += d));
  const szCode = await new Promise<number | null>((r) => sz.on('exit', (code) => r(code)));
  t.is(szCode, 0, szErr);
  tty = await terminal(term);
  await tty.expect(/received license\.json \(\d+ bytes\)[\s\S]*install this license\? \(y\/n\) $/);
  tty.line('y');
  await tty.expect(/license ACT-\S+ for ACME Studio installed/);
  t.is(feature(await b.status(), 'houdini_engine')?.total, 3, 'the new feature is served without a restart');

  // A sender that never starts: Ctrl-C cancels, and the console takes commands again.
  tty.line('license import ymodem');
  await tty.expect(/start the YMODEM send/);
  tty.type('\x03');
  await tty.expect(/error: cancelled|cancelled/);
  tty.line('tls');
  await tty.expect(/TLS is off/);
});
