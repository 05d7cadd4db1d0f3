/**
 * Issue 14, "editing, deleting or reordering an audit record is caught by audit verify", through
 * real processes: a licd process with its emulated dongle, real licctl clients check out (one is
 * refused), an admin revokes; licd stops; the test edits, deletes or swaps records in the LevelDB
 * itself (classic-level); licd starts again on it; `licctl audit export` then `licctl audit verify
 * --vendor-key` exits 2 naming the record. The untampered log verifies (exit 0).
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { ClassicLevel } from 'classic-level';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

interface Rec {
  seq: number;
  kind: string;
  user?: string;
  [k: string]: unknown;
}

const KEY = (seq: number) => `rec!audit!${String(seq).padStart(12, '0')}`;

async function daemon(dir: string): Promise<{ d: Proc; url: string }> {
  const file = join(dir, 'licd.json');
  writeFileSync(file, JSON.stringify({ leases: { disconnectGraceSeconds: 1 } }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' }, ['--config', file]);
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 30_000))[1]!;
  return { d, url };
}

async function stop(d: Proc): Promise<void> {
  d.child.kill('SIGTERM');
  await d.exited;
}

const admin = (dir: string, url: string) => ['--broker', url, '--user', 'admin', '--password-file', join(dir, 'admin.password')];

/** The records of the audit space, straight from the database. */
async function records(db: ClassicLevel<string, unknown>): Promise<Rec[]> {
  const out: Rec[] = [];
  for await (const [, v] of db.iterator({ gte: 'rec!audit!0', lt: 'rec!audit!:' })) out.push(v as Rec);
  return out;
}

/** A data dir whose audit log holds grants, a denial, a check-in and an admin revoke; licd stopped. */
let base: Promise<string>;
test.before(() => {
  base = (async () => {
    const dir = tempDir('licd-audit-');
    const { d, url } = await daemon(dir);
    try {
      const B = ['--broker', url];
      const alice = licctl(['checkout', 'nuke_i', ...B], { LICD_USER: 'alice', LICD_HOST: 'node-a' });
      const lease = (await alice.waitFor(/granted nuke_i to alice@node-a \(lease (\S+),/))[1]!;
      const bob = await run(['checkout', 'nuke_i', ...B], { LICD_USER: 'bob', LICD_HOST: 'node-b' });
      if (bob.code !== 3) throw new Error(`bob should be refused (no seats): ${bob.stderr}`);
      const carol = licctl(['checkout', 'vray_render', ...B], { LICD_USER: 'carol', LICD_HOST: 'node-c' });
      await carol.waitFor(/granted vray_render to carol@node-c/);
      carol.child.kill('SIGTERM'); // checks in
      await carol.exited;
      const r = await run(['lease', 'revoke', lease, ...admin(dir, url)]);
      if (r.code !== 0) throw new Error(r.stderr);
      await alice.exited;
    } finally {
      await stop(d);
    }
    return dir;
  })();
});

/** Copies the base, lets `tamper` change its database, starts licd on it, exports and verifies. */
async function check(tamper: (db: ClassicLevel<string, unknown>, recs: Rec[]) => Promise<void>): Promise<{ code: number | null; stdout: string; stderr: string; recs: Rec[] }> {
  const dir = tempDir('licd-audit-case-');
  cpSync(await base, dir, { recursive: true });
  const db = new ClassicLevel<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' });
  await db.open();
  const recs = await records(db);
  await tamper(db, recs);
  await db.close();
  const { d, url } = await daemon(dir);
  try {
    const file = join(dir, 'audit.jsonl');
    const ex = await run(['audit', 'export', '--out', file, ...admin(dir, url)]);
    if (ex.code !== 0) throw new Error(`export failed: ${ex.stderr}`);
    const key = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
    const v = await run(['audit', 'verify', file, '--vendor-key', key]);
    return { ...v, recs };
  } finally {
    await stop(d);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the log as licd wrote it verifies: every grant, the denial, the check-in and the revoke, sealed (exit 0)', async (t) => {
  t.timeout(90_000);
  const r = await check(async () => {});
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /valid: records 1 to \d+/);
  const kinds = r.recs.map((x) => x.kind);
  for (const k of ['start', 'seal', 'lease.granted', 'checkout.denied', 'lease.ended', 'admin']) t.true(kinds.includes(k), `${k} in ${kinds.join(',')}`);
  t.like(r.recs.find((x) => x.kind === 'checkout.denied'), { user: 'bob', code: 'NO_SEATS', feature: 'nuke_i' });
  t.like(r.recs.find((x) => x.kind === 'lease.ended' && x.reason === 'revoked'), { user: 'alice' });
  t.like(r.recs.find((x) => x.kind === 'lease.ended' && x.reason === 'checkin'), { user: 'carol' });
  t.like(r.recs.find((x) => x.kind === 'admin'), { op: 'lease.revoke', ok: true });
  // The revoke's admin record is sealed (a seal follows it), before licd stopped.
  const adminSeq = r.recs.find((x) => x.kind === 'admin')!.seq;
  t.true(r.recs.some((x) => x.kind === 'seal' && x.seq > adminSeq));
});

test('a record edited in the database: verify exits 2 naming it', async (t) => {
  t.timeout(90_000);
  let seq = 0;
  const r = await check(async (db, recs) => {
    const g = recs.find((x) => x.kind === 'lease.granted' && x.user === 'alice')!;
    seq = g.seq;
    await db.put(KEY(g.seq), { ...g, user: 'mallory' });
  });
  t.is(r.code, 2, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`BROKEN at record ${seq}: edited: record ${seq} \\(lease.granted\\) was edited`));
});

test('a record deleted from the database: verify exits 2 naming it', async (t) => {
  t.timeout(90_000);
  let seq = 0;
  const r = await check(async (db, recs) => {
    seq = recs.find((x) => x.kind === 'checkout.denied')!.seq;
    await db.del(KEY(seq));
  });
  t.is(r.code, 2, r.stdout + r.stderr);
  t.regex(r.stderr, new RegExp(`BROKEN at record ${seq}: deleted: record ${seq} is missing`));
});

test('two records swapped in the database: verify exits 2 naming them', async (t) => {
  t.timeout(90_000);
  let a = 0;
  const r = await check(async (db, recs) => {
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
