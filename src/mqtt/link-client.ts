import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { backoffDelay, BrokerRotation, NEXT_BROKER, type Backoff } from './reconnect.ts';
import { openTls, type TlsTrust } from './tls.ts';

/**
 * The daemon's own MQTT connection: a small MQTT 3.1.1 and 5 client that does what licd's link
 * needs and nothing else (docs/performance.md, "The daemon's own MQTT client").
 *
 * Why not mqtt.js, which the SDK, licctl and the tests use: loading it costs an idle daemon about
 * 15 MiB (a quarter of it), and it handles each packet through streams, a packet object, a
 * message store and one socket write per packet. Here a packet is encoded into one Buffer, all
 * that one turn of the event loop sends goes out in one socket write, and a received packet is
 * read in place.
 *
 * What it does, as mqtt.js did for the link:
 * - CONNECT with a client id, user name, password, a clean session, a last will and a keep-alive
 *   of 60 s (a PINGREQ when nothing else was sent; the connection is dropped when a PINGRESP
 *   does not come);
 * - publish at QoS 0 or 1, retained or not; the callback runs at the PUBACK (QoS 1) or once the
 *   packet is written (QoS 0). QoS 1 messages not yet acknowledged when the connection drops
 *   are sent again with DUP set after the next CONNACK; publishes made while disconnected go out
 *   then too, for the first time;
 * - subscribe at QoS 0 or 1 (a refusal in the SUBACK is an error to the callback); no
 *   automatic resubscription: the link subscribes in its 'connect' handler;
 * - received PUBLISH at QoS 0 and 1 (PUBACK after the 'message' listeners ran); QoS 2 is
 *   acknowledged as the protocol asks, though licd never subscribes at QoS 2;
 * - reconnects after a jittered, growing delay, through a list of brokers (reconnect.ts);
 * - mqtts:// through openTls: the CONNECT (and its password) is written only after the
 *   handshake's certificate was accepted.
 * Events: 'connect' (each CONNACK accepted), 'close' (each connection or attempt ended),
 * 'offline' (once per outage), 'error' (a refused CONNACK, TLS, protocol errors; not a refused
 * or reset TCP connection, which is retried quietly), 'message' (topic, payload).
 */

export interface LinkClientOptions {
  /** mqtt:// or mqtts:// URLs; more than one: the brokers of a list, tried in turn. */
  urls: readonly string[];
  clientId: string;
  username?: string;
  password?: string;
  protocolVersion: 4 | 5;
  will?: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean };
  /** For mqtts:// URLs: how to trust the broker (pinned fingerprint or CA). */
  tls?: TlsTrust;
  backoff: Backoff;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
  /** A received packet larger than this drops the connection (an error is emitted). */
  maxPacketBytes?: number;
}

export type PublishCallback = (err?: Error) => void;
export type SubscribeCallback = (err: Error | null, granted?: number[]) => void;

export interface LinkClient {
  on(event: 'connect' | 'close' | 'offline', listener: () => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
  on(event: 'message', listener: (topic: string, payload: Buffer) => void): this;
  off(event: 'connect' | 'close' | 'offline', listener: () => void): this;
  off(event: 'error', listener: (e: Error) => void): this;
  off(event: 'message', listener: (topic: string, payload: Buffer) => void): this;
}

/** An error a broker gave in a CONNACK, a SUBACK or a PUBACK; `code` is its return or reason code. */
export class MqttRefusal extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = 'MqttRefusal';
  }
}

/**
 * A QoS 1 publish waiting for its PUBACK; `packet` is its encoded PUBLISH. `written`: it went out
 * on some connection, so sending it again after a reconnect sets DUP (one made while
 * disconnected goes out the first time without it).
 */
interface InFlight {
  id: number;
  packet: Buffer;
  cb: PublishCallback | undefined;
  written: boolean;
}

/** Socket errors that only mean "retry": not emitted (as mqtt.js does not). */
const QUIET_SOCKET_ERRORS = new Set(['ECONNREFUSED', 'EADDRINUSE', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

const CONNACK_V4 = ['', 'Unacceptable protocol version', 'Identifier rejected', 'Server unavailable', 'Bad username or password', 'Not authorized'];
const REASONS_V5: Record<number, string> = {
  0x80: 'Unspecified error',
  0x81: 'Malformed Packet',
  0x82: 'Protocol Error',
  0x83: 'Implementation specific error',
  0x84: 'Unsupported Protocol Version',
  0x85: 'Client Identifier not valid',
  0x86: 'Bad User Name or Password',
  0x87: 'Not authorized',
  0x88: 'Server unavailable',
  0x89: 'Server busy',
  0x8a: 'Banned',
  0x8c: 'Bad authentication method',
  0x8f: 'Topic Filter invalid',
  0x90: 'Topic Name invalid',
  0x91: 'Packet Identifier in use',
  0x95: 'Packet too large',
  0x97: 'Quota exceeded',
  0x99: 'Payload format invalid',
  0x9a: 'Retain not supported',
  0x9b: 'QoS not supported',
  0x9c: 'Use another server',
  0x9d: 'Server moved',
  0x9e: 'Shared Subscriptions not supported',
  0x9f: 'Connection rate exceeded',
  0xa1: 'Subscription Identifiers not supported',
  0xa2: 'Wildcard Subscriptions not supported',
};

const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);
const MAX_PACKET_ID = 0xffff;
/**
 * Packets handled in one pass before the event loop may turn. libuv reads up to 32 chunks of
 * 64 KiB from a socket in one turn, so a burst of thousands of requests arriving together was
 * handled in one pass of seconds: no write completed, no answer went out, no timer ran until all
 * were parsed and dispatched. Between passes the socket is paused (what the kernel holds waits
 * there, in order) and the rest of the chunk is handled on the next turn.
 */
const PASS_PACKETS = 256;

export class LinkClient extends EventEmitter {
  private readonly opts: LinkClientOptions;
  private readonly rotation: BrokerRotation;
  private socket: Socket | null = null;
  private _connected = false;
  /** end() was called: no more reconnects. */
  private disconnecting = false;
  private reconnecting = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private sentSinceTick = false;
  private pingOutstanding = 0;
  /** Received bytes not yet handled: a partial packet, or the rest of a chunk after a full pass. */
  private pending: Buffer | null = null;
  /** The next pass over `pending`, when the last one stopped at PASS_PACKETS (the socket is paused meanwhile). */
  private nextPass: NodeJS.Immediate | null = null;
  private corked = false;
  private nextId = 0;
  /**
   * QoS 1 publishes waiting for their PUBACK, oldest first (the order they are sent again in
   * after a reconnect), and a bit per packet id in use among them. Not a Map, for the reason
   * AuditChain's unsettled batches are not one: a Map whose entries come and go keeps them from
   * dying young (docs/performance.md, "Maps that come and go"). A broker acknowledges in order,
   * so a PUBACK finds its entry first.
   */
  private readonly inFlight: InFlight[] = [];
  private readonly idsInFlight = new Uint32Array((MAX_PACKET_ID + 1) >>> 5);
  /** QoS 1 publishes waiting for a free packet id (65,535 in flight). */
  private readonly waitingForId: { topic: string; payload: string | Buffer; retain: boolean; cb: PublishCallback | undefined }[] = [];
  /** QoS 0 publishes made while disconnected, sent after the next CONNACK. */
  private readonly offlineQueue: { packet: Buffer; cb: PublishCallback | undefined }[] = [];
  private readonly subscriptions = new Map<number, SubscribeCallback | undefined>();
  private readonly ended: (() => void)[] = [];

  constructor(opts: LinkClientOptions) {
    super();
    if (opts.urls.length === 0) throw new Error('LinkClient needs at least one broker URL');
    this.opts = opts;
    this.rotation = new BrokerRotation(opts.urls);
    this.open();
  }

  get connected(): boolean {
    return this._connected;
  }

  /** The current connection's socket (tests break it to simulate a network fault). */
  get stream(): Socket | null {
    return this.socket;
  }

  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }, cb?: PublishCallback): void {
    if (this.disconnecting) {
      if (cb) process.nextTick(cb, new Error('the MQTT link is closing'));
      return;
    }
    if (opts.qos === 0) {
      const packet = encodePublish(topic, payload, 0, opts.retain === true, 0, this.opts.protocolVersion);
      if (!this._connected) {
        this.offlineQueue.push({ packet, cb });
        return;
      }
      this.write(packet);
      if (cb) process.nextTick(cb);
      return;
    }
    const id = this.allocateId();
    if (id === 0) {
      this.waitingForId.push({ topic, payload, retain: opts.retain === true, cb });
      return;
    }
    this.track(id, encodePublish(topic, payload, 1, opts.retain === true, id, this.opts.protocolVersion), cb);
  }

  subscribe(topics: Record<string, { qos: 0 | 1 }>, cb?: SubscribeCallback): void {
    if (!this._connected) {
      if (cb) process.nextTick(cb, new Error('not connected to the MQTT broker'));
      return;
    }
    const id = this.allocateId();
    if (id === 0) {
      if (cb) process.nextTick(cb, new Error('no free MQTT packet id'));
      return;
    }
    this.subscriptions.set(id, cb);
    this.write(encodeSubscribe(id, topics, this.opts.protocolVersion));
  }

  /** Keeps a QoS 1 publish until its PUBACK, and writes it now if connected. */
  private track(id: number, packet: Buffer, cb: PublishCallback | undefined): void {
    this.inFlight.push({ id, packet, cb, written: this._connected });
    this.markId(id, true);
    if (this._connected) this.write(packet);
  }

  /**
   * Disconnects and stops reconnecting: waits (at most 2 s) for the PUBACKs of what was
   * published, then sends DISCONNECT. `cb` runs once the socket is closed.
   */
  end(cb?: () => void): void {
    if (cb) this.ended.push(cb);
    if (this.disconnecting) {
      if (!this.socket) this.finishEnd();
      return;
    }
    this.disconnecting = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const sock = this.socket;
    if (!sock) {
      this.finishEnd();
      return;
    }
    if (!this._connected) {
      sock.destroy();
      return;
    }
    const deadline = Date.now() + 2000;
    const finish = () => {
      if (this.socket !== sock) return;
      if (this.inFlight.length > 0 && Date.now() < deadline && !sock.destroyed) {
        setTimeout(finish, 10);
        return;
      }
      this.uncork();
      sock.end(DISCONNECT);
      // A broker that does not close its side is not waited for.
      setTimeout(() => sock.destroy(), 1000).unref();
    };
    finish();
  }

  private finishEnd(): void {
    const fail = new Error('the MQTT link was closed');
    for (const f of this.inFlight.splice(0)) f.cb?.(fail);
    this.idsInFlight.fill(0);
    for (const w of this.waitingForId.splice(0)) w.cb?.(fail);
    for (const q of this.offlineQueue.splice(0)) q.cb?.(fail);
    for (const cb of this.ended.splice(0)) cb();
  }

  private allocateId(): number {
    if (this.inFlight.length + this.subscriptions.size >= MAX_PACKET_ID) return 0;
    for (;;) {
      const c = (this.nextId % MAX_PACKET_ID) + 1;
      this.nextId = c;
      if (!this.idInFlight(c) && !this.subscriptions.has(c)) return c;
    }
  }

  // ---- the connection ----

  private open(): void {
    const url = this.rotation.current;
    let sock: Socket;
    const tls = url.startsWith('mqtts:');
    try {
      if (tls) sock = openTls(url, this.opts.tls ?? {});
      else {
        const u = new URL(url);
        sock = createConnection({ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port ? Number(u.port) : 1883, noDelay: true });
      }
    } catch (e) {
      // A malformed URL: nothing to retry.
      process.nextTick(() => this.emit('error', e instanceof Error ? e : new Error(String(e))));
      return;
    }
    this.socket = sock;
    this.pending = null;
    this.pingOutstanding = 0;
    this.connectTimer = setTimeout(() => {
      if (this.socket === sock && !this._connected) sock.destroy();
    }, this.opts.connectTimeoutMs ?? 5000);
    sock.once(tls ? 'secureConnect' : 'connect', () => {
      if (this.socket !== sock || sock.destroyed) return;
      sock.write(encodeConnect(this.opts));
    });
    sock.on('data', (chunk: Buffer) => {
      if (this.socket === sock) this.onData(chunk);
    });
    sock.on('error', (e: Error & { code?: string }) => {
      if (this.socket !== sock) return;
      this.rotation.errors.set(url, e.code ?? e.message);
      if (!QUIET_SOCKET_ERRORS.has(e.code ?? '')) this.emit('error', e);
    });
    sock.on('close', () => {
      if (this.socket === sock) this.onClose();
    });
  }

  private onClose(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.connectTimer = null;
    this.pingTimer = null;
    this.socket = null;
    this.pending = null;
    if (this.nextPass) clearImmediate(this.nextPass);
    this.nextPass = null;
    this.corked = false;
    this._connected = false;
    // SUBACKs that will not come: the subscriber hears of it (it subscribes again at the next connect).
    const subs = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const cb of subs) cb?.(new Error('the connection to the MQTT broker was lost before the SUBACK'));
    this.rotation.failures++;
    this.rotation.next();
    this.emit('close');
    if (this.disconnecting) {
      this.finishEnd();
      return;
    }
    if (!this.reconnecting) {
      this.reconnecting = true;
      this.emit('offline');
    }
    const untriedLeft = this.rotation.failures % this.rotation.urls.length !== 0;
    const delay = untriedLeft ? backoffDelay(NEXT_BROKER, 0) : backoffDelay(this.opts.backoff, this.attempt++);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.disconnecting) this.open();
    }, delay);
  }

  private onConnected(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this._connected = true;
    this.reconnecting = false;
    this.attempt = 0;
    this.rotation.failures = 0;
    const keepaliveMs = (this.opts.keepaliveSeconds ?? 60) * 1000;
    if (keepaliveMs > 0) {
      this.sentSinceTick = true;
      this.pingTimer = setInterval(() => this.keepalive(), keepaliveMs / 2);
      this.pingTimer.unref();
    }
    // What waited for the connection goes out first, in order: unacknowledged QoS 1 (DUP), then QoS 0.
    for (const f of this.inFlight) {
      this.write(f.written ? withDup(f.packet) : f.packet);
      f.written = true;
    }
    for (const q of this.offlineQueue.splice(0)) {
      this.write(q.packet);
      if (q.cb) process.nextTick(q.cb);
    }
    this.emit('connect');
  }

  /** Every half keep-alive: a PINGREQ if nothing was sent in the last one; no PINGRESP in a whole keep-alive drops the connection. */
  private keepalive(): void {
    const sock = this.socket;
    if (!sock || !this._connected) return;
    if (this.pingOutstanding > 0) {
      if (++this.pingOutstanding > 2) {
        this.emit('error', new Error(`the MQTT broker at ${this.rotation.current} did not answer a PINGREQ within the keep-alive of ${this.opts.keepaliveSeconds ?? 60} s`));
        sock.destroy();
        return;
      }
    } else if (!this.sentSinceTick) {
      this.pingOutstanding = 1;
      this.write(PINGREQ);
    }
    this.sentSinceTick = false;
  }

  /** Writes a packet; all written in one event-loop turn go out in one socket write. */
  private write(packet: Buffer): void {
    const sock = this.socket;
    if (!sock) return;
    this.sentSinceTick = true;
    if (!this.corked) {
      this.corked = true;
      sock.cork();
      process.nextTick(this.uncork);
    }
    sock.write(packet);
  }

  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.socket?.uncork();
  };

  // ---- receiving ----

  private onData(chunk: Buffer | null): void {
    if (chunk === null && this.pending === null) return;
    let buf = chunk === null ? this.pending! : this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let at = 0;
    let handled = 0;
    const max = this.opts.maxPacketBytes ?? 16 * 1024 * 1024;
    while (buf.length - at >= 2) {
      if (handled === PASS_PACKETS) {
        // Enough for one turn: the rest waits for the next, and the socket until then.
        const sock = this.socket!;
        this.pending = buf.subarray(at);
        sock.pause();
        this.nextPass = setImmediate(() => {
          this.nextPass = null;
          if (this.socket !== sock) return;
          this.onData(null);
          if (!this.nextPass && this.socket === sock) sock.resume();
        });
        return;
      }
      // Fixed header: type and flags, then the remaining length (1 to 4 bytes, 7 bits each).
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (let n = 0; n < 4 && i < buf.length; n++, i++) {
        const b = buf[i]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete) {
        if (i - at - 1 >= 4) return this.protocolError('a packet length of more than 4 bytes');
        break;
      }
      if (len > max) return this.protocolError(`a packet of ${len} bytes, over the link's limit of ${max}`);
      if (buf.length - i < len) break;
      const header = buf[at]!;
      const start = i;
      at = i + len;
      if (!this.onPacket(header, buf, start, at)) return;
      handled++;
    }
    if (at < buf.length) this.pending = at === 0 ? buf : buf.subarray(at);
    // A partial packet keeps a copy of only its own bytes, not the whole chunk it came in.
    if (this.pending && this.pending.length < 4096 && this.pending.buffer.byteLength > 65536) this.pending = Buffer.from(this.pending);
  }

  private protocolError(what: string): void {
    this.emit('error', new Error(`the MQTT broker at ${this.rotation.current} sent ${what}; reconnecting`));
    this.socket?.destroy();
  }

  /** Handles one packet (bytes start..end of buf are its variable header and payload). False: the connection was dropped. */
  private onPacket(header: number, buf: Buffer, start: number, end: number): boolean {
    const v5 = this.opts.protocolVersion === 5;
    switch (header >> 4) {
      case 3: {
        // PUBLISH
        const qos = (header >> 1) & 3;
        if (end - start < 2) return this.bad('PUBLISH');
        const tlen = buf.readUInt16BE(start);
        let p = start + 2 + tlen;
        if (p > end) return this.bad('PUBLISH');
        const topic = buf.toString('utf8', start + 2, p);
        let id = 0;
        if (qos > 0) {
          if (p + 2 > end) return this.bad('PUBLISH');
          id = buf.readUInt16BE(p);
          p += 2;
        }
        if (v5) {
          const props = readVarint(buf, p, end);
          if (props === null) return this.bad('PUBLISH');
          p = props.next + props.value;
          if (p > end) return this.bad('PUBLISH');
        }
        const payload = buf.subarray(p, end);
        this.emit('message', topic, payload);
        if (qos === 1) this.write(Buffer.from([0x40, 0x02, id >> 8, id & 0xff]));
        else if (qos === 2) this.write(Buffer.from([0x50, 0x02, id >> 8, id & 0xff]));
        return true;
      }
      case 4: {
        // PUBACK
        if (end - start < 2) return this.bad('PUBACK');
        const id = buf.readUInt16BE(start);
        const f = this.takeInFlight(id);
        if (!f) return true;
        const reason = v5 && end - start > 2 ? buf[start + 2]! : 0;
        this.releaseId();
        if (reason >= 0x80) f.cb?.(new MqttRefusal(`the broker refused the publish: ${REASONS_V5[reason] ?? `reason ${reason}`}`, reason));
        else f.cb?.();
        return true;
      }
      case 6: {
        // PUBREL (QoS 2 from the broker): PUBCOMP
        if (end - start < 2) return this.bad('PUBREL');
        this.write(Buffer.from([0x70, 0x02, buf[start]!, buf[start + 1]!]));
        return true;
      }
      case 2: {
        // CONNACK
        if (end - start < 2) return this.bad('CONNACK');
        const rc = buf[start + 1]!;
        if (rc !== 0) {
          const text = v5 ? (REASONS_V5[rc] ?? `reason ${rc}`) : (CONNACK_V4[rc] ?? `return code ${rc}`);
          this.emit('error', new MqttRefusal(`Connection refused: ${text}`, rc));
          this.socket?.destroy();
          return false;
        }
        this.onConnected();
        return true;
      }
      case 9: {
        // SUBACK
        if (end - start < 2) return this.bad('SUBACK');
        const id = buf.readUInt16BE(start);
        let p = start + 2;
        if (v5) {
          const props = readVarint(buf, p, end);
          if (props === null) return this.bad('SUBACK');
          p = props.next + props.value;
        }
        const granted: number[] = [];
        for (; p < end; p++) granted.push(buf[p]!);
        if (!this.subscriptions.has(id)) return true;
        const cb = this.subscriptions.get(id);
        this.subscriptions.delete(id);
        const refused = granted.find((g) => g >= 0x80);
        if (refused !== undefined) cb?.(new MqttRefusal(`the broker refused the subscription: ${v5 ? (REASONS_V5[refused] ?? `reason ${refused}`) : 'failure'}`, refused), granted);
        else cb?.(null, granted);
        return true;
      }
      case 13:
        // PINGRESP
        this.pingOutstanding = 0;
        return true;
      case 14: {
        // DISCONNECT (MQTT 5: the broker says why it drops the connection)
        const rc = end > start ? buf[start]! : 0;
        this.emit('error', new MqttRefusal(`the MQTT broker disconnected licd: ${REASONS_V5[rc] ?? `reason ${rc}`}`, rc));
        this.socket?.destroy();
        return false;
      }
      default:
        // PUBREC/PUBCOMP (licd never publishes at QoS 2), AUTH: nothing to do.
        return true;
    }
  }

  private bad(what: string): boolean {
    this.protocolError(`a malformed ${what}`);
    return false;
  }

  /** Removes and returns the publish waiting for this PUBACK (undefined: none, e.g. a duplicate). */
  private takeInFlight(id: number): InFlight | undefined {
    if (!this.idInFlight(id)) return undefined;
    const list = this.inFlight;
    let i = 0;
    while (i < list.length && list[i]!.id !== id) i++;
    if (i === list.length) return undefined;
    const f = list[i]!;
    if (i === 0) list.shift();
    else list.splice(i, 1);
    this.markId(id, false);
    return f;
  }

  private idInFlight(id: number): boolean {
    return (this.idsInFlight[id >>> 5]! & (1 << (id & 31))) !== 0;
  }

  private markId(id: number, inUse: boolean): void {
    if (inUse) this.idsInFlight[id >>> 5]! |= 1 << (id & 31);
    else this.idsInFlight[id >>> 5]! &= ~(1 << (id & 31));
  }

  /** A packet id came free: the oldest publish waiting for one goes out. */
  private releaseId(): void {
    const w = this.waitingForId.shift();
    if (!w) return;
    const id = this.allocateId();
    this.track(id, encodePublish(w.topic, w.payload, 1, w.retain, id, this.opts.protocolVersion), w.cb);
  }
}

// ---- encoding ----

function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[at++] = b;
  } while (n > 0);
  return at;
}

function readVarint(buf: Buffer, at: number, end: number): { value: number; next: number } | null {
  let value = 0;
  let mul = 1;
  for (let n = 0; n < 4 && at < end; n++) {
    const b = buf[at++]!;
    value += (b & 0x7f) * mul;
    mul *= 128;
    if ((b & 0x80) === 0) return { value, next: at };
  }
  return null;
}

function writeString(buf: Buffer, at: number, s: string, bytes: number): number {
  buf.writeUInt16BE(bytes, at);
  buf.write(s, at + 2, bytes, 'utf8');
  return at + 2 + bytes;
}

/** A PUBLISH packet in one Buffer. `id` is written for QoS 1 (0 for QoS 0). */
export function encodePublish(topic: string, payload: string | Buffer, qos: 0 | 1, retain: boolean, id: number, version: 4 | 5): Buffer {
  const tlen = Buffer.byteLength(topic);
  const plen = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const rest = 2 + tlen + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + plen;
  const buf = Buffer.allocUnsafe(1 + varintSize(rest) + rest);
  buf[0] = 0x30 | (qos << 1) | (retain ? 1 : 0);
  let at = writeVarint(buf, 1, rest);
  at = writeString(buf, at, topic, tlen);
  if (qos > 0) {
    buf.writeUInt16BE(id, at);
    at += 2;
  }
  if (version === 5) buf[at++] = 0;
  if (typeof payload === 'string') buf.write(payload, at, plen, 'utf8');
  else payload.copy(buf, at);
  return buf;
}

/** The same PUBLISH with its DUP flag set (a copy: the first may still be in the socket's queue). */
function withDup(packet: Buffer): Buffer {
  const copy = Buffer.from(packet);
  copy[0] = copy[0]! | 0x08;
  return copy;
}

function encodeSubscribe(id: number, topics: Record<string, { qos: 0 | 1 }>, version: 4 | 5): Buffer {
  const entries = Object.entries(topics).map(([t, o]) => [t, Buffer.byteLength(t), o.qos] as const);
  const rest = 2 + (version === 5 ? 1 : 0) + entries.reduce((n, [, b]) => n + 2 + b + 1, 0);
  const buf = Buffer.allocUnsafe(1 + varintSize(rest) + rest);
  buf[0] = 0x82;
  let at = writeVarint(buf, 1, rest);
  buf.writeUInt16BE(id, at);
  at += 2;
  if (version === 5) buf[at++] = 0;
  for (const [t, b, qos] of entries) {
    at = writeString(buf, at, t, b);
    buf[at++] = qos;
  }
  return buf;
}

function encodeConnect(o: LinkClientOptions): Buffer {
  const v5 = o.protocolVersion === 5;
  const id = Buffer.byteLength(o.clientId);
  const user = o.username !== undefined ? Buffer.byteLength(o.username) : -1;
  const pass = o.password !== undefined ? Buffer.byteLength(o.password) : -1;
  const will = o.will ? { t: Buffer.byteLength(o.will.topic), p: o.will.payload.length } : null;
  let rest = 10 + (v5 ? 1 : 0) + 2 + id;
  if (will) rest += (v5 ? 1 : 0) + 2 + will.t + 2 + will.p;
  if (user >= 0) rest += 2 + user;
  if (pass >= 0) rest += 2 + pass;
  const buf = Buffer.allocUnsafe(1 + varintSize(rest) + rest);
  buf[0] = 0x10;
  let at = writeVarint(buf, 1, rest);
  at = writeString(buf, at, 'MQTT', 4);
  buf[at++] = o.protocolVersion;
  let flags = 0x02; // clean session / clean start
  if (o.will) flags |= 0x04 | (o.will.qos << 3) | (o.will.retain ? 0x20 : 0);
  if (pass >= 0) flags |= 0x40;
  if (user >= 0) flags |= 0x80;
  buf[at++] = flags;
  buf.writeUInt16BE(o.keepaliveSeconds ?? 60, at);
  at += 2;
  if (v5) buf[at++] = 0;
  at = writeString(buf, at, o.clientId, id);
  if (will) {
    if (v5) buf[at++] = 0;
    at = writeString(buf, at, o.will!.topic, will.t);
    buf.writeUInt16BE(will.p, at);
    at += 2;
    o.will!.payload.copy(buf, at);
    at += will.p;
  }
  if (user >= 0) at = writeString(buf, at, o.username!, user);
  if (pass >= 0) writeString(buf, at, o.password!, pass);
  return buf;
}
