/**
 * An audit export file (docs/audit.md, "Export"), read from its text: the header, the records in
 * file order, the certificates the seals name. Pure, so that `licctl audit verify` and the web
 * page (which verifies in the browser) read an export the same way and hand it to `verifyAudit`
 * alike.
 */
import { AUDIT_EXPORT_FORMAT } from './audit.ts';
import { fromHex } from './bytes.ts';

export interface AuditExport {
  header: Record<string, unknown> | null;
  /** In file order; a line that is not JSON becomes `{line, damaged}` so that verify names where. */
  records: unknown[];
  certs: Map<string, unknown>;
}

export function parseAuditExport(text: string): AuditExport {
  let header: Record<string, unknown> | null = null;
  const records: unknown[] = [];
  const certs = new Map<string, unknown>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      // A line that is not JSON is a record someone damaged: verify says where.
      records.push({ line: i + 1, damaged: line.slice(0, 80) });
      return;
    }
    const o = v as Record<string, unknown> | null;
    if (o && typeof o === 'object' && o.format === AUDIT_EXPORT_FORMAT) header = o;
    else if (o && typeof o === 'object' && typeof o.cert === 'string' && 'envelope' in o) certs.set(o.cert, o.envelope);
    else records.push(v);
  });
  return { header, records, certs };
}

/**
 * Where verification starts: an export made with `--from` (its header says `from` or `since`)
 * starts at its first record, whose link to the one before is taken as given; a whole export
 * starts at 1 (undefined).
 */
export function exportStart(x: AuditExport): number | undefined {
  const firstSeq = (x.records[0] as { seq?: unknown } | undefined)?.seq;
  return x.header !== null && (x.header.from !== undefined || x.header.since !== undefined) && typeof firstSeq === 'number' ? firstSeq : undefined;
}

/**
 * The vendor public key an audit check is given: 64 hex digits, or the text of a key file, JSON
 * with "publicKey" (as licctl vendor keygen writes; only the public key is read) or
 * "vendorPublicKey". Null when the text holds none.
 */
export function vendorPublicKeyOf(text: string): Uint8Array | null {
  const hex = (s: string) => (/^[0-9a-fA-F]{64}$/.test(s) ? fromHex(s) : null);
  const direct = hex(text.trim());
  if (direct) return direct;
  try {
    const j = JSON.parse(text) as { publicKey?: unknown; vendorPublicKey?: unknown } | null;
    return hex(String(j?.publicKey ?? j?.vendorPublicKey ?? ''));
  } catch {
    return null;
  }
}
