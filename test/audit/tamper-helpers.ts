/**
 * For the tamper tests (tamper-*.test.ts): a licd process with its emulated dongle, real licctl
 * clients check out (one is refused) and in, an admin revokes; licd stops. Each case copies that
 * data dir, changes its LevelDB itself (classic-level), starts licd on it, exports with licctl and
 * verifies offline with the vendor key.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { tempDir, until } from '../helpers/daemon.ts';
import { licctl, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

export interface Rec {
  seq: number;
  kind: string;
  user?: string;
  [k: string]: unknown;
}

export const KEY = (seq: number) => `rec!audit!${String(seq).padStart(12, '0')}`;

async function daemon(dir: string): Promise<{ d: Proc; url: string }> {
  const file = join(dir, 'licd.json');
  writeFileSync(file, JSON.stringify({ leases: { disconnectGraceSeconds: 1 } }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' }, ['--config', file]);
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 60_000))[1]!;
  return { d, url };
}

async function stop(d: Proc): Promise<void> {
  d.child.kill('SIGTERM');
  await d.exited;
}

const admin = (dir: string, url: string) => ['--broker', url, '--user', 'admin', '--password-file', join(dir, 'admin.password')];

/** The records of the audit space, straight from the database. */
async function records(db: ClassicLevel<string, unknown>): Promise<Rec[]> {
  const out: Rec[] = [];
  for await (const [, v] of db.iterator({ gte: 'rec!audit!0', lt: 'rec!audit!:' })) out.push(v as Rec);
  return out;
}

/** A data dir whose audit log holds grants, a denial, a check-in and an admin revoke; licd stopped. */
export function makeBase(): Promise<string> {
  return (async () => {
    const dir = tempDir('licd-audit-');
    const { d, url } = await daemon(dir);
    try {
      const B = ['--broker', url];
      const alice = licctl(['checkout', 'nuke_i', ...B], { LICD_USER: 'alice', LICD_HOST: 'node-a' });
      const lease = (await alice.waitFor(/granted nuke_i to alice@node-a \(lease (\S+),/, 60_000))[1]!;
      const bob = await run(['checkout', 'nuke_i', ...B], { LICD_USER: 'bob', LICD_HOST: 'node-b' });
      if (bob.code !== 3) throw new Error(`bob should be refused (no seats): ${bob.stderr}`);
      const carol = licctl(['checkout', 'vray_render', ...B], { LICD_USER: 'carol', LICD_HOST: 'node-c' });
      await carol.waitFor(/granted vray_render to carol@node-c/, 60_000);
      carol.child.kill('SIGTERM'); // checks in (or its last will ends the lease after the grace)
      await carol.exited;
      await until(async () => {
        const st = JSON.parse((await run(['status', 'vray_render', '--json', ...B])).stdout) as { features: Array<{ leased: number }> };
        return st.features[0]!.leased === 0;
      }, "carol's lease to end", 60_000, 250);
      const r = await run(['lease', 'revoke', lease, ...admin(dir, url)]);
      if (r.code !== 0) throw new Error(r.stderr);
      await alice.exited;
    } finally {
      await stop(d);
    }
    return dir;
  })();
}

/** Copies the base, lets `tamper` change its database, starts licd on it, exports and verifies. */
export async function check(base: Promise<string>, tamper: (db: ClassicLevel<string, unknown>, recs: Rec[]) => Promise<void>): Promise<{ code: number | null; stdout: string; stderr: string; recs: Rec[] }> {
  const dir = tempDir('licd-audit-case-');
  cpSync(await base, dir, { recursive: true });
  const db = new ClassicLevel<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' });
  await db.open();
  const recs = await records(db);
  await tamper(db, recs);
  await db.close();
  const { d, url } = await daemon(dir);
  try {
    const file = join(dir, 'audit.jsonl');
    const ex = await run(['audit', 'export', '--out', file, ...admin(dir, url)]);
    if (ex.code !== 0) throw new Error(`export failed: ${ex.stderr}`);
    const key = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
    const v = await run(['audit', 'verify', file, '--vendor-key', key]);
    return { ...v, recs };
  } finally {
    await stop(d);
    rmSync(dir, { recursive: true, force: true });
  }
}

