/**
 * report.series (the web page's History charts, licctl report series): per feature per hour or
 * per UTC day, through the admin API of a LicenseService with the usage history; its periods add
 * up to report.usage's totals, also after the roll-ups.
 */
import test from 'ava';
import { EventBus } from '../../src/core/events.ts';
import { DAY, HOUR, MINUTE, emptyRow, rowKey, type UsageRow } from '../../src/core/history.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { utcTime } from '../../src/core/reports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { UsageHistory, defaultHistoryConfig } from '../../src/history/history.ts';
import { ManualClock } from '../helpers/daemon.ts';

const T0 = Date.parse('2026-06-01T00:00:00Z');

function setup(store: MemoryStore, clock: ManualClock, config = defaultHistoryConfig) {
  const table = new SeatTable([{ name: 'render', product: 'render', version: '1', seats: 2, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }], () => `L${Math.random().toString(36).slice(2)}`);
  const events = new EventBus();
  const service = new LicenseService({ clock, store, table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 't', holderHash: sha256HolderHash, events });
  const history = new UsageHistory({ service, store, clock, log: silentLog, config, licensed: (f) => table.license(f)?.seats ?? 0, leases: () => table.allLeases(), borrows: () => table.allBorrows(), limitGroups: () => ({}), localTime: utcTime });
  events.add(history.sink);
  const ask = async (req: Record<string, unknown>) => (await service.handle('c1', true, new TextEncoder().encode(JSON.stringify({ id: '1', ...req })))) as { ok: boolean; result?: any; error?: { code: string; message: string } };
  return { history, ask };
}

test('report.series: per hour and per day, adding up to report.usage; after the roll-ups a day row counts in its first hour', async (t) => {
  const store = new MemoryStore();
  // Two days of minutes: 1 seat held on even minutes, 2 on odd; a NO_SEATS denial an hour, a BLOCKED one a day.
  const rows: UsageRow[] = Array.from({ length: 2 * 1440 }, (_, i) => {
    const seats = 1 + (i % 2);
    const denials: Record<string, number> = i % 60 === 0 ? { NO_SEATS: 1 } : {};
    if (i % 1440 === 0) denials.BLOCKED = 1;
    return { ...emptyRow('render', T0 + i * MINUTE, MINUTE, 2), cov: MINUTE, heldMs: seats * MINUTE, leasedMs: seats * MINUTE, peak: seats, atLimitMs: seats === 2 ? MINUTE : 0, denials };
  });
  await store.commit(rows.map((r) => ({ kind: 'rec.put' as const, space: 'history' as const, key: rowKey(r), value: r })));
  const clock = new ManualClock(T0 + 3 * DAY + HOUR);
  const { history, ask } = setup(store, clock, { ...defaultHistoryConfig, retention: { ...defaultHistoryConfig.retention, minuteDays: 1, hourDays: 2 } });
  const period = { from: new Date(T0).toISOString(), to: new Date(T0 + 2 * DAY).toISOString() };

  const hourly = await ask({ op: 'report.series', ...period, by: 'hour', limit: 100 });
  t.true(hourly.ok, JSON.stringify(hourly.error));
  t.is(hourly.result.rows.length, 48);
  t.deepEqual(hourly.result.rows[0], { feature: 'render', t: '2026-06-01T00:00:00.000Z', licensed: 2, peak: 2, averageSeats: 1.5, seatHours: 1.5, coveredHours: 1, denials: 2, codes: { NO_SEATS: 1, BLOCKED: 1 } });
  t.like(hourly.result.rows[1], { t: '2026-06-01T01:00:00.000Z', denials: 1, codes: { NO_SEATS: 1 } });
  const daily = await ask({ op: 'report.series', ...period });
  t.is(daily.result.by, 'day', 'by day unless asked');
  t.deepEqual(
    daily.result.rows.map((r: any) => [r.t, r.seatHours, r.peak, r.denials]),
    [
      ['2026-06-01T00:00:00.000Z', 36, 2, 25],
      ['2026-06-02T00:00:00.000Z', 36, 2, 25],
    ],
  );
  const usage = (await ask({ op: 'report.usage', ...period })).result.rows[0];
  const sum = (rs: any[], f: string) => rs.reduce((a, r) => a + r[f], 0);
  t.is(sum(hourly.result.rows, 'seatHours'), usage.seatHours);
  t.is(sum(hourly.result.rows, 'denials'), usage.denials);

  // Roll-ups: day 1's minutes become hours, day 0's hours a day. The daily series is unchanged;
  // the hourly one shows day 0 whole at its first hour.
  for (let i = 0; i < 20; i++) if ((await history.maintain(clock.t)).rolled === 0) break;
  t.deepEqual((await ask({ op: 'report.series', ...period })).result.rows, daily.result.rows);
  const after = (await ask({ op: 'report.series', ...period, by: 'hour', limit: 100 })).result.rows;
  t.is(after.length, 25);
  t.like(after[0], { t: '2026-06-01T00:00:00.000Z', seatHours: 36, coveredHours: 24, averageSeats: 1.5 });
  t.like(after[24], { t: '2026-06-02T23:00:00.000Z', seatHours: 1.5 });

  t.like((await ask({ op: 'report.series', by: 'week' })).error, { code: 'BAD_REQUEST', message: 'by must be one of day, hour' });
  t.regex((await ask({ op: 'report.series', by: 'hour', from: '2020-01-01' })).error!.message, /^from must be at most 10000 hours before to/);
});
