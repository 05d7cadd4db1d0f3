/**
 * The history's parts one at a time: a flush the disk refuses is written with the next one;
 * retention drops old sessions and day rows and keeps the size cap; the advice rules on small
 * hand-made histories; licctl report's CSV, table and time parsing; the config section's checks.
 */
import test from 'ava';
import { csvField, parseWhen, toCsv, toTable } from '../../src/cli/commands/report.ts';
import { parseConfig } from '../../src/config.ts';
import { EventBus } from '../../src/core/events.ts';
import { DAY, HOUR, HistorySink, MINUTE, emptyRow, rowKey, sessionKey, type SessionRecord, type UsageRow } from '../../src/core/history.ts';
import type { Lease } from '../../src/core/model.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { adviceReport, borrowsReport, defaultWorkingHours, utcTime, type ReportInput } from '../../src/core/reports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { UsageHistory, defaultHistoryConfig } from '../../src/history/history.ts';
import { ManualClock } from '../helpers/daemon.ts';

const T0 = Date.parse('2026-06-01T00:00:00Z');

function setup(config = defaultHistoryConfig, store = new MemoryStore(), clock = new ManualClock(T0)) {
  const table = new SeatTable([{ name: 'render', product: 'render', version: '1', seats: 2, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }], () => `L${Math.random().toString(36).slice(2)}`);
  const events = new EventBus();
  const service = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 't', holderHash: sha256HolderHash, events });
  const history = new UsageHistory({ service, store, clock, log: silentLog, config, licensed: (f) => table.license(f)?.seats ?? 0, leases: () => table.allLeases(), borrows: () => table.allBorrows(), limitGroups: () => ({}), localTime: utcTime });
  events.add(history.sink);
  const ask = (req: Record<string, unknown>, admin = false) => service.handle('c1', admin, new TextEncoder().encode(JSON.stringify({ id: '1', ...req })));
  return { clock, store, history, ask };
}

const HOLDER = 'holder-secret-of-the-parts-test';

test('a flush the disk refuses is kept and written with the next one: no minute is lost', async (t) => {
  const { clock, store, history, ask } = setup();
  await history.start(['render'], { timers: false });
  t.true((await ask({ op: 'checkout', feature: 'render', user: 'ann', host: 'h', pid: 1, holder: HOLDER })).ok);
  clock.advance(10 * MINUTE);
  store.failNext = 1;
  await history.flush();
  t.is([...store.records.keys()].filter((k) => k.startsWith('history!m!')).length, 0, 'the write failed');
  clock.advance(5 * MINUTE);
  await history.flush();
  const rows = [...store.records].filter(([k]) => k.startsWith('history!m!')).map(([, v]) => v as UsageRow);
  t.is(rows.length, 15);
  t.is(rows.reduce((s, r) => s + r.heldMs, 0), 15 * MINUTE, 'one seat for 15 minutes');
  const usage = await ask({ op: 'report.usage', from: new Date(T0).toISOString(), to: new Date(T0 + HOUR).toISOString() }, true);
  t.like(((usage as { result?: unknown }).result as { rows: unknown[] }).rows[0], { feature: 'render', seatHours: 0.25, peak: 1, licensed: 2, grants: 1 });
});

test('retention: old sessions, denials and day rows are dropped; above maxRows the oldest records go first', async (t) => {
  const config = { ...defaultHistoryConfig, retention: { minuteDays: 1, hourDays: 2, dayDays: 3, sessionDays: 2, maxRows: 10_000 } };
  const { clock, store, history } = setup(config);
  const lease = (id: string, end: number): SessionRecord => ({ kind: 'lease', id, feature: 'render', user: 'u', host: 'h', count: 1, start: end - HOUR, end, how: 'checkin' });
  const day = (t: number): UsageRow => ({ ...emptyRow('render', t, DAY, 2), cov: DAY });
  await store.commit([
    ...[0, 1, 2, 3, 4].map((d) => ({ kind: 'rec.put' as const, space: 'history' as const, key: rowKey(day(T0 + d * DAY)), value: day(T0 + d * DAY) })),
    ...[1, 4].map((d) => ({ kind: 'rec.put' as const, space: 'history' as const, key: sessionKey(lease(`s${d}`, T0 + d * DAY)), value: lease(`s${d}`, T0 + d * DAY) })),
  ]);
  clock.t = T0 + 5 * DAY + HOUR;
  await history.maintain(clock.t);
  const keys = () => [...store.records.keys()].map((k) => k.slice('history!'.length));
  // Day rows that start more than 3 days ago (days 0, 1, 2) go; the session that ended on day 1 is past 2 days.
  t.deepEqual(keys().filter((k) => k.startsWith('d!')).length, 2);
  t.deepEqual(keys().filter((k) => k.startsWith('s!')).map((k) => k.split('!').pop()), ['s4']);
  t.is(history.records, 3);

  // The size cap: 10,000 records, and 12,000 minute rows more, newer than the rest: the 2,003
  // oldest go, whatever their kind (the day rows, the session, then the oldest minutes).
  clock.t = T0 + 20 * DAY;
  const many: UsageRow[] = Array.from({ length: 12_000 }, (_, i) => ({ ...emptyRow('render', clock.t - 12_000 * MINUTE + i * MINUTE, MINUTE, 2), cov: MINUTE }));
  await store.commit(many.map((r) => ({ kind: 'rec.put' as const, space: 'history' as const, key: rowKey(r), value: r })));
  const capped = setup({ ...config, retention: { ...config.retention, minuteDays: 30, hourDays: 60, dayDays: 90, sessionDays: 90 } }, store, clock).history;
  for (let i = 0; i < 5; i++) await capped.maintain(clock.t);
  t.is(capped.records, 10_000);
  t.is(keys().length, 10_000);
  t.is(keys().filter((k) => k.startsWith('d!')).length, 0, 'the day rows were the oldest');
  t.deepEqual(keys().filter((k) => k.startsWith('s!')), [], 'then the session of day 4');
  t.is(keys()[0], rowKey(many[2000]!), 'then the 2,000 oldest minutes');
});

const lease = (user: string, start: number, end: number | null, extra: Partial<SessionRecord> = {}): SessionRecord => ({ kind: 'lease', id: `${user}${start}`, feature: 'render', user, host: 'h', count: 1, start, end, how: 'checkin', ...extra });
const advise = (input: Partial<ReportInput>) =>
  adviceReport({ from: T0, to: T0 + 30 * DAY, rows: [], sessions: [], denials: [], groups: {}, ...input }, { days: 30, atLimitPercent: 20, minCoveragePercent: 50, trueDenialMinutes: 10, workingHours: defaultWorkingHours, localTime: utcTime });
const hours = (n: number, peak: number): UsageRow[] => Array.from({ length: n }, (_, i) => ({ ...emptyRow('render', T0 + i * HOUR, HOUR, 4), cov: HOUR, peak }));

test('advice: an unused feature "could drop it"; too little history gives no advice; borrows returned unrenewed while their user leased are likely unused', (t) => {
  t.deepEqual(advise({ rows: hours(30 * 24, 0) }).map((a) => a.text), ['render: not used in the last 30 days (0 of 4 seats): could drop it']);
  t.deepEqual(advise({ rows: hours(10 * 24, 1) }).map((a) => [a.kind, a.text]), [['too-little-history', 'render: history covers 33.3% of the last 30 days (less than 50%): no advice yet']]);
  const borrow = (user: string, renewed: boolean, start: number, end: number): SessionRecord => ({ kind: 'borrow', id: `b-${user}`, feature: 'render', user, host: 'laptop', count: 1, start, end, how: 'returned', renewed });
  const sessions = [
    borrow('ann', false, T0 + DAY, T0 + 3 * DAY),
    lease('ann', T0 + 2 * DAY, T0 + 2 * DAY + HOUR),
    // bob renewed his borrow: he used it.
    borrow('bob', true, T0 + DAY, T0 + 3 * DAY),
    lease('bob', T0 + 2 * DAY, T0 + 2 * DAY + HOUR),
    // cat leased only after her borrow ended.
    borrow('cat', false, T0 + DAY, T0 + 3 * DAY),
    lease('cat', T0 + 4 * DAY, null),
  ];
  const items = advise({ rows: hours(30 * 24, 4), sessions });
  t.deepEqual(
    items.filter((a) => a.kind === 'unused-borrows').map((a) => a.text),
    ['render: 1 borrow (ann) ended never renewed while the same user also held a floating seat of render: the borrowed seats were likely unused; borrow for shorter, or not at all'],
  );
  const rows = borrowsReport({ from: T0, to: T0 + 30 * DAY, rows: [], sessions, denials: [], groups: { studio: ['ann', 'bob'] } }, 'group');
  t.deepEqual(rows, [
    { key: 'studio', borrows: 2, seatHours: 96, returned: 2, expired: 0, open: 0, renewed: 1, lost: 0, likelyUnused: 1 },
    { key: '(no group)', borrows: 1, seatHours: 48, returned: 1, expired: 0, open: 0, renewed: 0, lost: 0, likelyUnused: 0 },
  ]);
});

test('licctl report: CSV per RFC 4180, tables within 80 columns, times as 7d or local dates', (t) => {
  t.is(csvField('plain'), 'plain');
  t.is(csvField('a,b'), '"a,b"');
  t.is(csvField('say "hi"'), '"say ""hi"""');
  t.is(csvField('two\nlines'), '"two\nlines"');
  const cols = [
    { head: 'USER', field: 'key' },
    { head: 'SEAT-H', field: 'h', num: true },
    { head: 'FEATURES', field: 'f', show: (v: unknown) => (v as string[]).join(' ') },
  ];
  t.is(toCsv(cols, [{ key: 'o,neil', h: 1.5, f: ['a', 'b'] }]), 'USER,SEAT-H,FEATURES\r\n"o,neil",1.5,a b\r\n');
  const wide = toTable(cols, [{ key: 'x'.repeat(60), h: 123.456, f: Array.from({ length: 20 }, (_, i) => `feature_${i}`) }]);
  t.true(wide.split('\n').every((l) => l.length <= 80), wide);
  t.regex(wide, /~/);
  t.regex(wide.split('\n')[1]!, / 123\.456 /, 'numbers are never cut');
  const now = Date.parse('2026-11-30T12:00:00Z');
  t.is(parseWhen('7d', 'from', false, now), '2026-11-23T12:00:00.000Z');
  t.is(parseWhen('2026-11-01', 'from', true, now), '2026-11-01T00:00:00.000Z');
  t.is(parseWhen('2026-11-01 09:30', 'from', true, now), '2026-11-01T09:30:00.000Z');
  t.is(parseWhen('2026-11-01T09:30+01:00', 'from', false, now), '2026-11-01T08:30:00.000Z');
  t.is(parseWhen('2026-11-01 09:30', 'from', false, now), new Date(2026, 10, 1, 9, 30).toISOString(), 'local time without --utc');
  t.throws(() => parseWhen('last week', 'to', false, now), { message: /--to "last week" is not a time/ });
});

test('the history config section: defaults, and a bad field named with its fix', (t) => {
  const c = parseConfig({});
  t.like(c.history, { enabled: true, trueDenialMinutes: 10, groups: null, maxReportRows: 1000 });
  t.deepEqual(c.history.retention, { minuteDays: 7, hourDays: 90, dayDays: 1825, sessionDays: 400, maxRows: 1_000_000 });
  t.deepEqual(c.history.workingHours, { days: [1, 2, 3, 4, 5], start: 540, end: 1080 });
  const set = parseConfig({ history: { workingHours: { days: [1, 2, 3, 4], start: '08:30', end: '17:00' }, groups: { lighting: ['ann', 'bob'] }, advice: { atLimitPercent: 10 } } });
  t.deepEqual(set.history.workingHours, { days: [1, 2, 3, 4], start: 510, end: 1020 });
  t.deepEqual(set.history.groups, { lighting: ['ann', 'bob'] });
  t.is(set.history.advice.atLimitPercent, 10);
  t.throws(() => parseConfig({ history: { hourDays: 3 } }), { message: /history\.hourDays \(3\) must not be below history\.minuteDays \(7\)/ });
  t.throws(() => parseConfig({ history: { workingHours: { start: '9am' } } }), { message: /history\.workingHours\.start must be a local time HH:MM/ });
  t.throws(() => parseConfig({ history: { workingHours: { days: [0] } } }), { message: /days\[0\] must be a weekday number: 1 Monday/ });
  t.throws(() => parseConfig({ history: { retain: 3 } }), { message: /history\.retain is not a known field/ });
});

test('a lease that ended while licd was stopped gets its session record at the next start', async (t) => {
  const { sessionsEndedWhileStopped } = await import('../../src/core/history.ts');
  const l: Lease = { id: 'L1', feature: 'render', count: 1, clientId: 'c', pid: 1, user: 'ann', host: 'h', since: T0, expiresAt: T0 + HOUR, ttlMs: HOUR, disconnectedAt: null };
  const m = sessionsEndedWhileStopped([l], []);
  t.deepEqual(m, [{ kind: 'rec.put', space: 'history', key: `s!${String(T0 + HOUR).padStart(13, '0')}!l!L1`, value: { kind: 'lease', id: 'L1', feature: 'render', user: 'ann', host: 'h', count: 1, start: T0, end: T0 + HOUR, how: 'expired' } }]);
});

test('a checkout of a feature nobody licenses is a denial record, but gets no usage rows of its own', async (t) => {
  const { clock, store, history, ask } = setup();
  await history.start(['render'], { timers: false });
  for (let i = 0; i < 50; i++) t.false((await ask({ op: 'checkout', feature: `made_up_${i % 5}`, user: 'eve', host: 'h', pid: 1, holder: HOLDER })).ok);
  clock.advance(2 * MINUTE);
  await history.flush();
  const keys = [...store.records.keys()].map((k) => k.slice('history!'.length));
  t.deepEqual(new Set(keys.filter((k) => k.startsWith('m!')).map((k) => k.split('!')[2])), new Set(['render']));
  const denials = [...store.records].filter(([k]) => k.startsWith('history!x!')).map(([, v]) => v as { feature: string; n: number; code: string });
  t.is(denials.length, 5, 'one record per feature name and minute');
  t.true(denials.every((d) => d.n === 10 && d.code === 'UNKNOWN_FEATURE'));
});

test('roll-ups on a real LevelDB keep the totals, and a report reads the same before and after', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { LevelStore } = await import('../../src/store/level-store.ts');
  const dir = mkdtempSync(join(tmpdir(), 'licd-hist-'));
  const store = await LevelStore.open(join(dir, 'db'));
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // Two days of minutes of one feature: 1 seat held on even minutes, 2 on odd; a denial an hour.
  const rows: UsageRow[] = Array.from({ length: 2 * 1440 }, (_, i) => {
    const seats = 1 + (i % 2);
    return { ...emptyRow('render', T0 + i * MINUTE, MINUTE, 2), cov: MINUTE, heldMs: seats * MINUTE, leasedMs: seats * MINUTE, peak: seats, atLimitMs: seats === 2 ? MINUTE : 0, denials: (i % 60 === 0 ? { NO_SEATS: 1 } : {}) as Record<string, number> };
  });
  await store.commit(rows.map((r) => ({ kind: 'rec.put' as const, space: 'history' as const, key: rowKey(r), value: r })));
  const { clock, history, ask } = setup({ ...defaultHistoryConfig, retention: { ...defaultHistoryConfig.retention, minuteDays: 1, hourDays: 2 } }, store as unknown as MemoryStore, new ManualClock(T0 + 3 * DAY + HOUR));
  const body = { op: 'report.usage', from: new Date(T0).toISOString(), to: new Date(T0 + 2 * DAY).toISOString() };
  const before = ((await ask(body, true)) as { result?: { rows: unknown[] } }).result!.rows;
  t.like(before[0], { feature: 'render', seatHours: 72, peak: 2, atLimitHours: 24, denials: 48, coveredHours: 48 });
  for (let i = 0; i < 20; i++) if ((await history.maintain(clock.t)).rolled === 0) break;
  const left: string[] = [];
  for await (const [k] of store.scan('history')) left.push(k.slice(0, 2));
  // Minutes past 1 day became hours; hours that start more than 2 days ago (day 0) became a day.
  t.deepEqual([left.filter((k) => k === 'm!').length, left.filter((k) => k === 'h!').length, left.filter((k) => k === 'd!').length], [0, 24, 1]);
  t.deepEqual(((await ask(body, true)) as { result?: { rows: unknown[] } }).result!.rows, before);
});

test('report ops refuse a bad period or by naming the field, and say when history is off', async (t) => {
  const { ask } = setup();
  const err = async (body: Record<string, unknown>, s = setup()) => ((await s.ask(body, true)) as { error?: { code: string; message: string } }).error;
  t.like(await err({ op: 'report.usage', from: 'last week' }), { code: 'BAD_REQUEST', message: 'from must be an ISO 8601 time in UTC or with an offset (2026-11-01T00:00:00Z) or a date (2026-11-01, UTC midnight)' });
  t.like(await err({ op: 'report.users', from: '2026-11-02', to: '2026-11-01' }), { code: 'BAD_REQUEST' });
  t.regex((await err({ op: 'report.users', from: '2026-11-02', to: '2026-11-01' }))!.message, /^from must be before to \(2026-11-01T00:00:00.000Z\)/);
  t.like(await err({ op: 'report.denials', by: 'planet' }), { code: 'BAD_REQUEST', message: 'by must be one of user, host, group, feature' });
  t.like(await err({ op: 'report.usage' }, setup({ ...defaultHistoryConfig, enabled: false })), { code: 'CONFIG_INVALID' });
  t.regex((await err({ op: 'report.usage' }, setup({ ...defaultHistoryConfig, enabled: false })))!.message, /history\.enabled is false in its config\); set it to true and restart licd/);
  t.false((await ask({ op: 'report.usage' })).ok, 'admins only');
});

test('a clock step forward counts nothing for the step: a held seat across a year-long step gives a few rows, not a year of minutes', (t) => {
  const t0 = Date.UTC(2026, 10, 30, 12, 0, 0);
  const sink = new HistorySink({ licensed: () => 2, now: t0 });
  const lease: Lease = { id: 'L1', feature: 'render', count: 1, clientId: 'c', pid: 1, user: 'u', host: 'h', since: t0, expiresAt: t0 + 60_000, ttlMs: 60_000, disconnectedAt: null };
  const events = [{ type: 'lease.granted' as const, at: t0, lease }];
  sink.prepare(events);
  sink.settle(events, true);
  const year = 365 * DAY;
  const now = t0 + 90_000 + year;
  sink.shift(year, now);
  const rows = sink.flush(now + 2 * MINUTE).filter((m) => m.kind === 'rec.put');
  t.true(rows.length <= 4, `${rows.length} rows`);
  const heldMs = rows.reduce((n, m) => n + ((m as { value: UsageRow }).value.heldMs ?? 0), 0);
  t.true(heldMs <= 90_000 + 2 * MINUTE + 1, `held ${heldMs} ms: the step is not counted`);
  // A step the daemon has not absorbed yet: with the daemon's maxGapMs the gap starts a new row.
  const other = new HistorySink({ licensed: () => 2, now: t0, maxGapMs: HOUR });
  other.prepare(events);
  other.settle(events, true);
  t.true(other.flush(t0 + year).filter((m) => m.kind === 'rec.put').length <= 4);
});
