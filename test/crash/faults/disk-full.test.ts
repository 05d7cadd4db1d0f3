/** The disk-full fault of the soak harness, a few rounds (docs/crash-safety.md). */
import test from 'ava';
import { killAll } from '../../helpers/procs.ts';
import { randomSeed } from '../rng.ts';
import { fault } from './disk-full.ts';

test.after.always(() => killAll());

const seed = process.env.LICD_CRASH_SEED ? Number(process.env.LICD_CRASH_SEED) >>> 0 : randomSeed();

test('fault harness: a disk that fills and empties under load, with restarts, loses nothing and over-grants nothing', async (t) => {
  t.timeout(120_000);
  const r = await fault.run({ seed, rounds: 2, log: (l) => t.log(l) });
  t.log(r.summary);
  t.deepEqual(r.violations, [], `reproduce with LICD_CRASH_SEED=${seed}`);
});
