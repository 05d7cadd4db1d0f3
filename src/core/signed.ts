import { LicdError, type ErrorCode } from './errors.ts';
import { concat, fromBase64url, fromUtf8, toBase64url, utf8 } from './bytes.ts';
import type { Ed25519 } from './ports.ts';

/**
 * A signed document: the body is carried as the exact bytes that were signed (base64url), so a
 * verifier never re-serialises JSON. The signed message is
 *
 *     ASCII(format) || 0x00 || body bytes
 *
 * where `format` (e.g. "licd-entitlement/1") is the domain separator: a signature made for one
 * kind of document can never be replayed as another. docs/tokens.md documents this.
 */
export interface SignedEnvelope {
  format: string;
  body: string;
  sig: string;
}

export const FORMATS = {
  entitlement: 'licd-entitlement/1',
  grant: 'licd-grant/1',
  /** Not an envelope: the domain of a signature over a batch of grants (src/core/grant-batch.ts). */
  grantBatch: 'licd-grant-batch/1',
  borrowToken: 'licd-borrow-token/1',
  borrowRequest: 'licd-borrow-request/1',
  borrowReturn: 'licd-borrow-return/1',
  quarantineRelease: 'licd-quarantine-release/1',
  /** Signed by the dongle (not the vendor): docs/activation.md. */
  activationRequest: 'licd-activation-request/1',
  /** Signed by the vendor: a failover box's right to serve another box's seats (docs/scale-out.md). */
  failover: 'licd-failover/1',
} as const;

export function envelopeSignedBytes(format: string, body: Uint8Array): Uint8Array {
  return concat(utf8(format), new Uint8Array([0]), body);
}

export function sealEnvelope(format: string, bodyJson: unknown, seed: Uint8Array, ed: Ed25519): SignedEnvelope {
  const body = utf8(JSON.stringify(bodyJson));
  const sig = ed.sign(seed, envelopeSignedBytes(format, body));
  return { format, body: toBase64url(body), sig: toBase64url(sig) };
}

/** Parses an envelope's shape; says what is wrong with it. Does not verify. */
export function parseEnvelope(value: unknown, format: string, code: ErrorCode): { body: Uint8Array; sig: Uint8Array; json: unknown } {
  if (typeof value !== 'object' || value === null) throw new LicdError(code, `not a ${format} document (expected a JSON object)`);
  const v = value as Record<string, unknown>;
  if (v.format !== format) {
    throw new LicdError(code, `not a ${format} document (its format is ${JSON.stringify(v.format ?? null)})`);
  }
  if (typeof v.body !== 'string') throw new LicdError(code, `${format}: the body is missing`);
  if (v.sig === undefined || v.sig === null || v.sig === '') throw new LicdError(code, `${format}: unsigned (no signature)`, { reason: 'unsigned' });
  let body: Uint8Array;
  let sig: Uint8Array;
  try {
    body = fromBase64url(v.body);
    sig = fromBase64url(String(v.sig));
  } catch {
    throw new LicdError(code, `${format}: body or signature is not base64url`, { reason: 'malformed' });
  }
  if (sig.length !== 64) throw new LicdError(code, `${format}: the signature must be 64 bytes, got ${sig.length}`, { reason: 'malformed' });
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(body));
  } catch {
    throw new LicdError(code, `${format}: the body is not JSON`, { reason: 'malformed' });
  }
  return { body, sig, json };
}

export function verifyEnvelope(
  value: unknown,
  format: string,
  publicKey: Uint8Array,
  ed: Ed25519,
  code: ErrorCode,
  signerName: string,
): unknown {
  const { body, sig, json } = parseEnvelope(value, format, code);
  if (!ed.verify(publicKey, envelopeSignedBytes(format, body), sig)) {
    throw new LicdError(code, `${format}: the signature does not verify with the ${signerName} key (altered, or signed by another key)`, {
      reason: 'bad-signature',
    });
  }
  return json;
}
