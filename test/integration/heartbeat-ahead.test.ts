/**
 * Issue 18: heartbeats write ahead (docs/protocol.md, "Heartbeats and the disk"). A heartbeat that
 * writes stores its lease three TTLs ahead, and the heartbeats that record covers write nothing.
 * licd runs as a child process on a real LevelDB: a kill -9 after heartbeats that wrote nothing
 * keeps the lease with an end no earlier than the last one answered, and its holder renews it; on
 * a full disk (a real 6 MiB tmpfs) a render node's heartbeats that need no write are still
 * answered while checkouts are refused.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError } from '../../src/core/errors.ts';
import type { CheckoutResult, HeartbeatResult } from '../../src/core/protocol.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { freePort } from '../crash/harness.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { mountSmallFs } from '../helpers/smallfs.ts';

test.after.always(() => killAll());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startLicd(dataDir: string, port: number): Promise<{ p: Proc; url: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1', LICD_LOG_LEVEL: 'warn' });
  const url = (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 30_000))[1]!;
  return { p, url };
}

test('a lease renewed by heartbeats that wrote nothing survives a kill -9 with an end no earlier than the last one answered', async (t) => {
  t.timeout(90_000);
  const dataDir = tempDir('licd-ahead-');
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  let { p, url } = await startLicd(dataDir, port);
  t.teardown(() => void p.child.kill('SIGKILL'));
  const holder = randomBytes(16).toString('base64url');
  const who = { user: 'ann', host: 'node-a', clientId: 'ann-node-a', holder, timeoutMs: 10_000 };
  const c = await LicdClient.connect({ url, ...who });
  const lease = (await c.request<CheckoutResult>('checkout', { feature: 'vray_render', user: 'ann', host: 'node-a', pid: 1, ttl: 30 })).lease;
  // The first heartbeat writes the lease 90 s ahead; the next ones write nothing.
  let last = '';
  for (let i = 0; i < 5; i++) {
    await sleep(400);
    const hb = await c.request<HeartbeatResult>('heartbeat', { leases: [lease.id] });
    t.deepEqual(hb.unknown, []);
    last = hb.renewed[0]!.until;
  }
  t.true(Date.parse(last) > Date.parse(lease.until), 'the heartbeats moved its end');
  p.child.kill('SIGKILL');
  await p.exited;
  await c.close({ checkin: false }).catch(() => {});

  ({ p, url } = await startLicd(dataDir, port));
  const upAt = Date.now();
  const eve = await LicdClient.connect({ url, user: 'eve', host: 'node-b', timeoutMs: 10_000 });
  t.teardown(() => void eve.close({ checkin: false }).catch(() => {}));
  const kept = (await eve.status()).features.flatMap((f) => f.leases).find((l) => l.id === lease.id);
  t.truthy(kept, 'the lease is there after the kill');
  t.true(Date.parse(kept!.until) >= Date.parse(last), `its end ${kept!.until} is no earlier than the last answered, ${last}`);
  t.true(Date.parse(kept!.until) <= upAt + 30_000, `and no later than one TTL after the start (${kept!.until})`);
  // Its holder, back with the same client id and secret, renews it.
  const back = await LicdClient.connect({ url, ...who });
  t.teardown(() => void back.close({ checkin: false }).catch(() => {}));
  const hb = await back.request<HeartbeatResult>('heartbeat', { leases: [lease.id] });
  t.deepEqual(hb.renewed.map((r) => r.id), [lease.id]);
  t.deepEqual(hb.unknown, []);
});

test('on a full disk a render node\'s heartbeats that need no write are answered while checkouts are refused', async (t) => {
  t.timeout(90_000);
  const fs = mountSmallFs(6);
  t.teardown(() => fs.unmount());
  const port = await freePort();
  const { p, url } = await startLicd(join(fs.dir, 'data'), port);
  t.teardown(() => void p.child.kill('SIGKILL'));
  const node = await LicdClient.connect({ url, user: 'ann', host: 'node-a', timeoutMs: 10_000 });
  t.teardown(() => void node.close({ checkin: false }).catch(() => {}));
  const other = await LicdClient.connect({ url, user: 'bob', host: 'node-b', timeoutMs: 10_000 });
  t.teardown(() => void other.close({ checkin: false }).catch(() => {}));
  const lease = (await node.request<CheckoutResult>('checkout', { feature: 'vray_render', user: 'ann', host: 'node-a', pid: 1, ttl: 60 })).lease;
  await node.request<HeartbeatResult>('heartbeat', { leases: [lease.id] });

  fs.fill();
  // Another node's checkout, repeated (each extends its lease: a write), until one is refused.
  let refused: string | null = null;
  for (let i = 0; i < 400 && refused === null; i++) {
    try {
      await other.request('checkout', { feature: 'vray_distributed', user: 'bob', host: 'node-b', pid: 2, ttl: 600 });
    } catch (e) {
      if (!isLicdError(e)) throw e;
      refused = e.code;
    }
  }
  t.is(refused, 'STORE_FAILED', 'the full disk refuses writes');
  const warned = (await other.status()).server.warnings.find((w) => /store failing/.test(w));
  t.regex(warned ?? '', /heartbeats that need a write are refused/);
  // The render node keeps heartbeating: its lease's record covers these, so they are answered.
  for (let i = 0; i < 3; i++) {
    const hb = await node.request<HeartbeatResult>('heartbeat', { leases: [lease.id] });
    t.deepEqual(hb.renewed.map((r) => r.id), [lease.id], `heartbeat ${i + 1} on the full disk`);
    await sleep(300);
  }
  fs.free();
});
