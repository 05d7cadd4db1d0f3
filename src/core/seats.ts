import { LicdError } from './errors.ts';
import type { FeatureLicense } from './entitlement.ts';
import type { Availability, Borrow, Change, Lease, Mutation } from './model.ts';
import { compareVersions } from './validate.ts';
import { EMPTY_POLICY, judge, type Holding, type Policy } from './policy.ts';
import { ChurnMap } from './churn-map.ts';

interface FeatureState {
  license: FeatureLicense;
  leased: number;
  borrowed: number;
  leases: Map<string, Lease>;
  borrows: Map<string, Borrow>;
  /** Seats held back by a quarantine until a time (anti-rollback, issue 5). */
  hold: { seats: number; until: number } | null;
  /** Not in the license file: kept only for the borrows still out on it (see restore). */
  orphan?: true;
  /** The ids of its lingering leases (LINGER), so a checkout finds its user@host's without a scan of all. */
  lingering?: Set<string>;
}

export interface CheckoutRequest {
  clientId: string;
  /** Hash of the holder secret (see Lease.holder). */
  holder: string;
  pid: number;
  user: string;
  host: string;
  feature: string;
  /** Minimum version the client needs. */
  version?: string | undefined;
  count: number;
  ttlMs: number;
  /** A waiter being granted: how long it waited (kept on the new lease for the usage history). */
  waitedMs?: number;
}

export type CheckoutStatus = 'granted' | 'extended';

/** An admin's block: this user@host may not check the feature out until `until` (lease.revoke --block). */
export interface Block {
  feature: string;
  user: string;
  host: string;
  until: number;
  /** The admin client that set it, and the lease whose revoke set it. */
  by: string;
  lease: string;
}

/**
 * How many TTLs past a heartbeat the stored record of a renewed lease covers (Lease.storedUntil):
 * the heartbeats of the next two TTLs need no write. A lease whose holder stopped may then outlive
 * a crash by up to one TTL after the start (restoredEnd), never less than it was told.
 */
export const STORED_TTLS = 3;

/** A revoked lease remembered for a while, so its holder's heartbeat learns why it is gone. */
export interface Revoked {
  lease: string;
  clientId: string;
  feature: string;
  at: number;
  /** Remembered until then (an hour, or the block's end if later). */
  keepUntil: number;
  blockedUntil: number | null;
  /** Why it ended when not by an admin: LICENSE_REDUCED (a new license, see replaceLicenses), and the words its holder is told. */
  code?: 'LICENSE_REDUCED' | 'LEASE_IDLE' | 'FAILOVER_ENDED';
  message?: string;
}

/** Meta key of the blocks and revoked leases (docs/storage.md): `{blocks, revoked}`. */
export const META_REVOCATIONS = 'revocations';
const REVOKED_MEMORY_MS = 3600_000;

/** What a heartbeat's undo puts back on a lease it renewed in place. */
interface RenewedFrom {
  lease: Lease;
  expiresAt: number;
  disconnectedAt: number | null;
  activeAt: number | undefined;
}

/**
 * The seat table: every lease and borrow, per feature, with the rule that leased + borrowed
 * (+ held) never exceeds the licensed count. All changes go through `apply`, which also records
 * the inverse, so a decision can be undone when its durable write fails. Pure: time comes in as
 * arguments and ids from the injected generator.
 */
export class SeatTable {
  private readonly features = new Map<string, FeatureState>();
  private readonly leases = new Map<string, Lease>();
  private readonly borrows = new Map<string, Borrow>();
  /**
   * `${clientId}\0${pid}\0${feature}\0${holder}` -> lease id: a repeated checkout by the same
   * holder extends instead of taking another seat (legacy leases without a holder: holder '').
   * This and byClient are ChurnMaps: their keys come and go with every checkout and check-in
   * (src/core/churn-map.ts). The lease maps take a new id at each checkout, and a lease put again
   * under its id is overwritten in place (apply).
   */
  private readonly byOwner = new ChurnMap<string, string>();
  private readonly byClient = new ChurnMap<string, Set<string>>();
  /** `${clientKey}\0${requestId}` -> borrow ids: a repeated borrow request is found without a scan. */
  private readonly byRequest = new Map<string, Set<string>>();
  /**
   * Expiry buckets by whole second, of lease ids and of borrow ids. The ids themselves, not a
   * prefixed key: a farm's heartbeats move leases between buckets thousands of times a second,
   * and a fresh key string is hashed at every move where an id's hash is kept with the string.
   */
  private readonly leaseWheel = new Map<number, Set<string>>();
  private readonly borrowWheel = new Map<number, Set<string>>();
  private wheelCursor = -1;
  /** `${feature}\0${user}\0${host}` -> the admin's block. */
  private readonly blocks = new Map<string, Block>();
  private readonly revoked = new Map<string, Revoked>();
  /** The sharing rules (docs/policy.md): who may take a seat, how many, what is kept for whom. */
  private policy: Policy = EMPTY_POLICY;

  constructor(
    licenses: readonly FeatureLicense[],
    private readonly newId: () => string,
  ) {
    for (const license of licenses) {
      this.features.set(license.name, { license, leased: 0, borrowed: 0, leases: new Map(), borrows: new Map(), hold: null });
    }
  }

  featureNames(): string[] {
    return [...this.features.keys()];
  }

  license(name: string): FeatureLicense | undefined {
    return this.features.get(name)?.license;
  }

  private feature(name: string): FeatureState {
    const f = this.features.get(name);
    if (!f) {
      throw new LicdError('UNKNOWN_FEATURE', `no feature ${JSON.stringify(name)} is licensed here; features served: ${this.featureNames().join(', ') || 'none'}`, {
        feature: name,
        features: this.featureNames(),
      });
    }
    return f;
  }

  private heldSeats(f: FeatureState, now: number): number {
    return f.hold && f.hold.until > now ? f.hold.seats : 0;
  }

  free(name: string, now: number): number {
    const f = this.feature(name);
    return Math.max(0, f.license.seats - f.leased - f.borrowed - this.heldSeats(f, now));
  }

  availability(name: string, now: number): Availability {
    const f = this.feature(name);
    const l = f.license;
    return {
      feature: l.name,
      product: l.product,
      version: l.version,
      type: l.type,
      total: l.seats,
      leased: f.leased,
      borrowed: f.borrowed,
      held: this.heldSeats(f, now),
      // An expired feature has no free seat: a checkout or borrow of it is refused anyway.
      free: l.expires !== null && l.expires <= now ? 0 : this.free(name, now),
      expires: l.expires === null ? null : new Date(l.expires).toISOString(),
      borrow: { ...l.borrow },
    };
  }

  /** Says why a feature cannot be used now (unknown, version, expiry), or returns its state. */
  usable(name: string, version: string | undefined, now: number): FeatureState {
    const f = this.feature(name);
    const l = f.license;
    if (version !== undefined && compareVersions(l.version, version) < 0) {
      throw new LicdError('VERSION_NOT_LICENSED', `${name}: version ${version} was asked for, but the license covers versions up to ${l.version}`, {
        feature: name,
        licensed: l.version,
        requested: version,
      });
    }
    if (l.expires !== null && l.expires <= now) {
      throw new LicdError('FEATURE_EXPIRED', `${name}: the license expired at ${new Date(l.expires).toISOString()}; renew it with the vendor`, {
        feature: name,
        expired: new Date(l.expires).toISOString(),
      });
    }
    return f;
  }

  /** The policy new checkouts and borrows are judged by; seats already out are not taken back. */
  setPolicy(p: Policy): void {
    this.policy = p;
  }

  currentPolicy(): Policy {
    return this.policy;
  }

  /** Who holds seats of a feature (leases and borrows), for the policy's MAX and RESERVE. */
  holdings(name: string): Holding[] {
    const f = this.features.get(name);
    if (!f) return [];
    const out: Holding[] = [];
    for (const l of f.leases.values()) out.push({ user: l.user, host: l.host, count: l.count });
    for (const b of f.borrows.values()) out.push({ user: b.user, host: b.hostName, count: b.count });
    return out;
  }

  /** Refuses `count` more seats for user@host when a policy rule forbids them (NO_SEATS is the caller's, after). */
  private admit(name: string, user: string, host: string, count: number, now: number): void {
    // A holder growing its own lease asks only for the extra seats; its current ones are in the holdings.
    judge(this.policy, name, { user, host, count }, this.free(name, now), this.feature(name).license.seats, () => this.holdings(name));
  }

  noSeats(name: string, wanted: number, now: number): LicdError {
    const a = this.availability(name, now);
    const f = this.feature(name);
    if (a.held > 0 && a.total - a.leased - a.borrowed >= wanted) {
      return new LicdError(
        'QUARANTINE',
        `${name}: ${a.held} of ${a.total} seats are held by a quarantine until ${new Date(f.hold!.until).toISOString()} (they could still be out on borrow; licctl status says why); ${a.free} free, ${wanted} wanted`,
        { feature: name, wanted, total: a.total, leased: a.leased, borrowed: a.borrowed, held: a.held, free: a.free, until: new Date(f.hold!.until).toISOString() },
      );
    }
    const held = a.held > 0 ? `, ${a.held} held by quarantine` : '';
    return new LicdError(
      'NO_SEATS',
      `${name}: ${a.free} of ${a.total} seats free (${a.leased} leased, ${a.borrowed} borrowed${held}); ${wanted} wanted. ` +
        'Retry when a seat is checked in, or ask an admin to free one (licctl status shows who holds them).',
      { feature: name, wanted, total: a.total, leased: a.leased, borrowed: a.borrowed, held: a.held, free: a.free },
    );
  }

  // ---- leases -------------------------------------------------------------------------------

  checkout(req: CheckoutRequest, now: number): Change<{ status: CheckoutStatus; lease: Lease; reclaimed?: true }> {
    const f = this.usable(req.feature, req.version, now);
    if (req.count > f.license.seats) {
      throw new LicdError('NO_SEATS', `${req.feature}: ${req.count} seats asked for, but only ${f.license.seats} are licensed`, {
        feature: req.feature,
        wanted: req.count,
        total: f.license.seats,
      });
    }
    const block = this.blocks.get(`${req.feature}\0${req.user}\0${req.host}`);
    if (block && block.until > now) {
      throw new LicdError(
        'BLOCKED',
        `${req.feature}: an admin revoked the seat of ${req.user}@${req.host} and blocked this user and host from ${req.feature} until ${new Date(block.until).toISOString()}; ask the admin, or wait until then`,
        { feature: req.feature, user: req.user, host: req.host, until: new Date(block.until).toISOString() },
      );
    }
    // The holder's own lease, or a legacy one (stored before holder secrets) of the same client
    // id, pid and feature, which this checkout then binds to its holder.
    const existingId = this.byOwner.get(ownerKey(req.clientId, req.pid, req.feature, req.holder)) ?? this.byOwner.get(ownerKey(req.clientId, req.pid, req.feature, undefined));
    // A seat lingering after its user@host checked it in (LINGER) goes back to the same user@host at once.
    const existing = (existingId === undefined ? undefined : this.leases.get(existingId)) ?? this.lingeringFor(f, req.user, req.host);
    const extra = req.count - (existing?.count ?? 0);
    // The policy first: a user it forbids is told so at once, not that seats are busy.
    if (extra > 0) this.admit(req.feature, req.user, req.host, extra, now);
    if (extra > 0 && extra > this.free(req.feature, now)) throw this.noSeats(req.feature, extra, now);
    const lease: Lease = existing
      ? withoutLinger({ ...existing, clientId: req.clientId, pid: req.pid, count: req.count, user: req.user, host: req.host, expiresAt: now + req.ttlMs, ttlMs: req.ttlMs, disconnectedAt: null, holder: req.holder })
      : {
          id: this.newId(),
          feature: req.feature,
          count: req.count,
          clientId: req.clientId,
          holder: req.holder,
          pid: req.pid,
          user: req.user,
          host: req.host,
          since: now,
          expiresAt: now + req.ttlMs,
          ttlMs: req.ttlMs,
          disconnectedAt: null,
          ...(req.waitedMs !== undefined ? { waitedMs: req.waitedMs } : {}),
        };
    return this.change({ status: existing && !existing.lingering ? 'extended' : 'granted', lease, ...(existing?.lingering ? { reclaimed: true } : {}) }, [{ kind: 'lease.put', lease }]);
  }

  /** A lingering lease of this user@host on the feature, if the policy has LINGER for it. */
  private lingeringFor(f: FeatureState, user: string, host: string): Lease | undefined {
    if (!this.policy.linger.has(f.license.name) || !f.lingering) return undefined;
    for (const id of f.lingering) {
      const l = this.leases.get(id);
      if (l && l.user === user && l.host === host) return l;
    }
    return undefined;
  }

  /** The lease this holder's process already holds of the feature (a checkout of it only extends it), if any. */
  ownLease(req: Pick<CheckoutRequest, 'clientId' | 'pid' | 'feature' | 'holder'>): Lease | undefined {
    const id = this.byOwner.get(ownerKey(req.clientId, req.pid, req.feature, req.holder));
    const l = id === undefined ? undefined : this.leases.get(id);
    return l && !l.lingering ? l : undefined;
  }

  leasesOf(clientId: string): Lease[] {
    return [...(this.byClient.get(clientId) ?? [])].map((id) => this.leases.get(id)!).filter(Boolean);
  }

  getLease(id: string): Lease | undefined {
    return this.leases.get(id);
  }

  /**
   * The leases of this client id that this holder may change: its own, and legacy ones without a
   * holder (bound to it by the change). Another holder's lease is not told apart from no lease.
   */
  private heldBy(clientId: string, holder: string, ids: readonly string[] | undefined): { mine: Lease[]; unknown: string[] } {
    // A lingering lease was checked in: its old holder no longer renews or checks it in.
    const owns = (l: Lease) => l.clientId === clientId && (l.holder === undefined || l.holder === holder) && !l.lingering;
    if (ids === undefined) return { mine: this.leasesOf(clientId).filter(owns), unknown: [] };
    const mine: Lease[] = [];
    const unknown: string[] = [];
    for (const id of ids) {
      const l = this.leases.get(id);
      if (l && owns(l)) mine.push(l);
      else unknown.push(id);
    }
    return { mine, unknown };
  }

  /**
   * Renews the holder's leases (all, or the ids given). Unknown ids are reported, not fatal.
   *
   * A lease already bound to this holder is renewed in place: its end, disconnect mark and
   * activity change on the object the table holds, and only its expiry bucket moves. A farm
   * renews every lease every few seconds; a copy per renewal made each long-lived lease old-space
   * garbage and re-indexed it in five maps (docs/performance.md, issue 18). The undo puts the old
   * values back. A legacy lease without a holder is replaced by a copy, since binding it changes
   * its owner key.
   *
   * Most renewals write nothing: a lease whose durable record already covers the new end
   * (`storedUntil`) is renewed in memory only, and its answer needs no sync. One that needs a
   * write is stored with `storedUntil` STORED_TTLS TTLs ahead, so at the SDK's pace (a heartbeat
   * every third of the TTL) one heartbeat in seven writes. What a crash then leaves on disk is an
   * end no earlier than any the holder was told, which a start reads back with restoredEnd.
   * `renewed` holds each lease's end as decided here (a later heartbeat may move the object's on).
   */
  heartbeat(clientId: string, holder: string, ids: readonly string[] | undefined, now: number, idleMs?: number): Change<{ renewed: Array<{ id: string; expiresAt: number }>; unknown: string[] }> {
    const { mine, unknown } = this.heldBy(clientId, holder, ids);
    const n = mine.length;
    // Sized at once: these live until the answer, and a farm sends thousands a second.
    const renewed: Array<{ id: string; expiresAt: number }> = new Array(n);
    const mutations: Mutation[] = [];
    // The leases written with a new storedUntil, and it: memory learns it once the write is durable.
    let stored: Array<[Lease, number]> | undefined;
    // The undo log, one entry per lease: the old values of one renewed in place, or the inverse
    // of a legacy lease's replacement (a mutation).
    const olds: Array<RenewedFrom | Mutation> = new Array(n);
    for (let i = 0; i < n; i++) {
      const l = mine[i]!;
      const expiresAt = now + l.ttlMs;
      renewed[i] = { id: l.id, expiresAt };
      if (l.holder !== holder) {
        const lease: Lease = { ...l, expiresAt, disconnectedAt: null, holder, ...(idleMs !== undefined ? { activeAt: now - idleMs } : {}) };
        olds[i] = this.apply({ kind: 'lease.put', lease });
        mutations.push({ kind: 'lease.put', lease });
        continue;
      }
      const wasDisconnected = l.disconnectedAt !== null;
      olds[i] = { lease: l, expiresAt: l.expiresAt, disconnectedAt: l.disconnectedAt, activeAt: l.activeAt };
      this.renewInPlace(l, true, expiresAt, null, idleMs !== undefined ? now - idleMs : l.activeAt);
      // Covered by its durable record, and no disconnect mark to clear on disk: nothing to write.
      if (!wasDisconnected && l.storedUntil !== undefined && expiresAt <= l.storedUntil) continue;
      const storedUntil = now + STORED_TTLS * l.ttlMs;
      mutations.push({ kind: 'lease.put', lease: { ...l, storedUntil } });
      (stored ??= []).push([l, storedUntil]);
    }
    return {
      result: { renewed, unknown },
      mutations,
      undo: () => {
        for (let i = n - 1; i >= 0; i--) {
          const o = olds[i]!;
          if ('kind' in o) this.apply(o);
          else this.renewInPlace(o.lease, this.leases.get(o.lease.id) === o.lease, o.expiresAt, o.disconnectedAt, o.activeAt);
        }
      },
      ...(stored
        ? {
            durable: () => {
              for (const [l, until] of stored!) if (l.storedUntil === undefined || l.storedUntil < until) l.storedUntil = until;
            },
          }
        : {}),
    };
  }

  /**
   * Sets a lease's end, disconnect mark and activity on the object itself. Its expiry bucket moves
   * only while the table holds this object (`held`, which the caller knows); a lease object the
   * table no longer holds (replaced or ended since, as an undo may find it) just gets the values back.
   */
  private renewInPlace(l: Lease, held: boolean, expiresAt: number, disconnectedAt: number | null, activeAt: number | undefined): void {
    if (held && Math.floor(expiresAt / 1000) !== Math.floor(l.expiresAt / 1000)) {
      this.wheelRemove(this.leaseWheel, l.id, l.expiresAt);
      this.wheelAdd(this.leaseWheel, l.id, expiresAt);
    }
    l.expiresAt = expiresAt;
    l.disconnectedAt = disconnectedAt;
    if (activeAt !== undefined) l.activeAt = activeAt;
    else if (l.activeAt !== undefined) delete l.activeAt;
  }

  /** Checks in the holder's own leases: by id, by feature, by process, or all. */
  checkin(
    clientId: string,
    holder: string,
    sel: { ids?: readonly string[] | undefined; feature?: string | undefined; pid?: number | undefined },
    now = 0,
  ): Change<{ released: Lease[]; unknown: string[]; lingering: Lease[] }> {
    const held = this.heldBy(clientId, holder, sel.ids);
    const unknown = held.unknown;
    const mine =
      sel.ids !== undefined ? held.mine : held.mine.filter((l) => (sel.feature === undefined || l.feature === sel.feature) && (sel.pid === undefined || l.pid === sel.pid));
    // With LINGER for its feature, a checked-in seat stays with its user@host for a while (docs/policy.md).
    const lingering: Lease[] = [];
    const mutations = mine.map((l): Mutation => {
      const lg = this.policy.linger.get(l.feature);
      if (!lg) return { kind: 'lease.del', id: l.id };
      const kept: Lease = { ...l, lingering: true, expiresAt: now + lg.ms, disconnectedAt: null, storedUntil: undefined };
      lingering.push(kept);
      return { kind: 'lease.put', lease: kept };
    });
    return this.change({ released: mine, unknown, lingering }, mutations);
  }

  /**
   * An admin takes a lease back. The lease is remembered as revoked (so its holder's heartbeat is
   * told why it is gone and does not check out again), and with `blockMs` its user@host is refused
   * the feature until then. Both are written in the same batch as the lease's removal.
   */
  revokeLease(id: string, o: { now?: number; blockMs?: number; by?: string } = {}): Change<Lease> {
    const l = this.leases.get(id);
    if (!l) throw new LicdError('UNKNOWN_LEASE', `no lease ${JSON.stringify(id)}; licctl status lists the leases`, { lease: id });
    const now = o.now ?? 0;
    const key = `${l.feature}\0${l.user}\0${l.host}`;
    const oldBlock = this.blocks.get(key);
    const oldRevoked = this.revoked.get(id);
    const blockedUntil = o.blockMs !== undefined && o.blockMs > 0 ? now + o.blockMs : null;
    if (blockedUntil !== null) this.blocks.set(key, { feature: l.feature, user: l.user, host: l.host, until: blockedUntil, by: o.by ?? 'admin', lease: id });
    this.revoked.set(id, { lease: id, clientId: l.clientId, feature: l.feature, at: now, keepUntil: Math.max(now + REVOKED_MEMORY_MS, blockedUntil ?? 0), blockedUntil });
    const change = this.change(l, [{ kind: 'lease.del', id }, this.revocationsMutation(now)]);
    const undo = change.undo;
    change.undo = () => {
      undo();
      if (oldBlock) this.blocks.set(key, oldBlock);
      else this.blocks.delete(key);
      if (oldRevoked) this.revoked.set(id, oldRevoked);
      else this.revoked.delete(id);
    };
    return change;
  }

  /** The block in force for a user@host on a feature, if any. */
  blockOf(feature: string, user: string, host: string, now: number): Block | null {
    const b = this.blocks.get(`${feature}\0${user}\0${host}`);
    return b && b.until > now ? b : null;
  }

  /** Every block in force. */
  blockList(now: number): Block[] {
    return [...this.blocks.values()].filter((b) => b.until > now);
  }

  /** An admin lifts a block before its end. */
  unblock(feature: string, user: string, host: string, now: number): Change<Block> {
    const key = `${feature}\0${user}\0${host}`;
    const b = this.blocks.get(key);
    if (!b || b.until <= now) {
      throw new LicdError('BAD_REQUEST', `${user}@${host} is not blocked from ${feature}; licctl status lists the blocks`, { feature, user, host });
    }
    this.blocks.delete(key);
    const change = this.change(b, [this.revocationsMutation(now)]);
    const undo = change.undo;
    change.undo = () => {
      undo();
      this.blocks.set(key, b);
    };
    return change;
  }

  /** Whether lease `id` of `clientId` was revoked by an admin (and not long ago). */
  revokedLease(id: string, clientId: string, now: number): Revoked | null {
    const r = this.revoked.get(id);
    return r && r.clientId === clientId && r.keepUntil > now ? r : null;
  }

  /** The persisted form of blocks and revoked leases, with the ended ones dropped. */
  private revocationsMutation(now: number): Mutation {
    for (const [k, b] of this.blocks) if (b.until <= now) this.blocks.delete(k);
    for (const [k, r] of this.revoked) if (r.keepUntil <= now) this.revoked.delete(k);
    return { kind: 'meta.put', key: META_REVOCATIONS, value: { blocks: [...this.blocks.values()], revoked: [...this.revoked.values()] } };
  }

  /** Loads the persisted blocks and revoked leases (at start). */
  restoreRevocations(v: unknown, now: number): void {
    if (!v || typeof v !== 'object') return;
    const { blocks, revoked } = v as { blocks?: Block[]; revoked?: Revoked[] };
    for (const b of Array.isArray(blocks) ? blocks : []) {
      if (b && typeof b.until === 'number' && b.until > now && typeof b.feature === 'string') this.blocks.set(`${b.feature}\0${b.user}\0${b.host}`, b);
    }
    for (const r of Array.isArray(revoked) ? revoked : []) {
      if (r && typeof r.keepUntil === 'number' && r.keepUntil > now && typeof r.lease === 'string') this.revoked.set(r.lease, r);
    }
  }

  /**
   * The client's MQTT connection died (its last will): the leases of the holder named in the will
   * (and legacy ones without a holder) end after the grace unless it comes back. A will without
   * the holder's secret, as whoever took the client id over would send, touches no bound lease.
   */
  clientGone(clientId: string, holder: string | undefined, now: number, graceMs: number): Change<Lease[]> {
    const changed = this.leasesOf(clientId)
      .filter((l) => l.disconnectedAt === null && !l.lingering && (l.holder === undefined || l.holder === holder))
      .map((l) => ({ ...l, disconnectedAt: now, expiresAt: Math.min(l.expiresAt, now + graceMs), storedUntil: undefined }));
    return this.change(
      changed,
      changed.map((lease) => ({ kind: 'lease.put', lease }) as const),
    );
  }

  /**
   * The daemon (re)subscribed to the broker after it could not hear its clients: every lease
   * that would end before `now + windowMs` (marked disconnected by a will, or whose heartbeats
   * could not reach the daemon) ends at `now + windowMs` instead, so a client that reconnects
   * in that window renews it. The disconnected mark stays; a heartbeat clears it.
   */
  restartGrace(now: number, windowMs: number): Change<Lease[]> {
    const end = now + windowMs;
    const changed = [...this.leases.values()].filter((l) => l.expiresAt < end && !l.lingering).map((l) => ({ ...l, expiresAt: end }));
    return this.change(
      changed,
      changed.map((lease) => ({ kind: 'lease.put', lease }) as const),
    );
  }

  /**
   * Ends the leases whose client reported no activity for the policy's TIMEOUT of their feature
   * (only leases whose client reports activity at all). Each is remembered with code LEASE_IDLE, so
   * its holder's next heartbeat is told why it is gone; all in one change.
   */
  reapIdle(now: number): Change<Lease[]> {
    const ended: Lease[] = [];
    for (const [feature, t] of this.policy.idle) {
      const f = this.features.get(feature);
      if (!f) continue;
      for (const l of f.leases.values()) if (l.activeAt !== undefined && !l.lingering && now - l.activeAt >= t.ms) ended.push(l);
    }
    if (ended.length === 0) return { result: [], mutations: [], undo: () => {} };
    const revokedWere = new Map(this.revoked);
    for (const l of ended) {
      const secs = this.policy.idle.get(l.feature)!.ms / 1000;
      this.revoked.set(l.id, {
        lease: l.id,
        clientId: l.clientId,
        feature: l.feature,
        at: now,
        keepUntil: now + REVOKED_MEMORY_MS,
        blockedUntil: null,
        code: 'LEASE_IDLE',
        message: `${l.feature}: lease ${l.id} ended: its application reported no activity for ${secs} s (policy TIMEOUT, line ${this.policy.idle.get(l.feature)!.line}); check out again when it is in use`,
      });
    }
    const change = this.change(ended, [...ended.map((l) => ({ kind: 'lease.del', id: l.id }) as const), this.revocationsMutation(now)]);
    const undo = change.undo;
    change.undo = () => {
      undo();
      this.revoked.clear();
      for (const [k, r] of revokedWere) this.revoked.set(k, r);
    };
    return change;
  }

  // ---- borrows ------------------------------------------------------------------------------

  getBorrow(id: string): Borrow | undefined {
    return this.borrows.get(id);
  }

  borrowsOfRequest(clientKey: string, requestId: string): Borrow[] {
    return [...(this.byRequest.get(`${clientKey}\0${requestId}`) ?? [])].map((id) => this.borrows.get(id)!).filter(Boolean);
  }

  allBorrows(): Borrow[] {
    return [...this.borrows.values()];
  }

  allLeases(): Lease[] {
    return [...this.leases.values()];
  }

  /** Reserves seats for an offline borrow; the caller has checked policy and hours. */
  borrow(b: Omit<Borrow, 'id'> & { id?: string }, now: number): Change<Borrow> {
    const f = this.usable(b.feature, undefined, now);
    if (!f.license.borrow.allowed) {
      throw new LicdError('BORROW_NOT_ALLOWED', `${b.feature}: the license does not allow borrowing; use it online, or ask the vendor for a license with borrowing`, {
        feature: b.feature,
      });
    }
    this.admit(b.feature, b.user, b.hostName, b.count, now);
    if (b.count > this.free(b.feature, now)) throw this.noSeats(b.feature, b.count, now);
    const borrow: Borrow = { ...b, id: b.id ?? this.newId() };
    return this.change(borrow, [{ kind: 'borrow.put', borrow }]);
  }

  /** Replaces a borrow record (renew, mark lost, auto-renew flag); its seat count stays. */
  updateBorrow(borrow: Borrow): Change<Borrow> {
    const old = this.borrows.get(borrow.id);
    if (!old) throw new LicdError('UNKNOWN_BORROW', `no borrow ${JSON.stringify(borrow.id)}; licctl borrows lists them`, { borrow: borrow.id });
    if (old.count !== borrow.count || old.feature !== borrow.feature) throw new Error('updateBorrow cannot change seats');
    return this.change(borrow, [{ kind: 'borrow.put', borrow }]);
  }

  returnBorrow(id: string): Change<Borrow> {
    const b = this.borrows.get(id);
    if (!b) throw new LicdError('UNKNOWN_BORROW', `no borrow ${JSON.stringify(id)}: it was returned already or has expired`, { borrow: id });
    return this.change(b, [{ kind: 'borrow.del', id }]);
  }

  // ---- holds (quarantine) -------------------------------------------------------------------

  setHold(name: string, seats: number, until: number): void {
    const f = this.features.get(name);
    if (f) f.hold = seats > 0 ? { seats, until } : null;
  }

  holds(now: number): Array<{ feature: string; seats: number; until: number }> {
    const out = [];
    for (const [name, f] of this.features) if (f.hold && f.hold.until > now) out.push({ feature: name, ...f.hold });
    return out;
  }

  // ---- expiry -------------------------------------------------------------------------------

  /** Removes every lease and borrow whose time has passed. */
  reap(now: number): Change<{ leases: Lease[]; borrows: Borrow[] }> {
    const nowSec = Math.floor(now / 1000);
    const dueLeases = this.dueIn(this.leaseWheel, nowSec);
    const dueBorrows = this.dueIn(this.borrowWheel, nowSec);
    const scannedFrom = this.wheelCursor;
    this.wheelCursor = nowSec;
    const leases: Lease[] = [];
    const borrows: Borrow[] = [];
    const mutations: Mutation[] = [];
    for (const id of dueLeases) {
      const l = this.leases.get(id);
      if (l && l.expiresAt <= now) {
        leases.push(l);
        mutations.push({ kind: 'lease.del', id });
      }
    }
    for (const id of dueBorrows) {
      const b = this.borrows.get(id);
      if (b && b.expiresAt <= now) {
        borrows.push(b);
        mutations.push({ kind: 'borrow.del', id });
      }
    }
    const change = this.change({ leases, borrows }, mutations);
    // Undone (the write failed): the entries go back into buckets this scan has passed, so the
    // next scan must start where this one did, or they would never be reaped.
    const undo = change.undo;
    change.undo = () => {
      undo();
      this.wheelCursor = scannedFrom < 0 ? -1 : Math.min(this.wheelCursor, scannedFrom);
    };
    return change;
  }

  /** The ids in a wheel's buckets from the cursor to this second. */
  private dueIn(wheel: Map<number, Set<string>>, nowSec: number): string[] {
    const due: string[] = [];
    if (this.wheelCursor < 0 || nowSec - this.wheelCursor > 3600) {
      // First run or a long jump: look at every bucket once rather than every second.
      for (const [sec, set] of wheel) if (sec <= nowSec) due.push(...set);
    } else {
      for (let s = this.wheelCursor; s <= nowSec; s++) {
        const set = wheel.get(s);
        if (set) due.push(...set);
      }
    }
    return due;
  }

  /** Loads persisted state (at start). Entries whose time passed while the daemon was down are dropped. */
  restore(leases: Lease[], borrows: Borrow[], now: number): Change<{ dropped: Lease[]; droppedBorrows: Borrow[]; orphans: string[] }> {
    const mutations: Mutation[] = [];
    const dropped: Lease[] = [];
    const droppedBorrows: Borrow[] = [];
    const orphans: string[] = [];
    for (const lease of leases) {
      if (lease.expiresAt <= now) {
        dropped.push(lease);
        mutations.push({ kind: 'lease.del', id: lease.id });
      } else if (!this.features.has(lease.feature)) {
        orphans.push(lease.id);
        mutations.push({ kind: 'lease.del', id: lease.id });
      } else {
        this.apply({ kind: 'lease.put', lease });
      }
    }
    for (const borrow of borrows) {
      if (borrow.expiresAt <= now) {
        droppedBorrows.push(borrow);
        mutations.push({ kind: 'borrow.del', id: borrow.id });
      } else if (!this.features.has(borrow.feature)) {
        // A borrowed token stays valid offline even if the feature left the license file; its
        // record must stay too, or the seat would be counted free when the feature comes back.
        this.features.set(borrow.feature, {
          license: { name: borrow.feature, version: '0', seats: 0, expires: null, type: 'render', product: borrow.feature, borrow: { allowed: false, maxHours: 0 } },
          leased: 0,
          borrowed: 0,
          leases: new Map(),
          borrows: new Map(),
          hold: null,
          orphan: true,
        });
        this.apply({ kind: 'borrow.put', borrow });
      } else {
        this.apply({ kind: 'borrow.put', borrow });
      }
    }
    // Deletions of stale entries only: nothing to undo in memory.
    return { result: { dropped, droppedBorrows, orphans }, mutations, undo: () => {} };
  }

  /** leased + borrowed + held <= seats for every feature, and the counters match the records. */
  checkInvariants(now: number): string[] {
    const problems: string[] = [];
    for (const [name, f] of this.features) {
      let leased = 0;
      for (const l of f.leases.values()) leased += l.count;
      let borrowed = 0;
      for (const b of f.borrows.values()) borrowed += b.count;
      if (leased !== f.leased) problems.push(`${name}: leased counter ${f.leased} but records add to ${leased}`);
      if (borrowed !== f.borrowed) problems.push(`${name}: borrowed counter ${f.borrowed} but records add to ${borrowed}`);
      if (!f.orphan && f.leased + f.borrowed > f.license.seats) problems.push(`${name}: ${f.leased} leased + ${f.borrowed} borrowed > ${f.license.seats} seats`);
    }
    void now;
    return problems;
  }

  // ---- the one way state changes ------------------------------------------------------------

  private change<T>(result: T, mutations: Mutation[]): Change<T> {
    const inverses: Mutation[] = [];
    for (const m of mutations) inverses.push(this.apply(m));
    return {
      result,
      mutations,
      undo: () => {
        for (let i = inverses.length - 1; i >= 0; i--) this.apply(inverses[i]!);
      },
    };
  }

  /** Applies one mutation to memory and returns its inverse. */
  apply(m: Mutation): Mutation {
    switch (m.kind) {
      case 'lease.put': {
        const old = this.leases.get(m.lease.id);
        // The same id put again (an extended checkout, a lingering check-in and its taking back, a
        // will): its entries in the id maps are overwritten, not deleted and set again, which in a
        // large Map grows the key's bucket chain (src/core/churn-map.ts says why).
        if (old) this.removeLease(old, old.feature === m.lease.feature);
        this.addLease(m.lease);
        return old ? { kind: 'lease.put', lease: old } : { kind: 'lease.del', id: m.lease.id };
      }
      case 'lease.del': {
        const old = this.leases.get(m.id);
        if (!old) return { kind: 'lease.del', id: m.id };
        this.removeLease(old);
        return { kind: 'lease.put', lease: old };
      }
      case 'borrow.put': {
        const old = this.borrows.get(m.borrow.id);
        if (old) this.removeBorrow(old);
        this.addBorrow(m.borrow);
        return old ? { kind: 'borrow.put', borrow: old } : { kind: 'borrow.del', id: m.borrow.id };
      }
      case 'borrow.del': {
        const old = this.borrows.get(m.id);
        if (!old) return { kind: 'borrow.del', id: m.id };
        this.removeBorrow(old);
        return { kind: 'borrow.put', borrow: old };
      }
      case 'meta.put':
      case 'rec.put':
      case 'rec.del':
        // Not seat state: nothing in the table to change.
        return m;
    }
  }

  private addLease(l: Lease): void {
    const f = this.features.get(l.feature);
    if (!f) throw new Error(`lease for unknown feature ${l.feature}`);
    this.leases.set(l.id, l);
    f.leases.set(l.id, l);
    f.leased += l.count;
    if (l.lingering) (f.lingering ??= new Set()).add(l.id);
    this.byOwner.set(ownerKey(l.clientId, l.pid, l.feature, l.holder), l.id);
    let set = this.byClient.get(l.clientId);
    if (!set) this.byClient.set(l.clientId, (set = new Set()));
    set.add(l.id);
    this.wheelAdd(this.leaseWheel, l.id, l.expiresAt);
  }

  /** `replaced`: a lease of the same id and feature is added right after, over its entries. */
  private removeLease(l: Lease, replaced = false): void {
    const f = this.features.get(l.feature)!;
    if (!replaced) {
      this.leases.delete(l.id);
      f.leases.delete(l.id);
    }
    f.leased -= l.count;
    if (l.lingering) f.lingering?.delete(l.id);
    const key = ownerKey(l.clientId, l.pid, l.feature, l.holder);
    if (this.byOwner.get(key) === l.id) this.byOwner.delete(key);
    const set = this.byClient.get(l.clientId);
    if (set) {
      set.delete(l.id);
      if (set.size === 0) this.byClient.delete(l.clientId);
    }
    this.wheelRemove(this.leaseWheel, l.id, l.expiresAt);
  }

  private addBorrow(b: Borrow): void {
    const f = this.features.get(b.feature);
    if (!f) throw new Error(`borrow for unknown feature ${b.feature}`);
    this.borrows.set(b.id, b);
    f.borrows.set(b.id, b);
    f.borrowed += b.count;
    const rk = `${b.clientKey}\0${b.requestId}`;
    let set = this.byRequest.get(rk);
    if (!set) this.byRequest.set(rk, (set = new Set()));
    set.add(b.id);
    this.wheelAdd(this.borrowWheel, b.id, b.expiresAt);
  }

  private removeBorrow(b: Borrow): void {
    const f = this.features.get(b.feature)!;
    this.borrows.delete(b.id);
    f.borrows.delete(b.id);
    f.borrowed -= b.count;
    const rk = `${b.clientKey}\0${b.requestId}`;
    const set = this.byRequest.get(rk);
    if (set) {
      set.delete(b.id);
      if (set.size === 0) this.byRequest.delete(rk);
    }
    this.wheelRemove(this.borrowWheel, b.id, b.expiresAt);
  }

  private wheelAdd(wheel: Map<number, Set<string>>, id: string, at: number): void {
    const s = Math.floor(at / 1000);
    // A bucket the reaper has passed (an undo putting back an end that was due): its next scan starts there.
    if (s < this.wheelCursor) this.wheelCursor = s;
    let set = wheel.get(s);
    if (!set) wheel.set(s, (set = new Set()));
    set.add(id);
  }

  private wheelRemove(wheel: Map<number, Set<string>>, id: string, at: number): void {
    const s = Math.floor(at / 1000);
    const set = wheel.get(s);
    if (set) {
      set.delete(id);
      if (set.size === 0) wheel.delete(s);
    }
  }

  // ---- a new license at runtime (docs/activation.md) ----------------------------------------

  /**
   * Replaces the licensed features with a new license's. Features still licensed keep their
   * leases, borrows and holds; a feature with fewer seats than leased + borrowed loses its NEWEST
   * leases until the rest fit; a feature no longer licensed loses every lease. Borrows are never
   * ended here (their tokens stay valid offline until they expire): a removed feature with borrows
   * out stays as an orphan (0 seats) until they end. Each ended lease is remembered as revoked
   * with code LICENSE_REDUCED, so its holder's next heartbeat is told why; all in one change.
   */
  replaceLicenses(
    licenses: readonly FeatureLicense[],
    now: number,
    /** Failover seats withdrawn (src/core/failover.ts): the code and words the ended leases' holders get instead. */
    ending?: { code: 'FAILOVER_ENDED'; message: string },
  ): Change<{ ended: Array<{ lease: Lease; message: string }>; added: string[]; removed: string[]; changed: string[] }> {
    const next = new Map(licenses.map((l) => [l.name, l]));
    const ended: Array<{ lease: Lease; message: string }> = [];
    const newestFirst = (m: Map<string, Lease>) => [...m.values()].sort((a, b) => b.since - a.since || (a.id < b.id ? 1 : -1));
    for (const [name, f] of this.features) {
      const lic = next.get(name);
      if (!lic) {
        for (const l of newestFirst(f.leases)) {
          ended.push({ lease: l, message: `${name} is no longer in the license installed on the server (license changed at ${new Date(now).toISOString()}); its seats ended` });
        }
        continue;
      }
      let over = f.leased + f.borrowed - lic.seats;
      for (const l of newestFirst(f.leases)) {
        if (over <= 0) break;
        over -= l.count;
        ended.push({
          lease: l,
          message: `${name}: the new license has ${lic.seats} seat(s) where ${f.leased} were leased and ${f.borrowed} borrowed; the newest leases ended (license changed at ${new Date(now).toISOString()})`,
        });
      }
    }
    const revokedWere = new Map(this.revoked);
    for (const { lease, message } of ended) {
      this.revoked.set(lease.id, { lease: lease.id, clientId: lease.clientId, feature: lease.feature, at: now, keepUntil: now + REVOKED_MEMORY_MS, blockedUntil: null, code: ending?.code ?? 'LICENSE_REDUCED', message: ending?.message ?? message });
    }
    const mutations: Mutation[] = ended.map(({ lease }) => ({ kind: 'lease.del', id: lease.id }) as const);
    if (ended.length > 0) mutations.push(this.revocationsMutation(now));
    const change = this.change({ ended, added: [] as string[], removed: [] as string[], changed: [] as string[] }, mutations);
    // The licenses themselves: kept aside so the change can be undone.
    const featuresWere = new Map([...this.features].map(([k, f]) => [k, { state: f, license: f.license, orphan: f.orphan }]));
    for (const [name, f] of [...this.features]) {
      const lic = next.get(name);
      if (lic) {
        if (f.orphan || JSON.stringify(f.license) !== JSON.stringify(lic)) change.result.changed.push(name);
        f.license = lic;
        delete f.orphan;
      } else {
        change.result.removed.push(name);
        if (f.borrows.size > 0) {
          f.license = { ...f.license, seats: 0, borrow: { allowed: false, maxHours: 0 } };
          f.orphan = true;
        } else this.features.delete(name);
      }
    }
    for (const lic of licenses) {
      if (this.features.has(lic.name)) continue;
      this.features.set(lic.name, { license: lic, leased: 0, borrowed: 0, leases: new Map(), borrows: new Map(), hold: null });
      change.result.added.push(lic.name);
    }
    const undo = change.undo;
    change.undo = () => {
      this.features.clear();
      for (const [k, w] of featuresWere) {
        w.state.license = w.license;
        if (w.orphan) w.state.orphan = true;
        else delete w.state.orphan;
        this.features.set(k, w.state);
      }
      undo();
      this.revoked.clear();
      for (const [k, r] of revokedWere) this.revoked.set(k, r);
    };
    return change;
  }

  // ---- clock steps (docs/threat-model.md) ---------------------------------------------------

  /**
   * The clock stepped by `deltaMs` (forward > 0): every lease and borrow time, and every hold,
   * moves with it, so each lasts its real duration. A borrow's reservation never ends before the
   * expiry its current token states (a token issued while the clock was wrong says a later time
   * than the moved reservation would): the token is judged by the client's clock, offline.
   */
  shift(deltaMs: number): Change<{ leases: number; borrows: number }> {
    const mutations: Mutation[] = [];
    for (const l of this.leases.values()) {
      const lease: Lease = { ...l, since: l.since + deltaMs, expiresAt: l.expiresAt + deltaMs, disconnectedAt: l.disconnectedAt === null ? null : l.disconnectedAt + deltaMs, storedUntil: undefined };
      mutations.push({ kind: 'lease.put', lease });
    }
    for (const b of this.borrows.values()) mutations.push({ kind: 'borrow.put', borrow: shiftBorrow(b, deltaMs) });
    const held: Array<[FeatureState, { seats: number; until: number }]> = [];
    for (const f of this.features.values()) {
      if (f.hold) {
        held.push([f, f.hold]);
        f.hold = { seats: f.hold.seats, until: f.hold.until + deltaMs };
      }
    }
    // An admin's block lasts its real length too, and a revoked lease is remembered as long.
    const blocksWere = new Map(this.blocks);
    const revokedWere = new Map(this.revoked);
    for (const [k, x] of this.blocks) this.blocks.set(k, { ...x, until: x.until + deltaMs });
    for (const [k, r] of this.revoked) {
      this.revoked.set(k, { ...r, at: r.at + deltaMs, keepUntil: r.keepUntil + deltaMs, blockedUntil: r.blockedUntil === null ? null : r.blockedUntil + deltaMs });
    }
    if (this.blocks.size + this.revoked.size > 0) {
      mutations.push({ kind: 'meta.put', key: META_REVOCATIONS, value: { blocks: [...this.blocks.values()], revoked: [...this.revoked.values()] } });
    }
    this.wheelCursor = -1;
    const change = this.change({ leases: this.leases.size, borrows: this.borrows.size }, mutations);
    return {
      ...change,
      undo: () => {
        change.undo();
        for (const [f, h] of held) f.hold = h;
        this.blocks.clear();
        for (const [k, x] of blocksWere) this.blocks.set(k, x);
        this.revoked.clear();
        for (const [k, r] of revokedWere) this.revoked.set(k, r);
        this.wheelCursor = -1;
      },
    };
  }

  /** At most `limit` of a feature's leases and borrows, and how many there are in all. */
  featureListing(name: string, limit = Number.POSITIVE_INFINITY): { leases: Lease[]; borrows: Borrow[]; leaseCount: number; borrowCount: number } {
    const f = this.features.get(name);
    const take = <T>(m: Map<string, T> | undefined): T[] => {
      const out: T[] = [];
      if (!m) return out;
      for (const v of m.values()) {
        if (out.length >= limit) break;
        out.push(v);
      }
      return out;
    };
    return { leases: take(f?.leases), borrows: take(f?.borrows), leaseCount: f?.leases.size ?? 0, borrowCount: f?.borrows.size ?? 0 };
  }
}

/** A borrow's times moved by a clock step; its end never before what its current token states. */
export function shiftBorrow(b: Borrow, deltaMs: number): Borrow {
  // Until the first step after a token's issue, expiresAt is exactly what the token states.
  const stated = b.tokenExpires?.token === b.tokenId ? b.tokenExpires.at : b.expiresAt;
  return {
    ...b,
    since: b.since + deltaMs,
    tokenIssuedAt: b.tokenIssuedAt + deltaMs,
    expiresAt: Math.max(b.expiresAt + deltaMs, stated),
    tokenExpires: { token: b.tokenId, at: stated },
  };
}

/**
 * A lease as read back at a start (`now`): a record whose `storedUntil` is past its `expiresAt`
 * was renewed by heartbeats that wrote nothing, so its holder may have been told any end up to
 * `storedUntil`. Every such end is at most one TTL after the last heartbeat, which came before
 * licd stopped, so before `now`: the lease is kept until `storedUntil` or one TTL from now,
 * whichever is sooner, and never less than the stored end. Its activity mark is dropped (it may
 * be older than the holder's last report): it is judged idle again from its next heartbeat.
 * A record with nothing written ahead is returned as it is.
 */
export function restoredEnd(l: Lease, now: number): Lease {
  const ahead = l.storedUntil;
  if (ahead === undefined || ahead <= l.expiresAt || l.lingering) return l;
  const { activeAt: _, ...rest } = l;
  return { ...rest, expiresAt: Math.max(l.expiresAt, Math.min(ahead, now + l.ttlMs)) };
}

function withoutLinger(l: Lease): Lease {
  if (!l.lingering) return l;
  const { lingering: _, ...rest } = l;
  return rest;
}

function ownerKey(clientId: string, pid: number, feature: string, holder: string | undefined): string {
  return `${clientId}\0${pid}\0${feature}\0${holder ?? ''}`;
}
