/**
 * A month of synthetic use through the real service (LicenseService + MemoryStore, injected clock):
 * the report rows and the advice text are the ones the plan implies; roll-ups keep the totals; a
 * restart (a new service over the same store, mid-minute) keeps counting without a gap.
 */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { EventBus } from '../../src/core/events.ts';
import { DAY, HOUR, MINUTE } from '../../src/core/history.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { utcTime } from '../../src/core/reports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { UsageHistory, defaultHistoryConfig, type HistoryConfig } from '../../src/history/history.ts';
import { ManualClock } from '../helpers/daemon.ts';

const lic = (name: string, seats: number): FeatureLicense => ({ name, product: name, version: '1.0', seats, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } });
const FEATURES = [lic('busy', 4), lic('idle', 4)];
// 2026-06-01 is a Monday: 30 days hold 22 working days (4 weeks and a Monday and Tuesday).
const START = Date.parse('2026-06-01T00:00:00Z');
const END = START + 30 * DAY;

/** mulberry32: a small seeded PRNG, so the month is the same at every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Action = { at: number; act: 'out' | 'in' | 'try'; feature: string; user: string };

/**
 * The plan: on working days, ann, bob, cat and dan hold all 4 seats of busy from 09:00 to 18:00;
 * eve is refused at 10:00 and never gets one (a true denial); on some days fay is refused at
 * 10:20 too (another true denial in the same hour); gus is refused at 14:00, and at 14:03 ann
 * hands him her seat until 14:30 (a denial followed by a grant: not a true one). idle: on some
 * days hal holds its one seat for 1 to 3 hours.
 */
function plan(seed: number, days = 30) {
  const rnd = prng(seed);
  const acts: Action[] = [];
  let fayDays = 0;
  let idleMs = 0;
  let workDays = 0;
  for (let d = 0; d < days; d++) {
    const day = START + d * DAY;
    const weekday = utcTime(day).weekday;
    if (weekday <= 5) {
      workDays++;
      for (const u of ['ann', 'bob', 'cat', 'dan']) acts.push({ at: day + 9 * HOUR, act: 'out', feature: 'busy', user: u });
      acts.push({ at: day + 10 * HOUR, act: 'try', feature: 'busy', user: 'eve' });
      acts.push({ at: day + 10 * HOUR + 30_000, act: 'try', feature: 'busy', user: 'eve' });
      if (rnd() < 0.4) {
        fayDays++;
        acts.push({ at: day + 10 * HOUR + 20 * MINUTE, act: 'try', feature: 'busy', user: 'fay' });
      }
      acts.push({ at: day + 14 * HOUR, act: 'try', feature: 'busy', user: 'gus' });
      acts.push({ at: day + 14 * HOUR + 3 * MINUTE, act: 'in', feature: 'busy', user: 'ann' });
      acts.push({ at: day + 14 * HOUR + 3 * MINUTE, act: 'out', feature: 'busy', user: 'gus' });
      acts.push({ at: day + 14 * HOUR + 30 * MINUTE, act: 'in', feature: 'busy', user: 'gus' });
      acts.push({ at: day + 14 * HOUR + 30 * MINUTE, act: 'out', feature: 'busy', user: 'ann' });
      for (const u of ['ann', 'bob', 'cat', 'dan']) acts.push({ at: day + 18 * HOUR, act: 'in', feature: 'busy', user: u });
    }
    if (rnd() < 0.6) {
      const start = day + Math.floor(rnd() * 20) * HOUR + Math.floor(rnd() * 60) * MINUTE + 7_000;
      const len = (1 + Math.floor(rnd() * 3)) * HOUR;
      idleMs += len;
      acts.push({ at: start, act: 'out', feature: 'idle', user: 'hal' });
      acts.push({ at: start + len, act: 'in', feature: 'idle', user: 'hal' });
    }
  }
  // Stable: actions at the same time keep their order (a check-in before the checkout it frees a seat for).
  acts.sort((a, b) => a.at - b.at);
  return { acts, fayDays, idleMs, workDays };
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const holderOf = (user: string) => `holder-secret-of-${user}-for-tests`.padEnd(24, 'x');

function world(store: MemoryStore, clock: ManualClock, config: HistoryConfig) {
  let n = 0;
  const table = new SeatTable(FEATURES, () => `L${clock.now().toString(36)}${++n}`);
  const events = new EventBus((_, e) => {
    throw e;
  });
  const svc = new LicenseService({ clock, store, table, entitlement: null, policy: { ...defaultLeasePolicy, maxTtlSeconds: 86400 }, log: silentLog, version: 'test', holderHash: sha256HolderHash, events });
  const history = new UsageHistory({
    service: svc,
    store,
    clock,
    log: silentLog,
    config,
    licensed: (f) => table.license(f)?.seats ?? 0,
    leases: () => table.allLeases(),
    borrows: () => table.allBorrows(),
    limitGroups: () => ({}),
    localTime: utcTime,
  });
  events.add(history.sink);
  const ask = (req: Record<string, unknown>, admin = false) => svc.handle(admin ? 'admin-1' : String(req.user ?? 'x'), admin, new TextEncoder().encode(JSON.stringify({ id: '1', ...req })));
  return { table, svc, history, ask };
}

async function start(store: MemoryStore, clock: ManualClock, config: HistoryConfig) {
  const w = world(store, clock, config);
  const loaded = await store.load();
  const restored = w.table.restore(loaded.leases, loaded.borrows, clock.now());
  await store.commit(restored.mutations);
  await w.history.start(w.table.featureNames(), { timers: false });
  return w;
}

type World = Awaited<ReturnType<typeof start>>;

async function act(w: World, a: Action): Promise<boolean> {
  if (a.act === 'in') {
    const r = await w.ask({ op: 'checkin', user: a.user, feature: a.feature, holder: holderOf(a.user) });
    return r.ok && (r.result as { released: string[] }).released.length === 1;
  }
  const r = await w.ask({ op: 'checkout', feature: a.feature, user: a.user, host: `ws-${a.user}`, pid: 1, holder: holderOf(a.user), ttl: 86400 });
  return r.ok;
}

async function report(w: World, op: string, body: Record<string, unknown> = {}) {
  const r = await w.ask({ op, ...body }, true);
  if (!r.ok) throw new Error(`${op}: ${JSON.stringify(r.error)}`);
  return r.result as { rows: Array<Record<string, unknown>>; items: Array<Record<string, unknown>>; more: number };
}

/** Runs the month; `restartAt`: stop and start a new service over the same store at that time. */
async function runMonth(seed: number, restartAt: number | null, days = 30) {
  const clock = new ManualClock(START);
  const store = new MemoryStore();
  const config: HistoryConfig = { ...defaultHistoryConfig, retention: { ...defaultHistoryConfig.retention, minuteDays: 7, hourDays: 14 } };
  let w = await start(store, clock, config);
  const p = plan(seed, days);
  const outcomes: string[] = [];
  let lastFlush = START;
  let restarted = false;
  for (const a of p.acts) {
    if (restartAt !== null && !restarted && a.at > restartAt) {
      clock.t = restartAt;
      await w.history.stop();
      w = await start(store, clock, config);
      restarted = true;
    }
    clock.t = a.at;
    if (a.at - lastFlush >= HOUR) {
      await w.history.flush();
      lastFlush = a.at;
    }
    outcomes.push(`${a.act}:${a.user}:${(await act(w, a)) ? 'ok' : 'refused'}`);
  }
  clock.t = START + days * DAY;
  await w.history.flush();
  return { w, store, clock, plan: p, outcomes, config };
}


const body = { from: new Date(START).toISOString(), to: new Date(END).toISOString() };

test('a month of synthetic use gives the expected report rows and advice', async (t) => {
  t.timeout(120_000);
  const { w, plan: p, outcomes } = await runMonth(7, null);
  // The plan did what it says: eve, fay and gus refused, every other step ok.
  t.is(outcomes.filter((o) => o.endsWith('refused')).length, p.workDays * 3 + p.fayDays);
  t.true(outcomes.filter((o) => o.endsWith('refused')).every((o) => /^out:(eve|fay|gus)|^try:(eve|fay|gus)/.test(o)));
  t.true(p.fayDays > 0 && p.fayDays < p.workDays, 'the seed gives days with and without fay');

  const usage = await report(w, 'report.usage', body);
  const busy = usage.rows.find((r) => r.feature === 'busy')!;
  const idle = usage.rows.find((r) => r.feature === 'idle')!;
  t.like(busy, { licensed: 4, peak: 4, seatHours: 4 * 9 * p.workDays, atLimitHours: 9 * p.workDays, atLimitPercent: Math.round(((9 * p.workDays) / (30 * 24)) * 1000) / 10, coveredHours: 720 });
  t.is(busy.denials, p.workDays * 3 + p.fayDays, 'every refusal is counted (eve twice a day)');
  t.like(idle, { licensed: 4, peak: 1, seatHours: Math.round((p.idleMs / HOUR) * 100) / 100, atLimitHours: 0, denials: 0 });

  const denials = await report(w, 'report.denials', { ...body, by: 'user' });
  const byUser = Object.fromEntries(denials.rows.map((r) => [r.key, r]));
  // eve's two refusals of a minute are one denial each day; gus got a seat 3 minutes after his.
  t.like(byUser.eve, { refusals: 2 * p.workDays, denials: p.workDays, trueDenials: p.workDays });
  t.like(byUser.fay, { refusals: p.fayDays, denials: p.fayDays, trueDenials: p.fayDays });
  t.like(byUser.gus, { refusals: p.workDays, denials: p.workDays, trueDenials: 0 });
  t.deepEqual((byUser.eve as { codes: unknown }).codes, { NO_SEATS: 2 * p.workDays });

  const users = await report(w, 'report.users', { ...body, by: 'user' });
  const hoursOf = Object.fromEntries(users.rows.map((r) => [r.key, r.seatHours]));
  t.deepEqual(hoursOf, { bob: 9 * p.workDays, cat: 9 * p.workDays, dan: 9 * p.workDays, ann: r2(8.55 * p.workDays), gus: r2(0.45 * p.workDays), hal: r2(p.idleMs / HOUR) });
  const byFeature = await report(w, 'report.users', { ...body, by: 'feature' });
  t.deepEqual(byFeature.rows.map((r) => [r.key, r.seatHours]), [['busy', 36 * p.workDays], ['idle', hoursOf.hal]]);

  const advice = await report(w, 'report.advice', { to: body.to });
  const texts = advice.items.map((i) => i.text);
  t.deepEqual(texts, [
    `busy: at its limit (4 of 4 seats) 100% of working hours (Mon-Fri 09:00-18:00) in the last 30 days, ${p.workDays + p.fayDays} true denials: short by 2 seats`,
    'idle: never above 1 of 4 seats in the last 30 days: could drop to 1 seat',
  ]);
});

test('a restart mid-minute keeps counting without a gap: the days read the same', async (t) => {
  t.timeout(120_000);
  // Day 2, 11:00:30: busy's four seats are held (restored at start) and the minute is half gone.
  const a = await runMonth(7, START + DAY + 11 * HOUR + 30_000, 5);
  const b = await runMonth(7, null, 5);
  const five = { from: body.from, to: new Date(START + 5 * DAY).toISOString() };
  for (const op of ['report.usage', 'report.users', 'report.denials']) t.deepEqual(await report(a.w, op, five), await report(b.w, op, five), op);
  t.like((await report(a.w, 'report.usage', five)).rows[0], { feature: 'busy', seatHours: 4 * 9 * 5, coveredHours: 120 });
});

test('roll-ups to hours and days keep seat-hours, peaks, denials and time at the limit', async (t) => {
  t.timeout(120_000);
  // Ten days, rolled up as a month would be forty days on with 7 and 14 day settings.
  const { w, store, clock } = await runMonth(11, null, 10);
  const end = START + 10 * DAY;
  const ten = { from: body.from, to: new Date(end).toISOString() };
  const before = await report(w, 'report.usage', ten);
  const count = () => [...store.records.keys()].filter((k) => k.startsWith('history!')).reduce((m, k) => ((m[k.slice(8, 10)] = (m[k.slice(8, 10)] ?? 0) + 1), m), {} as Record<string, number>);
  const was = count();
  t.is(was['m!'], 2 * 10 * 1440, 'a row per feature per minute');
  // Minutes past 7 days become hours, hours past 14 days become days: 10 days after the end,
  // every minute is past 7 days, and the first 6 days are past 14.
  clock.t = end + 10 * DAY;
  for (let i = 0; i < 200; i++) {
    const r = await w.history.maintain(clock.t);
    if (r.rolled + r.dropped === 0) break;
  }
  const now = count();
  t.deepEqual([now['m!'] ?? 0, now['h!'], now['d!']], [0, 2 * 4 * 24, 2 * 6]);
  const after = await report(w, 'report.usage', ten);
  t.deepEqual(after.rows, before.rows);
  t.like(before.rows[0], { feature: 'busy', coveredHours: 240 });
});
