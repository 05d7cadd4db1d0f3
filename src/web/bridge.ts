/**
 * MQTT over WebSocket at /mqtt on licd's HTTP server, for the web page (docs/web.md).
 *
 * With the embedded broker a WebSocket becomes a stream that aedes serves like any other
 * connection (no second hop); the broker is told where the connection came from (HTTPS or not,
 * the browser's address), since every bridged connection would otherwise look like a local one.
 * With an external broker (mosquitto) the bytes are relayed to its listener; the bridge reads the
 * CONNECT itself and refuses a login with a password over plain HTTP from another machine, and an
 * anonymous one unless web.anonymous is on.
 *
 * Limits: at most `maxConnections` bridged connections; a WebSocket message above `maxFrameBytes`
 * closes the connection (1009); a WebSocket from a page of another site (its Origin header names
 * another host) is refused, and so is any other path. On stop, every connection is closed with
 * 1001 (going away).
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Log } from '../core/service.ts';
import { MAX_QUEUED_BYTES_PER_CLIENT, type EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { openTls, type TlsTrust } from '../mqtt/tls.ts';

export const WEB_MQTT_PATH = '/mqtt';

export type BridgeTarget = { kind: 'embedded'; broker: EmbeddedBroker } | { kind: 'external'; host: string; port: number; tls?: { url: string; trust: TlsTrust } };

export interface BridgeOptions {
  target: BridgeTarget;
  /** The HTTP server speaks HTTPS. */
  secure: boolean;
  anonymous: boolean;
  maxConnections: number;
  maxFrameBytes: number;
  log: Log;
}

export class WebBridge {
  /**
   * The ws library and its server, loaded at the first WebSocket: a box whose page is never
   * opened does not carry it (about 2 MiB of an idle daemon, docs/performance.md).
   */
  private library: Promise<{ wss: WebSocketServer; createWebSocketStream: typeof import('ws').createWebSocketStream }> | null = null;
  private readonly live = new Set<WebSocket>();
  /** Upgrades waiting for the ws library: counted against web.maxConnections like open ones. */
  private opening = 0;

  constructor(private readonly o: BridgeOptions) {}

  private server(): NonNullable<WebBridge['library']> {
    this.library ??= import('ws').then(({ WebSocketServer, createWebSocketStream }) => ({
      createWebSocketStream,
      wss: new WebSocketServer({
        noServer: true,
        maxPayload: this.o.maxFrameBytes,
        perMessageDeflate: false,
        // mqtt.js asks for the "mqtt" subprotocol (MQTT-over-WebSocket requires it).
        handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
      }),
    }));
    return this.library;
  }

  get connections(): number {
    return this.live.size;
  }

  /** The HTTP server's upgrade hook. */
  readonly upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    const refuse = (status: string, why: string) => {
      const body = `${why}\n`;
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://licd').pathname;
    } catch {
      return refuse('400 Bad Request', 'bad request target');
    }
    if (path !== WEB_MQTT_PATH) return refuse('404 Not Found', `no WebSocket at ${path.slice(0, 200)}; the web page's MQTT is at ${WEB_MQTT_PATH}`);
    const origin = req.headers.origin;
    if (origin !== undefined && !sameHost(origin, req.headers.host)) {
      this.o.log.warn('web: refused a WebSocket opened by a page of another site', { origin: origin.slice(0, 200), remote: req.socket.remoteAddress });
      return refuse('403 Forbidden', 'a page of another site may not open licd\'s MQTT WebSocket');
    }
    if (this.live.size + this.opening >= this.o.maxConnections) {
      this.o.log.warn('web: refused a WebSocket: too many open', { limit: this.o.maxConnections });
      return refuse('503 Service Unavailable', `licd has ${this.o.maxConnections} web connections open (web.maxConnections); close a page and retry`);
    }
    this.opening++;
    void this.server().then(
      ({ wss, createWebSocketStream }) => {
        this.opening--;
        wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, req.socket.remoteAddress ?? '', createWebSocketStream));
      },
      (e: unknown) => {
        this.opening--;
        this.o.log.error('web: the WebSocket library could not be loaded', { error: String(e) });
        refuse('500 Internal Server Error', 'licd could not open the WebSocket; see its log');
      },
    );
  };

  private serve(ws: WebSocket, remote: string, createWebSocketStream: typeof import('ws').createWebSocketStream): void {
    this.live.add(ws);
    ws.on('close', () => this.live.delete(ws));
    ws.on('error', (e) => this.o.log.debug('web: WebSocket error', { error: e.message, remote }));
    const t = this.o.target;
    if (t.kind === 'embedded') {
      const stream = createWebSocketStream(ws, { writableHighWaterMark: MAX_QUEUED_BYTES_PER_CLIENT });
      stream.on('error', () => ws.terminate());
      t.broker.handleWeb(stream, { secure: this.o.secure, remote, anonymous: this.o.anonymous });
      return;
    }
    this.relay(ws, remote, t, createWebSocketStream);
  }

  /** External broker: the CONNECT is checked here, then bytes are relayed both ways. */
  private relay(ws: WebSocket, remote: string, t: Extract<BridgeTarget, { kind: 'external' }>, createWebSocketStream: typeof import('ws').createWebSocketStream): void {
    const { host, port } = t;
    const stream: Duplex = createWebSocketStream(ws);
    stream.on('error', () => ws.terminate());
    let head: Buffer | null = Buffer.alloc(0);
    let broker: Socket | null = null;
    const pending: Buffer[] = [];
    stream.on('data', (d: Buffer) => {
      if (head === null) {
        if (broker) broker.write(d);
        else pending.push(d);
        return;
      }
      // The CONNECT may come in several WebSocket messages: gather it whole first.
      head = Buffer.concat([head, d]);
      const c = readConnect(head);
      if (c === 'more' && head.length <= 64 * 1024) return;
      const first = head;
      head = null;
      const refusal = c === null || c === 'more' ? 'not an MQTT CONNECT' : c.username && !this.o.secure && !isLoopback(remote) ? 'sign in over HTTPS' : !c.username && !this.o.anonymous ? 'anonymous viewing is off' : null;
      if (refusal !== null) {
        this.o.log.warn('web: refused an MQTT login over the bridge', { reason: refusal, remote });
        if (c !== null && c !== 'more') ws.send(c.level === 5 ? Buffer.from([0x20, 3, 0, 0x87, 0]) : Buffer.from([0x20, 2, 0, 5]));
        ws.close(1008, refusal);
        return;
      }
      d = first;
      // To mosquitto's TLS listener (web.brokerUrl mqtts://), pinned like the daemon's own link.
      broker = t.tls ? openTls(t.tls.url, t.tls.trust) : connect({ host, port, noDelay: true });
      broker.on(t.tls ? 'secureConnect' : 'connect', () => {
        if (broker!.destroyed) return; // a certificate that is not the pinned one: nothing is sent
        broker!.write(d);
        for (const p of pending.splice(0)) broker!.write(p);
      });
      broker.pipe(stream);
      broker.on('error', (e) => {
        this.o.log.warn('web: the bridge cannot reach the broker', { broker: `${host}:${port}`, error: e.message });
        ws.close(1011, 'the broker is unreachable');
      });
      broker.on('close', () => ws.close(1000));
      ws.on('close', () => broker?.destroy());
    });
  }

  /** Closes every bridged connection (1001, going away). */
  async close(): Promise<void> {
    for (const ws of this.live) ws.close(1001, 'licd is stopping');
    const deadline = Date.now() + 1000;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const ws of this.live) ws.terminate();
    if (this.library) {
      const { wss } = await this.library;
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  }
}

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

export function isLoopback(a: string): boolean {
  return a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}

/**
 * The protocol level and whether a username is given, from the start of a stream that should open
 * with an MQTT CONNECT packet: 'more' while the packet is not whole yet, null if it is not one.
 */
export function readConnect(b: Buffer): { level: number; username: boolean } | 'more' | null {
  if (b.length === 0) return 'more';
  if (b[0] !== 0x10) return null;
  let i = 1;
  let remaining = 0;
  for (let mult = 1, n = 0; ; n++, mult *= 128) {
    if (n === 4) return null;
    if (i >= b.length) return 'more';
    const x = b[i++]!;
    remaining += (x & 0x7f) * mult;
    if ((x & 0x80) === 0) break;
  }
  if (b.length < i + remaining) return 'more';
  if (remaining < 10) return null;
  const nameLen = b.readUInt16BE(i);
  if (nameLen !== 4 && nameLen !== 6) return null;
  const at = i + 2 + nameLen;
  if (at + 2 > i + remaining) return null;
  return { level: b[at]!, username: (b[at + 1]! & 0x80) !== 0 };
}
