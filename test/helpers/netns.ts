/**
 * "Another machine" on this one: a network namespace joined to this one by a veth pair, with its
 * own address (10.231.N.2) and this side's (10.231.N.1). A program run in it with `run` reaches a
 * server on this side's address from a non-loopback address, as a browser on the LAN would. Needs
 * root (CI runs as root). Addresses are private to the pair; nothing leaves the machine.
 */
import { execFileSync, spawn } from 'node:child_process';
import { ROOT } from './procs.ts';

export interface OtherMachine {
  /** This machine's address as the other one sees it (bind the server here). */
  hostAddress: string;
  /** The other machine's address. */
  address: string;
  /** Runs a node program (ES module text) in the namespace; resolves with its exit code and output. */
  node(code: string, env?: Record<string, string>, timeoutMs?: number): Promise<{ code: number | null; out: string }>;
  remove(): void;
}

export function otherMachine(): OtherMachine {
  const n = 1 + (process.pid % 200);
  const ns = `licdt${process.pid}`;
  const a = `lt${process.pid}a`.slice(0, 15);
  const b = `lt${process.pid}b`.slice(0, 15);
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', ns);
  try {
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    ip('link', 'set', b, 'netns', ns);
    ip('addr', 'add', `10.231.${n}.1/30`, 'dev', a);
    ip('link', 'set', a, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `10.231.${n}.2/30`, 'dev', b);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', b, 'up');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  } catch (e) {
    try {
      ip('link', 'del', a);
    } catch {}
    ip('netns', 'del', ns);
    throw e;
  }
  return {
    hostAddress: `10.231.${n}.1`,
    address: `10.231.${n}.2`,
    node(code, env = {}, timeoutMs = 30_000) {
      return new Promise((resolve) => {
        const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', code], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('exit', (c) => {
          clearTimeout(t);
          resolve({ code: c, out });
        });
      });
    },
    remove() {
      try {
        ip('link', 'del', a);
      } catch {}
      try {
        ip('netns', 'del', ns);
      } catch {}
    },
  };
}
