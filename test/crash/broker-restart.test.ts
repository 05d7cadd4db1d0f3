/**
 * The broker-restart fault (test/crash/faults/broker-restart.ts), a few rounds: mosquitto stopped
 * (SIGTERM or SIGKILL) and restarted under licd with every seat held by a live client.
 * LICD_CRASH_SEED repeats a schedule.
 */
import test from 'ava';
import { killAll } from '../helpers/procs.ts';
import { fault } from './faults/broker-restart.ts';
import { randomSeed } from './rng.ts';

test.after.always(() => killAll());

test('fault broker-restart: no live holder loses its lease, no seat over the count', async (t) => {
  t.timeout(180_000);
  const seed = process.env.LICD_CRASH_SEED ? Number(process.env.LICD_CRASH_SEED) >>> 0 : randomSeed();
  t.log(`seed ${seed}`);
  const r = await fault.run({ seed, rounds: 3, log: (s) => t.log(s) });
  t.log(r.summary);
  t.deepEqual(r.violations, []);
});
