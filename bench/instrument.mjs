/**
 * Timing probes inside the daemon, for the benchmark only: loaded with `node --import` before the
 * daemon's entry point when LICD_BENCH_INSTRUMENT_OUT names a file (bench/lib/daemon.ts does it).
 * Plain JavaScript, so that it needs no tsx in the compiled daemon: it imports the daemon's own
 * modules from LICD_BENCH_MODULES (dist/src of the compiled build, or src/ when the daemon runs
 * through tsx; same files, so the same module instances the daemon uses) and wraps methods on
 * their prototypes, without changing src/:
 *
 *   LevelStore.commit      queue wait + batch + fsync of one change (the group commit), and the
 *                          store's stats: synced batches and the changes they carried
 *   LicenseService.handle  one request from parse to answer (commit included)
 *   CounterGate.commit     only to find the gate and read its stats: dongle counter steps
 *
 * and samples event-loop lag every 10 ms, and counts garbage collections (node's 'gc' performance
 * entries: scavenges and full mark-compacts, their number and pauses). On SIGUSR2 it writes a summary (InstrumentDump in
 * bench/lib/instrument-dump.ts) of what it saw since the last signal to the file and starts over,
 * so the bench can bracket a measuring window.
 *
 * With LICD_BENCH_PROFILE_DIR set (bench --profile DIR), it also runs V8's sampling CPU profiler
 * from one signal to the next and writes each window's profile to DIR/<pid>-<n>.cpuprofile, so a
 * profile covers a measuring window only (not the start); bench/profile.ts sorts one into parts.
 */
import { Session } from 'node:inspector';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const out = process.env.LICD_BENCH_INSTRUMENT_OUT;
const modules = process.env.LICD_BENCH_MODULES;
// .js for the compiled build, .ts for the sources (tsx).
const ext = process.env.LICD_BENCH_MODULE_EXT ?? '.js';
const load = (p) => import(pathToFileURL(join(modules, p + ext)).href);

function dist(a) {
  const s = Float64Array.from(a).sort();
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] : NaN);
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s.length ? s[s.length - 1] : NaN };
}

if (out && modules) {
  const { CounterGate } = await load('core/integrity');
  const { LicenseService } = await load('core/service');
  const { LevelStore } = await load('store/level-store');
  let commits = [];
  let handles = [];
  let lags = [];

  let store = null;
  let gate = null;
  let base = { batches: 0, changes: 0, steps: 0, gateChanges: 0 };
  const totals = () => ({ batches: store?.stats.batches ?? 0, changes: store?.stats.changes ?? 0, steps: gate?.stats.steps ?? 0, gateChanges: gate?.stats.changes ?? 0 });

  const gateCommit = CounterGate.prototype.commit;
  CounterGate.prototype.commit = function (mutations) {
    gate = this;
    return gateCommit.call(this, mutations);
  };

  const commit = LevelStore.prototype.commit;
  LevelStore.prototype.commit = function (mutations) {
    store = this;
    const t0 = performance.now();
    const p = commit.call(this, mutations);
    void p.then(
      () => commits.push(performance.now() - t0),
      () => {},
    );
    return p;
  };

  const handle = LicenseService.prototype.handle;
  LicenseService.prototype.handle = function (...args) {
    const t0 = performance.now();
    const p = handle.apply(this, args);
    void p.then(() => handles.push(performance.now() - t0));
    return p;
  };

  // Pauses on the main thread, by kind: scavenges (minor) and full mark-compacts (major).
  let gc = { minor: 0, minorMs: 0, major: 0, majorMs: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = e.detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
        gc.minor++;
        gc.minorMs += e.duration;
      } else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.major++;
        gc.majorMs += e.duration;
      }
    }
  }).observe({ entryTypes: ['gc'] });

  const every = 10;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - last - every));
    last = now;
  }, every).unref();

  const profileDir = process.env.LICD_BENCH_PROFILE_DIR;
  const inspector = profileDir ? new Session() : null;
  let windows = 0;
  if (inspector) {
    inspector.connect();
    inspector.post('Profiler.enable');
    // 200 µs between samples: a checkout+checkin costs about 100 µs of CPU.
    inspector.post('Profiler.setSamplingInterval', { interval: 200 });
  }
  const nextProfile = () => {
    if (!inspector) return;
    const start = () => inspector.post('Profiler.start');
    if (windows++ === 0) return start();
    inspector.post('Profiler.stop', (err, r) => {
      if (!err && r?.profile) writeFileSync(join(profileDir, `${process.pid}-${windows - 1}.cpuprofile`), JSON.stringify(r.profile));
      start();
    });
  };

  process.on('SIGUSR2', () => {
    nextProfile();
    const t = totals();
    const dump = {
      commit: dist(commits),
      handle: dist(handles),
      loopLag: dist(lags),
      batches: t.batches - base.batches,
      changes: t.changes - base.changes,
      counterSteps: t.steps - base.steps,
      counterChanges: t.gateChanges - base.gateChanges,
      gc,
    };
    gc = { minor: 0, minorMs: 0, major: 0, majorMs: 0 };
    base = t;
    commits = [];
    handles = [];
    lags = [];
    writeFileSync(`${out}.tmp`, JSON.stringify(dump));
    renameSync(`${out}.tmp`, out);
  });
}
