/**
 * The small interfaces through which the pure core meets the world. Adapters implement them;
 * tests inject fakes (a settable clock, seeded randomness).
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export interface Random {
  /** n cryptographically random bytes. */
  bytes(n: number): Uint8Array;
}

/** Ed25519 operations. Implementations: node:crypto (fast) and tweetnacl (independent). */
export interface Ed25519 {
  /** Public key (32 bytes) of a 32-byte seed. */
  publicKey(seed: Uint8Array): Uint8Array;
  sign(seed: Uint8Array, message: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
}

/**
 * One-way hash of a lease holder's secret (docs/protocol.md, "Holder secret"): leases store only
 * this, so neither the database nor a status reveals what a client must send to change a lease.
 * The daemon uses SHA-256; tests may inject anything one-way enough for them.
 */
export type HolderHash = (secret: string) => string;

export const systemClock: Clock = { now: () => Date.now() };

import type { Borrow, Lease, Mutation, RecordSpace } from './model.ts';

export interface StoredState {
  leases: Lease[];
  borrows: Borrow[];
  meta: Map<string, unknown>;
}

/**
 * Durable seat state. `commit` writes all the mutations of one change as one atomic batch and
 * resolves only once it is synced to disk; the daemon answers a request only after that.
 */
export interface StateStore {
  load(): Promise<StoredState>;
  /**
   * `lazy`: the change may wait a few milliseconds for others to share its sync (heartbeats:
   * hundreds a second, each alone otherwise); it is still synced before the promise resolves.
   */
  commit(mutations: readonly Mutation[], opts?: { lazy?: boolean }): Promise<void>;
  close(): Promise<void>;
  /**
   * The records of a space (rec.put), in key order (reverse: descending), within [gte, lt),
   * at most limit of them. Records are never part of load().
   */
  scan(space: RecordSpace, range?: RecordRange): AsyncIterable<[string, unknown]>;
  /**
   * Optional (LevelStore): after a failed write the store refuses every commit until it has
   * reopened its database and made the disk match what was answered (docs/storage.md).
   */
  setRecovery?(recovery: StoreRecovery): void;
}

export interface RecordRange {
  gte?: string;
  lt?: string;
  limit?: number;
  reverse?: boolean;
}

/** How the composition root helps a store recover from a failed write. */
export interface StoreRecovery {
  /**
   * Called once the database is open again, with what it holds. Resolves with the mutations that
   * make it equal to what was answered ok (the seat table in memory): the failed write may or
   * may not have landed. The store writes them as one synced batch before it takes commits again.
   */
  reconcile(disk: StoredState): Promise<Mutation[]>;
  /** Writes started failing (error: the cause, with its fix), or work again. */
  health(state: { ok: false; error: Error } | { ok: true; brokenMs: number; fixed: number }): void;
}

/** The first index of a sorted list whose item is not below k. */
function lowerBound(sorted: readonly string[], k: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** An in-memory store for unit tests of the rules. */
export class MemoryStore implements StateStore {
  readonly leases = new Map<string, Lease>();
  readonly borrows = new Map<string, Borrow>();
  readonly meta = new Map<string, unknown>();
  readonly records = new Map<string, unknown>();
  commits = 0;
  failNext = 0;
  async load(): Promise<StoredState> {
    return { leases: [...this.leases.values()], borrows: [...this.borrows.values()], meta: new Map(this.meta) };
  }
  async commit(mutations: readonly Mutation[], _opts?: { lazy?: boolean }): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected store failure');
    }
    this.commits++;
    for (const m of mutations) {
      if (m.kind === 'lease.put') this.leases.set(m.lease.id, structuredClone(m.lease));
      else if (m.kind === 'lease.del') this.leases.delete(m.id);
      else if (m.kind === 'borrow.put') this.borrows.set(m.borrow.id, structuredClone(m.borrow));
      else if (m.kind === 'borrow.del') this.borrows.delete(m.id);
      else if (m.kind === 'rec.put') {
        const k = `${m.space}!${m.key}`;
        if (!this.records.has(k) && this.sortedKeys) this.sortedKeys.splice(lowerBound(this.sortedKeys, k), 0, k);
        this.records.set(k, structuredClone(m.value));
      } else if (m.kind === 'rec.del') {
        const k = `${m.space}!${m.key}`;
        if (this.records.delete(k) && this.sortedKeys) this.sortedKeys.splice(lowerBound(this.sortedKeys, k), 1);
      }
      else this.meta.set(m.key, structuredClone(m.value));
    }
  }
  /** The record keys in order, kept between commits (month-long histories in tests scan often). */
  private sortedKeys: string[] | null = null;
  async *scan(space: RecordSpace, range: RecordRange = {}): AsyncIterable<[string, unknown]> {
    const prefix = `${space}!`;
    // Rebuilt when records were changed directly (tests delete one to play a lost write).
    if (this.sortedKeys?.length !== this.records.size) this.sortedKeys = [...this.records.keys()].sort();
    const all = this.sortedKeys;
    const lower = (k: string) => lowerBound(all, k);
    const gte = prefix + (range.gte ?? '');
    const end = range.lt !== undefined ? lower(prefix + range.lt) : lower(`${space}"`);
    let keys = all.slice(lower(gte), end).map((k) => k.slice(prefix.length));
    if (range.reverse) keys.reverse();
    if (range.limit !== undefined) keys = keys.slice(0, range.limit);
    for (const k of keys) yield [k, structuredClone(this.records.get(prefix + k))];
  }
  async close(): Promise<void> {}
}

/** What the daemon needs of its dongle (firmware-bridge implements it over any transport). */
export interface DongleIdentity {
  serial: string;
  publicKey: Uint8Array;
  counter: bigint;
  emulated: boolean;
  firmwareVersion: string;
}

export interface DonglePort {
  info(): Promise<DongleIdentity>;
  /** Signs `message` under `domain`; the dongle adds its class byte (see firmware-bridge/PROTOCOL.md). */
  sign(domain: string, message: Uint8Array): Promise<Uint8Array>;
  /** Steps the monotonic counter; never retried silently (a retry could step it twice). */
  counterIncrement(nonce: Uint8Array): Promise<{ value: bigint; signature: Uint8Array }>;
  /**
   * The dongle's battery-backed clock (TIME), signed under "dongle:time" over (u64 ms || nonce);
   * null when the dongle has none. Optional: older dongles do not know the command.
   */
  time?(nonce: Uint8Array): Promise<{ ms: number; signature: Uint8Array } | null>;
  close(): Promise<void>;
}
