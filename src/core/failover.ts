/**
 * The failover server (docs/scale-out.md, "Failover server"): a vendor-signed *failover
 * entitlement* lets box B serve box A's features, with A's counts, only while A has been offline
 * for a delay, and at most so many hours a month. This module is pure: the entitlement's format
 * and checks, and the rules that decide, from A's retained server state and B's clock, whether
 * B's failover seats are dormant or active. The daemon (src/daemon/failover.ts) feeds it.
 */
import { LicdError } from './errors.ts';
import { equalBytes, fromHex } from './bytes.ts';
import { parseFeatures, parseTime, type DongleBinding, type FeatureLicense } from './entitlement.ts';
import type { Ed25519 } from './ports.ts';
import { FORMATS, verifyEnvelope } from './signed.ts';
import { Fields } from './validate.ts';

/** A server id of a cluster (as cluster.serverId): lower-case letters, digits and -, at most 32. */
const SERVER_ID = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/** The longest delay a failover entitlement may set: a week. */
export const MAX_AFTER_SECONDS = 7 * 86400;
/** Hours in the longest month. */
export const MAX_HOURS_PER_MONTH = 744;

export interface FailoverEntitlement {
  id: string;
  issuedAt: number;
  customer: string;
  development: boolean;
  /** The dongle of the failover box (B): the file is bound to it, as an entitlement is. */
  dongle: DongleBinding;
  /** The box whose seats B mirrors: its cluster server id, and (when given) its dongle serial and license id. */
  primary: { server: string; dongle: string | null; license: string | null };
  /** How long A must have been seen offline before B grants its seats, ms. */
  afterMs: number;
  /** The most failover time per calendar month (UTC), hours. */
  maxHoursPerMonth: number;
  /** A's features and counts; never borrowable on B (a token would outlive A's return). */
  features: FeatureLicense[];
  envelope: unknown;
}

/** The body a vendor signs (`licctl vendor failover --spec BODY.json`). Times are ISO 8601. */
export interface FailoverBody {
  id: string;
  issuedAt: string;
  customer: string;
  development?: boolean;
  dongle: { serial: string; publicKey: string; emulated: boolean };
  primary: { server: string; dongle?: string; license?: string };
  afterSeconds: number;
  maxHoursPerMonth: number;
  features: Array<{ name: string; version: string; seats: number; expires: string | null; type: FeatureLicense['type']; product?: string }>;
}

/** Validates a failover entitlement body (signature-checked already, or about to be signed). */
export function parseFailoverBody(json: unknown): Omit<FailoverEntitlement, 'envelope'> {
  const f = Fields.of(json, 'failover entitlement', 'ENTITLEMENT_INVALID');
  f.only(['id', 'issuedAt', 'customer', 'development', 'dongle', 'primary', 'afterSeconds', 'maxHoursPerMonth', 'features']);
  const d = f.object('dongle');
  const pkHex = d.string('publicKey', { max: 64 });
  if (!/^[0-9a-fA-F]{64}$/.test(pkHex)) d.fail('publicKey', 'must be 64 hex digits (32 bytes)');
  const p = f.object('primary');
  p.only(['server', 'dongle', 'license']);
  const features = parseFeatures(f, { borrow: false, empty: "must list at least one of the primary box's features" });
  return {
    id: f.string('id', { max: 128 }),
    issuedAt: parseTime(f, 'issuedAt'),
    customer: f.string('customer', { max: 256 }),
    development: f.optBool('development') ?? false,
    dongle: { serial: d.string('serial', { max: 64 }), publicKey: fromHex(pkHex), emulated: d.bool('emulated') },
    primary: {
      server: p.string('server', { max: 32, pattern: SERVER_ID, patternHelp: "the primary box's cluster.serverId (lower-case letters, digits and -, at most 32)" }),
      dongle: p.optString('dongle', { max: 64 }) ?? null,
      license: p.optString('license', { max: 128 }) ?? null,
    },
    afterMs: f.int('afterSeconds', { min: 1, max: MAX_AFTER_SECONDS }) * 1000,
    maxHoursPerMonth: f.number('maxHoursPerMonth', { min: 0.001, max: MAX_HOURS_PER_MONTH }),
    features,
  };
}

/**
 * Verifies a failover entitlement against the vendor key, the dongle of this box and this box's
 * server id (the primary must be another box). Refuses, and says which: unsigned, altered, for
 * another dongle, for this box itself, expired.
 */
export function verifyFailover(
  envelope: unknown,
  opts: { vendorPublicKey: Uint8Array; dongle: { serial: string; publicKey: Uint8Array }; serverId: string; now: number; ed: Ed25519 },
): FailoverEntitlement {
  const json = verifyEnvelope(envelope, FORMATS.failover, opts.vendorPublicKey, opts.ed, 'ENTITLEMENT_INVALID', 'vendor');
  const e = parseFailoverBody(json);
  if (e.dongle.serial !== opts.dongle.serial || !equalBytes(e.dongle.publicKey, opts.dongle.publicKey)) {
    throw new LicdError(
      'ENTITLEMENT_INVALID',
      `failover entitlement ${e.id} is for another dongle (serial ${e.dongle.serial}); the dongle here is ${opts.dongle.serial}. Ask the vendor for a failover entitlement issued to this box's dongle (failover.entitlementFile)`,
      { reason: 'other-dongle', entitlementDongle: e.dongle.serial, dongle: opts.dongle.serial },
    );
  }
  if (e.primary.server === opts.serverId) {
    throw new LicdError('ENTITLEMENT_INVALID', `failover entitlement ${e.id} names this box (${opts.serverId}) as the primary; a failover box mirrors another box: check cluster.serverId and failover.entitlementFile`, {
      reason: 'self',
    });
  }
  if (e.features.every((x) => x.expires !== null && x.expires <= opts.now)) {
    throw new LicdError('ENTITLEMENT_INVALID', `failover entitlement ${e.id} has expired; ask the vendor for a renewal (failover.entitlementFile)`, { reason: 'expired' });
  }
  return { ...e, envelope };
}

/**
 * This box's licenses with the primary's added (the seats of a feature both have are summed; the
 * rest of such a feature's license is this box's own).
 */
export function mergeFailoverLicenses(own: readonly FeatureLicense[], failover: readonly FeatureLicense[]): FeatureLicense[] {
  const out = own.map((l) => ({ ...l }));
  for (const f of failover) {
    const mine = out.find((l) => l.name === f.name);
    if (mine) mine.seats += f.seats;
    else out.push({ ...f, borrow: { allowed: false, maxHours: 0 } });
  }
  return out;
}

/** The primary's retained server state, as much of it as failover needs. */
export interface PrimaryState {
  state: 'online' | 'offline';
  dongleSerial?: string | null;
  license?: string | null;
}

export type FailoverPhase =
  /** The primary's retained state has not been seen since licd started: dormant. */
  | { kind: 'unseen' }
  /** The primary says it is online: dormant. */
  | { kind: 'online' }
  /** The primary is offline, for less than the delay: dormant until startsAt. */
  | { kind: 'waiting'; offlineSince: number; startsAt: number }
  /** Granting the primary's seats since `since`. */
  | { kind: 'active'; since: number; offlineSince: number }
  /** The primary is offline past the delay, but this month's failover hours are used up. */
  | { kind: 'used-up'; offlineSince: number }
  /** The box publishing as the primary is not the one the entitlement names: dormant. */
  | { kind: 'mismatch'; reason: string };

/** A failover period began or ended: each is an audit record (start/end). */
export type FailoverTransition =
  | { kind: 'started'; at: number; offlineSince: number }
  | { kind: 'ended'; at: number; since: number; reason: 'primary-back' | 'hours-used' | 'mismatch' | 'primary-unseen'; usedMs: number };

/** Failover time used in one calendar month (UTC), kept in the store's meta (META_FAILOVER). */
export interface FailoverUsage {
  month: string;
  usedMs: number;
}

export const META_FAILOVER = 'failover';

export function monthOf(t: number): string {
  return new Date(t).toISOString().slice(0, 7);
}

export function parseFailoverUsage(v: unknown): FailoverUsage | null {
  const x = v as Partial<FailoverUsage> | undefined;
  return x && typeof x.month === 'string' && typeof x.usedMs === 'number' && Number.isFinite(x.usedMs) && x.usedMs >= 0 ? { month: x.month, usedMs: x.usedMs } : null;
}

/** The failover state as server state and status show it. */
export interface FailoverView {
  entitlement: string;
  primary: string;
  state: 'dormant' | 'active' | 'used-up';
  /** Why it is dormant: unseen, online, waiting, mismatch. */
  reason?: string;
  since?: string;
  /** The primary offline since (as this box saw it), and when failover starts. */
  offlineSince?: string;
  startsAt?: string;
  afterSeconds: number;
  usedHours: number;
  maxHoursPerMonth: number;
  features: Array<{ feature: string; seats: number }>;
}

/**
 * The rules, on an injected clock: B's failover seats are active only while the primary has been
 * seen offline (its retained state, carrying its broker-side last will) for `afterMs` by B's own
 * clock, and this month's hours are not used up. Times are B's: the offline time is when B first
 * saw the state say offline (a will is written when A connects, so its own times say nothing of
 * when A died).
 */
export class FailoverPlan {
  private seen: PrimaryState | null = null;
  private offlineSince: number | null = null;
  private activeSince: number | null = null;
  private lastTick: number;
  private usage: FailoverUsage;
  private current: FailoverPhase = { kind: 'unseen' };

  constructor(
    readonly entitlement: Omit<FailoverEntitlement, 'envelope'>,
    usage: FailoverUsage | null,
    now: number,
  ) {
    this.lastTick = now;
    this.usage = usage && usage.month === monthOf(now) ? { ...usage } : { month: monthOf(now), usedMs: 0 };
  }

  get phase(): FailoverPhase {
    return this.current;
  }

  get active(): boolean {
    return this.current.kind === 'active';
  }

  get used(): FailoverUsage {
    return { ...this.usage };
  }

  get capMs(): number {
    return this.entitlement.maxHoursPerMonth * 3600_000;
  }

  /** The primary's retained state changed (null: cleared, or this box lost its broker and knows nothing). */
  observe(state: PrimaryState | null, now: number): FailoverTransition[] {
    const was = this.seen?.state;
    this.seen = state;
    // The delay counts from when the box the entitlement names is seen offline: not while another
    // box publishes as the primary.
    if (state?.state === 'offline' && this.mismatch(state) === null) {
      if (was !== 'offline' || this.offlineSince === null) this.offlineSince = now;
    } else this.offlineSince = null;
    return this.tick(now);
  }

  private mismatch(s: PrimaryState): string | null {
    const p = this.entitlement.primary;
    if (p.dongle !== null && s.dongleSerial && s.dongleSerial !== p.dongle) return `server ${p.server} has dongle ${s.dongleSerial}, not ${p.dongle} as failover entitlement ${this.entitlement.id} names`;
    if (p.license !== null && s.license && s.license !== p.license) return `server ${p.server} serves license ${s.license}, not ${p.license} as failover entitlement ${this.entitlement.id} names`;
    return null;
  }

  /** Time passes: failover time used is counted, the delay and the hours cap are judged. */
  tick(now: number): FailoverTransition[] {
    const out: FailoverTransition[] = [];
    if (this.activeSince !== null) this.usage.usedMs += Math.max(0, now - this.lastTick);
    this.lastTick = now;
    if (monthOf(now) !== this.usage.month) this.usage = { month: monthOf(now), usedMs: 0 };
    const next = this.judge(now);
    if (this.activeSince !== null && next.kind !== 'active') {
      const reason = next.kind === 'used-up' ? 'hours-used' : next.kind === 'mismatch' ? 'mismatch' : next.kind === 'unseen' ? 'primary-unseen' : 'primary-back';
      out.push({ kind: 'ended', at: now, since: this.activeSince, reason, usedMs: this.usage.usedMs });
      this.activeSince = null;
    } else if (this.activeSince === null && next.kind === 'active') {
      this.activeSince = now;
      out.push({ kind: 'started', at: now, offlineSince: next.offlineSince });
    }
    this.current = next.kind === 'active' ? { ...next, since: this.activeSince! } : next;
    return out;
  }

  private judge(now: number): FailoverPhase {
    const s = this.seen;
    if (!s) return { kind: 'unseen' };
    const wrong = this.mismatch(s);
    if (wrong !== null) return { kind: 'mismatch', reason: wrong };
    if (s.state === 'online' || this.offlineSince === null) return { kind: 'online' };
    const startsAt = this.offlineSince + this.entitlement.afterMs;
    if (now < startsAt) return { kind: 'waiting', offlineSince: this.offlineSince, startsAt };
    if (this.usage.usedMs >= this.capMs) return { kind: 'used-up', offlineSince: this.offlineSince };
    return { kind: 'active', since: this.activeSince ?? now, offlineSince: this.offlineSince };
  }

  /** Whether a feature is one of the primary's. */
  covers(feature: string): boolean {
    return this.entitlement.features.some((f) => f.name === feature);
  }

  /** The seats of the primary's feature (0 when it is not one). */
  seatsOf(feature: string): number {
    return this.entitlement.features.find((f) => f.name === feature)?.seats ?? 0;
  }

  /** Why a checkout of the primary's feature gets no failover seat now (null while active or for other features). */
  refusal(feature: string, wanted: number): LicdError | null {
    if (!this.covers(feature) || this.active) return null;
    const e = this.entitlement;
    const server = e.primary.server;
    const ph = this.current;
    const iso = (t: number) => new Date(t).toISOString();
    const after = `${e.afterMs / 1000} s`;
    const head = `${feature}: this box serves ${server}'s seats of it only as a failover server (failover entitlement ${e.id})`;
    const details: Record<string, unknown> = { feature, wanted, primary: server, reason: ph.kind };
    let text: string;
    switch (ph.kind) {
      case 'unseen':
        text = `${head}, and ${server}'s server state has not been seen on the broker since licd started; failover starts ${after} after ${server} is seen offline. Take the seat from ${server}, or check the bridge to its broker`;
        break;
      case 'online':
        text = `${head}, and ${server} is online: take the seat from ${server} (failover starts ${after} after it goes offline)`;
        break;
      case 'waiting':
        text = `${head}; ${server} is offline since ${iso(ph.offlineSince)} and failover starts at ${iso(ph.startsAt)}: try again then`;
        details.startsAt = iso(ph.startsAt);
        break;
      case 'used-up':
        text = `${head}; ${server} is offline, but the ${e.maxHoursPerMonth} failover hours of ${this.usage.month} are used up: failover resumes next month; ask the vendor for more hours, or bring ${server} back`;
        break;
      case 'mismatch':
        text = `${head}; ${ph.reason}, so failover stays dormant: check that the right box runs as ${server}`;
        break;
      default:
        return null;
    }
    return new LicdError('FAILOVER_DORMANT', text, details);
  }

  /** What the leases ended when failover stops are told (heartbeat gone, lease.lost). */
  endedMessage(t: Extract<FailoverTransition, { kind: 'ended' }>): string {
    const server = this.entitlement.primary.server;
    const why =
      t.reason === 'primary-back'
        ? `${server} is back online`
        : t.reason === 'hours-used'
          ? `the failover hours of ${this.usage.month} (${this.entitlement.maxHoursPerMonth}) are used up`
          : t.reason === 'mismatch'
            ? `the box publishing as ${server} is not the one the failover entitlement names`
            : `${server}'s state is no longer seen`;
    return `failover for ${server} ended at ${new Date(t.at).toISOString()} (${why}); take the seat from ${server} again`;
  }

  view(now: number): FailoverView {
    const e = this.entitlement;
    const ph = this.current;
    const base = {
      entitlement: e.id,
      primary: e.primary.server,
      afterSeconds: e.afterMs / 1000,
      usedHours: Math.round((this.usage.usedMs + (this.activeSince !== null ? Math.max(0, now - this.lastTick) : 0)) / 36_000) / 100,
      maxHoursPerMonth: e.maxHoursPerMonth,
      features: e.features.map((f) => ({ feature: f.name, seats: f.seats })),
    };
    const iso = (t: number) => new Date(t).toISOString();
    switch (ph.kind) {
      case 'active':
        return { ...base, state: 'active', since: iso(ph.since), offlineSince: iso(ph.offlineSince) };
      case 'used-up':
        return { ...base, state: 'used-up', offlineSince: iso(ph.offlineSince) };
      case 'waiting':
        return { ...base, state: 'dormant', reason: 'waiting', offlineSince: iso(ph.offlineSince), startsAt: iso(ph.startsAt) };
      case 'mismatch':
        return { ...base, state: 'dormant', reason: `mismatch: ${ph.reason}` };
      default:
        return { ...base, state: 'dormant', reason: ph.kind };
    }
  }
}
