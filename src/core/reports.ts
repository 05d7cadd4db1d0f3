/**
 * Reports over the usage history (docs/history.md, "Reports"): pure functions of the rows,
 * session and denial records read for a period. Each figure's computation is described in the
 * doc; the admin ops report.* (src/history/history.ts) and licctl report call these.
 */
import { DAY, HOUR, MINUTE, floorTo, type DenialRecord, type SessionRecord, type UsageRow, type WaitRecord } from './history.ts';

export type ReportBy = 'user' | 'host' | 'group' | 'feature';

export interface WorkingHours {
  /** ISO weekdays that are working days: 1 Monday ... 7 Sunday. */
  days: number[];
  /** Minutes after local midnight: [start, end). */
  start: number;
  end: number;
}

export const defaultWorkingHours: WorkingHours = { days: [1, 2, 3, 4, 5], start: 9 * 60, end: 18 * 60 };

/** Where a moment falls in the server's local time (the adapter passes the process's time zone). */
export type LocalTime = (ms: number) => { weekday: number; minute: number };

export const utcTime: LocalTime = (ms) => {
  const d = new Date(ms);
  return { weekday: ((d.getUTCDay() + 6) % 7) + 1, minute: d.getUTCHours() * 60 + d.getUTCMinutes() };
};

export interface ReportInput {
  from: number;
  to: number;
  /** Usage rows of [from, to) (by their start), any resolution. */
  rows: readonly UsageRow[];
  /** Sessions that ended at or after `from`, and the open ones (end null, counted up to `to`). */
  sessions: readonly SessionRecord[];
  /** Denial records of [from, to). */
  denials: readonly DenialRecord[];
  /** Waits in a queue that ended without a seat at or after `from`, and the waits going on (end: now). */
  waits?: readonly WaitRecord[];
  /** Groups: name -> members (users). */
  groups: Readonly<Record<string, readonly string[]>>;
}

export interface AdviceSettings {
  /** The period advice looks back over, days (the report's `to` back). */
  days: number;
  /** A feature at its limit this share of working hours or more is short of seats, percent. */
  atLimitPercent: number;
  /** Below this share of the period covered by history, no advice is given for a feature, percent. */
  minCoveragePercent: number;
  /** A denial not followed by a grant to the same user within this many minutes is a true denial. */
  trueDenialMinutes: number;
  workingHours: WorkingHours;
  localTime: LocalTime;
}

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;
const hours = (ms: number): number => round(ms / HOUR, 3);

export interface UsageReportRow {
  feature: string;
  licensed: number;
  peak: number;
  /** Seat-hours held (leased + borrowed). */
  seatHours: number;
  leasedHours: number;
  borrowedHours: number;
  /** Seats held on average over the time covered. */
  averageSeats: number;
  atLimitHours: number;
  /** Share of the covered time at the limit, percent. */
  atLimitPercent: number;
  grants: number;
  denials: number;
  /** Hours of the period licd was counting. */
  coveredHours: number;
  /** Waits in the queue that ended in the period (docs/policy.md, "Queueing"), and of those the ones that got a seat. */
  waits: number;
  waitsServed: number;
  /** Their mean and longest length, seconds (0 without waits). */
  waitMeanSeconds: number;
  waitMaxSeconds: number;
  /** The most checkouts waiting at once. */
  waitPeak: number;
  /** Waiter-hours: checkouts waiting x hours, within the period. */
  waitHours: number;
}

/** Per feature: peak against licensed, time at the limit, seat-hours. */
export function usageReport(input: ReportInput): UsageReportRow[] {
  const by = new Map<string, UsageRow[]>();
  for (const r of input.rows) {
    if (r.t < input.from || r.t >= input.to) continue;
    let list = by.get(r.feature);
    if (!list) by.set(r.feature, (list = []));
    list.push(r);
  }
  const out: UsageReportRow[] = [];
  for (const [feature, rows] of by) {
    let cov = 0, held = 0, leased = 0, borrowed = 0, atLimit = 0, peak = 0, licensed = 0, grants = 0, denials = 0;
    let waits = 0, served = 0, waited = 0, waitMax = 0, waitPeak = 0, waiting = 0;
    for (const r of rows) {
      cov += r.cov;
      held += r.heldMs;
      leased += r.leasedMs;
      borrowed += r.borrowedMs;
      atLimit += r.atLimitMs;
      peak = Math.max(peak, r.peak);
      licensed = Math.max(licensed, r.licensed);
      grants += r.grants;
      for (const n of Object.values(r.denials)) denials += n;
      waits += r.waits ?? 0;
      served += r.waitsServed ?? 0;
      waited += r.waitedMs ?? 0;
      waitMax = Math.max(waitMax, r.waitMaxMs ?? 0);
      waitPeak = Math.max(waitPeak, r.waitPeak ?? 0);
      waiting += r.waitingMs ?? 0;
    }
    out.push({
      feature,
      licensed,
      peak,
      seatHours: hours(held),
      leasedHours: hours(leased),
      borrowedHours: hours(borrowed),
      averageSeats: cov > 0 ? round(held / cov) : 0,
      atLimitHours: hours(atLimit),
      atLimitPercent: cov > 0 ? round((atLimit / cov) * 100, 1) : 0,
      grants,
      denials,
      coveredHours: hours(cov),
      waits,
      waitsServed: served,
      waitMeanSeconds: waits > 0 ? round(waited / waits / 1000, 1) : 0,
      waitMaxSeconds: round(waitMax / 1000, 1),
      waitPeak,
      waitHours: hours(waiting),
    });
  }
  return out.sort((a, b) => a.feature.localeCompare(b.feature));
}

/** The keys a session or denial counts under: its user, host, feature, or each group of its user. */
export function keysOf(x: { user: string; host: string; feature: string }, by: ReportBy, groups: ReportInput['groups']): string[] {
  if (by === 'user') return [x.user];
  if (by === 'host') return [x.host];
  if (by === 'feature') return [x.feature];
  const gs = Object.entries(groups)
    .filter(([, members]) => members.includes(x.user))
    .map(([g]) => g);
  return gs.length > 0 ? gs : ['(no group)'];
}

/** The part of a session inside [from, to), ms (an open session counts up to `to`). */
export function overlap(s: SessionRecord, from: number, to: number): number {
  const end = s.end ?? to;
  return Math.max(0, Math.min(end, to) - Math.max(s.start, from));
}

export interface UsersReportRow {
  key: string;
  /** Seat-hours: seats x hours held within the period, leases and borrows. */
  seatHours: number;
  leaseHours: number;
  borrowHours: number;
  /** Leases and borrows that overlap the period. */
  sessions: number;
  features: string[];
  /** Hours waited in queues within the period (each wait counts its hours once, whatever its seats), and how many waits. */
  waitHours: number;
  waits: number;
}

/** Hours used (and hours waited in queues) per user, host, group or feature (chargeback). */
export function usersReport(input: ReportInput, by: ReportBy): UsersReportRow[] {
  const acc = new Map<string, { lease: number; borrow: number; sessions: number; features: Set<string>; wait: number; waits: number }>();
  const entry = (k: string) => {
    let a = acc.get(k);
    if (!a) acc.set(k, (a = { lease: 0, borrow: 0, sessions: 0, features: new Set(), wait: 0, waits: 0 }));
    return a;
  };
  const waited = (x: { user: string; host: string; feature: string }, start: number, end: number) => {
    const ms = Math.max(0, Math.min(end, input.to) - Math.max(start, input.from));
    if (ms <= 0) return;
    for (const k of keysOf(x, by, input.groups)) {
      const a = entry(k);
      a.wait += ms;
      a.waits++;
      a.features.add(x.feature);
    }
  };
  for (const s of input.sessions) {
    // A lease granted to a waiting checkout waited just before its start.
    if (s.kind === 'lease' && s.waitedMs) waited(s, s.start - s.waitedMs, s.start);
    const ms = overlap(s, input.from, input.to);
    if (ms <= 0) continue;
    for (const k of keysOf(s, by, input.groups)) {
      const a = entry(k);
      a[s.kind] += ms * s.count;
      a.sessions++;
      a.features.add(s.feature);
    }
  }
  for (const w of input.waits ?? []) waited(w, w.start, w.end);
  return [...acc]
    .map(([key, a]) => ({ key, seatHours: hours(a.lease + a.borrow), leaseHours: hours(a.lease), borrowHours: hours(a.borrow), sessions: a.sessions, features: [...a.features].sort(), waitHours: hours(a.wait), waits: a.waits }))
    .sort((a, b) => b.seatHours - a.seatHours || a.key.localeCompare(b.key));
}

/**
 * Whether a denial was a true one: no lease or borrow of the same feature was granted to the same
 * user from its first refusal to `minutes` after its last.
 */
export function isTrueDenial(d: DenialRecord, sessions: readonly SessionRecord[], minutes: number): boolean {
  const until = d.last + minutes * MINUTE;
  return !sessions.some((s) => s.user === d.user && s.feature === d.feature && s.start >= d.first && s.start <= until);
}

export interface DenialsReportRow {
  key: string;
  /** Every refusal. */
  refusals: number;
  /** Denials: refusals of one user for one feature within one minute count once. */
  denials: number;
  /** Denials not followed by a grant to the same user within the window. */
  trueDenials: number;
  /** Refusals by error code. */
  codes: Record<string, number>;
}

/** All denials and true denials, per user, host, group or feature. */
export function denialsReport(input: ReportInput, by: ReportBy, trueDenialMinutes: number): DenialsReportRow[] {
  const index = sessionIndex(input.sessions);
  const acc = new Map<string, DenialsReportRow>();
  for (const d of input.denials) {
    if (d.first < input.from || d.first >= input.to) continue;
    const truly = isTrueDenial(d, index.get(`${d.user}\u0000${d.feature}`) ?? [], trueDenialMinutes);
    for (const k of keysOf(d, by, input.groups)) {
      let a = acc.get(k);
      if (!a) acc.set(k, (a = { key: k, refusals: 0, denials: 0, trueDenials: 0, codes: {} }));
      a.refusals += d.n;
      a.denials++;
      if (truly) a.trueDenials++;
      a.codes[d.code] = (a.codes[d.code] ?? 0) + d.n;
    }
  }
  return [...acc.values()].sort((a, b) => b.trueDenials - a.trueDenials || b.denials - a.denials || a.key.localeCompare(b.key));
}

function sessionIndex(sessions: readonly SessionRecord[]): Map<string, SessionRecord[]> {
  const m = new Map<string, SessionRecord[]>();
  for (const s of sessions) {
    const k = `${s.user}\u0000${s.feature}`;
    let l = m.get(k);
    if (!l) m.set(k, (l = []));
    l.push(s);
  }
  return m;
}

/**
 * A borrow that was likely not used: it ended (returned or expired) without its token ever being
 * renewed, and while it was out its user also held a floating lease of the same feature. The
 * server cannot see offline use; this is the signal it has: the user worked on floating seats
 * while the borrowed one sat reserved.
 */
export function likelyUnused(b: SessionRecord, leases: readonly SessionRecord[]): boolean {
  if (b.kind !== 'borrow' || b.end === null || b.renewed) return false;
  return leases.some((l) => l.kind === 'lease' && l.user === b.user && l.feature === b.feature && l.start < b.end! && (l.end ?? Infinity) > b.start);
}

export interface BorrowsReportRow {
  key: string;
  borrows: number;
  /** Seat-hours reserved by borrows within the period. */
  seatHours: number;
  returned: number;
  expired: number;
  /** Still out at the end of the period. */
  open: number;
  renewed: number;
  lost: number;
  /** Borrows likely unused (see likelyUnused). */
  likelyUnused: number;
}

export function borrowsReport(input: ReportInput, by: ReportBy): BorrowsReportRow[] {
  const index = sessionIndex(input.sessions);
  const acc = new Map<string, BorrowsReportRow>();
  for (const s of input.sessions) {
    if (s.kind !== 'borrow') continue;
    const ms = overlap(s, input.from, input.to);
    if (ms <= 0 && !(s.start >= input.from && s.start < input.to)) continue;
    const unused = likelyUnused(s, index.get(`${s.user}\u0000${s.feature}`) ?? []);
    for (const k of keysOf(s, by, input.groups)) {
      let a = acc.get(k);
      if (!a) acc.set(k, (a = { key: k, borrows: 0, seatHours: 0, returned: 0, expired: 0, open: 0, renewed: 0, lost: 0, likelyUnused: 0 }));
      a.borrows++;
      a.seatHours = round(a.seatHours + (ms * s.count) / HOUR, 3);
      if (s.end === null || s.end > input.to) a.open++;
      else if (s.how === 'returned') a.returned++;
      else a.expired++;
      if (s.renewed) a.renewed++;
      if (s.lost) a.lost++;
      if (unused) a.likelyUnused++;
    }
  }
  return [...acc.values()].sort((a, b) => b.seatHours - a.seatHours || a.key.localeCompare(b.key));
}

export interface AdviceItem {
  feature: string;
  kind: 'could-drop' | 'short' | 'unused-borrows' | 'too-little-history';
  text: string;
  licensed: number;
  peak?: number;
  /** could-drop: the seats that would have served every moment of the period. */
  k?: number;
  /** short: the estimated seats missing. */
  m?: number;
  /** short: share of working hours at the limit, percent. */
  atLimitPercent?: number;
  trueDenials?: number;
  /** unused-borrows: how many, and whose. */
  borrows?: number;
  users?: string[];
}

export function inWorkingHours(ms: number, wh: WorkingHours, local: LocalTime): boolean {
  const t = local(ms);
  return wh.days.includes(t.weekday) && t.minute >= wh.start && t.minute < wh.end;
}

const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
const DAY_NAMES = ['', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

export function describeWorkingHours(wh: WorkingHours): string {
  const d = [...wh.days].sort();
  const contiguous = d.length > 1 && d.every((x, i) => i === 0 || x === d[i - 1]! + 1);
  const days = contiguous ? `${DAY_NAMES[d[0]!]}-${DAY_NAMES[d[d.length - 1]!]}` : d.map((x) => DAY_NAMES[x]).join(',');
  return `${days} ${hhmm(wh.start)}-${hhmm(wh.end)}`;
}

/**
 * Allocation advice over the `days` before `input.to` (docs/history.md, "Advice"):
 *  - never above k of n seats (n > k) -> "could drop to k";
 *  - at the limit `atLimitPercent`% of working hours or more -> "short by m seats", m being the
 *    most seats truly denied to distinct users within one working hour (at least 1);
 *  - borrows likely unused (likelyUnused) -> named with their users.
 * A feature whose history covers less than minCoveragePercent of the period gets no advice but a
 * note saying so.
 */
export function adviceReport(input: ReportInput, s: AdviceSettings): AdviceItem[] {
  const from = Math.max(input.from, input.to - s.days * DAY);
  const period = input.to - from;
  const rows = input.rows.filter((r) => r.t >= from && r.t < input.to);
  const features = new Map<string, UsageRow[]>();
  for (const r of rows) {
    let l = features.get(r.feature);
    if (!l) features.set(r.feature, (l = []));
    l.push(r);
  }
  const index = sessionIndex(input.sessions);
  const out: AdviceItem[] = [];
  const days = round(period / DAY, 1);
  const wh = describeWorkingHours(s.workingHours);
  for (const [feature, list] of [...features].sort(([a], [b]) => a.localeCompare(b))) {
    let cov = 0, peak = 0, workCov = 0, workAtLimit = 0;
    // The seats licensed at the end of the period (a license change within it counts from then).
    const licensed = list.reduce((last, r) => (r.t >= last.t ? r : last), list[0]!).licensed;
    for (const r of list) {
      cov += r.cov;
      peak = Math.max(peak, r.peak);
      if (r.span <= HOUR && inWorkingHours(r.t, s.workingHours, s.localTime)) {
        workCov += r.cov;
        workAtLimit += r.atLimitMs;
      }
    }
    const coverage = period > 0 ? (cov / period) * 100 : 0;
    if (coverage < s.minCoveragePercent) {
      out.push({ feature, kind: 'too-little-history', licensed, text: `${feature}: history covers ${round(coverage, 1)}% of the last ${days} days (less than ${s.minCoveragePercent}%): no advice yet` });
      continue;
    }
    if (licensed > 0 && peak < licensed) {
      out.push({
        feature,
        kind: 'could-drop',
        licensed,
        peak,
        k: peak,
        text: peak === 0 ? `${feature}: not used in the last ${days} days (0 of ${licensed} seats): could drop it` : `${feature}: never above ${peak} of ${licensed} seats in the last ${days} days: could drop to ${peak} seat${peak === 1 ? '' : 's'}`,
      });
    }
    const pct = workCov > 0 ? (workAtLimit / workCov) * 100 : 0;
    if (licensed > 0 && workCov > 0 && pct >= s.atLimitPercent) {
      // m: the most seats truly denied to distinct users within one working hour.
      const perHour = new Map<number, Map<string, number>>();
      let trueDenials = 0;
      for (const d of input.denials) {
        if (d.feature !== feature || d.first < from || d.first >= input.to) continue;
        if (!inWorkingHours(d.first, s.workingHours, s.localTime)) continue;
        if (!isTrueDenial(d, index.get(`${d.user}\u0000${d.feature}`) ?? [], s.trueDenialMinutes)) continue;
        trueDenials++;
        const h = floorTo(d.first, HOUR);
        let users = perHour.get(h);
        if (!users) perHour.set(h, (users = new Map()));
        users.set(d.user, Math.max(users.get(d.user) ?? 0, d.count));
      }
      let m = 1;
      for (const users of perHour.values()) m = Math.max(m, [...users.values()].reduce((a, b) => a + b, 0));
      out.push({
        feature,
        kind: 'short',
        licensed,
        peak,
        m,
        atLimitPercent: round(pct, 1),
        trueDenials,
        text: `${feature}: at its limit (${licensed} of ${licensed} seats) ${round(pct, 1)}% of working hours (${wh}) in the last ${days} days, ${trueDenials} true denial${trueDenials === 1 ? '' : 's'}: short by ${m} seat${m === 1 ? '' : 's'}`,
      });
    }
    const unused = input.sessions.filter((b) => b.feature === feature && b.kind === 'borrow' && b.end !== null && b.end >= from && b.end < input.to && likelyUnused(b, index.get(`${b.user}\u0000${b.feature}`) ?? []));
    if (unused.length > 0) {
      const users = [...new Set(unused.map((b) => b.user))].sort();
      out.push({
        feature,
        kind: 'unused-borrows',
        licensed,
        borrows: unused.length,
        users,
        text: `${feature}: ${unused.length} borrow${unused.length === 1 ? '' : 's'} (${users.join(', ')}) ended never renewed while the same user also held a floating seat of ${feature}: the borrowed seats were likely unused; borrow for shorter, or not at all`,
      });
    }
  }
  return out;
}

export interface SeriesReportRow {
  feature: string;
  /** Start of the period: an hour, or a UTC day (ISO). */
  t: string;
  licensed: number;
  /** The most seats held (leased + borrowed) at once within the period. */
  peak: number;
  /** Seats held on average over the part of the period licd was counting. */
  averageSeats: number;
  seatHours: number;
  coveredHours: number;
  /** Refused checkouts and borrows in the period, and by error code. */
  denials: number;
  codes: Record<string, number>;
}

/**
 * Per feature per hour or per UTC day (`every`): the usage over time, for charts (the web page's
 * History tab, licctl report series). A row of the history counts in the period its start falls
 * in; a row coarser than `every` (an hour series over day rows, older than history.hourDays)
 * counts whole in the period of its start. Periods with no row are left out.
 */
export function seriesReport(input: ReportInput, every: number): SeriesReportRow[] {
  const by = new Map<string, { feature: string; t: number; cov: number; held: number; peak: number; licensed: number; codes: Record<string, number> }>();
  for (const r of input.rows) {
    if (r.t < input.from || r.t >= input.to) continue;
    const t = floorTo(r.t, every);
    const k = `${t}\0${r.feature}`;
    let x = by.get(k);
    if (!x) by.set(k, (x = { feature: r.feature, t, cov: 0, held: 0, peak: 0, licensed: 0, codes: {} }));
    x.cov += r.cov;
    x.held += r.heldMs;
    x.peak = Math.max(x.peak, r.peak);
    x.licensed = Math.max(x.licensed, r.licensed);
    for (const [code, n] of Object.entries(r.denials)) x.codes[code] = (x.codes[code] ?? 0) + n;
  }
  return [...by.values()]
    .sort((a, b) => a.t - b.t || a.feature.localeCompare(b.feature))
    .map((x) => ({
      feature: x.feature,
      t: new Date(x.t).toISOString(),
      licensed: x.licensed,
      peak: x.peak,
      averageSeats: x.cov > 0 ? round(x.held / x.cov) : 0,
      seatHours: hours(x.held),
      coveredHours: hours(x.cov),
      denials: Object.values(x.codes).reduce((a, b) => a + b, 0),
      codes: x.codes,
    }));
}
