import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import type { Log } from '../core/service.ts';
import { MAX_ANSWER_BYTES, TOPIC_PREFIX, topics } from '../core/protocol.ts';
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
}

export interface EmbeddedBroker {
  host: string;
  port: number;
  url: string;
  close(): Promise<void>;
  /** Drops every client connection at once (tests: the broker "restarts" under the clients). */
  aedes: Aedes;
}

/**
 * Bytes the broker buffers for one client that does not read its socket (beyond the kernel's
 * socket buffer). Twice the largest answer licd sends. A client whose next message would go past
 * it is disconnected instead: see authorizeForward below.
 */
export const MAX_QUEUED_BYTES_PER_CLIENT = 2 * MAX_ANSWER_BYTES;
/** How long a write to any client may wait for its socket to drain before the client is dropped. */
export const DRAIN_TIMEOUT_MS = 3000;

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
    // Backstop only: with the buffer below, a write waits for a drain only on the daemon's own
    // connection. aedes' default (60 s) let one stuck socket hold every answer that long.
    drainTimeout: DRAIN_TIMEOUT_MS,
    /*
     * One client that does not read must not delay anybody else. In aedes, a message counts as
     * delivered only when every subscriber's socket took it (a full socket waits for 'drain'),
     * and the publisher's connection is not read any further until its messages are delivered:
     * so an answer stuck on one client's socket stopped the daemon's connection, and with it
     * every answer. Here the sockets buffer up to MAX_QUEUED_BYTES_PER_CLIENT (the server's
     * highWaterMark, so writes below it never wait), and a client whose next message would go past
     * that is not sent it and is disconnected (its last will follows, as for any lost client).
     */
    authorizeForward(client, packet) {
      const role = roles.get(client);
      if (role === 'daemon') return packet;
      const conn = client.conn as unknown as import('node:net').Socket;
      const size = packet.topic.length + (packet.payload?.length ?? 0) + 16;
      if (conn.writableLength + size >= MAX_QUEUED_BYTES_PER_CLIENT) {
        if (!conn.destroyed) {
          opts.log.warn('broker: dropped a client that does not read its answers', { client: client.id, queuedBytes: conn.writableLength });
          conn.destroy();
        }
        return null;
      }
      return packet;
    },
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

  const server: Server = createServer({ noDelay: true, highWaterMark: MAX_QUEUED_BYTES_PER_CLIENT }, aedes.handle);
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
