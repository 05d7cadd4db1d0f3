/**
 * LicdClient.close() returns when the broker stops answering: mqtt.js's clean end waits for every
 * unacknowledged publish, and once it has stopped reconnecting nothing would ever acknowledge
 * them, so close() hung for good (a crash-harness run stalled its whole test file on it). Real
 * parts: the daemon with its embedded broker, the SDK, and a TCP relay between them that stops
 * passing the broker's bytes, as a broker that hangs or a cut link would.
 */
import test from 'ava';
import { LicdClient } from '../../src/sdk/client.ts';
import { startTestDaemon } from '../helpers/daemon.ts';
import { tcpRelay } from '../helpers/relay.ts';

test('close() returns within a few seconds when the broker stops acknowledging', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const relay = await tcpRelay(t, new URL(d.url));

  const c = await LicdClient.connect({ url: relay.url, user: 'ann', host: 'ws-1', timeoutMs: 3000 });
  await c.checkout('nuke_i');
  relay.freeze(true);
  // A request whose publish the broker will never acknowledge (as far as the client can tell).
  const asked = c.status().catch(() => 'no answer');
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const closed = await Promise.race([c.close({ checkin: false }).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
  t.true(closed, 'close() returned');
  t.true(Date.now() - started < 15_000);
  t.is(await asked, 'no answer');
});
