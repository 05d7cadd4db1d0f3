/** Real child processes: the daemon as `npm start` runs it, and licctl as a user types it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first match of `re` in stdout+stderr. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

const live = new Set<ChildProcess>();

/** Kills every child this test file started and has not seen exit. */
export function killAll(): void {
  for (const c of live) c.kill('SIGKILL');
}

export function start(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.on('exit', () => live.delete(child));
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d) => {
    out += d;
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d) => {
    err += d;
    for (const w of waiters) w();
  });
  // 'exit' can come before the last bytes of stderr are read (CI once saw exit code 2 with an
  // empty stderr): resolve once both pipes are closed too, or 2 s after the exit if a grandchild
  // still holds them.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    let closed = false;
    child.on('close', (code, signal) => {
      closed = true;
      resolve({ code, signal });
    });
    child.on('exit', (code, signal) => {
      setTimeout(() => closed || resolve({ code, signal }), 2000).unref();
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = (out + err).match(re);
          if (m) {
            clearTimeout(t);
            resolve(m);
            return true;
          }
          return false;
        };
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${out}\n${err}`)), timeoutMs);
        if (!check()) waiters.push(check);
        void exited.then(() => setTimeout(() => check() || reject(new Error(`process exited before ${re}:\n${out}\n${err}`)), 50));
      });
    },
  };
}

export function startDaemonProcess(env: Record<string, string>, args: string[] = []): Proc {
  // node --import tsx, not the tsx binary: tsx runs the program in a grandchild, which a SIGKILL
  // of tsx would leave running. Crash tests must kill the daemon itself.
  // The HTTP server (metrics, health) on a free port unless the test says: tests run side by side.
  return start(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts'), ...args], { LICD_HTTP_PORT: '0', ...env });
}

export function licctl(args: string[], env: Record<string, string> = {}): Proc {
  return start(process.execPath, [join(ROOT, 'bin', 'licctl.mjs'), ...args], env);
}

export async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = licctl(args, env);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Whether a process with this pid exists (signal 0 tests without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A free TCP port on loopback (the bench's helper). */
export { freePort } from '../../bench/lib/proc.ts';

/** licd as a child process with DIR/licd.json and its embedded broker on `port`; resolves once it listens. */
export async function daemonOnPort(dir: string, port: number, timeoutMs = 40_000): Promise<{ d: Proc; url: string }> {
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: String(port) }, ['--config', join(dir, 'licd.json')]);
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, timeoutMs))[1]!;
  return { d, url };
}
