/**
 * A failed write leaves the audit chain verifiable: licd runs as a child process with its data dir
 * on a real 6 MiB filesystem (tmpfs, root); the disk fills while clients check out, so grants are
 * refused (their records, already chained in memory, never reach the disk); space comes back,
 * licd resumes by itself, more grants and an admin revoke follow; after a restart the export
 * verifies (exit 0): the chain itself says which numbers were voided by the failed writes, and the
 * refusals are recorded as denials with STORE_FAILED.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { isLicdError } from '../../src/core/errors.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { freePort } from '../crash/harness.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { mountSmallFs } from '../helpers/smallfs.ts';

test.after.always(() => killAll());

async function startLicd(dataDir: string, port: number): Promise<{ p: Proc; url: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1' });
  const url = (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 60_000))[1]!;
  return { p, url };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isLicdError(e) ? e.code : String(e);
  }
}

test('writes refused on a full disk leave the audit chain verifiable; the refusals are recorded', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  const fs = mountSmallFs(6);
  t.teardown(() => fs.unmount());
  const dataDir = join(fs.dir, 'data');
  const port = await freePort();
  let { p, url } = await startLicd(dataDir, port);
  t.teardown(() => void p.child.kill('SIGKILL'));
  const c = await LicdClient.connect({ url, user: 'ann', host: 'node-a', timeoutMs: 10_000 });
  t.teardown(() => void c.close({ checkin: false }).catch(() => {}));
  let pid = 100;
  const checkout = (feature: string) => c.request<{ lease: { id: string } }>('checkout', { feature, user: 'ann', host: 'node-a', pid: pid++, ttl: 600 });

  await checkout('vray_render'); // served before the disk fills
  fs.fill();
  // Writes until one is refused: checkouts and check-ins of vray_render (not the feature checked
  // below), each one a write.
  // (Not heartbeats: after the first, a heartbeat within its lease's stored end writes nothing,
  // docs/protocol.md "Heartbeats and the disk", so a loop of them tried the disk once.)
  // Then checkouts, whose grant records were chained.
  let refused = false;
  for (let i = 0; i < 400 && !refused; i++) {
    let id: string | null = null;
    const out = await code(checkout('vray_render').then((a) => void (id = a.lease.id)));
    refused = out === 'STORE_FAILED';
    if (!refused && id !== null) refused = (await code(c.request('checkin', { leases: [id] }))) === 'STORE_FAILED';
  }
  t.true(refused, 'a write was refused once the disk was full');
  t.is(await code(checkout('vray_distributed')), 'STORE_FAILED');
  t.is(await code(checkout('vray_distributed')), 'STORE_FAILED');

  fs.free();
  await until(async () => (await code(checkout('vray_distributed'))) === 'ok', 'a checkout to be answered ok after the space came back', 30_000, 250);
  const last = (await checkout('vray_interface')).lease.id;
  const admin = await LicdClient.connect({ url, username: 'admin', password: readFileSync(join(dataDir, 'admin.password'), 'utf8').trim(), timeoutMs: 10_000 });
  await admin.request('lease.revoke', { lease: last }, { admin: true });
  await admin.close();

  p.child.kill('SIGTERM');
  t.is((await p.exited).code, 0, p.stderr());
  ({ p, url } = await startLicd(dataDir, port));

  const dir = tempDir('licd-audit-full-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const ex = await run(['audit', 'export', '--out', file, '--broker', url, '--user', 'admin', '--password-file', join(dataDir, 'admin.password')]);
  t.is(ex.code, 0, ex.stderr);
  const key = (JSON.parse(readFileSync(join(dataDir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  const v = await run(['audit', 'verify', file, '--vendor-key', key, '--json']);
  t.is(v.code, 0, v.stdout + v.stderr);
  const verdict = JSON.parse(v.stdout) as { ok: boolean; voided: Array<{ from: number; to: number }>; sealedThrough: number; last: number };
  t.true(verdict.ok);
  t.true(verdict.voided.length > 0, 'the refused grants\' numbers are voided by the chain');
  const records = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const denied = records.filter((r) => r.kind === 'checkout.denied' && r.code === 'STORE_FAILED');
  t.true(denied.length >= 2, 'both refused checkouts are recorded as denials');
  t.true(records.some((r) => r.kind === 'lease.ended' && r.reason === 'revoked' && r.lease === last), 'the revoke after the outage is recorded');
  // None of the refused grants is recorded as a grant that happened.
  const granted = records.filter((r) => r.kind === 'lease.granted').map((r) => r.feature);
  t.is(granted.filter((f) => f === 'vray_distributed').length, 1, granted.join(','));
});
