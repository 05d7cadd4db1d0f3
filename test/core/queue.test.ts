/**
 * Issue 15, queueing, with an injected clock: waiters are served in order (priority, then first
 * come) as seats come free, told their places and their grants by notices; newcomers go behind
 * them; reservations and rules apply to waiters; waiters leave at their deadline, when their client
 * is gone past the grace, or when they check in.
 */
import test from 'ava';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { parsePolicy } from '../../src/core/policy.ts';
import type { Notice } from '../../src/core/protocol.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { ManualClock } from '../helpers/daemon.ts';

const HOLDER = 'holder-secret-of-the-test-client';
const lic = (seats: number): FeatureLicense => ({ name: 'f', product: 'F', version: '1', seats, expires: null, type: 'render', borrow: { allowed: true, maxHours: 10 } });

function setup(seats: number, policy = '', store = new MemoryStore(), clock = new ManualClock()) {
  let n = 0;
  const table = new SeatTable([lic(seats)], () => `L${++n}`);
  table.setPolicy(parsePolicy(policy));
  const notices: Array<{ client: string; n: Notice }> = [];
  const svc = new LicenseService({
    clock,
    store,
    table,
    entitlement: null,
    policy: defaultLeasePolicy,
    log: silentLog,
    version: 'test',
    holderHash: sha256HolderHash,
    notify: (client, notice) => notices.push({ client, n: notice }),
  });
  let req = 0;
  const send = async (client: string, body: Record<string, unknown>) => {
    const a = await svc.handle(client, false, new TextEncoder().encode(JSON.stringify({ id: String(++req), holder: HOLDER, ...body })));
    return a;
  };
  const checkout = async (user: string, o: { wait?: boolean; count?: number; maxWait?: number } = {}) => {
    const a = await send(user, { op: 'checkout', feature: 'f', user, host: `ws-${user}`, pid: 1, count: o.count ?? 1, ...(o.wait ? { wait: true } : {}), ...(o.maxWait ? { maxWait: o.maxWait } : {}) });
    if (!a.ok) return { code: a.error.code, message: a.error.message } as const;
    const r = a.result as { status: string; lease?: { id: string }; queue?: { position: number; waiting: number } };
    return { code: r.status, lease: r.lease?.id, position: r.queue?.position, waiting: r.queue?.waiting } as const;
  };
  const checkin = (user: string, sel: Record<string, unknown> = { feature: 'f' }) => send(user, { op: 'checkin', ...sel });
  /** Lets queued grants be written and told (microtasks and the store's commit). */
  const settle = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  const granted = () => notices.filter((x) => x.n.op === 'queue.granted').map((x) => x.client);
  const positions = (client: string) => notices.filter((x) => x.client === client && x.n.op === 'queue.position').map((x) => (x.n as { result: { position: number } }).result.position);
  const failed = (client: string) => notices.filter((x) => x.client === client && x.n.op === 'queue.failed').map((x) => (x.n as { error: { code: string; message: string } }).error);
  return { clock, svc, table, checkout, checkin, settle, granted, positions, failed, notices };
}

test('waiters on a 2-seat feature are served in order as seats are checked in, and told their new places', async (t) => {
  const q = setup(2);
  t.is((await q.checkout('h1')).code, 'granted');
  t.is((await q.checkout('h2')).code, 'granted');
  const w = ['w1', 'w2', 'w3', 'w4', 'w5'];
  for (const [i, u] of w.entries()) t.like(await q.checkout(u, { wait: true }), { code: 'queued', position: i + 1, waiting: i + 1 });
  const st = q.svc.status(q.clock.now()).features[0]!;
  t.deepEqual(st.queue!.map((x) => `${x.position}:${x.user}`), ['1:w1', '2:w2', '3:w3', '4:w4', '5:w5']);
  await q.checkin('h1');
  await q.settle();
  t.deepEqual(q.granted(), ['w1']);
  t.deepEqual(q.positions('w2'), [1]);
  t.deepEqual(q.positions('w5'), [4]);
  await q.checkin('w1');
  await q.checkin('h2');
  await q.settle();
  t.deepEqual(q.granted(), ['w1', 'w2', 'w3']);
  t.deepEqual(q.positions('w5'), [4, 3, 2]);
  t.is(q.table.availability('f', q.clock.now()).leased, 2);
  t.deepEqual(q.table.checkInvariants(q.clock.now()), []);
});

test('a newcomer goes behind the waiters: refused (or queued) while a waiter ahead cannot be served', async (t) => {
  const q = setup(3);
  t.is((await q.checkout('h1', { count: 2 })).code, 'granted');
  t.is((await q.checkout('h2')).code, 'granted');
  t.like(await q.checkout('big', { wait: true, count: 2 }), { code: 'queued', position: 1 });
  await q.checkin('h2');
  await q.settle();
  // One seat is free, but the waiter ahead needs two: nobody jumps it.
  t.is(q.table.free('f', q.clock.now()), 1);
  const r = await q.checkout('newcomer');
  t.is(r.code, 'NO_SEATS');
  t.regex(r.message!, /^f: 1 of 3 seats free, and 1 checkout\(s\) wait for them ahead of this one; 1 wanted/);
  t.like(await q.checkout('newcomer', { wait: true }), { code: 'queued', position: 2 });
  await q.checkin('h1');
  await q.settle();
  t.deepEqual(q.granted(), ['big', 'newcomer']);
});

test('PRIORITY: a waiter of a higher group goes ahead of earlier ones; FIFO within a priority', async (t) => {
  const q = setup(1, 'GROUP lighting l1 l2\nPRIORITY lighting 10');
  await q.checkout('h1');
  await q.checkout('a', { wait: true });
  await q.checkout('b', { wait: true });
  t.like(await q.checkout('l1', { wait: true }), { code: 'queued', position: 1 });
  t.like(await q.checkout('l2', { wait: true }), { code: 'queued', position: 2 });
  t.deepEqual(q.positions('a'), [2, 3]);
  for (const holder of ['h1', 'l1', 'l2', 'a']) {
    await q.checkin(holder);
    await q.settle();
  }
  t.deepEqual(q.granted(), ['l1', 'l2', 'a', 'b']);
});

test('reservations apply to waiters: one the free seats are kept away from is passed over for a member behind it', async (t) => {
  const q = setup(2, 'GROUP lighting l1\nRESERVE 1 f GROUP lighting');
  await q.checkout('h1');
  t.like(await q.checkout('x', { wait: true }), { code: 'queued', position: 1 }); // POLICY_RESERVED now: waits
  t.like(await q.checkout('l1', { wait: true }), { code: 'granted' }); // the reserved seat is free for lighting
  await q.checkin('h1');
  await q.settle();
  t.deepEqual(q.granted(), ['x']);
});

test('nobody waits for a seat a rule forbids: refused at once; a waiter a policy change forbids leaves, told why', async (t) => {
  const q = setup(1, 'EXCLUDE f USER mallory');
  await q.checkout('h1');
  const r = await q.checkout('mallory', { wait: true });
  t.is(r.code, 'POLICY_DENIED');
  t.like(await q.checkout('eve', { wait: true }), { code: 'queued' });
  q.table.setPolicy(parsePolicy('EXCLUDE f USER eve'));
  q.svc.serveQueues();
  t.is(q.failed('eve')[0]?.code, 'POLICY_DENIED');
  t.regex(q.failed('eve')[0]!.message, /eve@ws-eve may not use it: user eve is excluded \(policy line 1\).*\(you left the queue of f\)/);
  t.is(q.svc.waiters.size, 0);
});

test('QUEUE off refuses waiting, naming the line; QUEUE on max N caps the waiters', async (t) => {
  const off = setup(1, '# no waiting\nQUEUE f off');
  await off.checkout('h1');
  const r = await off.checkout('w', { wait: true });
  t.is(r.code, 'NO_SEATS');
  t.regex(r.message!, /Waiting is off for f \(QUEUE f off, policy line 2\)$/);
  const max = setup(1, 'QUEUE f on max 1');
  await max.checkout('h1');
  t.like(await max.checkout('w1', { wait: true }), { code: 'queued' });
  const full = await max.checkout('w2', { wait: true });
  t.is(full.code, 'NO_SEATS');
  t.regex(full.message!, /the queue is full \(1 waiting, QUEUE f on max 1, policy line 1\)/);
});

test('a waiter leaves at its maxWait (told TIMEOUT), when its client is gone past the grace, or when it checks in; asking again keeps the place', async (t) => {
  const q = setup(1);
  await q.checkout('h1');
  t.like(await q.checkout('a', { wait: true, maxWait: 30 }), { position: 1 });
  t.like(await q.checkout('b', { wait: true }), { position: 2 });
  t.like(await q.checkout('c', { wait: true }), { position: 3 });
  t.like(await q.checkout('b', { wait: true }), { position: 2 }); // asked again: same place
  await q.svc.clientGone('b', new TextEncoder().encode(JSON.stringify({ holder: HOLDER, conn: 0 })));
  q.clock.advance(defaultLeasePolicy.disconnectGraceSeconds * 1000 + 1000);
  await q.svc.reap();
  t.deepEqual(q.positions('c'), [2]);
  q.clock.advance(30_000);
  await q.svc.reap();
  t.is(q.failed('a')[0]?.code, 'TIMEOUT');
  t.deepEqual(q.positions('c'), [2, 1]);
  const left = await q.checkin('c');
  t.true(left.ok && (left.result as { dequeued?: number }).dequeued === 1);
  t.is(q.svc.waiters.size, 0);
  t.is(q.table.availability('f', q.clock.now()).leased, 1); // h1 still holds its seat: nobody was granted one
});

test('random walk with waiters (2,000 steps): seats never exceed the count, waiters stay in order, and no free seat is left while the head waiter could use it', async (t) => {
  const q = setup(3, 'GROUP g u0 u1\nPRIORITY g 5\nRESERVE 1 f GROUP g');
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5'];
  const holding = new Set<string>();
  let queued = 0;
  for (let step = 0; step < 2000; step++) {
    const user = users[Math.floor(rand() * users.length)]!;
    const r = rand();
    if (r < 0.5 && !holding.has(user) && !q.svc.waiters.ofClient(user).length) {
      const a = await q.checkout(user, { wait: rand() < 0.7 });
      if (a.code === 'granted') holding.add(user);
      else if (a.code === 'queued') queued++;
    } else if (r < 0.85 && holding.size > 0) {
      const who = [...holding][Math.floor(rand() * holding.size)]!;
      await q.checkin(who);
      holding.delete(who);
    } else {
      q.clock.advance(Math.floor(rand() * 5000));
      await q.svc.reap();
    }
    await q.settle();
    for (const n of q.notices.splice(0)) if (n.n.op === 'queue.granted') holding.add(n.client);
    const a = q.table.availability('f', q.clock.now());
    t.true(a.leased <= a.total, `step ${step}: ${a.leased} leased of ${a.total}`);
    t.deepEqual(q.table.checkInvariants(q.clock.now()), []);
    // Order: waiters are kept by priority, then arrival.
    const list = q.svc.waiters.of('f');
    for (let i = 1; i < list.length; i++) t.true(list[i - 1]!.priority > list[i]!.priority || (list[i - 1]!.priority === list[i]!.priority && list[i - 1]!.seq < list[i]!.seq));
    // A free seat is never left to waiters who could use it (the head, when it wants one and is not reserved away).
    const head = list.find((w) => !w.granting);
    if (head && a.free > 0) {
      const reservedAway = q.table.currentPolicy().groups.get('g')!.users.has(head.req.user) ? 0 : Math.max(0, 1 - q.table.holdings('f').filter((h) => ['u0', 'u1'].includes(h.user)).reduce((x, h) => x + h.count, 0));
      t.true(a.free - reservedAway < head.req.count, `step ${step}: ${a.free} free but ${head.req.user} still waits`);
    }
  }
  t.true(queued > 50, `${queued} checkouts waited`);
});

test('the queue is kept in the store in the same batches as its changes, and a restart puts it back in its old order; waiters that do not ask again leave', async (t) => {
  const policy = 'GROUP vip carl\nPRIORITY vip 10';
  const a = setup(1, policy);
  t.is((await a.checkout('h')).code, 'granted');
  for (const who of ['ann', 'bob', 'carl', 'dan']) t.is((await a.checkout(who, { wait: true })).code, 'queued');
  const order = (s: ReturnType<typeof setup>) => s.svc.status(s.clock.now()).features[0]!.queue?.map((w) => w.user) ?? [];
  t.deepEqual(order(a), ['carl', 'ann', 'bob', 'dan'], 'carl has priority');
  // dan leaves (a check-in of the feature): its record goes.
  await a.checkin('dan');
  await a.settle();
  const stored = async (store: MemoryStore) => {
    const out: Array<[string, unknown]> = [];
    for await (const kv of store.scan('queue')) out.push(kv);
    return out;
  };
  const store = (a.svc as unknown as { deps: { store: MemoryStore } }).deps.store;
  t.is((await stored(store)).length, 3);
  // A record that is not a waiter is dropped at start.
  await store.commit([{ kind: 'rec.put', space: 'queue', key: '999999999999', value: { seq: 'x' } }]);

  // "Restart": a new service on the same store, its seat free (the holder's lease is gone).
  const b = setup(1, policy, store, a.clock);
  const r = await b.svc.restoreQueue(await stored(store), b.clock.now());
  t.deepEqual(r, { restored: 3, dropped: 1 });
  t.deepEqual(order(b), ['carl', 'ann', 'bob'], 'the old order, priority included');
  // licd takes 10 s to reach its broker: the window for asking again starts then.
  b.clock.advance(10_000);
  b.svc.queueWindowFrom(b.clock.now());
  // bob asks again (its SDK after reconnecting): it keeps its place.
  t.like(await b.checkout('bob', { wait: true }), { code: 'queued', position: 3 });
  // The free seat goes to the head of the restored queue, even before carl asks again.
  b.svc.serveQueues();
  await b.settle();
  t.deepEqual(b.granted(), ['carl']);
  // carl's SDK asks again and is answered with the seat granted meanwhile (not queued again).
  t.like(await b.checkout('carl', { wait: true }), { code: 'extended' });
  // ann never asks again: she leaves when the window ends (at least 30 s); bob stays.
  b.clock.advance(29_000);
  await b.svc.reap();
  t.deepEqual(order(b), ['ann', 'bob']);
  b.clock.advance(2_000);
  await b.svc.reap();
  await b.settle();
  t.deepEqual(order(b), ['bob']);
  t.deepEqual((await stored(store)).map(([, v]) => (v as { req: { user: string } }).req.user), ['bob'], 'only bob is still stored');
});

test('a long queue tells each waiter near the head every move, and further back only moves of a tenth of its place', async (t) => {
  const s = setup(1);
  t.is((await s.checkout('h')).code, 'granted');
  const n = 60;
  for (let i = 0; i < n; i++) t.like(await s.checkout(`w${i}`, { wait: true }), { code: 'queued', position: i + 1 });
  // Seats come free one at a time: each waiter in turn gets the seat and checks it in.
  await s.checkin('h');
  await s.settle();
  for (let i = 0; i < n - 1; i++) {
    t.deepEqual(s.granted().at(-1), `w${i}`);
    await s.checkin(`w${i}`);
    await s.settle();
  }
  t.deepEqual(s.granted(), Array.from({ length: n }, (_, i) => `w${i}`), 'served in order');
  const last = s.positions(`w${n - 1}`);
  t.deepEqual(last.slice(-10), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 'every move near the head');
  t.true(last.length < 40, `the last of ${n} was told ${last.length} times, not ${n - 1}: ${last.join(' ')}`);
  for (let i = 1; i < last.length; i++) t.true(last[i]! < last[i - 1]!, 'places only go down');
  for (let i = 1; i < last.length && last[i - 1]! > 10; i++) t.true(last[i]! <= last[i - 1]! * 0.9, `a move of a tenth or more: ${last[i - 1]} to ${last[i]}`);
});
