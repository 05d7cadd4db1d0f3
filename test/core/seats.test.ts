import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import { EMPTY_POLICY } from '../../src/core/policy.ts';
import { restoredEnd, SeatTable, STORED_TTLS } from '../../src/core/seats.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const features: FeatureLicense[] = [
  { name: 'render', product: 'Render', version: '6.2', seats: 3, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } },
  { name: 'old', product: 'Old', version: '1.0', seats: 1, expires: T0 - 1, type: 'interface', borrow: { allowed: false, maxHours: 0 } },
];

function table(): SeatTable {
  let n = 0;
  return new SeatTable(features, () => `id${++n}`);
}

/** The same pseudo-random sequence on every run: rnd(n) is an integer in [0, n). */
function seeded(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
}
const req = (over: Partial<Parameters<SeatTable['checkout']>[0]> = {}) => ({ clientId: 'c1', holder: 'h1', pid: 1, user: 'u', host: 'h', feature: 'render', count: 1, ttlMs: 60_000, ...over });

test('checkout takes seats and says what is free when none are', (t) => {
  const s = table();
  s.checkout(req({ count: 2 }), T0);
  s.checkout(req({ clientId: 'c2' }), T0);
  const e = t.throws(() => s.checkout(req({ clientId: 'c3' }), T0), { instanceOf: LicdError });
  t.is(e!.code, 'NO_SEATS');
  t.true(e!.message.startsWith('render: 0 of 3 seats free (3 leased, 0 borrowed)'));
});

test('same client and process extends; another process takes another seat', (t) => {
  const s = table();
  const a = s.checkout(req(), T0).result;
  const b = s.checkout(req(), T0 + 1000).result;
  t.is(b.status, 'extended');
  t.is(b.lease.id, a.lease.id);
  t.is(b.lease.expiresAt, T0 + 61_000);
  t.is(s.checkout(req({ pid: 2 }), T0).result.status, 'granted');
  t.is(s.availability('render', T0).leased, 2);
});

test('growing a lease needs free seats for the difference only', (t) => {
  const s = table();
  s.checkout(req({ count: 2 }), T0);
  s.checkout(req({ clientId: 'c2' }), T0);
  t.throws(() => s.checkout(req({ count: 3 }), T0), { message: /0 of 3 seats free/ });
  t.is(s.checkout(req({ count: 1 }), T0).result.lease.count, 1);
  t.is(s.availability('render', T0).free, 1);
});

test('unknown feature, version too new and expired license are refused with the reason', (t) => {
  const s = table();
  t.is(t.throws(() => s.checkout(req({ feature: 'nope' }), T0), { instanceOf: LicdError })!.code, 'UNKNOWN_FEATURE');
  const v = t.throws(() => s.checkout(req({ version: '7.0' }), T0), { instanceOf: LicdError })!;
  t.is(v.code, 'VERSION_NOT_LICENSED');
  t.regex(v.message, /up to 6\.2/);
  t.notThrows(() => s.checkout(req({ version: '6.1.9' }), T0));
  t.is(t.throws(() => s.checkout(req({ feature: 'old' }), T0), { instanceOf: LicdError })!.code, 'FEATURE_EXPIRED');
});

test('heartbeats renew only the caller\'s leases', (t) => {
  const s = table();
  const mine = s.checkout(req(), T0).result.lease;
  const theirs = s.checkout(req({ clientId: 'c2' }), T0).result.lease;
  const r = s.heartbeat('c1', 'h1', [mine.id, theirs.id], T0 + 30_000).result;
  t.deepEqual(r.renewed.map((l) => l.id), [mine.id]);
  t.deepEqual(r.unknown, [theirs.id]);
  t.is(s.getLease(mine.id)!.expiresAt, T0 + 90_000);
  t.is(s.getLease(theirs.id)!.expiresAt, T0 + 60_000);
});

test('checkin releases only the caller\'s leases', (t) => {
  const s = table();
  s.checkout(req(), T0);
  const theirs = s.checkout(req({ clientId: 'c2' }), T0).result.lease;
  const r = s.checkin('c1', 'h1', { ids: [theirs.id] }).result;
  t.deepEqual(r.released, []);
  t.deepEqual(r.unknown, [theirs.id]);
  t.is(s.checkin('c1', 'h1', {}).result.released.length, 1);
  t.is(s.availability('render', T0).leased, 1);
});

test('reap ends leases at their TTL and after the disconnect grace', (t) => {
  const s = table();
  const a = s.checkout(req(), T0).result.lease;
  const b = s.checkout(req({ clientId: 'c2' }), T0).result.lease;
  s.clientGone('c2', 'h1', T0 + 5000, 10_000);
  t.deepEqual(s.reap(T0 + 14_999).result.leases, []);
  t.deepEqual(s.reap(T0 + 15_000).result.leases.map((l) => l.id), [b.id]);
  t.deepEqual(s.reap(T0 + 59_999).result.leases, []);
  t.deepEqual(s.reap(T0 + 60_000).result.leases.map((l) => l.id), [a.id]);
  t.is(s.availability('render', T0).leased, 0);
});

test('a client that comes back after its will keeps its lease by heartbeating', (t) => {
  const s = table();
  const a = s.checkout(req(), T0).result.lease;
  s.clientGone('c1', 'h1', T0 + 1000, 10_000);
  s.heartbeat('c1', 'h1', undefined, T0 + 2000);
  t.deepEqual(s.reap(T0 + 20_000).result.leases, []);
  t.is(s.getLease(a.id)!.disconnectedAt, null);
});

test('reap after a long jump still finds everything due', (t) => {
  const s = table();
  s.checkout(req(), T0);
  s.reap(T0);
  t.is(s.reap(T0 + 10 * 86400_000).result.leases.length, 1);
});

test('undo puts the table back exactly', (t) => {
  const s = table();
  const first = s.checkout(req(), T0);
  const before = s.availability('render', T0);
  const ch = s.checkout(req({ count: 3 }), T0 + 1);
  ch.undo();
  t.deepEqual(s.availability('render', T0), before);
  t.is(s.getLease(first.result.lease.id)!.count, 1);
  t.deepEqual(s.checkInvariants(T0), []);
});

test('an undone heartbeat puts back the end, the disconnect mark and the activity, and the lease ends then', (t) => {
  const s = table();
  const a = s.checkout(req(), T0).result.lease;
  s.heartbeat('c1', 'h1', undefined, T0 + 1000, 5000);
  s.clientGone('c1', 'h1', T0 + 2000, 10_000);
  const before = structuredClone(s.getLease(a.id));
  const hb = s.heartbeat('c1', 'h1', undefined, T0 + 3000);
  t.deepEqual(hb.result.renewed, [{ id: a.id, expiresAt: T0 + 63_000 }]);
  t.is(s.getLease(a.id)!.disconnectedAt, null);
  hb.undo();
  t.deepEqual(s.getLease(a.id), before);
  t.deepEqual(s.reap(T0 + 11_999).result.leases, []);
  t.deepEqual(s.reap(T0 + 12_000).result.leases.map((l) => l.id), [a.id]);
  t.deepEqual(s.checkInvariants(T0), []);
});

test('a heartbeat undone after the reaper passed the old end still ends the lease', (t) => {
  const s = table();
  const a = s.checkout(req({ ttlMs: 10_000 }), T0).result.lease;
  // The heartbeat comes late (the lease was due at T0 + 10 s, not yet reaped); its write fails
  // after a reap passed that second.
  const hb = s.heartbeat('c1', 'h1', undefined, T0 + 10_500);
  t.deepEqual(s.reap(T0 + 11_000).result.leases, []);
  hb.undo();
  t.deepEqual(s.reap(T0 + 12_000).result.leases.map((l) => l.id), [a.id]);
  t.is(s.availability('render', T0).leased, 0);
});

test('changes undone at random, newest first, leave the table as it was', (t) => {
  const s = table();
  let now = T0;
  const rnd = seeded(7);
  const snapshot = () => JSON.stringify(s.allLeases().sort((x, y) => (x.id < y.id ? -1 : 1)));
  for (let i = 0; i < 3000; i++) {
    now += rnd(3000);
    const before = snapshot();
    // A batch of up to four changes, all undone newest first (a failed group write), or kept.
    const undos: Array<() => void> = [];
    for (let k = rnd(4) + 1; k > 0; k--) {
      const client = `c${rnd(4)}`;
      const op = rnd(5);
      try {
        if (op === 0) undos.push(s.checkout(req({ clientId: client, pid: rnd(2), count: 1 + rnd(2), ttlMs: 5_000 + rnd(20_000) }), now).undo);
        else if (op === 1 || op === 2) undos.push(s.heartbeat(client, 'h1', undefined, now, rnd(2) ? rnd(100) * 1000 : undefined).undo);
        else if (op === 3) undos.push(s.clientGone(client, 'h1', now, 2000).undo);
        else undos.push(s.reap(now).undo);
      } catch (e) {
        t.true(e instanceof LicdError);
      }
    }
    if (rnd(2) === 0) {
      for (let k = undos.length - 1; k >= 0; k--) undos[k]!();
      if (snapshot() !== before) return t.fail(`step ${i}: the undo did not put the table back`);
    }
    t.deepEqual(s.checkInvariants(now), []);
  }
  // Every lease still ends: nothing was lost from the expiry buckets.
  s.reap(now + 86_400_000);
  t.deepEqual(s.allLeases(), []);
});

test('restore drops leases whose TTL passed while down', (t) => {
  const s = table();
  const live = { id: 'a', feature: 'render', count: 1, clientId: 'c', pid: 1, user: 'u', host: 'h', since: T0, expiresAt: T0 + 60_000, ttlMs: 60_000, disconnectedAt: null };
  const dead = { ...live, id: 'b', expiresAt: T0 - 1 };
  const r = s.restore([live, dead], [], T0);
  t.deepEqual(r.result.dropped.map((l) => l.id), ['b']);
  t.deepEqual(r.mutations, [{ kind: 'lease.del', id: 'b' }]);
  t.is(s.availability('render', T0).leased, 1);
});

test('invariant holds over a long random sequence of operations', (t) => {
  const s = table();
  let now = T0;
  const rnd = seeded(42);
  for (let i = 0; i < 5000; i++) {
    now += rnd(5000);
    const client = `c${rnd(6)}`;
    const op = rnd(5);
    try {
      if (op === 0 || op === 1) s.checkout(req({ clientId: client, pid: rnd(3), count: 1 + rnd(2), ttlMs: 10_000 + rnd(30_000) }), now);
      else if (op === 2) s.heartbeat(client, 'h1', undefined, now);
      else if (op === 3) s.checkin(client, 'h1', {});
      else s.reap(now);
    } catch (e) {
      t.true(e instanceof LicdError);
    }
    const a = s.availability('render', now);
    if (a.leased + a.borrowed > a.total) t.fail(`over-granted at step ${i}`);
  }
  t.deepEqual(s.checkInvariants(now), []);
});

test('a borrow of a feature no longer in the license file is kept, and is no breach of a count', (t) => {
  const s = table();
  const borrow = {
    id: 'b1', feature: 'gone', count: 2, user: 'u', hostId: 'h', hostName: 'h', clientKey: 'k', clientId: null, since: T0, expiresAt: T0 + 3600_000,
    lost: false, autoRenew: false, via: 'online' as const, requestId: 'r', tokenId: 't', tokenIssuedAt: T0, hours: 1,
  };
  const r = s.restore([], [borrow], T0);
  t.deepEqual(r.mutations, []);
  t.is(s.getBorrow('b1')?.feature, 'gone');
  t.deepEqual(s.checkInvariants(T0), []);
});

test('an expired feature has no free seats in its availability; a live one keeps its count', (t) => {
  const s = new SeatTable([features[0]!, { ...features[1]!, seats: 3, expires: T0 + 1000 }], () => 'x');
  t.is(s.availability('old', T0).free, 3, 'before the end every seat is free');
  const after = s.availability('old', T0 + 1000);
  t.is(after.free, 0, 'at the end none is');
  t.is(after.total, 3, 'the total still says what the license had');
  t.is(after.expires, new Date(T0 + 1000).toISOString());
  t.is(s.availability('render', T0 + 1000).free, 3);
});

test('a heartbeat writes its lease STORED_TTLS TTLs ahead once that write is durable; the heartbeats it covers write nothing', (t) => {
  const s = table();
  const a = s.checkout(req({ ttlMs: 60_000 }), T0).result.lease;
  const first = s.heartbeat('c1', 'h1', undefined, T0 + 20_000);
  t.deepEqual(first.result.renewed, [{ id: a.id, expiresAt: T0 + 80_000 }]);
  t.is(first.mutations.length, 1);
  const written = (first.mutations[0] as { lease: { storedUntil?: number; expiresAt: number } }).lease;
  t.is(written.expiresAt, T0 + 80_000);
  t.is(written.storedUntil, T0 + 20_000 + STORED_TTLS * 60_000);
  // Not durable yet: a second heartbeat meanwhile writes again (it must not be answered on a write still under way).
  t.is(s.getLease(a.id)!.storedUntil, undefined);
  t.is(s.heartbeat('c1', 'h1', undefined, T0 + 21_000).mutations.length, 1);
  first.durable!();
  t.is(s.getLease(a.id)!.storedUntil, T0 + 200_000);
  // Every heartbeat whose new end is within it: renewed in memory, nothing to write.
  for (let at = T0 + 40_000; at <= T0 + 140_000; at += 20_000) {
    const hb = s.heartbeat('c1', 'h1', undefined, at);
    t.deepEqual(hb.result.renewed, [{ id: a.id, expiresAt: at + 60_000 }]);
    t.is(hb.mutations.length, 0, `heartbeat at +${(at - T0) / 1000} s`);
    t.is(hb.durable, undefined);
  }
  t.is(s.getLease(a.id)!.expiresAt, T0 + 200_000);
  t.deepEqual(s.reap(T0 + 199_999).result.leases, []);
  // The next one is past it: written, again three TTLs ahead.
  const next = s.heartbeat('c1', 'h1', undefined, T0 + 160_000);
  t.is((next.mutations[0] as { lease: { storedUntil?: number } }).lease.storedUntil, T0 + 160_000 + 180_000);
});

test('a heartbeat after a last will writes (the disconnect mark must leave the disk); a will, a lingering check-in and a clock step write the end exactly', (t) => {
  const s = table();
  s.setPolicy({ ...EMPTY_POLICY, linger: new Map([['render', { ms: 30_000, line: 1 }]]) });
  const a = s.checkout(req(), T0).result.lease;
  s.heartbeat('c1', 'h1', undefined, T0 + 20_000).durable!();
  t.is(s.getLease(a.id)!.storedUntil, T0 + 200_000);
  const gone = s.clientGone('c1', 'h1', T0 + 21_000, 10_000);
  t.is((gone.mutations[0] as { lease: { storedUntil?: number } }).lease.storedUntil, undefined);
  const back = s.heartbeat('c1', 'h1', undefined, T0 + 25_000);
  t.is(back.mutations.length, 1, 'the disconnect mark is cleared on disk too');
  t.is((back.mutations[0] as { lease: { disconnectedAt: number | null } }).lease.disconnectedAt, null);
  back.durable!();
  t.is(s.getLease(a.id)!.storedUntil, T0 + 205_000);
  const shifted = s.shift(3600_000);
  t.is((shifted.mutations.find((m) => m.kind === 'lease.put') as { lease: { storedUntil?: number } }).lease.storedUntil, undefined);
  s.heartbeat('c1', 'h1', undefined, T0 + 3630_000).durable!();
  const lingered = s.checkin('c1', 'h1', {}, T0 + 3640_000);
  t.deepEqual(lingered.result.lingering.map((l) => [l.expiresAt, l.storedUntil]), [[T0 + 3670_000, undefined]]);
});

test('restoredEnd: a lease renewed without writes is kept until what it was written ahead to, or one TTL after the start, never less than its stored end', (t) => {
  const stored = { ...table().checkout(req({ ttlMs: 60_000 }), T0).result.lease, expiresAt: T0 + 80_000, storedUntil: T0 + 200_000, activeAt: T0 + 10_000 };
  // Started soon after: one TTL from the start.
  const soon = restoredEnd(stored, T0 + 90_000);
  t.is(soon.expiresAt, T0 + 150_000);
  t.false('activeAt' in soon, 'its activity mark may be older than the last report: judged again from the next heartbeat');
  // Started late: no later than it was written ahead to.
  t.is(restoredEnd(stored, T0 + 190_000).expiresAt, T0 + 200_000);
  t.is(restoredEnd(stored, T0 + 500_000).expiresAt, T0 + 200_000, 'past: the start drops it');
  // Never less than the end on disk.
  t.is(restoredEnd({ ...stored, expiresAt: T0 + 80_000 }, T0 - 100_000).expiresAt, T0 + 80_000);
  // Nothing written ahead, or a lingering seat: as stored.
  const exact = { ...stored, storedUntil: undefined };
  t.is(restoredEnd(exact, T0 + 90_000), exact);
  const lingering = { ...stored, lingering: true as const };
  t.is(restoredEnd(lingering, T0 + 90_000), lingering);
});
