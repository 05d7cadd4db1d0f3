/**
 * Issue 9, finding 3: one client could stall every answer of the embedded broker. A raw MQTT
 * client subscribes to its answer topic, sends 3,000 status requests and never reads its socket.
 * aedes counted a message delivered only once every subscriber's socket took it, and read no more
 * from the publisher (licd) until then: so nobody got an answer until aedes dropped the stuck
 * client at its 60 s drain timeout. Here a probe client asks the whole time, and another client
 * checks a seat out during the stall: every answer must arrive.
 */
import test from 'ava';
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { LicdError } from '../../src/core/errors.ts';
import { topics } from '../../src/core/protocol.ts';
import { startTestDaemon } from '../helpers/daemon.ts';

const FLOOD = Number(process.env.FLOOD ?? 3000);
const PROBE_TIMEOUT_MS = 5000;
const PROBE_WINDOW_MS = 8000;

function packet(p: mqttPacket.Packet): Buffer {
  return mqttPacket.generate(p);
}

/** Connects and subscribes by hand, waits for CONNACK and SUBACK, then stops reading for good. */
async function stuckClient(port: number, clientId: string): Promise<Socket> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.on('error', () => {}); // the broker will drop it
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const seen = new Set<string>();
  parser.on('packet', (p) => seen.add(p.cmd));
  const onData = (d: Buffer) => parser.parse(d);
  sock.on('data', onData);
  const waitFor = async (cmd: string) => {
    const deadline = Date.now() + 5000;
    while (!seen.has(cmd)) {
      if (Date.now() > deadline) throw new Error(`no ${cmd} from the broker`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  sock.write(packet({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 } as mqttPacket.IConnectPacket));
  await waitFor('connack');
  sock.write(packet({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: topics.clientResponse(clientId), qos: 1 }] } as mqttPacket.ISubscribePacket));
  await waitFor('suback');
  // From here on the socket is never read: the kernel buffers fill, then the broker's.
  sock.off('data', onData);
  sock.pause();
  const chunks: Buffer[] = [];
  for (let i = 0; i < FLOOD; i++) {
    chunks.push(packet({ cmd: 'publish', topic: topics.clientRequest(clientId), payload: Buffer.from(JSON.stringify({ id: `s${i}`, op: 'status' })), qos: 1, messageId: (i % 65000) + 2, retain: false, dup: false } as mqttPacket.IPublishPacket));
  }
  sock.write(Buffer.concat(chunks));
  return sock;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

test('a client that floods requests and never reads its socket delays nobody else', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const probe = await d.client({ timeoutMs: PROBE_TIMEOUT_MS });
  const worker = await d.client({ timeoutMs: PROBE_TIMEOUT_MS, user: 'render', host: 'node-7' });
  // More leases make every status answer larger, so the stuck socket fills sooner.
  const fillers = await d.client();
  for (let i = 0; i < 3; i++) await fillers.checkout('vray_distributed', { pid: 1000 + i });

  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const stuck = await stuckClient(d.broker!.port, 'stuck-node-1');
  t.teardown(() => stuck.destroy());

  const latencies: number[] = [];
  const failures: string[] = [];
  const slow: string[] = [];
  const t0 = Date.now();
  const checkout = (async () => {
    await new Promise((r) => setTimeout(r, 1000));
    const s = Date.now();
    try {
      const lease = await worker.checkout('vray_render');
      return { ok: true, ms: Date.now() - s, status: lease.status };
    } catch (e) {
      return { ok: false, ms: Date.now() - s, status: e instanceof LicdError ? e.code : String(e) };
    }
  })();
  while (Date.now() - t0 < PROBE_WINDOW_MS) {
    const s = Date.now();
    try {
      await probe.status();
      latencies.push(Date.now() - s);
      if (Date.now() - s > 200) slow.push(`${s - t0}+${Date.now() - s}`);
    } catch (e) {
      failures.push(`${Date.now() - t0} ms: ${e instanceof LicdError ? e.code : ''} ${(e as Error).message}`);
    }
  }
  const co = await checkout;
  h.disable();
  t.log(`event loop delay max ${Math.round(h.max / 1e6)} ms, p99 ${Math.round(h.percentile(99) / 1e6)} ms`);
  t.log(`probe: ${latencies.length} answers, p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms, max ${Math.max(...latencies)} ms; ${failures.length} without an answer`);
  if (slow.length > 0) t.log(`probe answers over 200 ms (start+ms): ${slow.join(', ')}`);
  t.log(`checkout during the stall: ${co.ok ? co.status : `refused ${co.status}`} after ${co.ms} ms`);
  t.deepEqual(failures, [], `every probe request is answered within ${PROBE_TIMEOUT_MS} ms`);
  t.true(co.ok, `the checkout made during the stall is answered (${co.status})`);
  t.true(latencies.length > 0);
});
