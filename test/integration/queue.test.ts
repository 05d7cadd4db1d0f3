/**
 * Issue 15, queueing through a real broker: the daemon is a child process with its embedded
 * broker; waiting clients are SDK clients over MQTT and a licctl process. Ten clients queue on a
 * 2-seat feature and each gets its seat in order as seats are checked in, told its place as it
 * changes; a waiting client that is killed leaves the queue; after a restart of licd every waiter
 * is waiting again (kept in the store, and the SDK asks again; test/integration/queue-restart.test.ts
 * checks the order after a kill -9).
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QueueView, StatusResult } from '../../src/core/protocol.ts';
import { LicdClient, type Lease } from '../../src/sdk/client.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { daemonOnPort, freePort, killAll, licctl, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

const F = 'vray_interface'; // 2 seats in the demo license

test('ten clients queue on a 2-seat feature and get their seats in order, told their places; a killed waiter leaves; a restart re-queues', async (t) => {
  t.timeout(180_000); // generous: the machine is shared
  const dir = tempDir();
  writeFileSync(join(dir, 'licd.json'), JSON.stringify({ leases: { disconnectGraceSeconds: 1 } }));
  const port = await freePort();
  let { d, url } = await daemonOnPort(dir, port);
  const clients: LicdClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.kill();
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const client = async (user: string) => {
    const c = await LicdClient.connect({ url, user, host: `ws-${user}`, clientId: `q-${user}`, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  const status = async (c: LicdClient) => (await c.status()).features.find((f) => f.feature === F)!;

  const held: Array<{ c: LicdClient; lease: Lease; who: string }> = [];
  for (const who of ['h1', 'h2']) {
    const c = await client(who);
    held.push({ c, lease: await c.checkout(F), who });
  }

  // Ten waiters, queued one after another so their order is known.
  const seen = new Map<string, number[]>();
  const grants: string[] = [];
  const waits = new Map<string, Promise<Lease>>();
  const waiters = new Map<string, LicdClient>();
  for (let i = 0; i < 10; i++) {
    const who = `w${i}`;
    const c = await client(who);
    waiters.set(who, c);
    seen.set(who, []);
    const p = c.checkout(F, { wait: true, maxWait: 600, onQueue: (q: QueueView) => seen.get(who)!.push(q.position) });
    p.then(() => grants.push(who), () => {});
    waits.set(who, p);
    await until(() => seen.get(who)!.length > 0, `${who} queued`, 20_000);
    t.is(seen.get(who)![0], i + 1, `${who} is told its place`);
  }
  t.deepEqual((await status(held[0]!.c)).queue!.map((w) => w.user), ['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'w8', 'w9']);

  // A waiter killed (no clean disconnect: its last will) leaves the queue after the grace.
  waiters.get('w5')!.kill();
  await until(async () => (await status(held[0]!.c)).queue?.length === 9, 'the killed waiter left the queue', 30_000);
  t.false((await status(held[0]!.c)).queue!.some((w) => w.user === 'w5'));
  await until(() => seen.get('w9')!.includes(9), 'w9 told it moved up', 20_000);

  // Check seats in one at a time: the next waiter in order gets each.
  const order = ['w0', 'w1', 'w2', 'w3', 'w4', 'w6'];
  for (const [k, next] of order.entries()) {
    const h = held.shift()!;
    await h.c.checkin({ leases: [h.lease.id] });
    const lease = await waits.get(next)!;
    t.is(lease.view.feature, F);
    t.deepEqual(grants, order.slice(0, k + 1), `seats went in order up to ${next}`);
    held.push({ c: waiters.get(next)!, lease, who: next });
  }
  // Places were re-announced as they changed: w9 moved from 10 to 9 (w5 left), then down as seats went.
  await until(() => seen.get('w9')!.at(-1) === 3, 'w9 at place 3', 20_000);
  const w9 = seen.get('w9')!;
  t.is(w9[0], 10);
  t.deepEqual([...w9].sort((a, b) => b - a), w9, 'places only go down');

  // A licctl checkout --wait behind them says its place.
  const cli = licctl(['checkout', F, '--wait', '--broker', url], { LICD_USER: 'cli', LICD_HOST: 'ws-cli' });
  await cli.waitFor(new RegExp(`waiting for ${F}: position 4 of 4`));

  // licd restarts: the queue is kept (docs/policy.md, "Durability"), the SDK asks again, and every waiter waits again.
  d.child.kill('SIGTERM');
  await d.exited;
  ({ d, url } = await daemonOnPort(dir, port));
  await until(async () => {
    try {
      return (await status(held[0]!.c)).queue?.length === 4;
    } catch {
      return false;
    }
  }, 'the waiters queued again after the restart', 60_000);
  t.deepEqual(((await status(held[0]!.c)).queue ?? []).map((w) => w.user).sort(), ['cli', 'w7', 'w8', 'w9']);
  // ...and are served when seats come free.
  for (const h of held.splice(0, 2)) await h.c.checkin({ leases: [h.lease.id] });
  const served = () => grants.length - 6 + (/granted vray_interface to cli@ws-cli/.test(cli.stdout()) ? 1 : 0);
  await until(() => served() === 2, 'two waiters served after the restart', 30_000);
  t.is((await status(waiters.get('w0')!)).queue?.length, 2);
  cli.child.kill('SIGTERM');
  await cli.exited;
});
