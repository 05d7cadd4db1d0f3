/**
 * Network namespaces for tests (root only; CI runs as root). Names are unique per run and each
 * helper removes what it made, even after a failure.
 *
 * - makeLan: a namespace per "machine", joined by veth pairs on a private subnet that exists only
 *   inside them, with multicast routed (mDNS).
 * - otherMachine: "another machine" joined to this one by a veth pair, so a program in it reaches
 *   a server here from a non-loopback address, as a browser on the LAN would.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ROOT } from './procs.ts';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Lan {
  /** Namespace names, by role. */
  ns: Record<string, string>;
  /** Each namespace's address on the LAN. */
  addr: Record<string, string>;
  /** argv prefix that runs a program inside a namespace. */
  exec(role: string): string[];
  dispose(): void;
}

/**
 * Namespaces named by `roles`, the first being a hub: the others are joined to it by veth pairs,
 * and the hub bridges them (one LAN, one multicast domain). Subnet 10.217.N.0/24 inside the
 * namespaces only.
 */
export function makeLan(roles: string[], subnet = 10 + Math.floor(Math.random() * 200)): Lan {
  const tag = randomBytes(3).toString('hex');
  const ns: Record<string, string> = {};
  const addr: Record<string, string> = {};
  const made: string[] = [];
  const dispose = () => {
    for (const n of made.reverse()) {
      try {
        ip('netns', 'del', n);
      } catch {
        /* already gone */
      }
    }
  };
  try {
    roles.forEach((r) => {
      const n = `licd-${r}-${tag}`;
      ip('netns', 'add', n);
      made.push(n);
      ns[r] = n;
      ip('-n', n, 'link', 'set', 'lo', 'up');
    });
    const hub = ns[roles[0]!]!;
    ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', hub, 'link', 'set', 'br0', 'up');
    roles.forEach((r, i) => {
      const a = `10.217.${subnet}.${i + 1}`;
      addr[r] = a;
      if (i === 0) {
        ip('-n', hub, 'addr', 'add', `${a}/24`, 'dev', 'br0');
        ip('-n', hub, 'route', 'add', '224.0.0.0/4', 'dev', 'br0');
        return;
      }
      const inner = `v${i}${tag}`.slice(0, 15);
      const outer = `h${i}${tag}`.slice(0, 15);
      ip('link', 'add', inner, 'netns', ns[r]!, 'type', 'veth', 'peer', 'name', outer, 'netns', hub);
      ip('-n', hub, 'link', 'set', outer, 'master', 'br0');
      ip('-n', hub, 'link', 'set', outer, 'up');
      ip('-n', ns[r]!, 'link', 'set', inner, 'name', 'eth0');
      ip('-n', ns[r]!, 'addr', 'add', `${a}/24`, 'dev', 'eth0');
      ip('-n', ns[r]!, 'link', 'set', 'eth0', 'multicast', 'on', 'up');
      ip('-n', ns[r]!, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
    });
  } catch (e) {
    dispose();
    throw e;
  }
  return { ns, addr, exec: (r) => ['ip', 'netns', 'exec', ns[r]!], dispose };
}

/**
 * Another machine: its own address (10.231.N.2) and this side's (10.231.N.1), private to the pair;
 * nothing leaves the machine.
 */
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
