import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
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
  /**
   * Render-node logins (identity.usersFile, a mosquitto password file): plain clients that may
   * also use their login's topics (licd/v1/login/<name>/<client id>/...), so licd knows the user.
   */
  clientLogins?: ReadonlyMap<string, (password: string) => boolean>;
  log: Log;
}

export interface EmbeddedBroker {
  host: string;
  port: number;
  url: string;
  close(): Promise<void>;
  /** Drops every client connection at once (tests: the broker "restarts" under the clients). */
  aedes: Aedes;
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

  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      if (!CLIENT_ID_PATTERN.test(client.id)) {
        opts.log.warn('broker: refused a client id that cannot be used in topics', { client: client.id });
        return done(authError('client id not usable', 2), false);
      }
      if (takeoverRefused(client, username ?? '')) return done(authError('client id in use by another client', 2), false);
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
      roles.set(client, u.role);
      logins.set(client, username);
      done(null, true);
    },
    authorizePublish(client, packet, done) {
      if (!client) return done(null);
      const role = roles.get(client) ?? 'client';
      if (role === 'daemon') return done(null);
      const t = packet.topic;
      if (t === topics.clientRequest(client.id) || t === topics.clientWill(client.id)) return done(null);
      const login = logins.get(client);
      if (login && (t === topics.loginRequest(login, client.id) || t === topics.loginWill(login, client.id))) return done(null);
      if (role === 'admin' && t === topics.adminRequest(client.id)) return done(null);
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
        t === topics.featureWildcard ||
        (t.startsWith(`${TOPIC_PREFIX}/feature/`) && !t.slice(`${TOPIC_PREFIX}/feature/`.length).includes('#') && t.split('/').length === 4);
      if (!ok) {
        opts.log.warn('broker: subscription refused', { client: client.id, topic: t });
        return done(null, null);
      }
      done(null, sub);
    },
  });

  const server: Server = createServer({ noDelay: true }, aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = opts.host;
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    host,
    port: addr.port,
    url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    aedes,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
