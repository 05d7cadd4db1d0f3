/**
 * The maintenance console's `alerts` command (the admin op alerts.list) through a real
 * pseudo-terminal pair (socat), against licd as a process with a double use made by real SDK
 * clients of one user on two hosts.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, ROOT, start } from '../helpers/procs.ts';

test.after.always(killAll);

test('console: alerts shows none, then the double use with the user and both hosts', async (t) => {
  t.timeout(90_000);
  const s = await devDaemonProcess(t, {});
  const dir = tempDir('licd-console-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
  const device = join(dir, 'line-console');
  const term = join(dir, 'line-term');
  const socat: ChildProcess = spawn('socat', [`pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${term}`], { stdio: 'ignore' });
  t.teardown(() => socat.kill());
  for (let i = 0; i < 200 && !(existsSync(device) && existsSync(term)); i++) await new Promise((r) => setTimeout(r, 25));
  const c = start(process.execPath, [join(ROOT, 'bin', 'licd-console.mjs'), '--tty', device, '--dry-run', '--state-dir', join(dir, 'state'), '--admin-password-file', join(s.dir, 'admin.password'), '--broker', s.url]);
  t.teardown(() => c.child.kill('SIGKILL'));
  await c.waitFor(/serving/);
  const port = new SerialPort({ path: term, baudRate: 115200, autoOpen: false });
  await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
  t.teardown(() => new Promise<void>((res) => (port.isOpen ? port.close(() => res()) : res())));
  let screen = '';
  let seen = 0;
  port.on('data', (d: Buffer) => (screen += d.toString('latin1')));
  const line = (x: string) => port.write(Buffer.from(x + '\r', 'latin1'));
  const expect = async (re: RegExp) => {
    const end = Date.now() + 20_000;
    for (;;) {
      const m = re.exec(screen.slice(seen));
      if (m) {
        seen += m.index + m[0].length;
        return;
      }
      if (Date.now() > end) throw new Error(`the console never showed ${re}:\n${screen}`);
      await new Promise((r) => setTimeout(r, 30));
    }
  };
  line('');
  await expect(/console password: $/);
  line(readFileSync(join(s.dir, 'admin.password'), 'utf8').trim());
  await expect(/> $/);
  line('alerts');
  await expect(/no active alerts[\s\S]*> $/);

  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const laptop = await LicdClient.connect({ url: s.url, user: 'ann', host: 'laptop-ann', timeoutMs: 5000 });
  t.teardown(() => laptop.close({ checkin: false }));
  await new BorrowClient({ home, hostId: 'ef'.repeat(16), user: 'ann', hostName: 'laptop-ann' }).borrow(laptop, [{ feature: 'vray_render', count: 1 }], 24);
  const ws = await LicdClient.connect({ url: s.url, user: 'ann', host: 'ws-12', timeoutMs: 5000 });
  t.teardown(() => ws.close());
  await ws.checkout('vray_render');
  // Evaluations caused by seat events are at most 200 ms apart: ask until it is there.
  const from = seen;
  for (let i = 0; i < 20 && !/double use/.test(screen.slice(from)); i++) {
    line('alerts');
    await expect(/> $/);
    await new Promise((r) => setTimeout(r, 100));
  }
  seen = from;
  // The console wraps at 80 columns: any space may be a line break.
  const words = (x: string) => new RegExp(x.split(' ').join('\\s+'));
  await expect(/WARNING since [^:]+:\d\d: /);
  await expect(words('double use of vray_render: user ann holds it borrowed on laptop-ann and floating on ws-12'));
  line('status');
  await expect(words('alert \\(warning\\): double use of vray_render: one user holds it borrowed and floating on 2 hosts'));
  t.regex(screen, /no active alerts/);
  t.regex(screen, /user ann holds it\s+borrowed on laptop-ann/);
});
