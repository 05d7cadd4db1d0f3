// Type only: aedes is loaded when the embedded broker starts, so a daemon on an external broker
// (mosquitto) does not carry it (docs/performance.md, memory).
import type { Aedes, AuthenticateError, Client } from 'aedes';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import type { Log } from '../core/service.ts';
import { clusterTopics, MAX_ANSWER_BYTES, TOPIC_PREFIX, topics } from '../core/protocol.ts';
import { CLIENT_ID_PATTERN } from '../core/validate.ts';

export type Role = 'daemon' | 'admin' | 'client';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Users with a password: the daemon's own identity and the admins. */
  users: Array<{ username: string; password: string; role: 'daemon' | 'admin' }>;
  /** Clients without a username act as plain clients (render nodes). */
  allowAnonymous: boolean;
  /**
   * Render-node logins (identity.usersFile, a mosquitto password file): plain clients that may
   * also use their login's topics (licd/v1/login/<name>/<client id>/...), so licd knows the user.
   */
  clientLogins?: ReadonlyMap<string, (password: string) => boolean>;
  log: Log;
  /** The plain listener on host:port (default true). */
  plain?: boolean;
  /** A TLS listener feeding the same broker. With it, admins log in over TLS (or from this machine) only. */
  tls?: { host: string; port: number; cert: Buffer | string; key: Buffer | string } | null;
}

/**
 * Where a connection of the web page's WebSocket bridge (src/web/bridge.ts) comes from: the
 * browser's address, whether it came over HTTPS, and whether anonymous viewing is on (web.anonymous).
 */
export interface WebOrigin {
  secure: boolean;
  remote: string;
  anonymous: boolean;
}

export interface EmbeddedBroker {
  /** The plain listener (the TLS one when the plain listener is off). */
  host: string;
  port: number;
  url: string;
  /** The TLS listener, if on. */
  tls: { host: string; port: number; url: string } | null;
  close(): Promise<void>;
  /**
   * Serves one MQTT connection of the web page's bridge (a WebSocket as a stream). The broker's
   * rules hold as for its own listeners, and more: a login with a password (admin or user) only
   * over HTTPS or from this machine, and no anonymous login unless `origin.anonymous`.
   */
  handleWeb(stream: Duplex, origin: WebOrigin): void;
  /** Drops every client connection at once (tests: the broker "restarts" under the clients). */
  aedes: Aedes;
}

/**
 * Bytes the broker buffers for one client that does not read its socket (beyond the kernel's
 * socket buffer). Twice the largest answer licd sends. A client whose next message would go past
 * it is disconnected instead: see boundWrites below.
 */
export const MAX_QUEUED_BYTES_PER_CLIENT = 2 * MAX_ANSWER_BYTES;
/** How long a write to any client may wait for its socket to drain before the client is dropped. */
export const DRAIN_TIMEOUT_MS = 3000;

/**
 * Requests of one client the daemon has not answered yet that the broker passes on. Further
 * requests wait in the broker (in order), and while they wait the broker reads nothing more from
 * that client's socket: a client that floods requests slows itself, not the daemon's one
 * subscription that every other client's requests share. A request counts as answered when the
 * daemon publishes to the client's answer topic, or after UNANSWERED_EXPIRE_MS.
 */
export const MAX_UNANSWERED_PER_CLIENT = 32;
const UNANSWERED_EXPIRE_MS = 10_000;

/** One client's window of unanswered requests (see MAX_UNANSWERED_PER_CLIENT). */
class RequestWindow {
  private readonly sent: number[] = [];
  private readonly waiting: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  closed = false;

  constructor(readonly owner: Client) {}

  admit(go: () => void): void {
    this.expire();
    if (this.waiting.length === 0 && this.sent.length < MAX_UNANSWERED_PER_CLIENT) {
      this.sent.push(Date.now());
      go();
      return;
    }
    this.waiting.push(go);
    this.arm();
  }

  answered(): void {
    this.sent.shift();
    this.release();
  }

  close(): void {
    this.closed = true;
    this.waiting.length = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private expire(): void {
    const old = Date.now() - UNANSWERED_EXPIRE_MS;
    while (this.sent.length > 0 && this.sent[0]! <= old) this.sent.shift();
  }

  private release(): void {
    if (this.closed) return;
    this.expire();
    while (this.waiting.length > 0 && this.sent.length < MAX_UNANSWERED_PER_CLIENT) {
      this.sent.push(Date.now());
      this.waiting.shift()!();
    }
    if (this.waiting.length > 0) this.arm();
  }

  private arm(): void {
    if (this.timer || this.sent.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.release();
    }, Math.max(10, this.sent[0]! + UNANSWERED_EXPIRE_MS - Date.now() + 1));
    this.timer.unref?.();
  }
}

/**
 * One client that does not read must not delay anybody else. In aedes a message counts as
 * delivered only when every subscriber's socket took it (a full socket waits for 'drain', up to
 * drainTimeout), and it reads nothing more from the publisher until its messages are delivered:
 * an answer stuck on one client's socket stopped the daemon's connection, and with it every
 * answer, for aedes' 60 s default. Here every socket buffers up to MAX_QUEUED_BYTES_PER_CLIENT
 * (the server's highWaterMark, so writes below it never wait for a drain), and a client socket
 * whose next write would go past that is closed instead (the client's last will follows, as for
 * any lost connection). The daemon's own socket is exempt: it reads all the time.
 */
function boundWrites(s: Socket, daemonSockets: WeakSet<Socket>, log: Log): void {
  const write = s.write.bind(s) as (...args: unknown[]) => boolean;
  (s as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
    const chunk = args[0] as Buffer | string;
    if (!daemonSockets.has(s) && s.writableLength + (typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length) >= MAX_QUEUED_BYTES_PER_CLIENT) {
      if (!s.destroyed) {
        log.warn('broker: dropped a client that does not read what it is sent', { queuedBytes: s.writableLength, remote: s.remoteAddress });
        s.destroy();
      }
      return true;
    }
    return write(...args);
  };
}

/** Client ids reserved for the daemon, so a client cannot take over its session. */
export const DAEMON_CLIENT_PREFIX = 'licd-daemon';

function digest(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The holder secret in a connection's last will (the SDK's {"gone":true,"holder":...}), if any. */
function willHolder(client: Client): string | null {
  const c = client as unknown as { will?: { payload?: unknown } | null; _will?: { payload?: unknown } | null };
  const payload = (c.will ?? c._will)?.payload;
  if (!payload || !(payload instanceof Uint8Array) || payload.length > 1024) return null;
  try {
    const h = (JSON.parse(Buffer.from(payload).toString('utf8')) as { holder?: unknown } | null)?.holder;
    return typeof h === 'string' && h.length >= 22 ? h : null;
  } catch {
    return null;
  }
}

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1) with the project's access rules in its hooks:
 * a client publishes only requests and its will as itself and reads only its own answers and the
 * public retained state; admin requests need an admin identity; the daemon may do everything.
 * systemd/mosquitto/ carries the same rules for mosquitto.
 */
export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const roles = new WeakMap<Client, Role>();
  /** Who a connection logged in as ('' for anonymous): a takeover by the same login is allowed. */
  const logins = new WeakMap<Client, string>();
  const users = new Map(opts.users.map((u) => [u.username, { hash: digest(u.password), role: u.role }]));
  const daemonSockets = new WeakSet<Socket>();
  const webOrigins = new WeakMap<object, WebOrigin>();
  const webOrigin = (client: Client): WebOrigin | undefined => webOrigins.get((client as unknown as { conn: object }).conn);
  const windows = new Map<string, RequestWindow>();
  const windowOf = (client: Client): RequestWindow => {
    let w = windows.get(client.id);
    if (!w || w.owner !== client) {
      w?.close();
      w = new RequestWindow(client);
      windows.set(client.id, w);
    }
    return w;
  };

  /**
   * MQTT lets a new connection with a live client id take the old one's place. Here it may only
   * when it is the same client: logged in as the same user with its password, or (anonymous
   * clients) carrying the same holder secret in its last will as the live connection (the SDK puts
   * it there; only licd can read will topics). Anyone else is refused, and the live client keeps
   * its connection, its answers and its leases.
   */
  const takeoverRefused = (client: Client, username: string): boolean => {
    const live = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[client.id];
    if (!live || live === client || live.closed) return false;
    const liveLogin = logins.get(live);
    if (username !== '' && liveLogin === username) return false;
    const mine = willHolder(client);
    const theirs = willHolder(live);
    if (username === '' && liveLogin === '' && mine !== null && theirs !== null && timingSafeEqual(digest(mine), digest(theirs))) return false;
    opts.log.warn('broker: refused a connection that would take over a live client id (not the same client)', { client: client.id });
    return true;
  };

  const { Aedes: AedesBroker } = await import('aedes');
  // mqtt-packet (aedes' encoder) otherwise fills a table of 65,536 two-byte Buffers on the first
  // packet it writes (about 8 MiB of heap) to save one small allocation per length field. mqtt.js
  // turned this off process-wide (its writeCache option) when the daemon's link used it.
  const { default: mqttPacket } = await import('mqtt-packet');
  (mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = false;
  const aedes = await AedesBroker.createBroker({
    // Backstop only: with the buffer below, a write waits for a drain only on the daemon's own
    // connection. aedes' default (60 s) let one stuck socket hold every answer that long.
    drainTimeout: DRAIN_TIMEOUT_MS,
    authenticate(client, username, password, done) {
      if (!CLIENT_ID_PATTERN.test(client.id)) {
        opts.log.warn('broker: refused a client id that cannot be used in topics', { client: client.id });
        return done(authError('client id not usable', 2), false);
      }
      if (takeoverRefused(client, username ?? '')) return done(authError('client id in use by another client', 2), false);
      const web = webOrigin(client);
      if (web && (username === undefined || username === '') && !web.anonymous) {
        return done(authError('the web page is for signed-in users (web.anonymous is off)', 5), false);
      }
      if (web && username !== undefined && username !== '' && !web.secure && !isLoopback(web.remote)) {
        opts.log.warn('broker: a web sign-in over plain HTTP from another machine refused; use HTTPS (web.https)', { client: client.id, username, remote: web.remote });
        return done(authError('sign in over HTTPS: passwords do not travel over plain HTTP', 5), false);
      }
      if (username === undefined || username === '') {
        if (client.id.startsWith(DAEMON_CLIENT_PREFIX)) return done(authError('reserved client id', 2), false);
        if (!opts.allowAnonymous) return done(authError('a username is required', 4), false);
        roles.set(client, 'client');
        logins.set(client, '');
        return done(null, true);
      }
      const u = users.get(username);
      const login = u ? undefined : opts.clientLogins?.get(username);
      if (login) {
        if (!password || !login(password.toString('utf8'))) {
          opts.log.warn('broker: bad username or password', { client: client.id, username });
          return done(authError('bad username or password', 4), false);
        }
        if (client.id.startsWith(DAEMON_CLIENT_PREFIX)) return done(authError('reserved client id', 2), false);
        roles.set(client, 'client');
        logins.set(client, username);
        return done(null, true);
      }
      if (!u || !password || !timingSafeEqual(u.hash, digest(password))) {
        opts.log.warn('broker: bad username or password', { client: client.id, username });
        return done(authError('bad username or password', 4), false);
      }
      if (client.id.startsWith(DAEMON_CLIENT_PREFIX) && u.role !== 'daemon') return done(authError('reserved client id', 2), false);
      // Admin credentials belong on the TLS listener; over plain MQTT only from this machine.
      if (u.role === 'admin' && opts.tls && !viaTlsOrLoopback(client, web)) {
        opts.log.warn('broker: admin login over plain MQTT from another machine refused; use the TLS listener', { client: client.id, username });
        return done(authError('admins log in over TLS (mqtts://) from other machines', 5), false);
      }
      roles.set(client, u.role);
      if (u.role === 'daemon') daemonSockets.add(client.conn as unknown as Socket);
      logins.set(client, username);
      done(null, true);
    },
    authorizePublish(client, packet, done) {
      if (!client) return done(null);
      const role = roles.get(client) ?? 'client';
      if (role === 'daemon') return done(null);
      const t = packet.topic;
      if (t === topics.clientWill(client.id)) return done(null);
      const login = logins.get(client);
      if (login && t === topics.loginWill(login, client.id)) return done(null);
      if (t === topics.clientRequest(client.id) || (login && t === topics.loginRequest(login, client.id)) || (role === 'admin' && t === topics.adminRequest(client.id))) {
        return windowOf(client).admit(() => done(null));
      }
      opts.log.warn('broker: publish refused', { client: client.id, topic: t });
      done(new Error(`client ${client.id} may not publish to ${t}`));
    },
    authorizeSubscribe(client, sub, done) {
      const role = roles.get(client) ?? 'client';
      if (role === 'daemon') return done(null, sub);
      const t = sub.topic;
      const login = logins.get(client);
      const ok =
        t === topics.clientResponse(client.id) ||
        (login !== undefined && login !== '' && t === topics.loginResponse(login, client.id)) ||
        t === topics.serverState ||
        t === topics.serverChain ||
        (role === 'admin' && t === topics.alerts) ||
        t === topics.featureWildcard ||
        // A cluster's states (docs/scale-out.md): licctl status looks; nothing is published there on a lone box.
        t === clusterTopics.serverStateWildcard ||
        t === clusterTopics.featureWildcard ||
        (t.startsWith(`${TOPIC_PREFIX}/feature/`) && !t.slice(`${TOPIC_PREFIX}/feature/`.length).includes('#') && t.split('/').length === 4);
      if (!ok) {
        opts.log.warn('broker: subscription refused', { client: client.id, topic: t });
        return done(null, null);
      }
      done(null, sub);
    },
  });

  // An answer from the daemon frees a place in the client's window.
  const answerTopic = new RegExp(`^${TOPIC_PREFIX}/(?:client|login/[^/]+)/([^/]+)/res$`);
  aedes.on('publish', (packet, client) => {
    if (!client || roles.get(client) !== 'daemon') return;
    const m = answerTopic.exec(packet.topic);
    if (m) windows.get(m[1]!)?.answered();
  });
  aedes.on('clientDisconnect', (client) => {
    const w = windows.get(client.id);
    if (w && w.owner === client) {
      w.close();
      windows.delete(client.id);
    }
  });

  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const servers: Server[] = [];
  const closeAll = async () => {
    const closed = servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve())));
    for (const s of sockets) s.destroy();
    await Promise.all(closed);
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  };
  const fmt = (scheme: string, host: string, port: number) => `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let plain: { host: string; port: number; url: string } | null = null;
  let tls: EmbeddedBroker['tls'] = null;
  try {
    if (opts.plain !== false) {
      const server: Server = createServer({ noDelay: true, highWaterMark: MAX_QUEUED_BYTES_PER_CLIENT }, aedes.handle);
      server.on('connection', (s) => {
        track(s);
        boundWrites(s, daemonSockets, opts.log);
      });
      const port = await listen(server, opts.port, opts.host);
      servers.push(server);
      plain = { host: opts.host, port, url: fmt('mqtt', opts.host, port) };
    }
    if (opts.tls) {
      const server = createTlsServer({ cert: opts.tls.cert, key: opts.tls.key, noDelay: true, minVersion: 'TLSv1.2', highWaterMark: MAX_QUEUED_BYTES_PER_CLIENT }, aedes.handle);
      server.on('connection', track);
      // aedes writes to the TLS socket: that is the one whose queue is bounded.
      server.on('secureConnection', (s) => boundWrites(s, daemonSockets, opts.log));
      // A client that gives up at the handshake (a wrong pin) is no broker error.
      server.on('tlsClientError', (e) => opts.log.debug('broker: TLS handshake failed', { error: e.message }));
      const port = await listen(server, opts.tls.port, opts.tls.host);
      servers.push(server);
      tls = { host: opts.tls.host, port, url: fmt('mqtts', opts.tls.host, port) };
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  const main = (plain ?? tls)!;
  return {
    ...main,
    tls,
    aedes,
    close: closeAll,
    handleWeb(stream, origin) {
      webOrigins.set(stream, origin);
      const s = stream as unknown as Socket;
      track(s);
      boundWrites(s, daemonSockets, opts.log);
      aedes.handle(stream);
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function viaTlsOrLoopback(client: Client, web: WebOrigin | undefined): boolean {
  if (web) return web.secure || isLoopback(web.remote);
  const conn = (client as unknown as { conn?: Socket }).conn;
  if (conn instanceof TLSSocket) return true;
  return isLoopback(conn?.remoteAddress ?? '');
}

function isLoopback(a: string): boolean {
  return a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}
