/**
 * The seat slots of a borrowed token under load and after pid reuse: real licctl processes racing
 * for one seat, and slot files left by processes whose pid now names another process.
 */
import test from 'ava';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processStart } from '../../src/sdk/seat-lock.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('racing offline uses of a one-seat token: exactly one runs, also when they race to take over a stale slot', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { d, home, env, offline } = await devDaemonProcess(t, { LICD_USER: 'dave' });
  t.is((await run(['borrow', '--feature', 'vray_interface', '--hours', '24', '--yes'], env)).code, 0);
  d.child.kill('SIGTERM');
  await d.exited;
  const borrowId = readdirSync(join(home, 'tokens')).find((f) => f.endsWith('.json'))!.replace(/\.json$/, '');
  const slot = join(home, 'locks', borrowId, 'seat-0.lock');
  mkdirSync(join(home, 'locks', borrowId), { recursive: true });

  // A slot recorded by a live pid with another start time: the pid was reused, the slot is stale.
  writeFileSync(slot, JSON.stringify({ pid: process.pid, start: '1', feature: 'vray_interface', at: new Date().toISOString() }));
  const reused = await run(['run', 'vray_interface', '--', 'true'], offline);
  t.is(reused.code, 0, reused.stderr);
  // The same pid with its true start time: a live holder, so the seat is in use.
  writeFileSync(slot, JSON.stringify({ pid: process.pid, start: processStart(process.pid), feature: 'vray_interface', at: new Date().toISOString() }));
  const busy = await run(['run', 'vray_interface', '--', 'true'], offline);
  t.is(busy.code, 7, busy.stderr);
  t.regex(busy.stderr, new RegExp(`TOKEN_IN_USE: .*\\(pid ${process.pid}\\)`));

  // Five at once, racing to take over a stale slot: one runs, four are refused.
  writeFileSync(slot, JSON.stringify({ pid: process.pid, start: '1', feature: 'vray_interface', at: new Date().toISOString() }));
  const procs = Array.from({ length: 5 }, () => licctl(['run', 'vray_interface', '--', 'sleep', '20'], offline));
  const ends: Array<number | null> = [];
  let running = 0;
  await Promise.all(
    procs.map(async (p) => {
      const r = await Promise.race([p.waitFor(/using borrowed vray_interface/, 40_000).then(() => 'running' as const), p.exited.then(() => 'ended' as const)]);
      if (r === 'running') running++;
      else ends.push((await p.exited).code);
    }),
  );
  t.is(running, 1, procs.map((p) => p.stderr()).join('\n'));
  t.deepEqual(ends, [7, 7, 7, 7]);
  for (const p of procs) p.child.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited));
  t.deepEqual(readdirSync(join(home, 'locks', borrowId)), [], 'the run that ended removed its slot');
});
