/**
 * Loaded into a process with `node --import` by bench/startup.ts: writes where the process's
 * memory is to LICD_BENCH_MEMORY_OUT, every second (a daemon) and at exit (licctl): resident set
 * and its peak, and V8's heap, external and array buffer figures, in MiB.
 */
import { writeFileSync } from 'node:fs';

const out = process.env.LICD_BENCH_MEMORY_OUT;
const mib = (bytes) => Math.round((bytes / 1048576) * 10) / 10;

function write() {
  const m = process.memoryUsage();
  writeFileSync(out, JSON.stringify({ rss: mib(m.rss), maxRss: mib(process.resourceUsage().maxRSS * 1024), heapTotal: mib(m.heapTotal), heapUsed: mib(m.heapUsed), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers) }));
}

if (out) {
  setInterval(write, 1000).unref();
  process.on('exit', write);
}
