import { parseJsonFile, readTextFile } from './files.ts';
import { isAbsolute, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { LicdError } from './core/errors.ts';
import { defaultLeasePolicy, type LeasePolicy } from './core/service.ts';
import { defaultBorrowPolicy, parseLimits, type BorrowLimits, type BorrowPolicy } from './core/borrowing.ts';
import { Fields } from './core/validate.ts';
import { defaultTlsFiles, parseFingerprint } from './mqtt/tls.ts';
import { defaultHistoryConfig, type HistoryConfig } from './history/history.ts';

export type DongleConfig =
  | { transport: 'emulated'; stateFile: string | null; serial: string | null }
  | { transport: 'tcp'; host: string; port: number }
  | { transport: 'serial'; path: string; baudRate: number }
  | { transport: 'hid'; vendorId: number; productId: number; path: string | null };

export interface Config {
  /** Where the database, development material and admin password live. */
  dataDir: string;
  /** Development mode: make a dev vendor key and a demo entitlement on first start. */
  development: boolean;
  vendorPublicKey: string | null;
  entitlementFile: string | null;
  mqtt: {
    /** "embedded": run aedes in-process; "external": connect to a broker such as mosquitto. */
    broker: 'embedded' | 'external';
    host: string;
    port: number;
    /** For an external broker: its URL (mqtt://host:port). */
    url: string | null;
    username: string;
    password: string | null;
    passwordFile: string | null;
    /** 4 = MQTT 3.1.1, 5 = MQTT 5. */
    protocolVersion: 4 | 5;
    /** An external broker's TLS certificate (e.g. /etc/licd/tls/cert.pem): its fingerprint is shown in the server state. */
    brokerCertFile: string | null;
    /** For an mqtts:// mqtt.url: the broker's pinned fingerprint, or a CA file to verify it with. */
    fingerprint: string | null;
    caFile: string | null;
  };
  broker: {
    allowAnonymous: boolean;
    /** File with the password of the "admin" MQTT user of the embedded broker (made on first start). */
    adminPasswordFile: string;
    /** The plain MQTT listener on mqtt.host:mqtt.port; false leaves only the TLS listener. */
    plain: boolean;
    /** The embedded broker's TLS listener (mqtts). */
    tls: {
      enabled: boolean;
      host: string;
      port: number;
      certFile: string;
      keyFile: string;
      /** The files are licd's own (under dataDir/tls): made at first start when absent. */
      selfSigned: boolean;
    };
  };
  dongle: DongleConfig & { presenceIntervalMs: number; timeoutMs: number };
  leases: LeasePolicy;
  /** Borrowing: LM-X's refresh rule, request freshness, and starting limits (admins change them live). */
  borrow: BorrowPolicy & { limits: BorrowLimits | null };
  limits: { maxPayloadBytes: number };
  /** Clock integrity: how far the clock may step back without an alarm (NTP corrections pass). */
  clock: { toleranceSeconds: number };
  log: { level: 'debug' | 'info' | 'warn' | 'error'; format: 'text' | 'json' };
  /**
   * Who a render node's user is. By default, what the client says (LICD_USER): per-user borrow
   * limits are then advisory. With requireLogin, render nodes must log in to the broker, and the
   * login is the user (systemd/README.md, "User identity").
   */
  identity: {
    requireLogin: boolean;
    /** Embedded broker: the render-node logins, a mosquitto password file (mosquitto_passwd). */
    usersFile: string | null;
  };
  /** Online activation (docs/activation.md): the vendor's activation service, e.g. https://licenses.example.com. */
  activation: { url: string | null };
  /** Usage history and reports (docs/history.md): retention, working hours, advice, groups. */
  history: HistoryConfig;
  /**
   * The tamper-evident audit log (docs/audit.md): on by default; its head is sealed (signed with
   * the session key) every sealIntervalSeconds when something was appended, and at every admin
   * action; at most maxPending events wait in memory for a write.
   */
  audit: { enabled: boolean; sealIntervalSeconds: number; maxPending: number };
  /**
   * licd's HTTP server (docs/monitoring.md): /metrics and /healthz, later the web page. Loopback by
   * default; host 0.0.0.0 (or the box's LAN address) lets a Prometheus on the LAN scrape it.
   */
  http: { enabled: boolean; host: string; port: number };
  /**
   * Alerts (docs/monitoring.md): how long a feature may sit at its limit before it is an alert, and
   * whom to tell: a program run with the alert as JSON on stdin (argv, no shell), or a webhook URL.
   */
  alerts: { atLimitMinutes: number; command: string[] | null; webhook: string | null; timeoutSeconds: number };
  /** Sharing seats by policy (docs/policy.md): the policy file, read at start and on SIGHUP, written by licctl policy set. */
  policy: { file: string };
  /**
   * Discovery (docs/scale-out.md): the box answers mDNS/DNS-SD queries for _licd._tcp with its
   * broker's address, so that render nodes with no broker configured find it. On by default
   * outside development mode (LICD_DISCOVERY=0/1 overrides); name is the server id it announces
   * (the host name by default); urls, when set, are announced instead of the listener's ports.
   */
  discovery: { enabled: boolean; name: string; urls: string[] | null };
  /**
   * Several boxes on one broker cluster (docs/scale-out.md): this box's server id. Set, every
   * topic of this box is under licd/v1/s/<serverId>/; unset (a lone box), under licd/v1/ as
   * always. Needs an external broker (mosquitto bridged to the other boxes' brokers).
   */
  cluster: { serverId: string | null };
  /**
   * The web page (docs/web.md) on licd's HTTP server, and its MQTT-over-WebSocket bridge at /mqtt.
   * https: the HTTP server speaks HTTPS with the embedded broker's certificate (default: on when
   * broker.tls is on). anonymous: a visitor who does not sign in may watch the page read-only
   * (off by default). Admins sign in only over HTTPS or from this machine.
   */
  web: {
    enabled: boolean;
    https: boolean;
    anonymous: boolean;
    maxConnections: number;
    maxFrameBytes: number;
    /** External broker: the listener the bridge relays to (default mqtt.url); mqtts:// for mosquitto's TLS listener, where admins log in. */
    brokerUrl: string | null;
    /** External broker: the certificate and key (PEM) of the HTTPS server, e.g. the box's /etc/licd/tls files. */
    certFile: string | null;
    keyFile: string | null;
  };
  /**
   * A failover box (docs/scale-out.md, "Failover server"): the vendor-signed failover entitlement
   * that lets this box serve another box's seats while that box is offline. Needs cluster.serverId.
   */
  failover: { entitlementFile: string | null };
}

/** Settings and whether changing them needs a restart (all do today; documented in README). */
export const CONFIG_FIELDS = ['dataDir', 'development', 'vendorPublicKey', 'entitlementFile', 'mqtt', 'broker', 'dongle', 'leases', 'borrow', 'limits', 'clock', 'log', 'identity', 'activation', 'history', 'audit', 'http', 'alerts', 'policy', 'discovery', 'cluster', 'web', 'failover'] as const;

function bad(field: string, message: string): never {
  throw new LicdError('CONFIG_INVALID', `config: ${field} ${message}`, { field });
}

/**
 * Builds the configuration from a JSON file (optional), environment overrides and defaults.
 * Every problem names the field and the fix.
 */
export function loadConfig(opts: { file?: string | null; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const file = opts.file ?? env.LICD_CONFIG ?? null;
  let raw: unknown = {};
  let base = cwd;
  if (file) {
    const path = resolve(cwd, file);
    base = resolve(path, '..');
    const text = readTextFile(path, 'config', { fix: `check the path given by ${opts.file ? '--config' : 'LICD_CONFIG'}` });
    raw = parseJsonFile(text, path, 'config', { fix: 'fix the syntax' });
  }
  return parseConfig(raw, env, base);
}

export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = {}, base = process.cwd()): Config {
  try {
    return parseConfigFields(raw, env, base);
  } catch (e) {
    if (e instanceof LicdError && !e.message.startsWith('config') && !e.message.startsWith('LICD_')) {
      throw new LicdError('CONFIG_INVALID', `config: ${e.message}`, e.details);
    }
    throw e;
  }
}

function parseConfigFields(raw: unknown, env: NodeJS.ProcessEnv, base: string): Config {
  const f = Fields.of(raw, '', 'CONFIG_INVALID');
  f.only(CONFIG_FIELDS);
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  const dataDir = path(env.LICD_DATA_DIR ?? f.optString('dataDir', { max: 4096 }) ?? './data');
  const entitlementFile = f.optString('entitlementFile', { max: 4096 });
  const vendorPublicKey = f.optString('vendorPublicKey', { max: 64, pattern: /^[0-9a-fA-F]{64}$/, patternHelp: '64 hex digits (the vendor Ed25519 public key)' });
  const development = f.optBool('development') ?? !entitlementFile;
  if (!development) {
    if (!entitlementFile) bad('entitlementFile', 'is required outside development mode: give the path of the license file from the vendor');
    if (!vendorPublicKey) bad('vendorPublicKey', 'is required outside development mode: give the vendor public key (64 hex digits)');
  }

  const m = f.optObject('mqtt') ?? Fields.of({}, 'mqtt', 'CONFIG_INVALID');
  m.only(['broker', 'host', 'port', 'url', 'username', 'password', 'passwordFile', 'protocolVersion', 'brokerCertFile', 'fingerprint', 'caFile']);
  const brokerKind = (env.LICD_MQTT_URL ? 'external' : undefined) ?? m.optOneOf('broker', ['embedded', 'external'] as const) ?? 'embedded';
  const port = env.LICD_MQTT_PORT !== undefined ? envInt('LICD_MQTT_PORT', env.LICD_MQTT_PORT, 0, 65535) : (m.optInt('port', { min: 0, max: 65535 }) ?? 1883);
  const url = env.LICD_MQTT_URL ?? m.optString('url', { max: 1024, pattern: /^mqtts?:\/\/./, patternHelp: 'a URL like mqtt://127.0.0.1:1883' }) ?? null;
  if (brokerKind === 'external' && !url) bad('mqtt.url', 'is required when mqtt.broker is "external": give the broker URL, e.g. mqtt://127.0.0.1:1883');
  const pv = m.optInt('protocolVersion', { min: 4, max: 5 }) ?? 4;

  const b = f.optObject('broker') ?? Fields.of({}, 'broker', 'CONFIG_INVALID');
  b.only(['allowAnonymous', 'adminPasswordFile', 'plain', 'tls']);
  const host = env.LICD_MQTT_HOST ?? m.optString('host', { max: 255 }) ?? '127.0.0.1';
  const tls = parseBrokerTls(b, host, dataDir, path);
  const plain = b.optBool('plain') ?? true;
  if (!plain && !tls.enabled) bad('broker.plain', 'is false but broker.tls.enabled is not true: the embedded broker would have no listener; enable broker.tls or drop broker.plain');
  if (brokerKind === 'external' && (tls.enabled || !plain)) {
    bad(tls.enabled ? 'broker.tls' : 'broker.plain', 'applies to the embedded broker only; an external broker (mosquitto) has its own TLS listener (systemd/README.md); set mqtt.brokerCertFile to show its fingerprint');
  }
  const fingerprint = m.optString('fingerprint', { max: 200 });
  const optPath = (fl: Fields, k: string) => {
    const p = fl.optString(k, { max: 4096 });
    return p ? path(p) : null;
  };

  const d = f.optObject('dongle') ?? Fields.of({}, 'dongle', 'CONFIG_INVALID');
  const dongle = parseDongle(d, env.LICD_DONGLE, path);

  const l = f.optObject('leases') ?? Fields.of({}, 'leases', 'CONFIG_INVALID');
  l.only(Object.keys(defaultLeasePolicy));
  const leases: LeasePolicy = {
    ttlSeconds: l.optInt('ttlSeconds', { min: 3, max: 86400 }) ?? defaultLeasePolicy.ttlSeconds,
    minTtlSeconds: l.optInt('minTtlSeconds', { min: 1, max: 86400 }) ?? defaultLeasePolicy.minTtlSeconds,
    maxTtlSeconds: l.optInt('maxTtlSeconds', { min: 1, max: 86400 * 7 }) ?? defaultLeasePolicy.maxTtlSeconds,
    disconnectGraceSeconds: l.optInt('disconnectGraceSeconds', { min: 0, max: 3600 }) ?? defaultLeasePolicy.disconnectGraceSeconds,
    dongleGraceSeconds: l.optInt('dongleGraceSeconds', { min: 0, max: 86400 * 30 }) ?? defaultLeasePolicy.dongleGraceSeconds,
  };
  if (leases.minTtlSeconds > leases.maxTtlSeconds) bad('leases.minTtlSeconds', `(${leases.minTtlSeconds}) must not be above leases.maxTtlSeconds (${leases.maxTtlSeconds})`);
  if (leases.ttlSeconds < leases.minTtlSeconds || leases.ttlSeconds > leases.maxTtlSeconds) {
    bad('leases.ttlSeconds', `(${leases.ttlSeconds}) must be between leases.minTtlSeconds (${leases.minTtlSeconds}) and leases.maxTtlSeconds (${leases.maxTtlSeconds})`);
  }

  const bo = f.optObject('borrow') ?? Fields.of({}, 'borrow', 'CONFIG_INVALID');
  bo.only([...Object.keys(defaultBorrowPolicy), 'limits']);
  const borrow: Config['borrow'] = {
    refreshOnReconnect: bo.optBool('refreshOnReconnect') ?? defaultBorrowPolicy.refreshOnReconnect,
    refreshMinAgeMinutes: bo.optInt('refreshMinAgeMinutes', { min: 0, max: 525_600 }) ?? defaultBorrowPolicy.refreshMinAgeMinutes,
    requestMaxAgeMinutes: bo.optInt('requestMaxAgeMinutes', { min: 1, max: 1440 }) ?? defaultBorrowPolicy.requestMaxAgeMinutes,
    fileRequestMaxAgeHours: bo.optInt('fileRequestMaxAgeHours', { min: 1, max: 8760 }) ?? defaultBorrowPolicy.fileRequestMaxAgeHours,
    limits: bo.has('limits') ? parseLimitsConfig(bo.raw('limits')) : null,
  };

  const lim = f.optObject('limits') ?? Fields.of({}, 'limits', 'CONFIG_INVALID');
  lim.only(['maxPayloadBytes']);
  const ck = f.optObject('clock') ?? Fields.of({}, 'clock', 'CONFIG_INVALID');
  ck.only(['toleranceSeconds']);
  const clock = { toleranceSeconds: ck.optInt('toleranceSeconds', { min: 10, max: 86400 }) ?? 300 };
  const lg = f.optObject('log') ?? Fields.of({}, 'log', 'CONFIG_INVALID');
  lg.only(['level', 'format']);
  const id = f.optObject('identity') ?? Fields.of({}, 'identity', 'CONFIG_INVALID');
  id.only(['requireLogin', 'usersFile']);
  const usersFile = id.optString('usersFile', { max: 4096 });
  if (usersFile && brokerKind === 'external') {
    bad('identity.usersFile', "is for the embedded broker; with an external broker add the render nodes' users to its own password file (mosquitto: password_file, see systemd/README.md)");
  }
  const ac = f.optObject('activation') ?? Fields.of({}, 'activation', 'CONFIG_INVALID');
  ac.only(['url']);
  const activationUrl = env.LICD_ACTIVATION_URL ?? ac.optString('url', { max: 2048 }) ?? null;
  if (activationUrl !== null && !/^https?:\/\/[^\s/]+/.test(activationUrl)) {
    bad(env.LICD_ACTIVATION_URL !== undefined ? 'LICD_ACTIVATION_URL' : 'activation.url', `must be an http:// or https:// URL of the vendor's activation service, got ${JSON.stringify(activationUrl)}`);
  }
  const au = f.optObject('audit') ?? Fields.of({}, 'audit', 'CONFIG_INVALID');
  au.only(['enabled', 'sealIntervalSeconds', 'maxPending']);
  const audit = {
    enabled: au.optBool('enabled') ?? true,
    sealIntervalSeconds: au.optInt('sealIntervalSeconds', { min: 1, max: 86400 }) ?? 60,
    maxPending: au.optInt('maxPending', { min: 100, max: 1_000_000 }) ?? 10_000,
  };
  const po = f.optObject('policy') ?? Fields.of({}, 'policy', 'CONFIG_INVALID');
  po.only(['file']);
  const policyFile = path(po.optString('file', { max: 4096 }) ?? resolve(dataDir, 'policy.txt'));
  const envLevel = env.LICD_LOG_LEVEL;
  if (envLevel !== undefined && !['debug', 'info', 'warn', 'error'].includes(envLevel)) {
    throw new LicdError('CONFIG_INVALID', `LICD_LOG_LEVEL must be one of debug, info, warn, error, got ${JSON.stringify(envLevel)}`, { field: 'LICD_LOG_LEVEL' });
  }

  return {
    dataDir,
    development,
    vendorPublicKey: vendorPublicKey ?? null,
    entitlementFile: entitlementFile ? path(entitlementFile) : null,
    mqtt: {
      broker: brokerKind,
      host,
      port,
      url,
      username: m.optString('username', { max: 64 }) ?? 'licd',
      password: env.LICD_MQTT_PASSWORD ?? m.optString('password', { max: 256 }) ?? null,
      passwordFile: (() => {
        const p = m.optString('passwordFile', { max: 4096 });
        return p ? path(p) : null;
      })(),
      protocolVersion: pv as 4 | 5,
      brokerCertFile: optPath(m, 'brokerCertFile'),
      fingerprint: fingerprint ? parseFingerprintField(fingerprint) : null,
      caFile: optPath(m, 'caFile'),
    },
    broker: {
      allowAnonymous: b.optBool('allowAnonymous') ?? true,
      adminPasswordFile: path(b.optString('adminPasswordFile', { max: 4096 }) ?? resolve(dataDir, 'admin.password')),
      plain,
      tls,
    },
    dongle,
    leases,
    borrow,
    limits: { maxPayloadBytes: lim.optInt('maxPayloadBytes', { min: 1024, max: 16 * 1024 * 1024 }) ?? 64 * 1024 },
    clock,
    log: {
      level: (envLevel as Config['log']['level'] | undefined) ?? lg.optOneOf('level', ['debug', 'info', 'warn', 'error'] as const) ?? 'info',
      format: lg.optOneOf('format', ['text', 'json'] as const) ?? 'text',
    },
    identity: { requireLogin: id.optBool('requireLogin') ?? false, usersFile: usersFile ? path(usersFile) : null },
    activation: { url: activationUrl },
    history: parseHistory(f.optObject('history') ?? Fields.of({}, 'history', 'CONFIG_INVALID')),
    audit,
    http: parseHttp(f, env),
    alerts: parseAlerts(f),
    policy: { file: policyFile },
    discovery: parseDiscovery(f, env, development),
    cluster: parseCluster(f, brokerKind),
    web: parseWeb(f, brokerKind, tls.enabled, path),
    failover: parseFailover(f, path),
  };
}

/** The `failover` section (docs/scale-out.md, "Failover server"). */
function parseFailover(f: Fields, path: (p: string) => string): Config['failover'] {
  const o = f.optObject('failover') ?? Fields.of({}, 'failover', 'CONFIG_INVALID');
  o.only(['entitlementFile']);
  const file = o.optString('entitlementFile', { max: 4096 }) ?? null;
  if (file !== null && !(f.optObject('cluster')?.optString('serverId', { max: 32 }) ?? null)) {
    bad('failover.entitlementFile', "needs cluster.serverId: a failover box watches the primary box's state on the cluster's topics (docs/scale-out.md)");
  }
  return { entitlementFile: file !== null ? path(file) : null };
}

function parseWeb(f: Fields, brokerKind: 'embedded' | 'external', brokerTls: boolean, path: (p: string) => string): Config['web'] {
  const w = f.optObject('web') ?? Fields.of({}, 'web', 'CONFIG_INVALID');
  w.only(['enabled', 'https', 'anonymous', 'maxConnections', 'maxFrameBytes', 'brokerUrl', 'certFile', 'keyFile']);
  const certFile = w.optString('certFile', { max: 4096 });
  const keyFile = w.optString('keyFile', { max: 4096 });
  if ((certFile === undefined) !== (keyFile === undefined)) bad(certFile ? 'web.keyFile' : 'web.certFile', 'is needed with the other: give both web.certFile and web.keyFile (PEM), or neither');
  if (certFile && brokerKind === 'embedded') bad('web.certFile', "is for an external broker; with the embedded broker the page's HTTPS uses broker.tls's certificate");
  const brokerUrl = w.optString('brokerUrl', { max: 2048 }) ?? null;
  if (brokerUrl !== null) {
    if (brokerKind === 'embedded') bad('web.brokerUrl', 'is for an external broker; the embedded broker serves the page itself');
    if (!/^mqtts?:\/\/[^\s/]+/.test(brokerUrl)) bad('web.brokerUrl', `must be an mqtt:// or mqtts:// URL of the broker's listener, got ${JSON.stringify(brokerUrl)}`);
  }
  const canHttps = brokerKind === 'embedded' ? brokerTls : certFile !== undefined;
  const https = w.optBool('https') ?? canHttps;
  if (https && !canHttps) {
    bad('web.https', brokerKind === 'embedded' ? "needs the embedded broker's certificate: turn on broker.tls (its certificate and key serve HTTPS too), or set web.https false" : 'needs web.certFile and web.keyFile with an external broker, or set web.https false');
  }
  return {
    enabled: w.optBool('enabled') ?? true,
    https,
    anonymous: w.optBool('anonymous') ?? false,
    maxConnections: w.optInt('maxConnections', { min: 1, max: 1000 }) ?? 32,
    maxFrameBytes: w.optInt('maxFrameBytes', { min: 4096, max: 16 * 1024 * 1024 }) ?? 256 * 1024,
    brokerUrl,
    certFile: certFile ? path(certFile) : null,
    keyFile: keyFile ? path(keyFile) : null,
  };
}

/** The `cluster` section (docs/scale-out.md, "Several boxes"). */
function parseCluster(f: Fields, brokerKind: 'embedded' | 'external'): Config['cluster'] {
  const c = f.optObject('cluster') ?? Fields.of({}, 'cluster', 'CONFIG_INVALID');
  c.only(['serverId']);
  const serverId = c.optString('serverId', { max: 32, pattern: /^[a-z0-9][a-z0-9-]*$/, patternHelp: 'lower-case letters, digits and -, such as box-a (it stands in MQTT topics)' }) ?? null;
  if (serverId !== null && brokerKind !== 'external') bad('cluster.serverId', 'needs an external broker (mqtt.broker "external": the box\'s mosquitto, bridged to the other boxes\' brokers as docs/scale-out.md shows)');
  return { serverId };
}

/** The `discovery` section (docs/scale-out.md, "Discovery"). */
function parseDiscovery(f: Fields, env: NodeJS.ProcessEnv, development: boolean): Config['discovery'] {
  const d = f.optObject('discovery') ?? Fields.of({}, 'discovery', 'CONFIG_INVALID');
  d.only(['enabled', 'name', 'urls']);
  let enabled = d.optBool('enabled') ?? !development;
  if (env.LICD_DISCOVERY !== undefined) {
    if (env.LICD_DISCOVERY !== '0' && env.LICD_DISCOVERY !== '1') throw new LicdError('CONFIG_INVALID', `LICD_DISCOVERY must be 0 (off) or 1 (on), got ${JSON.stringify(env.LICD_DISCOVERY)}`, { field: 'LICD_DISCOVERY' });
    enabled = env.LICD_DISCOVERY === '1';
  }
  const name = d.optString('name', { max: 63, pattern: /^[A-Za-z0-9][A-Za-z0-9-]*$/, patternHelp: 'a DNS label: letters, digits and -, such as licd-a' }) ?? (hostname().replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+/, '').slice(0, 63) || 'licd');
  const raw = d.optArray('urls', { max: 16 });
  const urls = raw?.map((u, i) => {
    if (typeof u !== 'string' || !/^mqtts?:\/\/[^\s,/?#@]+(:\d{1,5})?\/?$/.test(u)) d.fail(`urls[${i}]`, `must be a broker URL like mqtt://licd-a.studio.lan:1883 or mqtts://10.0.0.5:8883, got ${JSON.stringify(u)}`);
    return u as string;
  }) ?? null;
  if (urls !== null && urls.length === 0) bad('discovery.urls', 'is empty: give the broker URLs to announce, or leave it out to announce the listener\'s ports');
  return { enabled, name, urls };
}

/** The fixed default port of licd's HTTP server (docs/monitoring.md says why this one). */
export const DEFAULT_HTTP_PORT = 9136;

function parseHttp(f: Fields, env: NodeJS.ProcessEnv): Config['http'] {
  const h = f.optObject('http') ?? Fields.of({}, 'http', 'CONFIG_INVALID');
  h.only(['enabled', 'host', 'port']);
  const port = env.LICD_HTTP_PORT !== undefined ? envInt('LICD_HTTP_PORT', env.LICD_HTTP_PORT, 0, 65535) : (h.optInt('port', { min: 0, max: 65535 }) ?? DEFAULT_HTTP_PORT);
  return { enabled: h.optBool('enabled') ?? true, host: env.LICD_HTTP_HOST ?? h.optString('host', { max: 255 }) ?? '127.0.0.1', port };
}

function parseAlerts(f: Fields): Config['alerts'] {
  const a = f.optObject('alerts') ?? Fields.of({}, 'alerts', 'CONFIG_INVALID');
  a.only(['atLimitMinutes', 'command', 'webhook', 'timeoutSeconds']);
  let command: string[] | null = null;
  if (a.has('command')) {
    const raw = a.raw('command');
    const list: unknown[] = Array.isArray(raw) ? raw : [];
    if (list.length === 0 || list.length > 64 || !list.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 4096)) {
      bad('alerts.command', 'must be a list of strings: the program and its arguments, run without a shell, e.g. ["/usr/local/bin/notify-admins", "--licd"]');
    }
    command = list as string[];
  }
  const webhook = a.optString('webhook', { max: 2048 }) ?? null;
  if (webhook !== null && !/^https?:\/\/[^\s/]+/.test(webhook)) bad('alerts.webhook', `must be an http:// or https:// URL, got ${JSON.stringify(webhook)}`);
  return {
    atLimitMinutes: a.optInt('atLimitMinutes', { min: 1, max: 10_080 }) ?? 15,
    command,
    webhook,
    timeoutSeconds: a.optInt('timeoutSeconds', { min: 1, max: 300 }) ?? 10,
  };
}

/** The `history` section (docs/history.md, "Settings"). */
function parseHistory(h: Fields): HistoryConfig {
  const d = defaultHistoryConfig;
  h.only(['enabled', 'minuteDays', 'hourDays', 'dayDays', 'sessionDays', 'maxRows', 'trueDenialMinutes', 'workingHours', 'advice', 'groups', 'maxReportRows']);
  const retention = {
    minuteDays: h.optInt('minuteDays', { min: 1, max: 366 }) ?? d.retention.minuteDays,
    hourDays: h.optInt('hourDays', { min: 1, max: 3660 }) ?? d.retention.hourDays,
    dayDays: h.optInt('dayDays', { min: 1, max: 36600 }) ?? d.retention.dayDays,
    sessionDays: h.optInt('sessionDays', { min: 1, max: 36600 }) ?? d.retention.sessionDays,
    maxRows: h.optInt('maxRows', { min: 10_000, max: 100_000_000 }) ?? d.retention.maxRows,
  };
  if (retention.hourDays < retention.minuteDays) bad('history.hourDays', `(${retention.hourDays}) must not be below history.minuteDays (${retention.minuteDays}): minutes become hours first`);
  if (retention.dayDays < retention.hourDays) bad('history.dayDays', `(${retention.dayDays}) must not be below history.hourDays (${retention.hourDays})`);
  const clock = (x: Fields, k: string, dflt: number): number => {
    const v = x.optString(k, { max: 5, pattern: /^([01]\d|2[0-4]):[0-5]\d$/, patternHelp: 'a local time HH:MM such as 09:00' });
    if (v === undefined) return dflt;
    const m = Number(v.slice(0, 2)) * 60 + Number(v.slice(3));
    if (m > 1440) x.fail(k, 'must be 24:00 at the latest');
    return m;
  };
  const w = h.optObject('workingHours') ?? Fields.of({}, 'history.workingHours', 'CONFIG_INVALID');
  w.only(['days', 'start', 'end']);
  const days = (w.optArray('days', { max: 7 }) ?? d.workingHours.days).map((x, i): number => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 7) w.fail(`days[${i}]`, 'must be a weekday number: 1 Monday ... 7 Sunday');
    return x as number;
  });
  const workingHours = { days, start: clock(w, 'start', d.workingHours.start), end: clock(w, 'end', d.workingHours.end) };
  if (workingHours.start >= workingHours.end) bad('history.workingHours.end', 'must be after history.workingHours.start (same day, local time)');
  const a = h.optObject('advice') ?? Fields.of({}, 'history.advice', 'CONFIG_INVALID');
  a.only(['days', 'atLimitPercent', 'minCoveragePercent']);
  const advice = {
    days: a.optInt('days', { min: 1, max: 366 }) ?? d.advice.days,
    atLimitPercent: a.optNumber('atLimitPercent', { min: 0.1, max: 100 }) ?? d.advice.atLimitPercent,
    minCoveragePercent: a.optNumber('minCoveragePercent', { min: 0, max: 100 }) ?? d.advice.minCoveragePercent,
  };
  let groups: Record<string, string[]> | null = null;
  const g = h.optObject('groups');
  if (g) {
    groups = {};
    for (const name of g.keys()) {
      groups[name] = g.array(name, { max: 100_000 }).map((u, i): string => {
        if (typeof u !== 'string' || u.length === 0 || u.length > 64) g.fail(`${name}[${i}]`, 'must be a user name (1 to 64 characters)');
        return u as string;
      });
    }
  }
  return {
    enabled: h.optBool('enabled') ?? d.enabled,
    retention,
    trueDenialMinutes: h.optInt('trueDenialMinutes', { min: 1, max: 1440 }) ?? d.trueDenialMinutes,
    workingHours,
    advice,
    groups,
    maxReportRows: h.optInt('maxReportRows', { min: 10, max: 100_000 }) ?? d.maxReportRows,
  };
}

function parseFingerprintField(v: string): string {
  try {
    return parseFingerprint(v, 'mqtt.fingerprint');
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `config: ${(e as Error).message}`, { field: 'mqtt.fingerprint' });
  }
}

/** broker.tls: off by default; on, it listens on 8883 with licd's own certificate unless given one. */
function parseBrokerTls(b: Fields, mqttHost: string, dataDir: string, path: (p: string) => string): Config['broker']['tls'] {
  const t = b.optObject('tls') ?? Fields.of({}, 'broker.tls', 'CONFIG_INVALID');
  t.only(['enabled', 'host', 'port', 'certFile', 'keyFile']);
  const certFile = t.optString('certFile', { max: 4096 });
  const keyFile = t.optString('keyFile', { max: 4096 });
  if (Boolean(certFile) !== Boolean(keyFile)) {
    bad(certFile ? 'broker.tls.keyFile' : 'broker.tls.certFile', `is needed with broker.tls.${certFile ? 'certFile' : 'keyFile'}: give both files (PEM), or neither for a certificate licd makes itself under ${join(dataDir, 'tls')}`);
  }
  const own = defaultTlsFiles(dataDir);
  return {
    enabled: t.optBool('enabled') ?? false,
    host: t.optString('host', { max: 255 }) ?? mqttHost,
    port: t.optInt('port', { min: 0, max: 65535 }) ?? 8883,
    certFile: certFile ? path(certFile) : own.certFile,
    keyFile: keyFile ? path(keyFile) : own.keyFile,
    selfSigned: !certFile,
  };
}

function parseLimitsConfig(raw: unknown): BorrowLimits {
  try {
    return parseLimits(raw, 'borrow.limits');
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `config: ${(e as Error).message}`, { field: 'borrow.limits' });
  }
}

function envInt(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new LicdError('CONFIG_INVALID', `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`, { field: name });
  }
  return n;
}

/**
 * The dongle: from the config object, or from LICD_DONGLE written as one of
 * "emulated", "tcp:HOST:PORT", "serial:PATH", "hid:VID:PID" (hex ids).
 */
function parseDongle(d: Fields, envSpec: string | undefined, path: (p: string) => string): Config['dongle'] {
  d.only(['transport', 'stateFile', 'serial', 'host', 'port', 'path', 'baudRate', 'vendorId', 'productId', 'presenceIntervalMs', 'timeoutMs']);
  const common = {
    presenceIntervalMs: d.optInt('presenceIntervalMs', { min: 50, max: 60_000 }) ?? 250,
    timeoutMs: d.optInt('timeoutMs', { min: 50, max: 60_000 }) ?? 300,
  };
  if (envSpec !== undefined) {
    const [kind, ...rest] = envSpec.split(':');
    const fail = (): never => {
      throw new LicdError('CONFIG_INVALID', `LICD_DONGLE ${JSON.stringify(envSpec)} is not understood; use emulated, tcp:HOST:PORT, serial:PATH or hid:VID:PID`, { field: 'LICD_DONGLE' });
    };
    if (kind === 'emulated') return { transport: 'emulated', stateFile: null, serial: null, ...common };
    if (kind === 'tcp' && rest.length === 2) {
      const port = Number(rest[1]);
      if (!Number.isInteger(port) || port < 1 || port > 65535) fail();
      return { transport: 'tcp', host: rest[0]!, port, ...common };
    }
    if (kind === 'serial' && rest.length >= 1) return { transport: 'serial', path: rest.join(':'), baudRate: 115200, ...common };
    if (kind === 'hid' && rest.length === 2) {
      const vid = parseInt(rest[0]!, 16);
      const pid = parseInt(rest[1]!, 16);
      if (!Number.isInteger(vid) || !Number.isInteger(pid)) fail();
      return { transport: 'hid', vendorId: vid, productId: pid, path: null, ...common };
    }
    return fail();
  }
  const transport = d.optOneOf('transport', ['emulated', 'tcp', 'serial', 'hid'] as const) ?? 'emulated';
  switch (transport) {
    case 'emulated': {
      const sf = d.optString('stateFile', { max: 4096 });
      return { transport, stateFile: sf ? path(sf) : null, serial: d.optString('serial', { max: 32 }) ?? null, ...common };
    }
    case 'tcp':
      return { transport, host: d.optString('host', { max: 255 }) ?? '127.0.0.1', port: d.int('port', { min: 1, max: 65535 }), ...common };
    case 'serial':
      return { transport, path: d.string('path', { max: 4096 }), baudRate: d.optInt('baudRate', { min: 1200, max: 4_000_000 }) ?? 115200, ...common };
    case 'hid':
      return {
        transport,
        vendorId: d.int('vendorId', { min: 0, max: 0xffff }),
        productId: d.int('productId', { min: 0, max: 0xffff }),
        path: d.optString('path', { max: 4096 }) ?? null,
        ...common,
      };
  }
}
