/**
 * The service's rules for a lost and regained broker (issue 9, finding 2), under an injected
 * clock: no lease ends while the daemon cannot hear its clients, every lease gets a fresh window
 * (one committed change) when it subscribes again, and a will of an older connection is stale.
 */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, RECONNECT_WINDOW_MS, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { ManualClock } from '../helpers/daemon.ts';

const features: FeatureLicense[] = [
  { name: 'render', product: 'Render', version: '6.2', seats: 1, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } },
];

function service() {
  const clock = new ManualClock();
  const store = new MemoryStore();
  let n = 0;
  const table = new SeatTable(features, () => `L${++n}`);
  const svc = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 'test', holderHash: sha256HolderHash });
  const ask = async (req: Record<string, unknown>, client = 'c1') => svc.handle(client, false, new TextEncoder().encode(JSON.stringify(req)));
  return { clock, store, table, svc, ask };
}

const HOLDER = 'holder-secret-of-the-test-client';
const co = { id: '1', op: 'checkout', feature: 'render', user: 'u', host: 'h', pid: 1, holder: HOLDER };
/** The will the SDK leaves: its holder and the number of its connection. */
const will = (conn?: number) => new TextEncoder().encode(JSON.stringify({ gone: true, holder: HOLDER, ...(conn === undefined ? {} : { conn }) }));
const grace = defaultLeasePolicy.disconnectGraceSeconds * 1000;

test('wills published by a stopping broker: no lease ends while the broker is away, and each gets a fresh window when it is back', async (t) => {
  const { ask, svc, clock, store, table } = service();
  t.true((await ask(co)).ok);
  await svc.clientGone('c1', will()); // the broker publishes every will as it stops
  svc.brokerLost();
  clock.advance(grace * 5); // down far longer than the grace and the TTL
  t.deepEqual((await svc.reap()).leases, [], 'nothing ends while the daemon cannot hear heartbeats');
  const commits = store.commits;
  await svc.brokerBack();
  t.is(store.commits, commits + 1, 'the fresh window is one committed change');
  const l = table.allLeases()[0]!;
  t.is(l.expiresAt, clock.now() + Math.max(grace, RECONNECT_WINDOW_MS));
  t.is(store.leases.get(l.id)?.expiresAt, l.expiresAt, 'and it is in the store');
  clock.advance(RECONNECT_WINDOW_MS - 1000);
  t.deepEqual((await svc.reap()).leases, []);
  // The client reconnects and heartbeats: active again, never reclaimed.
  const hb = await ask({ id: '2', op: 'heartbeat', holder: HOLDER, conn: 1 });
  t.true(hb.ok && (hb.result as { renewed: unknown[] }).renewed.length === 1);
  clock.advance(RECONNECT_WINDOW_MS);
  t.deepEqual((await svc.reap()).leases, []);
  t.is(table.allLeases()[0]!.disconnectedAt, null);
});

test('a lease whose client does not come back after the broker restart ends after the window', async (t) => {
  const { ask, svc, clock } = service();
  await ask(co);
  await svc.clientGone('c1', will());
  svc.brokerLost();
  await svc.brokerBack();
  clock.advance(Math.max(grace, RECONNECT_WINDOW_MS));
  t.is((await svc.reap()).leases.length, 1);
});

test('a will of an older connection, arriving after the client sent requests on a newer one, marks nothing', async (t) => {
  const { ask, svc, clock, table } = service();
  t.true((await ask({ ...co, conn: 0 })).ok);
  t.true((await ask({ id: '2', op: 'heartbeat', holder: HOLDER, conn: 1 })).ok); // reconnected: connection 1
  await svc.clientGone('c1', will(0)); // the broker publishes connection 0's will late
  t.is(table.allLeases()[0]!.disconnectedAt, null);
  clock.advance(grace + 1);
  t.deepEqual((await svc.reap()).leases, []);
  // The current connection's will does count.
  await svc.clientGone('c1', will(1));
  t.not(table.allLeases()[0]!.disconnectedAt, null);
  clock.advance(grace);
  t.is((await svc.reap()).leases.length, 1);
});

test('a will that arrives after the broker is back does not cut the fresh window short', async (t) => {
  const { ask, svc, clock, table } = service();
  await ask(co);
  svc.brokerLost();
  await svc.brokerBack();
  const end = clock.now() + Math.max(grace, RECONNECT_WINDOW_MS);
  clock.advance(1000);
  await svc.clientGone('c1', will()); // queued by the broker, delivered after licd subscribed again
  t.not(table.allLeases()[0]!.disconnectedAt, null);
  t.is(table.allLeases()[0]!.expiresAt, end);
  clock.advance(RECONNECT_WINDOW_MS - 2000);
  t.deepEqual((await svc.reap()).leases, []);
  t.true((await ask({ id: '2', op: 'heartbeat', holder: HOLDER })).ok);
  t.is(table.allLeases()[0]!.disconnectedAt, null);
});

test('BUSY refusals carry the request id and op', (t) => {
  const { svc } = service();
  const a = svc.refuse('c1', new TextEncoder().encode('{"id":"r-7","op":"status"}'), 'BUSY', 'too many');
  t.like(a, { id: 'r-7', ok: false, op: 'status', error: { code: 'BUSY' } });
});
