/**
 * licd's own per-client limit (src/mqtt/server-link.ts), through a real mosquitto, which passes
 * a flood on to licd: a client that sends 1,000 heartbeats at once gets at most 64 handled at a
 * time and BUSY for more (or nothing, past twice that), and everybody else is still answered.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { topics, type Answer } from '../../src/core/protocol.ts';
import { until } from '../helpers/daemon.ts';
import { startExternalDaemon } from '../helpers/mosquitto.ts';

test('a client flooding licd through mosquitto gets BUSY; other clients are answered', async (t) => {
  t.timeout(60_000);
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const probe = await x.client();
  const id = 'flooder-1';
  const c = await mqtt.connectAsync(x.url, { clientId: id, reconnectPeriod: 0, clean: true });
  t.teardown(() => c.endAsync(true));
  const answers: Answer[] = [];
  c.on('message', (_topic, payload) => answers.push(JSON.parse(payload.toString()) as Answer));
  await c.subscribeAsync(topics.clientResponse(id), { qos: 1 });
  const N = 1000;
  for (let i = 0; i < N; i++) c.publish(topics.clientRequest(id), JSON.stringify({ id: `h${i}`, op: 'heartbeat', holder: 'flooding-client-holder-secret' }), { qos: 1 });
  const s = await probe.status();
  t.is(s.server.state, 'online', 'the probe is answered during the flood');
  // Quiet again: the flood has gone through.
  let last = -1;
  await until(
    async () => {
      await new Promise((r) => setTimeout(r, 500));
      const done = answers.length === last;
      last = answers.length;
      return done;
    },
    'the flood to end',
    30_000,
    0,
  );
  const codes = new Map<string, number>();
  for (const a of answers) {
    const k = a.ok ? 'ok' : a.error.code;
    codes.set(k, (codes.get(k) ?? 0) + 1);
  }
  t.log(`${N} heartbeats: ${answers.length} answers ${JSON.stringify(Object.fromEntries(codes))}`);
  t.deepEqual([...codes.keys()].filter((k) => k !== 'ok' && k !== 'BUSY'), [], 'only answers and BUSY refusals');
  t.true((codes.get('BUSY') ?? 0) > 0, 'the flood met the limit');
  t.true(answers.every((a) => typeof a.id === 'string' && a.id.startsWith('h')), 'BUSY answers carry the request id');
  // The limit is per request in progress, not a ban: the same client is served again.
  const again = new Promise<Answer>((resolve) => c.on('message', (_t, p) => {
    const a = JSON.parse(p.toString()) as Answer;
    if (a.id === 'after') resolve(a);
  }));
  c.publish(topics.clientRequest(id), JSON.stringify({ id: 'after', op: 'status' }), { qos: 1 });
  t.true((await again).ok);
});
