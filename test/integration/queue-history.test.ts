/**
 * Issue 15, queue time in the usage history and reports, through a real licd process: checkouts
 * wait for the one seat of nuke_i (SDK clients over MQTT), two get it in turn and one gives up at
 * its maxWait; `licctl report queue` shows the feature's waits (how many, served, mean, longest,
 * most waiting at once) and `licctl report users` the hours each user waited, next to the hours
 * used.
 */
import test from 'ava';
import { join } from 'node:path';
import { LicdClient, type Lease } from '../../src/sdk/client.ts';
import { until } from '../helpers/daemon.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(killAll);

const F = 'nuke_i'; // 1 seat in the demo license

test('waits for a seat show in licctl report queue (per feature) and report users (hours waited per user)', async (t) => {
  t.timeout(120_000);
  const dev = await devDaemonProcess(t, {});
  t.teardown(() => dev.d.child.kill('SIGKILL'));
  const admin = ['--user', 'admin', '--password-file', join(dev.dir, 'admin.password')];
  const clients: LicdClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.kill();
  });
  const client = async (user: string) => {
    const c = await LicdClient.connect({ url: dev.url, user, host: `ws-${user}`, clientId: `qh-${user}`, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };

  const holder = await client('hold');
  const first = await holder.checkout(F);
  const started = Date.now();
  // ann and bob wait until they get the seat; cat gives up after 2 s.
  const ann = await client('ann');
  const bob = await client('bob');
  const cat = await client('cat');
  const places: string[] = [];
  const annSeat = ann.checkout(F, { wait: true, maxWait: 600, onQueue: () => places.push('ann') });
  await until(() => places.includes('ann'), 'ann queued', 20_000);
  const bobSeat = bob.checkout(F, { wait: true, maxWait: 600, onQueue: () => places.push('bob') });
  await until(() => places.includes('bob'), 'bob queued', 20_000);
  const catGaveUp = cat.checkout(F, { wait: true, maxWait: 2 }).then(
    () => 'granted',
    (e: { code?: string }) => e.code,
  );
  t.is(await catGaveUp, 'TIMEOUT', 'cat left the queue at its maxWait');

  // The seat goes to ann, then to bob, each after a hold of a second or more.
  await until(() => Date.now() - started >= 3000, 'three seconds of waiting', 10_000);
  await holder.checkin({ leases: [first.id] });
  const a: Lease = await annSeat;
  await new Promise((r) => setTimeout(r, 1000));
  await ann.checkin({ leases: [a.id] });
  const b: Lease = await bobSeat;
  await bob.checkin({ leases: [b.id] });

  const queue = await run(['report', 'queue', '--json', ...admin], dev.env);
  t.is(queue.code, 0, queue.stderr);
  const row = (JSON.parse(queue.stdout) as { rows: Array<Record<string, number | string>> }).rows.find((r) => r.feature === F)!;
  t.like(row, { waits: 3, waitsServed: 2, waitPeak: 3 }, JSON.stringify(row));
  t.true((row.waitMaxSeconds as number) >= 3, `bob waited through two holds: ${row.waitMaxSeconds} s`);
  t.true((row.waitMeanSeconds as number) > 0 && (row.waitMeanSeconds as number) <= (row.waitMaxSeconds as number));
  t.true((row.waitHours as number) > 0);
  // Features nobody waited for say so with zeros.
  t.like((JSON.parse(queue.stdout) as { rows: Array<Record<string, unknown>> }).rows.find((r) => r.feature === 'vray_render'), { waits: 0, waitPeak: 0, waitHours: 0 });

  const users = await run(['report', 'users', '--by', 'user', '--json', ...admin], dev.env);
  t.is(users.code, 0, users.stderr);
  const byUser = new Map((JSON.parse(users.stdout) as { rows: Array<{ key: string; seatHours: number; waitHours: number; waits: number }> }).rows.map((r) => [r.key, r]));
  for (const who of ['ann', 'bob', 'cat']) {
    t.is(byUser.get(who)?.waits, 1, `${who} waited once`);
    t.true(byUser.get(who)!.waitHours > 0, `${who}'s hours waited are counted`);
  }
  t.true(byUser.get('bob')!.waitHours >= byUser.get('ann')!.waitHours, 'bob waited at least as long as ann (behind her; hours are rounded to 3 places)');
  t.is(byUser.get('cat')!.seatHours, 0, 'cat never got a seat, but her wait counts');
  t.is(byUser.get('hold')!.waits, 0);

  const table = await run(['report', 'queue', '--utc', ...admin], dev.env);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /\nFEATURE +LICENSED +WAITS +SERVED +MEAN-S +MAX-S +PEAK-Q +WAIT-H\n/);
  t.regex(table.stdout, /\nnuke_i +1 +3 +2 +[\d.]+ +[\d.]+ +3 +[\d.]+\n/);
  t.true(table.stdout.split('\n').every((l) => l.length <= 80), 'the table fits 80 columns');
  const csv = await run(['report', 'users', '--format', 'csv', ...admin], dev.env);
  t.regex(csv.stdout.split('\r\n')[0]!, /^USER,SEAT-H,LEASE-H,BORROW-H,WAIT-H,SESSIONS,FEATURES$/);
});
