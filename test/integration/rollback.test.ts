import test from 'ava';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { ManualClock, startTestDaemon, tempDir, type TestDaemon, outcome } from '../helpers/daemon.ts';

function borrower(t: { teardown(f: () => void): void }, clock?: ManualClock) {
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  return new BorrowClient({ home, hostId: 'ab'.repeat(16), user: 'alice', hostName: 'laptop', ...(clock ? { clock } : {}) });
}


async function borrowOne(d: TestDaemon, b: BorrowClient, feature = 'vray_render') {
  const c = await d.client();
  const r = await b.borrow(c, [{ feature, count: 1 }], 24);
  await c.close();
  return r.borrows[0]!.id;
}

test('restoring an old copy of the database quarantines the seats that could be out on borrow', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const b = borrower(t);
  let d = await startTestDaemon({ dataDir });
  const first = await borrowOne(d, b);
  await d.halt();
  cpSync(join(dataDir, 'db'), join(dataDir, 'db.copy'), { recursive: true });
  d = await startTestDaemon({ dataDir });
  t.deepEqual((await (await d.client()).status()).quarantine, [], 'a plain restart is no rollback');
  await borrowOne(d, b); // the second borrow is out there, unknown to the old copy
  await d.halt();
  rmSync(join(dataDir, 'db'), { recursive: true });
  cpSync(join(dataDir, 'db.copy'), join(dataDir, 'db'), { recursive: true });

  d = await startTestDaemon({ dataDir });
  t.teardown(() => d.halt());
  const c = await d.client();
  const s = await c.status();
  const render = s.features.find((f) => f.feature === 'vray_render')!;
  t.is(render.borrows[0]!.id, first, 'the borrow the copy knows is still reserved');
  t.is(render.held, 3);
  t.is(render.free, 0);
  t.true(s.quarantine.some((q) => q.feature === 'vray_render' && Date.parse(q.until) > Date.now() + 335 * 3600_000));
  t.true(s.server.warnings.some((w) => /quarantine: the database is older than the dongle/.test(w)));
  // The over-grant attempts: the second borrowed seat must not be handed out again.
  t.is(await outcome(c.checkout('vray_render')), 'QUARANTINE');
  t.is(await outcome(borrower(t).borrow(c, [{ feature: 'vray_render', count: 1 }], 1)), 'QUARANTINE');
  const e = await t.throwsAsync(c.checkout('nuke_i'), { instanceOf: LicdError });
  t.regex(e!.message, /held by a quarantine until/);
  // A feature that cannot be borrowed is not held.
  t.is(await outcome(c.checkout('vray_distributed')), 'ok');
  // The quarantine survives a restart.
  await d.halt();
  d = await startTestDaemon({ dataDir });
  t.is(await outcome((await d.client()).checkout('vray_render')), 'QUARANTINE');
});

test('wiping the database (or moving it to a new box) quarantines too', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  let d = await startTestDaemon({ dataDir });
  await borrowOne(d, borrower(t), 'nuke_i');
  await d.halt();
  rmSync(join(dataDir, 'db'), { recursive: true });
  d = await startTestDaemon({ dataDir });
  t.teardown(() => d.halt());
  const c = await d.client();
  const s = await c.status();
  t.regex(s.server.warnings.join(' '), /the database has no record of this dongle's counter 1: a new or wiped database, or the dongle was used on another box/);
  t.is(await outcome(c.checkout('nuke_i')), 'QUARANTINE');
});

test('a dongle that fails its counter step grants nothing and leaves nothing half-written', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  let d = await startTestDaemon({ dataDir });
  const b = borrower(t);
  const c = await d.client();
  d.opener.emulator!.setFaults({ counterFailure: true });
  const e = await t.throwsAsync(b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24), { instanceOf: LicdError });
  t.is(e!.code, 'DONGLE_ABSENT');
  t.regex(e!.message, /did not step its monotonic counter/);
  t.is((await c.status()).features.find((f) => f.feature === 'vray_render')!.borrowed, 0);
  t.is(b.list(d.vendorPublicKey).length, 0);
  d.opener.emulator!.setFaults({ counterFailure: false });
  await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24);
  await d.halt();
  d = await startTestDaemon({ dataDir });
  t.teardown(() => d.halt());
  const s = await (await d.client()).status();
  t.deepEqual(s.quarantine, []);
  t.is(s.features.find((f) => f.feature === 'vray_render')!.borrowed, 1);
});

test('a clock set back a day blocks borrows and is reported with the jump; a two-minute step does not', async (t) => {
  const dataDir = tempDir();
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const clock = new ManualClock(Date.now());
  let d = await startTestDaemon({ dataDir, clock });
  const b = borrower(t, clock);
  let c = await d.client();
  await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 2);
  clock.advance(-2 * 60_000);
  t.is(await outcome(b.borrow(c, [{ feature: 'vray_interface', count: 1 }], 2)), 'ok', 'an NTP-sized step passes');
  clock.advance(-86400_000);
  const e = await t.throwsAsync(b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2), { instanceOf: LicdError });
  t.is(e!.code, 'CLOCK_SET_BACK');
  t.regex(e!.message, /set back by 24 h 2 min/);
  await d.service.reap();
  d.service.observeClock();
  t.true((await c.status()).server.warnings.some((w) => /clock was set back by 24 h/.test(w)));
  // Leases are kept short meanwhile.
  const lease = await c.checkout('vray_distributed', { ttl: 600 });
  t.is(Date.parse(lease.view.until) - clock.now(), 10_000);
  // The mark survives a restart.
  await d.halt();
  d = await startTestDaemon({ dataDir, clock });
  c = await d.client();
  t.is(await outcome(b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), 'CLOCK_SET_BACK');
  // An admin vouches for the clock.
  const admin = await d.admin();
  await admin.request('clock.accept', {}, { admin: true });
  t.is(await outcome(b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), 'ok');
  await d.halt();
});

test('a dongle that lies about its counter step (a bad signature) grants nothing', async (t) => {
  const { behaviour } = await import('../../firmware-bridge/emulator/emulated-dongle.ts');
  const { counterIncrementCodec } = await import('../../firmware-bridge/protocol/commands/counter-increment.ts');
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  d.opener.emulator!.setBehaviour(0x04, behaviour(counterIncrementCodec, () => ({ counter: 99n, signature: new Uint8Array(64).fill(7) })));
  const e = await t.throwsAsync(borrower(t).borrow(c, [{ feature: 'vray_render', count: 1 }], 24), { instanceOf: LicdError });
  t.regex(e!.message, /counter step to 99 is not signed by the dongle/);
  t.is((await c.status()).features.find((f) => f.feature === 'vray_render')!.borrowed, 0);
  d.opener.emulator!.setBehaviour(0x04, undefined);
  await borrower(t).borrow(c, [{ feature: 'vray_render', count: 1 }], 24);
  t.is((await c.status()).features.find((f) => f.feature === 'vray_render')!.borrowed, 1);
});
