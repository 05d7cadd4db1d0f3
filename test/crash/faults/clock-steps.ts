/**
 * Fault "clock-steps" (issue 9): steps the system clock of a real licd process (libfaketime;
 * its monotonic clock stays true) by ±2 min, ±1 day and +2 days, while it runs under load and
 * across restarts (the step made while it is stopped), and checks after every step:
 *   - no answered grant lost: every lease of a live client is still held (never expired and taken
 *     again), and every borrow whose token is still valid is still listed;
 *   - no seat over the count: per feature, leased + borrowed + held <= seats in the status, and
 *     the live leases and valid tokens this harness holds fit in the seats;
 *   - no lease reclaimed from a live (heartbeating) client.
 * A token is "valid" while both the true time and the daemon's current time are before the expiry
 * it states (docs/threat-model.md, "Clock steps": the reservation lasts at least that long).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLicdError } from '../../../src/core/errors.ts';
import type { StatusResult } from '../../../src/core/protocol.ts';
import { BorrowClient } from '../../../src/sdk/borrow.ts';
import { LicdClient, type Lease } from '../../../src/sdk/client.ts';
import { FakeClockFile } from '../../helpers/faketime.ts';
import { startDaemonProcess, type Proc } from '../../helpers/procs.ts';
import { freePort } from '../harness.ts';
import { Rng } from '../rng.ts';

const MIN = 60_000;
const DAY = 86_400_000;
/** The steps, as offsets added to the current one (libfaketime "+Ns" from the true time). */
const STEPS: ReadonlyArray<readonly [string, number]> = [
  ['+2 min', 2 * MIN],
  ['-2 min', -2 * MIN],
  ['+1 day', DAY],
  ['-1 day', -DAY],
  ['+2 days', 2 * DAY],
];
const LEASE_FEATURES = ['vray_distributed', 'vray_render', 'vray_interface'] as const;
const BORROW_FEATURES = ['vray_render', 'nuke_i', 'vray_interface'] as const;
/** Seconds a borrow's end may pass before its record must be gone (reaper tick) or after which it must be listed. */
const SLACK_MS = 5000;

interface LiveLease {
  client: LicdClient;
  lease: Lease;
  feature: string;
  troubled: string | null;
}
interface HeldToken {
  id: string;
  feature: string;
  count: number;
  /** The expiry the token states (the daemon's terms when it was issued). */
  until: number;
}

export const fault = {
  name: 'clock-steps',
  help: 'steps the system clock of licd by ±2 min, ±1 day, +2 days (running and across restarts) under load',
  run: async (opts: { seed: number; rounds: number; log: (s: string) => void }): Promise<{ violations: string[]; summary: string }> => {
    const rng = new Rng(opts.seed);
    const dir = mkdtempSync(join(tmpdir(), 'licd-clock-soak-'));
    const clockFile = new FakeClockFile(join(dir, 'faketime'));
    let offset = 0;
    const trueNow = () => Date.now();
    const daemonNow = () => Date.now() + offset;
    writeFileSync(join(dir, 'licd.json'), JSON.stringify({
        leases: { ttlSeconds: 30, minTtlSeconds: 30, maxTtlSeconds: 60, disconnectGraceSeconds: 20 },
        // Steps across a restart are told from a stop by this tolerance (docs/threat-model.md).
        clock: { toleranceSeconds: 10 },
      }) + '\n');
    const port = await freePort();
    const violations: string[] = [];
    const counts = { steps: 0, restarts: 0, leases: 0, borrows: 0, returns: 0, refused: 0, checks: 0 };
    let proc: Proc | null = null;
    let logs = '';
    const url = `mqtt://127.0.0.1:${port}`;

    const startDaemon = async () => {
      proc = startDaemonProcess({ LICD_DATA_DIR: join(dir, 'data'), LICD_MQTT_PORT: String(port), LICD_CONFIG: join(dir, 'licd.json'), ...clockFile.env() });
      await proc.waitFor(/listening on mqtt/, 60_000);
    };
    const stopDaemon = async () => {
      if (!proc) return;
      const p: Proc = proc;
      logs += p.stdout() + p.stderr();
      p.child.kill('SIGTERM');
      await p.exited;
      proc = null;
    };
    const stepsSeen = () => ((proc?.stdout() ?? '') + (proc?.stderr() ?? '')).split('\n').filter((l) => /stepped (forward|back)/.test(l)).length;

    const live: LiveLease[] = [];
    const tokens: HeldToken[] = [];
    const borrower = new BorrowClient({ home: join(dir, 'home'), hostId: 'ab'.repeat(16), user: 'soak', hostName: 'soak-host', clock: { now: daemonNow } });
    let admin: LicdClient | null = null;

    const checkout = async () => {
      const feature = rng.pick(LEASE_FEATURES);
      const client = await LicdClient.connect({ url, timeoutMs: 10_000 });
      try {
        const lease = await client.checkout(feature, { ttl: 30 });
        const rec: LiveLease = { client, lease, feature, troubled: null };
        lease.on('lost', (e: Error) => (rec.troubled ??= `lost: ${e.message}`));
        lease.on('regained', () => (rec.troubled ??= 'expired on the server and taken again'));
        live.push(rec);
        counts.leases++;
      } catch (e) {
        if (!isLicdError(e)) throw e;
        counts.refused++;
        await client.close({ checkin: false });
      }
    };
    const borrow = async () => {
      if (!admin) return;
      const feature = rng.pick(BORROW_FEATURES);
      try {
        const r = await borrower.borrow(admin, [{ feature, count: 1 }], rng.pick([1, 24]));
        for (const b of r.borrows) tokens.push({ id: b.id, feature: b.feature, count: b.count, until: Date.parse(b.until) });
        counts.borrows++;
      } catch (e) {
        if (!isLicdError(e)) throw e;
        counts.refused++;
      }
    };
    const giveBack = async () => {
      if (!admin || tokens.length === 0) return;
      const i = rng.int(0, tokens.length - 1);
      const tok = tokens[i]!;
      try {
        await borrower.giveBack(admin, [tok.id]);
        tokens.splice(i, 1);
        counts.returns++;
      } catch (e) {
        if (!isLicdError(e)) throw e;
      }
    };
    const checkin = async () => {
      if (live.length <= 2) return;
      const i = rng.int(0, live.length - 1);
      const rec = live[i]!;
      try {
        await rec.client.checkin({ leases: [rec.lease.id] });
        live.splice(i, 1);
        await rec.client.close({ checkin: false });
      } catch (e) {
        if (!isLicdError(e)) throw e;
      }
    };

    const check = async (round: number, what: string) => {
      counts.checks++;
      let s: StatusResult;
      try {
        s = await admin!.status();
      } catch (e) {
        violations.push(`round ${round} (${what}): status failed: ${String(e)}`);
        return;
      }
      const byFeature = new Map(s.features.map((f) => [f.feature, f]));
      for (const f of s.features) {
        if (f.leased + f.borrowed + f.held > f.total) violations.push(`round ${round} (${what}): ${f.feature}: ${f.leased} leased + ${f.borrowed} borrowed + ${f.held} held > ${f.total} seats`);
      }
      const mine = new Map<string, number>();
      for (const rec of live) {
        if (rec.troubled) {
          violations.push(`round ${round} (${what}): lease ${rec.lease.id} of a live client on ${rec.feature} was reclaimed (${rec.troubled})`);
          rec.troubled = null;
        }
        const f = byFeature.get(rec.feature);
        if (!f?.leases.some((l) => l.id === rec.lease.id)) violations.push(`round ${round} (${what}): lease ${rec.lease.id} of a live client on ${rec.feature} is not listed`);
        mine.set(rec.feature, (mine.get(rec.feature) ?? 0) + rec.lease.view.count);
      }
      const tNow = trueNow();
      const dNow = daemonNow();
      for (let i = tokens.length - 1; i >= 0; i--) {
        const tok = tokens[i]!;
        if (tNow > tok.until + SLACK_MS) {
          tokens.splice(i, 1); // the token has ended in true time; the seat may come free
          continue;
        }
        if (tNow >= tok.until - SLACK_MS || dNow >= tok.until - SLACK_MS) continue;
        const f = byFeature.get(tok.feature);
        if (!f?.borrows.some((b) => b.id === tok.id)) violations.push(`round ${round} (${what}): borrow ${tok.id} on ${tok.feature} (token valid until ${new Date(tok.until).toISOString()}) is not listed: its seat can be granted twice`);
        mine.set(tok.feature, (mine.get(tok.feature) ?? 0) + tok.count);
      }
      for (const [feature, n] of mine) {
        const total = byFeature.get(feature)?.total ?? 0;
        if (n > total) violations.push(`round ${round} (${what}): ${feature}: ${n} seats held by live clients and valid tokens > ${total} seats`);
      }
    };

    try {
      await startDaemon();
      admin = await LicdClient.connect({ url, timeoutMs: 10_000, username: 'admin', password: readFileSync(join(dir, 'data', 'admin.password'), 'utf8').trim() });
      for (let i = 0; i < 3; i++) await checkout();
      for (let i = 0; i < 3; i++) await borrow();
      await check(0, 'start');
      for (let round = 1; round <= opts.rounds; round++) {
        let [name, delta] = rng.pick(STEPS);
        // Keep the clock within a few days of the truth (a step that would go further goes back).
        if (Math.abs(offset + delta) > 3 * DAY) [name, delta] = [name.startsWith('+') ? name.replace('+', '-') : name.replace('-', '+'), -delta];
        const restart = rng.chance(0.35);
        offset += delta;
        const what = `${name}${restart ? ' while stopped' : ' while running'} (clock ${offset >= 0 ? '+' : ''}${Math.round(offset / MIN)} min)`;
        opts.log(`round ${round}: ${what}`);
        counts.steps++;
        if (restart) {
          await stopDaemon();
          clockFile.set(`${offset >= 0 ? '+' : ''}${Math.round(offset / 1000)}`);
          await startDaemon();
          counts.restarts++;
        } else {
          const before = stepsSeen();
          clockFile.set(`${offset >= 0 ? '+' : ''}${Math.round(offset / 1000)}`);
          const deadline = Date.now() + 15_000;
          while (stepsSeen() <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
          if (stepsSeen() <= before) violations.push(`round ${round} (${what}): licd did not report the step in its log`);
        }
        // Load in the new time, then a few reaper ticks, then the invariants.
        for (let i = 0; i < 4; i++) {
          const op = rng.weighted([
            [checkout, 2],
            [borrow, 3],
            [giveBack, 1],
            [checkin, 1],
          ] as const);
          await op();
        }
        await new Promise((r) => setTimeout(r, 2500));
        await check(round, what);
      }
    } catch (e) {
      violations.push(`harness error: ${String((e as Error)?.stack ?? e)}`);
    } finally {
      for (const rec of live) await rec.client.close({ checkin: false }).catch(() => {});
      await admin?.close({ checkin: false }).catch(() => {});
      await stopDaemon().catch(() => {});
      if (violations.length === 0) rmSync(dir, { recursive: true, force: true });
      else {
        writeFileSync(join(dir, 'daemon.log'), logs);
        opts.log(`kept ${dir} (daemon logs in daemon.log)`);
      }
    }
    const summary = `clock-steps seed ${opts.seed}: ${counts.steps} steps (${counts.restarts} across restarts), ${counts.leases} leases, ${counts.borrows} borrows, ${counts.returns} returns, ${counts.refused} refusals, ${counts.checks} checks, ${violations.length} violations`;
    return { violations, summary };
  },
};
