/**
 * Holding a seat from the command line: `licctl checkout` (hold until interrupted) and `licctl run`
 * (hold while a command runs), and what each does when the seat is lost. Exit codes (README):
 *   5  the seat was revoked or blocked by an admin (checkout), or the command was stopped because
 *      its seat was lost (run --on-loss stop).
 */
import type { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { constants, homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { LicdError } from '../core/errors.ts';
import type { Lease } from '../sdk/client.ts';
import { UsageError } from './args.ts';

export const EXIT_SEAT_LOST = 5;

export interface Say {
  out(s: string): void;
  err(s: string): void;
}

export function lossLine(feature: string, e: LicdError, retrying: boolean): string {
  return `licctl: lost the seat of ${feature}: ${e.code}: ${e.message}${retrying ? '; trying to get it back at every heartbeat' : '; not taking it again'}`;
}

/**
 * The command runs under a tiny watcher process that holds a pipe from licctl: when licctl ends in
 * any way, SIGKILL included, the kernel closes the pipe and the watcher stops the command. licctl
 * also asks it to stop the command (a "stop" line on the pipe) for --on-loss stop. Stopping sends
 * SIGTERM to the command and every process under it (found in /proc; a shell script's children
 * too, which a signal to the script alone would leave running), then SIGKILL 5 s later.
 * The watcher forwards SIGINT, SIGTERM and SIGHUP to the command and exits with its code.
 */
const WATCHER = `
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const signals = require('node:os').constants.signals;
const [cmd, ...args] = process.argv.slice(1);
const child = spawn(cmd, args, { stdio: 'inherit' });
const tree = (pid, seen = new Set()) => {
  if (seen.has(pid)) return [];
  seen.add(pid);
  const out = [pid];
  try {
    for (const t of fs.readdirSync('/proc/' + pid + '/task')) {
      const kids = fs.readFileSync('/proc/' + pid + '/task/' + t + '/children', 'utf8').trim();
      if (kids) for (const k of kids.split(/\\s+/)) out.push(...tree(Number(k), seen));
    }
  } catch {}
  return out;
};
const signalTree = (sig) => {
  if (child.pid === undefined) return;
  for (const p of tree(child.pid).reverse()) { try { process.kill(p, sig); } catch {} }
};
let ending = false;
const stop = () => {
  if (ending) return;
  ending = true;
  signalTree('SIGTERM');
  setTimeout(() => signalTree('SIGKILL'), 5000).unref();
};
const link = new net.Socket({ fd: 3, readable: true, writable: false });
link.setEncoding('utf8');
link.on('data', (d) => { if (d.includes('stop')) stop(); });
link.on('end', stop);
link.on('close', stop);
link.on('error', stop);
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => { try { child.kill(s); } catch {} });
child.on('error', (e) => { process.stderr.write('licctl: cannot run ' + cmd + ': ' + e.message + '\\n'); process.exit(127); });
child.on('exit', (c, sig) => { if (ending) signalTree('SIGKILL'); process.exit(c !== null ? c : 128 + (signals[sig] || 1)); });
`;

export interface RunningChild {
  child: ChildProcess;
  exit: Promise<number>;
  /** Stops the command and the processes under it: SIGTERM now, SIGKILL 5 s later. */
  stop(): void;
}

/** Runs the licensed command with the terminal, under the watcher, forwarding signals. */
export function startChild(cmd: string[], say: Say): RunningChild {
  const child = spawn(process.execPath, ['-e', WATCHER, '--', ...cmd], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers: Array<[NodeJS.Signals, () => void]> = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)]);
  for (const [s, h] of handlers) process.on(s, h);
  const exit = new Promise<number>((resolve) => {
    child.on('error', (e) => {
      say.err(`licctl: cannot run ${cmd[0]}: ${e.message}`);
      resolve(127);
    });
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + (constants.signals[sig] ?? 1) : 1)));
  }).finally(() => {
    for (const [s, h] of handlers) process.off(s, h);
  });
  let killTimer: NodeJS.Timeout | null = null;
  return {
    child,
    exit,
    stop() {
      // The watcher stops the command and everything under it; SIGKILL on the watcher's side
      // follows 5 s later, and on ours after 10 s if the watcher itself does not end.
      (child.stdio[3] as NodeJS.WritableStream | null)?.write('stop\n');
      if (!killTimer) {
        killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        killTimer.unref();
        void exit.then(() => clearTimeout(killTimer!));
      }
    },
  };
}

/** A seat that says when it is lost and regained: a Lease, or a ClusterLease (src/sdk/cluster.ts). */
export type LossSource = Pick<EventEmitter, 'on' | 'off'> & { readonly id: string };

export interface LossPolicy {
  mode: 'warn' | 'stop';
  /** stop: how long a lost seat may stay lost before the command is stopped, seconds. */
  graceSeconds: number;
  /** warn: how often the warning is repeated while the seat is lost, seconds. */
  warnEverySeconds: number;
}

/**
 * Watches a lease while a command runs: on a loss, warns at once and then every warnEverySeconds
 * until the seat is back (warn), or stops the command if the seat is not back within graceSeconds
 * (stop). Returns a function that ends the watch and says whether the command was stopped for it.
 */
export function watchLoss(lease: LossSource, feature: string, run: RunningChild, policy: LossPolicy, say: Say): () => boolean {
  let warnTimer: NodeJS.Timeout | null = null;
  let stopTimer: NodeJS.Timeout | null = null;
  let stopped = false;
  const clear = () => {
    if (warnTimer) clearInterval(warnTimer);
    if (stopTimer) clearTimeout(stopTimer);
    warnTimer = stopTimer = null;
  };
  const onLost = (e: LicdError, info: { retrying: boolean }) => {
    say.err(lossLine(feature, e, info.retrying));
    if (policy.mode === 'warn') {
      if (warnTimer) clearInterval(warnTimer);
      warnTimer = setInterval(() => say.err(`licctl: warning: still no seat of ${feature} (${e.code}); the command runs without a license seat`), policy.warnEverySeconds * 1000);
      warnTimer.unref();
      say.err(`licctl: warning: the command keeps running without a seat of ${feature} (--on-loss warn)`);
    } else if (!stopTimer) {
      say.err(`licctl: the command is stopped in ${policy.graceSeconds} s unless the seat of ${feature} is back (--on-loss stop)`);
      stopTimer = setTimeout(() => {
        stopped = true;
        say.err(`licctl: stopping the command: the seat of ${feature} is gone (${e.code}) and was not back within ${policy.graceSeconds} s`);
        run.stop();
      }, policy.graceSeconds * 1000);
    }
  };
  const onRegained = () => {
    clear();
    say.err(`licctl: regained the seat of ${feature} (lease ${lease.id})`);
  };
  lease.on('lost', onLost);
  lease.on('regained', onRegained);
  return () => {
    clear();
    lease.off('lost', onLost);
    lease.off('regained', onRegained);
    return stopped;
  };
}

/** Parses a block length: 30m, 2h, 1d, 90s; a bare number is minutes. Returns seconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d{1,7})([smhd]?)$/.exec(text.trim());
  if (!m) throw new UsageError(`${what} ${JSON.stringify(text)}: give a length like 30m, 2h, 1d or 90s`);
  const n = Number(m[1]);
  const unit = m[2] || 'm';
  return n * (unit === 's' ? 1 : unit === 'm' ? 60 : unit === 'h' ? 3600 : 86400);
}

/*
 * Seats held by `licctl checkout` are recorded, one file per holding process, under
 * $XDG_RUNTIME_DIR/licd/held (else ~/.local/state/licd/held), so that `licctl checkin` can ask that
 * process to give its seat back. A record names the server (the broker URL, normalised), the local
 * user and the process by pid and start time: checkin touches only holders of the server and user
 * it runs for, and signals a pid only while it is still the process that wrote the record (after
 * a reboot or pid reuse the same number is another program).
 */

export interface HeldRecord {
  pid: number;
  /** /proc/<pid>/stat field 22 (clock ticks after boot): with the pid, names one process. */
  startTime: string;
  /** The broker URL, normalised (normaliseServer). */
  server: string;
  user: string;
  uid: number;
  feature: string;
  lease: string;
  clientId: string;
}

export function heldDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_RUNTIME_DIR ?? join(homedir(), '.local', 'state');
  return join(base, 'licd', 'held');
}

/** mqtt://LocalHost:1883/ and mqtt://localhost name one server: scheme, host and port, with the default port filled in. */
export function normaliseServer(url: string): string {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === 'mqtts:' ? '8883' : '1883');
    return `${u.protocol}//${u.hostname.toLowerCase()}:${port}`;
  } catch {
    return url;
  }
}

/** The start time of a process (field 22 of /proc/<pid>/stat), or null when there is no such process. */
export function procStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2, the command name, is in parentheses and may itself hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[22 - 3] ?? null;
}

function currentUser(): { user: string; uid: number } {
  const u = userInfo();
  return { user: u.username, uid: u.uid };
}

/** Writes (or rewrites) this process's record of a held seat; returns the function that removes it. */
export function recordHeld(rec: { server: string; feature: string; lease: string; clientId: string }, env: NodeJS.ProcessEnv = process.env): { write(lease?: string): void; remove(): void } {
  const dir = heldDir(env);
  const file = join(dir, `${process.pid}.json`);
  const base = { pid: process.pid, startTime: procStartTime(process.pid) ?? '', server: normaliseServer(rec.server), ...currentUser(), feature: rec.feature, clientId: rec.clientId };
  return {
    write(lease = rec.lease) {
      // Written whole or not at all: checkin never meets half a record.
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(`${file}.tmp`, JSON.stringify({ ...base, lease } satisfies HeldRecord), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    },
    remove() {
      rmSync(file, { force: true });
    },
  };
}

export interface CheckinOutcome {
  /** Holders asked to give their seat back (SIGTERM); `released` once the process has ended. */
  signalled: Array<{ pid: number; feature: string; lease: string; released: boolean }>;
  /** Records left alone: another server, another user, another feature. */
  skipped: Array<{ pid: number | null; feature: string | null; lease: string | null; server: string | null; reason: string }>;
  /** Records removed without signalling anything: the process is gone, or the pid is now another program. */
  removed: Array<{ pid: number | null; feature: string | null; lease: string | null; reason: string }>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `licctl checkin [FEATURE]`: asks the checkout processes of this user that hold seats from
 * `server` (of FEATURE, or all) to check their seats in, and waits up to waitMs for each to end.
 */
export async function checkinHeld(opts: { server: string; feature?: string | undefined; waitMs?: number; env?: NodeJS.ProcessEnv }): Promise<CheckinOutcome> {
  const dir = heldDir(opts.env);
  const server = normaliseServer(opts.server);
  const me = currentUser();
  const outcome: CheckinOutcome = { signalled: [], skipped: [], removed: [] };
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
  const waiting: Array<{ rec: HeldRecord; entry: CheckinOutcome['signalled'][number] }> = [];
  for (const f of files) {
    const path = join(dir, f);
    let rec: Partial<HeldRecord>;
    try {
      rec = JSON.parse(readFileSync(path, 'utf8')) as Partial<HeldRecord>;
    } catch {
      // Named after its process: a record of a process that is gone is removed, else left alone.
      const pid = /^\d+(?=\.json$)/.test(f) ? Number(f.slice(0, -5)) : null;
      if (pid !== null && procStartTime(pid) === null) {
        rmSync(path, { force: true });
        outcome.removed.push({ pid, feature: null, lease: null, reason: `${path} could not be read and pid ${pid} is gone; nothing signalled` });
      } else outcome.skipped.push({ pid, feature: null, lease: null, server: null, reason: `${path} is not a record licctl can read; left as it is` });
      continue;
    }
    const who = { pid: typeof rec.pid === 'number' ? rec.pid : null, feature: rec.feature ?? null, lease: rec.lease ?? null };
    if (typeof rec.pid !== 'number' || !Number.isInteger(rec.pid) || rec.pid <= 1 || typeof rec.startTime !== 'string' || typeof rec.server !== 'string') {
      // A record of an older licctl (no server, no start time): nothing proves which process or
      // server it meant, so nothing is signalled; once its process is gone it is removed.
      if (typeof rec.pid === 'number' && procStartTime(rec.pid) === null) {
        rmSync(path, { force: true });
        outcome.removed.push({ ...who, reason: `pid ${rec.pid} is gone (a record of an older licctl); nothing signalled` });
        continue;
      }
      outcome.skipped.push({ ...who, server: rec.server ?? null, reason: `${path} does not say which server and process it belongs to (written by an older licctl); nothing signalled` });
      continue;
    }
    if (rec.uid !== me.uid || rec.user !== me.user) {
      outcome.skipped.push({ ...who, server: rec.server, reason: `held by another user (${rec.user ?? 'unknown'})` });
      continue;
    }
    if (rec.server !== server) {
      outcome.skipped.push({ ...who, server: rec.server, reason: `held from another server (${rec.server}), not ${server}` });
      continue;
    }
    if (opts.feature && rec.feature !== opts.feature) {
      outcome.skipped.push({ ...who, server: rec.server, reason: `another feature (${rec.feature})` });
      continue;
    }
    const now = procStartTime(rec.pid);
    if (now === null || rec.startTime === '' || now !== rec.startTime) {
      rmSync(path, { force: true });
      outcome.removed.push({
        ...who,
        reason: now === null ? `pid ${rec.pid} is gone; the server frees the seat when its lease times out` : `pid ${rec.pid} is now another process (started at a different time); not signalled`,
      });
      continue;
    }
    try {
      process.kill(rec.pid, 'SIGTERM');
    } catch (e) {
      outcome.skipped.push({ ...who, server: rec.server, reason: `cannot signal pid ${rec.pid}: ${(e as NodeJS.ErrnoException).code ?? e}` });
      continue;
    }
    const entry = { pid: rec.pid, feature: rec.feature!, lease: rec.lease!, released: false };
    outcome.signalled.push(entry);
    waiting.push({ rec: rec as HeldRecord, entry });
  }
  const deadline = Date.now() + (opts.waitMs ?? 5000);
  for (const { rec, entry } of waiting) {
    const same = () => isAlive(rec.pid) && procStartTime(rec.pid) === rec.startTime;
    while (same() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    entry.released = !same();
  }
  return outcome;
}

/** The lines `licctl checkin` prints for an outcome. */
export function checkinLines(o: CheckinOutcome, server: string, feature?: string): string[] {
  const lines: string[] = [];
  for (const s of o.signalled) {
    lines.push(
      s.released
        ? `released ${s.feature} (lease ${s.lease}, held by pid ${s.pid})`
        : `asked pid ${s.pid} to release ${s.feature} (lease ${s.lease}); it has not exited yet (is the server reachable?)`,
    );
  }
  for (const r of o.removed) lines.push(`removed the record of ${r.feature ?? '?'} (lease ${r.lease ?? '?'}): ${r.reason}`);
  for (const s of o.skipped) lines.push(`skipped ${s.feature ?? 'a record'}${s.pid !== null ? ` (pid ${s.pid})` : ''}: ${s.reason}`);
  if (o.signalled.length === 0 && o.removed.length === 0) {
    lines.unshift(feature ? `no seat of ${feature} is held by licctl checkout from ${normaliseServer(server)} on this machine` : `no seats are held by licctl checkout from ${normaliseServer(server)} on this machine`);
  }
  return lines;
}
