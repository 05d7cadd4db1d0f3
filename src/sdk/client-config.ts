import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { LicdError } from '../core/errors.ts';
import { fsErrorText, readJsonFile } from '../files.ts';
import { Fields } from '../core/validate.ts';
import { parseFingerprint, type TlsTrust } from '../mqtt/tls.ts';
import { pinnedVendorKey } from './known-vendors.ts';

export interface Connection {
  /** The first broker of the list (the server's name for pinned vendor keys). */
  url: string;
  /**
   * Every broker to try, in order (--broker "mqtt://a,mqtt://b"): the client moves to the next
   * when one is unreachable or drops. Holds `url` first.
   */
  urls: string[];
  /** Nothing configured the broker: licctl looks for one (loopback, then the LAN by mDNS; src/sdk/discovery.ts). */
  discover?: boolean;
  username?: string;
  password?: string;
  /** Where the URL came from, for error messages. */
  source: string;
  /** For mqtts:// URLs: the pinned certificate fingerprint and/or the CA (PEM) to trust. */
  tls?: TlsTrust;
}

export const DEFAULT_BROKER = 'mqtt://127.0.0.1:1883';

/**
 * A broker address must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] with a port from 1 to 65535.
 * Anything else is refused here, naming the value, where it came from and an example: handed on,
 * the MQTT library would read it leniently (a bad port becomes 1883, with a Node deprecation
 * warning) and connect somewhere the user did not mean. The error's details carry usage: true
 * (licctl exits 64, bad usage).
 */
export function checkBrokerUrl(url: string, source: string): string {
  const bad = (why: string) =>
    new LicdError('CONFIG_INVALID', `the broker address ${JSON.stringify(url)} (from ${source}) ${why}; give one like mqtt://licd.local:1883 or mqtts://licd.local:8883`, { usage: true, source });
  const m = /^(mqtts?):\/\/(\[[0-9a-fA-F:.]+\]|[^/:?#@[\]\s]+)(?::([^/?#]*))?\/?$/.exec(url);
  if (!m) {
    if (!/^mqtts?:\/\//i.test(url)) throw bad('must start with mqtt:// or mqtts://');
    if (/@/.test(url)) throw bad('must not hold a user or password (use --user and --password-file)');
    throw bad('is not HOST or HOST:PORT after the scheme');
  }
  if (m[3] !== undefined) {
    const port = Number(m[3]);
    if (!/^\d+$/.test(m[3]) || !Number.isInteger(port) || port < 1 || port > 65535) throw bad(`has the port ${JSON.stringify(m[3])}, which is not a number from 1 to 65535`);
  }
  try {
    new URL(url);
  } catch {
    throw bad('is not a valid URL');
  }
  return url;
}

/** At most this many brokers in one list. */
export const MAX_BROKERS = 16;

/**
 * A list of broker addresses: comma-separated (mqtt://a:1883,mqtts://b:8883), or an array in the
 * client config. Each is checked as checkBrokerUrl does, naming where the list came from and which
 * entry is wrong; duplicates are dropped, the order kept.
 */
export function parseBrokerList(value: string | readonly unknown[], source: string): string[] {
  const items = typeof value === 'string' ? value.split(',') : [...value];
  const urls: string[] = [];
  items.forEach((item, i) => {
    if (typeof item !== 'string') throw new LicdError('CONFIG_INVALID', `entry ${i + 1} of the broker list (from ${source}) is not a string; give URLs like mqtt://licd.local:1883`, { usage: true, source });
    const u = item.trim();
    if (u === '') {
      if (typeof value === 'string' && items.length === 1) throw new LicdError('CONFIG_INVALID', `the broker address (from ${source}) is empty; give one like mqtt://licd.local:1883, or several separated by commas`, { usage: true, source });
      return; // a trailing comma
    }
    const where = items.length > 1 ? `${source}, entry ${i + 1}` : source;
    checkBrokerUrl(u, where);
    if (!urls.includes(u)) urls.push(u);
  });
  if (urls.length === 0) throw new LicdError('CONFIG_INVALID', `the broker list (from ${source}) is empty; give one like mqtt://licd.local:1883, or several separated by commas`, { usage: true, source });
  if (urls.length > MAX_BROKERS) throw new LicdError('CONFIG_INVALID', `the broker list (from ${source}) has ${urls.length} entries; at most ${MAX_BROKERS} are tried`, { usage: true, source });
  return urls;
}

function isLoopbackUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return false;
  }
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * Where the client finds the license server, first match wins:
 * the --broker flag, LICD_BROKER, the client config file (--config, LICD_CLIENT_CONFIG,
 * ~/.config/licd/client.json, /etc/licd/client.json), then mqtt://127.0.0.1:1883.
 * Credentials likewise: --user/--password-file, LICD_MQTT_USER/LICD_MQTT_PASSWORD, the file.
 * For admin commands on a development checkout, ./data/admin.password is used when nothing else
 * gives a password.
 */
export function resolveConnection(opts: {
  broker?: string | undefined;
  configFile?: string | undefined;
  user?: string | undefined;
  passwordFile?: string | undefined;
  /** --fingerprint and --ca. */
  fingerprint?: string | undefined;
  ca?: string | undefined;
  admin?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}): Connection {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const candidates = [opts.configFile, env.LICD_CLIENT_CONFIG, join(homedir(), '.config', 'licd', 'client.json'), '/etc/licd/client.json'];
  let file: { path: string; broker?: string[]; username?: string; password?: string; passwordFile?: string; fingerprint?: string; ca?: string } | null = null;
  for (const c of candidates) {
    if (!c) continue;
    const path = resolve(cwd, c);
    if (!existsSync(path)) {
      if (c === opts.configFile) throw new LicdError('CONFIG_INVALID', `client config: no such file: ${path}; check the path given by --config`);
      continue;
    }
    const raw = readJsonFile(path, 'client config', { fix: 'fix the file, or point --config / LICD_CLIENT_CONFIG elsewhere' });
    const f = Fields.of(raw, path, 'CONFIG_INVALID');
    f.only(['broker', 'username', 'password', 'passwordFile', 'vendorPublicKey', 'fingerprint', 'ca']);
    file = { path };
    // "broker": one URL, several separated by commas, or an array of URLs.
    const rawBroker = (raw as Record<string, unknown>).broker;
    const b = Array.isArray(rawBroker) ? f.optArray('broker', { max: MAX_BROKERS }) : f.optString('broker', { max: 16 * 1024 });
    if (b !== undefined && (typeof b !== 'string' || b !== '')) file.broker = parseBrokerList(b, `"broker" in ${path}`);
    const u = f.optString('username', { max: 64 });
    if (u) file.username = u;
    const p = f.optString('password', { max: 256 });
    if (p) file.password = p;
    const pf = f.optString('passwordFile', { max: 4096 });
    if (pf) file.passwordFile = resolve(path, '..', pf);
    const fp = f.optString('fingerprint', { max: 200 });
    if (fp) file.fingerprint = parseFingerprints(fp, `"fingerprint" in ${path}`);
    const ca = f.optString('ca', { max: 4096 });
    if (ca) file.ca = resolve(path, '..', ca);
    break;
  }
  let urls = [DEFAULT_BROKER];
  let source = 'the default';
  if (opts.broker !== undefined) [urls, source] = [parseBrokerList(opts.broker, '--broker'), '--broker'];
  else if (env.LICD_BROKER) [urls, source] = [parseBrokerList(env.LICD_BROKER, 'LICD_BROKER'), 'LICD_BROKER'];
  else if (file?.broker) [urls, source] = [file.broker, file.path];
  const url = urls[0]!;

  const conn: Connection = { url, urls, source };
  if (source === 'the default') conn.discover = true;
  const readPw = (p: string) => {
    try {
      return readFileSync(resolve(cwd, p), 'utf8').trim();
    } catch (e) {
      throw new LicdError('CONFIG_INVALID', `the password file: ${fsErrorText(e, resolve(cwd, p))}`);
    }
  };
  const username = opts.user ?? env.LICD_MQTT_USER ?? file?.username;
  let password = opts.passwordFile ? readPw(opts.passwordFile) : (env.LICD_MQTT_PASSWORD ?? file?.password ?? (file?.passwordFile ? readPw(file.passwordFile) : undefined));
  if (opts.admin && password === undefined) {
    const dev = resolve(cwd, env.LICD_DATA_DIR ?? 'data', 'admin.password');
    if (existsSync(dev)) password = readPw(dev);
  }
  if (opts.admin || username) conn.username = username ?? 'admin';
  if (password !== undefined && conn.username) conn.password = password;

  // Trust for mqtts://: a pin (--fingerprint, LICD_TLS_FINGERPRINT, the file) and/or a CA file.
  // Several brokers (boxes) have several certificates: a comma-separated list of pins, any of which may match.
  const fingerprint = opts.fingerprint
    ? parseFingerprints(opts.fingerprint, '--fingerprint')
    : env.LICD_TLS_FINGERPRINT
      ? parseFingerprints(env.LICD_TLS_FINGERPRINT, 'LICD_TLS_FINGERPRINT')
      : file?.fingerprint;
  const caFile = opts.ca ? resolve(cwd, opts.ca) : env.LICD_TLS_CA ? resolve(cwd, env.LICD_TLS_CA) : file?.ca;
  if (fingerprint || caFile) {
    conn.tls = {};
    if (fingerprint) conn.tls.fingerprint = fingerprint;
    if (caFile) {
      try {
        conn.tls.ca = readFileSync(caFile, 'utf8');
      } catch (e) {
        throw new LicdError('CONFIG_INVALID', `the CA file (from ${opts.ca ? '--ca' : env.LICD_TLS_CA ? 'LICD_TLS_CA' : file?.path}): ${fsErrorText(e, caFile)}`);
      }
    }
  }
  // Passwords never cross the network in clear: over mqtt:// only to this machine.
  const clear = urls.find((u) => u.startsWith('mqtt:') && !isLoopbackUrl(u));
  if (conn.password !== undefined && clear !== undefined && env.LICD_ALLOW_PLAIN_PASSWORD !== '1') {
    throw new LicdError(
      'CONFIG_INVALID',
      `refusing to send the password of ${JSON.stringify(conn.username)} in clear to ${clear} (from ${source}): use the server's TLS listener, mqtts://${new URL(clear).hostname}:8883, with --fingerprint (the fingerprint the box shows) or --ca FILE. On a network you trust, LICD_ALLOW_PLAIN_PASSWORD=1 allows it`,
    );
  }
  return conn;
}

/** One pin, or several separated by commas (one per box of a list of brokers); kept as a comma-separated string. */
function parseFingerprints(s: string, from: string): string {
  const pins = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (pins.length === 0) return parseFingerprint(s, from);
  return pins.map((p) => parseFingerprint(p, from)).join(',');
}

/**
 * The vendor public key a client verifies tokens with (it is built into the client's software;
 * here it is configured): --vendor-key, LICD_VENDOR_KEY, "vendorPublicKey" in the client config;
 * then the key the user pinned for this server (`server`, its broker URL; known-vendors.ts);
 * then, on a development checkout, the development vendor key under ./data/dev (or LICD_DATA_DIR).
 */
export function resolveVendorKey(opts: { flag?: string | undefined; configFile?: string | undefined; server?: string | undefined; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Uint8Array | null {
  const env = opts.env ?? process.env;
  const configured = configuredVendorKey(opts);
  if (configured) return configured.key;
  if (opts.server) {
    const pinned = pinnedVendorKey(opts.server, env);
    if (pinned) return pinned;
  }
  return devVendorPublicKey(opts);
}

/** The vendor key the user configured (--vendor-key, LICD_VENDOR_KEY, "vendorPublicKey"), and where from. */
export function configuredVendorKey(opts: { flag?: string | undefined; configFile?: string | undefined; env?: NodeJS.ProcessEnv; cwd?: string } = {}): { key: Uint8Array; from: string } | null {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const parse = (v: string, from: string) => {
    if (!/^[0-9a-fA-F]{64}$/.test(v)) throw new LicdError('CONFIG_INVALID', `the vendor public key from ${from} must be 64 hex digits`);
    return { key: Uint8Array.from(Buffer.from(v, 'hex')), from };
  };
  if (opts.flag) return parse(opts.flag, '--vendor-key');
  if (env.LICD_VENDOR_KEY) return parse(env.LICD_VENDOR_KEY, 'LICD_VENDOR_KEY');
  for (const c of [opts.configFile, env.LICD_CLIENT_CONFIG, join(homedir(), '.config', 'licd', 'client.json'), '/etc/licd/client.json']) {
    if (!c) continue;
    const path = resolve(cwd, c);
    if (!existsSync(path)) continue;
    try {
      const j = JSON.parse(readFileSync(path, 'utf8')) as { vendorPublicKey?: string };
      if (j.vendorPublicKey) return parse(j.vendorPublicKey, `"vendorPublicKey" in ${path}`);
    } catch (e) {
      if (e instanceof LicdError) throw e;
      /* resolveConnection reports a broken file */
    }
    break;
  }
  return null;
}

/** The development vendor key of a daemon whose data dir is ./data (or LICD_DATA_DIR) here, if any. */
export function devVendorPublicKey(opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Uint8Array | null {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const dev = resolve(cwd, env.LICD_DATA_DIR ?? 'data', 'dev', 'vendor.key');
  if (existsSync(dev)) {
    try {
      const pk = (JSON.parse(readFileSync(dev, 'utf8')) as { publicKey: string }).publicKey;
      if (/^[0-9a-fA-F]{64}$/.test(pk)) return Uint8Array.from(Buffer.from(pk, 'hex'));
    } catch {
      return null;
    }
  }
  return null;
}
