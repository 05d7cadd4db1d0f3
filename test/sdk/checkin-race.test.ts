/**
 * A lease checked in while a heartbeat is on its way is not taken again. The daemon answers a
 * heartbeat for a lease it no longer knows at once, but a checkin only after its write is synced,
 * so the heartbeat's "unknown" can arrive first; the SDK took that for a lease that expired on the
 * server and checked the seat out again, a seat nobody would ever give back (found by the
 * clock-steps harness in CI: the checked-in lease came back under a new id). Real parts: the
 * daemon with its embedded broker and LevelDB, the SDK.
 */
import test from 'ava';
import { LicdClient } from '../../src/sdk/client.ts';
import { startTestDaemon } from '../helpers/daemon.ts';

test('a checkin racing a heartbeat gives the seat back for good: no lease is taken again', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const admin = await d.admin();
  const c = await LicdClient.connect({ url: d.url, user: 'ann', host: 'ws-1', timeoutMs: 5000 });
  t.teardown(() => c.close({ checkin: false }));
  let regained = 0;
  const rounds = 20;
  for (let i = 0; i < rounds; i++) {
    const lease = await c.checkout('vray_render');
    lease.on('regained', () => regained++);
    // The checkin is sent first; the heartbeat right behind it still names the lease.
    await Promise.all([lease.release(), c.heartbeatNow()]);
  }
  // Any re-checkout would have been answered by now; give a straggler a moment anyway.
  await new Promise((r) => setTimeout(r, 300));
  const s = await admin.status();
  const f = s.features.find((x) => x.feature === 'vray_render')!;
  t.is(regained, 0, 'the SDK took a checked-in seat again');
  t.deepEqual(f.leases, [], 'a seat stayed leased after every checkin was answered');
  t.is(c.heldLeases().length, 0);
});
