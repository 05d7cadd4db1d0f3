/**
 * The trust chain, verifiable offline from the vendor public key alone:
 *
 *   vendor key --signs--> entitlement (names the dongle: serial, public key, emulated or not)
 *   dongle key --signs--> delegation (a session public key, the dongle serial, a validity window)
 *   session key --signs--> grants and borrow tokens
 *
 * docs/tokens.md gives the exact bytes of each signature.
 */
import { LicdError } from './errors.ts';
import { concat, fromHex, toHex, utf8 } from './bytes.ts';
import { verifyEntitlement, type Entitlement } from './entitlement.ts';
import type { Ed25519 } from './ports.ts';
import { parseEnvelope, type SignedEnvelope } from './signed.ts';
import { Fields } from './validate.ts';

export const DONGLE_SIG_PREFIX = 'licd-dongle-sig-v1';
export const CLASS_EMULATED = 0x45;
export const CLASS_HARDWARE = 0x48;
export const DELEGATION_FORMAT = 'licd-delegation/1';
/** The SIGN domain under which the dongle signs a delegation body. */
export const DELEGATION_DOMAIN = 'delegation';
export const CHALLENGE_DOMAIN = 'challenge';

/** The bytes a dongle signs (firmware-bridge/PROTOCOL.md, "Signed bytes"). */
export function dongleSignedBytes(domain: string, message: Uint8Array, emulated: boolean): Uint8Array {
  const d = utf8(domain);
  if (d.length < 1 || d.length > 64) throw new RangeError('dongle signing domain must be 1..64 bytes');
  return concat(utf8(DONGLE_SIG_PREFIX), new Uint8Array([0, emulated ? CLASS_EMULATED : CLASS_HARDWARE, d.length]), d, message);
}

export interface Delegation {
  sessionKey: Uint8Array;
  dongleSerial: string;
  emulated: boolean;
  notBefore: number;
  notAfter: number;
}

export interface DelegationBody {
  sessionKey: string;
  dongleSerial: string;
  emulated: boolean;
  notBefore: string;
  notAfter: string;
}

/** A delegation envelope: the same shape as other signed documents, but signed by the dongle. */
export function delegationBody(d: Delegation): DelegationBody {
  return {
    sessionKey: toHex(d.sessionKey),
    dongleSerial: d.dongleSerial,
    emulated: d.emulated,
    notBefore: new Date(d.notBefore).toISOString(),
    notAfter: new Date(d.notAfter).toISOString(),
  };
}

export function parseDelegationBody(json: unknown): Delegation {
  const f = Fields.of(json, 'delegation', 'TOKEN_INVALID');
  const sk = f.string('sessionKey', { max: 64, pattern: /^[0-9a-f]{64}$/, patternHelp: '64 hex digits' });
  const nb = Date.parse(f.string('notBefore', { max: 40 }));
  const na = Date.parse(f.string('notAfter', { max: 40 }));
  if (!Number.isFinite(nb) || !Number.isFinite(na)) f.fail('notBefore', 'and notAfter must be ISO 8601 times');
  return { sessionKey: fromHex(sk), dongleSerial: f.string('dongleSerial', { max: 64 }), emulated: f.bool('emulated'), notBefore: nb, notAfter: na };
}

export interface Chain {
  entitlement: SignedEnvelope | unknown;
  delegation: SignedEnvelope | unknown;
}

export interface VerifiedChain {
  entitlement: Entitlement;
  delegation: Delegation;
}

export interface ChainOptions {
  vendorPublicKey: Uint8Array;
  ed: Ed25519;
  /** Time at which the chain must hold (the token's issue time for tokens used offline). */
  at: number;
  /** Refuse chains through an emulated dongle (production verifiers). */
  refuseEmulated?: boolean;
}

/**
 * Verifies vendor -> entitlement -> dongle -> delegation. Each refusal names the link that broke.
 * The entitlement is checked for its signature and shape; its expiry is judged per feature by the
 * caller (a token may outlive nothing it was issued under, see verifyBorrowToken).
 */
export function verifyChain(chain: Chain, opts: ChainOptions): VerifiedChain {
  let entitlement: Entitlement;
  try {
    // Bind to the dongle the entitlement itself names; the delegation below must match it.
    const parsed = parseEnvelope(chain.entitlement, 'licd-entitlement/1', 'TOKEN_INVALID');
    const named = Fields.of(parsed.json, 'entitlement', 'TOKEN_INVALID').object('dongle');
    const serial = named.string('serial', { max: 64 });
    const pk = named.string('publicKey', { max: 64, pattern: /^[0-9a-fA-F]{64}$/ });
    entitlement = verifyEntitlement(chain.entitlement, {
      vendorPublicKey: opts.vendorPublicKey,
      dongle: { serial, publicKey: fromHex(pk) },
      now: Number.NEGATIVE_INFINITY,
      ed: opts.ed,
    });
  } catch (e) {
    throw new LicdError('TOKEN_INVALID', `chain link 1 (vendor -> entitlement) is broken: ${(e as Error).message}`, { link: 'entitlement' });
  }
  if (opts.refuseEmulated && (entitlement.dongle.emulated || entitlement.development)) {
    throw new LicdError('TOKEN_INVALID', `the chain runs through an emulated dongle (${entitlement.dongle.serial}) or development material; this verifier refuses those`, {
      link: 'entitlement',
      reason: 'emulated',
    });
  }
  const { body, sig, json } = (() => {
    try {
      return parseEnvelope(chain.delegation, DELEGATION_FORMAT, 'TOKEN_INVALID');
    } catch (e) {
      throw new LicdError('TOKEN_INVALID', `chain link 2 (dongle -> delegation) is broken: ${(e as Error).message}`, { link: 'delegation' });
    }
  })();
  const signed = dongleSignedBytes(DELEGATION_DOMAIN, body, entitlement.dongle.emulated);
  if (!opts.ed.verify(entitlement.dongle.publicKey, signed, sig)) {
    throw new LicdError('TOKEN_INVALID', 'chain link 2 (dongle -> delegation) is broken: the delegation is not signed by the dongle the entitlement names (altered, or from another dongle)', {
      link: 'delegation',
      reason: 'bad-signature',
    });
  }
  const delegation = parseDelegationBody(json);
  if (delegation.dongleSerial !== entitlement.dongle.serial || delegation.emulated !== entitlement.dongle.emulated) {
    throw new LicdError('TOKEN_INVALID', 'chain link 2 (dongle -> delegation) is broken: the delegation names another dongle than the entitlement', { link: 'delegation' });
  }
  if (opts.at < delegation.notBefore || opts.at > delegation.notAfter) {
    throw new LicdError(
      'TOKEN_INVALID',
      `chain link 2 (dongle -> delegation) does not cover ${new Date(opts.at).toISOString()}: the session key was valid from ${new Date(delegation.notBefore).toISOString()} to ${new Date(delegation.notAfter).toISOString()}`,
      { link: 'delegation', reason: 'outside-validity' },
    );
  }
  return { entitlement, delegation };
}

/** The envelope of a delegation, from its body bytes and the dongle's signature. */
export function delegationEnvelope(body: Uint8Array, signature: Uint8Array, b64: (b: Uint8Array) => string): SignedEnvelope {
  return { format: DELEGATION_FORMAT, body: b64(body), sig: b64(signature) };
}
