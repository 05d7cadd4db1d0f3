import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { ManualClock } from '../helpers/daemon.ts';

const features: FeatureLicense[] = [
  { name: 'render', product: 'Render', version: '6.2', seats: 2, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } },
];

function service() {
  const clock = new ManualClock();
  const store = new MemoryStore();
  let n = 0;
  const table = new SeatTable(features, () => `L${++n}`);
  const svc = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 'test', maxPayloadBytes: 4096, holderHash: sha256HolderHash });
  const ask = async (req: unknown, opt: { client?: string; admin?: boolean; raw?: Uint8Array } = {}) =>
    svc.handle(opt.client ?? 'c1', opt.admin ?? false, opt.raw ?? new TextEncoder().encode(JSON.stringify(req)));
  return { clock, store, table, svc, ask };
}

const HOLDER = 'holder-secret-of-the-test-client';
const co = { id: '1', op: 'checkout', feature: 'render', user: 'u', host: 'h', pid: 1, holder: HOLDER };

test('a grant is answered only after it is in the store', async (t) => {
  const { ask, store } = service();
  const a = await ask(co);
  t.true(a.ok);
  t.is(store.leases.size, 1);
  t.is(store.commits, 1);
});

test('a failed store write refuses the request and frees the seat again', async (t) => {
  const { ask, store, table, clock } = service();
  store.failNext = 1;
  const a = await ask(co);
  t.false(a.ok);
  t.is(!a.ok && a.error.code, 'STORE_FAILED');
  t.is(table.availability('render', clock.now()).leased, 0);
  t.is(store.leases.size, 0);
  t.true((await ask(co)).ok);
});

test('every kind of bad input gets a stable code, and the service keeps serving', async (t) => {
  const { ask } = service();
  const code = async (req: unknown, opt = {}) => {
    const a = await ask(req, opt);
    return a.ok ? 'ok' : a.error.code;
  };
  t.is(await code(null, { raw: new TextEncoder().encode('{not json') }), 'BAD_JSON');
  t.is(await code(null, { raw: new Uint8Array([0xff, 0xfe, 0x7b]) }), 'BAD_JSON');
  t.is(await code([1, 2]), 'BAD_REQUEST');
  t.is(await code({ op: 'status' }), 'BAD_REQUEST');
  t.is(await code({ id: '1', op: 'fly' }), 'UNKNOWN_OP');
  t.is(await code({ ...co, feature: 42 }), 'BAD_REQUEST');
  t.is(await code({ ...co, count: 'two' }), 'BAD_REQUEST');
  t.is(await code({ ...co, count: 0 }), 'BAD_REQUEST');
  t.is(await code({ ...co, count: 1.5 }), 'BAD_REQUEST');
  t.is(await code({ ...co, pid: -1 }), 'BAD_REQUEST');
  t.is(await code({ ...co, feature: 'a/b#' }), 'BAD_REQUEST');
  t.is(await code({ ...co, feature: 'unknown_feature' }), 'UNKNOWN_FEATURE');
  t.is(await code({ ...co, version: 'latest' }), 'BAD_REQUEST');
  t.is(await code(null, { raw: new Uint8Array(5000).fill(32) }), 'PAYLOAD_TOO_LARGE');
  t.is(await code({ id: '1', op: 'status' }, { client: 'bad/id' }), 'BAD_CLIENT_ID');
  t.is(await code({ id: '1', op: 'lease.revoke', lease: 'x' }), 'FORBIDDEN');
  t.is(await code({ id: '1', op: 'heartbeat', leases: [1] }), 'BAD_REQUEST');
  t.is(await code({ id: '1', op: 'status' }), 'ok');
});

test('errors name the field and echo the request id', async (t) => {
  const { ask } = service();
  const a = await ask({ ...co, id: 'req-7', count: 'two' });
  t.false(a.ok);
  if (!a.ok) {
    t.is(a.id, 'req-7');
    t.is(a.op, 'checkout');
    t.regex(a.error.message, /count must be a whole number, got the string "two"/);
  }
});

test('TTL asked for is clamped to the policy', async (t) => {
  const { ask, clock } = service();
  const a = await ask({ ...co, ttl: 1 });
  t.true(a.ok);
  if (a.ok) {
    const until = Date.parse((a.result as { lease: { until: string } }).lease.until);
    t.is(until - clock.now(), defaultLeasePolicy.minTtlSeconds * 1000);
  }
});

test('without the dongle, checkouts are refused but heartbeats continue for the grace', async (t) => {
  const { ask, svc, clock } = service();
  const g = await ask(co);
  t.true(g.ok);
  svc.setDongle({ present: false, serial: 'X', emulated: true, reason: 'unplugged' });
  const d = await ask({ ...co, pid: 2 });
  t.is(!d.ok && d.error.code, 'DONGLE_ABSENT');
  t.regex(!d.ok ? d.error.message : '', /dongle is absent \(unplugged\)/);
  t.true((await ask({ id: '2', op: 'heartbeat', holder: HOLDER })).ok);
  clock.advance(defaultLeasePolicy.dongleGraceSeconds * 1000 + 1);
  const h = await ask({ id: '3', op: 'heartbeat', holder: HOLDER });
  t.is(!h.ok && h.error.code, 'DONGLE_ABSENT');
  svc.setDongle({ present: true, serial: 'X', emulated: true });
  t.true((await ask({ ...co, pid: 2 })).ok);
  t.deepEqual(svc.serverState().warnings, []);
});

test('a client gone by its will loses its leases after the grace, through reap', async (t) => {
  const { ask, svc, clock, store } = service();
  await ask(co);
  await svc.clientGone('c1', new TextEncoder().encode(JSON.stringify({ gone: true, holder: HOLDER })));
  clock.advance(defaultLeasePolicy.disconnectGraceSeconds * 1000);
  const r = await svc.reap();
  t.is(r.leases.length, 1);
  t.is(store.leases.size, 0);
});

test('a BAD_CLIENT_ID answer carries the request id, so the client can match it', async (t) => {
  const { ask } = service();
  const a = await ask({ id: 'req-9', op: 'status' }, { client: 'bad/id' });
  t.false(a.ok);
  t.is(a.id, 'req-9');
  t.is(a.op, 'status');
  t.is(!a.ok && a.error.code, 'BAD_CLIENT_ID');
});

test('only the holder that checked a lease out can renew or check it in; another holder learns nothing', async (t) => {
  const { ask, table, clock } = service();
  const g = await ask(co);
  const id = g.ok ? (g.result as { lease: { id: string } }).lease.id : '';
  const other = 'another-holder-of-the-same-client-id';
  const hb = await ask({ id: '2', op: 'heartbeat', holder: other, leases: [id] });
  t.deepEqual(hb.ok && hb.result, { renewed: [], unknown: [id] }, 'a lease of another holder is reported like no lease at all');
  const ci = await ask({ id: '3', op: 'checkin', holder: other });
  t.deepEqual(ci.ok && ci.result, { released: [], unknown: [] });
  const co2 = await ask({ ...co, id: '4', holder: other });
  t.is(co2.ok && (co2.result as { status: string }).status, 'granted', 'a checkout by another holder never extends the lease');
  t.is(table.availability('render', clock.now()).leased, 2);
  const missing = await ask({ id: '5', op: 'checkin' });
  t.is(!missing.ok && missing.error.code, 'BAD_REQUEST');
  t.regex(!missing.ok ? missing.error.message : '', /^holder must be the client's holder secret/);
  const short = await ask({ id: '6', op: 'checkin', holder: 'short-secret' });
  t.false(JSON.stringify(short).includes('short-secret'), 'a refused holder is not echoed');
  const mine = await ask({ id: '7', op: 'checkin', holder: HOLDER });
  t.deepEqual(mine.ok && (mine.result as { released: string[] }).released, [id]);
  t.false(JSON.stringify([g, hb, ci, co2, mine]).includes(HOLDER), 'no answer holds the secret');
});

test('a lease stored before holder secrets is bound to the first holder of its client id that renews it', async (t) => {
  const { ask, table, clock } = service();
  table.restore([{ id: 'legacy', feature: 'render', count: 1, clientId: 'c1', pid: 1, user: 'u', host: 'h', since: clock.now(), expiresAt: clock.now() + 60_000, ttlMs: 60_000, disconnectedAt: null }], [], clock.now());
  const first = await ask({ id: '1', op: 'heartbeat', holder: HOLDER, leases: ['legacy'] });
  t.deepEqual(first.ok && (first.result as { renewed: Array<{ id: string }> }).renewed.map((r) => r.id), ['legacy']);
  t.is(typeof table.getLease('legacy')!.holder, 'string', 'the lease now stores the hash of its holder');
  t.not(table.getLease('legacy')!.holder, HOLDER, 'only a hash is stored');
  const later = await ask({ id: '2', op: 'heartbeat', holder: 'someone-else-with-the-client-id', leases: ['legacy'] });
  t.deepEqual(later.ok && later.result, { renewed: [], unknown: ['legacy'] });
  const again = await ask({ ...co, id: '3' });
  t.is(again.ok && (again.result as { status: string; lease: { id: string } }).lease.id, 'legacy', 'its holder still extends it by checking out again');
});
