/**
 * Issue 9, finding 1, the counter side: the disk fills right after the dongle stepped its counter
 * for a borrow renewal, so the renewal's batch (the borrow and the new counter value) fails after
 * the step. Twice. The daemon runs in-process here (the test needs to fill the disk at that exact
 * moment, from the emulated dongle's counter command), with real LevelDB on a real 6 MiB tmpfs.
 * A restart must find every answered borrow and adopt the counter, not quarantine.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { startTestDaemon, tempDir, until, type TestDaemon } from '../helpers/daemon.ts';
import { mountSmallFs } from '../helpers/smallfs.ts';

const COUNTER_INCREMENT = 0x04;

test('renewals whose batch fails after the counter step (twice) leave no false quarantine and lose no answered borrow', async (t) => {
  t.timeout(60_000);
  const fs = mountSmallFs(6);
  t.teardown(() => fs.unmount());
  const dataDir = join(fs.dir, 'data');
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  let d: TestDaemon = await startTestDaemon({ dataDir });
  t.teardown(() => d.halt().catch(() => {}));
  const emu = d.opener.emulator!;
  const step = emu.getBehaviour(COUNTER_INCREMENT)!;
  let fillAfterStep = false;
  emu.setBehaviour(COUNTER_INCREMENT, async (payload, ctx) => {
    const answer = await step(payload, ctx);
    if (fillAfterStep) fs.fill();
    return answer;
  });
  // Six borrow records with long names (a render seat stays free, so a false quarantine would
  // show): a renewal of all of them is one batch larger than a memory page, so once the disk is
  // full it cannot fit in what is left of the log's last page, while the small pending marker
  // written before the step still can.
  const bc = new BorrowClient({ home, hostId: 'ef'.repeat(32), user: 'f'.repeat(64), hostName: 'h'.repeat(128) });
  const c = await d.client();
  const answered = new Map<string, string>();
  for (const [feature, n] of [['vray_render', 3], ['vray_interface', 2], ['nuke_i', 1]] as const) {
    for (let i = 0; i < n; i++) for (const b of (await bc.borrow(c, [{ feature, count: 1 }], 24)).borrows) answered.set(b.id, b.until);
  }
  const ids = [...answered.keys()];

  /** A renewal refused after the dongle stepped its counter; then space comes back. */
  const failAfterStep = async () => {
    const before = emu.counter;
    fillAfterStep = true;
    const e = await t.throwsAsync(bc.renew(c, ids, 48));
    fillAfterStep = false;
    t.true(isLicdError(e) && e.code === 'STORE_FAILED', String(e));
    t.is(emu.counter, before + 1n, 'the refused renewal had stepped the counter');
    fs.free();
    await until(async () => !(await c.status()).server.warnings.some((w) => /store failing/.test(w)), 'writing to resume', 20_000, 200);
  };
  // Twice, with no successful counter step in between.
  await failAfterStep();
  await failAfterStep();
  const s1 = await c.status();
  t.deepEqual(s1.quarantine, []);

  await d.halt();
  d = await startTestDaemon({ dataDir });
  const c2 = await d.client();
  const s = await c2.status();
  t.deepEqual(s.quarantine, [], 'no quarantine after the restart');
  t.false(s.server.warnings.some((w) => /quarantine/.test(w)), s.server.warnings.join('; '));
  const got = s.features.flatMap((f) => f.borrows);
  t.deepEqual(
    got.map((b) => [b.id, b.until]).sort(),
    [...answered].sort(),
    'every borrow is there, with the end it was last answered with (the refused renewals left no trace)',
  );
});
