/**
 * Issue 9, finding 7: when the dongle's grace ends the holders' renewals are refused; licctl
 * checkout and licctl run (real child processes) say the seat is gone and why, try to get it back,
 * and say when it is back. The daemon runs in-process so the test can unplug its emulated dongle.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';
import { killAll, licctl } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('the dongle grace ends: licctl checkout and licctl run report the loss with DONGLE_ABSENT, retry, and report the seat back', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const d = await startTestDaemon({ config: { leases: { dongleGraceSeconds: 1, ttlSeconds: 10, minTtlSeconds: 10 } } });
  const dir = tempDir();
  t.teardown(async () => {
    await d.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  const B = ['--broker', d.url];
  const holder = licctl(['checkout', 'vray_render', '--ttl', '10', ...B], { LICD_USER: 'hana', LICD_HOST: 'node-h' });
  await holder.waitFor(/granted vray_render to hana@node-h/);
  const go = join(dir, 'go');
  const runner = licctl(['run', 'vray_interface', ...B, '--warn-every', '1', '--', 'sh', '-c', `echo started; while [ ! -e ${go} ]; do sleep 0.2; done; echo finished`], { LICD_USER: 'rui' });
  await runner.waitFor(/started/);

  d.opener.emulator!.unplug();
  await holder.waitFor(/lost the seat of vray_render: DONGLE_ABSENT: the license dongle is absent .* its grace of 1 s has ended.*; trying to get it back/, 40_000);
  await runner.waitFor(/lost the seat of vray_interface: DONGLE_ABSENT: .*grace of 1 s has ended/, 40_000);
  await runner.waitFor(/still no seat of vray_interface \(DONGLE_ABSENT\)/, 20_000);

  d.opener.emulator!.plug();
  await holder.waitFor(/regained vray_render \(lease \S+, until .*\); holding/, 40_000);
  await runner.waitFor(/regained the seat of vray_interface/, 40_000);

  writeFileSync(go, '');
  const r = await runner.exited;
  t.is(r.code, 0, runner.stderr());
  t.regex(runner.stderr(), /checked in vray_interface/);
  holder.child.kill('SIGTERM');
  const h = await holder.exited;
  t.is(h.code, 0, holder.stderr());
  t.regex(holder.stdout(), /checked in vray_render/);
  t.is((await (await d.client()).status()).features.find((f) => f.feature === 'vray_render')!.leased, 0);
});
