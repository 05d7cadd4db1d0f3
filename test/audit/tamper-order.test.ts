/**
 * Issue 14, "editing, deleting or reordering an audit record is caught by audit verify", through
 * real processes (test/audit/tamper-helpers.ts): a record deleted from the LevelDB, and two records swapped, make
 * `licctl audit verify` exit 2 naming them.
 */
import { rmSync } from 'node:fs';
import test from 'ava';
import { killAll } from '../helpers/procs.ts';
import { check, KEY, makeBase } from './tamper-helpers.ts';

test.after.always(async () => {
  killAll();
  const dir = await base.catch(() => null);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let base: Promise<string>;
test.before(() => {
  base = makeBase();
});

test('a record deleted from the database: verify exits 2 naming it', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  let seq = 0;
  const r = await check(base, async (db, recs) => {
    seq = recs.find((x) => x.kind === 'checkout.denied')!.seq;
    await db.del(KEY(seq));
  });
  t.is(r.code, 2, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`BROKEN at record ${seq}: deleted: record ${seq} is missing`));
});

test('two records swapped in the database: verify exits 2 naming them', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  let a = 0;
  const r = await check(base, async (db, recs) => {
    const x = recs.find((q) => q.kind === 'lease.granted')!;
    const y = recs.find((q) => q.seq === x.seq + 1)!;
    a = x.seq;
    await db.batch([
      { type: 'put', key: KEY(x.seq), value: y },
      { type: 'put', key: KEY(y.seq), value: x },
    ]);
  });
  t.is(r.code, 2, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`BROKEN at record ${a}: reordered`));
});
