/**
 * Issue 9, finding 9: the codes and reasons around the dongle's counter. A borrow queued behind a
 * counter step that failed is refused as a dongle fault (DONGLE_ABSENT with the dongle's cause),
 * not as a disk fault; a database that knew another dongle is told so, not "the counter went back".
 * Real daemon (LevelDB, embedded broker), the emulated dongle in-process with its injected faults.
 */
import test from 'ava';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/daemon.ts';

function borrower(t: { teardown(f: () => void): void }, hostId = 'ab'.repeat(16)) {
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  return new BorrowClient({ home, hostId, user: 'alice', hostName: 'laptop' });
}

async function outcome(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
    return { code: 'ok', message: '' };
  } catch (e) {
    return { code: (e as LicdError).code ?? 'thrown', message: (e as Error).message };
  }
}

async function borrowOne(d: TestDaemon, b: BorrowClient, feature = 'vray_render') {
  const c = await d.client();
  await b.borrow(c, [{ feature, count: 1 }], 24);
  await c.close();
}

test('a borrow queued behind a counter step that failed gets DONGLE_ABSENT with the dongle cause, not STORE_FAILED', async (t) => {
  t.timeout(120_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const emu = d.opener.emulator!;
  // A slow dongle: the first borrow's counter step is under way when the second one arrives and
  // queues behind it; then the dongle is pulled out.
  emu.setFaults({ slowMs: 1500 });
  const first = outcome(borrower(t, 'a1'.repeat(16)).borrow(c, [{ feature: 'vray_render', count: 1 }], 24));
  await new Promise((r) => setTimeout(r, 400));
  const second = outcome(borrower(t, 'b2'.repeat(16)).borrow(c, [{ feature: 'vray_interface', count: 1 }], 24));
  await new Promise((r) => setTimeout(r, 400));
  emu.unplug();
  const [a, b] = await Promise.all([first, second]);
  for (const [name, o] of [['first', a], ['queued', b]] as const) {
    t.is(o.code, 'DONGLE_ABSENT', `${name}: ${o.message}`);
    t.regex(o.message, /dongle/, name);
    t.notRegex(o.message, /disk full|database could not be written/, name);
  }
  emu.setFaults({ slowMs: 0 });
  emu.plug();
  const s = await (await d.client()).status();
  t.is(s.features.find((f) => f.feature === 'vray_interface')!.borrowed, 0, 'nothing was granted');
});

test('a database that knew another dongle is quarantined with that reason, never "the counter went back"', async (t) => {
  t.timeout(120_000);
  const boxA = tempDir();
  const boxB = tempDir();
  t.teardown(() => {
    rmSync(boxA, { recursive: true, force: true });
    rmSync(boxB, { recursive: true, force: true });
  });
  // Box A's database knows counter 2 of its dongle.
  let a = await startTestDaemon({ dataDir: boxA });
  const serialA = a.opener.emulator!.serial;
  await borrowOne(a, borrower(t));
  await borrowOne(a, borrower(t));
  await a.halt();
  // Another dongle, used once on box B (its counter is 1), is plugged into box A.
  const b = await startTestDaemon({ dataDir: boxB });
  const serialB = b.opener.emulator!.serial;
  await borrowOne(b, borrower(t), 'nuke_i');
  await b.halt();
  cpSync(join(boxB, 'dev', 'dongle.json'), join(boxA, 'dev', 'dongle.json'));
  a = await startTestDaemon({ dataDir: boxA });
  t.teardown(() => a.halt());
  const s = await (await a.client()).status();
  const warning = s.server.warnings.join(' ');
  t.regex(warning, new RegExp(`quarantine: the database's borrows were bound to dongle ${serialA} \\(counter 2\\), not to this dongle ${serialB} \\(counter 1\\): the database came from another box, or the dongle was replaced`));
  t.notRegex(warning, /went back/);
  t.is(s.quarantineBinding?.dongleSerial, serialB);
  t.is(s.quarantineBinding?.counter, '1');
});
