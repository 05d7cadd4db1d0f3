/** Messages between the benchmark and its load generator processes (bench/gen.ts), over fork IPC. */

export interface ConnectCmd {
  cmd: 'connect';
  url: string;
  /** Client ids are `${idPrefix}-${i}` for i in [0, count). */
  idPrefix: string;
  count: number;
  username?: string;
  password?: string;
  /** Connections opened at once; more at once would overflow the broker's listen backlog. */
  concurrency: number;
  timeoutMs: number;
  keepalive?: number;
  qos?: 0 | 1;
}

/** Closed loop: every client does checkout then checkin, one request in flight, until the end. */
export interface PairsCmd {
  cmd: 'pairs';
  feature: string;
  warmupMs: number;
  durationMs: number;
}

/** Open loop: checkouts at a fixed rate whatever the answers; each answered checkout is checked in. */
export interface OpenCmd {
  cmd: 'open';
  feature: string;
  /** Checkouts per second from this generator. */
  rate: number;
  warmupMs: number;
  durationMs: number;
}

/** Every client sends one request at the epoch time `at`; the leases are kept for checkinAll. */
export interface BurstCmd {
  cmd: 'burst';
  at: number;
  op: string;
  /** Request parameters, filled per client by fillParams (bench/lib/params.ts). */
  params: Record<string, unknown>;
  /** Instead of params: a borrow request signed by a key of the node's own (made before `at`). */
  borrow?: { feature: string; hours: number };
  /** How many of this generator's clients take part (default all). */
  clients?: number;
  timeoutMs: number;
}

/** Every client checks one lease out, then heartbeats it on the period the daemon gives. */
export interface FarmCmd {
  cmd: 'farm';
  feature: string;
  ttl?: number;
  concurrency: number;
  /**
   * Grow a running farm: every client checks out this many more leases (pids 2, 3...), each
   * heartbeated on its own, as separate nodes would (the daemon's work per heartbeat is the same;
   * the broker carries fewer connections). The counts go on.
   */
  more?: number;
}

/**
 * Every client asks for one seat at `at`, willing to wait (wait: true); when it gets the seat (at
 * once or by a queue.granted notice) it holds it `holdMs` and checks it in.
 */
export interface QueueCmd {
  cmd: 'queue';
  at: number;
  feature: string;
  holdMs: number;
  /** The maxWait every client asks for, seconds (the same for all: its `until` then says when it joined). */
  maxWait: number;
  /** How long a client waits for its seat before it counts as not served, ms. */
  timeoutMs: number;
}

export type GenCmd =
  | QueueCmd
  | ConnectCmd
  | PairsCmd
  | OpenCmd
  | BurstCmd
  | FarmCmd
  | { cmd: 'farmStop' }
  | { cmd: 'checkinAll'; concurrency: number }
  | { cmd: 'drop' }
  | { cmd: 'close' };

export interface ConnectResult {
  connected: number;
  failed: number;
  firstError: string | null;
  ms: number;
}

export interface LatencyResult {
  /** Completed round trips whose answer arrived inside the measuring window. */
  count: number;
  windowMs: number;
  /** Round-trip times in ms of the requests counted, per op. */
  samples: Record<string, Float64Array>;
  errors: Record<string, number>;
  /** Request and answer payload sizes seen (bytes), per op. */
  bytes: Record<string, { request: number; answer: number }>;
  /** Open loop only: how late sends left against their schedule (ms), p99 and max. */
  lagP99Ms?: number;
  lagMaxMs?: number;
  /** CPU time this generator used during the run (ms). */
  cpuMs: number;
}

export interface BurstResult {
  sent: number;
  ok: number;
  errors: Record<string, number>;
  firstAnswerAt: number | null;
  lastAnswerAt: number | null;
  /** Time each request took, from its own send (ms). */
  samples: Float64Array;
  /** When the last request of this generator actually left (epoch ms). */
  lastSentAt: number;
  /** The first ok answer, to read a token or grant from. */
  sample: unknown;
}

export interface FarmResult {
  leases: number;
  failed: number;
  heartbeatSeconds: number;
  errors: Record<string, number>;
}

export interface FarmStopResult {
  heartbeats: number;
  unknown: number;
  errors: Record<string, number>;
  samples: Float64Array;
}

export interface QueueResult {
  sent: number;
  /** Clients that got their seat (and checked it in). */
  served: number;
  /** How many of them waited in the queue (answered queued first). */
  queued: number;
  errors: Record<string, number>;
  /**
   * Per client, in the server's time (ms): when it joined the queue (its queued answer's `until`
   * less maxWait; for a seat granted at once, the grant) and when its lease was granted (the
   * lease's `since`); NaN when it got no seat.
   */
  joins: Float64Array;
  grants: Float64Array;
  /** When the last check-in of this generator was answered (epoch ms), and notices seen. */
  lastCheckinAt: number | null;
  notices: number;
}

export type GenReply = { seq: number; ok: true; result: unknown } | { seq: number; ok: false; error: string };
