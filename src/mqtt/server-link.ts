import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MAX_ANSWER_BYTES, parseTopic, serverPrefix, TOPIC_PREFIX, topicsOf, type ServerState } from '../core/protocol.ts';
import type { LicenseService, Log } from '../core/service.ts';
import { LinkClient } from './link-client.ts';
import { DAEMON_BACKOFF, waitConnected } from './reconnect.ts';
import { DAEMON_CLIENT_PREFIX } from './embedded-broker.ts';
import type { TlsTrust } from './tls.ts';

/**
 * Per client id: at most this many requests are handled at once, counting each from its arrival
 * until the broker has taken its answer (PUBACK). Up to as many again are answered BUSY at once;
 * past that, requests are dropped (counted in a log line), so one client that floods or does not
 * read its answers cannot make the daemon queue work or answers for it without bound.
 */
export const MAX_REQUESTS_IN_FLIGHT = 64;
const MAX_BUSY_IN_FLIGHT = MAX_REQUESTS_IN_FLIGHT;

/**
 * Retained availability and server state are published at most once per this interval: the first
 * change at once, later ones at the interval's end, coalesced (docs/protocol.md).
 */
export const FLUSH_INTERVAL_MS = 100;

/** How often the per-client slots of clients with nothing in flight are dropped. */
const SLOT_SWEEP_MS = 10_000;

/**
 * The QoS licd subscribes to the render nodes' request topics (plain and logged-in) with, so the QoS the broker delivers
 * requests to licd at (docs/protocol.md, "QoS"). 0: licd's session is clean, so at a disconnect
 * the broker drops what it had not delivered whatever the QoS, and over the one live connection
 * (on the box, or the embedded broker in the process) TCP loses nothing. QoS 1 there bought
 * nothing but a PUBACK from licd per request, its own socket write: the largest single cost in
 * the profile of a checkout+checkin (docs/performance.md). The nodes still publish at QoS 1 to the
 * broker, licd answers at QoS 1 (heartbeats at HEARTBEAT_ANSWER_QOS, below), and last wills and
 * admin requests stay at QoS 1 (rare).
 */
export const REQUEST_QOS = 0;

/**
 * The QoS of heartbeat answers (every other answer goes at QoS 1). A heartbeat is the one request
 * whose answer a client can do without: the SDK repeats a heartbeat that got no answer (after a
 * reconnect, or when its answer timed out), and a renewal is idempotent. At QoS 0 the broker
 * sends licd no PUBACK for it, which licd would read, match and count: with 50,000 leases
 * heartbeating, most of the daemon's packets (docs/performance.md, issue 18). Over the one live
 * connection TCP loses nothing; what QoS 1 added was the link resending unacknowledged answers
 * after a reconnect, to clients whose clean sessions had mostly lost the subscription anyway.
 */
export const HEARTBEAT_ANSWER_QOS = 0;

export interface ServerLinkOptions {
  url: string;
  username: string;
  password: string | null;
  protocolVersion: 4 | 5;
  /** For an mqtts:// url: how to trust the broker (pinned fingerprint or CA). */
  tls?: TlsTrust;
  service: LicenseService;
  log: Log;
  /** The trust chain to publish retained for offline verification. */
  /** vendorPublicKey (hex): the key the server's entitlement verifies with, offered for clients to pin. */
  chain?: () => { entitlement: unknown; delegation: unknown; vendorPublicKey?: string; failover?: unknown };
  /** Told each request's time from arrival to its answer handed to the broker (metrics). */
  observe?: (op: string | null, seconds: number) => void;
  /** Retained availability and server state go out at most once per this many ms (FLUSH_INTERVAL_MS by default). */
  flushIntervalMs?: number;
  /** A box of a cluster: its server id, whose topics are under licd/v1/s/<server> (docs/scale-out.md). */
  server?: string | null;
}

/**
 * The daemon's side of the MQTT API: subscribes to requests, admin requests and client wills,
 * answers each on the client's own answer topic, and keeps the retained server state and
 * availability current. Its last will marks the server offline.
 */
export class ServerLink {
  readonly client: LinkClient;
  private readonly service: LicenseService;
  private readonly log: Log;
  private flushScheduled = false;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private lastFlushAt = -Infinity;
  private closed = false;
  private readonly knownFeatures = new Set<string>();
  /** Requests in progress, so stop() can let them finish before going offline. */
  private inFlight = 0;
  /**
   * Per client id: requests in progress plus answers the broker has not acknowledged yet. A slot
   * that empties is not deleted at once but by the next sweep (SLOT_SWEEP_MS): with thousands of
   * nodes heartbeating, deleting and adding one per request made the map's table shrink and grow
   * again with every group commit, garbage on every heartbeat.
   */
  private readonly perClient = new Map<string, { work: number; busy: number; dropped: number; loggedAt: number }>();
  private readonly sweepTimer = setInterval(() => this.sweepSlots(), SLOT_SWEEP_MS).unref();
  /** Whether the connection was lost since the last subscribe (then the service restarts lease windows). */
  private lost = false;

  /** This box's topics: licd/v1/..., or licd/v1/s/<server>/... in a cluster. */
  private readonly topics: ReturnType<typeof topicsOf>;
  private readonly prefix: string;

  constructor(private readonly opts: ServerLinkOptions) {
    this.topics = topicsOf(opts.server);
    this.prefix = opts.server ? serverPrefix(opts.server) : TOPIC_PREFIX;
    const topics = this.topics;
    this.service = opts.service;
    this.log = opts.log;
    const offline: ServerState = { ...this.service.serverState('offline'), warnings: ['the license server went away (its connection to the broker was lost)'] };
    // A box of a cluster may list its own broker first and the other boxes' after it: when its
    // broker dies it carries on through another (docs/scale-out.md).
    const urls = opts.url.split(',').map((u) => u.trim()).filter((u) => u !== '');
    this.client = new LinkClient({
      urls: urls.length > 0 ? urls : [opts.url],
      clientId: `${DAEMON_CLIENT_PREFIX}-${randomBytes(4).toString('hex')}`,
      username: opts.username,
      ...(opts.password !== null ? { password: opts.password } : {}),
      protocolVersion: opts.protocolVersion,
      will: { topic: topics.serverState, payload: Buffer.from(JSON.stringify(offline)), qos: 1, retain: true },
      ...(opts.tls ? { tls: opts.tls } : {}),
      backoff: DAEMON_BACKOFF,
    });
    this.client.on('connect', () => {
      this.log.info('connected to the MQTT broker', { url: opts.url });
      this.client.subscribe(
        {
          [topics.clientRequestWildcard]: { qos: REQUEST_QOS },
          [topics.adminRequestWildcard]: { qos: 1 },
          [topics.clientWillWildcard]: { qos: 1 },
          [topics.loginRequestWildcard]: { qos: REQUEST_QOS },
          [topics.loginWillWildcard]: { qos: 1 },
        },
        (err) => {
          if (err) {
            this.log.error('could not subscribe to requests', { error: String(err) });
            return;
          }
          this.onSubscribed?.();
          // Only now can the clients' heartbeats reach us: their leases get a fresh window.
          if (this.lost) {
            this.lost = false;
            void this.service.brokerBack();
          }
        },
      );
      this.service.markAllDirty();
      this.publishChain();
      if (this.lastAlerts !== null) this.retained(topics.alerts, this.lastAlerts);
    });
    this.client.on('error', (e) => this.log.warn('MQTT connection error', { error: String(e) }));
    this.client.on('offline', () => {
      if (!this.closed) this.log.warn('lost the MQTT broker; reconnecting');
    });
    this.client.on('close', () => {
      // Answers not acknowledged by now may never be: their slots are free again.
      this.perClient.clear();
      if (this.closed) return;
      this.lost = true;
      this.service.brokerLost();
    });
    this.client.on('message', (topic: string, payload: Buffer) => this.onMessage(topic, payload));
  }

  /** Set until the first subscription to the request topics is acknowledged. */
  private onSubscribed: (() => void) | null = null;
  private readonly subscribed = new Promise<void>((resolve) => {
    this.onSubscribed = () => {
      this.onSubscribed = null;
      resolve();
    };
  });

  /**
   * Connected and subscribed to the request topics (the broker acknowledged it): a request sent
   * from now on reaches licd. Before the acknowledgment, a broker drops a request it has no
   * subscriber for, and a client asking at once would wait for its timeout.
   */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await waitConnected(this.client, timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the broker did not acknowledge licd's subscription to the request topics within ${timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
    });
    try {
      await Promise.race([this.subscribed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic, this.prefix);
    if (!t) return;
    if (t.kind === 'will') {
      void this.service.clientGone(t.clientId, payload);
      return;
    }
    let slot = this.perClient.get(t.clientId);
    if (!slot) {
      slot = { work: 0, busy: 0, dropped: 0, loggedAt: 0 };
      this.perClient.set(t.clientId, slot);
    }
    const s = slot;
    // The slot stays in the map when it empties; sweepSlots drops idle ones now and then.
    const release = (kind: 'work' | 'busy') => {
      s[kind]--;
    };
    if (s.work >= MAX_REQUESTS_IN_FLIGHT) {
      if (s.busy >= MAX_BUSY_IN_FLIGHT) {
        s.dropped++;
        const now = Date.now();
        if (now - s.loggedAt > 10_000) {
          s.loggedAt = now;
          this.log.warn('client floods requests without taking its answers: dropped requests', { client: t.clientId, dropped: s.dropped, inFlight: s.work + s.busy });
        }
        return;
      }
      s.busy++;
      const answer = this.service.refuse(t.clientId, payload, 'BUSY', `more than ${MAX_REQUESTS_IN_FLIGHT} requests of this client are in progress; wait for their answers, then retry`);
      this.answer(t, JSON.stringify(answer), () => release('busy'));
      return;
    }
    s.work++;
    this.inFlight++;
    const arrived = this.opts.observe ? performance.now() : 0;
    void this.service
      .handle(t.clientId, t.kind === 'admin', payload, t.login)
      .then((answer) => {
        if (!this.closed || this.client.connected) {
          let text = JSON.stringify(answer);
          if (text.length > MAX_ANSWER_BYTES) {
            this.log.warn('answer too large for the broker; sent an error instead', { client: t.clientId, op: answer.op, bytes: text.length });
            text = JSON.stringify({
              id: answer.id,
              ok: false,
              op: answer.op,
              error: { code: 'PAYLOAD_TOO_LARGE', message: `the answer would be ${text.length} bytes, over the ${MAX_ANSWER_BYTES} bytes brokers pass; ask for less (status: "feature" and "limit")` },
            });
          }
          this.answer(t, text, () => release('work'), answer.op === 'heartbeat' ? HEARTBEAT_ANSWER_QOS : 1);
          if (this.opts.observe) this.opts.observe(answer.op, (performance.now() - arrived) / 1000);
        } else release('work');
      })
      .finally(() => this.inFlight--);
  }

  /** Drops the slots of clients with nothing in flight. */
  private sweepSlots(): void {
    for (const [id, s] of this.perClient) if (s.work === 0 && s.busy === 0) this.perClient.delete(id);
  }

  /**
   * Publishes an answer; `done` runs once the broker has it (PUBACK) or the publish failed, or, at
   * QoS 0, once it is handed to the link's socket.
   */
  private answer(t: { clientId: string; login?: string | undefined }, text: string, done: () => void, qos: 0 | 1 = 1): void {
    const topic = t.login !== undefined ? this.topics.loginResponse(t.login, t.clientId) : this.topics.clientResponse(t.clientId);
    this.client.publish(topic, text, { qos }, () => done());
  }

  /**
   * Schedules one publish of everything that changed: in the next event-loop turn, or, within
   * FLUSH_INTERVAL_MS of the last publish, at the end of that interval. Under load this is one
   * retained message per feature per interval instead of one per operation: the retained
   * messages were half of the daemon's socket writes (docs/performance.md, issue 18).
   */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const run = () => {
      this.flushScheduled = false;
      this.flushTimer = null;
      this.lastFlushAt = performance.now();
      this.flush();
    };
    const wait = this.lastFlushAt + (this.opts.flushIntervalMs ?? FLUSH_INTERVAL_MS) - performance.now();
    if (wait <= 0) setImmediate(run);
    else this.flushTimer = setTimeout(run, wait);
  }

  flush(): void {
    // After close() has published "offline", a late flush must not publish "online" over it.
    if (this.closed || !this.client.connected) return;
    const { features, server } = this.service.takeDirty();
    // A feature a new license no longer has: its retained availability is cleared (docs/activation.md).
    for (const name of this.service.takeRemoved()) {
      if (this.service.table.license(name)) continue;
      this.knownFeatures.delete(name);
      this.client.publish(this.topics.feature(name), '', { qos: 1, retain: true });
    }
    if (server) this.retained(this.topics.serverState, JSON.stringify(server));
    const now = new Date(this.service.clock.now()).toISOString();
    for (const a of features) {
      this.knownFeatures.add(a.feature);
      this.retained(this.topics.feature(a.feature), JSON.stringify({ ...a, updated: now }));
    }
  }

  /** Publishes a notice (an answer with id null) on one client's answer topic. */
  notify(clientId: string, notice: unknown): void {
    if (this.closed || !this.client.connected) return;
    this.client.publish(this.topics.clientResponse(clientId), JSON.stringify(notice), { qos: 1 });
  }

  private lastAlerts: string | null = null;

  /** Publishes the active alerts retained on licd/v1/alerts (admins only read it); again at each reconnect. */
  publishAlerts(result: unknown): void {
    this.lastAlerts = JSON.stringify(result);
    if (this.closed || !this.client.connected) return;
    this.retained(this.topics.alerts, this.lastAlerts);
  }

  /**
   * Publishes retained state, unless it is over what brokers pass: a broker drops the connection
   * of a client that sends a packet over its limit (mosquitto's max_packet_size), and licd would
   * lose its broker at every attempt. Such a message is logged and not sent; the old one stands.
   */
  private retained(topic: string, text: string): void {
    if (Buffer.byteLength(text) > MAX_ANSWER_BYTES) {
      this.log.error('a retained message is too large to publish; the previous one stands (a bug: please report it)', { topic, bytes: Buffer.byteLength(text), limit: MAX_ANSWER_BYTES });
      return;
    }
    this.client.publish(topic, text, { qos: 1, retain: true });
  }

  publishChain(): void {
    const chain = this.opts.chain?.();
    if (!chain || !chain.delegation || !this.client.connected) return;
    this.client.publish(this.topics.serverChain, JSON.stringify(chain), { qos: 1, retain: true });
  }

  /** Publishes the offline state (a clean stop sends no last will) and disconnects. */
  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    const deadline = Date.now() + 2000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (this.flushTimer) {
      // The last changes' availability, not left waiting for the interval.
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
      this.flushScheduled = false;
      this.flush();
    }
    this.closed = true;
    if (this.client.connected) {
      const offline = { ...this.service.serverState('offline'), warnings: ['the license server was stopped'] };
      await new Promise<void>((resolve) => this.client.publish(this.topics.serverState, JSON.stringify(offline), { qos: 1, retain: true }, () => resolve()));
    }
    await new Promise<void>((resolve) => this.client.end(resolve));
  }
}

/** The connection number an SDK will carries (`{"gone":true,"conn":N}`), if any. */
