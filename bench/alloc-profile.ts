// Bytes the daemon allocates per checkout+checkin, by the function that allocates them: the
// service in-process (as bench/service-loop.ts: a real daemon from test/helpers, LevelDB in a
// temp dir, no broker), six clients, with the usage history and the audit log on or off. V8's
// sampling heap profiler, told to keep the samples of objects the GC has already collected, so
// short-lived garbage counts: what the young generation's scavenges pay for. Allocation does not
// depend on the machine's load, unlike CPU time (docs/performance.md, 2 December, third session).
//   npx tsx bench/alloc-profile.ts on|off [round trips]
import { Session } from 'node:inspector/promises';
import { startTestDaemon } from '../test/helpers/daemon.ts';
const mode = process.argv[2] ?? 'on';
const n = Number(process.argv[3] ?? 5000);
const clients = 6;
const off = { enabled: false };
const config = { on: {}, off: { history: off, audit: off } }[mode as 'on' | 'off'];
if (!config || !(n > 0)) {
  process.stderr.write('usage: npx tsx bench/alloc-profile.ts on|off [round trips]\n');
  process.exit(64);
}
const d = await startTestDaemon({ config: { ...config, leases: { ttlSeconds: 600 } } });
const enc = new TextEncoder();
let seq = 0;
async function client(w: number, trips: number): Promise<void> {
  const id = `bench-w${w}-aaaaaa`;
  const holder = `holderSecretForBenchmark${w}xxxxxxxxxx`;
  for (let i = 0; i < trips; i++) {
    const a = (await d.service.handle(id, false, enc.encode(JSON.stringify({ id: String(++seq), op: 'checkout', feature: 'vray_distributed', user: `u${w}`, host: `h${w}`, pid: 100 + w, holder })))) as any;
    await d.service.handle(id, false, enc.encode(JSON.stringify({ id: String(++seq), op: 'checkin', leases: [a.result.lease.id], holder })));
  }
}
const round = (trips: number) => Promise.all(Array.from({ length: clients }, (_, w) => client(w, Math.ceil(trips / clients))));
await round(2000);
const s = new Session();
s.connect();
await s.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as any);
await round(n);
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
console.log(`${mode}: ${(total / n).toFixed(0)} bytes allocated per round trip (sampled every 512 bytes); the functions that allocate most:`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(String((v / n).toFixed(0)).padStart(7), k);
await d.dispose();
process.exit(0);
