/**
 * The usage history part (docs/history.md): wires the pure sink (src/core/history.ts) to the
 * store, flushes closed minutes on a timer, rolls old rows up and drops what retention says (off
 * the request path, in small batches), reads the records of a period for the reports
 * (src/core/reports.ts) and serves them as the admin ops report.*.
 */
import { LicdError } from '../core/errors.ts';
import {
  DAY,
  HOUR,
  KEYS,
  MINUTE,
  HistorySink,
  floorTo,
  keyTime,
  rollup,
  rowPrefix,
  t13,
  defaultRetention,
  sessionOfBorrow,
  sessionOfLease,
  type DenialRecord,
  type HistoryRetention,
  type SessionRecord,
  type UsageRow,
  type WaitRecord,
} from '../core/history.ts';
import type { Borrow, Lease, Mutation } from '../core/model.ts';
import type { Clock, StateStore } from '../core/ports.ts';
import {
  adviceReport,
  borrowsReport,
  defaultWorkingHours,
  denialsReport,
  describeWorkingHours,
  seriesReport,
  usageReport,
  usersReport,
  type LocalTime,
  type ReportBy,
  type ReportInput,
  type WorkingHours,
} from '../core/reports.ts';
import type { LicenseService, Log } from '../core/service.ts';
import type { Fields } from '../core/validate.ts';

export interface HistoryConfig {
  enabled: boolean;
  retention: HistoryRetention;
  /** A denial not followed by a grant to the same user within this many minutes is a true denial. */
  trueDenialMinutes: number;
  workingHours: WorkingHours;
  advice: { days: number; atLimitPercent: number; minCoveragePercent: number };
  /** Groups for the users report: name -> users. null: the groups of the borrow limits. */
  groups: Record<string, string[]> | null;
  /** The most rows a report answer lists (the rest is counted in `more`). */
  maxReportRows: number;
}

export const defaultHistoryConfig: HistoryConfig = {
  enabled: true,
  retention: defaultRetention,
  trueDenialMinutes: 10,
  workingHours: defaultWorkingHours,
  advice: { days: 30, atLimitPercent: 20, minCoveragePercent: 50 },
  groups: null,
  maxReportRows: 1000,
};

/** The most records one report reads of each kind (a bound on memory; `truncated` says when hit). */
const READ_CAP = { rows: 400_000, sessions: 200_000, denials: 100_000 };
/** Records moved or deleted per roll-up batch, and batches per round. */
const BATCH = 1000;
const BATCHES_PER_ROUND = 10;

export const REPORT_OPS = ['report.usage', 'report.users', 'report.denials', 'report.borrows', 'report.advice', 'report.series'] as const;

/** The process's local time zone (TZ), for working hours. */
export const processLocalTime: LocalTime = (ms) => {
  const d = new Date(ms);
  return { weekday: ((d.getDay() + 6) % 7) + 1, minute: d.getHours() * 60 + d.getMinutes() };
};

export interface UsageHistoryDeps {
  service: LicenseService;
  store: StateStore;
  clock: Clock;
  log: Log;
  config: HistoryConfig;
  /** Licensed seats of a feature now (0: not licensed). */
  licensed: (feature: string) => number;
  /** The seats held now (open sessions of a report). */
  leases: () => Lease[];
  borrows: () => Borrow[];
  /** The checkouts waiting now (restored from the database at start: counted from the first minute). */
  waiting?: () => Array<{ feature: string; user: string; host: string; count: number; since: number }>;
  /** The groups of the borrow limits (used when config.groups is null). */
  limitGroups: () => Record<string, string[]>;
  localTime?: LocalTime;
  /** A gap longer than this between two looks is not counted (HistorySinkOptions.maxGapMs); the daemon gives an hour. */
  maxGapMs?: number;
}

export class UsageHistory {
  readonly sink: HistorySink;
  private flushTimer: NodeJS.Timeout | null = null;
  private maintainTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private maintaining = false;
  private stopped = false;
  /** Records in the history space, about (counted at start, then kept up to date). */
  private count: number | null = null;
  private readonly localTime: LocalTime;

  constructor(private readonly d: UsageHistoryDeps) {
    this.sink = new HistorySink({ licensed: d.licensed, now: d.clock.now(), ...(d.maxGapMs !== undefined ? { maxGapMs: d.maxGapMs } : {}) });
    this.localTime = d.localTime ?? processLocalTime;
    const run = (op: (f: Fields, now: number) => Promise<unknown>) => async (ctx: { now: number }, f: Fields) => {
      if (!this.d.config.enabled) throw new LicdError('CONFIG_INVALID', 'usage history is off on this server (history.enabled is false in its config); set it to true and restart licd to keep history', { field: 'history.enabled' });
      return op(f, ctx.now);
    };
    d.service.register('report.usage', true, run((f, now) => this.usage(f, now)));
    d.service.register('report.users', true, run((f, now) => this.byReport(f, now, 'users')));
    d.service.register('report.denials', true, run((f, now) => this.byReport(f, now, 'denials')));
    d.service.register('report.borrows', true, run((f, now) => this.byReport(f, now, 'borrows')));
    d.service.register('report.advice', true, run((f, now) => this.advice(f, now)));
    d.service.register('report.series', true, run((f, now) => this.series(f, now)));
  }

  /**
   * Starts counting with the seats held now (restored at start: counted from the first minute) and
   * the rows an earlier run wrote for this minute, then the timers: a flush every 5 s (a minute's
   * row is written within seconds of its end) and a round of roll-ups every minute.
   */
  async start(features: string[], opts: { flushMs?: number; maintainMs?: number; timers?: boolean } = {}): Promise<void> {
    if (!this.d.config.enabled) return;
    const now = this.d.clock.now();
    this.sink.seed(this.d.leases(), this.d.borrows(), features, now, this.d.waiting?.() ?? []);
    const minute = floorTo(now, MINUTE);
    const partial: UsageRow[] = [];
    for await (const [, v] of this.d.store.scan('history', { gte: `${KEYS.minute}${t13(minute)}!`, lt: `${KEYS.minute}${t13(minute + 1)}` })) partial.push(v as UsageRow);
    this.sink.resume(partial);
    if (opts.timers === false) return;
    this.flushTimer = setInterval(() => void this.flush(), opts.flushMs ?? 5000);
    this.flushTimer.unref?.();
    this.maintainTimer = setInterval(() => void this.maintain(), opts.maintainMs ?? 60_000);
    this.maintainTimer.unref?.();
  }

  /** Writes the rows of the minutes closed so far (all of them, the current one partial, when final). */
  async flush(final = false): Promise<void> {
    if (!this.d.config.enabled) return;
    while (this.flushing) await this.flushing;
    const m = this.sink.flush(this.d.clock.now(), final);
    if (m.length === 0) return;
    this.flushing = (async () => {
      try {
        // Through the service, so a store recovering from a failed write waits for it (idle()).
        await this.d.service.commit({ result: null, mutations: m, undo: () => {} }, []);
        if (this.count !== null) this.count += m.length;
      } catch (e) {
        // Kept for the next flush: a full disk loses no minute that licd saw.
        this.sink.giveBack(m);
        this.d.log.debug('usage history not written yet; tried again at the next flush', { error: String(e) });
      } finally {
        this.flushing = null;
      }
    })();
    await this.flushing;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.maintainTimer) clearInterval(this.maintainTimer);
    await this.flush(true);
  }

  /**
   * One round of upkeep, a few small batches: minute rows past retention.minuteDays become hour
   * rows, hour rows past hourDays day rows; day rows past dayDays, and sessions and denials past
   * sessionDays, are dropped; above maxRows the oldest records go. Returns what it did.
   */
  async maintain(now = this.d.clock.now()): Promise<{ rolled: number; dropped: number }> {
    if (!this.d.config.enabled || this.maintaining) return { rolled: 0, dropped: 0 };
    this.maintaining = true;
    let rolled = 0;
    let dropped = 0;
    try {
      const r = this.d.config.retention;
      if (this.count === null) this.count = await this.countRecords();
      for (let i = 0; i < BATCHES_PER_ROUND && !this.stopped; i++) {
        let n = await this.rollOnce(MINUTE, HOUR, floorTo(now - r.minuteDays * DAY, HOUR));
        if (n === 0) n = await this.rollOnce(HOUR, DAY, floorTo(now - r.hourDays * DAY, DAY));
        rolled += n;
        let x = 0;
        if (n === 0) {
          x = await this.dropOlder(KEYS.day, now - r.dayDays * DAY);
          if (x === 0) x = await this.dropOlder(KEYS.session, now - r.sessionDays * DAY);
          if (x === 0) x = await this.dropOlder(KEYS.denial, now - r.sessionDays * DAY);
          if (x === 0) x = await this.dropOlder(KEYS.wait, now - r.sessionDays * DAY);
          if (x === 0 && this.count > r.maxRows) x = await this.dropOldest(Math.min(BATCH, this.count - r.maxRows));
        }
        dropped += x;
        if (n === 0 && x === 0) break;
        // Let requests through between batches.
        await new Promise((res) => setImmediate(res));
      }
    } catch (e) {
      this.d.log.warn('usage history upkeep failed; tried again in a minute', { error: String(e) });
    } finally {
      this.maintaining = false;
    }
    if (rolled + dropped > 0) this.d.log.debug('usage history upkeep', { rolled, dropped, records: this.count });
    return { rolled, dropped };
  }

  /** Records kept now (about). */
  get records(): number | null {
    return this.count;
  }

  private async countRecords(): Promise<number> {
    let n = 0;
    let after = '';
    for (;;) {
      let k = 0;
      for await (const [key] of this.d.store.scan('history', { gte: after, limit: 5000 })) {
        if (key === after) continue;
        after = key;
        k++;
      }
      n += k;
      if (k < 4999) return n;
      await new Promise((res) => setImmediate(res));
    }
  }

  /** Rolls up to BATCH rows of `span` that start before `cutoff` into rows of `into`; the number moved. */
  private async rollOnce(span: number, into: number, cutoff: number): Promise<number> {
    const p = rowPrefix(span);
    const source: Array<[string, UsageRow]> = [];
    for await (const [k, v] of this.d.store.scan('history', { gte: p, lt: `${p}${t13(cutoff)}`, limit: BATCH })) source.push([k, v as UsageRow]);
    if (source.length === 0) return 0;
    const q = rowPrefix(into);
    const lo = floorTo(source[0]![1].t, into);
    const hi = floorTo(source[source.length - 1]![1].t, into) + into;
    const existing = new Map<string, UsageRow>();
    for await (const [k, v] of this.d.store.scan('history', { gte: `${q}${t13(lo)}`, lt: `${q}${t13(hi)}` })) existing.set(k, v as UsageRow);
    const m = rollup(source, into, existing);
    await this.d.store.commit(m);
    const puts = m.filter((x) => x.kind === 'rec.put' && !existing.has(x.key)).length;
    if (this.count !== null) this.count += puts - source.length;
    return source.length;
  }

  private async dropOlder(prefix: string, before: number): Promise<number> {
    const keys: string[] = [];
    for await (const [k] of this.d.store.scan('history', { gte: prefix, lt: `${prefix}${t13(before)}`, limit: BATCH })) keys.push(k);
    return this.del(keys);
  }

  /** Over the size cap: the oldest records first, whatever their kind. */
  private async dropOldest(n: number): Promise<number> {
    let oldest: { prefix: string; t: number } | null = null;
    for (const prefix of [KEYS.day, KEYS.hour, KEYS.minute, KEYS.session, KEYS.denial, KEYS.wait]) {
      for await (const [k] of this.d.store.scan('history', { gte: prefix, lt: `${prefix}~`, limit: 1 })) {
        const t = keyTime(k);
        if (!oldest || t < oldest.t) oldest = { prefix, t };
      }
    }
    if (!oldest) return 0;
    const keys: string[] = [];
    for await (const [k] of this.d.store.scan('history', { gte: oldest.prefix, lt: `${oldest.prefix}~`, limit: n })) keys.push(k);
    return this.del(keys);
  }

  private async del(keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    await this.d.store.commit(keys.map((key): Mutation => ({ kind: 'rec.del', space: 'history', key })));
    if (this.count !== null) this.count = Math.max(0, this.count - keys.length);
    return keys.length;
  }

  /** Every record a report of [from, to) needs, with the minute in progress and the seats held now. */
  async read(from: number, to: number): Promise<ReportInput & { truncated: boolean }> {
    let truncated = false;
    const rows = new Map<string, UsageRow>();
    for (const p of [KEYS.minute, KEYS.hour, KEYS.day]) {
      for await (const [k, v] of this.d.store.scan('history', { gte: `${p}${t13(from)}`, lt: `${p}${t13(to)}`, limit: READ_CAP.rows })) rows.set(k, v as UsageRow);
      if (rows.size >= READ_CAP.rows) truncated = true;
    }
    // The minutes not written yet (closed, or in progress) replace what the store has for them.
    const now = this.d.clock.now();
    for (const r of this.sink.pending(now)) if (r.t >= from && r.t < to) rows.set(`${rowPrefix(r.span)}${t13(r.t)}!${r.feature}`, r);
    const sessions: SessionRecord[] = [];
    for await (const [, v] of this.d.store.scan('history', { gte: `${KEYS.session}${t13(from)}`, lt: `${KEYS.session}~`, limit: READ_CAP.sessions })) sessions.push(v as SessionRecord);
    if (sessions.length >= READ_CAP.sessions) truncated = true;
    for (const l of this.d.leases()) sessions.push(sessionOfLease(l, null, 'held'));
    for (const b of this.d.borrows()) sessions.push(sessionOfBorrow(b, null, 'held'));
    const denials: DenialRecord[] = [];
    for await (const [, v] of this.d.store.scan('history', { gte: `${KEYS.denial}${t13(floorTo(from, MINUTE))}`, lt: `${KEYS.denial}${t13(to)}`, limit: READ_CAP.denials })) denials.push(v as DenialRecord);
    if (denials.length >= READ_CAP.denials) truncated = true;
    denials.push(...this.sink.pendingDenials());
    // Waits that ended without a seat (by their end), and the waits going on now (counted up to `to`).
    const waits: WaitRecord[] = [];
    for await (const [, v] of this.d.store.scan('history', { gte: `${KEYS.wait}${t13(from)}`, lt: `${KEYS.wait}~`, limit: READ_CAP.sessions })) waits.push(v as WaitRecord);
    if (waits.length >= READ_CAP.sessions) truncated = true;
    for (const w of this.d.waiting?.() ?? []) waits.push({ feature: w.feature, user: w.user, host: w.host, count: w.count, start: w.since, end: now, how: 'waiting' });
    return { from, to, rows: [...rows.values()], sessions, denials, waits, groups: this.groups(), truncated };
  }

  private groups(): Record<string, string[]> {
    return this.d.config.groups ?? this.d.limitGroups();
  }

  private period(f: Fields, now: number, defaultDays: number): { from: number; to: number; limit: number } {
    const time = (name: string): number | undefined => {
      const s = f.optString(name, { max: 40 });
      if (s === undefined) return undefined;
      const ms = /^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d))?$/.test(s) ? Date.parse(s) : NaN;
      if (!Number.isFinite(ms)) f.fail(name, 'must be an ISO 8601 time in UTC or with an offset (2026-11-01T00:00:00Z) or a date (2026-11-01, UTC midnight)');
      return ms;
    };
    const to = time('to') ?? now;
    const from = time('from') ?? to - defaultDays * DAY;
    if (from >= to) f.fail('from', `must be before to (${new Date(to).toISOString()})`);
    if (to - from > 3660 * DAY) f.fail('from', 'must be at most 10 years before to');
    const limit = f.optInt('limit', { min: 1, max: 100_000 }) ?? this.d.config.maxReportRows;
    return { from, to, limit };
  }

  private by(f: Fields, allowed: readonly ReportBy[], dflt: ReportBy): ReportBy {
    const b = f.optString('by', { max: 16 });
    if (b === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(b)) f.fail('by', `must be one of ${allowed.join(', ')}`);
    return b as ReportBy;
  }

  private async usage(f: Fields, now: number) {
    const { from, to, limit } = this.period(f, now, 30);
    this.by(f, ['feature'], 'feature');
    const input = await this.read(from, to);
    const rows = usageReport(input);
    return { from: iso(from), to: iso(to), by: 'feature', rows: rows.slice(0, limit), more: Math.max(0, rows.length - limit), ...(input.truncated ? { truncated: true } : {}) };
  }

  /** Per feature per UTC day (default) or hour: the usage and denials over time (charts). */
  private async series(f: Fields, now: number) {
    const { from, to, limit } = this.period(f, now, 30);
    const by = f.optString('by', { max: 16 }) ?? 'day';
    if (by !== 'hour' && by !== 'day') f.fail('by', 'must be one of day, hour');
    if ((to - from) / (by === 'hour' ? HOUR : DAY) > 10_000) f.fail('from', `must be at most 10000 ${by}s before to: ask by day, or for a shorter period`);
    const input = await this.read(from, to);
    const rows = seriesReport(input, by === 'hour' ? HOUR : DAY);
    return { from: iso(from), to: iso(to), by, rows: rows.slice(0, limit), more: Math.max(0, rows.length - limit), ...(input.truncated ? { truncated: true } : {}) };
  }

  private async byReport(f: Fields, now: number, which: 'users' | 'denials' | 'borrows') {
    const { from, to, limit } = this.period(f, now, 30);
    const by = this.by(f, ['user', 'host', 'group', 'feature'], which === 'denials' ? 'feature' : 'user');
    const input = await this.read(from, to);
    const rows: unknown[] = which === 'users' ? usersReport(input, by) : which === 'denials' ? denialsReport(input, by, this.d.config.trueDenialMinutes) : borrowsReport(input, by);
    return {
      from: iso(from),
      to: iso(to),
      by,
      ...(which === 'denials' ? { trueDenialMinutes: this.d.config.trueDenialMinutes } : {}),
      rows: rows.slice(0, limit),
      more: Math.max(0, rows.length - limit),
      ...(input.truncated ? { truncated: true } : {}),
    };
  }

  private async advice(f: Fields, now: number) {
    const a = this.d.config.advice;
    // The period: `from` to `to` when given, else the advice.days before `to`.
    const { from, to, limit } = this.period(f, now, a.days);
    const days = (to - from) / DAY;
    const input = await this.read(from, to);
    const items = adviceReport(input, { ...a, days, trueDenialMinutes: this.d.config.trueDenialMinutes, workingHours: this.d.config.workingHours, localTime: this.localTime });
    return {
      from: iso(from),
      to: iso(to),
      days: Math.round(days * 10) / 10,
      workingHours: describeWorkingHours(this.d.config.workingHours),
      atLimitPercent: a.atLimitPercent,
      items: items.slice(0, limit),
      more: Math.max(0, items.length - limit),
      ...(input.truncated ? { truncated: true } : {}),
    };
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
