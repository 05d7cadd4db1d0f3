/**
 * Issue 9, finding 2: a clean mosquitto stop (SIGTERM, as a package upgrade does) publishes the
 * last will of every client. licd used to reclaim those leases after the disconnect grace, and the
 * SDK's first heartbeat after reconnecting reached the broker before licd had subscribed again,
 * so the holder lost its seat (and another client could take it). Here a real mosquitto process
 * is stopped for longer than the grace and started again on the same port: the holder must keep
 * its lease (same id, never reclaimed), and nobody else may take the 1-seat feature.
 */
import test from 'ava';
import { LicdError } from '../../src/core/errors.ts';
import type { LicdClient } from '../../src/sdk/client.ts';
import { until } from '../helpers/daemon.ts';
import { startExternalDaemon, type ExternalDaemon } from '../helpers/mosquitto.ts';
import { tcpRelay } from '../helpers/relay.ts';

const GRACE_S = 1;
/** Broker downtime: well past the disconnect grace. */
const DOWN_MS = 3000;

async function restartRound(t: import('ava').ExecutionContext, x: ExternalDaemon, holder: LicdClient, contender: LicdClient, leaseId: string, signal: 'SIGTERM' | 'SIGKILL', round: number): Promise<void> {
  const t0 = Date.now();
  await x.mosquitto.kill(signal);
  await new Promise((r) => setTimeout(r, DOWN_MS));
  await x.mosquitto.relaunch();
  // Wait until the lease has settled: renewed by the holder's heartbeat (active again), or gone
  // or replaced (reclaimed: what must not happen).
  const admin = await x.admin();
  await until(
    async () => {
      try {
        const f = (await admin.status()).features.find((x) => x.feature === 'nuke_i')!;
        return !(f.leases.length === 1 && f.leases[0]!.id === leaseId && f.leases[0]!.state === 'disconnected');
      } catch {
        return false; // licd not subscribed again yet
      }
    },
    `round ${round}: the lease to settle after the restart`,
    30_000,
    200,
  );
  // Give a reclaim every chance to happen: past the grace again.
  await new Promise((r) => setTimeout(r, GRACE_S * 1000 + 1500));
  const s = await admin.status();
  const f = s.features.find((x) => x.feature === 'nuke_i')!;
  t.log(`round ${round} (${signal}): back after ${Date.now() - t0} ms; nuke_i leases: ${f.leases.map((l) => `${l.id} ${l.state}`).join(', ')}`);
  t.deepEqual(
    f.leases.map((l) => ({ id: l.id, state: l.state })),
    [{ id: leaseId, state: 'active' }],
    `round ${round} (${signal}): the holder's lease is the only one, the same, and active`,
  );
  t.deepEqual(
    holder.heldLeases().map((l) => l.id),
    [leaseId],
    `round ${round}: the holder still holds its lease`,
  );
  const e = await t.throwsAsync(contender.checkout('nuke_i'), { instanceOf: LicdError }, `round ${round}: another client cannot take the seat`);
  t.is(e?.code, 'NO_SEATS');
  await admin.close({ checkin: false });
}

async function setup(t: import('ava').ExecutionContext) {
  const x = await startExternalDaemon({ config: { leases: { disconnectGraceSeconds: GRACE_S } } });
  t.teardown(() => x.dispose());
  const holder = await x.client({ user: 'render', host: 'node-1' });
  // Its checkout after a restart waits for its reconnect, whose retries back off up to 6 s.
  const contender = await x.client({ user: 'other', host: 'node-2', timeoutMs: 30_000 });
  const lease = await holder.checkout('nuke_i');
  const events: string[] = [];
  lease.on('lost', (e: Error) => events.push(`lost: ${e.message}`));
  lease.on('regained', () => events.push('regained (its lease had been reclaimed)'));
  return { x, holder, contender, leaseId: lease.id, events };
}

test('a clean mosquitto stop and restart (3 rounds) leaves the holder its lease', async (t) => {
  t.timeout(120_000);
  const { x, holder, contender, leaseId, events } = await setup(t);
  for (let round = 1; round <= 3; round++) await restartRound(t, x, holder, contender, leaseId, 'SIGTERM', round);
  t.deepEqual(events, [], 'the lease was never lost or taken again');
});

test('kill -9 of mosquitto and restart leaves the holder its lease', async (t) => {
  t.timeout(60_000);
  const { x, holder, contender, leaseId, events } = await setup(t);
  await restartRound(t, x, holder, contender, leaseId, 'SIGKILL', 1);
  t.deepEqual(events, []);
});

test('a request made while the connection to the broker is down is sent after the client has subscribed again, and answered', async (t) => {
  // mqtt.js keeps a request made while the broker is away and sends it first thing after the
  // reconnect, before the answer topic is subscribed again (a clean session starts with none): licd's
  // answer could go nowhere and the request end in TIMEOUT (CI: a contender's checkout, refused
  // NO_SEATS at once, was a TIMEOUT after a kill -9 of mosquitto). Here only the client's own
  // connection drops (through a relay), so licd stays subscribed and must answer.
  t.timeout(60_000);
  const { x } = await setup(t);
  const r = await tcpRelay(t, new URL(x.mosquitto.url));
  // The request waits for the reconnect, whose retries back off (up to 6 s): more than the default.
  const contender = await x.client({ url: r.url, user: 'other', host: 'node-3', timeoutMs: 30_000 });
  const sent: string[] = [];
  contender.mqtt.on('packetsend', (p: { cmd: string; topic?: string; subscriptions?: Array<{ topic: string }> }) => {
    if (p.cmd === 'publish') sent.push(`publish ${p.topic}`);
    else if (p.cmd === 'subscribe') sent.push(`subscribe ${p.subscriptions!.map((s) => s.topic).join(' ')}`);
  });
  r.cut();
  await until(() => !contender.connected, 'the contender to notice its connection is gone', 10_000, 20);
  const asked = contender.checkout('nuke_i').then(
    () => 'granted',
    (e: LicdError) => e.code,
  );
  await new Promise((res) => setTimeout(res, 1000));
  r.restore();
  t.is(await asked, 'NO_SEATS', 'answered: the holder still has the only seat');
  const firstRequest = sent.findIndex((s) => s.startsWith('publish ') && s.endsWith('/req'));
  const firstSubscribe = sent.findIndex((s) => s.startsWith('subscribe '));
  t.log(sent.slice(0, 4).join('; '));
  t.true(firstSubscribe >= 0 && firstSubscribe < firstRequest, `the answer topic subscribed before the request went out: ${sent.slice(0, 4).join('; ')}`);
});
