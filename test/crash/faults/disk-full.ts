/**
 * Fault harness: a full disk (issue 9, finding 1). licd runs as a child process with its data dir
 * on a real 6 MiB tmpfs (needs root). Round after round, under load from several render nodes
 * (checkouts, heartbeats, check-ins, borrows, returns), the disk is filled until writes are
 * refused, then freed until writes are answered again, then licd is restarted (SIGTERM or
 * SIGKILL, by the seed). After every restart it checks:
 *   - no grant lost: every lease and borrow answered ok (and not given back since) is there;
 *   - no seat over the count: leased + borrowed never above a feature's total;
 *   - no lease reclaimed from a live client: the nodes' leases are all still there, a few
 *     seconds after the restart too;
 *   - no false quarantine, and nothing refused left behind (a lease or borrow no answer named).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError } from '../../../src/core/errors.ts';
import { BorrowClient } from '../../../src/sdk/borrow.ts';
import { LicdClient } from '../../../src/sdk/client.ts';
import { tempDir } from '../../helpers/daemon.ts';
import { startDaemonProcess, type Proc } from '../../helpers/procs.ts';
import { canMount, mountSmallFs, type SmallFs } from '../../helpers/smallfs.ts';
import { freePort } from '../harness.ts';
import { Rng } from '../rng.ts';

export interface FaultOptions {
  seed: number;
  rounds: number;
  log: (s: string) => void;
}

const FEATURES = ['vray_render', 'vray_interface', 'vray_distributed'] as const;
const BORROWABLE = ['vray_render', 'vray_interface', 'nuke_i'] as const;

interface Node {
  name: string;
  client: LicdClient;
  borrower: BorrowClient;
  /** Leases answered ok and not checked in since. */
  leases: Map<string, string>;
  /** Borrows answered ok and not returned since. */
  borrows: Map<string, string>;
  pid: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startLicd(dataDir: string, port: number, config: string): Promise<Proc> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1', LICD_CONFIG: config, LICD_LOG_LEVEL: 'info' });
  await p.waitFor(/listening on mqtt:\/\//, 60_000);
  return p;
}

export async function run(opts: FaultOptions): Promise<{ violations: string[]; summary: string }> {
  if (!canMount()) return { violations: ['the disk-full fault needs root (it mounts a small tmpfs)'], summary: 'not run: needs root' };
  const rng = new Rng(opts.seed);
  const violations: string[] = [];
  const refusals = new Map<string, number>();
  /** From licd's log: how long writes were refused, and how many records the recovery rewrote. */
  const resumed: Array<{ seconds: number; rewritten: number }> = [];
  const counts = { ok: 0, storeFailed: 0, refusedOther: 0, fills: 0, restarts: 0, checked: 0, kills: 0 };
  const fs: SmallFs = mountSmallFs(6);
  const work = tempDir('licd-fault-disk-');
  const dataDir = join(fs.dir, 'data');
  const config = join(work, 'licd.json');
  writeFileSync(config, JSON.stringify({ leases: { ttlSeconds: 600, maxTtlSeconds: 3600, disconnectGraceSeconds: 10 } }));
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  let licd: Proc | null = null;
  const nodes: Node[] = [];
  try {
    licd = await startLicd(dataDir, port, config);
    for (let i = 0; i < 3; i++) {
      const home = join(work, `home-${i}`);
      mkdirSync(home);
      const name = `node-${i}`;
      nodes.push({
        name,
        client: await LicdClient.connect({ url, user: `user${i}`, host: name, clientId: `disk-${name}`, timeoutMs: 15_000 }),
        borrower: new BorrowClient({ home, hostId: (i + 1).toString(16).padStart(2, '0').repeat(16), user: `user${i}`, hostName: name }),
        leases: new Map(),
        borrows: new Map(),
        pid: 1000 * (i + 1),
      });
    }

    /** One random request from one node; its answer updates the node's book. */
    const step = async (n: Node): Promise<'ok' | 'store' | 'other'> => {
      const op = rng.weighted([
        ['checkout', 4],
        ['heartbeat', 3],
        ['checkin', 3],
        ['borrow', 2],
        ['return', 1],
      ] as const);
      try {
        if (op === 'checkout') {
          const feature = rng.pick(FEATURES);
          const r = await n.client.request<{ lease: { id: string } }>('checkout', { feature, user: n.client.user, host: n.name, pid: n.pid++, ttl: 600 });
          n.leases.set(r.lease.id, feature);
        } else if (op === 'heartbeat') {
          if (n.leases.size === 0) return 'ok';
          await n.client.request('heartbeat', { leases: [...n.leases.keys()] });
        } else if (op === 'checkin') {
          const id = n.leases.size > 0 ? rng.pick([...n.leases.keys()]) : null;
          if (!id) return 'ok';
          const r = await n.client.request<{ released: string[] }>('checkin', { leases: [id] });
          for (const x of r.released) n.leases.delete(x);
        } else if (op === 'borrow') {
          const r = await n.borrower.borrow(n.client, [{ feature: rng.pick(BORROWABLE), count: 1 }], rng.int(1, 48));
          for (const b of r.borrows) n.borrows.set(b.id, b.feature);
        } else {
          const id = n.borrows.size > 0 ? rng.pick([...n.borrows.keys()]) : null;
          if (!id) return 'ok';
          const r = await n.borrower.giveBack(n.client, [id]);
          for (const x of [...r.returned, ...r.unknown]) n.borrows.delete(x);
        }
        counts.ok++;
        return 'ok';
      } catch (e) {
        if (isLicdError(e) && e.code === 'STORE_FAILED') {
          counts.storeFailed++;
          return 'store';
        }
        // DONGLE_ABSENT: the emulated dongle keeps its state under the data dir, so on a full disk
        // its counter step fails too ("state file write failed: ENOSPC"); nothing is granted.
        // TIMEOUT: no answer (a client still reconnecting after a restart, or a loaded machine).
        // An unanswered request promises nothing, so it is counted, not judged.
        if (isLicdError(e) && ['NO_SEATS', 'BORROW_NOT_ALLOWED', 'BORROW_LIMIT', 'UNKNOWN_BORROW', 'DONGLE_ABSENT', 'TIMEOUT'].includes(e.code)) {
          counts.refusedOther++;
          refusals.set(`${op} ${e.code}`, (refusals.get(`${op} ${e.code}`) ?? 0) + 1);
          return 'other';
        }
        throw e;
      }
    };
    /** A burst: every node sends `per` requests, the nodes concurrently. */
    const burst = async (per: number): Promise<Array<'ok' | 'store' | 'other'>> =>
      (await Promise.all(nodes.map(async (n) => {
        const out: Array<'ok' | 'store' | 'other'> = [];
        for (let i = 0; i < per; i++) out.push(await step(n));
        return out;
      }))).flat();

    const check = async (when: string): Promise<void> => {
      const c = await LicdClient.connect({ url, user: 'auditor', host: 'audit', timeoutMs: 15_000 });
      try {
        const s = await c.status();
        const leases = new Map(s.features.flatMap((f) => f.leases.map((l) => [l.id, l] as const)));
        const borrows = new Map(s.features.flatMap((f) => f.borrows.map((b) => [b.id, b] as const)));
        for (const n of nodes) {
          for (const [id, feature] of n.leases) if (!leases.has(id)) violations.push(`${when}: lease ${id} (${feature}) of ${n.name}, answered ok and held, is gone`);
          for (const [id, feature] of n.borrows) if (!borrows.has(id)) violations.push(`${when}: borrow ${id} (${feature}) of ${n.name}, answered ok, is gone`);
        }
        const ours = new Set(nodes.flatMap((n) => [...n.leases.keys(), ...n.borrows.keys()]));
        for (const id of [...leases.keys(), ...borrows.keys()]) if (!ours.has(id)) violations.push(`${when}: ${id} is on record but no answer granted it (a refused change left behind)`);
        for (const f of s.features) if (f.leased + f.borrowed > f.total) violations.push(`${when}: ${f.feature} has ${f.leased} leased + ${f.borrowed} borrowed of ${f.total} seats`);
        if (s.quarantine.length > 0) violations.push(`${when}: a false quarantine: ${JSON.stringify(s.quarantine)}`);
        counts.checked++;
      } finally {
        await c.close({ checkin: false }).catch(() => {});
      }
    };

    for (let round = 1; round <= opts.rounds; round++) {
      await burst(rng.int(3, 8));
      // The disk fills while licd serves; the load goes on until writes are refused.
      fs.fill();
      counts.fills++;
      let refused = 0;
      for (let i = 0; i < 60 && refused === 0; i++) refused = (await burst(3)).filter((r) => r === 'store').length;
      if (refused === 0) violations.push(`round ${round}: the full disk never refused a write`);
      await burst(rng.int(1, 4));
      // Space comes back; licd resumes by itself.
      fs.free();
      const deadline = Date.now() + 45_000;
      for (;;) {
        const r = await burst(2);
        if (r.includes('ok') && !r.includes('store')) break;
        if (Date.now() > deadline) {
          violations.push(`round ${round}: writes were still refused 45 s after the space came back`);
          break;
        }
        await sleep(300);
      }
      await burst(rng.int(2, 6));
      await check(`round ${round}, before the restart`);
      for (const m of (licd.stdout() + licd.stderr()).matchAll(/writing to the license database resumed brokenSeconds=([\d.]+) recordsRewritten=(\d+)/g)) {
        resumed.push({ seconds: Number(m[1]), rewritten: Number(m[2]) });
      }
      // Restart, cleanly or not.
      const kill = rng.chance(0.5);
      licd.child.kill(kill ? 'SIGKILL' : 'SIGTERM');
      const exit = await licd.exited;
      if (!kill && exit.code !== 0) violations.push(`round ${round}: licd exited ${exit.code} on SIGTERM: ${licd.stderr().slice(-500)}`);
      if (kill) counts.kills++;
      licd = await startLicd(dataDir, port, config);
      counts.restarts++;
      await check(`round ${round}, after the restart`);
      await sleep(3000);
      await check(`round ${round}, 3 s after the restart`);
      opts.log(`disk-full round ${round}: ${refused} refused at the fill, restart by ${kill ? 'SIGKILL' : 'SIGTERM'}, ${nodes.reduce((a, n) => a + n.leases.size, 0)} leases and ${nodes.reduce((a, n) => a + n.borrows.size, 0)} borrows held, ${violations.length} violations so far`);
    }
  } finally {
    for (const n of nodes) await n.client.close({ checkin: false }).catch(() => {});
    if (licd) {
      licd.child.kill('SIGKILL');
      await licd.exited;
    }
    fs.unmount();
    rmSync(work, { recursive: true, force: true });
  }
  const summary = `disk-full: ${opts.rounds} rounds (seed ${opts.seed}): ${counts.fills} fills, ${counts.storeFailed} writes refused with STORE_FAILED, ${counts.ok} answered ok, ${counts.refusedOther} refused otherwise (${[...refusals].map(([k, v]) => `${k} ${v}`).join(', ')}), ${counts.restarts} restarts (${counts.kills} by SIGKILL), ${counts.checked} checks, ${violations.length} violations; writing resumed ${resumed.length} times, after ${resumed.map((r) => `${r.seconds} s`).join(', ')} of refusals, rewriting ${resumed.map((r) => r.rewritten).join(', ')} records`;
  return { violations, summary };
}

export const fault = {
  name: 'disk-full',
  help: 'fill the data dir\'s disk (a 6 MiB tmpfs, root) until writes fail, free it, restart; nothing answered is lost',
  run,
};
