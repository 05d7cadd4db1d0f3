/**
 * npx tsx bench/profile.ts FILE.cpuprofile [--us-per-op N] [--window FROM,TO]
 *
 * Sorts a daemon's CPU profile (V8's, as `npm run bench -- --profile DIR` writes one per measuring
 * window, bench/instrument.mjs) into the parts of a checkout+checkin (issue 18): MQTT parse and
 * publish, JSON, validation, the seat table, the store, signing, the usage history and audit log,
 * the service's own code, node's runtime, garbage collection. Each sample's self time goes to the
 * first part its stack names, from the sampled function outwards (so JSON.parse called by the
 * service counts as the service's; V8 shows builtins inside their caller). Prints each part's
 * share of the busy time and, given the daemon's CPU per round trip, its microseconds. With
 * --window, only the samples taken FROM to TO seconds after the profile began count (a whole-life
 * profile, `--cpu-prof`, cut to one phase such as the grown farm).
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Parts judged by the sampled frame alone. */
const SELF_PARTS: Array<[string, (f: CallFrame) => boolean]> = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['socket writes (syscalls)', (f) => /^(writev|writeBuffer|writeUtf8String|writeLatin1String)$/.test(f.functionName) && f.url === ''],
];
const RUNTIME = /^node:/;

/** The parts, in the order they are tried on each frame from the sampled one outwards: the first that matches wins. */
const PARTS: Array<[string, (f: CallFrame) => boolean]> = [
  ['holder secret hash', (f) => /src\/crypto\/holder/.test(f.url)],
  ['signing (Ed25519)', (f) => /crypto\/sig|ed25519/.test(f.url) || /^(sign|signOneShot)$/.test(f.functionName) && f.url.includes('crypto')],
  // node's own crypto/hash frames count for their caller (the audit chain or the holder hash).
  ['audit log (hash chain)', (f) => /core\/audit|audit\/audit-log|src\/crypto\/sha256/.test(f.url)],
  ['usage history', (f) => /core\/history|history\/history|core\/reports/.test(f.url)],
  ['events, alerts, metrics', (f) => /core\/events|core\/alerts|alerts\/|metrics\//.test(f.url)],
  ['store (LevelDB)', (f) => /level|store\/level-store|core\/integrity/.test(f.url)],
  ['MQTT parse', (f) => /mqtt-packet\/parser|bl\/|readable-stream/.test(f.url)],
  ['MQTT publish', (f) => /mqtt-packet\/(writeToStream|generate)|mqtt\/.*lib\/client|mqtt\/dist/.test(f.url)],
  ['MQTT link (licd)', (f) => /mqtt\/server-link|mqtt\/connect/.test(f.url)],
  ['validation', (f) => /core\/validate|core\/protocol/.test(f.url)],
  ['seat table', (f) => /core\/seats|core\/policy|core\/queue|core\/sharing/.test(f.url)],
  ['service', (f) => /core\/service|core\/borrowing|core\/tokens|core\/signed|daemon\//.test(f.url)],
];

export function breakdown(p: CpuProfile, window?: { fromS: number; toS: number }): { busyMs: number; idleMs: number; parts: Array<{ part: string; ms: number; share: number }> } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (window && (t < window.fromS * 1e6 || t > window.toS * 1e6)) continue;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const totals = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    // The sampled frame itself for GC and socket writes; else the nearest licd or library frame
    // outwards (node's streams and timers count for whoever called them); else node's runtime.
    const own = SELF_PARTS.find(([, m]) => m(f));
    let part = own?.[0] ?? null;
    for (let x: number | undefined = id; part === null && x !== undefined; x = parent.get(x)) part = PARTS.find(([, m]) => m(byId.get(x!)!.callFrame))?.[0] ?? null;
    part ??= RUNTIME.test(f.url) || f.url === '' && !/^\((program|root)\)$/.test(f.functionName) ? 'node runtime (sockets, timers)' : 'other (native, program)';
    totals.set(part, (totals.get(part) ?? 0) + us);
  }
  const busy = [...totals.values()].reduce((a, b) => a + b, 0);
  const parts = [...totals.entries()].map(([part, us]) => ({ part, ms: us / 1000, share: busy > 0 ? us / busy : 0 })).sort((a, b) => b.ms - a.ms);
  return { busyMs: busy / 1000, idleMs: idle / 1000, parts };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--us-per-op');
  const perOp = at >= 0 ? Number(args.splice(at, 2)[1]) : null;
  const w = args.indexOf('--window');
  const range = w >= 0 ? (args.splice(w, 2)[1] ?? '').split(',').map(Number) : null;
  if (args.length === 0 || (range !== null && (range.length !== 2 || range.some((x) => !Number.isFinite(x))))) {
    console.error('usage: npx tsx bench/profile.ts FILE.cpuprofile [--us-per-op N] [--window FROM,TO]  (seconds after the profile began)');
    process.exit(2);
  }
  for (const file of args) {
    const b = breakdown(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, range ? { fromS: range[0]!, toS: range[1]! } : undefined);
    console.log(`${file}${range ? ` (${range[0]} to ${range[1]} s)` : ''}: busy ${b.busyMs.toFixed(0)} ms, idle ${b.idleMs.toFixed(0)} ms`);
    for (const x of b.parts) console.log(`  ${x.part.padEnd(28)} ${(100 * x.share).toFixed(1).padStart(5)} %${perOp !== null ? `  ${(perOp * x.share).toFixed(1).padStart(6)} µs/op` : ''}`);
  }
}
