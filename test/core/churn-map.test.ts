import test from 'ava';
import { ChurnMap, SWEEP_AT } from '../../src/core/churn-map.ts';

test('a ChurnMap answers as a Map: get, has, size, delete, set again, iteration in insertion order', (t) => {
  const m = new ChurnMap<string, number>();
  m.set('a', 1).set('b', 2).set('c', 3);
  t.is(m.size, 3);
  t.true(m.delete('b'));
  t.false(m.delete('b'), 'a second delete finds nothing');
  t.false(m.delete('nope'));
  t.is(m.get('b'), undefined);
  t.false(m.has('b'));
  t.is(m.size, 2);
  t.deepEqual([...m], [['a', 1], ['c', 3]]);
  m.set('b', 20);
  t.true(m.has('b'));
  t.is(m.get('b'), 20);
  t.is(m.size, 3);
  // A key set again keeps its first place, as Map's set of an entry it holds does.
  t.deepEqual([...m.entries()], [['a', 1], ['b', 20], ['c', 3]]);
  m.set('u', undefined as unknown as number);
  t.true(m.has('u'), 'a value of undefined is still an entry');
});

test('deleted entries are swept once they outnumber the live ones: the table does not grow with churn', (t) => {
  const m = new ChurnMap<string, number>();
  for (let i = 0; i < 10; i++) m.set(`live-${i}`, i);
  // Keys that come and go: each delete leaves its entry, each set reuses it.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 100; i++) m.set(`churn-${i}`, round);
    for (let i = 0; i < 100; i++) m.delete(`churn-${i}`);
  }
  t.is(m.size, 10);
  // Keys that go for good: swept once more than SWEEP_AT and more than the live ones.
  for (let i = 0; i < 3 * SWEEP_AT; i++) {
    m.set(`once-${i}`, i);
    m.delete(`once-${i}`);
  }
  t.is(m.size, 10);
  const inner = (m as unknown as { m: Map<string, unknown> }).m;
  t.true(inner.size <= 10 + 100 + SWEEP_AT + 1, `the table holds ${inner.size} entries`);
  t.deepEqual([...m].map(([k]) => k), Array.from({ length: 10 }, (_, i) => `live-${i}`));
});
