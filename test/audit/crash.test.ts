/**
 * A crash leaves the audit chain whole: licd (a child process) is killed with SIGKILL while real
 * clients check out and in concurrently; after a restart the export verifies (exit 0), every grant
 * answered ok before the kill is in it, and the next start's seal covers what the killed run had
 * not sealed.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { LicdClient } from '../../src/sdk/client.ts';
import { freePort } from '../crash/harness.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function startLicd(dir: string, port: number): Promise<{ p: Proc; url: string }> {
  const file = join(dir, 'licd.json');
  // A long interval: the killed run's last records are unsealed when it dies.
  writeFileSync(file, JSON.stringify({ audit: { sealIntervalSeconds: 3600 } }));
  const p = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1' }, ['--config', file]);
  const url = (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 60_000))[1]!;
  return { p, url };
}

test('SIGKILL while clients check out and in: the chain after a restart verifies and holds every answered grant', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  const dir = tempDir('licd-audit-crash-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  let { p, url } = await startLicd(dir, port);
  t.teardown(() => void p.child.kill('SIGKILL'));

  const clients = await Promise.all([0, 1, 2, 3].map((i) => LicdClient.connect({ url, user: `u${i}`, host: `h${i}`, timeoutMs: 5000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close({ checkin: false }).catch(() => {}))).then(() => {}));
  const answered: string[] = [];
  const deadline = Date.now() + 60_000;
  let stop = false;
  const work = clients.map(async (c, i) => {
    for (let n = 0; !stop; n++) {
      try {
        const r = await c.request<{ lease: { id: string } }>('checkout', { feature: 'vray_distributed', user: `u${i}`, host: `h${i}`, pid: 1000 + n, ttl: 600 });
        answered.push(r.lease.id);
        await c.request('checkin', { leases: [r.lease.id] });
      } catch {
        // No seats, or licd is gone: wait a little (a refusal at once would spin the loop).
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  while (answered.length < 24 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.true(answered.length >= 24, `only ${answered.length} grants answered before the deadline`);
  // The kill comes while requests are in flight.
  p.child.kill('SIGKILL');
  stop = true;
  await p.exited;
  await Promise.all(work);

  ({ p, url } = await startLicd(dir, port));
  const file = join(dir, 'audit.jsonl');
  const ex = await run(['audit', 'export', '--out', file, '--broker', url, '--user', 'admin', '--password-file', join(dir, 'admin.password')]);
  t.is(ex.code, 0, ex.stderr);
  const key = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  const v = await run(['audit', 'verify', file, '--vendor-key', key, '--json']);
  t.is(v.code, 0, v.stdout + v.stderr);
  const verdict = JSON.parse(v.stdout) as { ok: boolean; sealedThrough: number; keys: unknown[] };
  const records = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const granted = new Set(records.filter((r) => r.kind === 'lease.granted').map((r) => r.lease));
  t.deepEqual(answered.filter((id) => !granted.has(id)), [], 'every grant answered ok before the kill is recorded');
  // The second run's start seal covers the first run's last records.
  // (The SDK clients may take seats again once licd is back: those grants are the new run's.)
  const lastGrant = Math.max(...records.filter((r) => r.kind === 'lease.granted' && answered.includes(r.lease as string)).map((r) => r.seq as number));
  t.true(verdict.sealedThrough > lastGrant);
  t.is(verdict.keys.length, 2);
});
