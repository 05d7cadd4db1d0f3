/**
 * Issue 15, queue time in the usage history (docs/history.md), pure: the sink counts queue.joined
 * and queue.left per feature per minute (waiters at peak, waiter-ms, waits, served, total and
 * longest), writes a wait record for a wait without a seat in the batch of its change, keeps a
 * waited lease's wait in its session record; roll-ups keep the totals; the reports show them.
 */
import test from 'ava';
import type { SeatEvent } from '../../src/core/events.ts';
import { HistorySink, MINUTE, mergeRows, type UsageRow } from '../../src/core/history.ts';
import type { Lease } from '../../src/core/model.ts';
import { usageReport, usersReport } from '../../src/core/reports.ts';

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const S = 1000;

const who = (user: string) => ({ feature: 'f', user, host: `ws-${user}`, client: `c-${user}`, count: 1 });
const joined = (user: string, at: number): SeatEvent => ({ type: 'queue.joined', at, ...who(user), priority: 0, since: at });
const left = (user: string, since: number, at: number, reason: 'granted' | 'timeout' | 'gone' | 'cancelled' | 'refused'): SeatEvent => ({ type: 'queue.left', at, ...who(user), since, waitedMs: at - since, reason });
const lease = (user: string, since: number, waitedMs?: number): Lease => ({ id: `L-${user}`, feature: 'f', count: 1, clientId: `c-${user}`, pid: 1, user, host: `ws-${user}`, since, expiresAt: since + 60 * S, ttlMs: 60 * S, disconnectedAt: null, ...(waitedMs !== undefined ? { waitedMs } : {}) });

test('waits per feature per minute, wait records in the same batch, waited time on the lease session; roll-ups and reports keep them', (t) => {
  const sink = new HistorySink({ licensed: () => 1, now: T0 });
  sink.seed([lease('h', T0)], [], ['f'], T0);
  const put = (events: SeatEvent[]) => {
    const m = sink.prepare(events);
    sink.settle(events, true);
    return m;
  };
  // ann and bob wait from 0:10 and 0:20; cat from 0:30 and gives up at 0:50.
  t.deepEqual(put([joined('ann', T0 + 10 * S)]), []);
  put([joined('bob', T0 + 20 * S)]);
  put([joined('cat', T0 + 30 * S)]);
  const gaveUp = put([left('cat', T0 + 30 * S, T0 + 50 * S, 'timeout')]);
  t.is(gaveUp.length, 1, 'a wait without a seat is a record of its own, in its batch');
  t.like(gaveUp[0], { kind: 'rec.put', space: 'history', value: { feature: 'f', user: 'cat', start: T0 + 30 * S, end: T0 + 50 * S, how: 'timeout' } });
  t.regex((gaveUp[0] as { key: string }).key, /^w!\d{13}!/);
  // The holder checks in at 1:30: ann gets the seat (her lease says she waited 80 s).
  const annLease = lease('ann', T0 + 90 * S, 80 * S);
  const granted = put([
    { type: 'lease.ended', at: T0 + 90 * S, lease: lease('h', T0), reason: 'checkin' },
    { type: 'lease.granted', at: T0 + 90 * S, lease: annLease },
    left('ann', T0 + 10 * S, T0 + 90 * S, 'granted'),
  ]);
  t.false(granted.some((m) => m.kind === 'rec.put' && m.key.startsWith('w!')), 'a wait that got its seat has no wait record');
  // ann checks in at 2:00: her session record keeps her wait.
  const ended = put([{ type: 'lease.ended', at: T0 + 120 * S, lease: annLease, reason: 'checkin' }]);
  t.like((ended[0] as { value: unknown }).value, { kind: 'lease', user: 'ann', waitedMs: 80 * S });
  t.deepEqual(sink.held('f'), { leased: 0, borrowed: 0, waiting: 1 }, 'bob still waits');

  const rows = sink.flush(T0 + 3 * MINUTE).map((m) => (m as { value: UsageRow }).value);
  const [m0, m1, m2] = rows;
  t.like(m0, { t: T0, waitPeak: 3, waits: 1, waitsServed: undefined, waitedMs: 20 * S, waitMaxMs: 20 * S });
  // Waiter-ms of minute 0: ann 50 s, bob 40 s, cat 20 s.
  t.is(m0!.waitingMs, 110 * S);
  t.like(m1, { t: T0 + MINUTE, waitPeak: 2, waits: 1, waitsServed: 1, waitedMs: 80 * S, waitMaxMs: 80 * S, waitingMs: 30 * S + 60 * S });
  t.like(m2, { t: T0 + 2 * MINUTE, waitPeak: 1, waitingMs: 60 * S, waits: undefined });

  // A roll-up sums and takes the most, as for seats.
  const hour = mergeRows(rows, { t: T0, span: 60 * MINUTE });
  t.like(hour, { waitPeak: 3, waits: 2, waitsServed: 1, waitedMs: 100 * S, waitMaxMs: 80 * S, waitingMs: 260 * S });

  // Reports: per feature (usage, licctl report queue) and hours waited per user (users).
  const input = {
    from: T0,
    to: T0 + 3 * MINUTE,
    rows,
    sessions: [(ended[0] as unknown as { value: never }).value],
    denials: [],
    waits: [(gaveUp[0] as unknown as { value: never }).value, { feature: 'f', user: 'bob', host: 'ws-bob', count: 1, start: T0 + 20 * S, end: T0 + 3 * MINUTE, how: 'waiting' }],
    groups: {},
  };
  t.like(usageReport(input)[0], { feature: 'f', waits: 2, waitsServed: 1, waitMeanSeconds: 50, waitMaxSeconds: 80, waitPeak: 3, waitHours: 0.072 });
  const users = new Map(usersReport(input, 'user').map((r) => [r.key, r]));
  t.like(users.get('ann'), { waits: 1, waitHours: 0.022, seatHours: 0.008 });
  t.like(users.get('bob'), { waits: 1, waitHours: 0.044, seatHours: 0 });
  t.like(users.get('cat'), { waits: 1, waitHours: 0.006, seatHours: 0 });
});
