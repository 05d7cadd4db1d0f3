/**
 * Fault: the broker restarts under licd (issue 9, finding 2). A real mosquitto (the shipped
 * config) with licd as a real child process on it, every seat of every feature held by a live
 * holder, and contenders asking for seats the whole time. Each round stops mosquitto (SIGTERM: a
 * clean stop that publishes every client's last will; or SIGKILL: none), keeps it down past the
 * disconnect grace, and starts it again on the same port. After each round:
 *   - 0 answered grants lost: every holder still holds the lease it was granted (same id);
 *   - 0 leases reclaimed from live clients: no holder saw its lease lost or re-granted;
 *   - 0 seats over the count: leased + borrowed <= total, and no contender was granted a seat
 *     while every seat was held.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LicdError } from '../../../src/core/errors.ts';
import { LicdClient } from '../../../src/sdk/client.ts';
import { startMosquitto } from '../../helpers/mosquitto.ts';
import { startDaemonProcess, type Proc } from '../../helpers/procs.ts';
import { Rng, deriveSeed } from '../rng.ts';

const GRACE_S = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Holder {
  client: LicdClient;
  feature: string;
  leaseId: string;
  events: string[];
}

export const fault = {
  name: 'broker-restart',
  help: 'mosquitto SIGTERM or SIGKILL and restart under licd with every seat held: no live holder loses its lease, no seat over the count',
  async run(opts: { seed: number; rounds: number; log: (s: string) => void }): Promise<{ violations: string[]; summary: string }> {
    const rng = new Rng(opts.seed);
    // The contenders' pauses come from their own generator, so the seed names the rounds.
    const loadRng = new Rng(deriveSeed(opts.seed, 1));
    const violations: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'licd-fault-broker-'));
    const mosq = await startMosquitto();
    let daemon: Proc | null = null;
    const clients: LicdClient[] = [];
    let stopLoad = false;
    let contenderAsks = 0;
    const keep = () => opts.log(`(kept ${dir} for a look)`);
    try {
      writeFileSync(
        join(dir, 'licd.json'),
        JSON.stringify({
          dataDir: join(dir, 'data'),
          mqtt: { broker: 'external', url: mosq.url, username: 'licd', password: mosq.passwords.licd },
          dongle: { presenceIntervalMs: 250, timeoutMs: 2000 },
          leases: { ttlSeconds: 10, minTtlSeconds: 2, maxTtlSeconds: 60, disconnectGraceSeconds: GRACE_S },
        }),
      );
      daemon = startDaemonProcess({ LICD_CONFIG: join(dir, 'licd.json'), LICD_LOG_LEVEL: 'info' });
      await daemon.waitFor(/listening on mqtt:\/\//, 30_000);
      const connect = async (o: { user: string; host: string; admin?: boolean }) => {
        const c = await LicdClient.connect({
          // The shipped mosquitto config lets admins log in on its TLS listener only.
          url: o.admin ? mosq.tlsUrl : mosq.url,
          timeoutMs: 5000,
          user: o.user,
          host: o.host,
          ...(o.admin ? { username: 'admin', password: mosq.passwords.admin, tls: { ca: readFileSync(mosq.certFile) } } : {}),
        });
        clients.push(c);
        return c;
      };
      const admin = await connect({ user: 'admin', host: 'console', admin: true });
      const status = await admin.status();
      // Every seat of every feature, one holder per seat.
      const holders: Holder[] = [];
      for (const f of status.features) {
        for (let i = 0; i < f.total; i++) {
          const c = await connect({ user: `render${holders.length}`, host: `node-${holders.length}` });
          const lease = await c.checkout(f.feature);
          const h: Holder = { client: c, feature: f.feature, leaseId: lease.id, events: [] };
          lease.on('lost', (e: Error) => h.events.push(`lost: ${e.message}`));
          lease.on('regained', (v: { id: string }) => h.events.push(`regained as ${v.id} (its lease had been reclaimed)`));
          holders.push(h);
        }
      }
      const features = status.features.map((f) => f.feature);
      // Contenders ask for seats all the time: every seat is held, so each must be refused.
      const contenders = await Promise.all([0, 1, 2].map((i) => connect({ user: `contender${i}`, host: `spare-${i}` })));
      const load = contenders.map(async (c, i) => {
        for (let n = 0; !stopLoad; n++) {
          const feature = features[(i + n) % features.length]!;
          try {
            contenderAsks++;
            const l = await c.checkout(feature, { ttl: 10 });
            violations.push(`over-granted: contender ${c.clientId} got ${feature} lease ${l.id} while every seat was held by a live holder`);
            await l.release().catch(() => {});
          } catch (e) {
            if (!(e instanceof LicdError) || !['NO_SEATS', 'TIMEOUT', 'SHUTTING_DOWN'].includes(e.code)) violations.push(`contender ${c.clientId}: unexpected ${String(e)}`);
          }
          await sleep(100 + loadRng.int(0, 200));
        }
      });
      opts.log(`${holders.length} holders hold every seat of ${features.join(', ')}; 3 contenders ask all the time`);

      for (let round = 1; round <= opts.rounds; round++) {
        const signal = rng.chance(0.6) ? 'SIGTERM' : 'SIGKILL';
        const downMs = 1500 + rng.int(0, 2500);
        const t0 = Date.now();
        await mosq.kill(signal);
        await sleep(downMs);
        await mosq.relaunch();
        // Settle: every holder's lease renewed (active again), or gone (what must not happen).
        const deadline = Date.now() + 45_000;
        let settled = false;
        while (Date.now() < deadline) {
          try {
            const s = await admin.status();
            const all = s.features.flatMap((f) => f.leases);
            if (all.every((l) => l.state === 'active')) {
              settled = true;
              break;
            }
          } catch {
            /* licd not subscribed again yet */
          }
          await sleep(250);
        }
        if (!settled) violations.push(`round ${round}: leases still disconnected 45 s after mosquitto came back`);
        await sleep(GRACE_S * 1000 + 1500);
        const s = await admin.status();
        const byId = new Map(s.features.flatMap((f) => f.leases.map((l) => [l.id, l] as const)));
        let kept = 0;
        for (const h of holders) {
          const l = byId.get(h.leaseId);
          if (!l) violations.push(`round ${round} (${signal}): ${h.client.clientId} lost its answered ${h.feature} lease ${h.leaseId} (reclaimed from a live client)`);
          else kept++;
          for (const e of h.events.splice(0)) violations.push(`round ${round} (${signal}): ${h.client.clientId} ${h.feature}: ${e}`);
        }
        for (const f of s.features) {
          if (f.leased + f.borrowed > f.total) violations.push(`round ${round}: ${f.feature} over the count: ${f.leased} leased + ${f.borrowed} borrowed of ${f.total}`);
        }
        opts.log(`round ${round}: mosquitto ${signal}, down ${downMs} ms, settled after ${Date.now() - t0} ms; ${kept} of ${holders.length} leases kept`);
      }
      stopLoad = true;
      await Promise.all(load);
      return {
        violations,
        summary: `${opts.rounds} broker restarts, ${holders.length} live holders, ${contenderAsks} contender checkouts: ${violations.length} violations`,
      };
    } catch (e) {
      violations.push(`harness error: ${(e as Error).message}`);
      return { violations, summary: `stopped by an error: ${(e as Error).message}` };
    } finally {
      stopLoad = true;
      for (const c of clients) await c.close({ checkin: false }).catch(() => {});
      if (daemon) {
        daemon.child.kill('SIGTERM');
        await Promise.race([daemon.exited, sleep(10_000)]);
        daemon.child.kill('SIGKILL');
      }
      await mosq.stop();
      if (violations.length > 0) {
        if (daemon) writeFileSync(join(dir, 'daemon.log'), daemon.stdout() + daemon.stderr());
        keep();
      } else rmSync(dir, { recursive: true, force: true });
    }
  },
};
