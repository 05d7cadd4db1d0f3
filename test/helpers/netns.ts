/**
 * Network namespaces for tests (root only): a namespace per "machine", joined by veth pairs on a
 * private subnet that exists only inside them, with multicast routed (mDNS). Names are unique per
 * run; `dispose` deletes them (and with them their veth ends), even after a failure.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

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
