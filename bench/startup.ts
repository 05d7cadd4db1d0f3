/**
 * npm run bench:startup [-- --reps N] [--json FILE]
 *
 * The compiled build (`npm run build`: dist/) against the TypeScript sources through tsx, as a
 * user meets them (issue 12, item 6; method and figures in docs/performance.md), interleaved
 * run by run so that a change in the machine's load hits both alike:
 *
 *   licctl --help      wall time from spawn to exit, and peak resident memory (maxRSS at exit):
 *                      node dist/src/cli/licctl-main.js --help  vs  node bin/licctl.mjs --help
 *   licd start         spawn to the first answer, in production mode (a config file, the
 *                      emulated dongle with its own license, mosquitto as the broker), then the
 *                      daemon's resident memory after 5 s idle and where it is (V8 heap, external),
 *                      and again settled, 20 s after its first answer: V8's memory reducer has then
 *                      returned what the start left (issue 18's idle target is read there)
 *
 * The steady farm with 10,000 leases (`npm run bench -- --phases farm`) gives the memory under load.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLicense, makeVendorKey, REPO, spawnDaemon, staleBuild, waitServing, type DaemonBuild } from './lib/daemon.ts';
import { startMosquitto } from './lib/mosquitto.ts';
import { nowMs, sleep } from './lib/proc.ts';

interface Memory {
  rss: number;
  maxRss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const PROBE = join(import.meta.dirname, 'lib', 'memory-probe.mjs');
const BUILDS: DaemonBuild[] = ['compiled', 'tsx'];
/** How long after its first answer the daemon counts as settled idle (issue 18's idle target is read here). */
const SETTLED_MS = 20_000;

function parse(argv: string[]): { reps: number; json: string | null } {
  let reps = 5;
  let json: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--reps') reps = Number(argv[++i]);
    else if (a === '--json') json = argv[++i] ?? null;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run bench:startup -- [--reps N] [--json FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}; see --help`);
  }
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps needs a whole number');
  return { reps, json };
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** licctl --help as a user runs it; wall ms and the memory at exit. */
async function licctlHelp(build: DaemonBuild, dir: string, i: number): Promise<{ ms: number; mem: Memory }> {
  const memFile = join(dir, `licctl-${build}-${i}.json`);
  const entry = build === 'compiled' ? join(REPO, 'dist', 'src', 'cli', 'licctl-main.js') : join(REPO, 'bin', 'licctl.mjs');
  const t0 = nowMs();
  const child = spawn(process.execPath, ['--import', PROBE, entry, '--help'], { cwd: REPO, env: { ...process.env, NODE_OPTIONS: '', LICD_BENCH_MEMORY_OUT: memFile }, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const ms = nowMs() - t0;
  if (code !== 0) throw new Error(`licctl --help (${build}) exited ${code}`);
  return { ms, mem: JSON.parse(readFileSync(memFile, 'utf8')) as Memory };
}

function load(): string {
  const l = loadavg();
  return `load average ${l.map((x) => x.toFixed(2)).join(' ')}`;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const stale = staleBuild();
  if (stale) throw new Error(stale);
  const root = mkdtempSync(join(tmpdir(), 'licd-startup-'));
  const before = load();
  process.stderr.write(`bench:startup: ${o.reps} runs of each, ${cpus().length} cores, node ${process.version}; ${before}\n`);
  const help: Record<DaemonBuild, Array<{ ms: number; mem: Memory }>> = { compiled: [], tsx: [] };
  const start: Record<DaemonBuild, Array<{ ms: number; rss: number; mem: Memory; settledRss: number; settledMem: Memory }>> = { compiled: [], tsx: [] };
  const password = 'bench-startup-pw';
  const mosq = await startMosquitto(join(root, 'mosquitto'), { username: 'licd', password, maxSockets: 100 });
  try {
    const key = makeVendorKey();
    for (let i = 0; i < o.reps; i++) {
      for (const b of i % 2 ? [...BUILDS].reverse() : BUILDS) help[b].push(await licctlHelp(b, root, i));
      for (const b of i % 2 ? [...BUILDS].reverse() : BUILDS) {
        const dir = join(root, `licd-${b}-${i}`);
        const license = await makeLicense(`${dir}-license`, 100, key);
        const memFile = join(root, `licd-${b}-${i}.json`);
        process.env.LICD_BENCH_DAEMON_ARGS = `--import ${PROBE}`;
        process.env.LICD_BENCH_MEMORY_OUT = memFile;
        const d = spawnDaemon({ license, dataDir: dir, build: b, broker: { kind: 'external', url: mosq.url, username: 'licd', password } });
        try {
          const first = await waitServing(d, 60_000, 'heartbeat', { leases: [] });
          const served = nowMs();
          await sleep(5000);
          const rss = d.rssMiB();
          const mem = JSON.parse(readFileSync(memFile, 'utf8')) as Memory;
          // Settled: V8's memory reducer returns the start's garbage at its first memory-reducing
          // collection, about 8 s after the start's last full one (docs/performance.md).
          await sleep(Math.max(0, SETTLED_MS - (nowMs() - served)));
          start[b].push({ ms: first.ms, rss, mem, settledRss: d.rssMiB(), settledMem: JSON.parse(readFileSync(memFile, 'utf8')) as Memory });
        } finally {
          await d.stop();
        }
        process.stderr.write(`  run ${i + 1} ${b}: licctl --help ${help[b].at(-1)!.ms.toFixed(0)} ms ${help[b].at(-1)!.mem.maxRss} MiB; licd serving after ${start[b].at(-1)!.ms.toFixed(0)} ms, ${start[b].at(-1)!.rss.toFixed(1)} MiB idle, ${start[b].at(-1)!.settledRss.toFixed(1)} MiB settled\n`);
      }
    }
  } finally {
    delete process.env.LICD_BENCH_DAEMON_ARGS;
    await mosq.stop();
    rmSync(root, { recursive: true, force: true });
  }
  const after = load();
  const rows: Array<[string, string, number, number, string]> = [];
  const row = (key: string, label: string, f: (b: DaemonBuild) => number, unit: string) => rows.push([key, label, f('compiled'), f('tsx'), unit]);
  row('licctl_help_ms', 'licctl --help, wall time', (b) => median(help[b].map((x) => x.ms)), 'ms');
  row('licctl_help_max_rss_mb', 'licctl --help, peak resident memory', (b) => median(help[b].map((x) => x.mem.maxRss)), 'MiB');
  row('licd_start_ms', 'licd: spawn to first answer (mosquitto, emulated dongle)', (b) => median(start[b].map((x) => x.ms)), 'ms');
  row('licd_idle_rss_mb', 'licd: resident memory, 5 s idle after serving', (b) => median(start[b].map((x) => x.rss)), 'MiB');
  row('licd_idle_heap_total_mb', '  of which V8 heap (committed)', (b) => median(start[b].map((x) => x.mem.heapTotal)), 'MiB');
  row('licd_idle_heap_used_mb', '  V8 heap in use', (b) => median(start[b].map((x) => x.mem.heapUsed)), 'MiB');
  row('licd_idle_external_mb', '  external (Buffers, native objects V8 knows of)', (b) => median(start[b].map((x) => x.mem.external)), 'MiB');
  row('licd_settled_rss_mb', `licd: resident memory, settled idle (${SETTLED_MS / 1000} s after serving)`, (b) => median(start[b].map((x) => x.settledRss)), 'MiB');
  row('licd_settled_heap_total_mb', '  of which V8 heap (committed)', (b) => median(start[b].map((x) => x.settledMem.heapTotal)), 'MiB');
  const w = Math.max(...rows.map((r) => r[1].length));
  process.stdout.write(`\nlicd compiled build vs sources through tsx: medians of ${o.reps} runs, ${cpus().length} cores, node ${process.version}\n`);
  process.stdout.write(`machine before: ${before}; after: ${after}\n`);
  process.stdout.write(`${'figure'.padEnd(w)}  ${'compiled'.padStart(10)}  ${'tsx'.padStart(10)}\n`);
  for (const [, label, c, t, unit] of rows) process.stdout.write(`${label.padEnd(w)}  ${`${c.toFixed(c < 10 ? 1 : 0)} ${unit}`.padStart(10)}  ${`${t.toFixed(t < 10 ? 1 : 0)} ${unit}`.padStart(10)}\n`);
  if (o.json) {
    const out = { date: new Date().toISOString(), node: process.version, cpus: cpus().length, reps: o.reps, loadBefore: before, loadAfter: after, figures: Object.fromEntries(rows.map(([k, , c, t]) => [k, { compiled: c, tsx: t }])), runs: { help, start } };
    writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
    process.stdout.write(`figures written to ${o.json}\n`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:startup: ${(e as Error)?.message ?? String(e)}\n`);
    process.exit(1);
  },
);
