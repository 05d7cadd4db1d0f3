/**
 * Offline verification of grants: the signed `grant` a checkout answer carries (licd-grant/1),
 * checked through the whole trust chain from the vendor public key alone:
 *
 *   link 1  vendor key  -> entitlement   (names the dongle: serial, public key, emulated or not)
 *   link 2  dongle key  -> delegation    (the session public key and its validity window)
 *   link 3  session key -> grant         (lease, feature, count, user, host, times)
 *
 * Links 1 and 2 are src/core/trust.ts verifyChain; this file adds link 3 and the grant's own
 * rules. Link 3 takes both forms of a grant: a lone one signed on its own, and one of a batch
 * whose proof leads to the root the session key signed (src/core/grant-batch.ts). The chain comes
 * from the retained topic licd/v1/server/chain (fetchChain below) or from anywhere else: nothing
 * here needs the network. docs/tokens.md gives the exact signed bytes.
 */
import { LicdError, isLicdError } from '../core/errors.ts';
import { toHex } from '../core/bytes.ts';
import type { FeatureLicense } from '../core/entitlement.ts';
import { verifyFailover } from '../core/failover.ts';
import type { Ed25519 } from '../core/ports.ts';
import { topics as lone } from '../core/protocol.ts';
import { verifyGrantEnvelope } from '../core/grant-batch.ts';
import type { HashBytes } from '../core/merkle.ts';
import { FORMATS, parseEnvelope, type SignedEnvelope } from '../core/signed.ts';
import { sha256Bytes } from '../crypto/sha256.ts';
import { DELEGATION_FORMAT, parseDelegationBody, verifyChain, type VerifiedChain } from '../core/trust.ts';
import { Fields } from '../core/validate.ts';
import type { LicdClient } from './client.ts';

/** The body the daemon's session key signs for each lease (src/daemon/daemon.ts, grant()). */
export interface GrantBody {
  lease: string;
  feature: string;
  count: number;
  user: string;
  host: string;
  clientId: string;
  issuedAt: string;
  until: string;
  /** The id of the entitlement the seat was granted under. */
  entitlement: string;
  /** The session public key (hex) that signed the grant; the delegation names it. */
  sessionKey: string;
}

export interface Grant extends Omit<GrantBody, 'issuedAt' | 'until'> {
  issuedAt: number;
  until: number;
}

/** A grant with the chain it verifies through (the chain as published on licd/v1/server/chain). */
export interface GrantBundle {
  grant: unknown;
  entitlement: unknown;
  delegation: unknown;
  /** A failover box's failover entitlement (docs/scale-out.md): a grant of a feature only the primary has names it. */
  failover?: unknown;
}

export interface VerifyGrantOptions {
  /** The vendor's Ed25519 public key (32 bytes), built into the client software. */
  vendorPublicKey: Uint8Array;
  ed: Ed25519;
  /**
   * When given, the grant must also be current at this time: issued no later than now (plus the
   * tolerance) and not past its `until`. A heartbeat renews a lease without signing a new grant,
   * so pass `now` when the grant has just been received; leave it out to check only that the
   * grant was validly issued.
   */
  now?: number;
  /** How far the server's clock may run ahead of this one, ms (default 10 minutes). */
  clockToleranceMs?: number;
  /** Refuse chains through an emulated dongle or development material (production verifiers). */
  refuseEmulated?: boolean;
  /** SHA-256 for the proofs of batched grants (default: node:crypto). */
  sha256?: HashBytes;
}

export interface VerifiedGrant {
  grant: Grant;
  chain: VerifiedChain;
  feature: FeatureLicense;
}

const HEX64 = /^[0-9a-f]{64}$/;

function link3(message: string, reason: string): LicdError {
  return new LicdError('TOKEN_INVALID', `chain link 3 (session key -> grant) is broken: ${message}`, { link: 'grant', reason });
}

function parseGrantBody(json: unknown): Grant {
  const f = Fields.of(json, 'grant', 'TOKEN_INVALID');
  const time = (field: string): number => {
    const s = f.string(field, { max: 40 });
    const t = Date.parse(s);
    if (!Number.isFinite(t)) f.fail(field, `must be an ISO 8601 time, got ${JSON.stringify(s)}`);
    return t;
  };
  return {
    lease: f.string('lease', { max: 64 }),
    feature: f.string('feature', { max: 64 }),
    count: f.int('count', { min: 1, max: 1_000_000 }),
    user: f.string('user', { max: 64 }),
    host: f.string('host', { max: 128 }),
    clientId: f.string('clientId', { max: 128 }),
    issuedAt: time('issuedAt'),
    until: time('until'),
    entitlement: f.string('entitlement', { max: 128 }),
    sessionKey: f.string('sessionKey', { max: 64, pattern: HEX64, patternHelp: '64 lowercase hex digits' }),
  };
}

/** The failover entitlement of a bundle, verified with the vendor key and bound to the chain's dongle. */
function failoverLicense(envelope: unknown, chain: VerifiedChain, grant: Grant, o: VerifyGrantOptions): { id: string; features: FeatureLicense[] } {
  try {
    const d = chain.entitlement.dongle;
    return verifyFailover(envelope, { vendorPublicKey: o.vendorPublicKey, dongle: { serial: d.serial, publicKey: d.publicKey }, serverId: '', now: grant.issuedAt, ed: o.ed });
  } catch (e) {
    throw new LicdError('TOKEN_INVALID', `the failover entitlement behind the grant does not hold: ${(e as Error).message}`, { link: 'failover', reason: isLicdError(e) ? String(e.details?.reason ?? 'invalid') : 'invalid' });
  }
}

/** Reads a grant's claims without trusting them (for display; verifyGrant is the check). */
export function peekGrant(grant: unknown): Grant {
  try {
    return parseGrantBody(parseEnvelope(grant, FORMATS.grant, 'TOKEN_INVALID').json);
  } catch (e) {
    throw link3((e as Error).message, isLicdError(e) ? String(e.details?.reason ?? 'malformed') : 'malformed');
  }
}

/**
 * Verifies a grant and its chain offline. Throws LicdError('TOKEN_INVALID') naming the link or
 * rule that failed (details.link: 'entitlement' | 'delegation' | 'grant').
 */
export function verifyGrant(bundle: GrantBundle, o: VerifyGrantOptions): VerifiedGrant {
  if (typeof bundle !== 'object' || bundle === null) throw new LicdError('TOKEN_INVALID', 'expected {grant, entitlement, delegation}', { reason: 'malformed' });
  // The claims say when the grant was issued; the chain must hold at that time. They are trusted
  // only after the session key's signature over the same bytes verifies below.
  const claims = peekGrant(bundle.grant);
  const chainOf = (at: number): VerifiedChain =>
    verifyChain({ entitlement: bundle.entitlement, delegation: bundle.delegation }, { vendorPublicKey: o.vendorPublicKey, ed: o.ed, at, refuseEmulated: o.refuseEmulated ?? false });
  // An issue time outside the delegation's window is reported only once the grant's own signature
  // verified: an altered issuedAt is a broken link 3, not a delegation that ran out.
  let outside: LicdError | null = null;
  let chain: VerifiedChain;
  try {
    chain = chainOf(claims.issuedAt);
  } catch (e) {
    if (!isLicdError(e) || e.details?.reason !== 'outside-validity') throw e;
    outside = e;
    chain = chainOf(parseDelegationBody(parseEnvelope(bundle.delegation, DELEGATION_FORMAT, 'TOKEN_INVALID').json).notBefore);
  }
  if (toHex(chain.delegation.sessionKey) !== claims.sessionKey) {
    throw link3('the grant names another session key than the delegation (signed by another server run, or forged)', 'session-key');
  }
  let grant: Grant;
  try {
    // A lone grant's signature covers its envelope; a batched grant's covers the root its proof leads to.
    grant = parseGrantBody(verifyGrantEnvelope(bundle.grant, chain.delegation.sessionKey, o.ed, o.sha256 ?? sha256Bytes, 'TOKEN_INVALID', 'license server session'));
  } catch (e) {
    throw link3((e as Error).message, isLicdError(e) ? String(e.details?.reason ?? 'bad-signature') : 'bad-signature');
  }
  if (outside) throw outside;
  const entitlement = chain.entitlement;
  // A failover box grants a feature only the primary has under its failover entitlement, bound to
  // the same dongle as its license (docs/scale-out.md, "Failover server").
  const license = grant.entitlement !== entitlement.id && bundle.failover !== undefined ? failoverLicense(bundle.failover, chain, grant, o) : entitlement;
  if (grant.entitlement !== license.id) {
    throw new LicdError('TOKEN_INVALID', `the grant names license ${grant.entitlement}, but its chain carries ${entitlement.id}`, { link: 'grant', reason: 'chain-mismatch' });
  }
  const feature = license.features.find((x) => x.name === grant.feature);
  if (!feature) throw new LicdError('TOKEN_INVALID', `the license behind the grant (${license.id}) has no feature ${grant.feature}`, { link: 'grant', reason: 'feature' });
  if (grant.count > feature.seats) {
    throw new LicdError('TOKEN_INVALID', `the grant is for ${grant.count} seats of ${grant.feature}; the license has ${feature.seats}`, { link: 'grant', reason: 'policy' });
  }
  if (feature.expires !== null && grant.issuedAt > feature.expires) {
    throw new LicdError('TOKEN_INVALID', `the grant was issued after the license of ${grant.feature} expired (${new Date(feature.expires).toISOString()})`, { link: 'grant', reason: 'policy' });
  }
  if (grant.until < grant.issuedAt) throw new LicdError('TOKEN_INVALID', 'the grant ends before it was issued', { link: 'grant', reason: 'malformed' });
  if (o.now !== undefined) {
    const tol = o.clockToleranceMs ?? 10 * 60_000;
    if (o.now < grant.issuedAt - tol) {
      throw new LicdError(
        'TOKEN_INVALID',
        `the grant was issued at ${new Date(grant.issuedAt).toISOString()}, after this clock's ${new Date(o.now).toISOString()}; the clocks of server and client disagree`,
        { link: 'grant', reason: 'not-yet-valid' },
      );
    }
    if (o.now > grant.until) {
      throw new LicdError('TOKEN_INVALID', `the grant for ${grant.feature} ran until ${new Date(grant.until).toISOString()}; check the seat out again`, { link: 'grant', reason: 'expired' });
    }
  }
  return { grant, chain, feature };
}

export interface PublishedChain {
  entitlement: SignedEnvelope;
  delegation: SignedEnvelope;
  /**
   * The vendor public key (hex) the server says its entitlement is signed with. An offer only:
   * a client trusts it once its user pinned it (src/sdk/known-vendors.ts, docs/borrowing.md).
   */
  vendorPublicKey?: string;
  /** On a failover box: its failover entitlement (licd-failover/1), for grants of the primary's features. */
  failover?: SignedEnvelope;
}

/**
 * Reads the trust chain the daemon keeps retained on licd/v1/server/chain, through a connected
 * client: subscribes, waits for the (retained) message, unsubscribes. Nothing in it is trusted
 * until verifyGrant (or verifyChain) checks it against the vendor key.
 */
export async function fetchChain(client: Pick<LicdClient, 'mqtt'> & { topics?: LicdClient['topics'] }, opts: { timeoutMs?: number } = {}): Promise<PublishedChain> {
  // A box of a cluster publishes its chain on its own topic (docs/scale-out.md).
  const topics = client.topics ?? lone;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const mqtt = client.mqtt;
  let onMessage: ((topic: string, payload: Buffer) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<PublishedChain>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LicdError(
              'TIMEOUT',
              `no trust chain on ${topics.serverChain} within ${timeoutMs} ms: the daemon publishes it (retained) once its dongle has delegated a session key; is licd running with its dongle present?`,
            ),
          ),
        timeoutMs,
      );
      onMessage = (topic, payload) => {
        if (topic !== topics.serverChain || payload.length === 0) return;
        let value: unknown;
        try {
          value = JSON.parse(payload.toString('utf8'));
        } catch {
          return reject(new LicdError('TOKEN_INVALID', `${topics.serverChain} does not hold JSON`, { reason: 'malformed' }));
        }
        const v = value as Partial<PublishedChain> | null;
        if (!v || typeof v !== 'object' || !v.entitlement || !v.delegation) {
          return reject(new LicdError('TOKEN_INVALID', `${topics.serverChain} does not hold {entitlement, delegation}`, { reason: 'malformed' }));
        }
        resolve({ entitlement: v.entitlement, delegation: v.delegation, ...(v.failover ? { failover: v.failover } : {}), ...(typeof v.vendorPublicKey === 'string' && /^[0-9a-f]{64}$/.test(v.vendorPublicKey) ? { vendorPublicKey: v.vendorPublicKey } : {}) });
      };
      mqtt.on('message', onMessage);
      mqtt.subscribe(topics.serverChain, { qos: 1 }, (err, granted) => {
        if (err) reject(new LicdError('FORBIDDEN', `cannot subscribe to ${topics.serverChain}: ${err.message}`));
        else if (granted?.some((g) => g.qos === 128)) reject(new LicdError('FORBIDDEN', `the broker refused a subscription to ${topics.serverChain}; its access rules must let clients read it`));
      });
    });
  } finally {
    if (timer) clearTimeout(timer);
    if (onMessage) mqtt.off('message', onMessage);
    if (mqtt.connected) mqtt.unsubscribe(topics.serverChain);
  }
}

/** Fetches the chain through `client` and verifies `grant` with it: the online path in one call. */
export async function fetchAndVerifyGrant(client: Pick<LicdClient, 'mqtt'>, grant: unknown, o: VerifyGrantOptions & { timeoutMs?: number }): Promise<VerifiedGrant> {
  const chain = await fetchChain(client, o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs });
  return verifyGrant({ grant, ...chain }, o);
}
