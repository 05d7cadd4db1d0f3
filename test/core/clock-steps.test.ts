/** Clock steps, pure: the steady clock with an injected monotonic source, the shift, the gap at start. */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { ClockGuard, bridgeGap } from '../../src/core/integrity.ts';
import type { Borrow, Lease } from '../../src/core/model.ts';
import { SeatTable, shiftBorrow } from '../../src/core/seats.ts';
import { SteadyClock } from '../../src/daemon/steady-clock.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const H = 3600_000;
const DAY = 24 * H;
const features: FeatureLicense[] = [{ name: 'render', product: 'Render', version: '6.2', seats: 3, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } }];

function clocks(toleranceMs = 2000) {
  const c = { wall: T0, mono: 1000 };
  const steady = new SteadyClock({ wall: () => c.wall, mono: () => c.mono, toleranceMs });
  const pass = (ms: number) => {
    c.wall += ms;
    c.mono += ms;
  };
  return { c, steady, pass };
}

function borrow(over: Partial<Borrow> = {}): Omit<Borrow, 'id'> & { id?: string } {
  return { feature: 'render', count: 1, user: 'u', hostId: 'h', hostName: 'hn', clientKey: 'k', clientId: null, since: T0, expiresAt: T0 + DAY, lost: false, autoRenew: false, via: 'online', requestId: 'r', tokenId: 't1', tokenIssuedAt: T0, hours: 24, ...over };
}

test('the steady clock follows the monotonic clock and reports a wall step without taking it', (t) => {
  const { c, steady, pass } = clocks();
  pass(5000);
  t.is(steady.now(), T0 + 5000);
  t.deepEqual(steady.check(), { kind: 'ok' });
  c.wall += 2 * DAY; // the wall clock steps forward
  pass(1000);
  t.is(steady.now(), T0 + 6000, 'nothing decided before the step is absorbed sees it');
  t.deepEqual(steady.check(), { kind: 'step', stepMs: 2 * DAY });
  steady.shift(2 * DAY);
  t.is(steady.now(), T0 + 6000 + 2 * DAY);
  t.deepEqual(steady.check(), { kind: 'ok' });
  c.wall -= DAY; // back a day
  t.deepEqual(steady.check(), { kind: 'step', stepMs: -DAY });
});

test('small differences (NTP slewing) are followed silently', (t) => {
  const { c, steady, pass } = clocks();
  pass(60_000);
  c.wall += 300;
  t.deepEqual(steady.check(), { kind: 'ok' });
  t.is(steady.now(), T0 + 60_300);
});

test('with a trusted time, wall steps are reported only and time stays trusted', (t) => {
  const { c, steady, pass } = clocks();
  const delta = steady.trust('dongle', T0 - 2 * DAY);
  t.is(delta, -2 * DAY);
  steady.shift(delta);
  t.is(steady.now(), T0 - 2 * DAY);
  pass(1000);
  t.deepEqual(steady.check(), { kind: 'ok' }, 'the wall being 2 days off the trusted time is no step');
  c.wall += 365 * DAY;
  t.deepEqual(steady.check(), { kind: 'wall-step', stepMs: 365 * DAY });
  pass(1000);
  t.is(steady.now(), T0 - 2 * DAY + 2000);
  t.deepEqual(steady.check(), { kind: 'ok' });
});

test('a shift moves every lease, borrow and hold, and the expiry wheel with them', (t) => {
  let n = 0;
  const s = new SeatTable(features, () => `id${++n}`);
  const lease = s.checkout({ clientId: 'c', holder: 'h1', pid: 1, user: 'u', host: 'h', feature: 'render', count: 1, ttlMs: 60_000 }, T0).result.lease;
  const b = s.borrow(borrow(), T0).result;
  s.setHold('render', 1, T0 + H);
  const ch = s.shift(2 * DAY);
  t.is(ch.mutations.length, 2);
  t.is(s.getLease(lease.id)!.expiresAt, T0 + 60_000 + 2 * DAY);
  t.is(s.getBorrow(b.id)!.expiresAt, T0 + DAY + 2 * DAY);
  t.deepEqual(s.holds(T0 + 2 * DAY), [{ feature: 'render', seats: 1, until: T0 + H + 2 * DAY }]);
  // In the new terms, nothing is due until its real time has passed.
  t.deepEqual(s.reap(T0 + 2 * DAY + 30_000).result, { leases: [], borrows: [] });
  t.is(s.reap(T0 + 2 * DAY + 61_000).result.leases.length, 1);
  t.is(s.reap(T0 + 3 * DAY + 1000).result.borrows.length, 1);
  t.deepEqual(s.checkInvariants(T0), []);
});

test('a shift can be undone when its write fails', (t) => {
  let n = 0;
  const s = new SeatTable(features, () => `id${++n}`);
  const b = s.borrow(borrow(), T0).result;
  s.setHold('render', 1, T0 + H);
  s.shift(-DAY).undo();
  t.is(s.getBorrow(b.id)!.expiresAt, T0 + DAY);
  t.is(s.holds(T0)[0]!.until, T0 + H);
  t.is(s.reap(T0 + DAY + 1).result.borrows.length, 1, 'the wheel is back in the old terms');
});

test('a borrow never ends before the expiry its token states', (t) => {
  // Issued while the clock was 2 days ahead: the token says T0 + 2 days + 24 h.
  const wrong = shiftBorrow({ ...borrow({ since: T0 + 2 * DAY, tokenIssuedAt: T0 + 2 * DAY, expiresAt: T0 + 3 * DAY }), id: 'b' } as Borrow, -2 * DAY);
  t.is(wrong.expiresAt, T0 + 3 * DAY, 'fixing the clock does not cut it short of its token');
  // Issued before a step forward and back: its real end is kept.
  const there = shiftBorrow({ ...borrow(), id: 'b' } as Borrow, 2 * DAY);
  t.is(there.expiresAt, T0 + 3 * DAY);
  const back = shiftBorrow(there, -2 * DAY);
  t.is(back.expiresAt, T0 + DAY);
  // A renewal issues a new token: its own expiry counts from then on.
  const renewed = { ...back, tokenId: 't2', expiresAt: T0 + 5 * DAY };
  t.is(shiftBorrow(renewed, -DAY).expiresAt, T0 + 5 * DAY);
});

test('the clock guard moves with steps seen while running: fixing a clock that jumped ahead is no set-back', (t) => {
  const g = new ClockGuard(T0, 300_000);
  g.observe(T0);
  g.stepped(2 * DAY);
  t.is(g.observe(T0 + 2 * DAY), 0);
  g.stepped(-2 * DAY);
  t.is(g.observe(T0 + 1000), 0, 'back to the real time: fine');
  g.stepped(-DAY);
  t.is(g.observe(T0 - DAY + 2000), DAY - 1000, 'a step below every time seen is still a set-back');
});

test('a gap at start keeps what only the gap would end', (t) => {
  const lease: Lease = { id: 'l', feature: 'render', count: 1, clientId: 'c', pid: 1, user: 'u', host: 'h', since: T0, expiresAt: T0 + 60_000, ttlMs: 60_000, disconnectedAt: null };
  const oldLease: Lease = { ...lease, id: 'l0', expiresAt: T0 - 1000 };
  const inGap = { ...borrow(), id: 'b1' } as Borrow;
  const later = { ...borrow({ expiresAt: T0 + 5 * DAY }), id: 'b2' } as Borrow;
  const now = T0 + 2 * DAY;
  const r = bridgeGap([lease, oldLease], [inGap, later], T0, now, 300_000);
  t.is(r.gap!.gapMs, 2 * DAY);
  t.deepEqual(r.gap!.borrows, [{ id: 'b1', token: 't1', until: T0 + DAY }]);
  t.is(r.borrows[0]!.expiresAt, T0 + 3 * DAY, 'moved by the gap: never before its token in real time');
  t.is(r.borrows[1]!.expiresAt, T0 + 5 * DAY);
  t.is(r.leases[0]!.expiresAt, now + 60_000, 'a lease that ended in the gap gets one TTL');
  t.is(r.leases[1]!.expiresAt, T0 - 1000, 'one that ended before the last time seen is left to expire');
  t.is(r.keptLeases, 1);
  t.is(bridgeGap([lease], [inGap], T0, T0 + 60_000, 300_000).gap, null, 'a gap within the tolerance is no gap');
});
