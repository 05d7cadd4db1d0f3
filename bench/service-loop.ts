// Checkout+checkin through the service in-process (a real daemon from test/helpers: LevelDB in a
// temp dir, the emulated dongle; requests go to service.handle, no broker), with the usage history
// and the audit log on or off. Prints CPU per round trip, the main thread apart from the others.
//   npx tsx bench/service-loop.ts on|off|noaudit|nohist [round trips] [clients]
// With one client (the third argument 1) every checkout is its own group commit and signature, so
// the work per round trip does not depend on timing: under callgrind (--separate-threads=yes),
// two sizes give instructions per round trip by difference, as in bench/audit-chain.ts.
import { cpuThreadsMs } from './lib/proc.ts';
import { isHistoryMode, serviceDriver } from './lib/service-driver.ts';

const mode = process.argv[2] ?? 'on';
const n = Number(process.argv[3] ?? 20_000);
const clients = Number(process.argv[4] ?? 6);
if (!isHistoryMode(mode) || !(n > 0) || !(clients > 0)) {
  process.stderr.write('usage: npx tsx bench/service-loop.ts on|off|noaudit|nohist [round trips] [clients]\n');
  process.exit(64);
}
const { d, round: trips } = await serviceDriver(mode);
const threads = () => cpuThreadsMs(process.pid);
const round = (k: number) => trips(k, clients);

await round(Math.min(2000, n));
const t0 = threads();
const w0 = performance.now();
await round(n);
const wall = performance.now() - w0;
const t1 = threads();
const per = (ms: number) => ((ms * 1000) / n).toFixed(0);
console.log(`${mode}: ${per(t1.main - t0.main + t1.other - t0.other)} µs of CPU per checkout+checkin (main thread ${per(t1.main - t0.main)}, other threads ${per(t1.other - t0.other)}), ${((n / wall) * 1000).toFixed(0)} round trips/s, ${clients} clients`);
await d.dispose();
process.exit(0);
