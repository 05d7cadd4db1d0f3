/**
 * Child processes of the benchmark: every one is registered here so that a normal end, an error,
 * Ctrl-C or SIGTERM all take them down (process groups are not used: each child is killed by its
 * own pid, which is all we started).
 */
import { spawn, fork, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

const children = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping children\n`);
      killAll();
      process.exit(130);
    });
  }
}

export function track<C extends ChildProcess>(c: C): C {
  hookExit();
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  return track(spawn(cmd, args, opts));
}

export function forkTracked(module: string, args: string[], opts: Parameters<typeof fork>[2] = {}): ChildProcess {
  return track(fork(module, args, opts));
}

/** Sends SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopChild(c: ChildProcess, graceMs = 5000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
}

/** A free TCP port on loopback (the kernel picks it; a tiny race with other programs remains). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Soft and hard limits on open files of this process (children inherit them). */
export function openFileLimits(): { soft: number; hard: number } {
  const text = readFileSync('/proc/self/limits', 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const m = line?.match(/Max open files\s+(\S+)\s+(\S+)/);
  const num = (s: string | undefined) => (s === undefined ? 1024 : s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/**
 * Node cannot raise its own limit, so children that hold many sockets are started through
 * `sh -c 'ulimit -n N; exec ...'` with N up to the hard limit.
 */
export function withFileLimit(cmd: string, args: string[], want: number): { cmd: string; args: string[] } {
  const { soft, hard } = openFileLimits();
  if (soft >= want) return { cmd, args };
  const n = Math.min(want, hard);
  const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return { cmd: '/bin/sh', args: ['-c', `ulimit -n ${n} && exec ${quoted}`] };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wall clock in ms with sub-ms resolution, comparable between processes on one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** CPU time (user + system) of a process in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const c = cpuSplitMs(pid);
  return c.user + c.system;
}

/** CPU time of a process in ms, user and system (kernel) apart. */
export function cpuSplitMs(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(rest[11]) * 1000) / CLK_TCK, system: (Number(rest[12]) * 1000) / CLK_TCK };
}

/**
 * Bytes a process has caused to be written to storage (/proc/<pid>/io write_bytes: counted when
 * it dirties the page cache of a disk-backed file, so a tmpfs counts nothing). Needs the same user.
 */
export function diskWriteBytes(pid: number): number {
  const m = /^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * CPU time of a process in ms, its main thread (JavaScript) apart from its other threads (libuv's
 * pool, where LevelDB writes and syncs; LevelDB's compaction; V8's helpers), from
 * /proc/<pid>/task/<tid>/stat. A thread that ends between the reads is missed.
 */
export function cpuThreadsMs(pid: number): { main: number; other: number } {
  const out = { main: 0, other: 0 };
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
    if (tid === String(pid)) out.main += ms;
    else out.other += ms;
  }
  return out;
}

/** USER_HZ: 100 on every Linux of the kinds we run on (getconf CLK_TCK). */
const CLK_TCK = 100;

/** Resident memory of a process in MiB, from VmRSS in /proc/<pid>/status. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = status.match(/VmRSS:\s+(\d+)\s+kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}
