/**
 * tsx bench/web-bridge.ts [N]   (default 300)
 *
 * The web page's MQTT paths compared (docs/web.md, "The WebSocket bridge"): the round trip of an
 * admin request and its answer, N in a row, over (1) plain MQTT to the embedded broker, (2) the
 * WebSocket bridge into aedes (what licd does with the embedded broker), (3) the WebSocket relay
 * to a broker's TCP listener (what licd does with mosquitto; here relaying to aedes' own port, so
 * only the path differs). Prints median and p95 in ms. A measurement, not a test: no threshold.
 */
import mqtt from 'mqtt';
import { HttpServer } from '../src/http/server.ts';
import { connectMqtt } from '../src/mqtt/connect.ts';
import { silentLog } from '../src/core/service.ts';
import { WebBridge } from '../src/web/bridge.ts';
import { startTestDaemon } from '../test/helpers/daemon.ts';

const N = Number(process.argv[2] ?? 300);

async function roundTrips(url: string, password: string, label: string): Promise<string> {
  const id = `bench-${label.replace(/\W/g, '')}`;
  const c = await new Promise<mqtt.MqttClient>((resolve, reject) => {
    // TCP as the SDK connects (no Nagle: connectMqtt); WebSockets as a browser does.
    const o = { clientId: id, username: 'admin', password, protocolVersion: 4 as const, reconnectPeriod: 0 };
    const x = url.startsWith('mqtt:') ? connectMqtt(url, o) : mqtt.connect(url, o);
    x.once('connect', () => resolve(x));
    x.once('error', reject);
  });
  await c.subscribeAsync(`licd/v1/client/${id}/res`, { qos: 1 });
  const waiting = new Map<string, () => void>();
  c.on('message', (_t, p) => waiting.get((JSON.parse(p.toString()) as { id: string }).id)?.());
  const ms: number[] = [];
  for (let i = 0; i < N + 20; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      waiting.set(String(i), resolve);
      c.publish(`licd/v1/admin/${id}/req`, JSON.stringify({ id: String(i), op: 'borrows' }), { qos: 1 });
    });
    if (i >= 20) ms.push(performance.now() - t0);
  }
  await c.endAsync();
  ms.sort((a, b) => a - b);
  const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(2);
  return `${label.padEnd(40)} median ${q(0.5)} ms   p95 ${q(0.95)} ms`;
}

const d = await startTestDaemon();
try {
  const password = d.adminCredentials!.password;
  const relayHttp = new HttpServer({ host: '127.0.0.1', port: 0, log: silentLog });
  const port = Number(new URL(d.url).port);
  const relay = new WebBridge({ target: { kind: 'external', host: '127.0.0.1', port }, secure: false, anonymous: false, maxConnections: 4, maxFrameBytes: 1 << 20, log: silentLog });
  relayHttp.onUpgrade(relay.upgrade);
  const relayUrl = (await relayHttp.start()).url;
  const lines = [
    await roundTrips(d.url, password, 'MQTT over TCP (no bridge)'),
    await roundTrips(`${d.http!.url.replace(/^http/, 'ws')}/mqtt`, password, 'WebSocket into aedes (embedded)'),
    await roundTrips(`${relayUrl.replace(/^http/, 'ws')}/mqtt`, password, 'WebSocket relayed to TCP (external)'),
  ];
  process.stdout.write(`${N} admin round trips each\n${lines.join('\n')}\n`);
  await relay.close();
  await relayHttp.stop();
} finally {
  await d.dispose();
}
