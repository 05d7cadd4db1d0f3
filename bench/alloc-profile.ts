// Bytes the daemon allocates per checkout+checkin, by the function that allocates them: the
// service in-process (as bench/service-loop.ts: a real daemon from test/helpers, LevelDB in a
// temp dir, no broker), six clients, with the usage history and the audit log on or off. V8's
// sampling heap profiler, told to keep the samples of objects the GC has already collected, so
// short-lived garbage counts: what the young generation's scavenges pay for. Allocation does not
// depend on the machine's load, unlike CPU time (docs/performance.md, 2 December, third session).
//   npx tsx bench/alloc-profile.ts on|off [round trips]
//   npx tsx bench/alloc-profile.ts heartbeat [heartbeats]   (bytes per heartbeat of the 8 leases the development license allows, history and audit on)
import { Session } from 'node:inspector/promises';
import { expectOk, serviceDriver } from './lib/service-driver.ts';

const mode = process.argv[2] ?? 'on';
const n = Number(process.argv[3] ?? 5000);
if ((mode !== 'on' && mode !== 'off' && mode !== 'heartbeat') || !(n > 0)) {
  process.stderr.write('usage: npx tsx bench/alloc-profile.ts on|off|heartbeat [round trips or heartbeats]\n');
  process.exit(64);
}
const { d, send, round } = await serviceDriver(mode === 'heartbeat' ? 'on' : mode);
const CLIENTS = 6;
// Heartbeats: the 8 seats of the development license held (one lease per client id, as a farm's
// nodes), renewed in turn, one in flight per lease.
const held: Array<{ id: string; lease: string }> = [];
async function beats(count: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < count) {
      const h = held[next++ % held.length]!;
      expectOk(await send(h.id, { op: 'heartbeat', leases: [h.lease], holder: 'h'.repeat(22) }), 'heartbeat');
    }
  };
  await Promise.all(Array.from({ length: held.length }, one));
}
if (mode === 'heartbeat') {
  for (let i = 0; i < 8; i++) {
    const id = `farm-node-${i}`;
    const a = expectOk(await send(id, { op: 'checkout', feature: 'vray_distributed', user: 'render', host: `node-${i}`, pid: 1, holder: 'h'.repeat(22) }), 'checkout');
    held.push({ id, lease: (a.result!.lease as { id: string }).id });
  }
  await beats(5000);
} else await round(2000, CLIENTS);
const s = new Session();
s.connect();
await s.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as any);
if (mode === 'heartbeat') await beats(n);
else await round(n, CLIENTS);
const { profile } = (await s.post('HeapProfiler.stopSampling')) as any;
const self = new Map<string, number>();
let total = 0;
const walk = (node: any) => {
  const f = node.callFrame;
  const name = `${f.functionName || '(anon)'} ${f.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${f.lineNumber}`;
  if (node.selfSize) { self.set(name, (self.get(name) ?? 0) + node.selfSize); total += node.selfSize; }
  for (const c of node.children) walk(c);
};
walk(profile.head);
console.log(`${mode}: ${(total / n).toFixed(0)} bytes allocated per ${mode === 'heartbeat' ? 'heartbeat' : 'round trip'} (sampled every 512 bytes); the functions that allocate most:`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(String((v / n).toFixed(0)).padStart(7), k);
await d.dispose();
process.exit(0);
