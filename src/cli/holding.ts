/**
 * Holding a seat from the command line: `licctl checkout` (hold until interrupted) and `licctl run`
 * (hold while a command runs), and what each does when the seat is lost. Exit codes (README):
 *   5  the seat was revoked or blocked by an admin (checkout), or the command was stopped because
 *      its seat was lost (run --on-loss stop).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
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
export function watchLoss(lease: Lease, feature: string, run: RunningChild, policy: LossPolicy, say: Say): () => boolean {
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
