// CPU per operation of a LevelDB batch: abstract-level's public batch() against the lean path
// LevelStore writes through (classic-level's _batch with string keys and values). Unsynced, in a
// temp dir, alternating. `npx tsx bench/store-batch.ts [operations]`. See src/store/level-store.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';

const n = Number(process.argv[2] ?? 40_000);
const lease = (i: number) => ({ id: `L${i.toString(16).padStart(20, '0')}`, feature: 'bench', version: '1.0', count: 1, user: 'user-17', host: 'render-node-17', clientId: 'bench-client-17', pid: 1234, holder: 'h'.repeat(43), since: 1764547200000 + i, expiresAt: 1764547260000 + i, ttlMs: 60_000 });
const record = (i: number) => `{"at":"2026-12-01T02:00:00.000Z","client":"bench-client-17","count":1,"feature":"bench","host":"render-node-17","kind":"lease.granted","lease":"L${i}","prev":"${'a'.repeat(64)}","seq":${i},"user":"user-17"}`;

async function run(path: 'public' | 'lean'): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'licd-store-batch-'));
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  await db.open();
  const lean = db as unknown as { _batch(ops: unknown[], o: { sync: boolean }): Promise<void> };
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i += 8) {
    const ops: Array<Record<string, unknown>> = [];
    for (let k = i; k < i + 8; k++) {
      const key = `rec!audit!${String(k).padStart(12, '0')}`;
      if (path === 'public') ops.push({ type: 'put', key: `lease!${k}`, value: lease(k) }, { type: 'put', key, value: record(k), valueEncoding: 'utf8' });
      else ops.push({ type: 'put', key: `lease!${k}`, value: JSON.stringify(lease(k)) }, { type: 'put', key, value: record(k) });
    }
    if (path === 'public') await db.batch(ops as never, { sync: false });
    else await lean._batch(ops, { sync: false });
  }
  const c = process.cpuUsage(c0);
  await db.close();
  rmSync(dir, { recursive: true, force: true });
  return (c.user + c.system) / (2 * n);
}

for (let round = 0; round < 3; round++) {
  for (const path of ['public', 'lean'] as const) console.log(`${path.padEnd(6)} ${(await run(path)).toFixed(2)} µs CPU per operation (JSON encoding included)`);
}
