/**
 * Issue 9, finding 1, start-up: a data dir on a full disk, on a read-only file system, or held by
 * another licd. Each is said in one plain sentence naming the dir, with the exit code
 * docs/storage.md lists, and no stack trace. Real licd processes on a real small tmpfs (root).
 */
import test from 'ava';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LicdClient } from '../../src/sdk/client.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { mountSmallFs, type SmallFs } from '../helpers/smallfs.ts';
import { freePort } from '../crash/harness.ts';

test.after.always(() => killAll());

async function startLicd(dataDir: string, port: number): Promise<{ p: Proc; url: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(port), LICD_MQTT_HOST: '127.0.0.1', LICD_LOG_LEVEL: 'info' });
  const url = (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 30_000))[1]!;
  return { p, url };
}

function smallFs(t: { teardown(f: () => void): void }, sizeMiB = 6): SmallFs {
  const fs = mountSmallFs(sizeMiB);
  t.teardown(() => fs.unmount());
  return fs;
}

/** Starts licd on dataDir expecting it to refuse; returns its exit code and stderr. */
async function refusedStart(dataDir: string): Promise<{ code: number | null; stderr: string }> {
  const p = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: String(await freePort()), LICD_MQTT_HOST: '127.0.0.1', LICD_LOG_LEVEL: 'info' });
  const { code } = await Promise.race([p.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`licd did not exit:\n${p.stdout()}\n${p.stderr()}`)), 30_000))]);
  return { code, stderr: p.stderr() };
}

/** Runs licd once on dataDir so it holds a database and development material, then stops it. */
async function initialise(dataDir: string): Promise<void> {
  const { p } = await startLicd(dataDir, await freePort());
  p.child.kill('SIGTERM');
  await p.exited;
}

test.serial('start-up on a full disk says "no space left on <dir>", exits 73, no stack trace', async (t) => {
  t.timeout(120_000); // three licd starts on a busy machine
  const fs = smallFs(t, 4);
  const dataDir = join(fs.dir, 'data');
  await initialise(dataDir);
  fs.fill();
  const r = await refusedStart(dataDir);
  t.is(r.code, 73, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: no space left on ${dataDir}\\S*: .*free space there, then start licd again`));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  // And on a fresh data dir on the full disk (the development material cannot be written).
  const fresh = await refusedStart(join(fs.dir, 'fresh'));
  t.is(fresh.code, 73, fresh.stderr);
  t.regex(fresh.stderr, /licd: cannot start: STORE_FAILED: no space left on \S+fresh\S*: /);
  t.notRegex(fresh.stderr, /^\s+at /m, 'no stack trace');
});

test.serial('start-up on a read-only data dir says "permission denied on <dir>", exits 73, no stack trace', async (t) => {
  t.timeout(120_000); // three licd starts on a busy machine
  const fs = smallFs(t, 4);
  const dataDir = join(fs.dir, 'data');
  await initialise(dataDir);
  mkdirSync(join(fs.dir, 'empty'));
  fs.remount('ro');
  const r = await refusedStart(dataDir);
  t.is(r.code, 73, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: permission denied on ${dataDir}\\S*: its file system is mounted read-only`));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  const fresh = await refusedStart(join(fs.dir, 'empty', 'data'));
  t.is(fresh.code, 73, fresh.stderr);
  t.regex(fresh.stderr, /licd: cannot start: STORE_FAILED: permission denied on \S+empty\S*: /);
  t.notRegex(fresh.stderr, /^\s+at /m, 'no stack trace');
  fs.remount('rw');
});

test.serial('a second licd on the same data dir says "another licd holds <dir>", exits 75, no stack trace', async (t) => {
  t.timeout(120_000);
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const { p } = await startLicd(dataDir, await freePort());
  t.teardown(() => void p.child.kill('SIGKILL'));
  const r = await refusedStart(dataDir);
  t.is(r.code, 75, r.stderr);
  t.regex(r.stderr, new RegExp(`licd: cannot start: STORE_FAILED: another licd holds ${join(dataDir, 'db')} `));
  t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  // The first one is unharmed.
  const c = await LicdClient.connect({ url: (await p.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!, timeoutMs: 10_000 });
  t.is((await c.status()).features.length > 0, true);
  await c.close();
});
