/**
 * The page's MQTT connection: over WebSocket to licd's /mqtt, through the broker's access rules
 * like any client. Requests and answers as in docs/protocol.md; retained topics arrive as they change.
 */
import mqtt from 'mqtt';

/**
 * The topics of the box that serves this page: licd/v1, or for a box of a cluster
 * licd/v1/s/<server> (docs/scale-out.md), whose id the box puts in a meta tag of the page.
 */
function boxPrefix(): string {
  const server = typeof document === 'undefined' ? null : document.querySelector('meta[name="licd-server"]')?.getAttribute('content');
  return server && /^[a-z0-9][a-z0-9-]*$/.test(server) ? `licd/v1/s/${server}` : 'licd/v1';
}

export const PREFIX = boxPrefix();

export interface Answer {
  id: string;
  ok: boolean;
  op: string;
  result?: any;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function randomId(): string {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
}

export class Link {
  readonly clientId = `web-${randomId()}`;
  private client: mqtt.MqttClient | null = null;
  private seq = 0;
  private readonly waiting = new Map<string, { resolve: (a: Answer) => void; timer: number }>();
  onMessage: (topic: string, payload: string) => void = () => {};
  onState: (s: 'connected' | 'reconnecting' | 'closed', why?: string) => void = () => {};

  /** Connects; rejects with the broker's reason if the login is refused. */
  connect(username: string | null, password: string | null): Promise<void> {
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(wsUrl(), {
        clientId: this.clientId,
        protocolVersion: 4,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        ...(username ? { username, password: password ?? '' } : {}),
      });
      this.client = c;
      let up = false;
      c.on('connect', () => {
        if (!up) {
          up = true;
          c.options.reconnectPeriod = 2000;
          c.subscribe([`${PREFIX}/server/state`, `${PREFIX}/feature/+`, `${PREFIX}/client/${this.clientId}/res`], { qos: 1 }, () => resolve());
          if (username) c.subscribe(`${PREFIX}/alerts`, { qos: 1 });
        }
        this.onState('connected');
      });
      c.on('reconnect', () => this.onState('reconnecting'));
      c.on('error', (e: Error & { code?: number }) => {
        if (up) return;
        c.end(true);
        const why = e.code === 5 || e.code === 4 ? (username ? 'the broker refused the sign-in: wrong user or password, or not over HTTPS' : 'signing in is required') : e.message;
        reject(new RequestError('LOGIN', why));
      });
      c.on('close', () => {
        if (!up) reject(new RequestError('LOGIN', 'the connection to licd closed: is the daemon running, and is the sign-in allowed here (HTTPS)?'));
        else this.onState(c.options.reconnectPeriod ? 'reconnecting' : 'closed');
      });
      c.on('message', (topic, payload) => {
        const text = new TextDecoder().decode(payload);
        if (topic === `${PREFIX}/client/${this.clientId}/res`) {
          let a: Answer;
          try {
            a = JSON.parse(text) as Answer;
          } catch {
            return;
          }
          const w = this.waiting.get(a.id);
          if (w) {
            this.waiting.delete(a.id);
            clearTimeout(w.timer);
            w.resolve(a);
          }
          return;
        }
        this.onMessage(topic, text);
      });
    });
  }

  /** One request; resolves with the result, rejects with the error's code and message. */
  request(op: string, fields: Record<string, unknown> = {}, admin = false): Promise<any> {
    const c = this.client;
    if (!c || !c.connected) return Promise.reject(new RequestError('OFFLINE', 'not connected to licd'));
    const id = `w${++this.seq}`;
    const topic = admin ? `${PREFIX}/admin/${this.clientId}/req` : `${PREFIX}/client/${this.clientId}/req`;
    return new Promise<Answer>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.waiting.delete(id);
        reject(new RequestError('TIMEOUT', `licd did not answer ${op} within 20 s`));
      }, 20_000);
      this.waiting.set(id, { resolve, timer });
      c.publish(topic, JSON.stringify({ id, op, ...fields }), { qos: 1 });
    }).then((a) => {
      if (!a.ok) throw new RequestError(a.error?.code ?? 'ERROR', a.error?.message ?? 'refused');
      return a.result;
    });
  }

  close(): void {
    this.client?.end(true);
    this.client = null;
  }
}
