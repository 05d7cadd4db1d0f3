/**
 * Issue 14, usage history through real processes: a licd child process, real licctl clients that
 * check out, are refused and check in, then `licctl report ... --json` and `--format csv` as an
 * admin show them (test/history/process-restart.test.ts: borrows, and a restart).
 */
import test from 'ava';
import { join } from 'node:path';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(killAll);

test('checkouts, a denial and a check-in show in licctl report usage, users, denials (json and csv) and series', async (t) => {
  t.timeout(120_000);
  const dev = await devDaemonProcess(t, {});
  const d = dev.d;
  t.teardown(() => d.child.kill('SIGKILL'));
  const admin = ['--user', 'admin', '--password-file', join(dev.dir, 'admin.password')];
  const alice = { ...dev.env, LICD_USER: 'alice', LICD_HOST: 'node-a' };
  const bob = { ...dev.env, LICD_USER: 'bob', LICD_HOST: 'node-b' };

  // nuke_i has one seat: alice takes it, bob is refused, alice checks in (she stops her checkout).
  const holder = licctl(['checkout', 'nuke_i'], alice);
  await holder.waitFor(/granted nuke_i to alice@node-a/);
  const refused = await run(['checkout', 'nuke_i'], bob);
  t.is(refused.code, 3, refused.stdout + refused.stderr);
  await new Promise((r) => setTimeout(r, 4000));
  holder.child.kill('SIGINT');
  t.is((await holder.exited).code, 0, holder.stderr());

  const usage = await run(['report', 'usage', '--json', ...admin], dev.env);
  t.is(usage.code, 0, usage.stderr);
  const u = JSON.parse(usage.stdout) as { rows: Array<{ feature: string; licensed: number; peak: number; denials: number; grants: number; seatHours: number }> };
  const nuke = u.rows.find((r) => r.feature === 'nuke_i')!;
  t.like(nuke, { licensed: 1, peak: 1, denials: 1, grants: 1 });
  t.true(nuke.seatHours > 0, 'alice held the seat for a while');
  t.like(u.rows.find((r) => r.feature === 'vray_render'), { licensed: 4, peak: 0, grants: 0 });

  const denials = await run(['report', 'denials', '--by', 'user', '--format', 'json', ...admin], dev.env);
  t.is(denials.code, 0, denials.stderr);
  t.deepEqual((JSON.parse(denials.stdout) as { rows: unknown[] }).rows, [{ key: 'bob', refusals: 1, denials: 1, trueDenials: 1, codes: { NO_SEATS: 1 } }]);

  const csv = await run(['report', 'users', '--by', 'user', '--format', 'csv', '--utc', ...admin], dev.env);
  t.is(csv.code, 0, csv.stderr);
  const lines = csv.stdout.split('\r\n');
  t.is(lines[0], 'USER,SEAT-H,LEASE-H,BORROW-H,WAIT-H,SESSIONS,FEATURES');
  t.regex(lines[1]!, /^alice,[\d.]+,[\d.]+,0,0,1,nuke_i$/);
  t.is(lines.length, 3, 'a header, one row and the final CRLF');
  t.is(lines[2], '');

  const table = await run(['report', 'usage', '--utc', ...admin], dev.env);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /^usage from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC to /);
  t.regex(table.stdout, /\nFEATURE +LICENSED +PEAK +SEAT-H +AVG +LIMIT-H +LIMIT% +DENIALS\n/);
  t.regex(table.stdout, /\nnuke_i +1 +1 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +1\n/);
  t.true(table.stdout.split('\n').every((l) => l.length <= 80), 'the table fits 80 columns');

  // Over time, per hour: the hour of the refusal says nuke_i 1 of 1 held and the denial by its code.
  const series = await run(['report', 'series', '--by', 'hour', '--from', '2h', '--utc', ...admin], dev.env);
  t.is(series.code, 0, series.stderr);
  t.regex(series.stdout, /^series from .* UTC, by hour\n/);
  t.regex(series.stdout, /\nSTART \(UTC\) +FEATURE +LICENSED +PEAK +SEAT-H +DENIALS +CODES\n/);
  t.regex(series.stdout, /\n\d{4}-\d\d-\d\d \d\d:00 +nuke_i +1 +1 +[\d.]+ +1 +NO_SEATS=1\n/);
  t.true(series.stdout.split('\n').every((l) => l.length <= 80), 'the table fits 80 columns');

  // Bad input is refused naming the option, before anything is asked.
  const bad = await run(['report', 'usage', '--by', 'user', ...admin], dev.env);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /--by must be feature \(hours per user, host or group: licctl report users --by \.\.\.\)/);
  const when = await run(['report', 'denials', '--from', 'yesterday', ...admin], dev.env);
  t.is(when.code, 64);
  t.regex(when.stderr, /--from "yesterday" is not a time: give 7d/);
});
