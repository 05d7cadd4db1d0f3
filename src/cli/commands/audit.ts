/**
 * The audit log (docs/audit.md): export it from licd (admin), verify an export offline with the
 * vendor public key alone (no server needed).
 */
import { readFileSync } from 'node:fs';
import { AUDIT_EXPORT_FORMAT, verifyAudit, type AuditVerdict } from '../../core/audit.ts';
import { exportStart, parseAuditExport, vendorPublicKeyOf, type AuditExport } from '../../core/audit-file.ts';
import { LicdError } from '../../core/errors.ts';
import type { AuditExportResult, AuditHeadResult } from '../../core/protocol.ts';
import { nodeEd25519 } from '../../crypto/ed25519.ts';
import { sha256 } from '../../crypto/sha256.ts';
import { fsErrorText } from '../../files.ts';
import { writeFileAtomic } from '../../vendor.ts';
import { flag, intFlag, UsageError, type ParsedArgs } from '../args.ts';
import { checkOutFile } from '../borrow-cmds.ts';
import type { Command } from '../command.ts';
import { adminRequest, connect, err, json, out, outJson, serverOf, timeOf } from '../context.ts';
import { requireOptions } from './vendor.ts';

/** --from: a sequence number, or a time (ISO, or a date). */
function fromOption(a: ParsedArgs): { from?: number; since?: string } {
  const v = flag(a, 'from');
  if (v === undefined) return {};
  if (/^\d{1,15}$/.test(v) && Number(v) >= 1) return { from: Number(v) };
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || !Number.isFinite(t)) throw new UsageError(`--from ${JSON.stringify(v)} is neither a record number (1, 2, ...) nor a time (2026-11-30 or 2026-11-30T08:00:00Z)`);
  return { since: new Date(t).toISOString() };
}

async function exportLog(a: ParsedArgs): Promise<number> {
  requireOptions(a, 'audit export', ['out']);
  const file = flag(a, 'out')!;
  checkOutFile(file);
  const start = fromOption(a);
  const c = await connect(a, true);
  const lines: string[] = [];
  const certs = new Map<string, unknown>();
  let first: number | null = null;
  let last: number | null = null;
  let count = 0;
  let head: AuditExportResult['head'] | null = null;
  try {
    let ask: Record<string, unknown> = { ...start };
    for (;;) {
      const page = await c.request<AuditExportResult>('audit.export', ask, { admin: true });
      head = page.head;
      for (const r of page.records) {
        lines.push(JSON.stringify(r));
        first ??= r.seq;
        last = r.seq;
        count++;
      }
      for (const [ref, env] of Object.entries(page.certs)) certs.set(ref, env);
      if (page.next === null) break;
      ask = { from: page.next };
    }
  } finally {
    await c.close();
  }
  const header = { format: AUDIT_EXPORT_FORMAT, server: serverOf(a), exportedAt: new Date().toISOString(), ...start, head };
  const body = [JSON.stringify(header), ...lines, ...[...certs].map(([ref, envelope]) => JSON.stringify({ cert: ref, envelope }))].join('\n') + '\n';
  writeFileAtomic(file, body, 0o600);
  if (json(a)) outJson({ file, records: count, first, last, head });
  else out(count === 0 ? `no audit records${start.from || start.since ? ' from there' : ''}; wrote ${file} (a header only)` : `exported audit records ${first} to ${last} (${count}) to ${file}; licctl audit verify ${file} --vendor-key KEY checks it offline`);
  return 0;
}

/** --vendor-key HEX, or a file holding the key: 64 hex digits, or JSON with "publicKey" / "vendorPublicKey". */
function vendorKeyOption(a: ParsedArgs): Uint8Array {
  const v = flag(a, 'vendor-key') ?? process.env.LICD_VENDOR_KEY;
  if (!v) throw new UsageError('licctl audit verify needs --vendor-key HEX|FILE (or LICD_VENDOR_KEY): the vendor public key the seals chain to');
  const direct = /^\s*[0-9a-fA-F]{64}\s*$/.test(v) ? vendorPublicKeyOf(v) : null;
  if (direct) return direct;
  let text: string;
  try {
    text = readFileSync(v, 'utf8');
  } catch (e) {
    throw new UsageError(`--vendor-key ${JSON.stringify(v)} is neither 64 hex digits nor a readable file (${fsErrorText(e, v)})`);
  }
  const k = vendorPublicKeyOf(text);
  if (k) return k;
  throw new UsageError(`--vendor-key ${v}: the file holds no vendor public key (64 hex digits, or JSON with "publicKey" as licctl vendor keygen writes)`);
}

/** Reads an export: the header, the records in file order, the certificates (src/core/audit-file.ts). */
export function readExport(file: string): AuditExport {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LicdError('BAD_REQUEST', `cannot read the audit export ${file}: ${fsErrorText(e, file)}; give the file licctl audit export wrote`);
  }
  const x = parseAuditExport(text);
  if (x.header === null && x.records.length === 0) throw new LicdError('BAD_REQUEST', `${file} is not an audit export (no ${AUDIT_EXPORT_FORMAT} header, no records); give the file licctl audit export wrote`);
  return x;
}

function verify(a: ParsedArgs): number {
  const file = a.positional[2]!;
  const key = vendorKeyOption(a);
  const x = readExport(file);
  const { records, certs } = x;
  // An export made with --from starts where it was asked to: its first record's link is taken as given.
  const from = intFlag(a, 'from', 1, Number.MAX_SAFE_INTEGER) ?? exportStart(x);
  const v = verifyAudit(records, certs, { vendorPublicKey: key, ed: nodeEd25519(), sha256, ...(from !== undefined ? { from } : {}) });
  if (json(a)) outJson({ file, ...v });
  else report(a, file, v);
  return v.ok ? 0 : 2;
}

function report(a: ParsedArgs, file: string, v: AuditVerdict): void {
  void a;
  if (!v.ok) {
    err(`licctl: audit log ${file} is BROKEN at record ${v.problem!.seq}: ${v.problem!.reason}: ${v.problem!.message}`);
    if (v.sealedThrough !== null) err(`  records before it are sealed through ${v.sealedThrough}`);
    return;
  }
  if (v.records === 0) {
    out(`audit log ${file}: no records`);
    return;
  }
  out(`audit log ${file}: valid: records ${v.first} to ${v.last} (${v.records}) chain; ${v.seals} seal(s)${v.sealedThrough !== null ? `, sealed through record ${v.sealedThrough}` : ', none sealed'}`);
  for (const k of v.keys) out(`  sealed by session key ${k.sessionKey.slice(0, 16)}... delegated by dongle ${k.dongle}${k.emulated ? ' (an EMULATED dongle: development material)' : ''}, license ${k.entitlement}`);
  if (v.voided.length > 0) out(`  voided (their write failed; the chain says so): ${v.voided.map((x) => (x.from === x.to ? `${x.from}` : `${x.from}-${x.to}`)).join(', ')}`);
  if (v.unsealed) out(`  records ${v.unsealed.from} to ${v.unsealed.to} are NOT YET SEALED: not proven (licd seals within audit.sealIntervalSeconds, at each admin action and at stop; export again later)`);
}

async function head(a: ParsedArgs): Promise<number> {
  const r = await adminRequest<AuditHeadResult>(a, 'audit.head', {});
  if (json(a)) {
    outJson(r);
    return 0;
  }
  const time = timeOf(a);
  out(`audit head: record ${r.head.seq} (${r.head.hash.slice(0, 16)}...); ${r.sealed ? `last seal: record ${r.sealed.seq} at ${time(r.sealed.at)}` : 'no seal yet'}; ${r.unsealed} record(s) written since`);
  return 0;
}

const VENDOR_KEY = { type: 'string', arg: 'HEX|FILE', help: 'the vendor public key: 64 hex digits, or a file holding them, or a JSON file with "publicKey" (as licctl vendor keygen writes; only the public key is read); or LICD_VENDOR_KEY' } as const;

export const auditCommands: Command[] = [
  {
    path: 'audit export',
    section: 'admin',
    synopsis: 'audit export [--from SEQ|TIME] --out FILE',
    summary: 'write the audit log (every grant, end, denial, borrow, license change, quarantine and admin request, hash-chained and sealed) to FILE, as JSON lines',
    details: 'The first line is the header {"format":"licd-audit-export/1", server, exportedAt, head}; then one record per line in order; then the certificates the seals name ({"cert", "envelope"}). docs/audit.md has the format.',
    connects: true,
    options: { from: { type: 'string', arg: 'SEQ|TIME', help: 'start at record SEQ, or at the first record at or after TIME (2026-11-30 or 2026-11-30T08:00:00Z)' }, out: { type: 'string', arg: 'FILE', help: 'the file to write (its directory must exist)' } },
    json: '{file, records, first, last, head: {seq, hash}}',
    examples: ['licctl audit export --out audit.jsonl --user admin --password-file admin.password', 'licctl audit export --from 2026-11-01 --out november.jsonl'],
    run: exportLog,
  },
  {
    path: 'audit verify',
    section: 'admin',
    synopsis: 'audit verify FILE [--from SEQ] --vendor-key HEX|FILE',
    summary: 'check an audit export offline: every record against its hash and link, every seal against the session key its delegation and license certify (exit 0 valid, 2 broken, naming the record)',
    details: 'Needs no server. Records after the last seal are listed as not yet sealed (not proven). Exit 2 names the first broken record and what is wrong: edited, deleted, reordered, bad-seal or malformed.',
    args: { min: 1, max: 1, names: 'the FILE licctl audit export wrote' },
    options: { from: { type: 'string', arg: 'SEQ', help: 'check from record SEQ on (its link to the record before is taken as given)' }, 'vendor-key': VENDOR_KEY },
    json: '{file, ok, records, first, last, seals, sealedThrough, unsealed: {from, to}|null, voided: [{from, to}], keys: [{sessionKey, dongle, emulated, entitlement}], problem: {seq, reason, message}|null}',
    examples: ['licctl audit verify audit.jsonl --vendor-key 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29', 'licctl audit verify audit.jsonl --from 5000 --vendor-key data/dev/vendor.key'],
    run: verify,
  },
  {
    path: 'audit head',
    section: 'admin',
    synopsis: 'audit head',
    summary: 'the newest audit record, the last seal and how many records wait for the next one',
    connects: true,
    json: '{head: {seq, hash}, sealed: {seq, at}|null, unsealed, sessionKey, sealIntervalSeconds}',
    examples: ['licctl audit head --user admin --password-file admin.password'],
    run: head,
  },
];
