import { LicdError, isLicdError, type ErrorCode } from './errors.ts';
import { productsOfFeatures, productViews, type Entitlement, type FeatureLicense } from './entitlement.ts';
import type { FailoverView } from './failover.ts';
import type { Borrow, Change, Lease, Mutation } from './model.ts';
import type { EventBus, QueueLeftReason, SeatEvent } from './events.ts';
import type { Clock, HolderHash, StateStore } from './ports.ts';
import {
  ADMIN_OPS,
  CLIENT_OPS,
  DEFAULT_MAX_PAYLOAD,
  type Answer,
  type BorrowView,
  type CheckinResult,
  type CheckoutResult,
  type DongleView,
  type FeatureStatus,
  type HeartbeatResult,
  type LeaseLostNotice,
  type Notice,
  type CheckoutQueued,
  type QueueView,
  type LeaseView,
  type RevokeResult,
  type ServerState,
  type StatusResult,
} from './protocol.ts';
import type { GrantEnvelope } from './grant-batch.ts';
import { CounterStepError, describeMs, type ClockGuard, type CounterGate } from './integrity.ts';
import { isoTime } from './iso-time.ts';
import { fromUtf8 } from './bytes.ts';
import { SeatTable } from './seats.ts';
import { policySummary, priorityOf, queueRule } from './policy.ts';
import { WaitQueue, delWaiter, putWaiter, storedWaiter, waiterKey, waiterRecordKey, type Waiter } from './queue.ts';
import type { CheckoutRequest } from './seats.ts';
import { CLIENT_ID_HELP, CLIENT_ID_PATTERN, Fields, FEATURE_HELP, FEATURE_PATTERN, HOLDER_HELP, HOLDER_PATTERN, unsafeChar, VERSION_PATTERN } from './validate.ts';

export interface Log {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

export interface LeasePolicy {
  /** Lease time to live when the client asks for none, seconds. */
  ttlSeconds: number;
  minTtlSeconds: number;
  maxTtlSeconds: number;
  /** How long a lease outlives its client's dead connection (last will), seconds. */
  disconnectGraceSeconds: number;
  /** How long live leases keep being renewed after the dongle went away, seconds. */
  dongleGraceSeconds: number;
}

/**
 * After the daemon gets its broker back, every lease runs at least this long (or the disconnect
 * grace, if longer) before it can end: five times the SDK's longest reconnect delay (6 s, see
 * src/mqtt/connect.ts), so a client that reconnects with backoff renews its lease first.
 */
export const RECONNECT_WINDOW_MS = 30_000;

/** Waiters at these places (1 = next) are told every move of theirs; those further back, moves of a tenth of their place. */
export const ANNOUNCE_EVERY_MOVE = 10;

/** The most `conn` numbers (SDK connection counters) remembered, one per client id. */
const MAX_CONN_EPOCHS = 100_000;

export const defaultLeasePolicy: LeasePolicy = {
  ttlSeconds: 60,
  minTtlSeconds: 10,
  maxTtlSeconds: 3600,
  disconnectGraceSeconds: 10,
  dongleGraceSeconds: 300,
};

/** Request handlers contributed by other parts (borrowing), so this file stays about leases. */
export type OpHandler = (ctx: RequestContext, f: Fields) => Promise<unknown>;

export interface RequestContext {
  clientId: string;
  admin: boolean;
  now: number;
  /**
   * The user name the broker vouches for (the MQTT login of a login topic) when the server takes
   * users from logins (identity.requireLogin); null otherwise, and the user is what the client says.
   */
  identity: string | null;
}

export interface ServiceDeps {
  clock: Clock;
  store: StateStore;
  table: SeatTable;
  entitlement: Entitlement | null;
  policy: LeasePolicy;
  log: Log;
  version: string;
  maxPayloadBytes?: number;
  /**
   * Signs a grant for a lease with the daemon's session key (the trust chain); optional. The
   * daemon signs the grants asked for in one event-loop turn together (src/core/grant-batch.ts).
   */
  signGrant?: (lease: Lease) => Promise<GrantEnvelope>;
  /** Told when availability or server state changed; the adapter schedules publishDirty(). */
  onDirty?: () => void;
  /** Binds borrow changes to the dongle's monotonic counter (anti-rollback). */
  counterGate?: CounterGate;
  /** The persisted high-water mark of time (clock integrity). */
  clockGuard?: ClockGuard;
  /** The broker's TLS certificate fingerprint, shown in the server state for clients to pin. */
  tls?: ServerState['tls'];
  /** Publishes a notice (an answer with id null) on a client's answer topic; optional. */
  notify?: (clientId: string, notice: Notice) => void;
  /** Hashes holder secrets: leases keep only the hash (docs/protocol.md, "Holder secret"). */
  holderHash: HolderHash;
  /**
   * identity.requireLogin: client requests (other than status) must come on login topics, and the
   * user of leases and borrows is the login, not what the request says.
   */
  requireLogin?: boolean;
  /** Told what happens to seats (usage history, audit, metrics, alerts: src/core/events.ts). */
  events?: EventBus;
  /**
   * A failover entitlement (src/core/failover.ts): `admit` may refuse a checkout before it is
   * decided (a failover seat while the clock is in doubt); `explain` turns a refusal of one of the
   * primary's features into why failover grants none now (FAILOVER_DORMANT).
   */
  failover?: { admit(feature: string, count: number, now: number): void; explain(e: unknown, feature: string, count: number): unknown };
}

/**
 * The license service: turns requests into seat-table changes, makes each change durable before
 * it answers, and keeps the retained availability current. Pure of I/O: the store, the clock and
 * publishing come in through interfaces, so the rules run under an injected clock in tests.
 */
export class LicenseService {
  readonly table: SeatTable;
  private readonly deps: ServiceDeps;
  private readonly handlers = new Map<string, { admin: boolean; run: OpHandler }>();
  private readonly dirty = new Set<string>();
  private serverDirty = true;
  private dongle: DongleView = { present: true, serial: null, emulated: false };
  private dongleLostAt: number | null = null;
  private readonly warnings = new Map<string, string>();
  private readonly startedAt: number;
  private stopping = false;
  /** While the daemon has lost its broker it hears no heartbeats: no lease ends then. */
  private brokerDown = false;
  /** Until when the fresh window given at the last brokerBack runs (0: none). */
  private reconnectWindowUntil = 0;
  /** The newest connection number (`conn`) each SDK client has sent: a will of an older one is stale. */
  private readonly connEpochs = new Map<string, number>();
  private quarantineBinding: StatusResult['quarantineBinding'] | null = null;
  /** Checkouts waiting for a seat (docs/policy.md, "Queueing"); each is also a record of the 'queue' space. */
  readonly waiters = new WaitQueue();
  /** How long seats of each feature were held lately (ms, a moving average): the queue's estimate. */
  private readonly holdAvg = new Map<string, number>();
  /** Features whose queue is to be served once the current change is written. */
  private readonly serveSoon = new Set<string>();

  constructor(deps: ServiceDeps) {
    this.deps = deps;
    this.table = deps.table;
    this.startedAt = deps.clock.now();
    this.register('status', false, async (ctx, f) =>
      this.status(ctx.now, {
        feature: f.optString('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP }),
        limit: f.optInt('limit', { min: 0, max: 100_000 }),
      }),
    );
    this.register('checkout', false, (ctx, f) => this.checkout(ctx, f));
    this.register('heartbeat', false, (ctx, f) => this.heartbeat(ctx, f));
    this.register('checkin', false, (ctx, f) => this.checkin(ctx, f));
    this.register('lease.revoke', true, (ctx, f) => this.revoke(ctx, f));
    this.register('lease.unblock', true, (ctx, f) => this.unblock(ctx, f));
    for (const f of this.table.featureNames()) this.dirty.add(f);
  }

  register(op: string, admin: boolean, run: OpHandler): void {
    this.handlers.set(op, { admin, run });
  }

  get clock(): Clock {
    return this.deps.clock;
  }

  get log(): Log {
    return this.deps.log;
  }

  get entitlement(): Entitlement | null {
    return this.deps.entitlement;
  }

  // ---- state that limits granting ------------------------------------------------------------

  setDongle(view: DongleView): void {
    const was = this.dongle.present;
    this.dongle = view;
    const now = this.deps.clock.now();
    if (was && !view.present) {
      this.dongleLostAt = now;
      this.setWarning('dongle', `dongle absent (${view.reason ?? 'not answering'}): new checkouts and borrows are refused; live leases continue for ${this.deps.policy.dongleGraceSeconds} s`);
    } else if (view.present) {
      this.dongleLostAt = null;
      this.setWarning('dongle', null);
    }
    this.serverDirty = true;
    this.deps.onDirty?.();
  }

  /** The clock stepped by deltaMs and every stored time moved with it (docs/threat-model.md). */
  shiftTimes(deltaMs: number): void {
    if (this.dongleLostAt !== null) this.dongleLostAt += deltaMs;
    this.waiters.shift(deltaMs);
    // The stored waiters move too, so a restart keeps each wait's real length.
    const moved = this.waiters.all().map(putWaiter);
    if (moved.length > 0) {
      this.commit({ result: null, mutations: moved, undo: () => {} }, [], { lazy: true }).catch((e: unknown) => this.deps.log.debug('stored waiters not moved with the clock step', { error: String(e) }));
    }
    this.markAllDirty();
  }

  dongleView(): DongleView {
    return this.dongle;
  }

  /** How long the dongle has been absent, ms; null while it is present (health, alerts). */
  dongleAbsentMs(now = this.deps.clock.now()): number | null {
    return this.dongle.present || this.dongleLostAt === null ? null : now - this.dongleLostAt;
  }

  /** The named warnings (key, text), for alerts. */
  warningEntries(): Array<[string, string]> {
    return [...this.warnings.entries()];
  }

  /** The active alerts' summaries, shown in the server state (src/alerts/monitor.ts sets them). */
  setAlerts(list: NonNullable<ServerState['alerts']>): void {
    if (JSON.stringify(list) === JSON.stringify(this.alertSummaries)) return;
    this.alertSummaries = list;
    this.serverDirty = true;
    this.deps.onDirty?.();
  }

  private alertSummaries: NonNullable<ServerState['alerts']> = [];

  /** A named reason why granting is limited, shown in the server state and status. */
  setWarning(key: string, text: string | null): void {
    const before = this.warnings.get(key);
    if (text === null) this.warnings.delete(key);
    else this.warnings.set(key, text);
    if (before !== (text ?? undefined)) {
      this.serverDirty = true;
      this.deps.onDirty?.();
    }
  }

  requireDongle(): void {
    if (!this.dongle.present) {
      throw new LicdError(
        'DONGLE_ABSENT',
        `the license dongle is absent (${this.dongle.reason ?? 'not answering'}); no new seats can be granted until it is plugged back in`,
        { dongle: this.dongle },
      );
    }
  }

  /** What a vendor release of the current quarantine must name (shown by status); null: none. */
  setQuarantineBinding(b: StatusResult['quarantineBinding'] | null): void {
    this.quarantineBinding = b ?? null;
  }

  shuttingDown(): void {
    this.stopping = true;
  }

  // ---- requests -----------------------------------------------------------------------------

  /** Handles one raw request payload; always returns an answer, never throws. */
  async handle(clientId: string, admin: boolean, payload: Uint8Array, login?: string): Promise<Answer> {
    let id: string | null = null;
    let op: string | null = null;
    try {
      const max = this.deps.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD;
      if (payload.length > max) {
        // Read the id (and op) from the start only, so the answer can still be matched.
        const head = new TextDecoder().decode(payload.subarray(0, 1024));
        id = /"id"\s*:\s*"([^"\\]{1,64})"/.exec(head)?.[1] ?? null;
        op = /"op"\s*:\s*"([^"\\]{1,64})"/.exec(head)?.[1] ?? null;
        throw new LicdError('PAYLOAD_TOO_LARGE', `request of ${payload.length} bytes is over the limit of ${max} bytes`, { size: payload.length, limit: max });
      }
      let json: unknown;
      try {
        json = JSON.parse(fromUtf8(payload));
      } catch {
        throw new LicdError('BAD_JSON', 'the request is not valid UTF-8 JSON; send an object like {"id":"1","op":"status"}');
      }
      if (typeof json === 'object' && json !== null && !Array.isArray(json)) {
        const rawId = (json as Record<string, unknown>).id;
        if (typeof rawId === 'string' && rawId.length > 0 && rawId.length <= 64) id = rawId;
        const rawOp = (json as Record<string, unknown>).op;
        if (typeof rawOp === 'string' && rawOp.length <= 64) op = rawOp;
      }
      // After the id is read, so that the client can match this answer to its request.
      if (!CLIENT_ID_PATTERN.test(clientId)) {
        throw new LicdError('BAD_CLIENT_ID', `client id ${JSON.stringify(clientId)} is not usable: it must be ${CLIENT_ID_HELP}`);
      }
      const f = Fields.of(json, '', 'BAD_REQUEST');
      f.string('id', { max: 64 });
      this.noteConn(clientId, f.optInt('conn', { min: 0, max: 2 ** 31 }));
      const opName = f.string('op', { max: 64 });
      const h = this.handlers.get(opName);
      if (!h) {
        const known = [...CLIENT_OPS, ...ADMIN_OPS].filter((o) => this.handlers.has(o));
        throw new LicdError('UNKNOWN_OP', `unknown operation ${JSON.stringify(opName)}; operations: ${known.join(', ')}`, { op: opName });
      }
      if (h.admin && !admin) {
        throw new LicdError('FORBIDDEN', `${opName} is an admin operation: send it on ${'licd/v1/admin/<client id>/req'} with an admin identity`, { op: opName });
      }
      if (login !== undefined && !CLIENT_ID_PATTERN.test(login)) {
        throw new LicdError('FORBIDDEN', `login ${JSON.stringify(login)} is not usable: it must be ${CLIENT_ID_HELP}; give the render node another MQTT user name`);
      }
      const identity = this.deps.requireLogin && !admin ? (login ?? null) : null;
      if (this.deps.requireLogin && !admin && identity === null && opName !== 'status') {
        throw new LicdError(
          'FORBIDDEN',
          `this license server takes the user from the MQTT login (identity.requireLogin): connect with the render node's user name and password (licctl --user/--password-file, SDK username/password with login: true), not anonymously`,
          { op: opName },
        );
      }
      if (this.stopping) throw new LicdError('SHUTTING_DOWN', 'the license server is shutting down; retry in a few seconds');
      const result = await h.run({ clientId, admin, now: this.deps.clock.now(), identity }, f);
      if (admin) this.note({ type: 'admin', at: this.deps.clock.now(), op: opName, client: clientId, ok: true, ...subjectOf(json) });
      return { id, ok: true, op: opName, result };
    } catch (e) {
      if (admin && op !== null) this.note({ type: 'admin', at: this.deps.clock.now(), op, client: clientId, ok: false, code: isLicdError(e) ? e.code : 'INTERNAL', ...subjectOf(undefined) });
      if (isLicdError(e)) {
        // STORE_FAILED: the cause is logged once when writes start failing, not per request.
        const level = e.code === 'NO_SEATS' || e.code === 'DONGLE_ABSENT' ? 'info' : e.code === 'STORE_FAILED' ? 'debug' : 'warn';
        this.deps.log[level](`request refused: ${e.message}`, { client: clientId, op, code: e.code });
        return { id, ok: false, op, error: e.toJSON() };
      }
      this.deps.log.error('request failed', { client: clientId, op, error: String((e as Error)?.stack ?? e) });
      return { id, ok: false, op, error: { code: 'INTERNAL', message: `internal error: ${(e as Error)?.message ?? String(e)}; the server keeps running, see its log` } };
    }
  }

  /**
   * An answer that refuses a request without handling it (BUSY: too many of the client's
   * requests in flight). Reads only the id and op from the start of the payload, so it is cheap.
   */
  refuse(clientId: string, payload: Uint8Array, code: ErrorCode, message: string): Answer {
    const head = new TextDecoder().decode(payload.subarray(0, 1024));
    const id = /"id"\s*:\s*"([^"\\]{1,64})"/.exec(head)?.[1] ?? null;
    const op = /"op"\s*:\s*"([^"\\]{1,64})"/.exec(head)?.[1] ?? null;
    return { id, ok: false, op, error: new LicdError(code, message, { client: clientId }).toJSON() };
  }

  /**
   * Makes a change durable; on a failed write, undoes it in memory and refuses the request.
   * With bindCounter, the change goes through the counter gate: the dongle's counter steps first
   * and its new value is written in the same batch (anti-rollback for borrows).
   */
  async commit<T>(change: Change<T>, touched: Iterable<string>, opts: CommitOptions = {}): Promise<T> {
    // A change with events but no records of its own (a queue change) still goes to the sinks, whose records it writes.
    if (change.mutations.length === 0 && (opts.events === undefined || opts.events.length === 0)) return change.result;
    // Counted from here (the change is already in memory) until it is written or undone: a
    // store recovering from a failed write snapshots memory only when nothing is in flight.
    this.inFlight++;
    try {
      return await this.commitNow(change, touched, opts);
    } finally {
      if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private inFlight = 0;
  private readonly idleWaiters: Array<() => void> = [];

  /**
   * Resolves when no change is between memory and disk (every commit written or undone, the
   * counter gate's queue included, since its changes wait inside commit). Check `busy` again
   * after awaiting it: another change may have started in between.
   */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  /** Changes applied in memory whose write has not finished. */
  get busy(): number {
    return this.inFlight;
  }

  /** The event sinks (src/core/events.ts), for parts outside the service that emit events. */
  get events(): EventBus | undefined {
    return this.deps.events;
  }

  /** Tells the sinks of an event that changed no stored state. */
  note(event: SeatEvent): void {
    this.deps.events?.note(event);
  }

  private async commitNow<T>(change: Change<T>, touched: Iterable<string>, opts: CommitOptions): Promise<T> {
    // The sinks' records (history, audit) go in the same batch as the change they describe.
    // (Nothing allocated for a change without events: a farm's heartbeats come by the thousand.)
    const sink = opts.events !== undefined && opts.events.length > 0 && this.deps.events ? { bus: this.deps.events, events: opts.events } : null;
    const extra = sink ? sink.bus.prepare(sink.events) : undefined;
    const mutations = extra !== undefined && extra.length > 0 ? [...change.mutations, ...extra] : change.mutations;
    // Changes to borrow records keep one write order with the counter-bound ones (which wait for
    // a dongle step): a return decided after a renewal must not reach the disk before it.
    // And while the gate holds anything, every change queues behind it: a checkout that takes the
    // seat a queued return freed must not reach the disk (and be answered) before that return.
    const touchesBorrows = change.mutations.some((m) => m.kind === 'borrow.put' || m.kind === 'borrow.del');
    const g = this.deps.counterGate;
    const gate = g && (opts.bindCounter || touchesBorrows || g.active) ? g : undefined;
    try {
      if (mutations.length === 0) {
        // Nothing to write (no sink keeps a record of these events).
      } else if (gate) await gate.commit(mutations, { step: opts.bindCounter === true });
      else await this.deps.store.commit(mutations, opts.lazy ? { lazy: true } : {});
    } catch (e) {
      change.undo();
      sink?.bus.settle(sink.events, false);
      // A store that names the cause (LevelStore: "no space left on <dir> ...") has logged it
      // once and put it in the server's warnings; its message goes to the client as it is.
      if (isLicdError(e) && e.code === 'STORE_FAILED') throw new LicdError('STORE_FAILED', `nothing was changed: ${e.message}`, e.details);
      // A refusal the gate decided itself (no dongle seen yet) keeps its code and words.
      if (isLicdError(e)) throw e;
      if (e instanceof CounterStepError) {
        this.deps.log.error('the dongle did not step its counter; change undone', { error: String(e) });
        throw new LicdError('DONGLE_ABSENT', `the dongle did not step its monotonic counter (${(e as Error).message}); nothing was granted. Check the dongle; licctl status shows its state`);
      }
      this.deps.log.error('store write failed; change undone', { error: String(e) });
      throw new LicdError('STORE_FAILED', 'the license database could not be written; nothing was changed. The server log says why (disk full or failing?)');
    }
    change.durable?.();
    sink?.bus.settle(sink.events, true);
    for (const f of touched) {
      this.dirty.add(f);
      // A seat may have come free: waiters get it before anyone new (docs/policy.md, "Queueing").
      if (this.waiters.size > 0 && this.waiters.waits(f)) this.kickQueue(f);
    }
    if (this.dirty.size > 0) this.deps.onDirty?.();
    return change.result;
  }

  private ttlFrom(f: Fields): number {
    const p = this.deps.policy;
    const ttl = f.optInt('ttl', { min: 1, max: 31_536_000 }) ?? p.ttlSeconds;
    // With the clock set back, leases are kept short: their end is only as good as the clock.
    if (this.deps.clockGuard && this.deps.clockGuard.setBackMs > 0) return p.minTtlSeconds * 1000;
    return Math.min(p.maxTtlSeconds, Math.max(p.minTtlSeconds, ttl)) * 1000;
  }

  /** Checks the clock against its high-water mark; warns while it is set back. */
  observeClock(now = this.deps.clock.now()): number {
    const g = this.deps.clockGuard;
    if (!g) return 0;
    const back = g.observe(now);
    if (back > 0) {
      this.setWarning(
        'clock',
        `the clock was set back by ${describeMs(back)} (it read ${new Date(g.highWater).toISOString()} before): new borrows are refused and leases kept short until it is right (or an admin runs licctl clock accept)`,
      );
    } else this.setWarning('clock', null);
    return back;
  }

  private async checkout(ctx: RequestContext, f: Fields): Promise<CheckoutResult | CheckoutQueued> {
    const feature = f.string('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    const version = f.optString('version', { max: 32, pattern: VERSION_PATTERN, patternHelp: 'a dotted version like 6.0' });
    const count = f.optInt('count', { min: 1, max: 1_000_000 }) ?? 1;
    // With identity.requireLogin the login is the user, whatever the request says.
    const said = f.string('user', { max: 64 });
    const user = ctx.identity ?? said;
    const host = f.string('host', { max: 128 });
    const pid = f.int('pid', { min: 0, max: 2 ** 31 });
    const holder = this.holder(f);
    const ttlMs = this.ttlFrom(f);
    const wait = f.optBool('wait') ?? false;
    const maxWaitMs = (f.optInt('maxWait', { min: 1, max: 7 * 86400 }) ?? 86400) * 1000;
    let status: 'granted' | 'extended';
    let lease: Lease;
    try {
      this.requireDongle();
      const req: CheckoutRequest = { clientId: ctx.clientId, holder, pid, user, host, feature, ...(version !== undefined ? { version } : {}), count, ttlMs };
      const waiting = this.waiters.get(waiterKey(req));
      // Asking again while waiting keeps the place (the SDK asks again now and then, and after a reconnect).
      // One whose grant is being written is no longer waiting: its request finds the lease below (extended).
      if (waiting && !waiting.granting && wait) return await this.enqueue(req, ctx.now, maxWaitMs);
      if (waiting && !waiting.granting) this.leaveQueue(waiting, 'cancelled', ctx.now);
      // Waiters first: a newcomer goes behind them, and gets a seat now only if none of them could.
      // A holder asking again for the seats it holds is no newcomer: a grant made while it waited
      // (its notice lost, or made before it reconnected after a restart) is answered `extended`.
      const own = this.table.ownLease(req);
      const newcomer = own === undefined || own.count < count;
      if (newcomer && this.waiters.waits(feature) && this.serveQueue(feature, ctx.now)) {
        if (wait) return await this.enqueue(req, ctx.now, maxWaitMs);
        throw this.queueAhead(feature, count, ctx.now);
      }
      let change: ReturnType<SeatTable['checkout']>;
      try {
        this.deps.failover?.admit(feature, count, ctx.now);
        change = this.table.checkout(req, ctx.now);
      } catch (e) {
        // No seat for this request now: it waits if it asked to (a rule that forbids it is said at once).
        if (wait && isLicdError(e) && (e.code === 'NO_SEATS' || e.code === 'POLICY_RESERVED' || e.code === 'QUARANTINE') && count <= (this.table.license(feature)?.seats ?? 0)) {
          return await this.enqueue(req, ctx.now, maxWaitMs, e);
        }
        // A failover box says why the primary's seats are not served now (FAILOVER_DORMANT).
        throw this.deps.failover ? this.deps.failover.explain(e, feature, count) : e;
      }
      const events: SeatEvent[] = change.result.status === 'granted' && !change.result.reclaimed ? [{ type: 'lease.granted', at: ctx.now, lease: change.result.lease }] : [];
      ({ status, lease } = await this.commit(change, [feature], { events }));
    } catch (e) {
      if (isLicdError(e)) this.note({ type: 'checkout.denied', at: ctx.now, feature, user, host, client: ctx.clientId, count, code: e.code, message: e.message });
      throw e;
    }
    this.deps.log.info(status === 'granted' ? 'lease granted' : 'lease extended', { feature, count, user, host, client: ctx.clientId, lease: lease.id });
    const result: CheckoutResult = { status, lease: leaseView(lease), heartbeat: Math.max(1, Math.floor(lease.ttlMs / 3000)) };
    if (this.deps.signGrant) result.grant = await this.deps.signGrant(lease);
    return result;
  }

  // ---- waiting for a seat (docs/policy.md, "Queueing") ---------------------------------------

  /**
   * Puts a checkout in its feature's queue (or refreshes its place) and says where it stands. A new
   * waiter's queue.joined event is written before it is answered; until then it holds the line
   * (nobody behind it is served), and a failed write takes it out again (STORE_FAILED).
   */
  private async enqueue(req: CheckoutRequest, now: number, maxWaitMs: number, why?: LicdError): Promise<CheckoutQueued> {
    const rule = queueRule(this.table.currentPolicy(), req.feature);
    const known = this.waiters.get(waiterKey(req));
    const deadlineWas = known?.deadline;
    if (!known && !rule.on) {
      throw new LicdError(
        why?.code ?? 'NO_SEATS',
        `${why?.message ?? this.queueAhead(req.feature, req.count, now).message} Waiting is off for ${req.feature} (QUEUE ${req.feature} off, policy line ${rule.line})`,
        { ...why?.details, queue: 'off', line: rule.line },
      );
    }
    if (!known && rule.max !== null && this.waiters.length(req.feature) >= rule.max) {
      throw new LicdError('NO_SEATS', `${req.feature}: no seat is free and the queue is full (${rule.max} waiting, QUEUE ${req.feature} on max ${rule.max}, policy line ${rule.line}); retry later`, {
        feature: req.feature,
        queue: 'full',
        line: rule.line,
      });
    }
    const w = this.waiters.add(req, priorityOf(this.table.currentPolicy(), req.user), now, now + maxWaitMs);
    if (!known) {
      this.deps.log.info('checkout waits for a seat', { feature: req.feature, user: req.user, host: req.host, client: req.clientId, position: this.waiters.position(w) });
      const joined: SeatEvent = { type: 'queue.joined', at: now, feature: req.feature, user: req.user, host: req.host, client: req.clientId, count: req.count, priority: w.priority, since: w.since };
      w.writing = true;
      try {
        // Its record (its place, kept across a restart) and its event in one batch, before it is answered.
        await this.commit({ result: null, mutations: [putWaiter(w)], undo: () => this.waiters.remove(w) }, [], { events: [joined] });
      } catch (e) {
        this.announce(req.feature, now);
        throw e;
      } finally {
        w.writing = false;
      }
      // Seats that came free meanwhile were kept for it (it held the line).
      this.kickQueue(req.feature);
    } else if (deadlineWas !== undefined && Math.abs(w.deadline - deadlineWas) > 60_000) {
      // A new maxWait: the stored waiter says so too (the SDK's own re-asks keep the deadline).
      this.commit({ result: null, mutations: [putWaiter(w)], undo: () => {} }, [], { lazy: true }).catch(() => {});
    }
    // Its arrival may move others (a higher priority goes ahead of them).
    this.announce(req.feature, now, w);
    w.told = this.waiters.position(w);
    this.dirty.add(req.feature);
    this.deps.onDirty?.();
    return { status: 'queued', queue: this.queueView(w, now) };
  }

  /** Its place in view; `at` (position and waiting) when the caller counted them already (announce: O(1) each). */
  private queueView(w: Waiter, now: number, at?: { position: number; waiting: number }): QueueView {
    const position = at?.position ?? this.waiters.position(w);
    const avg = this.holdAvg.get(w.req.feature);
    const seats = Math.max(1, this.table.license(w.req.feature)?.seats ?? 1);
    void now;
    return {
      feature: w.req.feature,
      pid: w.req.pid,
      position,
      waiting: at?.waiting ?? this.waiters.length(w.req.feature),
      estimate: avg === undefined ? null : Math.ceil((Math.ceil(position / seats) * avg) / 1000),
      until: iso(w.deadline),
    };
  }

  /** NO_SEATS for a newcomer behind waiters: the seats that come free go to them first. */
  private queueAhead(feature: string, wanted: number, now: number): LicdError {
    const n = this.waiters.length(feature);
    const base = this.table.noSeats(feature, wanted, now);
    const a = this.table.availability(feature, now);
    return new LicdError('NO_SEATS', `${feature}: ${a.free} of ${a.total} seats free, and ${n} checkout(s) wait for them ahead of this one; ${wanted} wanted. Wait in the queue (licctl run --wait, SDK wait: true), or retry later`, {
      ...base.details,
      waiting: n,
    });
  }

  private kickQueue(feature: string): void {
    if (this.serveSoon.size === 0) {
      queueMicrotask(() => {
        const now = this.deps.clock.now();
        const features = [...this.serveSoon];
        this.serveSoon.clear();
        for (const f of features) this.serveQueue(f, now);
      });
    }
    this.serveSoon.add(feature);
  }

  /** Serves every queue (a policy change, the ticker). */
  serveQueues(): void {
    const now = this.deps.clock.now();
    for (const f of this.waiters.features()) this.serveQueue(f, now);
  }

  /**
   * Gives free seats of a feature to its waiters in order: each grant is made in memory at once
   * (so nobody new takes the seat meanwhile) and written before its holder is told (queue.granted).
   * A waiter the free seats are reserved away from is passed over (someone behind may use them); a
   * waiter that needs more seats than are free stops the pass (first come, first served). Returns
   * whether a waiter is left that could not be served for want of seats.
   */
  private serveQueue(feature: string, now: number): boolean {
    if (!this.dongle.present || this.stopping || this.brokerDown) return this.waiters.waits(feature);
    let blocked = false;
    for (const w of [...this.waiters.of(feature)]) {
      if (w.granting) continue;
      // Not written yet (enqueue): it holds the line, and is served once it is.
      if (w.writing) {
        blocked = true;
        break;
      }
      let change: ReturnType<SeatTable['checkout']>;
      try {
        change = this.table.checkout({ ...w.req, waitedMs: Math.max(0, now - w.since) }, now);
      } catch (e) {
        if (isLicdError(e) && e.code === 'POLICY_RESERVED') continue;
        if (isLicdError(e) && (e.code === 'NO_SEATS' || e.code === 'QUARANTINE')) {
          blocked = true;
          break;
        }
        // Its checkout can no longer be granted as asked (a rule, a block, the license changed).
        const err = isLicdError(e) ? e : new LicdError('INTERNAL', String(e));
        this.leaveQueue(w, 'refused', now, err.code);
        this.deps.log.info('a waiting checkout left the queue: it can no longer be granted', { feature, client: w.req.clientId, code: err.code });
        this.notifyWaiter(w, err.code, `${err.message} (you left the queue of ${feature})`, err.details);
        continue;
      }
      w.granting = true;
      void this.grantWaiter(w, change, now);
    }
    this.announce(feature, now);
    return blocked;
  }

  private async grantWaiter(w: Waiter, change: ReturnType<SeatTable['checkout']>, now: number): Promise<void> {
    const events: SeatEvent[] = change.result.status === 'granted' && !change.result.reclaimed ? [{ type: 'lease.granted', at: now, lease: change.result.lease }] : [];
    events.push(this.queueLeft(w, 'granted', now, { lease: change.result.lease.id }));
    let granted: ReturnType<SeatTable['checkout']>['result'];
    try {
      // The lease and the end of its wait in one batch: after a crash it is either still waiting or granted.
      granted = await this.commit({ ...change, mutations: [...change.mutations, delWaiter(w)] }, [w.req.feature], { events });
    } catch {
      // Not written (undone in memory): it keeps its place and is served again.
      w.granting = false;
      this.announce(w.req.feature, this.deps.clock.now());
      return;
    }
    const { status, lease } = granted;
    this.waiters.remove(w);
    this.deps.log.info('lease granted to a waiting checkout', { feature: lease.feature, user: lease.user, host: lease.host, client: lease.clientId, lease: lease.id, waitedSeconds: Math.round((now - w.since) / 1000) });
    const result: CheckoutResult = { status, lease: leaseView(lease), heartbeat: Math.max(1, Math.floor(lease.ttlMs / 3000)) };
    try {
      if (this.deps.signGrant) result.grant = await this.deps.signGrant(lease);
      this.deps.notify?.(w.req.clientId, { id: null, ok: true, op: 'queue.granted', result });
    } catch (e) {
      // The seat is written but its grant could not be signed: the waiter is told, as a checkout
      // answered at once would be (the lease ends at its TTL unless its holder asks again).
      this.deps.log.error('signing the grant of a waiting checkout failed', { feature: lease.feature, client: lease.clientId, lease: lease.id, error: String((e as Error)?.stack ?? e) });
      const err = isLicdError(e) ? e : new LicdError('INTERNAL', `internal error: signing the grant failed: ${(e as Error)?.message ?? String(e)}; the server keeps running, see its log`);
      this.notifyWaiter(w, err.code, err.message, err.details);
    }
    this.announce(w.req.feature, this.deps.clock.now());
  }

  /** Tells each waiter of a feature whose place changed its new place (queue.position). */
  private announce(feature: string, now: number, except?: Waiter): void {
    let n = 0;
    const waiting = this.waiters.length(feature);
    for (const w of this.waiters.of(feature)) {
      if (w.granting) continue;
      n++;
      if (w === except || w.told === n) continue;
      // Near the head every move is told; further back only a move up by a tenth of the place or
      // more (or any move back), so a long queue sends a few notices per waiter, not one per grant
      // (5,000 waiters on 100 seats would otherwise be told some 12 million times).
      if (n > ANNOUNCE_EVERY_MOVE && w.told > 0 && n < w.told && n > w.told * 0.9) continue;
      w.told = n;
      this.deps.notify?.(w.req.clientId, { id: null, ok: true, op: 'queue.position', result: this.queueView(w, now, { position: n, waiting }) });
    }
    this.dirty.add(feature);
  }

  /** The queue.left event of a waiter. */
  private queueLeft(w: Waiter, reason: QueueLeftReason, now: number, o: { lease?: string; code?: ErrorCode } = {}): SeatEvent {
    const r = w.req;
    return { type: 'queue.left', at: now, feature: r.feature, user: r.user, host: r.host, client: r.clientId, count: r.count, since: w.since, waitedMs: Math.max(0, now - w.since), reason, ...o };
  }

  /**
   * A waiter leaves the queue without a seat; its queue.left event (and the sinks' records of it)
   * is written lazily: nobody is answered on it.
   */
  private leaveQueue(w: Waiter, reason: Exclude<QueueLeftReason, 'granted'>, now: number, code?: ErrorCode): void {
    this.waiters.remove(w);
    const events = [this.queueLeft(w, reason, now, code !== undefined ? { code } : {})];
    // Not written (a full disk): its record stays, and after a restart it comes back and leaves again as gone.
    this.commit({ result: null, mutations: [delWaiter(w)], undo: () => {} }, [], { events, lazy: true }).catch((e: unknown) => {
      this.deps.log.debug('the end of a wait was not recorded', { feature: w.req.feature, client: w.req.clientId, error: String(e) });
    });
  }

  private notifyWaiter(w: Waiter, code: ErrorCode, message: string, details?: Record<string, unknown>): void {
    this.deps.notify?.(w.req.clientId, { id: null, ok: false, op: 'queue.failed', error: { code, message, details: { ...details, feature: w.req.feature, pid: w.req.pid } } });
  }

  /** Waiters past their maxWait, or whose client is gone past the grace, leave the queue. */
  private tickQueue(now: number): void {
    for (const { w, why } of this.waiters.due(now, this.deps.policy.disconnectGraceSeconds * 1000)) {
      this.leaveQueue(w, why === 'deadline' ? 'timeout' : 'gone', now);
      if (why === 'deadline') {
        this.deps.log.info('a waiting checkout left the queue: its wait ended', { feature: w.req.feature, client: w.req.clientId });
        this.notifyWaiter(w, 'TIMEOUT', `${w.req.feature}: no seat came free within the wait asked for (until ${iso(w.deadline)}); you left the queue`);
      } else this.deps.log.info('a waiting checkout left the queue: its client is gone', { feature: w.req.feature, client: w.req.clientId });
      this.dirty.add(w.req.feature);
    }
    for (const f of this.waiters.features()) this.serveQueue(f, now);
  }

  /**
   * The waiters the run before kept in the store (docs/policy.md, "Durability"), put back in their
   * old order. Each must ask again (its SDK does, after reconnecting) within the window a broker
   * restart gives leases (the disconnect grace, at least RECONNECT_WINDOW_MS), or it leaves as
   * gone. Records that are not waiters, and second records of one checkout, are dropped.
   */
  async restoreQueue(records: ReadonlyArray<[string, unknown]>, now: number): Promise<{ restored: number; dropped: number }> {
    const windowMs = Math.max(this.deps.policy.disconnectGraceSeconds * 1000, RECONNECT_WINDOW_MS);
    // Taken for gone when the window ends (due() adds the grace to goneAt).
    const goneAt = now + windowMs - this.deps.policy.disconnectGraceSeconds * 1000;
    const drop: Mutation[] = [];
    const good: Array<ReturnType<typeof storedWaiter> & object> = [];
    for (const [key, v] of records) {
      const s = storedWaiter(v);
      if (s && waiterRecordKey(s.seq) === key) good.push(s);
      else drop.push({ kind: 'rec.del', space: 'queue', key });
    }
    good.sort((a, b) => a.seq - b.seq);
    for (const s of good) {
      const w = this.waiters.restore(s, goneAt);
      if (w === null) drop.push({ kind: 'rec.del', space: 'queue', key: waiterRecordKey(s.seq) });
      else {
        this.restoredWaiters.add(w);
        this.dirty.add(s.req.feature);
      }
    }
    if (drop.length > 0) await this.deps.store.commit(drop);
    if (good.length > 0) this.deps.log.info('waiting checkouts kept across the restart, in their old order', { waiting: this.waiters.size, windowSeconds: windowMs / 1000 });
    return { restored: this.waiters.size, dropped: drop.length };
  }

  /**
   * licd hears its clients from now on (its broker link is up): the window of the restored waiters
   * that have not asked again starts here, not at the restore (a slow start must not eat it).
   */
  queueWindowFrom(now: number): void {
    const graceMs = this.deps.policy.disconnectGraceSeconds * 1000;
    const windowMs = Math.max(graceMs, RECONNECT_WINDOW_MS);
    for (const w of this.restoredWaiters) if (w.goneAt !== null) w.goneAt = now + windowMs - graceMs;
    this.restoredWaiters.clear();
  }

  private readonly restoredWaiters = new Set<Waiter>();

  /** Leases idle past the policy's TIMEOUT end; their holders are told (lease.lost LEASE_IDLE, and heartbeat gone). */
  private async reapIdle(now: number): Promise<void> {
    const change = this.table.reapIdle(now);
    if (change.result.length === 0) return;
    try {
      await this.commit(change, change.result.map((l) => l.feature), { events: change.result.map((lease): SeatEvent => ({ type: 'lease.ended', at: now, lease, reason: 'idle' })) });
    } catch {
      return; // undone: the next tick tries again
    }
    for (const l of change.result) {
      const r = this.table.revokedLease(l.id, l.clientId, now);
      this.deps.log.info('lease ended: no activity for the policy TIMEOUT', { lease: l.id, feature: l.feature, user: l.user, host: l.host });
      this.deps.notify?.(l.clientId, { id: null, ok: false, op: 'lease.lost', error: { code: 'LEASE_IDLE', message: r?.message ?? `lease ${l.id} of ${l.feature} ended: idle`, details: { lease: l.id, feature: l.feature } } });
    }
  }

  /** A hold ended: the queue's estimate learns how long seats of the feature are held. */
  private noteHold(l: Lease, now: number): void {
    const d = Math.max(0, now - l.since);
    const avg = this.holdAvg.get(l.feature);
    this.holdAvg.set(l.feature, avg === undefined ? d : avg * 0.8 + d * 0.2);
  }

  private async heartbeat(ctx: RequestContext, f: Fields): Promise<HeartbeatResult> {
    const ids = optIdList(f, 'leases');
    const holder = this.holder(f);
    if (!this.dongle.present && this.dongleLostAt !== null && ctx.now - this.dongleLostAt > this.deps.policy.dongleGraceSeconds * 1000) {
      throw new LicdError(
        'DONGLE_ABSENT',
        `the license dongle is absent (${this.dongle.reason ?? 'not answering'}) since ${iso(this.dongleLostAt)} and its grace of ${this.deps.policy.dongleGraceSeconds} s has ended: leases are no longer renewed and end at their time to live; seats come back when the dongle is plugged in`,
        { dongle: this.dongle, since: iso(this.dongleLostAt) },
      );
    }
    const idle = f.optInt('idle', { min: 0, max: 10 * 366 * 86400 });
    const change = this.table.heartbeat(ctx.clientId, holder, ids, ctx.now, idle === undefined ? undefined : idle * 1000);
    const { renewed, unknown } = await this.commit(change, [], { lazy: true });
    const result: HeartbeatResult = { renewed: renewed.map((r) => ({ id: r.id, until: iso(r.expiresAt) })), unknown };
    for (const id of unknown) {
      const r = this.table.revokedLease(id, ctx.clientId, ctx.now);
      if (r) (result.gone ??= {})[id] = r.code ? { code: r.code, message: r.message ?? `lease ${id} of ${r.feature} ended: ${r.code}` } : { code: 'REVOKED', message: revokedMessage(r.feature, id, r.blockedUntil) };
    }
    return result;
  }

  private async checkin(ctx: RequestContext, f: Fields): Promise<CheckinResult> {
    const ids = optIdList(f, 'leases');
    const feature = f.optString('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    const pid = f.optInt('pid', { min: 0, max: 2 ** 31 });
    const holder = this.holder(f);
    const change = this.table.checkin(ctx.clientId, holder, { ids, feature, pid }, ctx.now);
    // A check-in by feature, pid or all also ends this holder's waiting there (how the SDK leaves a queue).
    let dequeued = 0;
    if (ids === undefined) {
      for (const w of this.waiters.ofClient(ctx.clientId)) {
        if (w.granting || w.req.holder !== holder || (feature !== undefined && w.req.feature !== feature) || (pid !== undefined && w.req.pid !== pid)) continue;
        this.leaveQueue(w, 'cancelled', ctx.now);
        this.announce(w.req.feature, ctx.now);
        dequeued++;
      }
    }
    // A lingering seat has not ended yet: it ends (reason lingered) when its linger does, unless taken back.
    const lingers = new Set(change.result.lingering.map((l) => l.id));
    const events = change.result.released.filter((l) => !lingers.has(l.id)).map((lease): SeatEvent => ({ type: 'lease.ended', at: ctx.now, lease, reason: 'checkin' }));
    const { released, unknown } = await this.commit(change, change.result.released.map((l) => l.feature), { events });
    for (const l of released) {
      this.noteHold(l, ctx.now);
      this.deps.log.info(lingers.has(l.id) ? 'lease checked in; its seat lingers for its user@host' : 'lease checked in', { feature: l.feature, user: l.user, host: l.host, lease: l.id });
    }
    return { released: released.map((l) => l.id), unknown, ...(dequeued > 0 ? { dequeued } : {}) };
  }

  private async revoke(ctx: RequestContext, f: Fields): Promise<RevokeResult> {
    const id = f.string('lease', { max: 64 });
    const block = f.optInt('block', { min: 1, max: 366 * 86400 });
    const change = this.table.revokeLease(id, { now: ctx.now, by: ctx.clientId, ...(block !== undefined ? { blockMs: block * 1000 } : {}) });
    const lease = await this.commit(change, [change.result.feature], { events: [{ type: 'lease.ended', at: ctx.now, lease: change.result, reason: 'revoked', by: ctx.clientId }] });
    const blockedUntil = block !== undefined ? ctx.now + block * 1000 : null;
    this.deps.log.warn('lease revoked by admin', { lease: id, admin: ctx.clientId, user: lease.user, host: lease.host, ...(blockedUntil !== null ? { blockedUntil: iso(blockedUntil) } : {}) });
    // Tell the holder at once, on its answer topic; its heartbeat would also learn it (gone).
    this.deps.notify?.(lease.clientId, {
      id: null,
      ok: false,
      op: 'lease.lost',
      error: {
        code: 'REVOKED',
        message: revokedMessage(lease.feature, id, blockedUntil),
        details: { lease: id, feature: lease.feature, ...(blockedUntil !== null ? { blockedUntil: iso(blockedUntil) } : {}) },
      },
    });
    return { revoked: leaseView(lease), ...(blockedUntil !== null ? { blockedUntil: iso(blockedUntil) } : {}) };
  }

  private async unblock(ctx: RequestContext, f: Fields): Promise<{ unblocked: { feature: string; user: string; host: string; until: string } }> {
    const feature = f.string('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    const user = f.string('user', { max: 64 });
    const host = f.string('host', { max: 128 });
    const b = await this.commit(this.table.unblock(feature, user, host, ctx.now), []);
    this.deps.log.warn('block lifted by admin', { feature, user, host, admin: ctx.clientId });
    return { unblocked: { feature, user, host, until: iso(b.until) } };
  }

  /**
   * The hash of the request's holder secret. The secret itself is never echoed, logged or stored:
   * a refusal names the field and the rule, not the value.
   */
  private holder(f: Fields): string {
    const v = f.raw('holder');
    if (typeof v !== 'string' || !HOLDER_PATTERN.test(v)) {
      f.fail('holder', `must be the client's holder secret: ${HOLDER_HELP} (${v === undefined ? 'missing' : 'not one'}); update the client SDK, which sends it with every checkout, heartbeat and check-in`);
    }
    return this.deps.holderHash(v);
  }

  /**
   * The client's connection died: the leases of the holder named in the will payload end after
   * the grace unless it comes back. A will without the right secret (a client id taken over, an
   * old SDK) reaches only legacy leases without a holder. `conn` in the will is the connection
   * number the SDK put there; a will of a connection older than one the client has since sent
   * requests on is stale (the broker published it late) and marks nothing.
   */
  async clientGone(clientId: string, willPayload?: Uint8Array): Promise<void> {
    if (!CLIENT_ID_PATTERN.test(clientId)) return;
    const will = this.parseWill(willPayload);
    const conn = will.conn;
    const newest = this.connEpochs.get(clientId);
    if (conn !== undefined && newest !== undefined && conn < newest) {
      this.deps.log.info('stale last will ignored: the client has reconnected since', { client: clientId, will: conn, current: newest });
      return;
    }
    const now = this.deps.clock.now();
    // A will that reaches us within the window after a broker restart (queued, or published
    // late by the stopping broker) does not cut the window short: the client may still be
    // reconnecting with backoff.
    const graceMs = Math.max(this.deps.policy.disconnectGraceSeconds * 1000, this.reconnectWindowUntil - now);
    // Its waiting checkouts leave the queue after the grace, unless it asks again before.
    for (const w of this.waiters.ofClient(clientId)) if (w.goneAt === null && (will.holder === undefined || w.req.holder === will.holder)) w.goneAt = now;
    const change = this.table.clientGone(clientId, will.holder, now, graceMs);
    if (change.result.length === 0) return;
    try {
      await this.commit(change, []);
      this.deps.log.info('client connection lost; its leases end after the grace unless it returns', {
        client: clientId,
        leases: change.result.map((l) => l.id),
        graceSeconds: this.deps.policy.disconnectGraceSeconds,
      });
    } catch (e) {
      this.deps.log.warn('could not record a lost client', { client: clientId, error: String(e) });
    }
  }

  /** Remembers the newest connection number a client sent (see clientGone). */
  private noteConn(clientId: string, conn: number | undefined): void {
    if (conn === undefined) return;
    const was = this.connEpochs.get(clientId);
    if (was !== undefined && was >= conn) return;
    this.connEpochs.delete(clientId);
    if (this.connEpochs.size >= MAX_CONN_EPOCHS) this.connEpochs.delete(this.connEpochs.keys().next().value!);
    this.connEpochs.set(clientId, conn);
  }

  /**
   * The daemon lost its broker: requests, heartbeats and wills cannot reach it, so no lease is
   * reclaimed until it is back (brokerBack). Borrows keep their own times.
   */
  brokerLost(): void {
    if (this.brokerDown) return;
    this.brokerDown = true;
    this.deps.log.warn('broker connection lost: no lease ends until it is back');
  }

  /**
   * The daemon has (re)subscribed after losing its broker: every lease, the ones marked
   * disconnected by the wills a stopping broker publishes among them, gets a fresh window
   * (the disconnect grace, at least RECONNECT_WINDOW_MS) in one committed change, so the clients
   * that reconnect renew theirs. Leases resume ending only after that change is durable.
   */
  async brokerBack(): Promise<void> {
    if (!this.brokerDown) return;
    const now = this.deps.clock.now();
    const windowMs = Math.max(this.deps.policy.disconnectGraceSeconds * 1000, RECONNECT_WINDOW_MS);
    const change = this.table.restartGrace(now, windowMs);
    this.reconnectWindowUntil = now + windowMs;
    try {
      await this.commit(change, []);
      this.deps.log.info('broker back: leases get a fresh window for their clients to reconnect', { leases: change.result.length, windowSeconds: windowMs / 1000 });
    } catch (e) {
      this.deps.log.warn('could not record the fresh window for leases after the broker came back', { error: String(e) });
    }
    this.brokerDown = false;
  }

  /** The holder (hashed) and connection number an SDK's last will names; neither when it is not one. */
  private parseWill(payload: Uint8Array | undefined): { holder: string | undefined; conn: number | undefined } {
    if (!payload || payload.length > 1024) return { holder: undefined, conn: undefined };
    try {
      const w = JSON.parse(new TextDecoder().decode(payload)) as { holder?: unknown; conn?: unknown } | null;
      const h = w?.holder;
      const c = w?.conn;
      return {
        holder: typeof h === 'string' && HOLDER_PATTERN.test(h) ? this.deps.holderHash(h) : undefined,
        conn: typeof c === 'number' && Number.isSafeInteger(c) && c >= 0 ? c : undefined,
      };
    } catch {
      return { holder: undefined, conn: undefined };
    }
  }

  /** Ends what has expired. Called on a short ticker by the daemon. */
  async reap(): Promise<{ leases: Lease[]; borrows: Borrow[] }> {
    if (this.brokerDown) return { leases: [], borrows: [] };
    const now = this.deps.clock.now();
    if (this.waiters.size > 0) this.tickQueue(now);
    if (this.table.currentPolicy().idle.size > 0) await this.reapIdle(now);
    const change = this.table.reap(now);
    if (change.mutations.length === 0) return change.result;
    const touched = [...change.result.leases.map((l) => l.feature), ...change.result.borrows.map((b) => b.feature)];
    const events: SeatEvent[] = [
      ...change.result.leases.map((lease): SeatEvent => ({ type: 'lease.ended', at: now, lease, reason: lease.lingering ? 'lingered' : lease.disconnectedAt !== null ? 'client-gone' : 'expired' })),
      ...change.result.borrows.map((borrow): SeatEvent => ({ type: 'borrow.ended', at: now, borrow, reason: 'expired' })),
    ];
    try {
      await this.commit(change, touched, { events });
    } catch (e) {
      // Undone in memory: the next tick tries again.
      return { leases: [], borrows: [] };
    }
    for (const l of change.result.leases) {
      this.noteHold(l, now);
      this.deps.log.info(l.disconnectedAt !== null ? 'lease reclaimed: client gone' : 'lease expired: no heartbeat', { lease: l.id, feature: l.feature, user: l.user, host: l.host });
    }
    for (const b of change.result.borrows) this.deps.log.info('borrow expired: seat back in the pool', { borrow: b.id, feature: b.feature, user: b.user });
    return change.result;
  }

  // ---- views --------------------------------------------------------------------------------

  serverState(state: 'online' | 'offline' = 'online'): ServerState {
    const e = this.deps.entitlement;
    return {
      state,
      version: this.deps.version,
      since: iso(this.startedAt),
      development: Boolean(e?.development || this.dongle.emulated),
      dongle: this.dongle,
      entitlement: e ? { id: e.id, customer: e.customer } : null,
      features: this.table.featureNames(),
      warnings: [...this.warnings.values()],
      ...(this.deps.tls ? { tls: this.deps.tls } : {}),
      alerts: this.alertSummaries,
      ...(this.failoverView ? { failover: this.failoverView } : {}),
    };
  }

  private failoverView: FailoverView | null = null;

  /** The failover state (docs/scale-out.md) shown in the server state and status; null: no failover entitlement. */
  setFailover(view: FailoverView | null): void {
    if (JSON.stringify(view) === JSON.stringify(this.failoverView)) return;
    this.failoverView = view;
    this.serverDirty = true;
    this.deps.onDirty?.();
  }

  /**
   * A failover box's licenses change (src/core/failover.ts): the primary's seats added when failover
   * starts, taken away when it ends. Leases over the count that remains end, newest first, and
   * their holders are told FAILOVER_ENDED (lease.lost now, heartbeat gone after), so a cluster
   * client moves them back to the primary. Not bound to the dongle's counter: no borrow changes.
   */
  async setFailoverLicenses(licenses: readonly FeatureLicense[], ending: { message: string }, event: SeatEvent | null, failover: { id: string; issuedAt: number }): Promise<Lease[]> {
    const now = this.deps.clock.now();
    const before = this.table.featureNames();
    const change = this.table.replaceLicenses(licenses, now, { code: 'FAILOVER_ENDED', message: ending.message });
    const events: SeatEvent[] = [
      ...change.result.ended.map(({ lease }): SeatEvent => ({ type: 'lease.ended', at: now, lease, reason: 'failover-ended' })),
      ...(event ? [event] : []),
      // The licensed counts changed: usage history, metrics and alerts take them again.
      { type: 'license.changed', at: now, serial: failover.id, issued: failover.issuedAt, features: licenses.map((x) => x.name), ended: change.result.ended.length, by: 'failover' },
    ];
    const r = await this.commit(change, [...before, ...this.table.featureNames()], { events });
    for (const name of before) if (!this.table.license(name)) this.removedFeatures.add(name);
    for (const { lease, message } of r.ended) {
      this.deps.log.warn('lease ended: failover ended', { lease: lease.id, feature: lease.feature, user: lease.user, host: lease.host });
      this.deps.notify?.(lease.clientId, { id: null, ok: false, op: 'lease.lost', error: { code: 'FAILOVER_ENDED', message: ending.message || message, details: { lease: lease.id, feature: lease.feature } } });
    }
    this.markAllDirty();
    return r.ended.map((x) => x.lease);
  }

  /**
   * Every feature (or one) with its leases and borrows. The lists are cut at `limit` entries each
   * (default 500) so an answer stays far below broker packet limits on a big farm; `more` says
   * how many were left out.
   */
  status(now: number, o: { feature?: string | undefined; limit?: number | undefined } = {}): StatusResult {
    const limit = o.limit ?? 500;
    const names = o.feature === undefined ? this.table.featureNames() : [this.table.availability(o.feature, now).feature];
    const features: FeatureStatus[] = names.map((name) => {
      const list = this.table.featureListing(name, limit);
      const fs: FeatureStatus = {
        ...this.table.availability(name, now),
        leases: list.leases.map(leaseView),
        borrows: list.borrows.map(borrowView),
      };
      if (list.leaseCount > limit || list.borrowCount > limit) {
        fs.more = { leases: Math.max(0, list.leaseCount - limit), borrows: Math.max(0, list.borrowCount - limit) };
      }
      const policy = policySummary(this.table.currentPolicy(), name, this.table.holdings(name));
      if (policy) fs.policy = policy;
      const waiting = this.waiters.of(name).filter((w) => !w.granting);
      if (waiting.length > 0) {
        fs.queue = waiting.slice(0, limit).map((w, i) => ({
          position: i + 1,
          user: w.req.user,
          host: w.req.host,
          clientId: w.req.clientId,
          pid: w.req.pid,
          count: w.req.count,
          priority: w.priority,
          since: iso(w.since),
          until: iso(w.deadline),
        }));
      }
      return fs;
    });
    const quarantine = this.table.holds(now).map((h) => ({ feature: h.feature, seats: h.seats, until: iso(h.until) }));
    const catalogue = this.deps.entitlement?.products ?? productsOfFeatures(this.table.featureNames().flatMap((n) => this.table.license(n) ?? []));
    return {
      server: this.serverState(),
      features,
      products: productViews(catalogue, (n) => this.table.license(n), o.feature),
      quarantine,
      ...(quarantine.length > 0 && this.quarantineBinding ? { quarantineBinding: this.quarantineBinding } : {}),
      ...blocksOf(this.table, now, o.feature),
    };
  }

  /** What changed since the last call: availability per feature and, if changed, the server state. */
  takeDirty(): { features: ReturnType<SeatTable['availability']>[]; server: ServerState | null } {
    const now = this.deps.clock.now();
    const features = [...this.dirty].filter((n) => this.table.license(n)).map((n) => this.table.availability(n, now));
    this.dirty.clear();
    const server = this.serverDirty ? this.serverState() : null;
    this.serverDirty = false;
    return { features, server };
  }

  /**
   * A new license, at runtime (docs/activation.md): the seat table takes its features (ending the
   * newest leases where seats are fewer, and those of features no longer licensed), and the change
   * is written with `extra` (the installed-license record) in one batch bound to the dongle's
   * counter. The holders of ended leases are told at once (lease.lost, LICENSE_REDUCED) and again
   * at their next heartbeat. Borrows stay until their tokens end.
   */
  async replaceEntitlement(entitlement: Entitlement, extra: Mutation[], by = ''): Promise<ReturnType<SeatTable['replaceLicenses']>['result']> {
    const now = this.deps.clock.now();
    const before = this.table.featureNames();
    const change = this.table.replaceLicenses(entitlement.features, now);
    const events: SeatEvent[] = [
      ...change.result.ended.map(({ lease }): SeatEvent => ({ type: 'lease.ended', at: now, lease, reason: 'license-reduced' })),
      { type: 'license.changed', at: now, serial: entitlement.id, issued: entitlement.issuedAt, features: entitlement.features.map((x) => x.name), ended: change.result.ended.length, by },
    ];
    const r = await this.commit({ ...change, mutations: [...change.mutations, ...extra] }, [...before, ...this.table.featureNames()], { bindCounter: true, events });
    this.deps.entitlement = entitlement;
    for (const name of before) if (!this.table.license(name)) this.removedFeatures.add(name);
    for (const { lease, message } of r.ended) {
      this.deps.log.warn('lease ended: the new license has fewer seats or lacks the feature', { lease: lease.id, feature: lease.feature, user: lease.user, host: lease.host });
      this.deps.notify?.(lease.clientId, { id: null, ok: false, op: 'lease.lost', error: { code: 'LICENSE_REDUCED', message, details: { lease: lease.id, feature: lease.feature } } });
    }
    this.markAllDirty();
    return r;
  }

  /** Features no longer licensed since the last call: their retained availability is cleared. */
  takeRemoved(): string[] {
    const out = [...this.removedFeatures];
    this.removedFeatures.clear();
    return out;
  }

  private readonly removedFeatures = new Set<string>();

  markAllDirty(): void {
    for (const f of this.table.featureNames()) this.dirty.add(f);
    this.serverDirty = true;
    this.deps.onDirty?.();
  }
}

export interface CommitOptions {
  /** Bind the change to the dongle's monotonic counter (anti-rollback). */
  bindCounter?: boolean;
  /** The change may wait a few milliseconds to share a sync (heartbeats). */
  lazy?: boolean;
  /** What the change means, for the event sinks; their records go in the same batch. */
  events?: SeatEvent[];
}

/** What an admin request acted on (its lease, borrow or feature field), for the admin event. */
function subjectOf(json: unknown): { subject?: string } {
  if (typeof json !== 'object' || json === null) return {};
  const o = json as Record<string, unknown>;
  for (const k of ['lease', 'borrow', 'feature']) {
    const v = o[k];
    if (typeof v === 'string' && v.length <= 64) return { subject: v };
  }
  return {};
}

function blocksOf(table: SeatTable, now: number, feature: string | undefined): { blocks?: NonNullable<StatusResult['blocks']> } {
  const list = table.blockList(now).filter((b) => feature === undefined || b.feature === feature);
  return list.length === 0 ? {} : { blocks: list.map((b) => ({ feature: b.feature, user: b.user, host: b.host, until: iso(b.until) })) };
}

function revokedMessage(feature: string, lease: string, blockedUntil: number | null): string {
  return (
    `an admin revoked lease ${lease} of ${feature}` +
    (blockedUntil !== null ? ` and blocked this user and host from ${feature} until ${iso(blockedUntil)}` : '') +
    '; the seat is not taken again on its own (check out again when the admin allows it)'
  );
}

/** A time as ISO 8601 text (Date#toISOString's, made cheaply: src/core/iso-time.ts). */
export const iso = isoTime;

export function leaseView(l: Lease): LeaseView {
  return {
    id: l.id,
    feature: l.feature,
    count: l.count,
    user: l.user,
    host: l.host,
    clientId: l.clientId,
    pid: l.pid,
    since: iso(l.since),
    until: iso(l.expiresAt),
    state: l.lingering ? 'lingering' : l.disconnectedAt === null ? 'active' : 'disconnected',
  };
}

export function borrowView(b: Borrow): BorrowView {
  return {
    id: b.id,
    feature: b.feature,
    count: b.count,
    user: b.user,
    hostId: b.hostId,
    hostName: b.hostName,
    since: iso(b.since),
    until: iso(b.expiresAt),
    state: b.lost ? 'lost' : 'active',
    autoRenew: b.autoRenew,
    via: b.via,
  };
}

function optIdList(f: Fields, field: string): string[] | undefined {
  const list = f.optArray(field, { max: 1000 });
  if (list === undefined) return undefined;
  return list.map((v, i) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > 64 || unsafeChar(v) !== null) f.fail(`${field}[${i}]`, 'must be a lease id string (plain text, at most 64 characters)');
    return v;
  });
}
