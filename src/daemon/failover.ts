/**
 * The failover server's part of the daemon (docs/scale-out.md, "Failover server"): reads the
 * failover entitlement, watches the primary box's retained server state on the cluster's topics,
 * and feeds both to the pure rules (src/core/failover.ts). When they say failover started, the
 * primary's seats are added to this box's seat table; when it ended, they are taken away and the
 * leases over this box's own count end (FAILOVER_ENDED) so their clients move back.
 */
import type { LinkClient } from '../mqtt/link-client.ts';
import type { Config } from '../config.ts';
import type { FeatureLicense } from '../core/entitlement.ts';
import { LicdError, isLicdError } from '../core/errors.ts';
import { FailoverPlan, mergeFailoverLicenses, META_FAILOVER, verifyFailover, type FailoverEntitlement, type FailoverTransition, type FailoverUsage, type PrimaryState } from '../core/failover.ts';
import type { ClockGuard } from '../core/integrity.ts';
import type { Clock, Ed25519, StateStore } from '../core/ports.ts';
import { topicsOf } from '../core/protocol.ts';
import type { SeatTable } from '../core/seats.ts';
import type { LicenseService, Log } from '../core/service.ts';
import { readJsonFile } from '../files.ts';

/** Reads and verifies failover.entitlementFile (null when unset). */
export function loadFailoverEntitlement(
  config: Config,
  o: { vendorPublicKey: Uint8Array; dongle: { serial: string; publicKey: Uint8Array }; now: number; ed: Ed25519 },
): FailoverEntitlement | null {
  const file = config.failover.entitlementFile;
  if (file === null) return null;
  const envelope = readJsonFile(file, 'the failover entitlement (failover.entitlementFile)', { code: 'ENTITLEMENT_INVALID', fix: 'give the failover file from the vendor in failover.entitlementFile' });
  try {
    return verifyFailover(envelope, { ...o, serverId: config.cluster.serverId! });
  } catch (e) {
    if (isLicdError(e) && !e.message.includes(file)) {
      const fix = e.message.includes('failover.entitlementFile') ? '' : ". Give the failover entitlement the vendor made for this box's dongle (licctl vendor failover), or remove failover.entitlementFile";
      throw new LicdError(e.code, `failover.entitlementFile ${file}: ${e.message}${fix}`, e.details);
    }
    throw e;
  }
}

/** How often the persisted failover time is written while active, ms. */
const SAVE_EVERY_MS = 60_000;

export class FailoverPart {
  readonly plan: FailoverPlan;
  private service: LicenseService | null = null;
  private client: LinkClient | null = null;
  private timer: NodeJS.Timeout | null = null;
  private applying: Promise<void> = Promise.resolve();
  private savedAt = 0;
  private readonly topic: string;

  constructor(
    readonly entitlement: FailoverEntitlement,
    private readonly deps: {
      clock: Clock;
      table: SeatTable;
      clockGuard: ClockGuard;
      store: StateStore;
      log: Log;
      /** This box's own licenses (its entitlement's features; a license installed at runtime changes them). */
      own: () => readonly FeatureLicense[];
    },
    usage: FailoverUsage | null,
  ) {
    this.plan = new FailoverPlan(entitlement, usage, deps.clock.now());
    this.topic = topicsOf(entitlement.primary.server).serverState;
  }

  /** The service's hook (ServiceDeps.failover). */
  readonly gate = {
    admit: (feature: string, count: number, now: number): void => {
      if (!this.plan.active || !this.plan.covers(feature)) return;
      const a = this.deps.table.availability(feature, now);
      const own = this.deps.own().find((l) => l.name === feature)?.seats ?? 0;
      // A seat beyond this box's own count is a failover seat: not granted on a clock in doubt.
      if (a.leased + a.borrowed + a.held + count > own && this.deps.clockGuard.setBackMs > 0) {
        this.deps.clockGuard.refuse(`a failover seat of ${this.entitlement.primary.server}'s ${feature}`);
      }
    },
    /**
     * A borrow's token outlives the primary's return, and a borrow is never ended early: so a
     * borrow may take only this box's own seats, never the primary's.
     */
    borrow: (feature: string, count: number, now: number): void => {
      if (!this.plan.active || !this.plan.covers(feature)) return;
      const a = this.deps.table.availability(feature, now);
      const own = this.deps.own().find((l) => l.name === feature)?.seats ?? 0;
      if (a.leased + a.borrowed + a.held + count > own) {
        throw new LicdError(
          'BORROW_NOT_ALLOWED',
          `${feature}: the free seats are ${this.entitlement.primary.server}'s, served here only while it is offline (failover), and are not lent: a token would outlive its return. Borrow from ${this.entitlement.primary.server} when it is back, or when this box's own ${own} seat(s) have room`,
          { feature, wanted: count, own, reason: 'failover' },
        );
      }
    },
    explain: (e: unknown, feature: string, count: number): unknown => {
      if (!isLicdError(e) || (e.code !== 'NO_SEATS' && e.code !== 'UNKNOWN_FEATURE')) return e;
      return this.plan.refusal(feature, count) ?? e;
    },
  };

  /** Watches the primary's state through this box's broker link, and judges every second. */
  attach(service: LicenseService, client: LinkClient): void {
    this.service = service;
    this.client = client;
    client.on('message', this.onMessage);
    client.on('connect', this.subscribe);
    if (client.connected) this.subscribe();
    this.timer = setInterval(() => this.step(this.plan.tick(this.deps.clock.now())), 1000);
    this.timer.unref?.();
    this.publishView();
    this.trimRestored();
    this.deps.log.info('failover: dormant until the primary is offline', {
      entitlement: this.entitlement.id,
      primary: this.entitlement.primary.server,
      afterSeconds: this.entitlement.afterMs / 1000,
      maxHoursPerMonth: this.entitlement.maxHoursPerMonth,
      features: this.entitlement.features.map((f) => `${f.name} x${f.seats}`).join(', '),
    });
  }

  /**
   * Leases of failover seats restored from the database at a restart (failover was active when
   * this box stopped): a feature only the primary has lost them at the restore; a feature both
   * have may hold more than this box's own seats. Failover starts dormant, so those end now
   * (the newest, FAILOVER_ENDED) instead of being renewed by their heartbeats.
   */
  private trimRestored(): void {
    const service = this.service!;
    const now = this.deps.clock.now();
    const own = this.deps.own();
    const over = this.entitlement.features.some((f) => {
      if (!this.deps.table.license(f.name)) return false;
      const a = this.deps.table.availability(f.name, now);
      return a.leased + a.borrowed > (own.find((l) => l.name === f.name)?.seats ?? 0);
    });
    if (!over) return;
    const server = this.entitlement.primary.server;
    const message = `failover for ${server} is not active since this box restarted (${new Date(now).toISOString()}); take the seat from ${server} again`;
    this.applying = this.applying.then(async () => {
      const ended = await service.setFailoverLicenses(own, { message }, null, this.entitlement).catch((err: unknown) => {
        this.deps.log.error('failover: could not end the failover leases restored at start', { error: String(err) });
        return [];
      });
      if (ended.length > 0) this.deps.log.warn('failover: leases of failover seats restored at start ended (failover starts dormant)', { leases: ended.length });
    });
  }

  private readonly subscribe = (): void => {
    this.client?.subscribe({ [this.topic]: { qos: 1 } }, (err) => {
      if (err) this.deps.log.error("failover: could not subscribe to the primary's server state; failover stays dormant", { topic: this.topic, error: String(err) });
    });
  };

  private readonly onMessage = (topic: string, payload: Buffer): void => {
    if (topic !== this.topic) return;
    let state: PrimaryState | null = null;
    if (payload.length > 0) {
      try {
        const s = JSON.parse(payload.toString('utf8')) as { state?: unknown; dongle?: { serial?: unknown }; entitlement?: { id?: unknown } | null };
        if (s.state !== 'online' && s.state !== 'offline') return;
        state = {
          state: s.state,
          dongleSerial: typeof s.dongle?.serial === 'string' ? s.dongle.serial : null,
          license: typeof s.entitlement?.id === 'string' ? s.entitlement.id : null,
        };
      } catch {
        this.deps.log.warn("failover: the primary's server state is not JSON; ignored", { topic });
        return;
      }
    }
    this.step(this.plan.observe(state, this.deps.clock.now()));
  };

  private step(transitions: FailoverTransition[]): void {
    const now = this.deps.clock.now();
    for (const t of transitions) {
      if (t.kind === 'started') {
        this.deps.log.warn(`failover: ${this.entitlement.primary.server} offline since ${new Date(t.offlineSince).toISOString()}: this box now grants its seats`, { entitlement: this.entitlement.id });
      } else {
        this.deps.log.warn(`failover: ended (${t.reason}); the primary's seats are no longer granted here`, { entitlement: this.entitlement.id, usedHours: Math.round(t.usedMs / 36_000) / 100 });
      }
      this.apply(t);
    }
    if (transitions.length > 0 || (this.plan.active && now - this.savedAt >= SAVE_EVERY_MS)) this.save(now);
    this.publishView();
  }

  /** Changes the seat table (one change at a time, in the order of the transitions). */
  private apply(t: FailoverTransition): void {
    const service = this.service;
    if (!service) return;
    const e = this.entitlement;
    const features = e.features.map((f) => ({ feature: f.name, seats: f.seats }));
    this.applying = this.applying.then(async () => {
      const own = this.deps.own();
      try {
        if (t.kind === 'started') {
          await service.setFailoverLicenses(mergeFailoverLicenses(own, e.features), { message: '' }, { type: 'failover', at: t.at, action: 'started', primary: e.primary.server, entitlement: e.id, since: t.at, features }, this.entitlement);
        } else {
          const ended = await service.setFailoverLicenses(own, { message: this.plan.endedMessage(t) }, { type: 'failover', at: t.at, action: 'ended', primary: e.primary.server, entitlement: e.id, since: t.since, reason: t.reason, usedMs: t.usedMs, features }, this.entitlement);
          if (ended.length > 0) this.deps.log.info('failover: leases over this box\'s own count ended (FAILOVER_ENDED)', { leases: ended.length });
        }
      } catch (err) {
        this.deps.log.error('failover: could not change the seat table; tried again at the next change', { error: String(err) });
      }
    });
  }

  /** This box's own license changed (installed at runtime, which leaves only its features): the primary's seats are added again while active. */
  licensesChanged(): void {
    const service = this.service;
    if (!service || !this.plan.active) return;
    const e = this.entitlement;
    this.applying = this.applying.then(async () => {
      if (!this.plan.active) return;
      await service.setFailoverLicenses(mergeFailoverLicenses(this.deps.own(), e.features), { message: '' }, null, this.entitlement).catch((err: unknown) => this.deps.log.error('failover: could not add the primary\'s seats again', { error: String(err) }));
    });
  }

  private save(now: number): void {
    this.savedAt = now;
    this.deps.store.commit([{ kind: 'meta.put', key: META_FAILOVER, value: this.plan.used }]).catch((err: unknown) => this.deps.log.warn('failover: the time used could not be written; tried again', { error: String(err) }));
  }

  private publishView(): void {
    this.service?.setFailover(this.plan.view(this.deps.clock.now()));
  }

  /** Resolves when the seat-table changes asked for so far are done (tests). */
  settled(): Promise<void> {
    return this.applying;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.client?.off('message', this.onMessage);
    this.client?.off('connect', this.subscribe);
    await this.applying;
    if (this.plan.active) this.save(this.deps.clock.now());
  }
}
