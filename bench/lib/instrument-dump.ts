/** What bench/instrument.mjs writes from inside the daemon on SIGUSR2 (see there). */
export interface Dist {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface InstrumentDump {
  commit: Dist;
  handle: Dist;
  loopLag: Dist;
  /** Group commit: synced batches written and changes they carried (LevelStore.stats). */
  batches: number;
  changes: number;
  /** Borrow changes: dongle counter steps and the changes they bound (CounterGate.stats). */
  counterSteps: number;
  counterChanges: number;
  /** Garbage collections on the main thread: scavenges (minor) and full mark-compacts (major), their number and pause time. */
  gc?: { minor: number; minorMs: number; major: number; majorMs: number };
}
