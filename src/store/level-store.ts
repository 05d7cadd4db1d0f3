import { mkdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import type { LicdError } from '../core/errors.ts';
import type { Borrow, Lease, Mutation, RecordSpace } from '../core/model.ts';
import type { RecordRange, StateStore, StoreRecovery, StoredState } from '../core/ports.ts';
import { storeFaultError } from './faults.ts';

/**
 * Seat state in LevelDB. Key schema (docs/storage.md):
 *   meta!schema        the schema version (a number)
 *   meta!<name>        daemon metadata (JSON)
 *   lease!<id>         one Lease (JSON)
 *   borrow!<id>        one Borrow (JSON)
 *   rec!<space>!<key>  a record of a space (usage history, audit log): written with the seat
 *                      changes it describes, never loaded at start, read by scan()
 * Each change is one batch written with sync: true. Changes that arrive while a batch is being
 * synced wait and go out together in the next batch (group commit), so a burst of concurrent
 * requests shares one fsync instead of queueing one each. Heartbeats are "lazy": they wait up to
 * LAZY_MS for company, still synced before they are answered.
 *
 * A failed write leaves the handle damaged (LevelDB 1.20 has moved its log offset past a torn
 * record; later records would be lost at the next open). So after one, the store is "broken":
 * that group and every later commit are refused at once with the cause, nothing more goes through
 * that handle, and a recovery loop reopens the database on the same path (LevelDB's recovery
 * drops the torn record), lets the composition root reconcile the disk with what was answered,
 * and only then takes commits again (docs/storage.md, "When a write fails").
 */
export const SCHEMA_VERSION = 1;

/**
 * One write of a batch, already encoded: the key and the value are the strings LevelDB stores
 * (values are JSON text; the database reads them back through its 'json' value encoding).
 */
type Op = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

/**
 * Writes a batch of encoded operations. This calls classic-level's `_batch`, the method
 * abstract-level's public `batch()` ends in, with operations already in the form it hands down:
 * string keys and values. The public `batch()` clones each operation, validates and encodes it,
 * which took 14 to 18 µs of CPU per operation against 6 on this path (bench/store-batch.ts, JSON
 * encoding included; a checkout+checkin with the usage history and the audit log writes five). Nothing
 * is skipped that licd uses: no hooks, no write events, no sublevels, and the database is open
 * whenever licd writes (open() and the recovery wait for it). abstract-level documents `_batch`
 * as the interface an implementation provides; level 10 / classic-level 3 are pinned.
 */
function writeBatch(db: Level<string, unknown>, ops: Op[], sync: boolean): Promise<void> {
  const lean = db as unknown as { _batch?: (ops: Op[], opts: { sync: boolean }) => Promise<void>; status: string };
  if (typeof lean._batch === 'function' && lean.status === 'open') return lean._batch(ops, { sync });
  return db.batch(ops.map((o) => (o.type === 'put' ? { ...o, valueEncoding: 'utf8' } : o)) as never, { sync });
}

interface Pending {
  ops: Op[];
  /** A lazy change (a heartbeat): the time (performance.now) until which it may wait for company; null: write it as soon as possible. */
  lazyUntil: number | null;
  resolve(): void;
  reject(e: unknown): void;
}

/** Migrations from version N to N+1, run in order at open. */
const migrations: Record<number, (db: Level<string, unknown>) => Promise<void>> = {};

/** Recovery attempts: the first soon after the failure, then backing off to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10_000;

export class LevelStore implements StateStore {
  private db: Level<string, unknown>;
  private readonly path: string;
  private queue: Pending[] = [];
  private writing = false;
  private closed = false;
  /** Set from the first failed write until the reopened database is reconciled and synced. */
  private broken: { error: LicdError; since: number } | null = null;
  private recovery: StoreRecovery | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_FIRST_MS;
  private recovering: Promise<void> | null = null;
  /** Batches written and syncs issued, for the benchmark and the group-commit test. */
  readonly stats = { batches: 0, changes: 0, failures: 0, reopens: 0 };
  /** Told each written batch's time, seconds (metrics: licd_store_commit_duration_seconds). */
  onBatch: ((seconds: number) => void) | null = null;

  private constructor(db: Level<string, unknown>, path: string) {
    this.db = db;
    this.path = path;
  }

  /**
   * Opens (or creates) the database. Errors are a LicdError STORE_FAILED whose message names the
   * directory and the cause (no space, permission denied, another licd holds it) and whose
   * details.fault says which (main.ts maps it to an exit code).
   */
  static async open(path: string): Promise<LevelStore> {
    try {
      // Made here, one level, so a read-only or full file system reports its own errno (a
      // recursive mkdir reports ENOENT on a read-only file system).
      mkdirSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw storeFaultError(e, path, false);
    }
    const db = new Level<string, unknown>(path, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (e) {
      throw storeFaultError(e, path, false);
    }
    const store = new LevelStore(db, path);
    try {
      await store.migrate();
    } catch (e) {
      await db.close().catch(() => {});
      if (e instanceof Error && /schema/.test(e.message)) throw e;
      throw storeFaultError(e, path, false);
    }
    return store;
  }

  setRecovery(recovery: StoreRecovery): void {
    this.recovery = recovery;
  }

  /** Null while writes work; else why they fail (the message names the cause and the fix). */
  get failure(): LicdError | null {
    return this.broken?.error ?? null;
  }

  private async migrate(): Promise<void> {
    let version = (await this.db.get('meta!schema')) as number | undefined;
    if (version === undefined) {
      await this.db.put('meta!schema', SCHEMA_VERSION, { sync: true });
      return;
    }
    if (typeof version !== 'number' || version > SCHEMA_VERSION) {
      throw new Error(`the database has schema version ${String(version)}, newer than this licd understands (${SCHEMA_VERSION}); run a newer licd`);
    }
    while (version < SCHEMA_VERSION) {
      const step = migrations[version];
      if (!step) throw new Error(`no migration from schema ${version}`);
      await step(this.db);
      version++;
      await this.db.put('meta!schema', version, { sync: true });
    }
  }

  async load(): Promise<StoredState> {
    return loadFrom(this.db);
  }

  async *scan(space: RecordSpace, range: RecordRange = {}): AsyncIterable<[string, unknown]> {
    const prefix = `rec!${space}!`;
    const opts: { gte: string; lt: string; limit?: number; reverse?: boolean } = {
      gte: prefix + (range.gte ?? ''),
      lt: range.lt !== undefined ? prefix + range.lt : `rec!${space}"`,
    };
    if (range.limit !== undefined) opts.limit = range.limit;
    if (range.reverse) opts.reverse = true;
    for await (const [key, value] of this.db.iterator(opts)) yield [key.slice(prefix.length), value];
  }

  /** The most changes one synced batch carries (a burst is written as several, in order). */
  static readonly MAX_GROUP = 256;
  /** How long a lazy change (a heartbeat) may wait for others to share its sync. */
  static readonly LAZY_MS = 25;
  private lazyTimer: NodeJS.Timeout | null = null;

  commit(mutations: readonly Mutation[], opts: { lazy?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    if (mutations.length === 0) return Promise.resolve();
    // Nothing goes through a handle a write failed on; the recovery loop reopens it.
    if (this.broken) return Promise.reject(this.broken.error);
    const ops: Op[] = mutations.map(toOp);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, lazyUntil: opts.lazy ? performance.now() + LevelStore.LAZY_MS : null, resolve, reject });
      if (this.writing) return;
      // Heartbeats trickle in one at a time; a short wait lets a few dozen share one fsync.
      if (opts.lazy) this.lazyTimer ??= setTimeout(() => this.lazyDue(), LevelStore.LAZY_MS);
      else void this.drain();
    });
  }

  private lazyDue(): void {
    this.lazyTimer = null;
    if (!this.writing) void this.drain();
  }

  /**
   * Whether the next batch should wait: everything queued is lazy and the oldest may wait longer
   * (a timer is then set for it). Lazy changes that queued while a batch was written wait for
   * company too, instead of going out one or two per fsync behind it.
   */
  private waitForCompany(): boolean {
    if (this.closed || this.queue.some((p) => p.lazyUntil === null)) return false;
    const wait = this.queue[0]!.lazyUntil! - performance.now();
    if (wait <= 1) return false;
    this.lazyTimer ??= setTimeout(() => this.lazyDue(), Math.ceil(wait));
    return true;
  }

  private async drain(): Promise<void> {
    if (this.lazyTimer) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = null;
    }
    this.writing = true;
    while (this.queue.length > 0) {
      if (this.waitForCompany()) break;
      // At most MAX_GROUP changes per batch: under a burst the first answers go out after one
      // bounded batch instead of after all that queued, and the event loop turns between batches.
      let group: Pending[];
      if (this.queue.length <= LevelStore.MAX_GROUP) {
        group = this.queue;
        this.queue = [];
      } else group = this.queue.splice(0, LevelStore.MAX_GROUP);
      const ops = group.flatMap((p) => p.ops);
      try {
        const started = this.onBatch ? performance.now() : 0;
        await writeBatch(this.db, ops, true);
        if (this.onBatch) this.observe((performance.now() - started) / 1000);
        this.stats.batches++;
        this.stats.changes += group.length;
        for (const p of group) p.resolve();
      } catch (e) {
        this.stats.failures++;
        const error = storeFaultError(e, this.path, true);
        this.markBroken(error);
        // Newest first, so the undo()s run newest first and a record two changes touched ends
        // as it was before the older one. What queued meanwhile is refused too: it must not go
        // through this handle.
        const waiting = this.queue;
        this.queue = [];
        for (const p of [...group, ...waiting].reverse()) p.reject(error);
      }
    }
    this.writing = false;
  }

  /** An observer that throws must not pass for a failed write. */
  private observe(seconds: number): void {
    try {
      this.onBatch?.(seconds);
    } catch {
      // metrics only
    }
  }

  private markBroken(error: LicdError): void {
    if (this.broken) {
      this.broken.error = error;
      return;
    }
    this.broken = { error, since: Date.now() };
    this.retryMs = RETRY_FIRST_MS;
    this.recovery?.health({ ok: false, error });
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.recovering = this.recover().finally(() => {
        this.recovering = null;
      });
    }, this.retryMs);
    this.retryTimer.unref?.();
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  /**
   * One recovery attempt: close the damaged handle, open a new one on the same path (LevelDB's
   * recovery drops a torn record; it needs some free space, so this fails until there is), read
   * what the disk holds, write what the composition root says makes it match what was answered,
   * synced, and only then take commits again.
   */
  private async recover(): Promise<void> {
    if (this.closed || !this.broken) return;
    try {
      await this.db.close().catch(() => {});
      const db = new Level<string, unknown>(this.path, { valueEncoding: 'json' });
      this.db = db;
      await db.open();
      this.stats.reopens++;
      const disk = await loadFrom(db);
      if (this.closed) return;
      const fix = this.recovery ? await this.recovery.reconcile(disk) : [];
      // Always one synced write, so "healthy" means a write went through this new handle.
      const ops: Op[] = [{ type: 'put', key: 'meta!schema', value: String(SCHEMA_VERSION) }, ...fix.map(toOp)];
      await writeBatch(db, ops, true);
      const since = this.broken.since;
      this.broken = null;
      this.retryMs = RETRY_FIRST_MS;
      this.recovery?.health({ ok: true, brokenMs: Date.now() - since, fixed: fix.length });
    } catch (e) {
      if (this.closed || !this.broken) return;
      this.broken.error = storeFaultError(e, this.path, true);
      this.scheduleRecovery();
    }
  }

  async close(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.recovering) await this.recovering;
    // Still broken at shutdown: one last attempt, so a refused change whose write landed anyway
    // is not found on disk at the next start.
    if (this.broken && !this.closed) await this.recover();
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.queue.length > 0 && !this.writing && !this.broken) void this.drain();
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
    await this.db.close().catch((e) => {
      if (!this.broken) throw e;
    });
  }
}

async function loadFrom(db: Level<string, unknown>): Promise<StoredState> {
  const leases: Lease[] = [];
  const borrows: Borrow[] = [];
  const meta = new Map<string, unknown>();
  // Records (rec!...) sort after the seat state and are read with scan(), never at start.
  for await (const [key, value] of db.iterator({ lt: 'rec!' })) {
    if (key.startsWith('lease!')) leases.push(value as Lease);
    else if (key.startsWith('borrow!')) borrows.push(value as Borrow);
    else if (key.startsWith('meta!')) meta.set(key.slice(5), value);
  }
  return { leases, borrows, meta };
}

function toOp(m: Mutation): Op {
  switch (m.kind) {
    case 'lease.put':
      return { type: 'put', key: `lease!${m.lease.id}`, value: json(m.lease) };
    case 'lease.del':
      return { type: 'del', key: `lease!${m.id}` };
    case 'borrow.put':
      return { type: 'put', key: `borrow!${m.borrow.id}`, value: json(m.borrow) };
    case 'borrow.del':
      return { type: 'del', key: `borrow!${m.id}` };
    case 'meta.put':
      return { type: 'put', key: `meta!${m.key}`, value: json(m.value) };
    case 'rec.put':
      // Text already encoded is written as it is (it reads back as JSON like the rest).
      return { type: 'put', key: `rec!${m.space}!${m.key}`, value: m.json ?? json(m.value) };
    case 'rec.del':
      return { type: 'del', key: `rec!${m.space}!${m.key}` };
  }
}

/** A value as the 'json' encoding would write it (JSON.stringify; undefined, which it cannot store, is refused). */
function json(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('a stored value must be JSON (got undefined)');
  return text;
}
