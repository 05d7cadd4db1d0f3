/** The clock-steps fault (issue 9) in CI: a few rounds; `LICD_CRASH_SEED` repeats a schedule. */
import test from 'ava';
import { killAll } from '../helpers/procs.ts';
import { fault } from './faults/clock-steps.ts';
import { randomSeed } from './rng.ts';

test.after.always(() => killAll());

test('clock steps of ±2 min, ±1 day and +2 days, running and across restarts, break no invariant', async (t) => {
  t.timeout(120_000);
  const seed = process.env.LICD_CRASH_SEED ? Number(process.env.LICD_CRASH_SEED) >>> 0 : randomSeed();
  t.log(`seed ${seed}`);
  const r = await fault.run({ seed, rounds: 5, log: (l) => t.log(l) });
  t.log(r.summary);
  t.deepEqual(r.violations, []);
});
