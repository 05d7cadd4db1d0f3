/**
 * Issue 9, finding 1: a full disk. licd runs as a child process with its data dir on a real 6 MiB
 * filesystem (tmpfs, so the test needs root); the filesystem is filled while it serves, then
 * freed. Every change answered ok must survive a clean restart, with no false quarantine.
 * Start-up on a full, read-only or already used data dir: store-start.test.ts.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError, LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { killAll, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { mountSmallFs, type SmallFs } from '../helpers/smallfs.ts';
import { freePort } from '../crash/harness.ts';

test.after.always(() => killAll());

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

test.serial('a disk that fills and empties while licd serves loses no answered change and quarantines nothing', async (t) => {
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

  // The disk fills while licd serves: the first lease's checkout is repeated (each extends it, a
  // write) until one is refused. (Heartbeats would not do: most write nothing, docs/protocol.md.)
  fs.fill();
  let refused: LicdError | null = null;
  for (let i = 0; i < 400 && !refused; i++) {
    try {
      await c.request('checkout', { feature: 'vray_render', user: 'ann', host: 'node-a', pid: 100, ttl: 600 });
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
