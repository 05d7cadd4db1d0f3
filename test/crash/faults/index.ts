/**
 * The everyday faults of issue 9, each a module that starts real licd processes, injects its
 * fault round after round and judges the seat invariants (0 answered grants lost, 0 seats over
 * the count, 0 leases reclaimed from live clients). `npm run soak -- --fault NAME[,NAME..]` runs
 * them for longer than their short ava tests do.
 */
import { fault as brokerRestart } from './broker-restart.ts';
import { fault as clockSteps } from './clock-steps.ts';
import { fault as diskFull } from './disk-full.ts';

export interface FaultModule {
  name: string;
  help: string;
  run(opts: { seed: number; rounds: number; log: (s: string) => void }): Promise<{ violations: string[]; summary: string }>;
}

export const FAULTS: readonly FaultModule[] = [diskFull, brokerRestart, clockSteps];
