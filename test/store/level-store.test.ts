import test from 'ava';
import { rmSync } from 'node:fs';
import { Level } from 'level';
import type { Lease } from '../../src/core/model.ts';
import { LevelStore, SCHEMA_VERSION } from '../../src/store/level-store.ts';
import { tempDir } from '../helpers/daemon.ts';

const lease = (id: string): Lease => ({ id, feature: 'f', count: 1, clientId: 'c', pid: 1, user: 'u', host: 'h', since: 1, expiresAt: 2, ttlMs: 1, disconnectedAt: null });

test('concurrent changes share syncs (group commit) and all land', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await LevelStore.open(dir);
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.commit([{ kind: 'lease.put', lease: lease(`L${i}`) }])));
  t.is(store.stats.changes, 200);
  t.true(store.stats.batches < 200, `200 changes took ${store.stats.batches} synced batches`);
  await store.close();
  const again = await LevelStore.open(dir);
  t.is((await again.load()).leases.length, 200);
  await again.close();
});

test('a burst is written in bounded batches, in order: the first changes resolve before the last batch is written', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await LevelStore.open(dir);
  const n = 4 * 256 + 10; // LevelStore.MAX_GROUP is 256
  const order: number[] = [];
  let batchesWhenFirstLanded = -1;
  const all = Array.from({ length: n }, (_, i) =>
    store.commit([{ kind: 'lease.put', lease: { ...lease('same'), count: i + 1 } }]).then(() => {
      if (i === 1) batchesWhenFirstLanded = store.stats.batches;
      order.push(i);
    }),
  );
  await Promise.all(all);
  t.is(store.stats.changes, n);
  t.true(store.stats.batches >= 5, `${n} queued changes went in ${store.stats.batches} batches (at most 256 each)`);
  t.true(batchesWhenFirstLanded < store.stats.batches, 'the first changes were answered before the whole burst was written');
  t.deepEqual(order, [...order].sort((a, b) => a - b), 'changes resolve in the order they were made');
  await store.close();
  const again = await LevelStore.open(dir);
  // Written in order: the last change to the same record is the one kept.
  t.is((await again.load()).leases.find((l) => l.id === 'same')?.count, n);
  await again.close();
});

test('one change is one atomic batch: puts and deletes together, in order', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await LevelStore.open(dir);
  await store.commit([{ kind: 'lease.put', lease: lease('a') }, { kind: 'lease.put', lease: lease('b') }, { kind: 'meta.put', key: 'x', value: { n: 1 } }]);
  await store.commit([{ kind: 'lease.del', id: 'a' }, { kind: 'lease.put', lease: { ...lease('b'), count: 2 } }]);
  const s = await store.load();
  t.deepEqual(s.leases.map((l) => [l.id, l.count]), [['b', 2]]);
  t.deepEqual(s.meta.get('x'), { n: 1 });
  t.is(s.meta.get('schema'), SCHEMA_VERSION);
  await store.close();
});

test('a database from a newer licd is refused with a message', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  await db.put('meta!schema', SCHEMA_VERSION + 1);
  await db.close();
  await t.throwsAsync(LevelStore.open(dir), { message: /newer than this licd understands/ });
});

test('heartbeats arriving one at a time share syncs (lazy group commit), each still synced before it resolves', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await LevelStore.open(dir);
  const done: Array<Promise<void>> = [];
  const started = performance.now();
  for (let i = 0; i < 100; i++) {
    done.push(store.commit([{ kind: 'lease.put', lease: lease(`H${i}`) }], { lazy: true }));
    await new Promise((r) => setTimeout(r, 1));
  }
  const spanMs = performance.now() - started;
  await Promise.all(done);
  t.is(store.stats.changes, 100);
  // Each batch waits until its oldest heartbeat has waited LAZY_MS, also those that queued while
  // the batch before was written (they used to go out one or two per fsync behind it): so at
  // most one batch per LAZY_MS of arrivals, whatever the load, plus the last.
  const most = Math.ceil(spanMs / (LevelStore.LAZY_MS - 1)) + 2;
  t.true(store.stats.batches <= most, `100 heartbeats over ${spanMs.toFixed(0)} ms took ${store.stats.batches} syncs (at most ${most})`);
  await store.close();
  const again = await LevelStore.open(dir);
  t.is((await again.load()).leases.length, 100);
  await again.close();
});
