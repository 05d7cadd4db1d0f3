/** What every licctl command shares: the connection to licd, the vendor key, printing and times. */
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { isLicdError, LicdError } from '../core/errors.ts';
import { escapeText } from '../core/validate.ts';
import { BorrowClient } from '../sdk/borrow.ts';
import { LicdClient, type ClientOptions } from '../sdk/client.ts';
import { configuredVendorKey, DEFAULT_BROKER, devVendorPublicKey, resolveConnection, resolveVendorKey } from '../sdk/client-config.ts';
import { settleVendorKey } from '../sdk/known-vendors.ts';
import { lastBroker, rememberBroker } from '../sdk/last-broker.ts';
import { discoverConnection } from '../sdk/discovery.ts';
import { chooseServer, ClusterClient, clusterServerIds } from '../sdk/cluster.ts';
import type { Connection } from '../sdk/client-config.ts';
import { fetchChain } from '../sdk/verify.ts';
import { flag, has, intFlag, UsageError, type ParsedArgs } from './args.ts';
import type { CmdContext } from './borrow-cmds.ts';
import { timeFormatter, utcWanted } from './time.ts';

// Everything licctl prints passes through here: a string from the server (or an old database)
// cannot move the cursor, recolour or clear the terminal. Table cells are escaped whole (cell()),
// so a newline inside a user name does not pass for a line of its own either.
export function out(s: string): void {
  process.stdout.write(escapeText(s, { keepNewlines: true }) + '\n');
}

export function err(s: string): void {
  process.stderr.write(escapeText(s, { keepNewlines: true }) + '\n');
}

/** One JSON result on stdout (JSON.stringify escapes every control character). */
export function outJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

/** One JSON event per line (watch, checkout, run). */
export function jsonLine(stream: 'out' | 'err', v: unknown): void {
  (stream === 'out' ? process.stdout : process.stderr).write(JSON.stringify(v) + '\n');
}

/** A value from the network shown in a table or a line. */
export const cell = (s: string): string => escapeText(s);

export const json = (a: ParsedArgs): boolean => has(a, 'json');

/** How this run prints times: local with the offset, or UTC with --utc / LICD_UTC=1 (src/cli/time.ts). */
export function timeOf(a: ParsedArgs): (t: string | number | Date) => string {
  return timeFormatter({ utc: utcWanted(has(a, 'utc')) });
}

/**
 * The brokers found by discovery for this command line (one licctl run), so that the server it
 * names (vendor-key pins, holding records) is the one it reached, not the loopback default.
 */
const discovered = new WeakMap<ParsedArgs, Connection>();

function connectionOf(a: ParsedArgs, admin = false): Connection {
  const d = discovered.get(a);
  if (d) return { ...resolveConnection({ broker: d.urls.join(','), configFile: flag(a, 'config'), user: flag(a, 'user'), passwordFile: flag(a, 'password-file'), fingerprint: flag(a, 'fingerprint'), ca: flag(a, 'ca'), admin }), source: d.source };
  return resolveConnection({ broker: flag(a, 'broker'), configFile: flag(a, 'config'), user: flag(a, 'user'), passwordFile: flag(a, 'password-file'), fingerprint: flag(a, 'fingerprint'), ca: flag(a, 'ca'), admin });
}

/** --server: a box of a cluster, by its server id (cluster.serverId). */
export function serverIdOf(a: ParsedArgs): string | undefined {
  const v = flag(a, 'server');
  if (v !== undefined && !/^[a-z0-9][a-z0-9-]{0,31}$/.test(v)) throw new UsageError(`--server must be a server id (lower-case letters, digits and -, as licctl status lists them), got ${JSON.stringify(v)}`);
  return v;
}

export async function connect(a: ParsedArgs, admin = false, o: { maintain?: boolean; timeoutMs?: number; server?: string } = {}): Promise<LicdClient> {
  const server = o.server ?? serverIdOf(a);
  if (server !== undefined) o = { ...o, server };
  let conn = connectionOf(a, admin);
  if (conn.discover) {
    conn = await discoverConnection(conn);
    if (conn.urls[0] !== DEFAULT_BROKER) discovered.set(a, conn);
  }
  const timeoutMs = o.timeoutMs ?? intFlag(a, 'timeout', 100, 600_000) ?? 10_000;
  // A render node that logs in speaks on its login's topics, so that licd knows its user
  // (identity.requireLogin); admin commands go on the admin topic either way.
  const login = !admin && conn.username !== undefined;
  let c: LicdClient;
  const opts: ClientOptions = { url: conn.url, urls: conn.urls, prefer: lastBroker(conn.urls), ...(o.server ? { server: o.server } : {}), ...(conn.username ? { username: conn.username } : {}), ...(conn.password ? { password: conn.password } : {}), ...(conn.tls ? { tls: conn.tls } : {}), ...(login ? { login: true } : {}), timeoutMs };
  try {
    c = await LicdClient.connect(opts);
    optionsOf.set(c, opts);
  } catch (e) {
    // An admin command found no password anywhere: say where a development daemon keeps it.
    if (admin && conn.password === undefined && isLicdError(e) && e.code === 'FORBIDDEN') {
      const dev = join(process.cwd(), process.env.LICD_DATA_DIR ?? 'data', 'admin.password');
      throw new LicdError(
        'FORBIDDEN',
        `the broker at ${conn.url} refused user ${JSON.stringify(conn.username)}: no admin password was given, and ${dev} does not exist. licd keeps the admin password of a development daemon in DATA_DIR/admin.password, DATA_DIR being the daemon's data dir (its LICD_DATA_DIR, ./data by default); give --password-file DATA_DIR/admin.password, or set LICD_DATA_DIR=DATA_DIR in this shell (or LICD_MQTT_USER and LICD_MQTT_PASSWORD, or "passwordFile" in the client config). On the licd appliance the admin password is in /etc/licd/admin.password (root only; also on the console's login banner and from licd-firstboot --label): as root, licctl ... --user admin --password-file /etc/licd/admin.password`,
      );
    }
    throw e;
  }
  rememberBroker(conn.urls, c.brokerUrl);
  if (o.maintain !== false && !admin) await maintainBorrows(a, c);
  return c;
}

/**
 * The client to take a seat with (checkout, run): on a lone box, connect's; on a cluster of boxes
 * (docs/scale-out.md), one bound to the box with the most free seats of `feature`.
 */
export async function connectForSeat(a: ParsedArgs, feature: string, count: number): Promise<LicdClient> {
  const c = await connect(a);
  if (serverIdOf(a) !== undefined) return c;
  const server = await chooseServer(c, feature, count);
  if (server === null) return c;
  await c.close({ checkin: false });
  return connect(a, false, { server });
}

/** The options each connect() used, so that a ClusterClient can connect the same way. */
const optionsOf = new WeakMap<LicdClient, ClientOptions>();

/**
 * On a cluster of boxes (docs/scale-out.md) and without --server: a ClusterClient on the same
 * brokers, for a seat that moves to another box when its box goes offline; null on a lone box.
 * `c` (from connect()) is closed when a ClusterClient takes over.
 */
export async function connectCluster(a: ParsedArgs, c: LicdClient): Promise<ClusterClient | null> {
  if (serverIdOf(a) !== undefined) return null;
  const ids = await clusterServerIds(c);
  const opts = optionsOf.get(c);
  if (ids.length === 0 || !opts) return null;
  const cluster = await ClusterClient.connect({ ...opts, server: null }, { waitMs: 5000, expect: ids.length });
  await c.close({ checkin: false });
  return cluster;
}

/** Whenever licctl reaches the server: auto-renew due tokens, refresh the others (LM-X). */
async function maintainBorrows(a: ParsedArgs, c: LicdClient): Promise<void> {
  try {
    const b = new BorrowClient();
    if (!b.hasTokens()) return;
    const r = await b.maintain(c, vendorKey(a));
    for (const id of r.renewed) err(`licctl: auto-renewed borrow ${id}`);
    for (const u of r.unknownOnServer) err(`licctl: warning: ${u}`);
    for (const e of r.errors) err(`licctl: could not renew: ${e}`);
  } catch (e) {
    err(`licctl: borrowed licenses not maintained: ${(e as Error).message}`);
  }
}

/** The server licctl talks to (its broker URL), as --broker, LICD_BROKER or the client config give it. */
export function serverOf(a: ParsedArgs): string {
  return connectionOf(a).url;
}

export function vendorKey(a: ParsedArgs): Uint8Array | null {
  let server: string | undefined;
  try {
    server = serverOf(a);
  } catch {
    server = undefined; // offline use needs no valid connection settings; the pin is then not found
  }
  return resolveVendorKey({ flag: flag(a, 'vendor-key'), configFile: flag(a, 'config'), server });
}

/**
 * Before borrowing: the vendor key this server's tokens will verify with must be configured or
 * pinned by the user (known-vendors.ts): --trust-vendor-key FINGERPRINT, or yes at a prompt on a
 * terminal. Otherwise the borrow would succeed and its tokens be unusable offline.
 */
async function settleVendorKeyFor(a: ParsedArgs, c: LicdClient): Promise<void> {
  const chain = await fetchChain(c);
  const tty = process.stdin.isTTY && process.stdout.isTTY;
  await settleVendorKey({
    server: serverOf(a),
    chain,
    configured: configuredVendorKey({ flag: flag(a, 'vendor-key'), configFile: flag(a, 'config') }),
    devKey: devVendorPublicKey(),
    trustFingerprint: flag(a, 'trust-vendor-key'),
    ask: tty
      ? async (q) => {
          const rl = createInterface({ input: process.stdin, output: process.stdout });
          try {
            return await new Promise<string>((res) => rl.question(q, res));
          } finally {
            rl.close();
          }
        }
      : undefined,
    say: (s) => err(`licctl: ${s}`),
  });
}

export function cmdContext(a: ParsedArgs): CmdContext {
  return { connect: (admin = false) => connect(a, admin, { maintain: false }), vendorKey: () => vendorKey(a), settleVendorKey: (c) => settleVendorKeyFor(a, c), out, err, time: timeOf(a) };
}

/** An admin request: connect as admin, send, close. */
export async function adminRequest<T>(a: ParsedArgs, type: string, body: Record<string, unknown>): Promise<T> {
  const c = await connect(a, true);
  try {
    return await c.request<T>(type, body, { admin: true });
  } finally {
    await c.close();
  }
}
