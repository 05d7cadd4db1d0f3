/**
 * Issue 9, finding 1: a full disk. licd runs as a child process with its data dir on a real 6 MiB
 * filesystem (tmpfs, so the test needs root); the filesystem is filled while it serves, then
 * freed. Every change answered ok must survive a clean restart, with no false quarantine; and
 * start-up on a full, read-only or already used data dir says so plainly, with an exit code.
 */
import test from 'ava';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError, LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { killAll, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { canMount, mountSmallFs, type SmallFs } from '../helpers/smallfs.ts';
import { freePort } from '../crash/harness.ts';

test.after.always(() => killAll());

const root = canMount();

async function startLicd(dataDir: string, port: number): Promise<{ p: Proc; url: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1', LICD_LOG_LEVEL: 'info' });
  const url = (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 30_000))[1]!;
  return { p, url };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isLicdError(e) ? e.code : String(e);
  }
}

function smallFs(t: { teardown(f: () => void): void }, sizeMiB = 6): SmallFs {
  const fs = mountSmallFs(sizeMiB);
  t.teardown(() => fs.unmount());
  return fs;
}

(root ? test.serial : test.serial.skip)('a disk that fills and empties while licd serves loses no answered change and quarantines nothing', async (t) => {
  t.timeout(90_000);
  const fs = smallFs(t);
  const dataDir = join(fs.dir, 'data');
  const port = await freePort();
  let { p, url } = await startLicd(dataDir, port);
  t.teardown(() => void p.child.kill('SIGKILL'));
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const bc = new BorrowClient({ home, hostId: 'cd'.repeat(16), user: 'dana', hostName: 'laptop' });
  const c = await LicdClient.connect({ url, user: 'ann', host: 'node-a', timeoutMs: 10_000 });
  t.teardown(() => void c.close({ checkin: false }).catch(() => {}));

  const leases: string[] = [];
  const borrows: string[] = [];
  let pid = 100;
  const checkout = async (feature: string) => {
    const r = await c.request<{ lease: { id: string } }>('checkout', { feature, user: 'ann', host: 'node-a', pid: pid++, ttl: 600 });
    leases.push(r.lease.id);
    return r.lease.id;
  };
  // Before the fault.
  const first = await checkout('vray_render');
  await checkout('vray_render');
  borrows.push(...(await bc.borrow(c, [{ feature: 'nuke_i', count: 1 }], 24)).borrows.map((b) => b.id));

  // The disk fills while licd serves: heartbeats (each a write) run until one is refused.
  fs.fill();
  let refused: LicdError | null = null;
  for (let i = 0; i < 400 && !refused; i++) {
    try {
      await c.request('heartbeat', { leases: [first] });
    } catch (e) {
      if (isLicdError(e)) refused = e;
      else throw e;
    }
  }
  t.truthy(refused, 'a write was refused once the disk was full');
  t.is(refused!.code, 'STORE_FAILED');
  t.regex(refused!.message, /no space left on \S+\/data\/db: .*free space there, licd resumes writing by itself/);
  // Status still works, and says why.
  const during = await c.status();
  t.true(during.server.warnings.some((w) => /store failing: no space left on/.test(w)), during.server.warnings.join('; '));
  // A checkout while the disk is full is refused too, and grants nothing.
  t.is(await code(c.request('checkout', { feature: 'vray_distributed', user: 'ann', host: 'node-a', pid: 1, ttl: 600 })), 'STORE_FAILED');

  // Space comes back: licd resumes by itself; new checkouts and a borrow are answered ok.
  fs.free();
  await until(async () => (await code(checkout('vray_distributed'))) === 'ok', 'a checkout to be answered ok after the space came back', 30_000, 250);
  await checkout('vray_distributed');
  await checkout('vray_interface');
  borrows.push(...(await bc.borrow(c, [{ feature: 'vray_interface', count: 1 }], 24)).borrows.map((b) => b.id));
  await c.request('heartbeat', { leases: [first] });

  // A clean restart.
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  t.is(exit.code, 0, p.stderr());
  const log = p.stdout() + p.stderr();
  t.log(log.split('\n').filter((l) => /store|disk|space|writ/i.test(l)).slice(0, 8).join('\n'));
  t.is(log.match(/writes to the license database fail/g)?.length, 1, 'the log says it once, not per request');
  t.regex(log, /writing to the license database resumed/);
  ({ p, url } = await startLicd(dataDir, port));
  const c2 = await LicdClient.connect({ url, user: 'eve', host: 'node-b', timeoutMs: 10_000 });
  t.teardown(() => void c2.close({ checkin: false }).catch(() => {}));
  const s = await c2.status();
  const haveLeases = new Set(s.features.flatMap((f) => f.leases.map((l) => l.id)));
  const haveBorrows = new Set(s.features.flatMap((f) => f.borrows.map((b) => b.id)));
  t.deepEqual(leases.filter((id) => !haveLeases.has(id)), [], 'every lease answered ok is there after the restart');
  t.deepEqual(borrows.filter((id) => !haveBorrows.has(id)), [], 'every borrow answered ok is there after the restart');
  t.is(haveLeases.size, leases.length, 'and no lease that was refused');
  t.deepEqual(s.quarantine, [], 'no quarantine');
  t.false(s.server.warnings.some((w) => /quarantine/.test(w)), s.server.warnings.join('; '));
});

/** Starts licd on dataDir expecting it to refuse; returns its exit code and stderr. */
async function refusedStart(dataDir: string): Promise<{ code: number | null; stderr: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(await freePort()), LICD_MQTT_HOST: '127.0.0.1', LICD_LOG_LEVEL: 'info' });
  const { code } = await Promise.race([p.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`licd did not exit:\n${p.stdout()}\n${p.stderr()}`)), 30_000))]);
  return { code, stderr: p.stderr() };
}

/** Runs licd once on dataDir so it holds a database and development material, then stops it. */
async function initialise(dataDir: string): Promise<void> {
  const { p } = await startLicd(dataDir, await freePort());
  p.child.kill('SIGTERM');
  await p.exited;
}

(root ? test.serial : test.serial.skip)('start-up on a full disk says "no space left on <dir>", exits 73, no stack trace', async (t) => {
  const fs = smallFs(t, 4);
  const dataDir = join(fs.dir, 'data');
  await initialise(dataDir);
  fs.fill();
  const r = await refusedStart(dataDir);
  t.is(r.code, 73, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: no space left on ${dataDir}\\S*: .*free space there, then start licd again`));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  // And on a fresh data dir on the full disk (the development material cannot be written).
  const fresh = await refusedStart(join(fs.dir, 'fresh'));
  t.is(fresh.code, 73, fresh.stderr);
  t.regex(fresh.stderr, /licd: cannot start: STORE_FAILED: no space left on \S+fresh\S*: /);
  t.notRegex(fresh.stderr, /^\s+at /m, 'no stack trace');
  // Once there is space, it starts on the same data.
  fs.free();
  await initialise(dataDir);
});

(root ? test.serial : test.serial.skip)('start-up on a read-only data dir says "permission denied on <dir>", exits 73, no stack trace', async (t) => {
  const fs = smallFs(t, 4);
  const dataDir = join(fs.dir, 'data');
  await initialise(dataDir);
  mkdirSync(join(fs.dir, 'empty'));
  fs.remount('ro');
  const r = await refusedStart(dataDir);
  t.is(r.code, 73, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: permission denied on ${dataDir}\\S*: its file system is mounted read-only`));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  const fresh = await refusedStart(join(fs.dir, 'empty', 'data'));
  t.is(fresh.code, 73, fresh.stderr);
  t.regex(fresh.stderr, /licd: cannot start: STORE_FAILED: permission denied on \S+empty\S*: /);
  t.notRegex(fresh.stderr, /^\s+at /m, 'no stack trace');
  fs.remount('rw');
});

test.serial('a second licd on the same data dir says "another licd holds <dir>", exits 75, no stack trace', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const { p } = await startLicd(dataDir, await freePort());
  t.teardown(() => void p.child.kill('SIGKILL'));
  const r = await refusedStart(dataDir);
  t.is(r.code, 75, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: another licd holds ${join(dataDir, 'db')} `));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  // The first one is unharmed.
  const c = await LicdClient.connect({ url: (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!, timeoutMs: 10_000 });
  t.is((await c.status()).features.length > 0, true);
  await c.close();
});
