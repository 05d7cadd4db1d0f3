import { Level } from 'level';
import type { Borrow, Lease, Mutation } from '../core/model.ts';
import type { StateStore, StoredState } from '../core/ports.ts';

/**
 * Seat state in LevelDB. Key schema (docs/storage.md):
 *   meta!schema        the schema version (a number)
 *   meta!<name>        daemon metadata (JSON)
 *   lease!<id>         one Lease (JSON)
 *   borrow!<id>        one Borrow (JSON)
 * Each change is one batch written with sync: true. Changes that arrive while a batch is being
 * synced wait and go out together in the next batch (group commit), so a burst of concurrent
 * requests shares one fsync instead of queueing one each. Heartbeats are "lazy": they wait up to
 * LAZY_MS for company, still synced before they are answered.
 */
export const SCHEMA_VERSION = 1;

type Op = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

interface Pending {
  ops: Op[];
  resolve(): void;
  reject(e: unknown): void;
}

/** Migrations from version N to N+1, run in order at open. */
const migrations: Record<number, (db: Level<string, unknown>) => Promise<void>> = {};

export class LevelStore implements StateStore {
  private readonly db: Level<string, unknown>;
  private queue: Pending[] = [];
  private writing = false;
  private closed = false;
  /** Batches written and syncs issued, for the benchmark and the group-commit test. */
  readonly stats = { batches: 0, changes: 0 };

  private constructor(db: Level<string, unknown>) {
    this.db = db;
  }

  static async open(path: string): Promise<LevelStore> {
    const db = new Level<string, unknown>(path, { valueEncoding: 'json' });
    await db.open();
    const store = new LevelStore(db);
    await store.migrate();
    return store;
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
    const leases: Lease[] = [];
    const borrows: Borrow[] = [];
    const meta = new Map<string, unknown>();
    for await (const [key, value] of this.db.iterator()) {
      if (key.startsWith('lease!')) leases.push(value as Lease);
      else if (key.startsWith('borrow!')) borrows.push(value as Borrow);
      else if (key.startsWith('meta!')) meta.set(key.slice(5), value);
    }
    return { leases, borrows, meta };
  }

  /** How long a lazy change (a heartbeat) may wait for others to share its sync. */
  static readonly LAZY_MS = 25;
  private lazyTimer: NodeJS.Timeout | null = null;

  commit(mutations: readonly Mutation[], opts: { lazy?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    if (mutations.length === 0) return Promise.resolve();
    const ops: Op[] = mutations.map(toOp);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, resolve, reject });
      if (this.writing) return;
      if (opts.lazy) {
        // Heartbeats trickle in one at a time; a short wait lets a few dozen share one fsync.
        this.lazyTimer ??= setTimeout(() => {
          this.lazyTimer = null;
          if (!this.writing) void this.drain();
        }, LevelStore.LAZY_MS);
      } else void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.lazyTimer) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = null;
    }
    this.writing = true;
    while (this.queue.length > 0) {
      const group = this.queue;
      this.queue = [];
      const ops = group.flatMap((p) => p.ops);
      try {
        await this.db.batch(ops as never, { sync: true });
        this.stats.batches++;
        this.stats.changes += group.length;
        for (const p of group) p.resolve();
      } catch (e) {
        // Newest first, so the undo()s run newest first and a record two changes touched ends
        // as it was before the older one.
        for (const p of [...group].reverse()) p.reject(e);
      }
    }
    this.writing = false;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.queue.length > 0 && !this.writing) void this.drain();
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
    await this.db.close();
  }
}

function toOp(m: Mutation): Op {
  switch (m.kind) {
    case 'lease.put':
      return { type: 'put', key: `lease!${m.lease.id}`, value: m.lease };
    case 'lease.del':
      return { type: 'del', key: `lease!${m.id}` };
    case 'borrow.put':
      return { type: 'put', key: `borrow!${m.borrow.id}`, value: m.borrow };
    case 'borrow.del':
      return { type: 'del', key: `borrow!${m.id}` };
    case 'meta.put':
      return { type: 'put', key: `meta!${m.key}`, value: m.value };
  }
}
