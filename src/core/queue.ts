/**
 * Waiting for a seat (issue 15, docs/policy.md "Queueing"): checkouts that asked to wait, per
 * feature, in the order they are served: by priority (the policy's PRIORITY of the user's groups,
 * higher first), then first come, first served. Each waiter is also a record of the 'queue' space,
 * written in the same batch as its arrival, its grant or its leaving, and read back at start in
 * its old order (docs/policy.md, "Durability"). Pure: times come in as arguments.
 */
import type { Mutation } from './model.ts';
import type { CheckoutRequest } from './seats.ts';

/** A waiter as the store keeps it (`rec!queue!<seq in 12 digits>`): what it takes to put it back in its place. */
export interface StoredWaiter {
  seq: number;
  priority: number;
  since: number;
  deadline: number;
  req: CheckoutRequest;
}

export const waiterRecordKey = (seq: number): string => String(seq).padStart(12, '0');

/** The record of a waiter (its arrival, or a new deadline). */
export function putWaiter(w: Waiter): Mutation {
  const { waitedMs: _, ...req } = w.req;
  const value: StoredWaiter = { seq: w.seq, priority: w.priority, since: w.since, deadline: w.deadline, req };
  return { kind: 'rec.put', space: 'queue', key: waiterRecordKey(w.seq), value };
}

/** Its record goes (granted, or it left). */
export function delWaiter(w: Waiter): Mutation {
  return { kind: 'rec.del', space: 'queue', key: waiterRecordKey(w.seq) };
}

/** A stored waiter read back at start, or null when the record is not one (it is then dropped). */
export function storedWaiter(v: unknown): StoredWaiter | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const r = o.req as Record<string, unknown> | null;
  const num = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x);
  const str = (x: unknown) => typeof x === 'string' && x.length > 0 && x.length <= 256;
  if (!num(o.seq) || !num(o.priority) || !num(o.since) || !num(o.deadline) || typeof r !== 'object' || r === null) return null;
  if (!str(r.clientId) || typeof r.holder !== 'string' || !num(r.pid) || !str(r.user) || !str(r.host) || !str(r.feature) || !num(r.count) || !num(r.ttlMs)) return null;
  if (r.version !== undefined && typeof r.version !== 'string') return null;
  const req: CheckoutRequest = {
    clientId: r.clientId as string,
    holder: r.holder as string,
    pid: r.pid as number,
    user: r.user as string,
    host: r.host as string,
    feature: r.feature as string,
    ...(typeof r.version === 'string' ? { version: r.version } : {}),
    count: r.count as number,
    ttlMs: r.ttlMs as number,
  };
  return { seq: o.seq as number, priority: o.priority as number, since: o.since as number, deadline: o.deadline as number, req };
}

export interface Waiter {
  /** The checkout to make when a seat is free (the holder's own request, as it asked). */
  req: CheckoutRequest;
  priority: number;
  /** Arrival order (ties in priority are served first come, first served). */
  seq: number;
  since: number;
  /** Leaves the queue then (its maxWait), told with queue.failed TIMEOUT. */
  deadline: number;
  /** Its client's connection died (last will) at: it leaves after the grace unless it asks again. */
  goneAt: number | null;
  /** Its grant is being written: not served again, not counted in positions. */
  granting: boolean;
  /** The position it was last told (1 = next). */
  told: number;
  /** Its arrival is being written (queue.joined): it holds the line until then. */
  writing?: boolean;
}

/** Same holder, process and feature: asking again keeps the place. */
export function waiterKey(r: Pick<CheckoutRequest, 'clientId' | 'pid' | 'feature' | 'holder'>): string {
  return `${r.clientId}\0${r.pid}\0${r.feature}\0${r.holder}`;
}

export class WaitQueue {
  private readonly byFeature = new Map<string, Waiter[]>();
  private readonly byKey = new Map<string, Waiter>();
  private seq = 0;

  get size(): number {
    return this.byKey.size;
  }

  features(): string[] {
    return [...this.byFeature.keys()];
  }

  get(key: string): Waiter | undefined {
    return this.byKey.get(key);
  }

  /** The waiters of a feature in serving order (the ones being granted included). */
  of(feature: string): readonly Waiter[] {
    return this.byFeature.get(feature) ?? [];
  }

  /** Whether any waiter of the feature is not being granted (stops at the first). */
  waits(feature: string): boolean {
    return this.of(feature).some((w) => !w.granting);
  }

  length(feature: string): number {
    return this.of(feature).filter((w) => !w.granting).length;
  }

  /** Every waiter (any order). */
  all(): Waiter[] {
    return [...this.byKey.values()];
  }

  /**
   * Puts a stored waiter back (at start; call in the order of their seq): behind every waiter of
   * its priority or higher, as when it came. It is taken for gone at `goneAt` unless it asks again.
   * A second record of the same holder's checkout is not added (null).
   */
  restore(s: StoredWaiter, goneAt: number): Waiter | null {
    const key = waiterKey(s.req);
    if (this.byKey.has(key)) return null;
    this.seq = Math.max(this.seq, s.seq);
    const w: Waiter = { req: { ...s.req }, priority: s.priority, seq: s.seq, since: s.since, deadline: s.deadline, goneAt, granting: false, told: 0 };
    this.insert(w);
    return w;
  }

  /** Adds a waiter in its place (after every waiter of its priority or higher); an existing one keeps its place. */
  add(req: CheckoutRequest, priority: number, now: number, deadline: number): Waiter {
    const key = waiterKey(req);
    const old = this.byKey.get(key);
    if (old) {
      old.req = { ...req };
      old.deadline = deadline;
      old.goneAt = null;
      return old;
    }
    const w: Waiter = { req: { ...req }, priority, seq: ++this.seq, since: now, deadline, goneAt: null, granting: false, told: 0 };
    this.insert(w);
    return w;
  }

  private insert(w: Waiter): void {
    let list = this.byFeature.get(w.req.feature);
    if (!list) this.byFeature.set(w.req.feature, (list = []));
    let i = list.length;
    while (i > 0 && list[i - 1]!.priority < w.priority) i--;
    list.splice(i, 0, w);
    this.byKey.set(waiterKey(w.req), w);
  }

  remove(w: Waiter): void {
    const key = waiterKey(w.req);
    if (this.byKey.get(key) !== w) return;
    this.byKey.delete(key);
    const list = this.byFeature.get(w.req.feature);
    if (!list) return;
    const i = list.indexOf(w);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byFeature.delete(w.req.feature);
  }

  /** 1-based place among the waiters of its feature not being granted. */
  position(w: Waiter): number {
    let n = 0;
    for (const x of this.of(w.req.feature)) {
      if (x.granting) continue;
      n++;
      if (x === w) return n;
    }
    return 0;
  }

  /** Every waiter of a client (its last will came). */
  ofClient(clientId: string): Waiter[] {
    const out: Waiter[] = [];
    for (const w of this.byKey.values()) if (w.req.clientId === clientId) out.push(w);
    return out;
  }

  /** Waiters past their deadline, or gone longer than the grace. */
  due(now: number, graceMs: number): Array<{ w: Waiter; why: 'deadline' | 'gone' }> {
    const out: Array<{ w: Waiter; why: 'deadline' | 'gone' }> = [];
    for (const w of this.byKey.values()) {
      if (w.granting) continue;
      if (w.goneAt !== null && w.goneAt + graceMs <= now) out.push({ w, why: 'gone' });
      else if (w.deadline <= now) out.push({ w, why: 'deadline' });
    }
    return out;
  }

  /** The clock stepped by deltaMs: each wait keeps its real length (docs/threat-model.md, "Clock steps"). */
  shift(deltaMs: number): void {
    for (const w of this.byKey.values()) {
      w.since += deltaMs;
      w.deadline += deltaMs;
      if (w.goneAt !== null) w.goneAt += deltaMs;
    }
  }

  clear(): void {
    this.byFeature.clear();
    this.byKey.clear();
  }
}
