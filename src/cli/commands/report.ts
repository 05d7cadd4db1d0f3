/**
 * licctl report usage|queue|users|denials|borrows|advice: the usage history's reports (docs/history.md),
 * read over the admin API (report.* ops) and printed as a table (80 columns), CSV (RFC 4180, with
 * a header) or JSON (the answer as the server sends it).
 */
import { flag, has, intFlag, UsageError, type ParsedArgs } from '../args.ts';
import { wrap, type Command } from '../command.ts';
import { adminRequest, cell, out, outJson, timeOf } from '../context.ts';
import { utcWanted } from '../time.ts';

type Format = 'table' | 'csv' | 'json';
type Row = Record<string, unknown>;

interface ReportAnswer {
  from: string;
  to: string;
  by?: string;
  rows?: Row[];
  items?: Row[];
  more: number;
  truncated?: boolean;
  trueDenialMinutes?: number;
  days?: number;
  workingHours?: string;
}

/** A column: its header, the field it shows, and whether it is a number (right-aligned). */
interface Column {
  head: string;
  field: string;
  num?: boolean;
  /** How a value is shown (tables and CSV alike). */
  show?: (v: unknown) => string;
}

const list = (v: unknown): string => (Array.isArray(v) ? v.join(' ') : String(v ?? ''));
const codes = (v: unknown): string =>
  Object.entries((v ?? {}) as Record<string, number>)
    .map(([c, n]) => `${c}=${n}`)
    .join(' ');

export const REPORTS: Record<string, { op: string; summary: string; by: string[] | null; columns: (by: string) => Column[]; json: string; details: string }> = {
  usage: {
    op: 'report.usage',
    summary: 'per feature: peak against licensed seats, time at the limit, seat-hours',
    by: ['feature'],
    columns: () => [
      { head: 'FEATURE', field: 'feature' },
      { head: 'LICENSED', field: 'licensed', num: true },
      { head: 'PEAK', field: 'peak', num: true },
      { head: 'SEAT-H', field: 'seatHours', num: true },
      { head: 'AVG', field: 'averageSeats', num: true },
      { head: 'LIMIT-H', field: 'atLimitHours', num: true },
      { head: 'LIMIT%', field: 'atLimitPercent', num: true },
      { head: 'DENIALS', field: 'denials', num: true },
    ],
    json: '{from, to, by, rows: [{feature, licensed, peak, seatHours, leasedHours, borrowedHours, averageSeats, atLimitHours, atLimitPercent, grants, denials, coveredHours, waits, waitsServed, waitMeanSeconds, waitMaxSeconds, waitPeak, waitHours}], more}',
    details: 'SEAT-H: seats x hours held (leased and borrowed); AVG: seats held on average; LIMIT-H and LIMIT%: time every licensed seat was held.',
  },
  users: {
    op: 'report.users',
    summary: 'hours used per user, host, group or feature (for chargeback)',
    by: ['user', 'host', 'group', 'feature'],
    columns: (by) => [
      { head: by.toUpperCase(), field: 'key' },
      { head: 'SEAT-H', field: 'seatHours', num: true },
      { head: 'LEASE-H', field: 'leaseHours', num: true },
      { head: 'BORROW-H', field: 'borrowHours', num: true },
      { head: 'WAIT-H', field: 'waitHours', num: true },
      { head: 'SESSIONS', field: 'sessions', num: true },
      { head: 'FEATURES', field: 'features', show: list },
    ],
    json: '{from, to, by, rows: [{key, seatHours, leaseHours, borrowHours, sessions, features, waitHours, waits}], more}',
    details: 'Hours are seats x hours within the period, of leases and borrows; WAIT-H: hours waited in queues for a seat (licctl run --wait), with a seat at the end or not. --by group uses the groups of the history.groups setting, else those of the borrow limits; a user in two groups counts in both.',
  },
  queue: {
    op: 'report.usage',
    summary: 'per feature: waits for a seat in the queue (how many, mean, longest, most waiting at once)',
    by: ['feature'],
    columns: () => [
      { head: 'FEATURE', field: 'feature' },
      { head: 'LICENSED', field: 'licensed', num: true },
      { head: 'WAITS', field: 'waits', num: true },
      { head: 'SERVED', field: 'waitsServed', num: true },
      { head: 'MEAN-S', field: 'waitMeanSeconds', num: true },
      { head: 'MAX-S', field: 'waitMaxSeconds', num: true },
      { head: 'PEAK-Q', field: 'waitPeak', num: true },
      { head: 'WAIT-H', field: 'waitHours', num: true },
    ],
    json: '{from, to, by, rows: [{feature, waits, waitsServed, waitMeanSeconds, waitMaxSeconds, waitPeak, waitHours, ...}], more} (the answer of report usage)',
    details: 'WAITS: waits that ended in the period (SERVED: with a seat); MEAN-S and MAX-S: their mean and longest length, seconds; PEAK-Q: the most checkouts waiting at once; WAIT-H: checkouts waiting x hours. The same answer as report usage (admin op report.usage), other columns.',
  },
  denials: {
    op: 'report.denials',
    summary: 'refused checkouts and borrows, and the true denials (no seat followed)',
    by: ['feature', 'user', 'host', 'group'],
    columns: (by) => [
      { head: by.toUpperCase(), field: 'key' },
      { head: 'REFUSALS', field: 'refusals', num: true },
      { head: 'DENIALS', field: 'denials', num: true },
      { head: 'TRUE', field: 'trueDenials', num: true },
      { head: 'CODES', field: 'codes', show: codes },
    ],
    json: '{from, to, by, trueDenialMinutes, rows: [{key, refusals, denials, trueDenials, codes}], more}',
    details: 'DENIALS: refusals of one user for one feature within a minute count once. TRUE: denials not followed by a seat for the same user within history.trueDenialMinutes (default 10).',
  },
  borrows: {
    op: 'report.borrows',
    summary: 'borrowed seats: hours, returns, expiries, renewals, likely unused',
    by: ['user', 'host', 'group', 'feature'],
    columns: (by) => [
      { head: by.toUpperCase(), field: 'key' },
      { head: 'BORROWS', field: 'borrows', num: true },
      { head: 'SEAT-H', field: 'seatHours', num: true },
      { head: 'RETURNED', field: 'returned', num: true },
      { head: 'EXPIRED', field: 'expired', num: true },
      { head: 'OPEN', field: 'open', num: true },
      { head: 'RENEWED', field: 'renewed', num: true },
      { head: 'UNUSED?', field: 'likelyUnused', num: true },
    ],
    json: '{from, to, by, rows: [{key, borrows, seatHours, returned, expired, open, renewed, lost, likelyUnused}], more}',
    details: 'UNUSED?: borrows that ended never renewed while their user also held a floating seat of the same feature (docs/history.md).',
  },
  series: {
    op: 'report.series',
    summary: 'per feature per day or hour: seats held (peak, average) against licensed, and denials by code, over time',
    by: ['day', 'hour'],
    columns: () => [
      { head: 'START (UTC)', field: 't', show: (v) => String(v ?? '').slice(0, 16).replace('T', ' ') },
      { head: 'FEATURE', field: 'feature' },
      { head: 'LICENSED', field: 'licensed', num: true },
      { head: 'PEAK', field: 'peak', num: true },
      { head: 'SEAT-H', field: 'seatHours', num: true },
      { head: 'DENIALS', field: 'denials', num: true },
      { head: 'CODES', field: 'codes', show: codes },
    ],
    json: '{from, to, by, rows: [{feature, t, licensed, peak, averageSeats, seatHours, coveredHours, denials, codes}], more}',
    details: 'One row per feature per UTC day (--by day, the default) or hour (--by hour), oldest first; periods without history are left out. PEAK: the most seats held (leased and borrowed) at once; SEAT-H: seats x hours held (averageSeats in --json: held on average while licd counted). The web page draws its History charts from the same admin op.',
  },
  advice: {
    op: 'report.advice',
    summary: 'allocation advice: seats to drop, seats short, borrows likely unused',
    by: null,
    columns: () => [
      { head: 'FEATURE', field: 'feature' },
      { head: 'KIND', field: 'kind' },
      { head: 'ADVICE', field: 'text' },
    ],
    json: '{from, to, days, workingHours, atLimitPercent, items: [{feature, kind, text, licensed, k?, m?, atLimitPercent?, trueDenials?, borrows?, users?}], more}',
    details: 'Over --from to --to (default: the history.advice.days, 30, before --to): never above k of n seats: could drop to k; at the limit history.advice.atLimitPercent (20%) of working hours or more: short by m seats (m: the most seats truly denied to distinct users within one working hour).',
  },
};

/**
 * A time for --from/--to: 7d, 12h, 30m or 2w (that long ago), now, or a date and time
 * (2026-11-01, 2026-11-01 09:00, 2026-11-01T09:00:00), local unless --utc or it names its zone.
 */
export function parseWhen(v: string, name: string, utc: boolean, now = Date.now()): string {
  const s = v.trim();
  if (s === 'now') return new Date(now).toISOString();
  const rel = /^(\d{1,5})([mhdw])$/.exec(s);
  if (rel) return new Date(now - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[rel[2] as 'm' | 'h' | 'd' | 'w']).toISOString();
  const m = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?)?(Z|[+-]\d\d:\d\d)?$/.exec(s);
  if (m) {
    const [, y, mo, d, h = '00', mi = '00', se = '00', zone] = m;
    const ms = zone !== undefined || utc ? Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${se}${zone ?? 'Z'}`) : new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(se)).getTime();
    if (Number.isFinite(ms)) return new Date(ms).toISOString();
  }
  throw new UsageError(`--${name} ${JSON.stringify(v)} is not a time: give 7d, 12h, 30m, 2w (that long ago), now, or a date and time like 2026-11-01 or "2026-11-01 09:00" (local time; --utc or a Z/+01:00 suffix for others)`);
}

function formatOf(a: ParsedArgs): Format {
  const f = flag(a, 'format');
  if (f !== undefined && f !== 'table' && f !== 'csv' && f !== 'json') throw new UsageError(`--format must be table, csv or json, got ${JSON.stringify(f)}`);
  if (has(a, 'json')) {
    if (f !== undefined && f !== 'json') throw new UsageError(`--json and --format ${f} disagree; give one of them`);
    return 'json';
  }
  return (f as Format | undefined) ?? 'table';
}

/** One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break; quotes doubled. */
export function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

const valueOf = (c: Column, r: Row): string => (c.show ? c.show(r[c.field]) : r[c.field] === undefined || r[c.field] === null ? '' : String(r[c.field]));

export function toCsv(columns: Column[], rows: Row[]): string {
  const lines = [columns.map((c) => csvField(c.head)), ...rows.map((r) => columns.map((c) => csvField(valueOf(c, r))))];
  return lines.map((l) => l.join(',')).join('\r\n') + '\r\n';
}

/**
 * A table that fits 80 columns: numbers right-aligned; the text columns share what the numbers
 * leave, the widest cut first (with ~ at the cut).
 */
export function toTable(columns: Column[], rows: Row[], width = 80): string {
  const cells = rows.map((r) => columns.map((c) => cell(valueOf(c, r))));
  const w = columns.map((c, i) => Math.max(c.head.length, ...cells.map((row) => row[i]!.length)));
  const total = () => w.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1);
  while (total() > width) {
    let widest = -1;
    columns.forEach((c, i) => {
      if (!c.num && w[i]! > Math.max(c.head.length, 8) && (widest < 0 || w[i]! > w[widest]!)) widest = i;
    });
    if (widest < 0) break;
    w[widest] = Math.max(Math.max(columns[widest]!.head.length, 8), w[widest]! - (total() - width));
  }
  const fit = (s: string, i: number) => (s.length > w[i]! ? s.slice(0, w[i]! - 1) + '~' : s);
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (columns[i]!.num ? fit(v, i).padStart(w[i]!) : fit(v, i).padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.head)), ...cells.map(line)].join('\n');
}

async function report(which: keyof typeof REPORTS, a: ParsedArgs): Promise<number> {
  const spec = REPORTS[which]!;
  const format = formatOf(a);
  const utc = utcWanted(has(a, 'utc'));
  const by = flag(a, 'by');
  if (by !== undefined && (!spec.by || !spec.by.includes(by))) {
    throw new UsageError(spec.by ? `report ${which}: --by must be ${spec.by.join(', ')}${which === 'usage' ? ' (hours per user, host or group: licctl report users --by ...)' : ''}, got ${JSON.stringify(by)}` : `report ${which} takes no --by`);
  }
  const from = flag(a, 'from');
  const to = flag(a, 'to');
  const limit = intFlag(a, 'limit', 1, 100_000);
  const body: Record<string, unknown> = {
    ...(from !== undefined ? { from: parseWhen(from, 'from', utc) } : {}),
    ...(to !== undefined ? { to: parseWhen(to, 'to', utc) } : {}),
    ...(by !== undefined ? { by } : {}),
    ...(limit !== undefined ? { limit } : {}),
  };
  const r = await adminRequest<ReportAnswer>(a, spec.op, body);
  if (format === 'json') {
    outJson(r);
    return 0;
  }
  const rows = (r.rows ?? r.items ?? []) as Row[];
  const columns = spec.columns(r.by ?? 'feature');
  if (format === 'csv') {
    process.stdout.write(toCsv(columns, rows));
    return 0;
  }
  const time = timeOf(a);
  out(`${which} from ${time(r.from)} to ${time(r.to)}${r.by && which !== 'usage' && which !== 'queue' ? `, by ${r.by}` : ''}${r.trueDenialMinutes ? ` (true denial: no seat within ${r.trueDenialMinutes} min)` : ''}${r.workingHours ? ` (working hours ${r.workingHours})` : ''}`);
  if (rows.length === 0) out(which === 'advice' ? 'no advice: nothing to change' : 'nothing recorded in this period');
  else if (which === 'advice') for (const item of rows) out(wrap(String(item.text), '- ', 2));
  else out(toTable(columns, rows));
  if (r.more > 0) out(`... and ${r.more} more (--limit N shows more)`);
  if (r.truncated) out('(the period holds more records than one report reads: give a shorter period with --from/--to)');
  return 0;
}

const OPTIONS = (by: string[] | null): NonNullable<Command['options']> => ({
  from: { type: 'string', arg: 'WHEN', help: 'start of the period: 7d, 12h, 2w (ago), or 2026-11-01 / "2026-11-01 09:00" (local time; --utc: UTC). Default: 30 days before --to' },
  to: { type: 'string', arg: 'WHEN', help: 'end of the period (not included), as --from. Default: now' },
  ...(by ? { by: { type: 'string' as const, arg: by.join('|'), help: `one row per ${by.join(', ')} (default ${by[0]})` } } : {}),
  format: { type: 'string', arg: 'table|csv|json', help: 'table (80 columns, default), csv (RFC 4180 with a header row) or json (as --json)' },
  limit: { type: 'string', arg: 'N', help: 'at most N rows (default: the server\'s history.maxReportRows, 1000)' },
});

export const reportCommands: Command[] = (Object.keys(REPORTS) as Array<keyof typeof REPORTS>).map((which) => {
  const spec = REPORTS[which]!;
  const byEx = spec.by && spec.by.length > 1 ? ` --by ${spec.by[1]}` : '';
  return {
    path: `report ${which}`,
    section: 'admin',
    synopsis: `report ${which} [--from WHEN] [--to WHEN]${spec.by ? ` [--by ${spec.by.join('|')}]` : ''} [--format table|csv|json]`,
    summary: spec.summary,
    details: spec.details,
    connects: true,
    options: OPTIONS(spec.by),
    json: spec.json,
    examples: [`licctl report ${which} --from 30d${byEx} --format csv --user admin --password-file admin.password > ${which}.csv`],
    run: (a: ParsedArgs) => report(which, a),
  } satisfies Command;
});
