/**
 * Usage history (issue 14, docs/history.md): an event sink (src/core/events.ts) that keeps
 *   - per feature per minute a usage row: seat-time leased, borrowed and held (time-weighted, in
 *     seat-milliseconds), the peak held in the minute, the licensed seats, the time at the limit,
 *     grants and denials by code; and
 *   - per lease and per borrow a session record (who, where, what, when, how it ended), written in
 *     the same batch as the lease's or borrow's end;
 *   - per minute the denials themselves (feature, user, host, code), so a report can tell a true
 *     denial (no grant followed) from one a retry turned into a seat.
 * Pure: time comes with the events and with `flush(now)`, which the daemon's timer calls; the
 * records are `rec.put` mutations of the 'history' space. Roll-ups (minutes to hours to days) and
 * retention are planned here (`rollupPlan`, `mergeRows`) and run by src/history/history.ts.
 */
import type { SeatEvent } from './events.ts';
import type { Borrow, Lease, Mutation } from './model.ts';

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** The usage of one feature over one period (a minute, an hour or a day). Times in ms since the epoch. */
export interface UsageRow {
  feature: string;
  /** Start of the period. */
  t: number;
  /** Length of the period: MINUTE, HOUR or DAY. */
  span: number;
  /** How much of the period licd was running and counting, ms (a minute licd started or stopped in is partial). */
  cov: number;
  /** Seat-milliseconds leased (a seat held for the whole minute adds 60000). */
  leasedMs: number;
  /** Seat-milliseconds borrowed. */
  borrowedMs: number;
  /** Seat-milliseconds held (leased + borrowed). */
  heldMs: number;
  /** The most seats held (leased + borrowed) at any moment of the period. */
  peak: number;
  /** The licensed seats (the most during the period). */
  licensed: number;
  /** Milliseconds during which every licensed seat was held (held >= licensed > 0). */
  atLimitMs: number;
  /** New leases and borrows granted. */
  grants: number;
  /** Refused checkouts and borrows, by error code. */
  denials: Record<string, number>;
  // Queue time (docs/policy.md, "Queueing"); absent when nobody waited in the period (and in rows of older versions).
  /** The most checkouts waiting for a seat at any moment of the period. */
  waitPeak?: number;
  /** Waiter-milliseconds: time-weighted, each waiting checkout adds the milliseconds it waited within the period. */
  waitingMs?: number;
  /** Waits that ended in the period (with a seat or without). */
  waits?: number;
  /** Of those, the waits that ended with a seat. */
  waitsServed?: number;
  /** The whole length of the waits that ended in the period, ms (a wait that began earlier counts whole). */
  waitedMs?: number;
  /** The longest of them, ms. */
  waitMaxMs?: number;
}

/** One lease or borrow, from its grant to its end. */
export interface SessionRecord {
  kind: 'lease' | 'borrow';
  id: string;
  feature: string;
  user: string;
  host: string;
  count: number;
  start: number;
  /** null: still held (open sessions come from the seat table, never from the store). */
  end: number | null;
  /** How it ended: a lease's reason (checkin, expired, client-gone, revoked, license-reduced), a borrow's (returned, expired). */
  how: string;
  /** Borrows: whether its token was ever renewed (or refreshed) after the first. */
  renewed?: boolean;
  /** Borrows: marked lost by an admin (the seat stayed reserved until its end). */
  lost?: boolean;
  /** Leases: how long its checkout waited in the queue before the grant, ms (absent: it did not wait). */
  waitedMs?: number;
}

/** A wait in a feature's queue that ended without a seat (a wait that got one is in its lease's session record). */
export interface WaitRecord {
  feature: string;
  user: string;
  host: string;
  count: number;
  /** When it began to wait, and when it left. */
  start: number;
  end: number;
  /** Why it left: timeout, gone, cancelled or refused (the queue.left event's reason). */
  how: string;
  /** refused: the code of the refusal. */
  code?: string;
}

/** Refusals of one user on one host for one feature with one code, within one minute. */
export interface DenialRecord {
  feature: string;
  user: string;
  host: string;
  code: string;
  /** Seats asked (the largest ask of the minute). */
  count: number;
  /** How many refusals. */
  n: number;
  /** The first and the last in the minute. */
  first: number;
  last: number;
  /** checkout or borrow. */
  what: 'checkout' | 'borrow';
}

/** Keys of the 'history' record space (docs/history.md). Times are 13-digit zero-padded ms, so keys sort by time. */
export const KEYS = {
  minute: 'm!',
  hour: 'h!',
  day: 'd!',
  session: 's!',
  denial: 'x!',
  wait: 'w!',
} as const;

export const t13 = (ms: number): string => String(Math.max(0, Math.floor(ms))).padStart(13, '0');
export const rowPrefix = (span: number): string => (span === MINUTE ? KEYS.minute : span === HOUR ? KEYS.hour : KEYS.day);
export const rowKey = (r: Pick<UsageRow, 'span' | 't' | 'feature'>): string => `${rowPrefix(r.span)}${t13(r.t)}!${r.feature}`;
export const sessionKey = (s: SessionRecord): string => `${KEYS.session}${t13(s.end ?? 0)}!${s.kind === 'lease' ? 'l' : 'b'}!${s.id}`;
/** The time a key of any kind starts with (its 13 digits after the prefix). */
export const keyTime = (key: string): number => Number(key.slice(2, 15));

export function sessionOfLease(l: Lease, end: number | null, how: string): SessionRecord {
  // One literal shape, the optional field set after (a spread of a conditional object costs a
  // copy on every check-in).
  const s: SessionRecord = { kind: 'lease', id: l.id, feature: l.feature, user: l.user, host: l.host, count: l.count, start: l.since, end, how };
  if (l.waitedMs !== undefined) s.waitedMs = l.waitedMs;
  return s;
}

export function sessionOfBorrow(b: Borrow, end: number | null, how: string): SessionRecord {
  return {
    kind: 'borrow',
    id: b.id,
    feature: b.feature,
    user: b.user,
    host: b.hostName,
    count: b.count,
    start: b.since,
    end,
    how,
    renewed: b.tokenIssuedAt > b.since,
    ...(b.lost ? { lost: true } : {}),
  };
}

interface Counter {
  feature: string;
  /** Start of the minute being counted. */
  minute: number;
  /** Counted up to here. */
  last: number;
  leased: number;
  borrowed: number;
  licensed: number;
  /** Checkouts waiting for a seat now. */
  waiting: number;
  row: UsageRow;
}

export interface HistorySinkOptions {
  /** The licensed seats of a feature now (0: not licensed). */
  licensed: (feature: string) => number;
  /** When counting starts (the daemon's start). */
  now: number;
  /** Tells denial records of this run from those of an earlier run in the same minute (any short string). */
  run?: string;
  /** The most denial records kept per minute (a client looping on a refusal adds one, not thousands). */
  maxDenialsPerMinute?: number;
  /**
   * A gap longer than this between two looks is not counted but starts a new row (the daemon looks
   * every few seconds, so a longer gap is a clock step not yet absorbed, or a suspended machine).
   * Unset: every gap is counted minute by minute (tests that feed a month of events).
   */
  maxGapMs?: number;
}

/**
 * Counts seats per feature per minute, and turns lease and borrow ends into session records.
 * Call `seed` at start with the seats restored (so they count from the first minute), `flush(now)`
 * on a timer (returns the rows of the minutes that closed) and `flush(now, true)` at stop.
 */
export class HistorySink {
  private readonly counters = new Map<string, Counter>();
  /** Rows of closed minutes, waiting for the next flush. */
  private readonly closed: UsageRow[] = [];
  /** Records a flush could not write, tried again at the next. */
  private readonly retry: Mutation[] = [];
  private readonly denials = new Map<string, DenialRecord & { minute: number }>();
  private readonly maxDenials: number;
  private readonly run: string;
  private denialSeq = 0;
  private waitSeq = 0;
  private denialsDropped = 0;

  constructor(private readonly o: HistorySinkOptions) {
    this.maxDenials = o.maxDenialsPerMinute ?? 1000;
    this.run = o.run ?? o.now.toString(36);
  }

  /** The seats held (and the checkouts waiting) when licd starts, restored from the database: counted from now, no gap. */
  seed(leases: readonly Lease[], borrows: readonly Borrow[], features: readonly string[], now: number, waiting: ReadonlyArray<{ feature: string }> = []): void {
    for (const f of features) this.counter(f, now);
    for (const l of leases) this.counter(l.feature, now).leased += l.count;
    for (const b of borrows) this.counter(b.feature, now).borrowed += b.count;
    for (const w of waiting) this.counter(w.feature, now).waiting++;
    for (const c of this.counters.values()) {
      c.row.peak = Math.max(c.row.peak, c.leased + c.borrowed);
      if (c.waiting > 0) c.row.waitPeak = Math.max(c.row.waitPeak ?? 0, c.waiting);
    }
  }

  /**
   * Rows of the current minute written by an earlier run (it stopped within this minute): added
   * to this run's counts, so the minute's row is whole. Rows of other minutes are ignored.
   */
  resume(rows: readonly UsageRow[]): void {
    for (const r of rows) {
      const c = this.counters.get(r.feature);
      if (!c || r.span !== MINUTE || r.t !== c.minute) continue;
      c.row = mergeRows([c.row, r]);
    }
  }

  prepare(events: readonly SeatEvent[]): Mutation[] {
    const out: Mutation[] = [];
    for (const e of events) {
      let s: SessionRecord | null = null;
      if (e.type === 'lease.ended') s = sessionOfLease(e.lease, e.at, e.reason);
      else if (e.type === 'borrow.ended') s = sessionOfBorrow(e.borrow, e.at, e.reason);
      if (s) out.push({ kind: 'rec.put', space: 'history', key: sessionKey(s), value: s });
      // A wait that ended without a seat: its record goes with the change that ended it.
      if (e.type === 'queue.left' && e.reason !== 'granted') {
        const w: WaitRecord = { feature: e.feature, user: e.user, host: e.host, count: e.count, start: e.since, end: e.at, how: e.reason, ...(e.code !== undefined ? { code: e.code } : {}) };
        out.push({ kind: 'rec.put', space: 'history', key: `${KEYS.wait}${t13(e.at)}!${this.run}!${String(++this.waitSeq).padStart(9, '0')}`, value: w });
      }
    }
    return out;
  }

  settle(events: readonly SeatEvent[], ok: boolean): void {
    if (!ok) return;
    for (const e of events) {
      switch (e.type) {
        case 'lease.granted':
          this.change(e.lease.feature, e.at, e.lease.count, 0, true);
          break;
        case 'lease.ended':
          this.change(e.lease.feature, e.at, -e.lease.count, 0, false);
          break;
        case 'borrow.granted':
          this.change(e.borrow.feature, e.at, 0, e.borrow.count, true);
          break;
        case 'borrow.ended':
          this.change(e.borrow.feature, e.at, 0, -e.borrow.count, false);
          break;
        case 'queue.joined': {
          const c = this.advance(e.feature, e.at);
          c.waiting++;
          c.row.waitPeak = Math.max(c.row.waitPeak ?? 0, c.waiting);
          break;
        }
        case 'queue.left': {
          const c = this.advance(e.feature, e.at);
          c.waiting = Math.max(0, c.waiting - 1);
          const r = c.row;
          r.waits = (r.waits ?? 0) + 1;
          if (e.reason === 'granted') r.waitsServed = (r.waitsServed ?? 0) + 1;
          r.waitedMs = (r.waitedMs ?? 0) + e.waitedMs;
          r.waitMaxMs = Math.max(r.waitMaxMs ?? 0, e.waitedMs);
          break;
        }
        case 'license.changed':
          for (const f of new Set([...this.counters.keys(), ...e.features])) {
            const c = this.advance(f, e.at);
            c.licensed = this.o.licensed(f);
            c.row.licensed = Math.max(c.row.licensed, c.licensed);
          }
          break;
        default:
          break;
      }
    }
  }

  note(e: SeatEvent): void {
    if (e.type !== 'checkout.denied' && e.type !== 'borrow.denied') return;
    // A name nobody licenses (a typo, or a client making names up) gets a denial record but no
    // rows of its own: the counters stay as many as the features.
    if (this.counters.has(e.feature) || this.o.licensed(e.feature) > 0) {
      const c = this.advance(e.feature, e.at);
      c.row.denials[e.code] = (c.row.denials[e.code] ?? 0) + 1;
    }
    const what = e.type === 'checkout.denied' ? 'checkout' : 'borrow';
    const count = e.type === 'checkout.denied' ? e.count : 1;
    const minute = floorTo(e.at, MINUTE);
    const k = `${minute}\u0000${what}\u0000${e.feature}\u0000${e.user}\u0000${e.host}\u0000${e.code}`;
    const d = this.denials.get(k);
    if (d) {
      d.n++;
      d.last = e.at;
      d.count = Math.max(d.count, count);
    } else if (this.denials.size < this.maxDenials) {
      this.denials.set(k, { feature: e.feature, user: e.user, host: e.host, code: e.code, count, n: 1, first: e.at, last: e.at, what, minute });
    } else this.denialsDropped++;
  }

  /**
   * The records to write now: rows of the minutes closed by `now` and the denials of those
   * minutes. `final` (at stop) also writes the minute in progress as a partial row.
   */
  flush(now: number, final = false): Mutation[] {
    for (const f of [...this.counters.keys()]) this.advance(f, now);
    const out: Mutation[] = this.retry.splice(0);
    for (const r of this.closed.splice(0)) out.push({ kind: 'rec.put', space: 'history', key: rowKey(r), value: r });
    if (final) for (const c of this.counters.values()) if (c.row.cov > 0 || c.row.grants > 0 || Object.keys(c.row.denials).length > 0) out.push({ kind: 'rec.put', space: 'history', key: rowKey(c.row), value: { ...c.row } });
    const open = floorTo(now, MINUTE);
    for (const [k, d] of this.denials) {
      if (!final && d.minute >= open) continue;
      this.denials.delete(k);
      const { minute, ...rec } = d;
      out.push({ kind: 'rec.put', space: 'history', key: `${KEYS.denial}${t13(minute)}!${this.run}!${String(++this.denialSeq).padStart(6, '0')}`, value: rec });
    }
    return out;
  }

  /** The rows not written yet (minutes closed since the last flush, and the minute in progress), for a report. */
  pending(now: number): UsageRow[] {
    for (const f of [...this.counters.keys()]) this.advance(f, now);
    return [...this.closed.map((r) => ({ ...r, denials: { ...r.denials } })), ...[...this.counters.values()].filter((c) => c.row.cov > 0).map((c) => ({ ...c.row, denials: { ...c.row.denials } }))];
  }

  /** The denials not written yet. */
  pendingDenials(): DenialRecord[] {
    return [...this.denials.values()].map(({ minute: _m, ...rec }) => rec);
  }

  /**
   * Records of a flush that could not be written (a full disk) are given back and written with the
   * next flush. At most 100,000 wait (about 70 days of one feature's minutes); the oldest go first.
   */
  giveBack(m: readonly Mutation[]): void {
    this.retry.unshift(...m);
    if (this.retry.length > 100_000) this.retry.splice(0, this.retry.length - 100_000);
  }

  /** Denial records not kept because a minute had more than maxDenialsPerMinute (counted in the rows all the same). */
  get dropped(): number {
    return this.denialsDropped;
  }

  /** Seats held (and checkouts waiting) now per feature, as counted (for tests and status). */
  held(feature: string): { leased: number; borrowed: number; waiting: number } {
    const c = this.counters.get(feature);
    return { leased: c?.leased ?? 0, borrowed: c?.borrowed ?? 0, waiting: c?.waiting ?? 0 };
  }

  private change(feature: string, at: number, dLeased: number, dBorrowed: number, grant: boolean): void {
    const c = this.advance(feature, at);
    c.leased = Math.max(0, c.leased + dLeased);
    c.borrowed = Math.max(0, c.borrowed + dBorrowed);
    if (grant) c.row.grants++;
    c.row.peak = Math.max(c.row.peak, c.leased + c.borrowed);
  }

  private counter(feature: string, now: number): Counter {
    let c = this.counters.get(feature);
    if (!c) {
      const licensed = this.o.licensed(feature);
      const minute = floorTo(now, MINUTE);
      c = { feature, minute, last: now, leased: 0, borrowed: 0, licensed, waiting: 0, row: emptyRow(feature, minute, MINUTE, licensed) };
      this.counters.set(feature, c);
    }
    return c;
  }

  /**
   * The system clock stepped forward by stepMs (the daemon moved every stored time by it): the
   * step is not time that passed, so nothing is counted for it. Each feature is counted up to the
   * moment before the step and goes on from now in a new row; a step back is left to advance(),
   * which counts nothing until the clock passes the last counted moment again.
   */
  shift(stepMs: number, now: number): void {
    if (stepMs <= 0) return;
    for (const feature of [...this.counters.keys()]) {
      const c = this.advance(feature, now - stepMs);
      this.restartAt(c, now);
    }
  }

  /** Closes the counter's row as it is and starts counting again at `at` (nothing between). */
  private restartAt(c: Counter, at: number): void {
    const minute = floorTo(at, MINUTE);
    if (minute !== c.minute) {
      if (c.licensed > 0 || c.row.heldMs > 0 || c.row.grants > 0 || Object.keys(c.row.denials).length > 0) this.closed.push(c.row);
      c.minute = minute;
      c.row = emptyRow(c.feature, minute, MINUTE, c.licensed);
      c.row.peak = c.leased + c.borrowed;
      if (c.waiting > 0) c.row.waitPeak = c.waiting;
    }
    c.last = Math.max(c.last, at);
  }

  /** Counts a feature's seats up to `to`, closing every minute passed on the way. */
  private advance(feature: string, to: number): Counter {
    const c = this.counter(feature, to);
    if (to <= c.last) return c;
    if (this.o.maxGapMs !== undefined && to - c.last > this.o.maxGapMs) {
      this.restartAt(c, to);
      return c;
    }
    while (to >= c.minute + MINUTE) {
      this.accrue(c, c.minute + MINUTE);
      // A feature no longer licensed and idle has no rows.
      if (c.licensed > 0 || c.row.heldMs > 0 || c.row.grants > 0 || Object.keys(c.row.denials).length > 0) this.closed.push(c.row);
      c.minute += MINUTE;
      c.row = emptyRow(feature, c.minute, MINUTE, c.licensed);
      c.row.peak = c.leased + c.borrowed;
      if (c.waiting > 0) c.row.waitPeak = c.waiting;
    }
    this.accrue(c, to);
    return c;
  }

  private accrue(c: Counter, to: number): void {
    const dt = to - c.last;
    if (dt <= 0) return;
    const held = c.leased + c.borrowed;
    c.row.cov += dt;
    c.row.leasedMs += c.leased * dt;
    c.row.borrowedMs += c.borrowed * dt;
    c.row.heldMs += held * dt;
    if (c.licensed > 0 && held >= c.licensed) c.row.atLimitMs += dt;
    if (c.waiting > 0) c.row.waitingMs = (c.row.waitingMs ?? 0) + c.waiting * dt;
    c.last = to;
  }
}

export function floorTo(ms: number, span: number): number {
  return Math.floor(ms / span) * span;
}

export function emptyRow(feature: string, t: number, span: number, licensed = 0): UsageRow {
  return { feature, t, span, cov: 0, leasedMs: 0, borrowedMs: 0, heldMs: 0, peak: 0, licensed, atLimitMs: 0, grants: 0, denials: {} };
}

/** Rows of one feature summed into one (the span and start of the first): seat-times, grants and denials add, peaks and licensed take the most. */
export function mergeRows(rows: readonly UsageRow[], into?: { t: number; span: number }): UsageRow {
  const first = rows[0]!;
  const out = emptyRow(first.feature, into?.t ?? first.t, into?.span ?? first.span);
  for (const r of rows) {
    out.cov += r.cov;
    out.leasedMs += r.leasedMs;
    out.borrowedMs += r.borrowedMs;
    out.heldMs += r.heldMs;
    out.peak = Math.max(out.peak, r.peak);
    out.licensed = Math.max(out.licensed, r.licensed);
    out.atLimitMs += r.atLimitMs;
    out.grants += r.grants;
    for (const [code, n] of Object.entries(r.denials)) out.denials[code] = (out.denials[code] ?? 0) + n;
    if (r.waitPeak !== undefined) out.waitPeak = Math.max(out.waitPeak ?? 0, r.waitPeak);
    if (r.waitMaxMs !== undefined) out.waitMaxMs = Math.max(out.waitMaxMs ?? 0, r.waitMaxMs);
    for (const k of ['waitingMs', 'waits', 'waitsServed', 'waitedMs'] as const) if (r[k] !== undefined) out[k] = (out[k] ?? 0) + r[k]!;
  }
  return out;
}

/** Retention settings (config section `history`, docs/history.md). */
export interface HistoryRetention {
  /** Minute rows older than this are rolled up into hour rows. */
  minuteDays: number;
  /** Hour rows older than this are rolled up into day rows. */
  hourDays: number;
  /** Day rows older than this are dropped. */
  dayDays: number;
  /** Session and denial records older than this (by their end) are dropped. */
  sessionDays: number;
  /** The most records kept in all; above it the oldest go first. */
  maxRows: number;
}

export const defaultRetention: HistoryRetention = { minuteDays: 7, hourDays: 90, dayDays: 1825, sessionDays: 400, maxRows: 1_000_000 };

/**
 * One step of a roll-up: the given rows of one resolution (all older than its cutoff, in key order)
 * grouped into rows of the next (hour or day) and merged with what is already stored there
 * (`existing`, by key). The mutations delete the source rows and put the merged ones in one batch,
 * so seat-hours, denials and grants are the same before and after.
 */
export function rollup(source: ReadonlyArray<[string, UsageRow]>, span: number, existing: ReadonlyMap<string, UsageRow>): Mutation[] {
  const groups = new Map<string, UsageRow[]>();
  const out: Mutation[] = [];
  for (const [key, r] of source) {
    const target = { feature: r.feature, t: floorTo(r.t, span), span };
    const k = rowKey(target);
    let g = groups.get(k);
    if (!g) {
      g = [];
      const had = existing.get(k);
      if (had) g.push(had);
      groups.set(k, g);
    }
    g.push(r);
    out.push({ kind: 'rec.del', space: 'history', key });
  }
  for (const [k, g] of groups) {
    const merged = mergeRows(g, { t: floorTo(g[g.length - 1]!.t, span), span });
    out.push({ kind: 'rec.put', space: 'history', key: k, value: merged });
  }
  return out;
}

/**
 * Session records of the leases and borrows whose end passed while licd was stopped (dropped at
 * start, with no event): they end at their last expiry, as expired. Written in the start batch.
 */
export function sessionsEndedWhileStopped(leases: readonly Lease[], borrows: readonly Borrow[]): Mutation[] {
  const out: Mutation[] = [];
  for (const l of leases) {
    const s = sessionOfLease(l, l.expiresAt, l.disconnectedAt !== null ? 'client-gone' : 'expired');
    out.push({ kind: 'rec.put', space: 'history', key: sessionKey(s), value: s });
  }
  for (const b of borrows) {
    const s = sessionOfBorrow(b, b.expiresAt, 'expired');
    out.push({ kind: 'rec.put', space: 'history', key: sessionKey(s), value: s });
  }
  return out;
}
