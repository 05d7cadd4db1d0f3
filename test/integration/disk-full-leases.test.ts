/**
 * Issue 9, finding 1, leases across an outage of the store longer than a lease's TTL: the
 * heartbeats of a live client are refused meanwhile once they need a write, and the reaper cannot write. Once writing
 * resumes, the live client keeps its lease, and a lease whose client was gone before (its grace
 * ran out during the outage) is reclaimed. In-process daemon, real LevelDB on a real 6 MiB tmpfs.
 */
import test from 'ava';
import { join } from 'node:path';
import { isLicdError } from '../../src/core/errors.ts';
import { startTestDaemon, until } from '../helpers/daemon.ts';
import { mountSmallFs } from '../helpers/smallfs.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('an outage longer than the TTL: the live client keeps its lease, the gone client\'s lease is reclaimed after', async (t) => {
  t.timeout(90_000);
  const fs = mountSmallFs(6);
  t.teardown(() => fs.unmount());
  const d = await startTestDaemon({ dataDir: join(fs.dir, 'data'), config: { leases: { ttlSeconds: 3, minTtlSeconds: 1, disconnectGraceSeconds: 3 } } });
  t.teardown(() => d.halt().catch(() => {}));
  const live = await d.client({ user: 'liv', host: 'node-live' });
  const gone = await d.client({ user: 'gon', host: 'node-gone' });
  const watcher = await d.client({ user: 'wat', host: 'node-w' });
  const la = (await live.request<{ lease: { id: string } }>('checkout', { feature: 'vray_render', user: 'liv', host: 'node-live', pid: 1, ttl: 3 })).lease.id;
  const lb = (await gone.request<{ lease: { id: string } }>('checkout', { feature: 'vray_interface', user: 'gon', host: 'node-gone', pid: 2, ttl: 600 })).lease.id;
  // The gone client's connection dies: its last will gives its lease 3 s.
  gone.mqtt.stream.destroy();
  await until(async () => (await watcher.status()).features.some((f) => f.leases.some((l) => l.id === lb && l.state === 'disconnected')), 'the lease to be marked disconnected', 15_000, 100);

  // The disk fills: the watcher's checkout, repeated (each extends its lease, a write), is refused.
  fs.fill();
  let refused = false;
  for (let i = 0; i < 400 && !refused; i++) {
    try {
      await watcher.request('checkout', { feature: 'vray_distributed', user: 'wat', host: 'node-w', pid: 3, ttl: 600 });
    } catch (e) {
      if (!isLicdError(e) || e.code !== 'STORE_FAILED') throw e;
      refused = true;
    }
  }
  t.true(refused, 'writes were refused');
  // Longer than three TTLs and the grace, heartbeating every second: the live client's heartbeats
  // are answered while its lease's last record covers them (three TTLs ahead, docs/protocol.md,
  // "Heartbeats and the disk"), then refused, since each then needs a write.
  let hbRefused = 0;
  for (let i = 0; i < 12; i++) {
    await sleep(1000);
    await live.request('heartbeat', { leases: [la] }).catch((e: unknown) => {
      if (isLicdError(e) && e.code === 'STORE_FAILED') hbRefused++;
    });
  }
  t.true(hbRefused > 0, 'heartbeats that needed a write were refused');
  fs.free();
  await until(async () => !(await watcher.status()).server.warnings.some((w) => /store failing/.test(w)), 'writing to resume', 20_000, 100);
  // A couple of reaper ticks later.
  await sleep(2500);
  const hb = await live.request<{ renewed: Array<{ id: string }>; unknown: string[] }>('heartbeat', { leases: [la] });
  t.deepEqual(hb.unknown, [], 'the live client\'s lease was not reclaimed');
  t.deepEqual(hb.renewed.map((r) => r.id), [la]);
  await until(async () => !(await watcher.status()).features.some((f) => f.leases.some((l) => l.id === lb)), 'the gone client\'s lease to be reclaimed', 10_000, 200);
  const s = await watcher.status();
  t.is(s.features.find((f) => f.feature === 'vray_interface')!.leased, 0, 'its seat is free again');
});
