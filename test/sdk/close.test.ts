/**
 * LicdClient.close() returns when the broker stops answering: mqtt.js's clean end waits for every
 * unacknowledged publish, and once it has stopped reconnecting nothing would ever acknowledge
 * them, so close() hung for good (a crash-harness run stalled its whole test file on it). Real
 * parts: the daemon with its embedded broker, the SDK, and a TCP relay between them that stops
 * passing the broker's bytes, as a broker that hangs or a cut link would.
 */
import test from 'ava';
import { createServer, connect, type Socket } from 'node:net';
import { LicdClient } from '../../src/sdk/client.ts';
import { startTestDaemon } from '../helpers/daemon.ts';

test('close() returns within a few seconds when the broker stops acknowledging', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const target = new URL(d.url);
  let frozen = false;
  const sockets: Socket[] = [];
  const relay = createServer((client) => {
    const up = connect(Number(target.port), target.hostname);
    sockets.push(client, up);
    client.on('data', (b) => up.write(b));
    up.on('data', (b) => {
      if (!frozen) client.write(b);
    });
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    relay.close();
  });
  const port = (relay.address() as { port: number }).port;

  const c = await LicdClient.connect({ url: `mqtt://127.0.0.1:${port}`, user: 'ann', host: 'ws-1', timeoutMs: 3000 });
  await c.checkout('nuke_i');
  frozen = true;
  // A request whose publish the broker will never acknowledge (as far as the client can tell).
  const asked = c.status().catch(() => 'no answer');
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const closed = await Promise.race([c.close({ checkin: false }).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
  t.true(closed, 'close() returned');
  t.true(Date.now() - started < 15_000);
  t.is(await asked, 'no answer');
});
