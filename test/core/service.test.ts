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
