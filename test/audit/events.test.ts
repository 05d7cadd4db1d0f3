/**
 * What the audit log records, through a daemon with a real LevelDB, a real broker and the emulated
 * dongle (in-process): a borrow and its return, a quarantine after the database was rolled back to
 * an old copy, the QUARANTINE denial, admin requests; each run's log verifies with the vendor key.
 * Also what a rollback does to the log (docs/audit.md, "What verify proves"): it ends where the
 * copy ends, and verifies.
 */
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { verifyAudit, type AuditRecord } from '../../src/core/audit.ts';
import type { AuditExportResult } from '../../src/core/protocol.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { sha256 } from '../../src/crypto/sha256.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { outcome, startTestDaemon, tempDir, type TestDaemon } from '../helpers/daemon.ts';

async function exportAll(d: TestDaemon): Promise<{ records: AuditRecord[]; certs: Map<string, unknown> }> {
  const a = await d.admin();
  const records: AuditRecord[] = [];
  const certs = new Map<string, unknown>();
  let from: number | null = 1;
  while (from !== null) {
    const page: AuditExportResult = await a.request<AuditExportResult>('audit.export', { from, limit: 7 }, { admin: true });
    records.push(...(page.records as AuditRecord[]));
    for (const [k, v] of Object.entries(page.certs)) certs.set(k, v);
    from = page.next;
  }
  return { records, certs };
}

const vendorKey = (dataDir: string) => Buffer.from((JSON.parse(readFileSync(join(dataDir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey, 'hex');
const check = (dataDir: string, x: { records: AuditRecord[]; certs: Map<string, unknown> }) => verifyAudit(x.records, x.certs, { vendorPublicKey: vendorKey(dataDir), ed: nodeEd25519(), sha256 });

test('borrows, a rollback\'s quarantine and its denial, admin requests: recorded, sealed, verifiable; a rollback shortens the log', async (t) => {
  t.timeout(90_000);
  const dataDir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const b = new BorrowClient({ home, hostId: 'ab'.repeat(16), user: 'alice', hostName: 'laptop' });

  let d = await startTestDaemon({ dataDir });
  let c = await d.client();
  const first = (await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24)).borrows[0]!.id;
  await d.halt();
  cpSync(join(dataDir, 'db'), join(dataDir, 'db.copy'), { recursive: true });

  d = await startTestDaemon({ dataDir });
  c = await d.client();
  const second = (await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24)).borrows[0]!.id;
  await b.giveBack(c, [second]);
  const before = await exportAll(d);
  const kinds = before.records.map((r) => r.kind);
  t.true(kinds.includes('borrow.granted'), kinds.join(','));
  t.like(before.records.find((r) => r.kind === 'borrow.ended'), { borrow: second, reason: 'returned' });
  t.like(before.records.find((r) => r.kind === 'borrow.granted' && r.borrow === first), { user: 'alice', feature: 'vray_render', host: 'laptop' });
  t.is(kinds.filter((k) => k === 'start').length, 2, 'one start record per run');
  // A page from a time: the first record at or after it.
  const since = before.records[4]!.at;
  const fromTime = await (await d.admin()).request<AuditExportResult>('audit.export', { since, limit: 3 }, { admin: true });
  t.true(fromTime.records[0]!.seq <= 5 && fromTime.records[0]!.at >= since, JSON.stringify(fromTime.records[0]));
  t.is(fromTime.records.length, 3);
  t.is(fromTime.next, fromTime.records[2]!.seq + 1);
  const v1 = check(dataDir, before);
  t.true(v1.ok, JSON.stringify(v1.problem));
  t.is(v1.keys.length, 2, 'each run sealed with its own session key');
  await d.halt();

  // Roll the database back to the copy: the log ends where the copy ends (and still verifies), and
  // the quarantine the dongle's counter causes is recorded, with the denial it brings.
  rmSync(join(dataDir, 'db'), { recursive: true });
  cpSync(join(dataDir, 'db.copy'), join(dataDir, 'db'), { recursive: true });
  d = await startTestDaemon({ dataDir });
  t.teardown(() => d.halt());
  c = await d.client();
  t.is(await outcome(c.checkout('vray_render')), 'QUARANTINE');
  const after = await exportAll(d);
  const q = after.records.find((r) => r.kind === 'quarantine');
  t.like(q, { action: 'set' });
  t.true((q!.holds as Array<{ feature: string }>).some((h) => h.feature === 'vray_render'));
  t.like(after.records.find((r) => r.kind === 'checkout.denied'), { code: 'QUARANTINE', feature: 'vray_render' });
  t.false(after.records.some((r) => r.kind === 'borrow.granted' && r.borrow === second), 'the rolled-back run is gone from the log');
  const v2 = check(dataDir, after);
  t.true(v2.ok, JSON.stringify(v2.problem));
  // The export reads back what the admin asked: the audit.export requests themselves are recorded
  // (an export writes what waits before it reads, so the next export has the ones before it).
  const later = await exportAll(d);
  t.true(later.records.some((r) => r.kind === 'admin' && r.op === 'audit.export'), JSON.stringify(later.records.filter((r) => r.kind === 'admin').map((r) => r.op)));
});
