/**
 * The failover server's rules (src/core/failover.ts) on an injected clock, and the daemon's part
 * (src/daemon/failover.ts) wired to a real LicenseService and SeatTable with a stand-in for the
 * broker link: dormant while the primary is online or offline for less than the delay, active
 * after, the hours cap per month, and what clients are told.
 */
import test from 'ava';
import { EventEmitter } from 'node:events';
import type { LinkClient } from '../../src/mqtt/link-client.ts';
import { fromBase64url, toBase64url, toHex } from '../../src/core/bytes.ts';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import { EventBus, type SeatEvent } from '../../src/core/events.ts';
import { FailoverPlan, mergeFailoverLicenses, META_FAILOVER, verifyFailover, type FailoverBody } from '../../src/core/failover.ts';
import { ClockGuard } from '../../src/core/integrity.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { FailoverPart, loadFailoverEntitlement } from '../../src/daemon/failover.ts';
import type { Config } from '../../src/config.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventFields } from '../../src/core/audit.ts';
import { LicdMetrics } from '../../src/metrics/licd-metrics.ts';
import { generateVendorKey, issueFailover } from '../../src/vendor.ts';
import { ManualClock, until } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const vendor = generateVendorKey(ed, { bytes: (n) => new Uint8Array(n).map((_, i) => (i * 5 + 1) & 255) }, true);
const vpk = Uint8Array.from(Buffer.from(vendor.publicKey, 'hex'));
const dongleB = { serial: 'EMU-B', publicKey: ed.publicKey(new Uint8Array(32).fill(2)) };
const T0 = Date.parse('2026-06-30T22:00:00Z');

function body(over: Partial<FailoverBody> = {}): FailoverBody {
  return {
    id: 'FO-1',
    issuedAt: new Date(T0).toISOString(),
    customer: 'Studio',
    dongle: { serial: dongleB.serial, publicKey: toHex(dongleB.publicKey), emulated: true },
    primary: { server: 'box-a', dongle: 'EMU-A' },
    afterSeconds: 600,
    maxHoursPerMonth: 1,
    features: [
      { name: 'nuke_i', version: '15.1', seats: 2, expires: null, type: 'interface' },
      { name: 'houdini', version: '20.0', seats: 1, expires: null, type: 'interface' },
    ],
    ...over,
  };
}
const verify = (env: unknown, o: { serverId?: string; now?: number } = {}) => verifyFailover(env, { vendorPublicKey: vpk, dongle: dongleB, serverId: o.serverId ?? 'box-b', now: o.now ?? T0, ed });
const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return `${(e as LicdError).code}: ${(e as Error).message}`;
  }
};

test('a failover entitlement verifies; altered, another dongle, this box as primary, expired and malformed are refused, each saying which', (t) => {
  const env = issueFailover(body(), vendor, ed);
  const e = verify(env);
  t.is(e.primary.server, 'box-a');
  t.is(e.afterMs, 600_000);
  t.deepEqual(e.features.map((f) => [f.name, f.seats, f.borrow.allowed]), [['nuke_i', 2, false], ['houdini', 1, false]]);

  const json = JSON.parse(Buffer.from(fromBase64url(env.body)).toString()) as FailoverBody;
  json.features[0]!.seats = 200;
  t.regex(codeOf(() => verify({ ...env, body: toBase64url(new TextEncoder().encode(JSON.stringify(json))) })), /^ENTITLEMENT_INVALID: .*does not verify with the vendor key/);
  // An ordinary entitlement's signature is no failover entitlement's (another format, another domain).
  t.regex(codeOf(() => verify({ ...env, format: 'licd-entitlement/1' })), /^ENTITLEMENT_INVALID/);
  t.regex(codeOf(() => verifyFailover(env, { vendorPublicKey: vpk, dongle: { ...dongleB, serial: 'EMU-X' }, serverId: 'box-b', now: T0, ed })), /for another dongle \(serial EMU-B\); the dongle here is EMU-X/);
  t.regex(codeOf(() => verify(env, { serverId: 'box-a' })), /names this box \(box-a\) as the primary/);
  const old = issueFailover(body({ features: [{ name: 'nuke_i', version: '15.1', seats: 1, expires: '2026-01-01T00:00:00Z', type: 'interface' }] }), vendor, ed);
  t.regex(codeOf(() => verify(old)), /has expired/);
  // The vendor tool refuses to sign what licd would refuse to load.
  t.regex(codeOf(() => issueFailover(body({ afterSeconds: 0 }), vendor, ed)), /^ENTITLEMENT_INVALID: .*afterSeconds/);
  t.regex(codeOf(() => issueFailover(body({ primary: { server: 'Box A' } }), vendor, ed)), /primary\.server/);
  t.regex(codeOf(() => issueFailover(body({ features: [] }), vendor, ed)), /features/);
  t.regex(codeOf(() => issueFailover({ ...body(), borrow: true } as unknown as FailoverBody, vendor, ed)), /borrow/);
});

test('dormant while the primary is unseen or online and until it has been offline for the delay; active after; back online ends it', (t) => {
  const e = verify(issueFailover(body({ maxHoursPerMonth: 100 }), vendor, ed));
  let now = T0;
  const plan = new FailoverPlan(e, null, now);
  t.is(plan.phase.kind, 'unseen');
  t.regex(plan.refusal('nuke_i', 1)!.message, /box-a's server state has not been seen/);
  t.is(plan.refusal('vray_render', 1), null, "not the primary's feature: no say");

  t.deepEqual(plan.observe({ state: 'online', dongleSerial: 'EMU-A' }, now), []);
  const online = plan.refusal('nuke_i', 1)!;
  t.is(online.code, 'FAILOVER_DORMANT');
  t.regex(online.message, /box-a is online: take the seat from box-a/);

  now += 5000;
  t.deepEqual(plan.observe({ state: 'offline', dongleSerial: 'EMU-A' }, now), []);
  const offlineAt = now;
  t.deepEqual(plan.phase, { kind: 'waiting', offlineSince: offlineAt, startsAt: offlineAt + 600_000 });
  t.regex(plan.refusal('nuke_i', 1)!.message, new RegExp(`offline since ${new Date(offlineAt).toISOString()} and failover starts at ${new Date(offlineAt + 600_000).toISOString()}`));
  // The same retained state again (a reconnect) does not restart the delay.
  now += 599_000;
  t.deepEqual(plan.observe({ state: 'offline', dongleSerial: 'EMU-A' }, now), []);
  t.is(plan.phase.kind, 'waiting');
  now += 1000;
  t.deepEqual(plan.tick(now), [{ kind: 'started', at: now, offlineSince: offlineAt }]);
  t.true(plan.active);
  t.is(plan.refusal('nuke_i', 1), null);
  t.is(plan.view(now).state, 'active');

  now += 1800_000;
  t.deepEqual(plan.tick(now), []);
  const back = plan.observe({ state: 'online', dongleSerial: 'EMU-A' }, now);
  t.deepEqual(back, [{ kind: 'ended', at: now, since: offlineAt + 600_000, reason: 'primary-back', usedMs: 1800_000 }]);
  t.regex(plan.endedMessage(back[0] as Extract<(typeof back)[0], { kind: 'ended' }>), /box-a is back online/);
  t.is(plan.view(now).usedHours, 0.5);

  // Offline again: the delay starts over from then.
  now += 1000;
  plan.observe({ state: 'offline' }, now);
  t.is(plan.phase.kind, 'waiting');
});

test('the hours cap stops failover when this month is used up; a new month starts from zero', (t) => {
  const e = verify(issueFailover(body({ afterSeconds: 60, maxHoursPerMonth: 1 }), vendor, ed));
  let now = T0; // 22:00 on the last day of June
  const plan = new FailoverPlan(e, { month: '2026-06', usedMs: 1200_000 }, now);
  plan.observe({ state: 'offline' }, now);
  now += 60_000;
  t.is(plan.tick(now)[0]?.kind, 'started');
  // 20 minutes were used before; 40 more reach the hour.
  now += 39 * 60_000;
  t.deepEqual(plan.tick(now), []);
  now += 60_000;
  const ended = plan.tick(now);
  t.deepEqual(ended, [{ kind: 'ended', at: now, since: T0 + 60_000, reason: 'hours-used', usedMs: 3600_000 }]);
  t.is(plan.phase.kind, 'used-up');
  t.is(plan.view(now).state, 'used-up');
  const refused = plan.refusal('nuke_i', 1)!;
  t.is(refused.code, 'FAILOVER_DORMANT');
  t.regex(refused.message, /the 1 failover hours of 2026-06 are used up/);
  // July: the primary is still offline, so failover resumes, counted from zero.
  now = Date.parse('2026-07-01T00:00:01Z');
  t.is(plan.tick(now)[0]?.kind, 'started');
  t.deepEqual(plan.used, { month: '2026-07', usedMs: 0 });
  // A usage record of an older month counts nothing.
  t.deepEqual(new FailoverPlan(e, { month: '2026-05', usedMs: 9e9 }, T0).used, { month: '2026-06', usedMs: 0 });
});

test('a box publishing as the primary with another dongle or license keeps failover dormant', (t) => {
  const e = verify(issueFailover(body({ afterSeconds: 1, primary: { server: 'box-a', dongle: 'EMU-A', license: 'LIC-A' } }), vendor, ed));
  const plan = new FailoverPlan(e, null, T0);
  plan.observe({ state: 'offline', dongleSerial: 'EMU-Z', license: 'LIC-A' }, T0);
  t.deepEqual(plan.tick(T0 + 5000), []);
  t.is(plan.phase.kind, 'mismatch');
  t.regex(plan.refusal('nuke_i', 1)!.message, /server box-a has dongle EMU-Z, not EMU-A/);
  plan.observe({ state: 'offline', dongleSerial: 'EMU-A', license: 'LIC-Q' }, T0 + 6000);
  t.regex(plan.refusal('nuke_i', 1)!.message, /serves license LIC-Q, not LIC-A/);
  // The delay counts from when the right box is seen offline.
  t.deepEqual(plan.observe({ state: 'offline', dongleSerial: 'EMU-A', license: 'LIC-A' }, T0 + 7000), []);
  t.is(plan.phase.kind, 'waiting');
  t.is(plan.tick(T0 + 8000)[0]?.kind, 'started');
});

test("merged licenses add the primary's seats to a feature both have; the primary's own features are not borrowable", (t) => {
  const own: FeatureLicense[] = [{ name: 'nuke_i', version: '15.1', seats: 1, expires: null, type: 'interface', product: 'Nuke', borrow: { allowed: true, maxHours: 100 } }];
  const e = verify(issueFailover(body(), vendor, ed));
  const m = mergeFailoverLicenses(own, e.features);
  t.deepEqual(m.map((l) => [l.name, l.seats, l.borrow.allowed]), [['nuke_i', 3, true], ['houdini', 1, false]]);
  t.is(own[0]!.seats, 1, 'the own license is not changed');
});

/** The daemon's part on a real service and seat table, with a stand-in for the broker link. */
function box(o: { afterSeconds?: number; maxHoursPerMonth?: number; clockHwm?: number; restart?: { store: MemoryStore; at: number } } = {}) {
  const clock = new ManualClock(o.restart?.at ?? T0);
  const store = o.restart?.store ?? new MemoryStore();
  let own: FeatureLicense[] = [{ name: 'nuke_i', version: '15.1', seats: 1, expires: null, type: 'interface', product: 'Nuke', borrow: { allowed: false, maxHours: 0 } }];
  let n = 0;
  const table = new SeatTable(own, () => `R${o.restart ? 'R' : ''}${++n}`);
  if (o.restart) void store.commit(table.restore([...store.leases.values()], [], clock.now()).mutations);
  const clockGuard = new ClockGuard(o.clockHwm ?? T0, 300_000);
  const events: SeatEvent[] = [];
  const bus = new EventBus();
  bus.add({ prepare: (evs) => void events.push(...evs), note: (ev) => void events.push(ev) });
  const e = verify(issueFailover(body({ afterSeconds: o.afterSeconds ?? 60, maxHoursPerMonth: o.maxHoursPerMonth ?? 10 }), vendor, ed));
  const part = new FailoverPart(e, { clock, table, clockGuard, store, log: silentLog, own: () => own }, null);
  const notices: Array<[string, unknown]> = [];
  const svc = new LicenseService({
    clock,
    store,
    table,
    entitlement: null,
    policy: defaultLeasePolicy,
    log: silentLog,
    version: 'test',
    holderHash: sha256HolderHash,
    events: bus,
    clockGuard,
    failover: part.gate,
    notify: (client, notice) => notices.push([client, notice]),
  });
  const link = Object.assign(new EventEmitter(), { connected: true, subscribe: () => {} });
  part.attach(svc, link as unknown as LinkClient);
  const primary = async (state: 'online' | 'offline') => {
    link.emit('message', 'licd/v1/s/box-a/server/state', Buffer.from(JSON.stringify({ state, dongle: { serial: 'EMU-A' }, entitlement: { id: 'LIC-A' } })));
    await part.settled();
  };
  const ask = async (client: string, req: Record<string, unknown>) => {
    const a = (await svc.handle(client, false, new TextEncoder().encode(JSON.stringify({ id: '1', holder: `holder-secret-of-${client}-xxxxxxxxx`, ...req })))) as { ok: boolean; result?: any; error?: { code: string; message: string; details?: any } };
    return a;
  };
  const checkout = (client: string, feature = 'nuke_i') => ask(client, { op: 'checkout', feature, user: client, host: `${client}-host`, pid: 1 });
  const setOwn = (next: FeatureLicense[]) => {
    own = next;
  };
  return { clock, store, table, svc, part, primary, checkout, ask, events, notices, clockGuard, setOwn };
}

test("a failover box refuses the primary's seats while dormant, grants them after the delay, and ends the newest when the primary is back", async (t) => {
  const b = box();
  t.teardown(() => b.part.stop());
  t.true((await b.checkout('own')).ok, "this box's own seat");
  await b.primary('online');
  const dormant = await b.checkout('x');
  t.is(dormant.error?.code, 'FAILOVER_DORMANT');
  t.regex(dormant.error!.message, /box-a is online/);
  // Waiting for this box's own seat still queues (failover or not, it is a seat of this box).
  const queued = await b.ask('q', { op: 'checkout', feature: 'nuke_i', user: 'q', host: 'q-host', pid: 1, wait: true });
  t.is(queued.result?.status, 'queued', JSON.stringify(queued));
  await b.ask('q', { op: 'checkin', feature: 'nuke_i' });
  const unknown = await b.checkout('x', 'houdini');
  t.is(unknown.error?.code, 'FAILOVER_DORMANT', "a feature only the primary has: also said as failover's");
  t.is(b.svc.serverState().failover?.state, 'dormant');

  await b.primary('offline');
  b.clock.advance(30_000);
  await b.primary('offline');
  const waiting = await b.checkout('x');
  t.is(waiting.error?.code, 'FAILOVER_DORMANT');
  t.is(waiting.error?.details.startsAt, new Date(T0 + 60_000).toISOString());

  // One waits in the queue for a seat; failover adds seats and serves it.
  const w = await b.ask('w8', { op: 'checkout', feature: 'nuke_i', user: 'w8', host: 'w8-host', pid: 1, wait: true });
  t.is(w.result?.status, 'queued');
  b.clock.advance(30_000);
  await b.primary('offline');
  t.is(b.svc.serverState().failover?.state, 'active');
  const metrics = new LicdMetrics({ service: b.svc, version: 'test', startedAt: 0 }).render();
  t.regex(metrics, /^licd_failover_active\{primary="box-a"\} 1$/m);
  t.regex(metrics, /^licd_failover_max_hours\{primary="box-a"\} 10$/m);
  await until(() => b.notices.some(([c, n]) => c === 'w8' && (n as { op: string }).op === 'queue.granted'), 'the waiter served', 5000);
  t.true((await b.ask('w8', { op: 'checkin', feature: 'nuke_i' })).ok);
  const x = await b.checkout('x');
  t.true(x.ok, JSON.stringify(x.error));
  const y = await b.checkout('y');
  t.true(y.ok);
  t.true((await b.checkout('z', 'houdini')).ok);
  t.is((await b.checkout('w')).error?.code, 'NO_SEATS', 'own 1 + failover 2, all taken');
  t.deepEqual(b.table.availability('nuke_i', b.clock.now()).total, 3);
  const started = b.events.find((ev) => ev.type === 'failover');
  t.like(started, { type: 'failover', action: 'started', primary: 'box-a', entitlement: 'FO-1' });

  // The primary is back: the newest leases over this box's own count end, their holders told.
  b.clock.advance(600_000);
  await b.primary('online');
  t.is(b.svc.serverState().failover?.state, 'dormant');
  t.is(b.table.availability('nuke_i', b.clock.now()).total, 1);
  t.is(b.table.license('houdini'), undefined);
  const lost = b.notices.filter(([, n]) => (n as { op: string }).op === 'lease.lost').map(([client, n]) => [client, (n as { error: { code: string } }).error.code]).sort();
  t.deepEqual(lost, [['x', 'FAILOVER_ENDED'], ['y', 'FAILOVER_ENDED'], ['z', 'FAILOVER_ENDED']]);
  const hb = await b.ask('y', { op: 'heartbeat', leases: [y.result.lease.id] });
  t.deepEqual(hb.result.renewed, []);
  const gone = Object.values(hb.result.gone as Record<string, { code: string; message: string }>);
  t.is(gone[0]?.code, 'FAILOVER_ENDED');
  t.regex(gone[0]!.message, /failover for box-a ended at .* \(box-a is back online\); take the seat from box-a again/);
  t.is((await b.ask('own', { op: 'heartbeat' })).result.renewed.length, 1, "this box's own lease stays");
  const ended = b.events.filter((ev) => ev.type === 'failover').at(-1);
  t.like(ended, { type: 'failover', action: 'ended', reason: 'primary-back', usedMs: 600_000 });
  t.is(b.events.filter((ev) => ev.type === 'lease.ended' && ev.reason === 'failover-ended').length, 3);
  // Each change of the licensed counts is a license.changed too (usage history, metrics, alerts take
  // the counts again), and the failover period's records say what the audit log keeps.
  t.deepEqual(b.events.filter((ev) => ev.type === 'license.changed').map((ev) => (ev as { features: string[] }).features), [['nuke_i', 'houdini'], ['nuke_i']]);
  t.like(eventFields(ended!), { action: 'ended', primary: 'box-a', entitlement: 'FO-1', reason: 'primary-back', usedHours: 0.17 });
  t.deepEqual(b.store.meta.get(META_FAILOVER), { month: '2026-06', usedMs: 600_000 });
});

test('no failover seat while the clock is in doubt (set back); the own seats are still granted', async (t) => {
  const b = box({ afterSeconds: 1, clockHwm: T0 + 3600_000 });
  t.teardown(() => b.part.stop());
  b.svc.observeClock();
  t.true(b.clockGuard.setBackMs > 0);
  await b.primary('offline');
  b.clock.advance(2000);
  await b.primary('offline');
  t.is(b.svc.serverState().failover?.state, 'active');
  t.true((await b.checkout('own')).ok);
  const doubt = await b.checkout('x');
  t.is(doubt.error?.code, 'CLOCK_SET_BACK');
  t.regex(doubt.error!.message, /a failover seat of box-a's nuke_i refused: the clock was set back/);
});

test('the hours cap ends the failover leases too', async (t) => {
  const b = box({ afterSeconds: 1, maxHoursPerMonth: 0.01 }); // 36 s
  t.teardown(() => b.part.stop());
  await b.primary('offline');
  b.clock.advance(1000);
  await b.primary('offline');
  t.true((await b.checkout('x', 'houdini')).ok);
  b.clock.advance(40_000);
  await b.primary('offline');
  t.is(b.svc.serverState().failover?.state, 'used-up');
  t.deepEqual(b.notices.map(([c, n]) => [c, (n as { error: { code: string; message: string } }).error.code]), [['x', 'FAILOVER_ENDED']]);
  const refused = await b.checkout('y', 'houdini');
  t.is(refused.error?.code, 'FAILOVER_DORMANT');
  t.regex(refused.error!.message, /used up/);
});

test("a borrow takes only this box's own seats while failover is active, never the primary's", async (t) => {
  const b = box({ afterSeconds: 1 });
  t.teardown(() => b.part.stop());
  await b.primary('offline');
  b.clock.advance(1000);
  await b.primary('offline');
  t.true(b.part.plan.active);
  // The own seat is free: lending it is this box's own business.
  t.notThrows(() => b.part.gate.borrow('nuke_i', 1, b.clock.now()));
  t.true((await b.checkout('own')).ok);
  const e = t.throws(() => b.part.gate.borrow('nuke_i', 1, b.clock.now())) as LicdError;
  t.is(e.code, 'BORROW_NOT_ALLOWED');
  t.regex(e.message, /box-a's, served here only while it is offline \(failover\), and are not lent/);
  t.is((t.throws(() => b.part.gate.borrow('houdini', 1, b.clock.now())) as LicdError).code, 'BORROW_NOT_ALLOWED');
  t.notThrows(() => b.part.gate.borrow('vray_render', 1, b.clock.now()), "not the primary's feature: no say");
});

test('a restart while failover was active starts dormant: the restored failover leases end instead of being renewed', async (t) => {
  const b = box({ afterSeconds: 1 });
  await b.primary('offline');
  b.clock.advance(1000);
  await b.primary('offline');
  t.true((await b.checkout('own')).ok);
  t.true((await b.checkout('x')).ok);
  t.true((await b.checkout('z', 'houdini')).ok);
  await b.part.stop();
  // licd restarts 5 s later: the leases come back from the database.
  const again = box({ afterSeconds: 1, restart: { store: b.store, at: b.clock.now() + 5000 } });
  t.teardown(() => again.part.stop());
  await again.part.settled();
  const a = again.table.availability('nuke_i', again.clock.now());
  t.deepEqual([a.leased, a.total], [1, 1]);
  t.is(again.table.license('houdini'), undefined);
  t.deepEqual(again.notices.map(([c, n]) => [c, (n as { error: { code: string } }).error.code]), [['x', 'FAILOVER_ENDED']]);
  t.is(again.svc.serverState().failover?.state, 'dormant');
});

test("a license installed at runtime while failover is active keeps the primary's seats added", async (t) => {
  const b = box({ afterSeconds: 1 });
  t.teardown(() => b.part.stop());
  await b.primary('offline');
  b.clock.advance(1000);
  await b.primary('offline');
  t.is(b.table.availability('nuke_i', b.clock.now()).total, 3);
  // The new license has 4 nuke_i seats: replaceEntitlement leaves only its features, then the part adds the primary's again.
  const next: FeatureLicense[] = [{ name: 'nuke_i', version: '15.1', seats: 4, expires: null, type: 'interface', product: 'Nuke', borrow: { allowed: false, maxHours: 0 } }];
  b.setOwn(next);
  await b.svc.replaceEntitlement({ id: 'LIC-B-2', issuedAt: b.clock.now(), customer: 'Studio', development: true, dongle: { ...dongleB, emulated: true }, features: next, products: [], productsListed: false, envelope: null }, []);
  t.is(b.table.availability('nuke_i', b.clock.now()).total, 4);
  b.part.licensesChanged();
  await b.part.settled();
  t.is(b.table.availability('nuke_i', b.clock.now()).total, 6);
  t.is(b.table.license('houdini')?.seats, 1);
});

test('a bad failover file stops the start with ENTITLEMENT_INVALID, naming the setting, the file and the fix', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'licd-failover-file-'));
  const load = (text: string | null) => {
    const file = join(dir, `fo-${Math.random().toString(36).slice(2)}.lic`);
    if (text !== null) writeFileSync(file, text);
    const config = { failover: { entitlementFile: file }, cluster: { serverId: 'box-b' } } as unknown as Config;
    try {
      loadFailoverEntitlement(config, { vendorPublicKey: vpk, dongle: dongleB, now: T0, ed });
      return 'ok';
    } catch (e) {
      return `${(e as LicdError).code}: ${(e as Error).message}`;
    }
  };
  t.is(load(JSON.stringify(issueFailover(body(), vendor, ed))), 'ok');
  t.regex(load('{"format":"licd-failover/1","body":"e30","sig":"AAAA"}'), /^ENTITLEMENT_INVALID: failover\.entitlementFile .*fo-.*\.lic: .*signature.*Give the failover entitlement the vendor made for this box's dongle \(licctl vendor failover\)/);
  t.regex(load('not json'), /^ENTITLEMENT_INVALID: .*fo-.*\.lic/);
  t.regex(load(null), /^ENTITLEMENT_INVALID: .*fo-.*\.lic/);
  t.is(load(JSON.stringify(issueFailover(body(), vendor, ed)).replace('"licd-failover/1"', '"licd-entitlement/1"')).split(':')[0], 'ENTITLEMENT_INVALID');
});
