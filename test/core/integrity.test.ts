import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { ClockGuard, CounterGate, judgeCounter, quarantineFor, META_COUNTER, META_COUNTER_PENDING } from '../../src/core/integrity.ts';
import { MemoryStore } from '../../src/core/ports.ts';

const meta = (o: Record<string, string>) => new Map<string, unknown>(Object.entries(o));

test('the counter verdicts', (t) => {
  t.is(judgeCounter(meta({}), 0n).kind, 'fresh');
  t.is(judgeCounter(meta({ [META_COUNTER]: '7' }), 7n).kind, 'ok');
  t.is(judgeCounter(meta({ [META_COUNTER]: '7', [META_COUNTER_PENDING]: '8' }), 8n).kind, 'adopt');
  t.is(judgeCounter(meta({ [META_COUNTER]: '5', [META_COUNTER_PENDING]: '6' }), 8n).kind, 'restored');
  t.is(judgeCounter(meta({ [META_COUNTER]: '5' }), 6n).kind, 'restored');
  t.is(judgeCounter(meta({}), 3n).kind, 'wiped');
  t.is(judgeCounter(meta({ [META_COUNTER]: '9' }), 3n).kind, 'ahead');
});

const lic = (name: string, seats: number, allowed: boolean, maxHours: number, expires: number | null = null): FeatureLicense => ({
  name,
  product: name,
  version: '1',
  seats,
  expires,
  type: 'render',
  borrow: { allowed, maxHours },
});

test('quarantine holds what could be out on borrow, until the longest borrow has run out', (t) => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  const q = quarantineFor({ kind: 'restored', stored: 1n, dongle: 4n }, [lic('a', 4, true, 336), lic('b', 2, false, 0), lic('c', 3, true, 24, now + 3600_000)], [
    { id: 'x', feature: 'a', count: 1 } as never,
  ], now)!;
  t.regex(q.reason, /older than the dongle \(its counter is 4, the database knows 1\)/);
  t.deepEqual(q.holds, [
    { feature: 'a', seats: 3, until: now + 336 * 3600_000 },
    { feature: 'c', seats: 3, until: now + 3600_000 },
  ]);
  t.is(quarantineFor({ kind: 'ok' }, [lic('a', 4, true, 1)], [], now), null);
});

test('clock: a day back is caught, a two-minute NTP step is not, an admin can accept', (t) => {
  const t0 = Date.parse('2026-06-01T00:00:00Z');
  const g = new ClockGuard(t0, 5 * 60_000);
  t.is(g.observe(t0 + 60_000), 0);
  t.is(g.observe(t0 - 60_000), 0, 'two minutes back from the mark passes');
  t.is(g.observe(t0 + 60_000 - 86400_000), 86400_000);
  t.throws(() => g.refuse('borrowing'), { message: /borrowing refused: the clock was set back by 24 h 0 min \(it read 2026-06-01T00:01:00.000Z before\)/ });
  g.accept(t0 - 86400_000);
  t.is(g.observe(t0 - 86400_000 + 1000), 0);
  t.notThrows(() => g.refuse('borrowing'));
});

test('the counter gate writes pending, steps once per group, writes the value with the changes', async (t) => {
  const store = new MemoryStore();
  let counter = 10n;
  let steps = 0;
  const gate = new CounterGate(store, async () => {
    steps++;
    await new Promise((r) => setTimeout(r, 20));
    return ++counter;
  }, 10n);
  const lease = (id: string) => ({ kind: 'borrow.put', borrow: { id } }) as never;
  await Promise.all([gate.commit([lease('a')]), gate.commit([lease('b')]), gate.commit([lease('c')])]);
  t.true(steps <= 2, `three concurrent changes took ${steps} steps`);
  t.is(store.meta.get(META_COUNTER), counter.toString());
  t.is(store.borrows.size, 3);
});

test('a failed step writes none of its group and resyncs before the next', async (t) => {
  const store = new MemoryStore();
  let counter = 3n;
  let fail = true;
  const gate = new CounterGate(store, async () => {
    counter++; // the dongle stepped, but the answer was lost
    if (fail) throw new Error('answer lost');
    return counter;
  }, 3n, async () => counter);
  await t.throwsAsync(gate.commit([{ kind: 'borrow.put', borrow: { id: 'a' } } as never]), { message: /answer lost/ });
  t.is(store.borrows.size, 0);
  fail = false;
  await gate.commit([{ kind: 'borrow.put', borrow: { id: 'b' } } as never]);
  t.is(store.meta.get(META_COUNTER), '5');
  t.is(judgeCounter(store.meta, counter).kind, 'ok');
});
