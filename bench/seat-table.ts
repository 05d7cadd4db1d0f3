/**
 * The seat table alone (src/core/seats.ts): checkout+checkin cycles of a few clients while N other
 * leases are held, CPU per cycle. Issue 18's scale figure (CPU per op, 100,000 against 1,000 live
 * leases) without the broker, the store or the service: how much of its growth is the table's.
 *
 *   npx tsx bench/seat-table.ts [N ...]     (default 1000 100000; each without and with LINGER)
 */
import { EMPTY_POLICY } from '../src/core/policy.ts';
import { SeatTable } from '../src/core/seats.ts';
import type { FeatureLicense } from '../src/core/entitlement.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);

function run(held: number, linger: boolean): number {
  const features: FeatureLicense[] = [{ name: 'render', product: 'Render', version: '1', seats: held + 100, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }];
  let n = 0;
  const t = new SeatTable(features, () => `L${(++n).toString(36).padStart(10, '0')}`);
  // With LINGER for the feature, a checkout first looks for a seat lingering for its user@host.
  if (linger) t.setPolicy({ ...EMPTY_POLICY, linger: new Map([['render', { ms: 60_000, line: 1 }]]) });
  for (let i = 0; i < held; i++) {
    t.checkout({ clientId: `node-${i}`, holder: `holder-hash-${i}`.padEnd(43, 'x'), pid: 1, user: 'u', host: `node-${i}`, feature: 'render', count: 1, ttlMs: 86400_000 }, T0);
  }
  const cycle = (k: number, now: number) => {
    const c = `bench-${k % 20}`;
    const h = `bench-holder-${k % 20}`.padEnd(43, 'y');
    const lease = t.checkout({ clientId: c, holder: h, pid: 1, user: 'b', host: c, feature: 'render', count: 1, ttlMs: 60_000 }, now).result.lease;
    t.checkin(c, h, { ids: [lease.id] }, now);
  };
  for (let k = 0; k < 200_000; k++) cycle(k, T0 + k);
  const rounds = 400_000;
  const t0 = process.cpuUsage();
  for (let k = 0; k < rounds; k++) cycle(k, T0 + 200_000 + k);
  const d = process.cpuUsage(t0);
  return ((d.user + d.system) / rounds);
}

for (const linger of [false, true]) {
  for (const held of sizes.length > 0 ? sizes : [1000, 100_000]) {
    const us = [run(held, linger), run(held, linger), run(held, linger)].sort((a, b) => a - b)[1]!;
    process.stdout.write(`${held.toLocaleString('en-US')} leases held${linger ? ', LINGER for the feature' : ''}: ${us.toFixed(2)} µs CPU per checkout+checkin in the table (median of 3)\n`);
  }
}
