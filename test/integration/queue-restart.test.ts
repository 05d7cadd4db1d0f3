/**
 * Issue 15, a queue that survives a restart in order (docs/policy.md, "Durability"): licd is a
 * child process with its embedded broker, killed with SIGKILL while two holders hold the two
 * seats of vray_interface and five SDK clients wait for them. After the restart the waiters are
 * back in their old order and get the seats in that order as the holders check in, whatever order
 * their clients reconnect and ask again in; a waiter whose client died does not come back and
 * leaves the queue when the window for asking again ends.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FeatureStatus } from '../../src/core/protocol.ts';
import { LicdClient, type Lease } from '../../src/sdk/client.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { daemonOnPort, freePort, killAll, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

const F = 'vray_interface'; // 2 seats in the demo license

test('kill -9 with 2 holders and 5 waiters: after the restart the waiters get the seats in their original order; a dead waiter leaves', async (t) => {
  t.timeout(240_000); // generous: the machine is shared
  const dir = tempDir();
  writeFileSync(join(dir, 'licd.json'), JSON.stringify({ leases: { disconnectGraceSeconds: 2 } }));
  const port = await freePort();
  let { d, url } = await daemonOnPort(dir, port);
  const clients: LicdClient[] = [];
  t.teardown(async () => {
    for (const c of clients) c.kill();
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const client = async (user: string) => {
    const c = await LicdClient.connect({ url, user, host: `ws-${user}`, clientId: `qr-${user}`, timeoutMs: 5000 });
    clients.push(c);
    return c;
  };
  const queueOf = async (c: LicdClient): Promise<string[] | null> => {
    try {
      const f: FeatureStatus | undefined = (await c.status()).features.find((x) => x.feature === F);
      return (f?.queue ?? []).map((w) => w.user);
    } catch {
      return null; // not reconnected yet
    }
  };

  const held = new Map<string, { c: LicdClient; lease: Lease }>();
  for (const who of ['h0', 'h1']) {
    const c = await client(who);
    held.set(who, { c, lease: await c.checkout(F) });
  }
  const observer = held.get('h0')!.c;

  // Five waiters and a sixth whose client will die, queued one after another so their order is known.
  const names = ['w0', 'w1', 'w2', 'w3', 'w4', 'dead'];
  const grants: string[] = [];
  const seats = new Map<string, Promise<Lease>>();
  const waiters = new Map<string, LicdClient>();
  for (const [i, who] of names.entries()) {
    const c = await client(who);
    waiters.set(who, c);
    let place = 0;
    const p = c.checkout(F, { wait: true, maxWait: 600, onQueue: (q) => (place = q.position) });
    p.then(() => grants.push(who), () => {});
    seats.set(who, p);
    await until(() => place === i + 1, `${who} queued at place ${i + 1}`, 20_000);
  }
  t.deepEqual(await queueOf(observer), names);

  // The sixth waiter's machine dies, and licd is killed at once (no clean stop: SIGKILL).
  waiters.get('dead')!.kill();
  d.child.kill('SIGKILL');
  await d.exited;
  ({ d, url } = await daemonOnPort(dir, port));

  // Back in their old order (the clients reconnect and ask again in whatever order they come).
  await until(async () => JSON.stringify(await queueOf(observer)) === JSON.stringify(names), 'the waiters are back in their old order', 30_000);

  // Each check-in gives the seat to the next waiter in the original order.
  const order = ['w0', 'w1', 'w2', 'w3', 'w4'];
  const holders = ['h0', 'h1', 'w0', 'w1', 'w2'];
  for (const [k, next] of order.entries()) {
    const h = held.get(holders[k]!)!;
    await until(async () => {
      try {
        await h.c.checkin({ leases: [h.lease.id] });
        return true;
      } catch {
        return false; // its client has not reconnected yet
      }
    }, `${holders[k]} checked in`, 30_000);
    t.log(`${holders[k]} checked in; waiting for ${next}`);
    const lease = await Promise.race([seats.get(next)!, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${next} got no seat within 60 s; queue ${JSON.stringify(grants)}; licd: ${d.stderr().slice(-3000)}`)), 60_000))]);
    t.is(lease.view.feature, F);
    t.deepEqual(grants, order.slice(0, k + 1), `seats went in the original order up to ${next}`);
    held.set(next, { c: waiters.get(next)!, lease });
  }

  // The dead waiter never asked again: it leaves when the window for asking again ends (30 s).
  await until(async () => JSON.stringify(await queueOf(observer)) === '[]', 'the dead waiter left the queue', 60_000);
  t.deepEqual(grants, order, 'the dead waiter got no seat');
  const s = (await observer.status()).features.find((x) => x.feature === F)!;
  t.deepEqual(s.leases.map((l) => l.user).sort(), ['w3', 'w4']);
});
