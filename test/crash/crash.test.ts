/**
 * The kill harness in CI (docs/crash-safety.md): a bounded run of kill/restart trials under mixed
 * concurrent load, and the targeted scenarios, each judged against the ledger of answers. The long
 * run is `npm run soak -- --minutes M`.
 *
 * Set LICD_CRASH_SEED to repeat a schedule; the seed is printed either way.
 */
import test from 'ava';
import { killAll } from '../helpers/procs.ts';
import { KILL_KINDS, formatReport, formatViolation, runCampaign, runScenarios, type CampaignReport, type LoadPattern } from './harness.ts';
import { randomSeed } from './rng.ts';

test.after.always(() => killAll());

const seed = process.env.LICD_CRASH_SEED ? Number(process.env.LICD_CRASH_SEED) >>> 0 : randomSeed();

/**
 * Load patterns to leave out of the random trials while a known src/ bug makes them fail on their
 * own (docs/crash-safety.md, "Findings"), so the trials keep judging everything else; the
 * scenarios test reproduces each bug every time. Empty: the repeated-request and renew/return
 * bugs are fixed (46899ee).
 */
const KNOWN_BUG_PATTERNS: LoadPattern[] = [];

function summary(t: { log(...v: unknown[]): void }, r: CampaignReport): void {
  for (const line of formatReport(r).split('\n')) t.log(line);
}

test.serial('kill harness: SIGKILL and SIGTERM restarts under mixed concurrent load break no invariant', async (t) => {
  t.timeout(90_000);
  const lines: string[] = [];
  const r = await runCampaign({
    seed,
    trials: 6,
    loadMs: [1000, 2000],
    skip: KNOWN_BUG_PATTERNS,
    log: (l) => {
      lines.push(l);
      t.log(l);
    },
  });
  summary(t, r);
  t.is(r.trials.length, 6, 'every trial ran');
  for (const kind of KILL_KINDS) t.true(r.trials.some((x) => x.kind === kind), `a ${kind} trial ran`);
  t.true(r.kills.sigkill >= 4, 'SIGKILLs were made');
  t.true(r.ok > 200, `the load was answered (${r.ok} answers)`);
  t.true(r.trials.some((x) => x.inFlightAtKill > 0), 'some kills caught requests in flight');
  for (const c of r.checks) t.true(c.checked > 0, `${c.invariant} was checked`);
  t.deepEqual(
    r.violations.map((v) => formatViolation(v)),
    [],
    `reproduce the schedule with LICD_CRASH_SEED=${seed} or npm run soak -- --seed ${seed} --trials 6${KNOWN_BUG_PATTERNS.length > 0 ? ` --skip ${KNOWN_BUG_PATTERNS.join(',')}` : ''}`,
  );
});

test.serial('kill harness scenarios: kills inside the counter gate, repeated borrow requests, a return racing a renewal or a checkout', async (t) => {
  t.timeout(90_000);
  const r = await runScenarios(
    [
      ['borrow-kill', 2],
      ['repeat-kill', 1],
      ['repeat-return', 2],
      ['renew-return', 1],
      ['return-checkout', 1],
    ],
    { seed, log: (l) => t.log(l) },
  );
  summary(t, r);
  t.log(`${r.adopted} restart(s) found a counter step cut off by the kill and adopted it (no quarantine)`);
  t.deepEqual(
    r.violations.map((v) => formatViolation(v)),
    [],
    `reproduce with npm run soak -- --seed ${seed} --scenario borrow-kill,repeat-kill,repeat-return,renew-return,return-checkout --rounds 3`,
  );
});
