/**
 * Issue 9, findings 4 and 5: the system clock of a running licd steps (libfaketime in a real
 * child process; its monotonic clock stays true). Lease and borrow lifetimes follow the real
 * time that passes, whatever the wall clock does.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import type { LicdClient } from '../../src/sdk/client.ts';
import { tempDir, until, outcome } from '../helpers/daemon.ts';
import { FakeClockFile, startFakedDaemon, type FakedDaemon } from '../helpers/faketime.ts';
import { killAll } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function setup(t: { teardown(f: () => void | Promise<void>): void; timeout(ms: number): void }): Promise<{ d: FakedDaemon; dir: string }> {
  t.timeout(90_000);
  const dir = tempDir('licd-clock-');
  const clockFile = new FakeClockFile(join(dir, 'faketime'));
  const d = await startFakedDaemon(dir, clockFile);
  t.teardown(async () => {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, dir };
}

async function feature(c: LicdClient, name: string) {
  return (await c.status()).features.find((f) => f.feature === name)!;
}


/** Steps the daemon's clock and waits until licd has seen the step (its log says so). */
async function step(d: FakedDaemon, offset: string, direction: 'forward' | 'back'): Promise<void> {
  const before = d.count(new RegExp(`stepped ${direction}`));
  d.clockFile.set(offset);
  // Not a failure by itself (a licd that does not notice steps must fail on what users see).
  await until(() => d.count(new RegExp(`stepped ${direction}`)) > before, `licd to see the clock step ${offset}`, 10_000, 100).catch(() => {});
}

test('forward 2 days while running: 24 h borrows keep their seats, nothing is granted over the count, status warns', async (t) => {
  const { d } = await setup(t);
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const c = await d.client();
  const b = new BorrowClient({ home, hostId: 'cd'.repeat(16), user: 'alice', hostName: 'laptop' });
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 3 }], 24);
  t.is(r.borrows.length, 1);
  t.is((await feature(c, 'vray_render')).borrowed, 3);

  await step(d, '+2d', 'forward');
  // Give the reaper a few ticks in the new time.
  await new Promise((res) => setTimeout(res, 3000));
  const s = await c.status();
  const render = s.features.find((f) => f.feature === 'vray_render')!;
  t.is(render.borrowed, 3, 'the borrows are still listed: their tokens are still valid offline');
  t.is(render.free, 1);
  t.is(await outcome(c.checkout('vray_render', { count: 2 })), 'NO_SEATS', 'no seat is granted over the count');
  t.is(await outcome(c.checkout('vray_render', { count: 1 })), 'ok');
  t.regex(s.server.warnings.join('\n'), /the system clock stepped forward 2 days .* so none ended early/);
  // The borrow now ends 2 days later in the (stepped) server's terms: 24 h of real time after it began.
  const until24 = Date.parse(render.borrows[0]!.until);
  t.true(until24 > Date.now() + 2 * 86400_000 + 23 * 3600_000, `borrow ends ${render.borrows[0]!.until}`);
});

test('forward 1 year while running: leases of live clients stay', async (t) => {
  const { d } = await setup(t);
  const c = await d.client();
  const lease = await c.checkout('nuke_i', { ttl: 10 });
  let lost = 0;
  lease.on('lost', () => lost++);
  lease.on('regained', () => lost++);
  await step(d, '+365d', 'forward');
  // Longer than the lease's TTL: the client keeps heartbeating the same lease.
  await new Promise((res) => setTimeout(res, 14_000));
  const nuke = await feature(c, 'nuke_i');
  t.deepEqual(
    nuke.leases.map((l) => l.id),
    [lease.id],
    'the same lease is held, not expired and taken again',
  );
  t.is(lost, 0);
  t.regex((await c.status()).server.warnings.join('\n'), /stepped forward 365 days/);
});

test('back 1 day while running: a lease that stops heartbeating is gone within about its TTL', async (t) => {
  const { d } = await setup(t);
  const c = await d.client();
  const lease = await c.checkout('nuke_i', { ttl: 10 });
  c.forget(lease.id); // the client stops heartbeating (but stays connected: no last will)
  await step(d, '-1d', 'back');
  await until(async () => (await feature(c, 'nuke_i')).leased === 0, 'the dead lease to end', 40_000, 500);
  t.is((await feature(c, 'nuke_i')).leases.length, 0);
});

test('a lease granted during a forward jump ends at the right time after the clock is fixed', async (t) => {
  const { d } = await setup(t);
  const c = await d.client();
  await step(d, '+2d', 'forward');
  const lease = await c.checkout('nuke_i', { ttl: 10 });
  c.forget(lease.id);
  await step(d, '+0', 'back');
  await until(async () => (await feature(c, 'nuke_i')).leased === 0, 'the lease granted during the jump to end', 40_000, 500);
  const s = await c.status();
  t.is(s.features.find((f) => f.feature === 'nuke_i')!.leased, 0);
  // The fix undoes the forward step: no set-back alarm, borrowing still works.
  t.false(s.server.warnings.some((w) => /set back/.test(w)), s.server.warnings.join('\n'));
});
