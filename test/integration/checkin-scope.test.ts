/**
 * issue 11, finding 4: `licctl checkin` touches only the checkout processes of the server it is
 * pointed at and of the user who runs it, signals a pid only while it is still the process that
 * recorded the seat (its start time), and says what it did.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, run, startDaemonProcess, type Proc, alive } from '../helpers/procs.ts';

test.after.always(() => killAll());

function normalised(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.hostname}:${u.port}`;
}

async function daemon(t: import('ava').ExecutionContext): Promise<{ url: string; proc: Proc }> {
  const dir = tempDir();
  const proc = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  t.teardown(() => {
    proc.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const url = (await proc.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  return { url, proc };
}

async function leased(url: string, feature: string, env: Record<string, string>): Promise<number> {
  const s = await run(['status', '--broker', url, '--json'], env);
  return (JSON.parse(s.stdout) as { features: Array<{ feature: string; leased: number }> }).features.find((f) => f.feature === feature)!.leased;
}

test('checkin releases only this server’s holders, leaves a reused pid alone and says what it did', async (t) => {
  t.timeout(90_000);
  const runtime = tempDir('licd-held-');
  t.teardown(() => rmSync(runtime, { recursive: true, force: true }));
  const env = { XDG_RUNTIME_DIR: runtime, LICD_HOST: 'node-a' };
  const [a, b] = await Promise.all([daemon(t), daemon(t)]);

  const holderA = licctl(['checkout', 'vray_render', '--broker', a.url], env);
  const holderB = licctl(['checkout', 'vray_render', '--broker', b.url], env);
  await Promise.all([holderA.waitFor(/holding; press Ctrl-C/), holderB.waitFor(/holding; press Ctrl-C/)]);
  const held = join(runtime, 'licd', 'held');
  const rec = JSON.parse(readFileSync(join(held, `${holderA.child.pid}.json`), 'utf8')) as Record<string, unknown>;
  t.is(rec.server, normalised(a.url), 'the record names the server');
  t.is(rec.user, userInfo().username);
  t.regex(String(rec.startTime), /^\d+$/);

  // A checkout that died long ago, whose pid now belongs to an unrelated program; and a record
  // of another user's. Neither may be signalled.
  const victim = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => victim.kill('SIGKILL'));
  const stale = join(held, `${victim.pid}.json`);
  writeFileSync(stale, JSON.stringify({ pid: victim.pid, startTime: '1', server: normalised(a.url), user: userInfo().username, uid: userInfo().uid, feature: 'nuke_i', lease: 'L-stale', clientId: 'gone' }));
  const other = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => other.kill('SIGKILL'));
  mkdirSync(held, { recursive: true });
  writeFileSync(join(held, `${other.pid}.json`), JSON.stringify({ pid: other.pid, startTime: '1', server: normalised(a.url), user: 'someone-else', uid: 4242, feature: 'nuke_i', lease: 'L-other', clientId: 'x' }));
  t.is(await leased(b.url, 'vray_render', env), 1);

  const ci = await run(['checkin', '--broker', a.url, '--json'], env);
  t.is(ci.code, 0, ci.stderr);
  const o = JSON.parse(ci.stdout) as {
    server: string;
    signalled: Array<{ pid: number; feature: string; released: boolean }>;
    removed: Array<{ pid: number; reason: string }>;
    skipped: Array<{ pid: number; reason: string }>;
  };
  t.is(o.server, normalised(a.url));
  t.deepEqual(o.signalled.map((s) => [s.pid, s.feature, s.released]), [[holderA.child.pid, 'vray_render', true]]);
  t.deepEqual(o.removed.map((r) => r.pid), [victim.pid]);
  t.regex(o.removed[0]!.reason, /another process/);
  t.deepEqual(o.skipped.map((s) => s.pid).sort(), [holderB.child.pid, other.pid].sort());
  t.regex(o.skipped.find((s) => s.pid === holderB.child.pid)!.reason, /another server/);
  t.regex(o.skipped.find((s) => s.pid === other.pid)!.reason, /another user/);

  await holderA.exited;
  t.regex(holderA.stdout(), /checked in vray_render/);
  t.is(await leased(a.url, 'vray_render', env), 0);
  // The other server's seat, the unrelated program and the other user's process are untouched.
  t.true(alive(holderB.child.pid!));
  t.is(await leased(b.url, 'vray_render', env), 1);
  t.true(alive(victim.pid!) && victim.exitCode === null && victim.signalCode === null);
  t.true(alive(other.pid!) && other.signalCode === null);
  t.false(existsSync(stale), 'the stale record is removed');

  // In words, for the other server: what was released and what was left and why.
  const ci2 = await run(['checkin', 'vray_render', '--broker', b.url], env);
  t.is(ci2.code, 0, ci2.stderr);
  t.regex(ci2.stdout, new RegExp(`released vray_render \\(lease \\S+, held by pid ${holderB.child.pid}\\)`));
  t.regex(ci2.stdout, /skipped nuke_i \(pid \d+\): held by another user/);
  await holderB.exited;
  t.is(await leased(b.url, 'vray_render', env), 0);
  t.deepEqual(readdirSync(held).sort(), [`${other.pid}.json`]);
});
