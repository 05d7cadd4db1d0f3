import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { EventBus, type SeatEvent } from '../../src/core/events.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { LevelStore } from '../../src/store/level-store.ts';
import { ManualClock } from '../helpers/daemon.ts';

const features: FeatureLicense[] = [
  { name: 'render', product: 'Render', version: '6.2', seats: 1, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } },
];
const HOLDER = 'holder-secret-of-the-test-client';
const co = { id: '1', op: 'checkout', feature: 'render', user: 'ann', host: 'n1', pid: 1, holder: HOLDER };

/** A service whose one sink writes a history record per event and keeps what it was told. */
function service() {
  const clock = new ManualClock();
  const store = new MemoryStore();
  let n = 0;
  const table = new SeatTable(features, () => `L${++n}`);
  const told: Array<{ how: string; types: string[]; ok?: boolean }> = [];
  const events = new EventBus();
  let seq = 0;
  events.add({
    prepare: (es) => {
      told.push({ how: 'prepare', types: es.map((e) => e.type) });
      return es.map((e) => ({ kind: 'rec.put' as const, space: 'history' as const, key: String(++seq).padStart(4, '0'), value: e.type }));
    },
    settle: (es, ok) => told.push({ how: 'settle', types: es.map((e) => e.type), ok }),
    note: (e: SeatEvent) => told.push({ how: 'note', types: [e.type] }),
  });
  const svc = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 'test', holderHash: sha256HolderHash, events });
  const ask = (req: unknown, opt: { client?: string; admin?: boolean } = {}) => svc.handle(opt.client ?? 'c1', opt.admin ?? false, new TextEncoder().encode(JSON.stringify(req)));
  return { clock, store, svc, ask, told };
}

async function records(store: { scan: MemoryStore['scan'] }): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const [, v] of store.scan('history')) out.push(v);
  return out;
}

test('a grant, a denial, a check-in and an admin revoke reach the sinks; records go in the same commit', async (t) => {
  const { ask, store, told } = service();
  t.true((await ask(co)).ok);
  t.is(store.commits, 1, 'the record shares the grant\'s commit');
  t.deepEqual(await records(store), ['lease.granted']);
  const denied = await ask({ ...co, id: '2', pid: 2, user: 'bob' }, { client: 'c2' });
  t.false(denied.ok);
  t.deepEqual(told.find((x) => x.how === 'note'), { how: 'note', types: ['checkout.denied'] });
  t.true((await ask({ id: '3', op: 'checkin', holder: HOLDER })).ok);
  t.deepEqual(await records(store), ['lease.granted', 'lease.ended']);
  t.true((await ask({ ...co, id: '4' })).ok);
  const lease = [...store.leases.keys()][0]!;
  t.true((await ask({ id: '5', op: 'lease.revoke', lease }, { client: 'admin-1', admin: true })).ok);
  t.deepEqual(await records(store), ['lease.granted', 'lease.ended', 'lease.granted', 'lease.ended']);
  const last = told.filter((x) => x.how === 'note').at(-1);
  t.deepEqual(last, { how: 'note', types: ['admin'] });
});

test('a failed write settles the events as not happened, and writes no record', async (t) => {
  const { ask, store, told } = service();
  store.failNext = 1;
  const a = await ask(co);
  t.false(a.ok);
  t.deepEqual(told.filter((x) => x.how === 'settle'), [{ how: 'settle', types: ['lease.granted'], ok: false }]);
  t.deepEqual(await records(store), []);
  // The refusal of the failed write is a denial with its code.
  t.truthy(told.find((x) => x.how === 'note' && x.types[0] === 'checkout.denied'));
});

test('LevelStore keeps records beside the seat state: scanned by range, never loaded at start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'licd-rec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await LevelStore.open(join(dir, 'db'));
  await store.commit([
    { kind: 'meta.put', key: 'x', value: 1 },
    ...['a', 'b', 'c', 'd'].map((k) => ({ kind: 'rec.put' as const, space: 'history' as const, key: k, value: k.toUpperCase() })),
    { kind: 'rec.put', space: 'audit', key: 'a', value: 'audit-a' },
  ]);
  await store.commit([{ kind: 'rec.del', space: 'history', key: 'b' }]);
  const scan = async (space: 'history' | 'audit', r = {}) => {
    const out: string[] = [];
    for await (const [k, v] of store.scan(space, r)) out.push(`${k}=${String(v)}`);
    return out;
  };
  t.deepEqual(await scan('history'), ['a=A', 'c=C', 'd=D']);
  t.deepEqual(await scan('history', { gte: 'c' }), ['c=C', 'd=D']);
  t.deepEqual(await scan('history', { lt: 'd', reverse: true, limit: 1 }), ['c=C']);
  t.deepEqual(await scan('audit'), ['a=audit-a']);
  const loaded = await store.load();
  t.deepEqual([...loaded.meta.keys()].sort(), ['schema', 'x'], 'no record is loaded at start');
  await store.close();
});
