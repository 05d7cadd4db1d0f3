import type { MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import { MAX_ANSWER_BYTES, parseTopic, topics, type ServerState } from '../core/protocol.ts';
import type { LicenseService, Log } from '../core/service.ts';
import { connectMqtt, waitConnected } from './connect.ts';
import { DAEMON_CLIENT_PREFIX } from './embedded-broker.ts';

export interface ServerLinkOptions {
  url: string;
  username: string;
  password: string | null;
  protocolVersion: 4 | 5;
  service: LicenseService;
  log: Log;
  /** The trust chain to publish retained for offline verification. */
  chain?: () => { entitlement: unknown; delegation: unknown };
}

/**
 * The daemon's side of the MQTT API: subscribes to requests, admin requests and client wills,
 * answers each on the client's own answer topic, and keeps the retained server state and
 * availability current. Its last will marks the server offline.
 */
export class ServerLink {
  readonly client: MqttClient;
  private readonly service: LicenseService;
  private readonly log: Log;
  private flushScheduled = false;
  private closed = false;
  private readonly knownFeatures = new Set<string>();
  /** Requests in progress, so stop() can let them finish before going offline. */
  private inFlight = 0;

  constructor(private readonly opts: ServerLinkOptions) {
    this.service = opts.service;
    this.log = opts.log;
    const offline: ServerState = { ...this.service.serverState('offline'), warnings: ['the license server went away (its connection to the broker was lost)'] };
    this.client = connectMqtt(opts.url, {
      clientId: `${DAEMON_CLIENT_PREFIX}-${randomBytes(4).toString('hex')}`,
      username: opts.username,
      ...(opts.password !== null ? { password: opts.password } : {}),
      protocolVersion: opts.protocolVersion,
      clean: true,
      will: { topic: topics.serverState, payload: Buffer.from(JSON.stringify(offline)), qos: 1, retain: true },
    });
    this.client.on('connect', () => {
      this.log.info('connected to the MQTT broker', { url: opts.url });
      this.client.subscribe(
        {
          [topics.clientRequestWildcard]: { qos: 1 },
          [topics.adminRequestWildcard]: { qos: 1 },
          [topics.clientWillWildcard]: { qos: 1 },
          [topics.loginRequestWildcard]: { qos: 1 },
          [topics.loginWillWildcard]: { qos: 1 },
        },
        (err) => {
          if (err) this.log.error('could not subscribe to requests', { error: String(err) });
        },
      );
      this.service.markAllDirty();
      this.publishChain();
    });
    this.client.on('error', (e) => this.log.warn('MQTT connection error', { error: String(e) }));
    this.client.on('offline', () => {
      if (!this.closed) this.log.warn('lost the MQTT broker; reconnecting');
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  async ready(timeoutMs = 10_000): Promise<void> {
    await waitConnected(this.client, timeoutMs);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t) return;
    if (t.kind === 'will') {
      void this.service.clientGone(t.clientId, payload);
      return;
    }
    this.inFlight++;
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
          this.client.publish(t.login !== undefined ? topics.loginResponse(t.login, t.clientId) : topics.clientResponse(t.clientId), text, { qos: 1 });
        }
      })
      .finally(() => this.inFlight--);
  }

  /** Schedules one publish of everything that changed (coalesced within a tick). */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  flush(): void {
    // After close() has published "offline", a late flush must not publish "online" over it.
    if (this.closed || !this.client.connected) return;
    const { features, server } = this.service.takeDirty();
    if (server) this.client.publish(topics.serverState, JSON.stringify(server), { qos: 1, retain: true });
    const now = new Date(this.service.clock.now()).toISOString();
    for (const a of features) {
      this.knownFeatures.add(a.feature);
      this.client.publish(topics.feature(a.feature), JSON.stringify({ ...a, updated: now }), { qos: 1, retain: true });
    }
  }

  publishChain(): void {
    const chain = this.opts.chain?.();
    if (!chain || !chain.delegation || !this.client.connected) return;
    this.client.publish(topics.serverChain, JSON.stringify(chain), { qos: 1, retain: true });
  }

  /** Publishes the offline state (a clean stop sends no last will) and disconnects. */
  async close(): Promise<void> {
    const deadline = Date.now() + 2000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.closed = true;
    if (this.client.connected) {
      const offline = { ...this.service.serverState('offline'), warnings: ['the license server was stopped'] };
      await new Promise<void>((resolve) => this.client.publish(topics.serverState, JSON.stringify(offline), { qos: 1, retain: true }, () => resolve()));
    }
    await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
  }
}
