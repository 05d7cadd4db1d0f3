/** The pure rules behind issue 9's findings 6 to 9: blocks, revoked leases, counter verdicts, releases. */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import { applyRelease, CounterGate, CounterStepError, judgeCounter, META_COUNTER, META_COUNTER_SERIAL, parseReleaseBody, quarantineFor, type Quarantine } from '../../src/core/integrity.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { META_REVOCATIONS, SeatTable } from '../../src/core/seats.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const features: FeatureLicense[] = [{ name: 'render', product: 'Render', version: '6.2', seats: 3, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } }];
const table = () => {
  let n = 0;
  return new SeatTable(features, () => `id${++n}`);
};
const req = (over: Partial<Parameters<SeatTable['checkout']>[0]> = {}) => ({ clientId: 'c1', holder: 'hash-of-c1', pid: 1, user: 'u', host: 'h', feature: 'render', count: 1, ttlMs: 60_000, ...over });

test('a revoke with a block refuses the same user@host until its end, is undone with a failed write, and is restored from its record', (t) => {
  const s = table();
  const lease = s.checkout(req(), T0).result.lease;
  const change = s.revokeLease(lease.id, { now: T0, blockMs: 30 * 60_000, by: 'admin1' });
  const e = t.throws(() => s.checkout(req({ pid: 2 }), T0 + 1000), { instanceOf: LicdError });
  t.is(e!.code, 'BLOCKED');
  t.regex(e!.message, /render: an admin revoked the seat of u@h and blocked this user and host from render until 2026-06-01T12:30:00.000Z/);
  t.notThrows(() => s.checkout(req({ clientId: 'c2', user: 'v' }), T0), 'another user is not blocked');
  t.truthy(s.revokedLease(lease.id, 'c1', T0 + 1000));
  t.is(s.revokedLease(lease.id, 'other-client', T0 + 1000), null, 'only its holder learns why');
  t.notThrows(() => s.checkout(req({ pid: 3 }), T0 + 30 * 60_000 + 1), 'the block ends');

  // Persisted in the same batch as the lease's removal; a fresh table reads it back.
  const record = change.mutations.find((m) => m.kind === 'meta.put' && m.key === META_REVOCATIONS);
  t.truthy(record);
  const again = table();
  again.restoreRevocations((record as { value: unknown }).value, T0 + 1000);
  t.is(t.throws(() => again.checkout(req(), T0 + 1000))!.message.includes('blocked'), true);

  // A failed write undoes the block too.
  const u = table();
  const l2 = u.checkout(req(), T0).result.lease;
  u.revokeLease(l2.id, { now: T0, blockMs: 60_000 }).undo();
  t.notThrows(() => u.checkout(req({ pid: 9 }), T0));
  t.is(u.revokedLease(l2.id, 'c1', T0), null);
});

test('counter verdicts with the serial: another dongle is named; "went back" only for the same dongle', (t) => {
  const meta = (o: Record<string, string>) => new Map<string, unknown>(Object.entries(o));
  t.is(judgeCounter(meta({ [META_COUNTER]: '2', [META_COUNTER_SERIAL]: 'A' }), 1n, 'B').kind, 'other');
  t.is(judgeCounter(meta({ [META_COUNTER]: '2', [META_COUNTER_SERIAL]: 'B' }), 2n, 'B').kind, 'ok');
  const lic = [features[0]!];
  const r = (v: ReturnType<typeof judgeCounter>) => quarantineFor(v, lic, [], T0, 'B')!.reason;
  t.regex(r(judgeCounter(meta({}), 4n, 'B')), /no record of this dongle's counter 4: a new or wiped database, or the dongle was used on another box/);
  t.regex(r(judgeCounter(meta({ [META_COUNTER]: '2', [META_COUNTER_SERIAL]: 'A' }), 1n, 'B')), /bound to dongle A \(counter 2\), not to this dongle B \(counter 1\)/);
  t.regex(r(judgeCounter(meta({ [META_COUNTER]: '9', [META_COUNTER_SERIAL]: 'B' }), 3n, 'B')), /the counter went back/);
  t.regex(r(judgeCounter(meta({ [META_COUNTER]: '9' }), 3n, 'B')), /used with another dongle, or the counter went back/);
  const q = quarantineFor(judgeCounter(meta({}), 4n, 'B'), lic, [], T0, 'B')!;
  t.is(q.counter, '4');
  t.is(q.dongleSerial, 'B');
});

test('a release applies to its dongle and the counter of the current quarantine, once, within its time', (t) => {
  const q: Quarantine = {
    reason: 'wiped',
    since: T0,
    dongleSerial: 'S1',
    counter: '7',
    holds: [
      { feature: 'a', seats: 2, until: T0 + 86400_000 },
      { feature: 'b', seats: 1, until: T0 + 86400_000 },
    ],
  };
  const body = (o: Record<string, unknown> = {}) =>
    parseReleaseBody({ dongleSerial: 'S1', counter: '7', features: null, issuedAt: new Date(T0).toISOString(), expiresAt: new Date(T0 + 86400_000).toISOString(), nonce: 'abcdefgh12', ...o });
  const code = (f: () => unknown) => (t.throws(f, { instanceOf: LicdError }) as LicdError).code;
  t.is(code(() => applyRelease(body({ dongleSerial: 'S2' }), q, 'S1', T0)), 'RELEASE_INVALID');
  t.is(code(() => applyRelease(body({ counter: '6' }), q, 'S1', T0)), 'RELEASE_INVALID');
  t.is(code(() => applyRelease(body(), q, 'S1', T0 + 2 * 86400_000)), 'RELEASE_INVALID');
  t.is(code(() => applyRelease(body(), null, 'S1', T0)), 'RELEASE_INVALID');
  t.is(code(() => parseReleaseBody({ dongleSerial: 'S1' })), 'RELEASE_INVALID');
  const partial = applyRelease(body({ features: ['a'] }), q, 'S1', T0);
  t.deepEqual(partial.lifted, [{ feature: 'a', seats: 2 }]);
  t.deepEqual(partial.left!.holds.map((h) => h.feature), ['b']);
  t.regex((t.throws(() => applyRelease(body({ features: ['b'] }), partial.left, 'S1', T0)) as Error).message, /applied already/);
  const rest = applyRelease(body({ features: ['b'], nonce: 'other-nonce' }), partial.left, 'S1', T0);
  t.deepEqual(rest.left!.holds, []);
});

test('after a failed step, a dongle that cannot even say its counter fails the queued change as a dongle fault', async (t) => {
  const store = new MemoryStore();
  const gate = new CounterGate(
    store,
    async () => {
      throw new Error('the dongle is absent');
    },
    3n,
    async () => {
      throw new Error('the dongle is absent');
    },
  );
  const first = gate.commit([{ kind: 'borrow.put', borrow: { id: 'a' } } as never]);
  const queued = gate.commit([{ kind: 'borrow.put', borrow: { id: 'b' } } as never]);
  await t.throwsAsync(first, { instanceOf: CounterStepError });
  await t.throwsAsync(queued, { instanceOf: CounterStepError });
  await t.throwsAsync(gate.commit([{ kind: 'borrow.put', borrow: { id: 'c' } } as never]), { instanceOf: CounterStepError, message: /the dongle is absent/ });
  t.is(store.borrows.size, 0);
});

test('a clock step moves a block and a revoked lease with it: the block lasts its real length', (t) => {
  const DAY = 86400_000;
  const s = table();
  const lease = s.checkout(req(), T0).result.lease;
  s.revokeLease(lease.id, { now: T0, blockMs: 30 * 60_000, by: 'admin1' });
  const shift = s.shift(2 * DAY);
  t.true(shift.mutations.some((m) => m.kind === 'meta.put' && m.key === META_REVOCATIONS), 'the moved blocks are written with the shift');
  const e = t.throws(() => s.checkout(req({ pid: 2 }), T0 + 2 * DAY + 60_000), { instanceOf: LicdError });
  t.is(e!.code, 'BLOCKED', 'a minute after a +2 day step the 30-minute block still holds');
  t.truthy(s.revokedLease(lease.id, 'c1', T0 + 2 * DAY + 60_000), 'and the holder still learns why its lease is gone');
  t.notThrows(() => s.checkout(req({ pid: 3 }), T0 + 2 * DAY + 30 * 60_000 + 1), 'it ends 30 minutes after it began');
  shift.undo();
  t.throws(() => s.checkout(req({ pid: 4 }), T0 + 60_000), { instanceOf: LicdError }, 'undone: the block is where it was');
});

test('a heartbeat queued behind a counter step is written with the end it answered, not a later renewal made in place meanwhile', async (t) => {
  // SeatTable.heartbeat renews the lease object itself. The gate writes a group only after its
  // counter step, by when a later heartbeat may have moved that object's end; if the later one's
  // write then fails, memory goes back to the first end, and so must the disk.
  let n = 0;
  const s = new SeatTable(features, () => `id${++n}`);
  const store = new MemoryStore();
  const steps: Array<(v: bigint) => void> = [];
  let counter = 3n;
  const gate = new CounterGate(store, () => new Promise<bigint>((r) => steps.push(r)), counter);
  const lease = s.checkout(req(), T0).result.lease;
  await store.commit([{ kind: 'lease.put', lease }]);
  const realCommit = store.commit.bind(store);
  let calls = 0;
  store.commit = async (m, o) => {
    // 1, 2: the first group's pending marker and batch; 3, 4: the second's; 5: the third's batch.
    if (++calls === 5) throw new Error('disk full');
    return realCommit(m, o);
  };
  const tick = () => new Promise((r) => setImmediate(r));

  const p0 = gate.commit([{ kind: 'borrow.put', borrow: { id: 'b0' } } as never]); // group 1: a step under way
  await tick();
  const p1 = gate.commit([{ kind: 'borrow.put', borrow: { id: 'b1' } } as never]); // group 2, with a step
  const a = s.heartbeat('c1', 'hash-of-c1', [lease.id], T0 + 20_000);
  const pa = gate.commit(a.mutations, { step: false }); // group 2 too
  steps.shift()!(++counter);
  await p0;
  await tick();
  t.is(steps.length, 1, 'group 2 waits for its step');
  const b = s.heartbeat('c1', 'hash-of-c1', [lease.id], T0 + 40_000); // in place, before group 2 is written
  const pb = gate.commit(b.mutations, { step: false }); // group 3
  steps.shift()!(++counter);
  await p1;
  await pa;
  await t.throwsAsync(pb, { message: 'disk full' });
  b.undo();
  t.is(s.getLease(lease.id)?.expiresAt, T0 + 80_000, "memory: the first heartbeat's end");
  t.is(store.leases.get(lease.id)?.expiresAt, T0 + 80_000, 'disk: the end the first heartbeat answered, not the undone one');
  t.deepEqual(a.result.renewed, [{ id: lease.id, expiresAt: T0 + 80_000 }]);
});
