/**
 * Issue 18: heartbeat answers go at QoS 0 (src/mqtt/server-link.ts, HEARTBEAT_ANSWER_QOS), every
 * other answer at QoS 1. A render node subscribed to its answers at QoS 1, through a real
 * mosquitto and through the embedded broker, gets a checkout's and a check-in's answer at QoS 1
 * (the broker keeps them for it until it acknowledges) and a heartbeat's at QoS 0; the heartbeat
 * still renews the lease.
 */
import test, { type ExecutionContext } from 'ava';
import mqtt from 'mqtt';
import { topics, type Answer } from '../../src/core/protocol.ts';
import { startTestDaemon } from '../helpers/daemon.ts';
import { startExternalDaemon } from '../helpers/mosquitto.ts';

test('through mosquitto: heartbeat answers arrive at QoS 0, checkout and check-in answers at QoS 1', async (t) => {
  t.timeout(60_000);
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  await answersAndTheirQos(t, x.url);
});

test('through the embedded broker: heartbeat answers arrive at QoS 0, checkout and check-in answers at QoS 1', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  await answersAndTheirQos(t, `mqtt://127.0.0.1:${d.broker!.port}`);
});

async function answersAndTheirQos(t: ExecutionContext, url: string): Promise<void> {
  const id = 'qos-node-1';
  const c = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0, clean: true });
  t.teardown(() => c.endAsync(true));
  const waiting = new Map<string, (a: { answer: Answer; qos: number }) => void>();
  c.on('message', (_topic, payload, packet) => {
    const answer = JSON.parse(payload.toString()) as Answer;
    if (typeof answer.id === 'string') waiting.get(answer.id)?.({ answer, qos: packet.qos });
  });
  await c.subscribeAsync(topics.clientResponse(id), { qos: 1 });
  const holder = 'qos-test-holder-secret-0123456789';
  const ask = (body: Record<string, unknown>) =>
    new Promise<{ answer: Answer; qos: number }>((resolve, reject) => {
      const rid = String(body.id);
      const timer = setTimeout(() => reject(new Error(`no answer to ${rid}`)), 10_000);
      waiting.set(rid, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
      c.publish(topics.clientRequest(id), JSON.stringify({ ...body, holder }), { qos: 1 });
    });

  const out = await ask({ id: 'c1', op: 'checkout', feature: 'vray_distributed', user: 'alice', host: 'node-1', pid: 4242 });
  t.true(out.answer.ok, JSON.stringify(out.answer));
  t.is(out.qos, 1, 'a checkout answer is kept by the broker until the client has it');
  const lease = (out.answer as { result: { lease: { id: string; until: string } } }).result.lease;

  await new Promise((r) => setTimeout(r, 1100));
  const hb = await ask({ id: 'h1', op: 'heartbeat' });
  t.true(hb.answer.ok, JSON.stringify(hb.answer));
  t.is(hb.qos, 0, 'a heartbeat answer goes at QoS 0: the SDK repeats a heartbeat that got none');
  const renewed = (hb.answer as { result: { renewed: { id: string; until: string }[] } }).result.renewed;
  t.deepEqual(renewed.map((r) => r.id), [lease.id]);
  t.true(Date.parse(renewed[0]!.until) > Date.parse(lease.until), 'the heartbeat renewed the lease');

  const unknown = await ask({ id: 'h2', op: 'heartbeat', leases: ['no-such-lease'] });
  t.deepEqual((unknown.answer as { result: { unknown: string[] } }).result.unknown, ['no-such-lease']);
  t.is(unknown.qos, 0, 'a heartbeat naming a lease the client does not hold is answered at QoS 0 too');

  const back = await ask({ id: 'i1', op: 'checkin', leases: [lease.id] });
  t.true(back.answer.ok, JSON.stringify(back.answer));
  t.is(back.qos, 1, 'a check-in answer goes at QoS 1');
}
