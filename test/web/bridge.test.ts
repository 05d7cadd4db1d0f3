/**
 * Issue 16: MQTT over WebSocket at /mqtt on licd's HTTP server, into the embedded broker with its
 * access rules. mqtt.js as the browser's client (its WebSocket transport), ws for raw checks.
 */
import test from 'ava';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { startTestDaemon, until, type TestDaemon } from '../helpers/daemon.ts';

function wsUrl(d: TestDaemon): string {
  return `${d.http!.url.replace(/^http/, 'ws')}/mqtt`;
}

function connectWs(url: string, o: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 10_000, ...o });
    c.once('connect', () => resolve(c));
    c.once('error', (e) => {
      c.end(true);
      reject(e);
    });
  });
}

function ask(c: mqtt.MqttClient, topic: string, req: Record<string, unknown>): Promise<any> {
  const id = c.options.clientId!;
  return new Promise((resolve) => {
    c.subscribe(`licd/v1/client/${id}/res`, { qos: 1 }, () => c.publish(topic, JSON.stringify(req), { qos: 1 }));
    c.on('message', (t, p) => {
      if (t.endsWith('/res')) resolve(JSON.parse(p.toString()));
    });
  });
}

/** Opens a raw WebSocket; resolves with how it went: 'open', or the HTTP status it was refused with. */
function rawWs(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket | null; status: number | 'open' }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'mqtt', { headers });
    ws.once('open', () => resolve({ ws, status: 'open' }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ ws: null, status: res.statusCode ?? 0 });
      res.resume();
    });
    ws.once('error', () => resolve({ ws: null, status: 0 }));
  });
}

test('on this machine over plain HTTP the admin signs in through the bridge and uses admin ops; a client sees retained state', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const admin = await connectWs(wsUrl(d), { clientId: 'web-admin-1', username: 'admin', password: d.adminCredentials!.password });
  t.teardown(() => admin.end(true));
  const a = await ask(admin, 'licd/v1/admin/web-admin-1/req', { id: 'x', op: 'borrows' });
  t.deepEqual(a, { id: 'x', ok: true, op: 'borrows', result: { borrows: [] } });
  const state = await new Promise<any>((resolve) => {
    admin.subscribe('licd/v1/server/state', { qos: 1 });
    admin.on('message', (topic, p) => topic === 'licd/v1/server/state' && resolve(JSON.parse(p.toString())));
  });
  t.is(state.state, 'online');
});

test('anonymous viewing is off by default; with web.anonymous a viewer reads the retained state but cannot use admin ops', async (t) => {
  const off = await startTestDaemon();
  t.teardown(() => off.dispose());
  const e = await connectWs(wsUrl(off), { clientId: 'web-anon-1' }).then(
    () => null,
    (x: Error & { code?: number }) => x,
  );
  t.is(e?.code, 5, 'Not authorized');

  const on = await startTestDaemon({ config: { web: { anonymous: true } } });
  t.teardown(() => on.dispose());
  const v = await connectWs(wsUrl(on), { clientId: 'web-anon-2' });
  t.teardown(() => v.end(true));
  const features = new Set<string>();
  v.on('message', (topic) => features.add(topic));
  v.subscribe('licd/v1/feature/+', { qos: 1 });
  await until(() => features.has('licd/v1/feature/vray_render'), 'the retained feature topics');
  // An admin op from a viewer: the broker refuses the publish and drops the connection.
  const closed = new Promise<void>((resolve) => v.once('close', () => resolve()));
  v.publish('licd/v1/admin/web-anon-2/req', JSON.stringify({ id: '1', op: 'lease.revoke', lease: 'x' }), { qos: 1 });
  await closed;
  t.pass();
});

test('the bridge refuses other paths, pages of other sites, too many connections and too large frames; a stop closes with 1001', async (t) => {
  const d = await startTestDaemon({ config: { web: { maxConnections: 2, maxFrameBytes: 8192 } } });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : d.dispose()));
  const url = wsUrl(d);
  t.is((await rawWs(url.replace('/mqtt', '/other'))).status, 404);
  t.is((await rawWs(url, { Origin: 'http://evil.example' })).status, 403);
  const host = new URL(d.http!.url).host;
  const first = await rawWs(url, { Origin: `http://${host}` });
  t.is(first.status, 'open', 'a page of licd itself');
  const second = await rawWs(url);
  t.is(second.status, 'open');
  t.is((await rawWs(url)).status, 503, 'web.maxConnections');
  // A frame over web.maxFrameBytes closes that connection (1009: message too big).
  const code = await new Promise<number>((resolve) => {
    second.ws!.once('close', (c) => resolve(c));
    second.ws!.send(Buffer.alloc(9000));
  });
  t.is(code, 1009);
  await until(async () => (await rawWs(url).then((r) => (r.ws?.terminate(), r.status))) === 'open', 'a place is free again');
  // A clean stop: the open WebSocket is closed with 1001 (going away).
  const going = new Promise<number>((resolve) => first.ws!.once('close', (c) => resolve(c)));
  stopped = true;
  await d.dispose();
  t.is(await going, 1001);
});
