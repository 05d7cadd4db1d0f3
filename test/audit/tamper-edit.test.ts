/**
 * Issue 14, "editing, deleting or reordering an audit record is caught by audit verify", through
 * real processes (test/audit/tamper-helpers.ts): the log as licd wrote it verifies (exit 0); a record edited in the
 * LevelDB makes `licctl audit verify` exit 2 naming it.
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

test('the log as licd wrote it verifies: every grant, the denial, the check-in and the revoke, sealed (exit 0)', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  const r = await check(base, async () => {});
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /valid: records 1 to \d+/);
  const kinds = r.recs.map((x) => x.kind);
  for (const k of ['start', 'seal', 'lease.granted', 'checkout.denied', 'lease.ended', 'admin']) t.true(kinds.includes(k), `${k} in ${kinds.join(',')}`);
  t.like(r.recs.find((x) => x.kind === 'checkout.denied'), { user: 'bob', code: 'NO_SEATS', feature: 'nuke_i' });
  t.like(r.recs.find((x) => x.kind === 'lease.ended' && x.reason === 'revoked'), { user: 'alice' });
  t.true(r.recs.some((x) => x.kind === 'lease.ended' && x.user === 'carol' && (x.reason === 'checkin' || x.reason === 'client-gone')), 'carol\'s check-in (or her last will)');
  t.like(r.recs.find((x) => x.kind === 'admin'), { op: 'lease.revoke', ok: true });
  // The revoke's admin record is sealed (a seal follows it), before licd stopped.
  const adminSeq = r.recs.find((x) => x.kind === 'admin')!.seq;
  t.true(r.recs.some((x) => x.kind === 'seal' && x.seq > adminSeq));
});

test('a record edited in the database: verify exits 2 naming it', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  let seq = 0;
  const r = await check(base, async (db, recs) => {
    const g = recs.find((x) => x.kind === 'lease.granted' && x.user === 'alice')!;
    seq = g.seq;
    await db.put(KEY(g.seq), { ...g, user: 'mallory' });
  });
  t.is(r.code, 2, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`BROKEN at record ${seq}: edited: record ${seq} \\(lease.granted\\) was edited`));
});
