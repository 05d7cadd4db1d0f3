/**
 * Times as people read them (issue 11, finding 9): one format, local time with its UTC offset
 * (TZ), --utc / LICD_UTC=1 for UTC; watch lines carry a time; an expired feature shows no free
 * seat. Through real licctl processes against a real licd process.
 */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { FakeClockFile, faketimeAvailable } from '../helpers/faketime.ts';
import { killAll, licctl, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

// Berlin is +01:00 in winter and +02:00 in summer; the test holds in either season.
const BERLIN = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0[12]:00/;
const UTC = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/;
// What licctl printed before: ISO UTC with no marker a person notices, or a bare date.
const ISO = /\d{4}-\d\d-\d\dT\d\d:\d\d/;

function dirs(t: { teardown(f: () => void): void }) {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  const adminHome = tempDir('licd-admin-');
  t.teardown(() => {
    for (const d of [dir, home, adminHome]) rmSync(d, { recursive: true, force: true });
  });
  return { dir, home, adminHome };
}

test('status, tokens, borrows, the borrow summary, checkout and watch print local time with the offset; --utc and LICD_UTC=1 print UTC; --json stays ISO UTC', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { dir, home, adminHome } = dirs(t);
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  const env = { LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice', TZ: 'Europe/Berlin' };
  const admin = { LICD_BROKER: url, LICD_DATA_DIR: dir, LICD_HOME: adminHome, TZ: 'Europe/Berlin' };

  // watch from the start: every line it prints begins with the time it saw the change.
  const watch = licctl(['watch'], env);
  await watch.waitFor(/vray_render: \d+ of 4 free/, 30_000);

  const b = await run(['borrow', '--feature', 'nuke_i', '--hours', '10', '--yes'], env);
  t.is(b.code, 0, b.stderr);
  t.regex(b.stdout, new RegExp(`Licenses available offline until ${BERLIN.source}`));

  const hold = licctl(['checkout', 'vray_render'], env);
  const granted = (await hold.waitFor(/granted .*\n/, 30_000))[0];
  t.regex(granted, new RegExp(`until ${BERLIN.source}, renewed by heartbeats`));
  await watch.waitFor(/vray_render: 3 of 4 free/, 30_000);

  const s = await run(['status'], env);
  t.is(s.code, 0, s.stderr);
  const line = (text: string, re: RegExp) => text.split('\n').find((l) => re.test(l)) ?? '';
  t.regex(line(s.stdout, /^vray_render /), new RegExp(`\\s3\\s+${BERLIN.source}$`), 'EXPIRES is a full time with the offset, not a bare date');
  t.regex(line(s.stdout, /^nuke_i /), /permanent$/);
  t.regex(line(s.stdout, /leased .*alice@/), new RegExp(`since ${BERLIN.source}  until ${BERLIN.source}`));
  t.regex(line(s.stdout, /borrowed .*alice@/), new RegExp(`since ${BERLIN.source}  until ${BERLIN.source}`));
  t.notRegex(s.stdout, ISO);

  const u = await run(['status', '--utc'], env);
  t.is(u.code, 0, u.stderr);
  t.regex(line(u.stdout, /leased .*alice@/), new RegExp(`since ${UTC.source}  until ${UTC.source}`));
  t.regex(line(u.stdout, /^vray_render /), new RegExp(`${UTC.source}$`));
  t.notRegex(u.stdout, BERLIN);
  const envUtc = await run(['status'], { ...env, LICD_UTC: '1' });
  t.regex(line(envUtc.stdout, /borrowed .*alice@/), new RegExp(`since ${UTC.source}  until ${UTC.source}`));
  t.notRegex(envUtc.stdout, BERLIN);

  const j = JSON.parse((await run(['status', '--json'], env)).stdout) as { features: Array<{ feature: string; expires: string | null; leases: Array<{ since: string }> }> };
  const render = j.features.find((f) => f.feature === 'vray_render')!;
  t.regex(render.expires!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, '--json keeps ISO UTC');
  t.regex(render.leases[0]!.since, /Z$/);

  const tk = await run(['tokens'], env);
  t.is(tk.code, 0, tk.stderr);
  t.regex(line(tk.stdout, /^\s+nuke_i /), new RegExp(`until ${BERLIN.source}  valid`));
  t.regex(line((await run(['tokens', '--utc'], env)).stdout, /^\s+nuke_i /), new RegExp(`until ${UTC.source}  valid`));
  t.regex((JSON.parse((await run(['tokens', '--json'], env)).stdout) as Array<{ until: string }>)[0]!.until, /Z$/);

  const bs = await run(['borrows'], admin);
  t.is(bs.code, 0, bs.stderr);
  t.regex(line(bs.stdout, /^nuke_i /), new RegExp(`${BERLIN.source}\\s+${BERLIN.source}\\s+active`));
  t.regex(line((await run(['borrows', '--utc'], admin)).stdout, /^nuke_i /), new RegExp(`${UTC.source}\\s+${UTC.source}\\s+active`));

  const ren = await run(['renew', 'nuke_i'], env);
  t.is(ren.code, 0, ren.stderr);
  t.regex(ren.stdout, new RegExp(`renewed nuke_i until ${BERLIN.source}`));

  hold.child.kill('SIGINT');
  await hold.exited;
  await watch.waitFor(/vray_render: 4 of 4 free/, 30_000);
  watch.child.kill('SIGINT');
  await watch.exited;
  const wl = watch.stdout().split('\n').filter((l) => l.trim() !== '');
  t.true(wl.length >= 3, watch.stdout());
  for (const l of wl) t.regex(l, new RegExp(`^${BERLIN.source}  (server|vray_render|vray_interface|vray_distributed|nuke_i)`), 'every watch line starts with its time');

  d.child.kill('SIGTERM');
  await d.exited;
});

test('an expired feature shows "expired <time>" and 0 free in status, and the server counts 0 free', async (t) => {
  if (!faketimeAvailable()) {
    t.pass('libfaketime is not installed');
    return;
  }
  t.timeout(120_000);
  const { dir, home } = dirs(t);
  const clock = new FakeClockFile(join(dir, '..', `faketime-${process.pid}-${Date.now()}`));
  t.teardown(() => rmSync(clock.path, { force: true }));
  // The development license's V-Ray features end in a year; nuke_i is permanent, so the
  // license stays valid when licd starts again 400 days on.
  const first = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', ...clock.env() });
  await first.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000);
  first.child.kill('SIGTERM');
  await first.exited;
  clock.set('+400d');
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', ...clock.env() });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  // licctl on the same (faked) clock as the server, as a client's clock agrees with its server's.
  const env = { LICD_HOME: home, LICD_BROKER: url, TZ: 'Europe/Berlin', ...clock.env() };

  const s = await run(['status'], env);
  t.is(s.code, 0, s.stderr);
  const row = s.stdout.split('\n').find((l) => l.startsWith('vray_render ')) ?? '';
  t.regex(row, new RegExp(`\\s4\\s+0\\s+0\\s+0  expired ${BERLIN.source}$`), s.stdout);
  t.regex(s.stdout.split('\n').find((l) => l.startsWith('nuke_i ')) ?? '', /\s1\s+0\s+0\s+1  permanent$/);

  const j = JSON.parse((await run(['status', '--json'], env)).stdout) as { features: Array<{ feature: string; free: number; total: number }> };
  const f = j.features.find((x) => x.feature === 'vray_render')!;
  t.is(f.free, 0, 'the server counts no free seat of an expired feature');
  t.is(f.total, 4);

  const co = await run(['checkout', 'vray_render'], env);
  t.not(co.code, 0);
  t.regex(co.stderr, /FEATURE_EXPIRED/);

  d.child.kill('SIGTERM');
  await d.exited;
});

test('a vendor quarantine release says until when it is valid, in the same format', async (t) => {
  const { dir } = dirs(t);
  const key = join(dir, 'vendor.json');
  const env = { TZ: 'Europe/Berlin' };
  t.is((await run(['vendor', 'keygen', '--out', key, '--dev'], env)).code, 0);
  const r = await run(['vendor', 'release-quarantine', '--key', key, '--serial', 'S1', '--counter', '5', '--out', join(dir, 'r.json')], env);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`valid until ${BERLIN.source}\\n`));
  const u = await run(['vendor', 'release-quarantine', '--key', key, '--serial', 'S1', '--counter', '5', '--out', join(dir, 'r2.json'), '--utc'], env);
  t.regex(u.stdout, new RegExp(`valid until ${UTC.source}\\n`));
});
