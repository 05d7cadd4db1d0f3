import test from 'ava';
import { LicdError } from '../../src/core/errors.ts';
import { startTestDaemon, until } from '../helpers/daemon.ts';

test('status lists the demo features with free seats', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const s = await c.status();
  t.is(s.server.state, 'online');
  t.true(s.server.development);
  t.true(s.server.dongle.present);
  const render = s.features.find((f) => f.feature === 'vray_render');
  t.like(render, { total: 4, leased: 0, borrowed: 0, free: 4, type: 'render' });
});

test('clients check seats out until the next is denied with the reason, and check in', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const a = await d.client({ user: 'alice', host: 'node-1' });
  const b = await d.client({ user: 'bob', host: 'node-2' });
  const l1 = await a.checkout('vray_render', { count: 3 });
  t.is(l1.status, 'granted');
  await b.checkout('vray_render');
  const e = await t.throwsAsync(b.checkout('vray_render', { pid: 999 }), { instanceOf: LicdError });
  t.is(e!.code, 'NO_SEATS');
  t.is(e!.message.split(';')[0], 'vray_render: 0 of 4 seats free (4 leased, 0 borrowed)');
  await l1.release();
  const s = await b.status();
  t.like(s.features.find((f) => f.feature === 'vray_render'), { leased: 1, free: 3 });
});

test('a repeated checkout from the same client and process extends its lease', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const a = await d.client();
  const first = await a.checkout('nuke_i');
  const again = await a.checkout('nuke_i');
  t.is(again.status, 'extended');
  t.is(again.id, first.id);
  const s = await a.status();
  t.like(s.features.find((f) => f.feature === 'nuke_i'), { leased: 1, free: 0 });
});

test('seats never exceed the count under many concurrent checkouts', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => d.client({ user: `u${i}`, host: `h${i}` })));
  const results = await Promise.allSettled(clients.flatMap((c) => [1, 2, 3].map((pid) => c.checkout('vray_distributed', { pid }))));
  const granted = results.filter((r) => r.status === 'fulfilled').length;
  const denied = results.filter((r) => r.status === 'rejected' && (r.reason as LicdError).code === 'NO_SEATS').length;
  t.is(granted, 8);
  t.is(denied, 36 - 8);
  const s = await clients[0]!.status();
  t.like(s.features.find((f) => f.feature === 'vray_distributed'), { leased: 8, free: 0 });
  t.deepEqual(d.service.table.checkInvariants(Date.now()), []);
});

test('a killed client frees its seat within the disconnect grace', async (t) => {
  const d = await startTestDaemon({ config: { leases: { disconnectGraceSeconds: 1 } } });
  t.teardown(() => d.dispose());
  const a = await d.client();
  await a.checkout('nuke_i');
  a.kill();
  const watcher = await d.client();
  await until(async () => (await watcher.status()).features.find((f) => f.feature === 'nuke_i')!.free === 1, 'the seat to come back', 8000, 100);
  t.pass();
});

test('a lease with no heartbeat expires after its TTL; heartbeats keep it', async (t) => {
  const d = await startTestDaemon({ config: { leases: { ttlSeconds: 3, minTtlSeconds: 1 } } });
  t.teardown(() => d.dispose());
  const a = await d.client();
  const lease = await a.checkout('vray_interface', { ttl: 2 });
  t.is(lease.view.feature, 'vray_interface');
  // This client heartbeats (every ttl/3); the lease survives well past its TTL.
  await new Promise((r) => setTimeout(r, 3000));
  let s = await a.status();
  t.is(s.features.find((f) => f.feature === 'vray_interface')!.leased, 1);
  // A raw request with no heartbeats afterwards.
  await a.request('checkout', { feature: 'vray_interface', user: 'x', host: 'y', pid: 4242, ttl: 1 });
  s = await a.status();
  t.is(s.features.find((f) => f.feature === 'vray_interface')!.leased, 2);
  await until(async () => (await a.status()).features.find((f) => f.feature === 'vray_interface')!.leased === 1, 'the unrenewed lease to expire', 8000, 200);
  t.pass();
});

test('retained availability follows every change', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const w = await d.client();
  await w.watch();
  await until(() => w.availability.get('vray_render')?.free === 4, 'initial availability');
  const a = await d.client();
  const l = await a.checkout('vray_render', { count: 2 });
  await until(() => w.availability.get('vray_render')?.free === 2, 'availability after checkout');
  await l.release();
  await until(() => w.availability.get('vray_render')?.free === 4, 'availability after checkin');
  t.is(w.server?.state, 'online');
});

test('retained availability under a run of changes: at most one message per 100 ms, and the last one right', async (t) => {
  // Each change used to publish the feature's retained message: half the daemon's socket writes
  // under load (docs/performance.md). Now at most one per 100 ms, the last change never left out.
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const w = await d.client();
  await w.watch();
  await until(() => w.availability.get('vray_render')?.free === 4, 'initial availability');
  let messages = 0;
  w.on('availability', (a: { feature: string }) => {
    if (a.feature === 'vray_render') messages++;
  });
  const a = await d.client();
  const started = Date.now();
  for (let i = 0; i < 100; i++) await (await a.checkout('vray_render', { count: 1 })).release();
  const held = await a.checkout('vray_render', { count: 3 });
  await until(() => w.availability.get('vray_render')?.free === 1, 'availability after the last change');
  const elapsed = Date.now() - started;
  t.true(messages <= Math.ceil(elapsed / 100) + 1, `${messages} retained messages for 201 changes in ${elapsed} ms`);
  t.log(`${messages} retained messages for 201 changes in ${elapsed} ms`);
  await held.release();
  await until(() => w.availability.get('vray_render')?.free === 4, 'availability after the check-in');
});

test('restart keeps live leases and drops those whose TTL passed while down', async (t) => {
  const d = await startTestDaemon({ config: { leases: { minTtlSeconds: 1 } } });
  const dataDir = d.dataDir;
  const a = await d.client();
  await a.request('checkout', { feature: 'vray_render', user: 'long', host: 'h', pid: 1, ttl: 600 });
  await a.request('checkout', { feature: 'vray_render', user: 'short', host: 'h', pid: 2, ttl: 1 });
  await d.halt();
  await new Promise((r) => setTimeout(r, 1500));
  const d2 = await startTestDaemon({ dataDir });
  t.teardown(() => d2.dispose());
  const c = await d2.client();
  const f = (await c.status()).features.find((x) => x.feature === 'vray_render')!;
  t.is(f.leased, 1);
  t.is(f.leases[0]!.user, 'long');
});
