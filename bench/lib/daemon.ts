/**
 * The license material for the benchmark (a vendor key of its own, an emulated dongle, an
 * entitlement with many seats) and the daemon as a child process, exactly as it runs in
 * production: the compiled build (`npm run build`: node dist/src/main.js) with a config file, in
 * non-development mode; or, for comparison, the sources through tsx (`--daemon tsx`).
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EmulatedDongle } from '../../firmware-bridge/emulator/emulated-dongle.ts';
import { toHex } from '../../src/core/bytes.ts';
import { topics } from '../../src/core/protocol.ts';
import type { EntitlementBody } from '../../src/core/entitlement.ts';
import { nodeEd25519, systemRandom } from '../../src/crypto/ed25519.ts';
import { generateVendorKey, issueEntitlement, writeFileAtomic, type VendorKeyFile } from '../../src/vendor.ts';
import type { InstrumentDump } from './instrument-dump.ts';
import { cpuMs, nowMs, rssMiB, sleep, spawnTracked, stopChild, withFileLimit } from './proc.ts';
import { WireClient } from './wire.ts';

export const REPO = resolve(import.meta.dirname, '../..');
const INSTRUMENT = resolve(import.meta.dirname, '../instrument.mjs');
export const FEATURE = 'bench';

/** How the daemon runs: the compiled build (production), or the TypeScript sources through tsx. */
export type DaemonBuild = 'compiled' | 'tsx';

/**
 * The node options licd.service gives the daemon (the V8 heap flags between `/usr/bin/node` and
 * the entry point on its ExecStart line), so the bench runs the compiled daemon as the appliance does.
 * LICD_BENCH_NODE_FLAGS, when set, replaces them (e.g. "" to measure without).
 */
export function unitNodeFlags(): string[] {
  // LICD_BENCH_NODE_FLAGS replaces them for a comparison ("" for none).
  const override = process.env.LICD_BENCH_NODE_FLAGS;
  if (override !== undefined) return override.split(' ').filter(Boolean);
  const unit = readFileSync(join(REPO, 'systemd', 'licd.service'), 'utf8');
  const line = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  const words = line?.slice('ExecStart='.length).trim().split(/\s+/) ?? [];
  const main = words.findIndex((w) => w.endsWith('/dist/src/main.js'));
  if (words[0] !== '/usr/bin/node' || main < 0) throw new Error(`systemd/licd.service: no ExecStart=/usr/bin/node [FLAGS] .../dist/src/main.js line`);
  return words.slice(1, main);
}

/**
 * node's arguments before `--config` for each build, and where its modules are (for instrument.mjs).
 * The compiled build gets the unit's V8 flags; the tsx build runs as `npm start` does, without them.
 */
export function daemonEntry(build: DaemonBuild): { args: string[]; modules: string; ext: string } {
  return build === 'compiled'
    ? { args: [...unitNodeFlags(), join(REPO, 'dist', 'src', 'main.js')], modules: join(REPO, 'dist', 'src'), ext: '.js' }
    : { args: ['--import', 'tsx', join(REPO, 'src', 'main.ts')], modules: join(REPO, 'src'), ext: '.ts' };
}

/**
 * Why the compiled build cannot be benchmarked as it is (null if it can): dist/ missing, or a
 * source file newer than its compiled form. `npm run bench` builds first.
 */
export function staleBuild(): string | null {
  const fix = 'run npm run build (npm run bench does it before the bench), or measure the sources with --daemon tsx';
  if (!existsSync(join(REPO, 'dist', 'src', 'main.js'))) return `no compiled build in dist/: ${fix}`;
  // What tsconfig.build.json leaves out of the compiled tree (the web page's sources and builder: esbuild makes dist/web).
  const excluded = (JSON.parse(readFileSync(join(REPO, 'tsconfig.build.json'), 'utf8')) as { exclude?: string[] }).exclude ?? [];
  for (const top of ['src', 'firmware-bridge']) {
    for (const e of readdirSync(join(REPO, top), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue;
      const src = join(e.parentPath, e.name);
      const rel = src.slice(REPO.length + 1);
      if (excluded.some((x) => rel === x || rel.startsWith(`${x}/`))) continue;
      const js = join(REPO, 'dist', src.slice(REPO.length + 1).replace(/\.ts$/, '.js'));
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(src).mtimeMs) return `dist/ is older than ${src.slice(REPO.length + 1)}: ${fix}`;
    }
  }
  return null;
}

export interface License {
  dir: string;
  vendorPublicKey: string;
  entitlementFile: string;
  dongleStateFile: string;
  dongleSerial: string;
  seats: number;
}

/** The bench's own vendor key (what `licctl vendor keygen` makes). */
export function makeVendorKey(): VendorKeyFile {
  return generateVendorKey(nodeEd25519(), systemRandom, false);
}

/**
 * A new emulated dongle and an entitlement for it (what `licctl vendor issue` makes). Every
 * daemon of the run gets its own: the dongle's monotonic counter binds the borrow state of one
 * database (src/core/integrity.ts), so a second database on the same dongle would be quarantined.
 */
export async function makeLicense(dir: string, seats: number, key: VendorKeyFile): Promise<License> {
  mkdirSync(dir, { recursive: true });
  const ed = nodeEd25519();
  const dongleStateFile = join(dir, 'dongle.json');
  const dongle = await EmulatedDongle.open({ statePath: dongleStateFile });
  const serial = dongle.serial;
  const publicKey = toHex(dongle.publicKey);
  await dongle.close();
  const body: EntitlementBody = {
    id: `BENCH-${Date.now().toString(36).toUpperCase()}`,
    issuedAt: new Date().toISOString(),
    customer: 'licd benchmark',
    dongle: { serial, publicKey, emulated: true },
    features: [
      { name: FEATURE, product: 'Benchmark seat', version: '1.0', seats, expires: null, type: 'render', borrow: { allowed: true, maxHours: 336 } },
    ],
  };
  const entitlementFile = join(dir, 'entitlement.json');
  writeFileAtomic(entitlementFile, JSON.stringify(issueEntitlement(body, key, ed), null, 2) + '\n');
  return { dir, vendorPublicKey: key.publicKey, entitlementFile, dongleStateFile, dongleSerial: serial, seats };
}

export type BrokerSpec = { kind: 'external'; url: string; username: string; password: string } | { kind: 'embedded'; port: number };

export interface DaemonOptions {
  license: License;
  dataDir: string;
  broker: BrokerSpec;
  leases?: Record<string, number>;
  /** Sockets the daemon may hold (the embedded broker holds one per client). */
  maxSockets?: number;
  /** The daemon's log level; info (the default) logs every grant. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Load bench/instrument.mjs into the daemon, for probe(). */
  instrument?: boolean;
  /** The compiled build (default) or the sources through tsx. */
  build?: DaemonBuild;
  /** JSON log lines carry a time, for startup timings (logTimes). */
  logFormat?: 'text' | 'json';
  /** false: usage history and the audit log off (history.enabled, audit.enabled), for the on/off figure (issue 14). */
  history?: boolean;
  /** A sharing policy (docs/policy.md) to load: written to the data dir's policy.txt, where licd reads it. */
  policy?: string;
}

export interface DaemonProc {
  child: ChildProcess;
  pid: number;
  url: string;
  dataDir: string;
  logFile: string;
  spawnedAt: number;
  cpuMs(): number;
  rssMiB(): number;
  /** With `instrument`: what the daemon saw since the last probe (the first call starts the window). */
  probe(): Promise<InstrumentDump | null>;
  stop(): Promise<void>;
}

/** Writes the config and spawns `node dist/src/main.js` (or `node --import tsx src/main.ts`): node itself, so the pid is the daemon's. */
export function spawnDaemon(o: DaemonOptions): DaemonProc {
  mkdirSync(o.dataDir, { recursive: true });
  const config = {
    development: false,
    vendorPublicKey: o.license.vendorPublicKey,
    entitlementFile: o.license.entitlementFile,
    mqtt:
      o.broker.kind === 'external'
        ? { broker: 'external', url: o.broker.url, username: o.broker.username, password: o.broker.password }
        : { broker: 'embedded', host: '127.0.0.1', port: o.broker.port },
    dongle: { transport: 'emulated', stateFile: o.license.dongleStateFile },
    ...(o.leases ? { leases: o.leases } : {}),
    ...(o.logFormat ? { log: { format: o.logFormat } } : {}),
    ...(o.history === false ? { history: { enabled: false }, audit: { enabled: false } } : {}),
  };
  const configFile = join(o.dataDir, 'licd.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n');
  if (o.policy !== undefined) writeFileSync(join(o.dataDir, 'policy.txt'), o.policy);
  const logFile = join(o.dataDir, 'licd.log');
  // The log goes to a file, as it would to journald: every grant is logged at info.
  const fd = openSync(logFile, 'a');
  // LICD_BENCH_DAEMON_ARGS adds node options to the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const extra = (process.env.LICD_BENCH_DAEMON_ARGS ?? '').split(' ').filter(Boolean);
  const probeFile = join(o.dataDir, 'instrument.json');
  const entry = daemonEntry(o.build ?? 'compiled');
  // tsx's hooks first (the tsx build), then the probes, then the daemon.
  const [pre, main] = [entry.args.slice(0, -1), entry.args.at(-1)!];
  if (o.instrument) extra.push('--import', INSTRUMENT);
  const { cmd, args } = withFileLimit(process.execPath, [...pre, ...extra, main, '--config', configFile], (o.maxSockets ?? 1000) + 256);
  const spawnedAt = nowMs();
  const child = spawnTracked(cmd, args, {
    cwd: REPO,
    env: { ...process.env, LICD_DATA_DIR: o.dataDir, LICD_LOG_LEVEL: o.logLevel ?? 'info', ...(o.instrument ? { LICD_BENCH_INSTRUMENT_OUT: probeFile, LICD_BENCH_MODULES: entry.modules, LICD_BENCH_MODULE_EXT: entry.ext } : {}) },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const url = o.broker.kind === 'external' ? o.broker.url : `mqtt://127.0.0.1:${o.broker.port}`;
  const pid = child.pid!;
  return {
    child,
    pid,
    url,
    dataDir: o.dataDir,
    logFile,
    spawnedAt,
    cpuMs: () => cpuMs(pid),
    rssMiB: () => rssMiB(pid),
    probe: async () => {
      if (!o.instrument) return null;
      rmSync(probeFile, { force: true });
      child.kill('SIGUSR2');
      for (let i = 0; i < 100; i++) {
        await sleep(20);
        if (existsSync(probeFile)) return JSON.parse(readFileSync(probeFile, 'utf8')) as InstrumentDump;
      }
      return null;
    },
    stop: () => stopChild(child, 15_000),
  };
}

/** The time (epoch ms) of the first JSON log line whose message starts with each of `messages`. */
export function logTimes(logFile: string, messages: string[]): Record<string, number | null> {
  const out: Record<string, number | null> = Object.fromEntries(messages.map((m) => [m, null]));
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { time?: string; msg?: string };
      for (const m of messages) if (out[m] === null && j.msg?.startsWith(m) && j.time) out[m] = Date.parse(j.time);
    } catch {
      /* not a log line */
    }
  }
  return out;
}

/**
 * Waits until the daemon answers a request (status by default); returns the time from spawn.
 * The probe connects again and again while the broker is not there yet (the embedded broker
 * starts with the daemon), watches the retained server state until this daemon says "online"
 * (it subscribes to requests before it publishes that, on the same connection), then asks, and
 * asks again every 500 ms until answered.
 */
export async function waitServing(d: DaemonProc, timeoutMs: number, op = 'status', params: Record<string, unknown> = {}): Promise<{ ms: number; bytes: number }> {
  const deadline = Date.now() + timeoutMs;
  let exit: string | null = null;
  d.child.once('exit', (code, sig) => (exit = `the daemon exited (${code ?? sig}) before serving; see ${d.logFile}`));
  const spawnedWall = d.spawnedAt;
  let attempt = 0;
  while (Date.now() < deadline) {
    if (exit) throw new Error(exit);
    const w = new WireClient({ url: d.url, clientId: `bench-probe-${process.pid}-${attempt++}` });
    try {
      await w.connect(1000);
    } catch {
      w.mqtt.end(true);
      await sleep(10);
      continue;
    }
    try {
      let online = false;
      w.mqtt.on('message', (topic, payload) => {
        if (topic !== topics.serverState || payload.length === 0) return;
        try {
          const s = JSON.parse(payload.toString('utf8')) as { state?: string; since?: string };
          if (s.state === 'online' && Date.parse(s.since ?? '') >= spawnedWall - 1000) online = true;
        } catch {
          /* not a state */
        }
      });
      await w.mqtt.subscribeAsync(topics.serverState, { qos: 1 });
      while (!online) {
        if (exit) throw new Error(exit);
        if (Date.now() > deadline || !w.mqtt.connected) break;
        await sleep(2);
      }
      if (!online) continue;
      let answered: { ms: number; bytes: number } | null = null;
      let failure: string | null = null;
      const inFlight: Array<Promise<void>> = [];
      while (answered === null && Date.now() < deadline) {
        if (exit) throw new Error(exit);
        if (failure !== null) throw new Error(`the daemon refused ${op}: ${failure}`);
        const p = w.request(op, params).then((o) => {
          if (o.ok) answered ??= { ms: o.doneAt - d.spawnedAt, bytes: o.bytes };
          else if (o.code !== 'TIMEOUT' && o.code !== 'SHUTTING_DOWN') failure ??= o.code;
        });
        inFlight.push(p);
        await Promise.race([sleep(500), p]);
      }
      if (answered !== null) return answered;
    } finally {
      w.expire(Number.POSITIVE_INFINITY, 0);
      await w.end();
    }
  }
  throw new Error(exit ?? `the daemon did not answer ${op} within ${timeoutMs} ms; see ${d.logFile}`);
}
