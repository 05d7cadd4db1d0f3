/**
 * Issue 15, LINGER with an injected clock: a checked-in seat stays with its user@host for the
 * linger time, comes back at once if the same user@host asks again (from a new process too), else
 * ends (reason lingered) and goes to the queue.
 */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import type { SeatEvent } from '../../src/core/events.ts';
import { EventBus } from '../../src/core/events.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { parsePolicy } from '../../src/core/policy.ts';
import type { Notice } from '../../src/core/protocol.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { ManualClock } from '../helpers/daemon.ts';

const HOLDER = 'holder-secret-of-the-test-client';

function setup(policy: string) {
  const clock = new ManualClock();
  let n = 0;
  const table = new SeatTable([{ name: 'f', product: 'F', version: '1', seats: 1, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } } as FeatureLicense], () => `L${++n}`);
  table.setPolicy(parsePolicy(policy));
  const events: SeatEvent[] = [];
  const bus = new EventBus();
  bus.add({ settle: (evs, ok) => ok && events.push(...evs) });
  const notices: Array<{ client: string; n: Notice }> = [];
  const svc = new LicenseService({ clock, store: new MemoryStore(), table, entitlement: null, policy: defaultLeasePolicy, log: silentLog, version: 't', holderHash: sha256HolderHash, events: bus, notify: (client, notice) => notices.push({ client, n: notice }) });
  let r = 0;
  const send = async (client: string, body: Record<string, unknown>) => svc.handle(client, false, new TextEncoder().encode(JSON.stringify({ id: String(++r), holder: HOLDER, ...body })));
  const checkout = async (client: string, user: string, o: { pid?: number; wait?: boolean } = {}) => {
    const a = await send(client, { op: 'checkout', feature: 'f', user, host: 'ws1', pid: o.pid ?? 1, ...(o.wait ? { wait: true } : {}) });
    return a.ok ? (a.result as { status: string; lease?: { id: string; state: string } }) : { status: a.error.code };
  };
  return { clock, table, svc, send, checkout, events, notices };
}

test('a checked-in seat lingers for its user@host, who gets it back at once, from a new process too; others wait', async (t) => {
  const x = setup('LINGER f 60');
  const first = await x.checkout('c1', 'alice');
  t.is(first.status, 'granted');
  const ci = await x.send('c1', { op: 'checkin', feature: 'f' });
  t.true(ci.ok);
  t.is(x.table.availability('f', x.clock.now()).leased, 1);
  t.is(x.svc.status(x.clock.now()).features[0]!.leases[0]!.state, 'lingering');
  t.is((await x.checkout('c2', 'bob')).status, 'NO_SEATS');
  x.clock.advance(30_000);
  const again = await x.checkout('c3', 'alice', { pid: 9 }); // another process of alice on ws1
  t.is(again.status, 'granted');
  t.is(again.lease!.id, first.lease!.id);
  t.is(again.lease!.state, 'active');
  // One lease from grant to end: no second grant, no end while it lingered.
  t.deepEqual(x.events.map((e) => e.type), ['lease.granted']);
  // The old holder cannot renew or check in what it checked in.
  const hb = await x.send('c1', { op: 'heartbeat', leases: [first.lease!.id] });
  t.deepEqual(hb.ok && (hb.result as { unknown: string[] }).unknown, [first.lease!.id]);
});

test('a lingering seat not taken back ends at its linger (reason lingered) and goes to the queue', async (t) => {
  const x = setup('LINGER f 60');
  await x.checkout('c1', 'alice');
  t.is((await x.checkout('c2', 'bob', { wait: true })).status, 'queued');
  await x.send('c1', { op: 'checkin', feature: 'f' });
  await new Promise((r) => setImmediate(r));
  t.false(x.notices.some((n) => n.n.op === 'queue.granted'), 'bob waits while the seat lingers');
  x.clock.advance(60_000);
  await x.svc.reap();
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  t.deepEqual(x.notices.filter((n) => n.n.op === 'queue.granted').map((n) => n.client), ['c2']);
  const ended = x.events.find((e) => e.type === 'lease.ended');
  t.is(ended?.type === 'lease.ended' && ended.reason, 'lingered');
  t.deepEqual(x.table.checkInvariants(x.clock.now()), []);
});

test('without LINGER a check-in frees the seat at once', async (t) => {
  const x = setup('');
  await x.checkout('c1', 'alice');
  await x.send('c1', { op: 'checkin', feature: 'f' });
  t.is(x.table.availability('f', x.clock.now()).leased, 0);
  t.is((await x.checkout('c2', 'bob')).status, 'granted');
});

test('idle TIMEOUT: a lease whose client reports no activity that long ends (reason idle, told LEASE_IDLE); activity keeps it; a client that never reports is not judged', async (t) => {
  const x = setup('TIMEOUT f 600');
  const a = await x.checkout('c1', 'alice');
  const id = a.lease!.id;
  const beat = (client: string, idle?: number) => x.send(client, { op: 'heartbeat', leases: [id], ...(idle !== undefined ? { idle } : {}) });
  // Heartbeats without idle (no activity reporting): never idle, however long.
  for (let i = 0; i < 20; i++) {
    x.clock.advance(50_000);
    await beat('c1');
    await x.svc.reap();
  }
  t.is(x.table.availability('f', x.clock.now()).leased, 1);
  // Reported active 100 s ago, then 590 s: still held.
  await beat('c1', 100);
  await x.svc.reap();
  x.clock.advance(40_000);
  await beat('c1', 590);
  await x.svc.reap();
  t.is(x.table.availability('f', x.clock.now()).leased, 1);
  // Idle 600 s: it ends at the next tick.
  x.clock.advance(20_000);
  await beat('c1', 610);
  await x.svc.reap();
  t.is(x.table.availability('f', x.clock.now()).leased, 0);
  const ended = x.events.find((e) => e.type === 'lease.ended');
  t.is(ended?.type === 'lease.ended' && ended.reason, 'idle');
  const lost = x.notices.find((n) => n.n.op === 'lease.lost');
  t.is(lost && !lost.n.ok ? lost.n.error.code : '', 'LEASE_IDLE');
  t.regex(lost && !lost.n.ok ? lost.n.error.message : '', /f: lease \S+ ended: its application reported no activity for 600 s \(policy TIMEOUT, line 1\)/);
  // Its next heartbeat is told why.
  const hb = await beat('c1', 700);
  t.is(hb.ok && (hb.result as { gone?: Record<string, { code: string }> }).gone?.[id]?.code, 'LEASE_IDLE');
  t.is((await x.checkout('c2', 'bob')).status, 'granted');
});
