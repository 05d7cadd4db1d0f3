/**
 * A client with no broker configured (no --broker, LICD_BROKER or "broker" in the client config)
 * looks for one: a licd on this machine (mqtt://127.0.0.1:1883, as before discovery: the box
 * itself, a development checkout), else the licd boxes of the LAN by mDNS (_licd._tcp,
 * src/discovery/mdns.ts) for a short, bounded wait. Every box found goes into the broker list.
 * LICD_DISCOVERY=0 turns the LAN search off (the loopback default stays).
 */
import { connect } from 'node:net';
import { LicdError } from '../core/errors.ts';
import { browse, DEFAULT_BROWSE_MS, type FoundServer } from '../discovery/mdns.ts';
import { DEFAULT_BROKER, MAX_BROKERS, type Connection } from './client-config.ts';

/** Whether something takes TCP connections at host:port within ms. */
export function listening(host: string, port: number, ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), ms);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** LICD_DISCOVERY_WAIT: how long to browse, ms (100 to 60000). */
export function browseWaitMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.LICD_DISCOVERY_WAIT;
  if (v === undefined || v === '') return DEFAULT_BROWSE_MS;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 100 || n > 60_000) throw new LicdError('CONFIG_INVALID', `LICD_DISCOVERY_WAIT must be milliseconds from 100 to 60000, got ${JSON.stringify(v)}`, { usage: true });
  return n;
}

const isLoopbackUrl = (u: string) => /^mqtts?:\/\/(localhost|127\.[\d.]+|\[::1\])(:|\/|$)/.test(u);

/**
 * The connection to use: `conn` itself when it names a broker; otherwise the local default when
 * something listens there, else the boxes found on the LAN. Throws when nothing is found.
 */
export async function discoverConnection(conn: Connection, env: NodeJS.ProcessEnv = process.env): Promise<Connection & { found?: FoundServer[] }> {
  if (!conn.discover) return conn;
  const local = new URL(DEFAULT_BROKER);
  if (env.LICD_DISCOVERY === '0' || (await listening(local.hostname, Number(local.port)))) return { ...conn, discover: false };
  const waitMs = browseWaitMs(env);
  const found = await browse({ waitMs, firstMs: Math.min(1000, waitMs) });
  // A password goes only over TLS (or to this machine): plain URLs of a box are then left out.
  const usable = (u: string) => conn.password === undefined || u.startsWith('mqtts:') || isLoopbackUrl(u);
  const urls = [...new Set(found.flatMap((s) => s.urls).filter(usable))].slice(0, MAX_BROKERS);
  if (urls.length === 0) {
    const seen = found.length > 0 ? ` (found ${found.map((s) => s.server).join(', ')}, but with no mqtts:// listener for a login with a password)` : '';
    throw new LicdError(
      'TIMEOUT',
      `no license server found: no broker is configured, nothing listens on ${DEFAULT_BROKER}, and no licd box answered on this network (mDNS, _licd._tcp) within ${waitMs / 1000} s${seen}. Give the box's address with --broker mqtt://BOX:1883 or LICD_BROKER (or "broker" in the client config, /etc/licd/client.json)`,
    );
  }
  return { ...conn, url: urls[0]!, urls, source: `mDNS (${found.map((s) => s.server).join(', ')})`, discover: false, found };
}
