import { EventEmitter } from 'node:events';
import { hostname, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { LicdError, isErrorCode, isLicdError } from '../core/errors.ts';
import {
  topicsOf,
  type Answer,
  type CheckinResult,
  type CheckoutQueued,
  type CheckoutResult,
  type QueueView,
  type HeartbeatResult,
  type LeaseView,
  type ServerState,
  type StatusResult,
} from '../core/protocol.ts';
import type { Availability } from '../core/model.ts';
import { backoffDelay, BrokerRotation, connectMqtt, waitConnected } from '../mqtt/connect.ts';
import type { TlsTrust } from '../mqtt/tls.ts';

export interface ClientOptions {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883. */
  url: string;
  /**
   * Several brokers of one licd namespace (bridged, docs/scale-out.md), tried in order: the
   * client moves to the next when one is unreachable or its connection drops. When given, `url`
   * names the list in messages (it is usually urls[0]).
   */
  urls?: readonly string[];
  /** The broker of `urls` to try first (the one used last). */
  prefer?: string | null;
  /**
   * A box of a cluster: talk to the server with this id, on its topics licd/v1/s/<server>/...
   * (docs/scale-out.md). Unset: a lone box's topics, licd/v1/... ClusterClient pools them.
   */
  server?: string | null;
  clientId?: string;
  username?: string;
  password?: string;
  /** Who and where, as shown in licctl status. Default: the OS user and host name. */
  user?: string;
  host?: string;
  protocolVersion?: 4 | 5;
  /** How long to wait for an answer, ms. */
  timeoutMs?: number;
  /** For mqtts:// URLs: trust the server by its pinned fingerprint or a CA (else the system CAs). */
  tls?: TlsTrust;
  /**
   * The holder secret that binds this client's leases to it (docs/protocol.md). Default: 128
   * random bits, new for every LicdClient. Give one only to hand leases on to a later LicdClient
   * with the same client id (and keep it as secret as a password).
   */
  holder?: string;
  /**
   * Send requests on the login's own topics (licd/v1/login/<username>/<client id>/...), so that
   * licd takes the user from the broker login; needed when the server has identity.requireLogin.
   * Needs username and password.
   */
  login?: boolean;
}

/** Requests that carry the holder secret. */
const LEASE_OPS = new Set(['checkout', 'heartbeat', 'checkin']);

/**
 * After a reconnect (or a heartbeat that went unanswered) the SDK repeats its heartbeat until
 * one is answered: each attempt waits up to 2 s, 4 s, 6 s... (at most the request timeout), and
 * the pause between attempts grows from 0.5-1.5 s to at most 6 s. The first heartbeat after a
 * broker restart often reaches the broker before licd has subscribed again and is lost.
 */
const RENEW_ATTEMPT_MS = 2000;
const RENEW_PAUSE = { firstMs: 1000, capMs: 4000 };

function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 20) || 'x';
}

export function defaultIdentity(): { user: string; host: string } {
  let user = process.env.LICD_USER ?? '';
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = 'unknown';
    }
  }
  return { user, host: process.env.LICD_HOST ?? hostname() };
}

/** How long close() waits for the broker to acknowledge what was sent before it ends the connection anyway. */
const CLOSE_DRAIN_MS = 2000;

/**
 * The client SDK for render nodes and admins: requests with ids and timeouts on the client's own
 * topics, leases that heartbeat by themselves, and the retained availability to watch.
 * Events: 'connect', 'offline', 'renewed' (a heartbeat got through after a reconnect or a lost
 * one), 'heartbeat-error', 'server', 'availability', 'mqtt-error'.
 */
export class LicdClient extends EventEmitter {
  readonly mqtt: MqttClient;
  readonly clientId: string;
  readonly user: string;
  readonly host: string;
  private readonly timeoutMs: number;
  /** Where this client's requests, answers and will go (its login's topics, or its client id's). */
  private readonly topicOf: { req: string; res: string; will: string };
  /** Sent with lease requests and in the last will only; licd never echoes it. */
  readonly #holder: string;
  private seq = 0;
  private readonly pending = new Map<string, { resolve(a: Answer): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private readonly leases = new Map<string, Lease>();
  /** Leases lost for a reason that may pass (dongle absent, expired): tried again each beat. */
  private readonly regaining = new Set<Lease>();
  /** Leases whose checkin is on its way (see checkin()). */
  private readonly releasing = new Set<Lease>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatSeconds = 20;
  private closed = false;
  /** This client's connection number: in its last will and its requests (a stale will is ignored). */
  private conn = 0;
  private renewing = false;
  /**
   * Whether the answer topics are subscribed on the current connection. A request made while the
   * broker is away waits for this (see request()).
   */
  private answerable = false;
  /** Requests made while the broker was away, sent once the answer topics are subscribed again. */
  private readonly unsent = new Set<() => void>();
  readonly availability = new Map<string, Availability>();
  server: ServerState | null = null;
  /** With a list of brokers: which is in use, and the errors seen on each. */
  private readonly rotation: BrokerRotation | null;
  private readonly url: string;
  /** The server's topics (a lone box's, or one box's of a cluster). */
  readonly topics: ReturnType<typeof topicsOf>;
  /** The server id of a box of a cluster, or null. */
  readonly serverId: string | null;

  private constructor(opts: ClientOptions) {
    super();
    const id = defaultIdentity();
    this.user = opts.user ?? id.user;
    this.host = opts.host ?? id.host;
    this.clientId = opts.clientId ?? `${safe(this.user)}-${safe(this.host)}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.#holder = opts.holder ?? randomBytes(16).toString('base64url');
    this.serverId = opts.server ?? null;
    const topics = (this.topics = topicsOf(this.serverId));
    if (opts.login && !opts.username) throw new LicdError('BAD_REQUEST', 'login: true needs a username (and its password): the login is the user licd records');
    this.topicOf = opts.login
      ? { req: topics.loginRequest(opts.username!, this.clientId), res: topics.loginResponse(opts.username!, this.clientId), will: topics.loginWill(opts.username!, this.clientId) }
      : { req: topics.clientRequest(this.clientId), res: topics.clientResponse(this.clientId), will: topics.clientWill(this.clientId) };
    this.url = opts.urls?.[0] ?? opts.url;
    const list = opts.urls && opts.urls.length > 1 ? opts.urls : null;
    this.rotation = list ? new BrokerRotation(list, opts.prefer) : null;
    this.mqtt = connectMqtt(list ?? opts.urls?.[0] ?? opts.url, {
      clientId: this.clientId,
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      protocolVersion: opts.protocolVersion ?? 4,
      clean: true,
      // The will names the holder, so that only our own lost connection ends our leases (the
      // embedded broker also takes it as proof that a reconnect with our client id is us), and
      // the connection's number, so that a will the broker publishes after we are back is known
      // as stale.
      will: { topic: this.topicOf.will, payload: willPayload(0, this.#holder), qos: 1, retain: false },
    }, opts.tls, undefined, this.rotation ?? undefined);
    // Every connection gets the next number, in its will too.
    this.mqtt.on('close', () => {
      this.answerable = false;
      this.conn++;
      if (this.mqtt.options.will) this.mqtt.options.will.payload = willPayload(this.conn, this.#holder);
    });
    this.mqtt.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.mqtt.on('connect', () => {
      this.mqtt.subscribe(this.answerTopics(), { qos: 1 });
      // The broker takes a connection's packets in order: a request sent from here on is answered
      // on a topic we are subscribed to again.
      this.answerable = true;
      for (const send of [...this.unsent]) send();
      // After a reconnect, renew at once, and again until answered: the daemon may have marked
      // our leases disconnected, and may not have subscribed again yet.
      if (this.leases.size > 0) void this.renewUntilAnswered();
      this.emit('connect');
    });
    this.mqtt.on('offline', () => this.emit('offline'));
    this.mqtt.on('error', (e) => this.emit('mqtt-error', e));
  }

  /** The broker this client uses now (with a list: the one it reached, or is trying). */
  get brokerUrl(): string {
    return this.rotation?.current ?? this.url;
  }

  /** Whether the broker connection is up now (it reconnects by itself when it drops). */
  get connected(): boolean {
    return this.mqtt.connected;
  }

  static async connect(opts: ClientOptions): Promise<LicdClient> {
    const c = new LicdClient(opts);
    const rot = c.rotation;
    const where = rot ? `any of the brokers ${rot.urls.join(', ')}` : `the license server's broker at ${opts.url}`;
    try {
      // With a list, an error on one broker moves to the next; only a whole round of errors fails.
      await waitConnected(c.mqtt, opts.timeoutMs ?? 10_000, rot ? () => rot.failures + 1 < rot.urls.length : undefined);
      await new Promise<void>((resolve, reject) =>
        c.mqtt.subscribe(c.answerTopics(), { qos: 1 }, (err, granted) => {
          if (err) return reject(err);
          if (granted?.some((g) => g.qos === 128)) return reject(new Error(`the broker refused our answer topic ${c.answerTopics().join(' or ')}`));
          resolve();
        }),
      );
    } catch (e) {
      c.mqtt.end(true);
      // TLS_MISMATCH / TLS_UNTRUSTED from the handshake say it all already.
      if (e instanceof LicdError) throw e;
      const m = (e as Error).message;
      if (/Bad username or password|Not authorized|not authorized/i.test(m)) {
        throw new LicdError('FORBIDDEN', `the broker at ${opts.url} refused ${opts.username ? `user ${JSON.stringify(opts.username)}` : 'an anonymous client'} (${m}); give the right identity with --user and --password-file (a development daemon keeps the admin password in data/admin.password)`);
      }
      const seen = rot && rot.errors.size > 0 ? ` (${[...rot.errors].map(([u, m]) => `${u}: ${m}`).join('; ')})` : '';
      throw new LicdError('TIMEOUT', `cannot reach ${where}: ${(e as Error).message}${seen}. Check the address (--broker, LICD_BROKER) and that licd is running`);
    }
    return c;
  }

  /** Answers to admin requests come on the client id's topic, others on topicOf.res. */
  private answerTopics(): string[] {
    const plain = this.topics.clientResponse(this.clientId);
    return this.topicOf.res === plain ? [plain] : [this.topicOf.res, plain];
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topicOf.res || topic === this.topics.clientResponse(this.clientId)) {
      let a: Answer;
      try {
        a = JSON.parse(payload.toString('utf8')) as Answer;
      } catch {
        return;
      }
      if (a.id === null) {
        this.onNotice(a);
        return;
      }
      const p = this.pending.get(a.id);
      if (p) {
        clearTimeout(p.timer);
        this.pending.delete(a.id!);
        p.resolve(a);
      }
      return;
    }
    if (topic === this.topics.serverState) {
      if (payload.length === 0) return;
      try {
        this.server = JSON.parse(payload.toString('utf8')) as ServerState;
        this.emit('server', this.server);
      } catch {
        /* not ours to judge */
      }
      return;
    }
    if (topic.startsWith(this.topics.feature(''))) {
      if (payload.length === 0) return;
      try {
        const a = JSON.parse(payload.toString('utf8')) as Availability;
        this.availability.set(a.feature, a);
        this.emit('availability', a);
      } catch {
        /* ignore */
      }
    }
  }

  /** An unsolicited message on our answer topic (id null): lease.lost says a lease was taken back. */
  private onNotice(a: Answer): void {
    if (a.op === 'queue.position' || a.op === 'queue.granted' || a.op === 'queue.failed') {
      this.onQueueNotice(a);
      return;
    }
    if (a.ok || a.op !== 'lease.lost') return;
    const leaseId = typeof a.error.details?.lease === 'string' ? a.error.details.lease : null;
    const lease = leaseId === null ? undefined : this.leases.get(leaseId);
    if (!lease) return;
    const code = isErrorCode(a.error.code) ? a.error.code : 'REVOKED';
    this.leases.delete(lease.id);
    lease.markLost(new LicdError(code, a.error.message, a.error.details), false);
  }

  /** A waiting checkout's place, its grant, or why it left the queue. */
  private onQueueNotice(a: Answer): void {
    if (a.ok && a.op === 'queue.position') {
      const q = a.result as QueueView;
      this.waiting.get(`${q.feature}\0${q.pid}`)?.queued(q);
    } else if (a.ok && a.op === 'queue.granted') {
      const r = a.result as CheckoutResult;
      this.waiting.get(`${r.lease?.feature}\0${r.lease?.pid}`)?.settle(r);
    } else if (!a.ok && a.op === 'queue.failed') {
      const d = a.error.details as { feature?: string; pid?: number } | undefined;
      const code = isErrorCode(a.error.code) ? a.error.code : 'INTERNAL';
      this.waiting.get(`${d?.feature}\0${d?.pid}`)?.settle(new LicdError(code, a.error.message, a.error.details));
    }
  }

  /** Subscribes to the retained server state and availability; events 'server' and 'availability'. */
  async watch(): Promise<void> {
    await this.mqtt.subscribeAsync({ [this.topics.serverState]: { qos: 1 }, [this.topics.featureWildcard]: { qos: 1 } });
  }

  /** Sends one request and waits for its answer; a refused request throws LicdError with its code. */
  async request<T>(op: string, params: Record<string, unknown> = {}, opt: { admin?: boolean; timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) throw new LicdError('SHUTTING_DOWN', 'this client is closed');
    const id = `${Date.now().toString(36)}-${(++this.seq).toString(36)}`;
    const topic = opt.admin ? this.topics.adminRequest(this.clientId) : this.topicOf.req;
    const timeoutMs = opt.timeoutMs ?? this.timeoutMs;
    const answer = await new Promise<Answer>((resolve, reject) => {
      const body = !opt.admin && LEASE_OPS.has(op) && params.holder === undefined ? { ...params, holder: this.#holder } : params;
      const send = () => {
        this.unsent.delete(send);
        this.mqtt.publish(topic, JSON.stringify({ ...body, id, op, conn: this.conn }), { qos: 1 }, (err) => {
          if (err) {
            clearTimeout(timer);
            this.pending.delete(id);
            reject(new LicdError('FORBIDDEN', `could not send ${op}: ${err.message}`));
          }
        });
      };
      const timer = setTimeout(() => {
        this.unsent.delete(send);
        this.pending.delete(id);
        reject(
          new LicdError('TIMEOUT', `no answer to ${op} within ${timeoutMs} ms: is licd running and connected to the broker?${opt.admin ? ' Admin requests also need an admin identity (--user/--password).' : ''}`),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      // While the broker is away, mqtt.js would keep the request and send it first thing after
      // reconnecting, before the answer topics are subscribed again (a clean session has none):
      // licd's answer then went nowhere and the request ended in TIMEOUT. So a request made then
      // waits until the subscription is back (within its timeout).
      if (this.answerable) send();
      else this.unsent.add(send);
    });
    if (answer.ok) return answer.result as T;
    const code = isErrorCode(answer.error.code) ? answer.error.code : 'INTERNAL';
    throw new LicdError(code, answer.error.message, answer.error.details);
  }

  status(): Promise<StatusResult> {
    return this.request<StatusResult>('status');
  }

  /**
   * Checks a seat out and keeps it alive with heartbeats until released. With `wait`, a checkout
   * that finds no seat waits in the feature's queue (docs/policy.md, "Queueing") until one is
   * granted, `maxWait` seconds pass (TIMEOUT), or the server says it cannot be (queue.failed);
   * `onQueue` hears its place. The SDK asks again every 30 s and after a reconnect, which keeps
   * its place, or queues it again after a restart of licd (the queue is not kept over a restart).
   */
  async checkout(feature: string, opt: { version?: string; count?: number; ttl?: number; pid?: number; wait?: boolean; maxWait?: number; onQueue?: (q: QueueView) => void } = {}): Promise<Lease> {
    const pid = opt.pid ?? process.pid;
    const params: Record<string, unknown> = { feature, user: this.user, host: this.host, pid };
    if (opt.version !== undefined) params.version = opt.version;
    if (opt.count !== undefined) params.count = opt.count;
    if (opt.ttl !== undefined) params.ttl = opt.ttl;
    if (opt.wait) return this.waitForSeat(feature, pid, params, opt.maxWait ?? 86400, opt.onQueue);
    const r = await this.request<CheckoutResult>('checkout', params);
    return this.adopt(r, params);
  }

  /** Waiting checkouts, by `${feature}\0${pid}` (queue notices name both). */
  private readonly waiting = new Map<string, { settle(r: CheckoutResult | LicdError): void; queued(q: QueueView): void; ask(): void }>();

  private waitForSeat(feature: string, pid: number, params: Record<string, unknown>, maxWait: number, onQueue?: (q: QueueView) => void): Promise<Lease> {
    const key = `${feature}\0${pid}`;
    if (this.waiting.has(key)) return Promise.reject(new LicdError('BAD_REQUEST', `this client already waits for ${feature} in process ${pid}`));
    return new Promise<Lease>((resolve, reject) => {
      let done = false;
      let asked = false;
      const deadline = Date.now() + maxWait * 1000;
      const finish = (r: CheckoutResult | LicdError) => {
        if (done) return;
        done = true;
        clearInterval(again);
        clearTimeout(timer);
        this.off('connect', onConnect);
        this.waiting.delete(key);
        if (r instanceof LicdError) reject(r);
        else resolve(this.adopt(r, params));
      };
      const ask = () => {
        if (done || this.closed) return;
        const left = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        this.request<CheckoutResult | CheckoutQueued>('checkout', { ...params, wait: true, maxWait: left }).then(
          (r) => {
            if (r.status === 'queued') w.queued(r.queue);
            else finish(r);
          },
          (e: unknown) => {
            // Unanswered (licd or its broker restarting): asked again soon. A refusal ends the wait,
            // unless it is the first answer of an earlier attempt that is still coming.
            if (isLicdError(e) && e.code === 'TIMEOUT' && asked) return;
            finish(isLicdError(e) ? e : new LicdError('INTERNAL', String(e)));
          },
        );
        asked = true;
      };
      const w = {
        settle: finish,
        queued: (q: QueueView) => {
          if (done) return;
          onQueue?.(q);
          this.emit('queued', q);
        },
        ask,
      };
      const onConnect = () => ask();
      const again = setInterval(ask, 30_000);
      again.unref?.();
      const timer = setTimeout(() => {
        // Leave the server's queue too (a check-in of this feature and pid ends waiting there).
        void this.request('checkin', { feature, pid }).catch(() => {});
        finish(new LicdError('TIMEOUT', `${feature}: no seat came free within ${maxWait} s of waiting; left the queue`));
      }, maxWait * 1000);
      this.waiting.set(key, w);
      this.on('connect', onConnect);
      ask();
    });
  }

  private adopt(r: CheckoutResult, params: Record<string, unknown>): Lease {
    let lease = this.leases.get(r.lease.id);
    if (lease) lease.update(r);
    else {
      lease = new Lease(this, r, params);
      this.leases.set(r.lease.id, lease);
    }
    this.heartbeatSeconds = Math.min(this.heartbeatSeconds, r.heartbeat);
    this.scheduleHeartbeat();
    return lease;
  }

  async checkin(sel: { leases?: string[]; feature?: string; pid?: number } = {}): Promise<CheckinResult> {
    // Until the answer, a heartbeat may hear "unknown" for these (the daemon answers it before the
    // checkin's write is synced): that is the checkin, not an expiry, so they are not taken again.
    const going = [...this.leases.values()].filter((l) => (!sel.leases || sel.leases.includes(l.id)) && (!sel.feature || l.params.feature === sel.feature) && (sel.pid === undefined || l.params.pid === sel.pid));
    for (const l of going) this.releasing.add(l);
    try {
      const r = await this.request<CheckinResult>('checkin', sel);
      for (const id of [...r.released, ...r.unknown]) this.leases.delete(id);
      if (!sel.leases && !sel.feature && sel.pid === undefined) this.leases.clear();
      return r;
    } finally {
      for (const l of going) this.releasing.delete(l);
    }
  }

  /** @internal */
  forget(id: string): void {
    const l = this.leases.get(id);
    this.leases.delete(id);
    for (const x of this.regaining) if (x.id === id || x === l) this.regaining.delete(x);
  }

  /** When the application last called activity() (ms), or null: it never did, and no idle time is reported. */
  private lastActivity: number | null = null;

  /**
   * The application is in use (a key press, a render frame): heartbeats from now on carry the
   * seconds since the last call, and a lease idle longer than the policy's TIMEOUT for its feature
   * ends (LEASE_IDLE, docs/policy.md). An application that never calls it is never judged idle.
   */
  activity(): void {
    this.lastActivity = Date.now();
  }

  heldLeases(): Lease[] {
    return [...this.leases.values()];
  }

  private scheduleHeartbeat(): void {
    if (this.heartbeatTimer || this.closed) return;
    this.heartbeatTimer = setInterval(() => void this.heartbeatNow(), this.heartbeatSeconds * 1000);
    this.heartbeatTimer.unref?.();
  }

  /**
   * Renews every lease this client holds. A lease the server no longer knows is checked out again,
   * unless the server says it was revoked (then it is lost for good: an admin's revoke sticks).
   * When the server refuses renewals (the dongle's grace ended), every lease is reported lost with
   * the server's reason and tried again at each beat until it is back.
   */
  async heartbeatNow(): Promise<void> {
    if ((this.leases.size === 0 && this.regaining.size === 0) || this.closed) return;
    try {
      await this.renew();
    } catch (e) {
      this.emit('heartbeat-error', e);
      // Unanswered: licd or its broker link may be just coming back. Keep asking.
      if (e instanceof LicdError && e.code === 'TIMEOUT') void this.renewUntilAnswered();
    }
  }

  /**
   * Repeats the heartbeat while connected until one is answered (see RENEW_ATTEMPT_MS). Emits
   * 'renewed' when it got through.
   */
  private async renewUntilAnswered(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      for (let attempt = 0; !this.closed && this.leases.size > 0; attempt++) {
        if (this.mqtt.connected) {
          try {
            await this.renew(Math.min(this.timeoutMs, RENEW_ATTEMPT_MS * (attempt + 1)));
            this.emit('renewed');
            return;
          } catch (e) {
            this.emit('heartbeat-error', e);
            if (!(e instanceof LicdError && e.code === 'TIMEOUT')) return;
          }
        } else if (attempt > 0) return; // the next connect starts it again
        await new Promise((r) => setTimeout(r, backoffDelay(RENEW_PAUSE, attempt)).unref?.());
      }
    } finally {
      this.renewing = false;
    }
  }

  /**
   * One heartbeat for every held lease, then one more try for every lost one. Throws when the
   * heartbeat gets no answer (or a refusal other than the dongle's end of grace).
   */
  private async renew(timeoutMs?: number): Promise<void> {
    if (this.leases.size > 0) {
      try {
        // Seconds since the application last said it was active (activity()): the policy's idle TIMEOUT.
        const idle = this.lastActivity === null ? {} : { idle: Math.max(0, Math.floor((Date.now() - this.lastActivity) / 1000)) };
        const r = await this.request<HeartbeatResult>('heartbeat', { leases: [...this.leases.keys()], ...idle }, timeoutMs === undefined ? {} : { timeoutMs });
        for (const x of r.renewed) this.leases.get(x.id)?.renewed(x.until);
        for (const id of r.unknown) {
          const lease = this.leases.get(id);
          if (!lease) continue;
          this.leases.delete(id);
          if (this.releasing.has(lease)) continue; // checked in meanwhile
          const gone = r.gone?.[id];
          if (gone) {
            lease.markLost(new LicdError(isErrorCode(gone.code) ? gone.code : 'REVOKED', gone.message, { lease: id }), false);
            continue;
          }
          await this.tryRegain(lease, true);
        }
      } catch (e) {
        if (!(isLicdError(e) && e.code === 'DONGLE_ABSENT')) throw e;
        // The server refused to renew (the dongle is gone past its grace): the seats are not ours.
        for (const lease of [...this.leases.values()]) {
          this.leases.delete(lease.id);
          this.regaining.add(lease);
          lease.markLost(e, true);
        }
      }
    }
    for (const lease of [...this.regaining]) {
      if (this.closed) return;
      await this.tryRegain(lease, false);
    }
  }

  /** Checks a lost lease out again with its first parameters; says whether it is back. */
  private async tryRegain(lease: Lease, firstTry: boolean): Promise<boolean> {
    try {
      const again = await this.request<CheckoutResult>('checkout', lease.params);
      this.regaining.delete(lease);
      lease.update(again);
      this.leases.set(again.lease.id, lease);
      lease.regainedNow();
      return true;
    } catch (e) {
      const err = isLicdError(e) ? e : new LicdError('INTERNAL', (e as Error).message);
      // An admin's block is final; so is a feature the license no longer has.
      const final = err.code === 'BLOCKED' || err.code === 'REVOKED' || err.code === 'UNKNOWN_FEATURE' || err.code === 'FEATURE_EXPIRED' || err.code === 'VERSION_NOT_LICENSED';
      if (final) {
        this.regaining.delete(lease);
        lease.markLost(err, false);
      } else if (firstTry || lease.state !== 'lost') {
        this.regaining.add(lease);
        lease.markLost(err, true);
      } else lease.emit('retry-failed', err);
      return false;
    }
  }

  async close(opt: { checkin?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (opt.checkin !== false && this.leases.size > 0) {
      try {
        await this.checkin({ leases: [...this.leases.keys()] });
      } catch {
        /* the lease ends by TTL or will */
      }
    }
    this.closed = true;
    this.regaining.clear();
    for (const w of [...this.waiting.values()]) w.settle(new LicdError('SHUTTING_DOWN', 'client closed while waiting for a seat'));
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LicdError('SHUTTING_DOWN', 'client closed'));
    }
    this.pending.clear();
    // mqtt.js's clean end waits for every unacknowledged publish; with the broker gone it would
    // wait forever (it stops reconnecting first). Wait for them a moment while connected, then
    // end: cleanly if they came, else at once.
    const m = this.mqtt;
    const unacked = () => Object.keys((m as unknown as { outgoing?: Record<string, unknown> }).outgoing ?? {}).length;
    if (m.connected && unacked() > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, CLOSE_DRAIN_MS);
        m.once('outgoingEmpty', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await new Promise<void>((resolve) => m.end(!m.connected || unacked() > 0, {}, () => resolve()));
  }

  /** Drops the connection without a clean disconnect, as a crash would (tests). */
  kill(): void {
    this.closed = true;
    for (const w of [...this.waiting.values()]) w.settle(new LicdError('SHUTTING_DOWN', 'client killed while waiting for a seat'));
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    (this.mqtt.stream as unknown as { destroy(): void }).destroy();
    this.mqtt.end(true);
  }
}

/**
 * A held seat. Events:
 * - 'lost' (error: LicdError, info: {retrying: boolean}): the seat is no longer ours. error.code
 *   says why: REVOKED or BLOCKED (an admin; retrying false: the SDK does not take it again),
 *   LICENSE_REDUCED (a new license has fewer seats or lacks the feature; retrying false too),
 *   DONGLE_ABSENT (the server's dongle grace ended), NO_SEATS or QUARANTINE (it expired and could
 *   not be taken again), TIMEOUT. With retrying true the SDK checks it out again at every heartbeat.
 * - 'regained' (view): it is held again (possibly under a new lease id).
 * - 'retry-failed' (error): one more attempt to regain it failed.
 */
export class Lease extends EventEmitter {
  view: LeaseView;
  grant: CheckoutResult['grant'];
  status: CheckoutResult['status'];
  /** held; lost (being tried again); revoked (lost for good: an admin's revoke or block, or a license change). */
  state: 'held' | 'lost' | 'revoked' = 'held';
  /** Why it was lost, while it is. */
  lossReason: LicdError | null = null;

  constructor(
    private readonly client: LicdClient,
    r: CheckoutResult,
    readonly params: Record<string, unknown>,
  ) {
    super();
    this.view = r.lease;
    this.grant = r.grant;
    this.status = r.status;
  }

  get id(): string {
    return this.view.id;
  }

  update(r: CheckoutResult): void {
    this.view = r.lease;
    this.grant = r.grant;
    this.status = r.status;
  }

  renewed(until: string): void {
    this.view = { ...this.view, until, state: 'active' };
  }

  /** @internal */
  markLost(e: LicdError, retrying: boolean): void {
    const was = this.state;
    this.state = retrying ? 'lost' : 'revoked';
    this.lossReason = e;
    if (was !== this.state) this.emit('lost', e, { retrying });
  }

  /** @internal */
  regainedNow(): void {
    this.state = 'held';
    this.lossReason = null;
    this.emit('regained', this.view);
  }

  async release(): Promise<void> {
    await this.client.checkin({ leases: [this.id] });
  }
}

function willPayload(conn: number, holder: string): Buffer {
  return Buffer.from(JSON.stringify({ gone: true, conn, holder }));
}
