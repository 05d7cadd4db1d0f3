/**
 * The alert rules (src/core/alerts.ts) with an injected clock: expiry stages at 30, 7 and 1 days and
 * at the end, a feature at its limit for N minutes, double use and what is not one; and the
 * exposition writer's escaping (src/metrics/exposition.ts).
 */
import test from 'ava';
import { AlertBook, doubleUses, type AlertFeature, type AlertInput } from '../../src/core/alerts.ts';
import { Counter, Histogram, Registry, escapeLabelValue } from '../../src/metrics/exposition.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2026-11-01T09:00:00Z');

function feature(o: Partial<AlertFeature> = {}): AlertFeature {
  return { name: 'nuke_i', total: 2, leased: 0, borrowed: 0, held: 0, free: 2, expires: null, ...o };
}

function input(now: number, o: Partial<AlertInput> = {}): AlertInput {
  return { now, features: [feature()], leases: [], borrows: [], dongle: { present: true, absentMs: null, graceMs: 300_000 }, quarantine: [], warnings: [], ...o };
}

test('a feature expiring: info at 30 days, warning at 7, critical at 1 and at its end; each stage once; gone with a renewed license', (t) => {
  const book = new AlertBook({ atLimitMs: 15 * 60_000 });
  const expires = T0 + 45 * DAY;
  const at = (now: number, exp = expires) => book.evaluate(input(now, { features: [feature({ expires: exp })] }));
  t.deepEqual(at(T0), { raised: [], changed: [], cleared: [] }, '45 days left: nothing');
  const r30 = at(expires - 30 * DAY);
  t.is(r30.raised.length, 1);
  t.like(r30.raised[0], { id: 'expiry:nuke_i', kind: 'expiry', severity: 'info', stage: 30, feature: 'nuke_i', since: new Date(expires - 30 * DAY).toISOString() });
  t.regex(r30.raised[0]!.message, /nuke_i's license ends at 2026-12-16T09:00:00\.000Z, in 30 days \(within 30 days\); renew it/);
  t.deepEqual(at(expires - 20 * DAY), { raised: [], changed: [], cleared: [] }, 'days passing within a stage are not news');
  const r7 = at(expires - 7 * DAY + 1000);
  t.like(r7.changed[0], { severity: 'warning', stage: 7, since: new Date(expires - 30 * DAY).toISOString() });
  const r1 = at(expires - 5 * 3_600_000);
  t.like(r1.changed[0], { severity: 'critical', stage: 1 });
  t.regex(r1.changed[0]!.message, /in 5 hours \(within 1 day\)/);
  const r0 = at(expires + 1);
  t.like(r0.changed[0], { severity: 'critical', stage: 0 });
  t.regex(r0.changed[0]!.message, /nuke_i's license ended at .*FEATURE_EXPIRED/);
  // A renewed license: the alert clears.
  const renewed = at(expires + 2, expires + 365 * DAY);
  t.is(renewed.cleared.length, 1);
  t.deepEqual(book.list(), []);
});

test('a feature at its limit: an alert only after N minutes without a free seat; a free seat clears it and restarts the count', (t) => {
  const book = new AlertBook({ atLimitMs: 15 * 60_000 });
  const full = [feature({ leased: 1, borrowed: 1, free: 0 })];
  t.deepEqual(book.evaluate(input(T0, { features: full })).raised, []);
  t.deepEqual(book.evaluate(input(T0 + 14 * 60_000, { features: full })).raised, [], '14 minutes: not yet');
  const r = book.evaluate(input(T0 + 15 * 60_000, { features: full }));
  t.like(r.raised[0], { id: 'at-limit:nuke_i', kind: 'at-limit', severity: 'warning', since: new Date(T0).toISOString() });
  t.regex(r.raised[0]!.message, /nuke_i has had no free seat since 2026-11-01T09:00:00\.000Z \(2 of 2 in use: 1 leased, 1 borrowed\)/);
  // The split of the seats changes while it stays full: no news.
  t.deepEqual(book.evaluate(input(T0 + 16 * 60_000, { features: [feature({ leased: 2, free: 0 })] })).changed, []);
  // One seat free for a moment: cleared; full again: the count starts over.
  t.is(book.evaluate(input(T0 + 17 * 60_000)).cleared.length, 1);
  t.deepEqual(book.evaluate(input(T0 + 18 * 60_000, { features: full })).raised, []);
  t.deepEqual(book.evaluate(input(T0 + 32 * 60_000, { features: full })).raised, []);
  t.is(book.evaluate(input(T0 + 33 * 60_000, { features: full })).raised.length, 1);
});

test('double use: borrowed here and floating there, or borrowed on two hosts; not floating on many nodes, not the same machine, not a lost seat', (t) => {
  const b = (user: string, hostName: string, lost = false) => ({ feature: 'vray_render', user, hostName, lost });
  const l = (user: string, host: string, feature = 'vray_render') => ({ feature, user, host });
  t.deepEqual(doubleUses({ borrows: [], leases: [l('ann', 'n1'), l('ann', 'n2'), l('ann', 'n3')] }), [], 'floating on render nodes is normal');
  t.deepEqual(doubleUses({ borrows: [b('ann', 'Laptop.studio.lan')], leases: [l('ann', 'laptop')] }), [], 'the same machine (case and domain aside)');
  t.deepEqual(doubleUses({ borrows: [b('ann', 'laptop')], leases: [l('ann', 'ws', 'nuke_i')] }), [], 'another feature');
  t.deepEqual(doubleUses({ borrows: [b('ann', 'laptop', true)], leases: [l('ann', 'ws')] }), [], 'a seat marked lost');
  t.deepEqual(doubleUses({ borrows: [b('ann', 'laptop')], leases: [l('bob', 'ws')] }), [], 'another user');
  t.deepEqual(doubleUses({ borrows: [b('ann', 'laptop')], leases: [l('ann', 'ws')] }), [{ feature: 'vray_render', user: 'ann', borrowed: ['laptop'], floating: ['ws'] }]);
  t.deepEqual(doubleUses({ borrows: [b('ann', 'laptop'), b('ann', 'home-pc')], leases: [] }), [{ feature: 'vray_render', user: 'ann', borrowed: ['home-pc', 'laptop'], floating: [] }]);
  const book = new AlertBook({ atLimitMs: 60_000 });
  const r = book.evaluate(input(T0, { borrows: [b('ann', 'laptop'), b('ann', 'home-pc')] }));
  t.regex(r.raised[0]!.message, /user ann holds it borrowed on home-pc and laptop/);
  t.is(r.raised[0]!.summary, 'double use of vray_render: one user holds it borrowed on 2 hosts');
});

test('the dongle, a quarantine and the clock warnings are alerts; the dongle\'s grace ending makes it critical', (t) => {
  const book = new AlertBook({ atLimitMs: 60_000 });
  const absent = (absentMs: number) => ({ present: false, reason: 'unplugged', absentMs, graceMs: 300_000 });
  const r = book.evaluate(input(T0, { dongle: absent(1000), quarantine: [{ feature: 'nuke_i', seats: 1, until: T0 + DAY }], warnings: [['clock', 'the clock was set back by 2 h'], ['dongle', 'x'], ['store', 'store failing: no space']] }));
  t.deepEqual(r.raised.map((a) => `${a.kind}/${a.severity}`).sort(), ['clock/warning', 'dongle-absent/warning', 'quarantine/critical', 'store/critical']);
  const later = book.evaluate(input(T0 + 301_000, { dongle: absent(301_000), quarantine: [{ feature: 'nuke_i', seats: 1, until: T0 + DAY }], warnings: [['clock', 'the clock was set back by 2 h']] }));
  t.like(later.changed[0], { kind: 'dongle-absent', severity: 'critical' });
  t.deepEqual(later.cleared.map((a) => a.kind), ['store']);
});

test('exposition: label values and help escaped as the format says; counters end in _total; histogram buckets cumulative', (t) => {
  t.is(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  const r = new Registry();
  const c = r.add(new Counter('x_events_total', 'line one\nback\\slash'));
  c.inc({ feature: 'we"ird\\\n' });
  const h = r.add(new Histogram('x_seconds', 'h', [0.1, 1]));
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  t.is(
    r.render(),
    [
      '# HELP x_events_total line one\\nback\\\\slash',
      '# TYPE x_events_total counter',
      'x_events_total{feature="we\\"ird\\\\\\n"} 1',
      '# HELP x_seconds h',
      '# TYPE x_seconds histogram',
      'x_seconds_bucket{le="0.1"} 1',
      'x_seconds_bucket{le="1"} 2',
      'x_seconds_bucket{le="+Inf"} 3',
      'x_seconds_sum 5.55',
      'x_seconds_count 3',
      '',
    ].join('\n'),
  );
  t.throws(() => new Counter('x_events', 'no _total'), { message: /must end in _total/ });
});
