// The audit chain alone (src/core/audit.ts): a lease.granted and a lease.ended record per
// checkout+checkin pair, prepared and settled as the service does, no store. Prints CPU per pair
// and bytes per record. CPU time spreads 30 % and more on a shared machine; count instructions
// instead, which repeat: run it under callgrind for two sizes and take the difference, so that
// start-up and the JIT's warm-up cancel:
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/a.out node --import tsx bench/audit-chain.ts 20000
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/b.out node --import tsx bench/audit-chain.ts 60000
//   (I refs of b - I refs of a) / 40000 = instructions per pair; callgrind_annotate says where.
import { AuditChain } from '../src/core/audit.ts';
import type { SeatEvent } from '../src/core/events.ts';
import type { Lease } from '../src/core/model.ts';
import { sha256 } from '../src/crypto/sha256.ts';

const n = Number(process.argv[2] ?? 100_000);
const chain = new AuditChain({ sha256, clock: { now: () => Date.now() } });
chain.resume(null);
let t = 1_764_547_200_000;
let bytes = 0;
const c0 = process.cpuUsage();
for (let i = 0; i < n; i++) {
  const w = i % 20;
  const lease: Lease = { id: `L${i.toString(36).padStart(20, '0')}`, feature: 'vray_distributed', count: 1, clientId: `bench-w${w}-aaaaaa`, pid: 100, user: `user-${w}`, host: `render-node-${w}`, since: t, expiresAt: t + 600_000, ttlMs: 600_000, disconnectedAt: null };
  for (const e of [{ type: 'lease.granted', at: t++, lease }, { type: 'lease.ended', at: t++, lease, reason: 'checkin' }] as SeatEvent[]) {
    for (const m of chain.prepare([e])) bytes += m.kind === 'rec.put' ? (m.json?.length ?? 0) : 0;
    chain.settle([e], true);
  }
}
const c = process.cpuUsage(c0);
console.log(`${n} pairs: ${((c.user + c.system) / n).toFixed(2)} µs of CPU per pair, ${(bytes / n / 2).toFixed(0)} bytes per stored record`);
