/**
 * Borrow requests, borrow tokens and return notes: the documents of offline borrowing.
 * docs/tokens.md gives the exact signed bytes; docs/token-vectors.json has test vectors.
 *
 * - A borrow request (licd-borrow-request/1) is signed by the client's own key. The same document
 *   travels over MQTT (online) or in a file (air-gapped), so there is one path to check.
 * - A borrow token (licd-borrow-token/1) is signed by the daemon's session key; with the
 *   entitlement and the delegation it makes a bundle that verifies offline from the vendor key.
 * - A return note (licd-borrow-return/1) is signed by the client's key: only the machine that
 *   holds the token can give its seat back early, from any session or by file.
 */
import { LicdError } from './errors.ts';
import { fromHex, toHex } from './bytes.ts';
import { MAX_BORROW_HOURS, type FeatureLicense, type LicenseType } from './entitlement.ts';
import type { Ed25519 } from './ports.ts';
import { FORMATS, parseEnvelope, sealEnvelope, verifyEnvelope, type SignedEnvelope } from './signed.ts';
import { verifyChain, type VerifiedChain } from './trust.ts';
import { Fields, FEATURE_HELP, FEATURE_PATTERN, unsafeChar } from './validate.ts';

export interface BorrowRequestBody {
  /** Random, chosen by the client: a repeated request gets the same answer instead of more seats. */
  requestId: string;
  items: Array<{ feature: string; count: number }>;
  hours: number;
  user: string;
  hostId: string;
  hostName: string;
  /** The client's Ed25519 public key (hex); the request is signed by it. */
  clientKey: string;
  autoRenew: boolean;
  createdAt: string;
  /** Renewal or refresh of these borrows (same seats, new expiry). */
  renew?: string[];
  /** A renewal asked for by reconnecting (LM-X's refresh); the server applies its one-hour rule. */
  refresh?: boolean;
}

export interface BorrowRequest extends Omit<BorrowRequestBody, 'createdAt'> {
  createdAt: number;
}

export interface BorrowTokenBody {
  tokenId: string;
  borrowId: string;
  feature: string;
  product: string;
  version: string;
  type: LicenseType;
  count: number;
  user: string;
  hostId: string;
  hostName: string;
  clientKey: string;
  issuedAt: string;
  expiresAt: string;
  entitlementId: string;
  dongleSerial: string;
  /** The daemon's session public key that signs this token (hex); the delegation names it. */
  sessionKey: string;
}

export interface BorrowToken extends Omit<BorrowTokenBody, 'issuedAt' | 'expiresAt'> {
  issuedAt: number;
  expiresAt: number;
}

/** What a client stores and carries: the token and its chain to the vendor key. */
export interface TokenBundle {
  format: 'licd-token-bundle/1';
  token: SignedEnvelope;
  entitlement: SignedEnvelope;
  delegation: SignedEnvelope;
}

export interface ReturnBody {
  borrowIds: string[];
  hostId: string;
  user: string;
  clientKey: string;
  createdAt: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
export const HOST_ID_PATTERN = /^[0-9a-f]{16,64}$/;

function time(f: Fields, field: string): number {
  const s = f.string(field, { max: 40 });
  const t = Date.parse(s);
  if (!Number.isFinite(t)) f.fail(field, `must be an ISO 8601 time, got ${JSON.stringify(s)}`);
  return t;
}

// ---- requests -----------------------------------------------------------------------------------

export function sealBorrowRequest(body: BorrowRequestBody, clientSeed: Uint8Array, ed: Ed25519): SignedEnvelope {
  return sealEnvelope(FORMATS.borrowRequest, body, clientSeed, ed);
}

/** Checks a borrow request's shape and that the key it names signed it. */
export function openBorrowRequest(envelope: unknown, ed: Ed25519): BorrowRequest {
  const { json } = parseEnvelope(envelope, FORMATS.borrowRequest, 'BAD_REQUEST');
  const f = Fields.of(json, 'request', 'BAD_REQUEST');
  const clientKey = f.string('clientKey', { max: 64, pattern: HEX64, patternHelp: '64 lowercase hex digits' });
  verifyEnvelope(envelope, FORMATS.borrowRequest, fromHex(clientKey), ed, 'BAD_REQUEST', "client's");
  const items = f.array('items', { max: 64 }).map((raw, i) => {
    const x = f.element(i, raw, 'items');
    return { feature: x.string('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP }), count: x.int('count', { min: 1, max: 10_000 }) };
  });
  const renew = f.optArray('renew', { max: 64 })?.map((v, i) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > 64 || unsafeChar(v) !== null) f.fail(`renew[${i}]`, 'must be a borrow id (plain text, at most 64 characters)');
    return v as string;
  });
  if (items.length === 0 && !renew) f.fail('items', 'must name at least one feature');
  if (new Set(items.map((i) => i.feature)).size !== items.length) f.fail('items', 'must name each feature once');
  return {
    requestId: f.string('requestId', { max: 64 }),
    items,
    hours: f.int('hours', { min: 1, max: MAX_BORROW_HOURS }),
    user: f.string('user', { max: 64 }),
    hostId: f.string('hostId', { max: 64, pattern: HOST_ID_PATTERN, patternHelp: '16 to 64 lowercase hex digits' }),
    hostName: f.string('hostName', { max: 128 }),
    clientKey,
    autoRenew: f.optBool('autoRenew') ?? false,
    createdAt: time(f, 'createdAt'),
    ...(renew ? { renew } : {}),
    ...(f.optBool('refresh') ? { refresh: true } : {}),
  };
}

// ---- tokens -------------------------------------------------------------------------------------

export function tokenBody(t: BorrowToken): BorrowTokenBody {
  return { ...t, issuedAt: new Date(t.issuedAt).toISOString(), expiresAt: new Date(t.expiresAt).toISOString() };
}

export function sealToken(t: BorrowToken, sessionSeed: Uint8Array, ed: Ed25519): SignedEnvelope {
  return sealEnvelope(FORMATS.borrowToken, tokenBody(t), sessionSeed, ed);
}

function parseTokenBody(json: unknown): BorrowToken {
  const f = Fields.of(json, 'token', 'TOKEN_INVALID');
  return {
    tokenId: f.string('tokenId', { max: 64 }),
    borrowId: f.string('borrowId', { max: 64 }),
    feature: f.string('feature', { max: 64 }),
    product: f.string('product', { max: 128 }),
    version: f.string('version', { max: 32 }),
    type: f.oneOf('type', ['interface', 'render', 'distributed'] as const),
    count: f.int('count', { min: 1, max: 10_000 }),
    user: f.string('user', { max: 64 }),
    hostId: f.string('hostId', { max: 64 }),
    hostName: f.string('hostName', { max: 128 }),
    clientKey: f.string('clientKey', { max: 64, pattern: HEX64 }),
    issuedAt: time(f, 'issuedAt'),
    expiresAt: time(f, 'expiresAt'),
    entitlementId: f.string('entitlementId', { max: 128 }),
    dongleSerial: f.string('dongleSerial', { max: 64 }),
    sessionKey: f.string('sessionKey', { max: 64, pattern: HEX64 }),
  };
}

/** Reads a token's claims without trusting them (for listing a token store). */
export function peekToken(bundle: TokenBundle): BorrowToken {
  return parseTokenBody(parseEnvelope(bundle.token, FORMATS.borrowToken, 'TOKEN_INVALID').json);
}

export interface VerifyTokenOptions {
  vendorPublicKey: Uint8Array;
  ed: Ed25519;
  now: number;
  /** This machine's host id and user, and the client's own public key (hex). */
  hostId: string;
  user: string;
  clientKey: string;
  /** The latest time this client has seen (its clock high-water mark). */
  highWater?: number;
  /** How far back the clock may step without being called set back (NTP corrections), ms. */
  clockToleranceMs?: number;
  refuseEmulated?: boolean;
}

export interface VerifiedToken {
  token: BorrowToken;
  chain: VerifiedChain;
  feature: FeatureLicense;
}

/**
 * Verifies a token bundle offline: the chain to the vendor key, the session key's signature, the
 * feature's borrow policy, the machine, user and key it is bound to, and the time (including a
 * clock set back). Every refusal says why.
 */
export function verifyBorrowToken(bundle: unknown, o: VerifyTokenOptions): VerifiedToken {
  const b = bundle as Partial<TokenBundle> | null;
  if (!b || typeof b !== 'object' || b.format !== 'licd-token-bundle/1') throw new LicdError('TOKEN_INVALID', 'not a licd token bundle (licd-token-bundle/1)', { reason: 'malformed' });
  const claims = peekToken(b as TokenBundle);
  const chain = verifyChain({ entitlement: b.entitlement, delegation: b.delegation }, { vendorPublicKey: o.vendorPublicKey, ed: o.ed, at: claims.issuedAt, refuseEmulated: o.refuseEmulated ?? false });
  if (toHex(chain.delegation.sessionKey) !== claims.sessionKey) {
    throw new LicdError('TOKEN_INVALID', 'chain link 3 (delegation -> token) is broken: the token names another session key than the delegation', { link: 'token', reason: 'session-key' });
  }
  const token = parseTokenBody(verifyEnvelope(b.token, FORMATS.borrowToken, chain.delegation.sessionKey, o.ed, 'TOKEN_INVALID', 'license server session'));
  if (token.dongleSerial !== chain.entitlement.dongle.serial || token.entitlementId !== chain.entitlement.id) {
    throw new LicdError('TOKEN_INVALID', 'the token names another license or dongle than its chain', { reason: 'chain-mismatch' });
  }
  const feature = chain.entitlement.features.find((f) => f.name === token.feature);
  if (!feature) throw new LicdError('TOKEN_INVALID', `the license behind the token has no feature ${token.feature}`, { reason: 'feature' });
  if (!feature.borrow.allowed) throw new LicdError('TOKEN_INVALID', `${token.feature} may not be borrowed under its license`, { reason: 'policy' });
  if (token.expiresAt - token.issuedAt > feature.borrow.maxHours * 3600_000 + 60_000) {
    throw new LicdError('TOKEN_INVALID', `the token runs longer than the ${feature.borrow.maxHours} h the license allows`, { reason: 'policy' });
  }
  if (feature.expires !== null && token.expiresAt > feature.expires + 60_000) {
    throw new LicdError('TOKEN_INVALID', `the token outlives the license of ${token.feature}`, { reason: 'policy' });
  }
  if (token.hostId !== o.hostId) {
    throw new LicdError('TOKEN_INVALID', `the token was borrowed for another machine (host id ${token.hostId.slice(0, 12)}…, this one is ${o.hostId.slice(0, 12)}…); borrow on this machine instead`, {
      reason: 'host',
    });
  }
  if (token.user !== o.user) throw new LicdError('TOKEN_INVALID', `the token was borrowed by user ${token.user}, not ${o.user}`, { reason: 'user' });
  if (token.clientKey !== o.clientKey) throw new LicdError('TOKEN_INVALID', "the token is bound to another client key than this machine's", { reason: 'client-key' });
  const tol = o.clockToleranceMs ?? 10 * 60_000;
  if (o.now < token.issuedAt - tol) {
    throw new LicdError('CLOCK_SET_BACK', `the clock reads ${new Date(o.now).toISOString()}, before the token was issued (${new Date(token.issuedAt).toISOString()}); set the clock right`, {
      reason: 'clock',
      jumpMs: token.issuedAt - o.now,
    });
  }
  if (o.highWater !== undefined && o.now < o.highWater - tol) {
    throw new LicdError('CLOCK_SET_BACK', `the clock was set back by ${Math.round((o.highWater - o.now) / 60_000)} min (it read ${new Date(o.highWater).toISOString()} before); borrowed licenses stay locked until it is right`, {
      reason: 'clock',
      jumpMs: o.highWater - o.now,
    });
  }
  if (o.now >= token.expiresAt) {
    throw new LicdError('TOKEN_INVALID', `the borrowed ${token.feature} expired at ${new Date(token.expiresAt).toISOString()}; borrow it again when connected`, { reason: 'expired' });
  }
  return { token, chain, feature };
}

// ---- returns ------------------------------------------------------------------------------------

export function sealReturn(body: ReturnBody, clientSeed: Uint8Array, ed: Ed25519): SignedEnvelope {
  return sealEnvelope(FORMATS.borrowReturn, body, clientSeed, ed);
}

export function openReturn(envelope: unknown, ed: Ed25519): Omit<ReturnBody, 'createdAt'> & { createdAt: number } {
  const { json } = parseEnvelope(envelope, FORMATS.borrowReturn, 'BAD_REQUEST');
  const f = Fields.of(json, 'return', 'BAD_REQUEST');
  const clientKey = f.string('clientKey', { max: 64, pattern: HEX64, patternHelp: '64 lowercase hex digits' });
  verifyEnvelope(envelope, FORMATS.borrowReturn, fromHex(clientKey), ed, 'BAD_REQUEST', "client's");
  const borrowIds = f.array('borrowIds', { max: 256 }).map((v, i) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > 64) f.fail(`borrowIds[${i}]`, 'must be a borrow id');
    return v as string;
  });
  return { borrowIds, hostId: f.string('hostId', { max: 64 }), user: f.string('user', { max: 64 }), clientKey, createdAt: time(f, 'createdAt') };
}
