/**
 * Verifies the audit log in the browser (docs/web.md, "Verifying the audit log"): the core's own
 * verifier (`verifyAudit`, src/core/audit.ts: the hashes, the links, the voids, each seal through
 * its delegation and license up to the vendor key), its hash and signature ports answered by the
 * browser's WebCrypto (SHA-256 and Ed25519). No second verifier: what licctl audit verify accepts,
 * this accepts.
 *
 * verifyAudit is synchronous and WebCrypto is not, so the answers are computed first: the hash of
 * every record and the reference of every certificate (the inputs are found by running the core's
 * own recordHash/certRef with a port that only notes what it is given), then the run. A check the
 * run asks for whose answer is not known yet (the signatures: which ones depends on the seals) is
 * noted and answered "valid" for the moment; those are then computed and the run repeated, until a
 * run asks for nothing unknown. Only that run's verdict is kept; it takes two runs (three when a
 * signature fails and the run then stops earlier, asking nothing new).
 */
import { certRef, recordHash, verifyAudit, type AuditVerdict, type Sha256 } from '../../core/audit.ts';
import { toHex } from '../../core/bytes.ts';
import type { Ed25519 } from '../../core/ports.ts';

const enc = new TextEncoder();
/** WebCrypto's types want an ArrayBuffer-backed view (these never are shared). */
const view = (b: Uint8Array): Uint8Array<ArrayBuffer> => b as Uint8Array<ArrayBuffer>;
const bytesOf = (data: Uint8Array | string): Uint8Array => (typeof data === 'string' ? enc.encode(data) : data);
/** The memo key of a hash input: the string itself, or its bytes in hex (marked apart). */
const hashKey = (data: Uint8Array | string): string => (typeof data === 'string' ? `s${data}` : `b${toHex(data)}`);

/** Whether this browser can verify here (WebCrypto needs HTTPS or the box itself, and Ed25519). */
export async function canVerify(): Promise<string | null> {
  if (!globalThis.crypto?.subtle) return 'this browser has no WebCrypto here (it needs the page over HTTPS, or opened on the box itself)';
  try {
    await crypto.subtle.importKey('raw', new Uint8Array(32), { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    if ((e as Error)?.name === 'NotSupportedError') return 'this browser\'s WebCrypto has no Ed25519 (Chromium 137 or later, Firefox 129, Safari 17 have it); use licctl audit verify';
  }
  return null;
}

export interface VerifyInput {
  records: readonly unknown[];
  certs: ReadonlyMap<string, unknown>;
  vendorPublicKey: Uint8Array;
  from?: number;
}

export async function verifyInBrowser(x: VerifyInput): Promise<AuditVerdict> {
  const hashes = new Map<string, Uint8Array>();
  const sigs = new Map<string, boolean>();
  const wantHash = new Map<string, Uint8Array>();
  const wantSig = new Map<string, { pk: Uint8Array; msg: Uint8Array; sig: Uint8Array }>();

  // The inputs of every record hash and certificate reference, through the core's own functions.
  const note: Sha256 = (data) => {
    wantHash.set(hashKey(data), bytesOf(data));
    return new Uint8Array(32);
  };
  for (const r of x.records) if (r && typeof r === 'object') recordHash(r as Record<string, unknown>, note);
  for (const env of x.certs.values()) certRef(env, note);

  const sha256: Sha256 = (data) => {
    const k = hashKey(data);
    const h = hashes.get(k);
    if (h) return h;
    wantHash.set(k, bytesOf(data));
    return new Uint8Array(32);
  };
  const ed: Ed25519 = {
    publicKey() {
      throw new Error('the page only verifies');
    },
    sign() {
      throw new Error('the page only verifies');
    },
    verify(pk, msg, sig) {
      const k = `${toHex(pk)}.${toHex(sig)}.${toHex(msg)}`;
      const known = sigs.get(k);
      if (known !== undefined) return known;
      wantSig.set(k, { pk, msg, sig });
      return true;
    },
  };
  const keys = new Map<string, Promise<CryptoKey | null>>();
  const keyOf = (pk: Uint8Array): Promise<CryptoKey | null> => {
    const k = toHex(pk);
    let p = keys.get(k);
    if (!p) keys.set(k, (p = crypto.subtle.importKey('raw', view(pk), { name: 'Ed25519' }, false, ['verify']).catch(() => null)));
    return p;
  };

  for (let round = 0; ; round++) {
    await inChunks([...wantHash], async ([k, data]) => {
      hashes.set(k, new Uint8Array(await crypto.subtle.digest('SHA-256', view(data))));
    });
    await inChunks([...wantSig], async ([k, s]) => {
      const key = s.pk.length === 32 && s.sig.length === 64 ? await keyOf(s.pk) : null;
      sigs.set(k, key ? await crypto.subtle.verify({ name: 'Ed25519' }, key, view(s.sig), view(s.msg)).catch(() => false) : false);
    });
    wantHash.clear();
    wantSig.clear();
    const v = verifyAudit(x.records, x.certs, { vendorPublicKey: x.vendorPublicKey, ed, sha256, ...(x.from !== undefined ? { from: x.from } : {}) });
    if (wantHash.size === 0 && wantSig.size === 0) return v;
    // Every round answers at least one more check; the answers never change, so this ends.
    if (round > 1000) throw new Error('audit verification did not settle');
  }
}

/** Runs f over items, a few hundred at a time (so that a long log does not queue 100,000 promises at once). */
async function inChunks<T>(items: T[], f: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 256) await Promise.all(items.slice(i, i + 256).map(f));
}
