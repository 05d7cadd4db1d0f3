import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import type { Log } from '../core/service.ts';
import { TOPIC_PREFIX, topics } from '../core/protocol.ts';
import { CLIENT_ID_PATTERN } from '../core/validate.ts';

export type Role = 'daemon' | 'admin' | 'client';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Users with a password: the daemon's own identity and the admins. */
  users: Array<{ username: string; password: string; role: 'daemon' | 'admin' }>;
  /** Clients without a username act as plain clients (render nodes). */
  allowAnonymous: boolean;
  log: Log;
  /** The plain listener on host:port (default true). */
  plain?: boolean;
  /** A TLS listener feeding the same broker. With it, admins log in over TLS (or from this machine) only. */
  tls?: { host: string; port: number; cert: Buffer | string; key: Buffer | string } | null;
}

export interface EmbeddedBroker {
  /** The plain listener (the TLS one when the plain listener is off). */
  host: string;
  port: number;
  url: string;
  /** The TLS listener, if on. */
  tls: { host: string; port: number; url: string } | null;
  close(): Promise<void>;
  /** Drops every client connection at once (tests: the broker "restarts" under the clients). */
  aedes: Aedes;
}

/** Client ids reserved for the daemon, so a client cannot take over its session. */
export const DAEMON_CLIENT_PREFIX = 'licd-daemon';

function digest(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
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
  const users = new Map(opts.users.map((u) => [u.username, { hash: digest(u.password), role: u.role }]));

  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      if (!CLIENT_ID_PATTERN.test(client.id)) {
        opts.log.warn('broker: refused a client id that cannot be used in topics', { client: client.id });
        return done(authError('client id not usable', 2), false);
      }
      if (username === undefined || username === '') {
        if (client.id.startsWith(DAEMON_CLIENT_PREFIX)) return done(authError('reserved client id', 2), false);
        if (!opts.allowAnonymous) return done(authError('a username is required', 4), false);
        roles.set(client, 'client');
        return done(null, true);
      }
      const u = users.get(username);
      if (!u || !password || !timingSafeEqual(u.hash, digest(password))) {
        opts.log.warn('broker: bad username or password', { client: client.id, username });
        return done(authError('bad username or password', 4), false);
      }
      if (client.id.startsWith(DAEMON_CLIENT_PREFIX) && u.role !== 'daemon') return done(authError('reserved client id', 2), false);
      // Admin credentials belong on the TLS listener; over plain MQTT only from this machine.
      if (u.role === 'admin' && opts.tls && !viaTlsOrLoopback(client)) {
        opts.log.warn('broker: admin login over plain MQTT from another machine refused; use the TLS listener', { client: client.id, username });
        return done(authError('admins log in over TLS (mqtts://) from other machines', 5), false);
      }
      roles.set(client, u.role);
      done(null, true);
    },
    authorizePublish(client, packet, done) {
      if (!client) return done(null);
      const role = roles.get(client) ?? 'client';
      if (role === 'daemon') return done(null);
      const t = packet.topic;
      if (t === topics.clientRequest(client.id) || t === topics.clientWill(client.id)) return done(null);
      if (role === 'admin' && t === topics.adminRequest(client.id)) return done(null);
      opts.log.warn('broker: publish refused', { client: client.id, topic: t });
      done(new Error(`client ${client.id} may not publish to ${t}`));
    },
    authorizeSubscribe(client, sub, done) {
      const role = roles.get(client) ?? 'client';
      if (role === 'daemon') return done(null, sub);
      const t = sub.topic;
      const ok =
        t === topics.clientResponse(client.id) ||
        t === topics.serverState ||
        t === topics.serverChain ||
        t === topics.featureWildcard ||
        (t.startsWith(`${TOPIC_PREFIX}/feature/`) && !t.slice(`${TOPIC_PREFIX}/feature/`.length).includes('#') && t.split('/').length === 4);
      if (!ok) {
        opts.log.warn('broker: subscription refused', { client: client.id, topic: t });
        return done(null, null);
      }
      done(null, sub);
    },
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
      const server: Server = createServer({ noDelay: true }, aedes.handle);
      server.on('connection', track);
      const port = await listen(server, opts.port, opts.host);
      servers.push(server);
      plain = { host: opts.host, port, url: fmt('mqtt', opts.host, port) };
    }
    if (opts.tls) {
      const server = createTlsServer({ cert: opts.tls.cert, key: opts.tls.key, noDelay: true, minVersion: 'TLSv1.2' }, aedes.handle);
      server.on('connection', track);
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

function viaTlsOrLoopback(client: Client): boolean {
  const conn = (client as unknown as { conn?: Socket }).conn;
  if (conn instanceof TLSSocket) return true;
  const a = conn?.remoteAddress ?? '';
  return a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1' || a.startsWith('127.');
}
