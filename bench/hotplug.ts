/**
 * npx tsx bench/hotplug.ts [--reps N] [--transport tcp|pty|both] [--presence-ms MS] [--timeout-ms MS] [--json FILE]
 *
 * Hot-plug timings (issue 3): how long after the dongle is pulled the first checkout is refused
 * (target <= 1 s), and how long after it is plugged back the first checkout is granted again
 * (target <= 2 s). Real parts: the daemon in-process with LevelDB and the embedded broker, a
 * client over MQTT, and the emulated dongle as its own process (`licctl dongle emulate`) reached
 * over TCP or over a socat pseudo-terminal pair. The dongle is pulled and plugged with SIGUSR1.
 *
 *   tcp  pulling closes the connection (as a USB unplug makes the tty or hidraw node go away):
 *        the daemon sees the close at once.
 *   pty  an unplugged emulator on a serial line goes silent (a device cannot close the host's
 *        tty): the daemon learns it from an unanswered presence challenge, which is the worst case
 *        (a hung dongle): up to one presence interval plus every attempt of the challenge.
 *
 * Each time runs from the moment the signal is sent to the arrival of the first refused (or
 * granted) checkout answer; the client asks back to back, one request in flight, with a pause of
 * --poll-ms between answers. Between repetitions it waits a random fraction of the presence
 * interval so the pulls fall at every phase of the presence ticker. Targets are shown as met or
 * missed; no number fails the run (exit code 0 unless something broke). Not a test.
 *
 * measureHotplug(opts) is exported for bench/run.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseConfig } from '../src/config.ts';
import { LicdError } from '../src/core/errors.ts';
import { silentLog } from '../src/core/service.ts';
import { startDaemon } from '../src/daemon/daemon.ts';
import { dongleOpener } from '../src/dongle/open.ts';
import { LicdClient } from '../src/sdk/client.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const PULL_TARGET_MS = 1000;
export const PLUG_TARGET_MS = 2000;

export interface HotplugOptions {
  /** Pull/plug cycles per transport. Default 20. */
  reps?: number;
  transport?: 'tcp' | 'pty';
  /** Daemon settings; default: the daemon's own defaults (config.ts). */
  presenceIntervalMs?: number;
  timeoutMs?: number;
  /** Pause between checkout attempts while waiting, ms. Default 5. */
  pollMs?: number;
  /** Give up on one wait after this long (counted as missed). Default 15 s. */
  giveUpMs?: number;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
}

export interface TimingSummary {
  n: number;
  p50: number;
  max: number;
  targetMs: number;
  met: boolean;
}

export interface HotplugResult {
  transport: 'tcp' | 'pty';
  reps: number;
  presenceIntervalMs: number;
  timeoutMs: number;
  pollMs: number;
  /** From SIGUSR1 (pull) to the first checkout answered DONGLE_ABSENT, per repetition, ms. */
  pullToRefusedMs: number[];
  /** From SIGUSR1 (plug) to the first checkout granted, per repetition, ms. */
  plugToGrantedMs: number[];
  pull: TimingSummary;
  plug: TimingSummary;
  /** The refusal message of the last repetition (what a user saw). */
  refusal: string;
}

function summary(samples: number[], targetMs: number): TimingSummary {
  const a = [...samples].sort((x, y) => x - y);
  const n = a.length;
  const p50 = n ? a[Math.ceil(0.5 * n) - 1]! : NaN;
  const max = n ? a[n - 1]! : NaN;
  return { n, p50: round(p50), max: round(max), targetMs, met: n > 0 && Number.isFinite(max) && max <= targetMs };
}

const round = (x: number): number => (Number.isFinite(x) ? Math.round(x * 10) / 10 : x);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  child: ChildProcess;
  out: () => string;
  stop(): Promise<void>;
}

function startChild(cmd: string, args: string[]): Child {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    out: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
      }
    },
  };
}

async function waitFor<T>(check: () => T | null | false | Promise<T | null | false>, what: string, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`hotplug bench: timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Runs one transport's pull/plug cycles against a real daemon and broker. */
export async function measureHotplug(opts: HotplugOptions = {}): Promise<HotplugResult> {
  const transport = opts.transport ?? 'tcp';
  const reps = opts.reps ?? 20;
  const pollMs = opts.pollMs ?? 5;
  const giveUpMs = opts.giveUpMs ?? 15_000;
  const say = opts.progress ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'licd-hotplug-'));
  const children: Child[] = [];
  const stops: Array<() => Promise<void>> = [];
  try {
    // The emulator process (and for pty, the socat pair it sits on).
    let dongle: Record<string, unknown>;
    let emulatorWhere: string[];
    if (transport === 'pty') {
      const device = join(dir, 'dongle-side');
      const host = join(dir, 'host-side');
      const socat = startChild('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${host}`]);
      children.push(socat);
      await waitFor(
        async () => /starting data transfer loop/.test(socat.out()) && (await access(device).then(() => access(host)).then(() => true, () => false)),
        `socat (Debian package socat) to make a pty pair: ${socat.out()}`,
        10_000,
      );
      dongle = { transport: 'serial', path: host };
      emulatorWhere = ['--pty', device];
    } else {
      emulatorWhere = ['--tcp', '127.0.0.1:0'];
      dongle = {};
    }
    const emu = startChild(process.execPath, [join(ROOT, 'bin', 'licctl.mjs'), 'dongle', 'emulate', ...emulatorWhere, '--state', join(dir, 'dongle.json')]);
    children.push(emu);
    const ready = await waitFor(() => /licd dongle emulator serving (\S+) serial (\S+)/.exec(emu.out()), `the emulator to start: ${emu.out()}`, 30_000);
    if (transport === 'tcp') {
      const port = Number(ready[1]!.slice(ready[1]!.lastIndexOf(':') + 1));
      dongle = { transport: 'tcp', host: '127.0.0.1', port };
    }
    const toggles = () => (emu.out().match(/licd dongle emulator \S+ (unplugged|plugged in)\n/g) ?? []).length;

    // The daemon (development mode: it licenses the dongle it finds) with the embedded broker.
    const config = parseConfig(
      {
        dataDir: join(dir, 'data'),
        mqtt: { host: '127.0.0.1', port: 0 },
        dongle: {
          ...dongle,
          ...(opts.presenceIntervalMs !== undefined ? { presenceIntervalMs: opts.presenceIntervalMs } : {}),
          ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        },
      },
      {},
      dir,
    );
    const opener = await dongleOpener(config);
    stops.push(() => opener.close());
    const daemon = await startDaemon({ config, log: silentLog, openDongle: opener.open });
    stops.push(() => daemon.stop());
    const client = await LicdClient.connect({ url: daemon.url, timeoutMs: 5000, user: 'bench', host: 'hotplug' });
    stops.push(() => client.close({ checkin: false }));

    const checkout = async (): Promise<{ granted: true } | { granted: false; code: string; message: string }> => {
      try {
        await client.request('checkout', { feature: 'nuke_i', user: 'bench', host: 'hotplug', pid: 1 });
        return { granted: true };
      } catch (e) {
        if (e instanceof LicdError && e.code !== 'TIMEOUT') return { granted: false, code: e.code, message: e.message };
        throw e;
      }
    };
    /** Asks until `want`; returns the time the deciding answer arrived and the answer. */
    const askUntil = async (want: 'granted' | 'refused') => {
      const deadline = performance.now() + giveUpMs;
      for (;;) {
        const r = await checkout();
        const at = performance.now();
        if (want === 'granted' && r.granted) return { at, r };
        if (want === 'refused' && !r.granted) {
          if (r.code !== 'DONGLE_ABSENT') throw new Error(`hotplug bench: checkout refused with ${r.code}, not DONGLE_ABSENT: ${r.message}`);
          return { at, r };
        }
        if (at > deadline) return null;
        await sleep(pollMs);
      }
    };
    const toggle = async () => {
      const before = toggles();
      const t0 = performance.now();
      emu.child.kill('SIGUSR1');
      return { t0, confirmed: () => waitFor(() => toggles() > before, 'the emulator to confirm SIGUSR1', 10_000) };
    };

    if (!(await askUntil('granted'))) throw new Error('hotplug bench: the daemon never granted a first checkout');
    const pullToRefusedMs: number[] = [];
    const plugToGrantedMs: number[] = [];
    let refusal = '';
    for (let i = 0; i < reps; i++) {
      await sleep(Math.random() * config.dongle.presenceIntervalMs);
      const pull = await toggle();
      const refused = await askUntil('refused');
      await pull.confirmed();
      pullToRefusedMs.push(refused ? refused.at - pull.t0 : Infinity);
      if (refused && !refused.r.granted) refusal = refused.r.message;

      await sleep(Math.random() * config.dongle.presenceIntervalMs);
      const plug = await toggle();
      const granted = await askUntil('granted');
      await plug.confirmed();
      plugToGrantedMs.push(granted ? granted.at - plug.t0 : Infinity);
      if (!granted) throw new Error(`hotplug bench: no checkout granted within ${giveUpMs} ms of plugging the dongle back`);
      say(`  ${transport} #${i + 1}: pull -> refused ${round(pullToRefusedMs.at(-1)!)} ms, plug -> granted ${round(plugToGrantedMs.at(-1)!)} ms`);
    }
    return {
      transport,
      reps,
      presenceIntervalMs: config.dongle.presenceIntervalMs,
      timeoutMs: config.dongle.timeoutMs,
      pollMs,
      pullToRefusedMs: pullToRefusedMs.map(round),
      plugToGrantedMs: plugToGrantedMs.map(round),
      pull: summary(pullToRefusedMs, PULL_TARGET_MS),
      plug: summary(plugToGrantedMs, PLUG_TARGET_MS),
      refusal,
    };
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    for (const c of children.reverse()) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatHotplug(r: HotplugResult): string {
  const how = r.transport === 'tcp' ? 'TCP, pulling closes the link' : 'socat pty, pulling makes the line go silent';
  const line = (label: string, s: TimingSummary) =>
    `  ${label.padEnd(32)} p50 ${String(s.p50).padStart(7)} ms   max ${String(s.max).padStart(7)} ms   target <= ${s.targetMs} ms   ${s.met ? 'met' : 'MISSED'}`;
  return [
    `hot-plug over ${how}: ${r.reps} reps, presenceIntervalMs ${r.presenceIntervalMs}, timeoutMs ${r.timeoutMs}`,
    line('pull -> first refused checkout', r.pull),
    line('plug -> first granted checkout', r.plug),
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  let reps = 20;
  let transports: Array<'tcp' | 'pty'> = ['tcp', 'pty'];
  let json: string | null = null;
  let verbose = false;
  const o: HotplugOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    const n = () => {
      const x = Number(v());
      if (!Number.isInteger(x) || x < 1) throw new Error(`${a} needs a positive whole number`);
      return x;
    };
    if (a === '--reps') reps = n();
    else if (a === '--transport') {
      const t = v();
      if (t !== 'tcp' && t !== 'pty' && t !== 'both') throw new Error('--transport is tcp, pty or both');
      transports = t === 'both' ? ['tcp', 'pty'] : [t];
    } else if (a === '--presence-ms') o.presenceIntervalMs = n();
    else if (a === '--timeout-ms') o.timeoutMs = n();
    else if (a === '--poll-ms') o.pollMs = n();
    else if (a === '--json') json = v();
    else if (a === '--verbose' || a === '-v') verbose = true;
    else throw new Error(`unknown argument ${a}\nusage: npx tsx bench/hotplug.ts [--reps N] [--transport tcp|pty|both] [--presence-ms MS] [--timeout-ms MS] [--poll-ms MS] [--json FILE] [-v]`);
  }
  const results: HotplugResult[] = [];
  for (const transport of transports) {
    const r = await measureHotplug({ ...o, reps, transport, ...(verbose ? { progress: (l: string) => process.stdout.write(l + '\n') } : {}) });
    results.push(r);
    process.stdout.write(formatHotplug(r) + '\n');
  }
  if (json) {
    writeFileSync(json, JSON.stringify({ bench: 'hotplug', date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, results }, null, 2) + '\n');
    process.stdout.write(`wrote ${json}\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
