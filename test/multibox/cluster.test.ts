/**
 * Issue 17, part 3: three boxes (three licd processes, three emulated dongles), each on its own
 * mosquitto, the mosquittos bridged with the shipped bridge configuration. Clients on any broker
 * see every server, pool the seats, move their seats when a box's daemon dies, and carry on
 * through another broker when theirs dies; no server is ever over its count.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { boxConfig, startBoxes, startBridgedBrokers } from '../helpers/bridged-boxes.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import type { Mosquitto } from '../helpers/mosquitto.ts';
import { killAll, licctl, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { ClusterClient, type ClusterLease } from '../../src/sdk/cluster.ts';

test.after.always(() => killAll());

const IDS = ['box-a', 'box-b', 'box-c'] as const;

test('three bridged boxes: clients pool their seats, move them off a dead daemon, and survive the death of their broker', async (t) => {
  t.timeout(150_000);
  const brokers: Mosquitto[] = [];
  t.teardown(async () => {
    for (const m of brokers) await m.stop().catch(() => {});
  });
  await startBridgedBrokers(IDS, (m) => brokers.push(m));
  const dir = tempDir('licd-cluster-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const configs = IDS.map((id, i) => boxConfig(dir, id, brokers[i]!));
  const daemons: Proc[] = await startBoxes(configs);

  const url = (i: number) => brokers[i]!.url;
  const clients: ClusterClient[] = [];
  t.teardown(async () => {
    for (const c of clients) await c.close().catch(() => {});
  });
  const client = async (order: number[], user: string) => {
    const c = await ClusterClient.connect({ url: url(order[0]!), urls: order.map(url), user, host: `${user}-node`, timeoutMs: 5000 }, { waitMs: 20_000, expect: 3 });
    clients.push(c);
    return c;
  };

  // The ledger, all along: no server ever shows more seats in use than its count, and the clients
  // never hold more seats than the three boxes have.
  const overs: string[] = [];
  const sample = () => {
    for (const c of clients) {
      for (const v of c.servers.values()) {
        const a = v.features.get('nuke_i');
        if (a && a.leased + a.borrowed > a.total) overs.push(`${v.id}: ${a.leased + a.borrowed} of ${a.total}`);
      }
    }
    const held = clients.flatMap((c) => c.heldLeases().filter((l) => l.state === 'held'));
    if (held.length > 3) overs.push(`clients hold ${held.length} seats of 3`);
  };
  const sampler = setInterval(sample, 200);
  t.teardown(() => clearInterval(sampler));

  // Every client sees every server's retained state and availability, whatever its broker.
  const x = await client([2, 0, 1], 'x');
  const y = await client([1, 2, 0], 'y');
  const w = await client([0, 1, 2], 'w');
  for (const c of [x, y, w]) {
    await until(() => IDS.every((id) => c.servers.get(id)?.state?.state === 'online' && c.servers.get(id)?.features.get('nuke_i')?.total === 1), 'all three servers seen', 20_000);
  }

  // licctl takes its seat from a box with room: two licctl checkouts land on two boxes, and each
  // seat is its box's (checked in again when licctl ends).
  const home = join(dir, 'home');
  const held: Proc[] = [];
  for (const user of ['render-1', 'render-2']) {
    const p = licctl(['checkout', 'nuke_i', '--json', '--broker', `${url(1)},${url(0)}`], { LICD_HOME: home, LICD_USER: user, LICD_HOST: `${user}-host` });
    await p.waitFor(/"event":"granted"/, 30_000);
    held.push(p);
    await until(() => [...w.servers.values()].filter((v) => v.features.get('nuke_i')?.free === 0).length === held.length, 'the seat seen as taken', 10_000);
  }
  const usersByServer = (await w.statusAll()).map((r) => [r.server, r.status!.features.find((f) => f.feature === 'nuke_i')!.leases.map((l) => l.user)] as const);
  t.is(usersByServer.filter(([, users]) => users.length === 1).length, 2, JSON.stringify(usersByServer));
  t.deepEqual(usersByServer.flatMap(([, users]) => users).sort(), ['render-1', 'render-2']);
  for (const p of held) {
    p.child.kill('SIGINT');
    await p.exited;
  }
  await until(() => IDS.every((id) => w.servers.get(id)?.features.get('nuke_i')?.free === 1), 'the licctl seats checked in', 20_000);

  // The pool: one nuke_i seat per box, three in all; a fourth is refused, naming the servers.
  const lx = await x.checkout('nuke_i');
  await until(() => y.servers.get(lx.server)?.features.get('nuke_i')?.free === 0, 'the first seat seen as taken', 10_000);
  const ly = await y.checkout('nuke_i');
  await until(() => w.candidates('nuke_i').length === 1, 'two seats seen as taken', 10_000);
  const lw = await w.checkout('nuke_i');
  t.deepEqual([lx.server, ly.server, lw.server].sort(), [...IDS]);
  await until(() => IDS.every((id) => w.servers.get(id)?.features.get('nuke_i')?.free === 0), 'all seats seen as taken', 10_000);
  const refused = await t.throwsAsync(w.checkout('nuke_i', {}));
  t.regex(refused!.message, /no server of the cluster has 1 free seat/);
  await lw.release();
  const freed = lw.server;
  await until(() => y.servers.get(freed)?.features.get('nuke_i')?.free === 1, 'the released seat seen as free', 10_000);

  // The daemon of y's server dies: its last will marks it offline on every broker, and y's seat
  // moves to the server with the free seat.
  const dead = IDS.indexOf(ly.server as (typeof IDS)[number]);
  const moved = new Promise<[string, string]>((resolve) => ly.once('moved', (from: string, to: string) => resolve([from, to])));
  daemons[dead]!.child.kill('SIGKILL');
  const [from, to] = await moved;
  t.is(from, IDS[dead]!);
  t.is(to, freed);
  t.is(ly.state, 'held');

  // Nothing over the count anywhere: every live server's leases, against its total.
  const ledger = async (c: ClusterClient) => {
    for (const r of await c.statusAll()) {
      if (!r.status) continue;
      for (const f of r.status.features) t.true(f.leased + f.borrowed <= f.total, `${r.server} ${f.feature}: ${f.leased} leased of ${f.total}`);
    }
  };
  await ledger(w);
  const all = await w.statusAll();
  const holders = all.flatMap((r) => r.status?.features.find((f) => f.feature === 'nuke_i')?.leases.map((l) => `${r.server}:${l.user}`) ?? []);
  t.deepEqual(holders.sort(), [`${lx.server}:x`, `${freed}:y`].sort());

  // licctl status shows every server of the cluster, the dead one as not answering.
  const st = await run(['status', '--json', '--broker', url(0)], { LICD_HOME: dir });
  t.is(st.code, 0, st.stderr);
  const servers = (JSON.parse(st.stdout) as { servers: Array<{ server: string; status?: { features: Array<{ feature: string; leased: number }> }; error?: { code: string } }> }).servers;
  t.deepEqual(servers.map((r) => r.server), [...IDS]);
  t.is(servers.find((r) => r.server === IDS[dead])!.error?.code, 'TIMEOUT');
  t.deepEqual(servers.filter((r) => r.status).map((r) => r.status!.features.find((f) => f.feature === 'nuke_i')!.leased), [1, 1]);

  // licctl servers --broker lists every server whose retained state the broker carries (no mDNS):
  // the dead one offline (its will, through the bridge).
  const sv = await run(['servers', '--json', '--broker', url(0)], { LICD_HOME: dir });
  t.is(sv.code, 0, sv.stderr);
  const seen = (JSON.parse(sv.stdout) as { servers: Array<{ server: string; state: string; dongle: { present: boolean } }> }).servers;
  t.deepEqual(
    seen.map((s) => [s.server, s.state]),
    IDS.map((id, i) => [id, i === dead ? 'offline' : 'online']),
  );
  const svText = await run(['servers', '--broker', url(0)], { LICD_HOME: dir });
  t.regex(svText.stdout, new RegExp(`${IDS[dead]}\\s+offline`));

  // --server talks to one box: its status alone, in a lone box's shape.
  const one = await run(['status', 'nuke_i', '--json', '--server', lx.server, '--broker', url(0)], { LICD_HOME: dir });
  t.is(one.code, 0, one.stderr);
  t.deepEqual((JSON.parse(one.stdout) as { features: Array<{ feature: string; leases: Array<{ user: string }> }> }).features.find((f) => f.feature === 'nuke_i')!.leases.map((l) => l.user), ['x']);
  const badId = await run(['status', '--server', 'Box A', '--broker', url(0)], { LICD_HOME: dir });
  t.is(badId.code, 64);
  t.regex(badId.stderr, /--server must be a server id/);

  // x's broker dies: x reconnects through the next broker of its list and keeps its seat (its
  // heartbeats reach its server through the bridge).
  const xHeld: ClusterLease = lx;
  let xLost = false;
  xHeld.on('lost', () => (xLost = true));
  const xServer = lx.server;
  const leaseOfX = async () => (await w.statusAll()).find((r) => r.server === xServer)?.status?.features.find((f) => f.feature === 'nuke_i')?.leases.find((l) => l.user === 'x');
  const before = (await leaseOfX())!;
  t.is(before.state, 'active');
  await brokers[2]!.kill('SIGKILL');
  const c0 = x.heldLeases()[0]!;
  // Renewed after the broker died: its end moved on, so a heartbeat got through another broker.
  await until(async () => {
    const l = await leaseOfX().catch(() => undefined);
    return l !== undefined && l.id === before.id && l.state === 'active' && Date.parse(l.until) > Date.parse(before.until);
  }, 'x renewing through another broker', 60_000, 1000);
  t.is(c0.state, 'held');
  t.false(xLost);

  // y's seat was on the box whose broker died: not renewed by its end, it is lost (no other box
  // has room) and asked for again; when the dead daemon comes back, y gets its seat there.
  const yLost = new Promise<void>((resolve) => ly.once('lost', () => resolve()));
  await yLost;
  t.is(ly.state, 'lost');
  const regained = new Promise<string>((resolve) => ly.once('regained', (server: string) => resolve(server)));
  daemons[dead] = startDaemonProcess({ LICD_CONFIG: configs[dead]! });
  t.is(await regained, IDS[dead]!);
  t.is(ly.state, 'held');
  sample();
  t.deepEqual(overs, []);
});
