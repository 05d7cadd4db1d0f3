/**
 * A minimal licd client for load generation: the same topics, QoS, payload shapes and last will
 * as the SDK (src/sdk/client.ts), without its per-request timers and lease bookkeeping, so that
 * one generator process can drive thousands of connections. The bare echo limit uses this same
 * code, so client-side cost is identical in both measurements.
 */
import type { MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import { topics } from '../../src/core/protocol.ts';
import { connectMqtt, waitConnected } from '../../src/mqtt/connect.ts';
import { nowMs } from './proc.ts';

export interface WireAnswer {
  id: string | null;
  ok: boolean;
  op: string | null;
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

export interface Outcome {
  ok: boolean;
  /** The error code when refused, TIMEOUT or SEND_FAILED when no answer came. */
  code: string | null;
  answer: WireAnswer | null;
  /** Epoch ms (sub-ms) when the request was handed to mqtt.js and when its answer arrived. */
  sentAt: number;
  doneAt: number;
  /** Bytes of the answer payload. */
  bytes: number;
}

interface Pending {
  sentAt: number;
  resolve(o: Outcome): void;
}

export interface WireOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  keepalive?: number;
  /** QoS of requests and of the answer subscription: 1 as the SDK (default), 0 for reference. */
  qos?: 0 | 1;
}

export class WireClient {
  readonly mqtt: MqttClient;
  readonly clientId: string;
  private readonly resTopic: string;
  private readonly reqTopic: string;
  private seq = 0;
  private readonly qos: 0 | 1;
  /** The holder secret, as the SDK sends it with lease requests and in its will. */
  private readonly holder = randomBytes(16).toString('base64url');
  readonly pending = new Map<string, Pending>();
  /** Notices (answers with id null: queue.granted, queue.position, lease.lost), with their arrival time. */
  onNotice: ((a: WireAnswer, at: number) => void) | null = null;

  constructor(opts: WireOptions) {
    this.clientId = opts.clientId;
    this.qos = opts.qos ?? 1;
    this.resTopic = topics.clientResponse(opts.clientId);
    this.reqTopic = topics.clientRequest(opts.clientId);
    this.mqtt = connectMqtt(opts.url, {
      clientId: opts.clientId,
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      protocolVersion: 4,
      clean: true,
      keepalive: opts.keepalive ?? 60,
      // A bench client that loses its broker is a failed measurement, not something to hide.
      reconnectPeriod: 0,
      will: { topic: topics.clientWill(opts.clientId), payload: Buffer.from(JSON.stringify({ gone: true, holder: this.holder })), qos: 1, retain: false },
    });
    this.mqtt.on('message', (topic, payload) => {
      if (topic !== this.resTopic) return;
      const at = nowMs();
      let a: WireAnswer;
      try {
        a = JSON.parse(payload.toString('utf8')) as WireAnswer;
      } catch {
        return;
      }
      if (a.id === null) {
        this.onNotice?.(a, at);
        return;
      }
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id!);
      p.resolve({ ok: a.ok, code: a.ok ? null : (a.error?.code ?? 'INTERNAL'), answer: a, sentAt: p.sentAt, doneAt: at, bytes: payload.length });
    });
    this.mqtt.on('error', () => {
      /* reported through failed requests and connect() */
    });
  }

  async connect(timeoutMs: number): Promise<void> {
    await waitConnected(this.mqtt, timeoutMs);
    await new Promise<void>((resolve, reject) =>
      this.mqtt.subscribe(this.resTopic, { qos: this.qos }, (err, granted) => {
        if (err) return reject(err);
        if (granted?.some((g) => g.qos === 128)) return reject(new Error(`broker refused ${this.resTopic}`));
        resolve();
      }),
    );
  }

  /** Publishes one request (QoS 1 like the SDK, unless told otherwise); resolves with its outcome, never rejects. */
  request(op: string, params: Record<string, unknown>): Promise<Outcome> {
    const id = `${Date.now().toString(36)}-${(++this.seq).toString(36)}`;
    const payload = JSON.stringify(op === 'checkout' || op === 'heartbeat' || op === 'checkin' ? { ...params, holder: this.holder, id, op } : { ...params, id, op });
    return new Promise<Outcome>((resolve) => {
      const sentAt = nowMs();
      this.pending.set(id, { sentAt, resolve });
      this.mqtt.publish(this.reqTopic, payload, { qos: this.qos }, (err) => {
        if (err && this.pending.delete(id)) resolve({ ok: false, code: 'SEND_FAILED', answer: null, sentAt, doneAt: nowMs(), bytes: 0 });
      });
    });
  }

  /** Fails requests that waited longer than `timeoutMs` (one sweep for all, not a timer each). */
  expire(now: number, timeoutMs: number): number {
    let n = 0;
    for (const [id, p] of this.pending) {
      if (now - p.sentAt > timeoutMs) {
        this.pending.delete(id);
        p.resolve({ ok: false, code: 'TIMEOUT', answer: null, sentAt: p.sentAt, doneAt: now, bytes: 0 });
        n++;
      }
    }
    return n;
  }

  end(): Promise<void> {
    return new Promise<void>((resolve) => this.mqtt.end(false, {}, () => resolve()));
  }
}
