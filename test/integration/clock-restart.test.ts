/**
 * Issue 9: the clock is 2 days forward when licd starts again (set while it was stopped). There
 * is no monotonic reference across a restart: without a trusted time the borrows that only the
 * gap would end keep their seats until an admin confirms the clock; with a dongle that has a
 * clock (TIME), licd uses the dongle's time and nothing ends early.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import type { LicdClient } from '../../src/sdk/client.ts';
import { tempDir, until, outcome } from '../helpers/daemon.ts';
import { FakeClockFile, startFakedDaemon } from '../helpers/faketime.ts';
import { killAll, ROOT, run, start } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function feature(c: LicdClient, name: string) {
  return (await c.status()).features.find((f) => f.feature === name)!;
}


function dirs(t: { teardown(f: () => void): void }) {
  const dir = tempDir('licd-clock-');
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  return { dir, home, clockFile: new FakeClockFile(join(dir, 'faketime')) };
}

test('2 days forward at restart, no clock in the dongle: the borrow seats are held until an admin confirms the clock', async (t) => {
  t.timeout(120_000);
  const { dir, home, clockFile } = dirs(t);
  let d = await startFakedDaemon(dir, clockFile);
  t.teardown(() => d.stop());
  let c = await d.client();
  const b = new BorrowClient({ home, hostId: 'ef'.repeat(16), user: 'alice', hostName: 'laptop' });
  await b.borrow(c, [{ feature: 'vray_render', count: 3 }], 24);
  await d.stop();

  clockFile.set('+2d');
  d = await startFakedDaemon(dir, clockFile);
  c = await d.client();
  const s = await c.status();
  const render = s.features.find((f) => f.feature === 'vray_render')!;
  t.is(render.borrowed, 3, 'the borrows only the gap would end are kept');
  t.is(render.free, 1);
  t.is(await outcome(c.checkout('vray_render', { count: 2 })), 'NO_SEATS', 'no seat over the count');
  t.regex(s.server.warnings.join('\n'), /licd started 2 days .* 1 borrow\(s\) that only this gap would end are kept.*licctl clock accept/);

  // The admin says the clock is right (it was a long stop): the seats come free.
  const accepted = await run(['clock', 'accept'], { LICD_BROKER: d.url, LICD_DATA_DIR: dir, LICD_HOME: tempDir('licd-admin-') });
  t.is(accepted.code, 0, accepted.stderr);
  t.regex(accepted.stdout, /1 borrow\(s\) kept only for a gap in time at start have ended/);
  await until(async () => (await feature(c, 'vray_render')).borrowed === 0, 'the confirmed-ended borrows to end', 20_000, 200);
  const after = await c.status();
  t.is(after.features.find((f) => f.feature === 'vray_render')!.free, 4);
  t.false(after.server.warnings.some((w) => /gap/.test(w)), after.server.warnings.join('\n'));
});

test('2 days forward at restart with a dongle that has a clock: licd uses its time and nothing ends early', async (t) => {
  t.timeout(120_000);
  const { dir, home, clockFile } = dirs(t);
  // The dongle runs in its own process, without libfaketime: its clock stays true.
  const emu = start(process.execPath, ['--import', 'tsx', join(ROOT, 'firmware-bridge', 'cli.ts'), '--tcp', '127.0.0.1:0', '--state', join(dir, 'dongle.json'), '--clock']);
  t.teardown(() => void emu.child.kill('SIGTERM'));
  const addr = (await emu.waitFor(/serving tcp:\/\/([\d.]+:\d+)/, 30_000))[1]!;
  const env = { LICD_DONGLE: `tcp:${addr}` };
  let d = await startFakedDaemon(dir, clockFile, env);
  t.teardown(() => d.stop());
  let c = await d.client();
  const b = new BorrowClient({ home, hostId: 'ef'.repeat(16), user: 'alice', hostName: 'laptop' });
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 3 }], 24);
  const end = Date.parse(r.borrows[0]!.until);
  await d.stop();

  clockFile.set('+2d');
  d = await startFakedDaemon(dir, clockFile, env);
  c = await d.client();
  const s = await c.status();
  const render = s.features.find((f) => f.feature === 'vray_render')!;
  t.is(render.borrowed, 3);
  t.is(Date.parse(render.borrows[0]!.until), end, 'the borrow ends when its token does, in true time');
  t.false(s.server.warnings.some((w) => /gap|set back/.test(w)), s.server.warnings.join('\n'));
  t.is(await outcome(c.checkout('vray_render', { count: 2 })), 'NO_SEATS');
  t.regex(d.proc.stdout() + d.proc.stderr(), /system clock is 2 days .*ahead of the dongle's clock: licd uses the dongle's time/);
  // Leases granted now carry true times, though the system clock is 2 days ahead.
  const lease = await c.checkout('vray_render', { ttl: 60 });
  t.true(Math.abs(Date.parse(lease.view.until) - (Date.now() + 60_000)) < 30_000, `lease until ${lease.view.until}`);
});
