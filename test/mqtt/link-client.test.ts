/**
 * The daemon's own MQTT client (src/mqtt/link-client.ts) against a real mosquitto process, and
 * against a broker written here byte by byte where a real one cannot be made to misbehave
 * (split and malformed packets, an unanswered PINGREQ). The whole daemon over this link is
 * covered by the mosquitto and integration suites; these pin the client's own promises.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { createServer, type Server, type Socket } from 'node:net';
import { LinkClient, MqttRefusal, type LinkClientOptions } from '../../src/mqtt/link-client.ts';
import { waitConnected } from '../../src/mqtt/reconnect.ts';
import { until } from '../helpers/daemon.ts';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';

const FAST = { firstMs: 200, capMs: 200 };

function link(m: Mosquitto, o: Partial<LinkClientOptions> = {}): LinkClient {
  return new LinkClient({ urls: [m.url], clientId: `licd-daemon-t${Math.random().toString(16).slice(2, 8)}`, username: 'licd', password: m.passwords.licd, protocolVersion: 4, backoff: FAST, ...o });
}

async function watcher(m: Mosquitto, topic: string, qos: 0 | 1 = 1): Promise<{ c: mqtt.MqttClient; got: Array<{ topic: string; text: string; retain: boolean }> }> {
  const c = mqtt.connect(m.url, { username: 'licd', password: m.passwords.licd, reconnectPeriod: 200 });
  const got: Array<{ topic: string; text: string; retain: boolean }> = [];
  c.on('message', (t, p, packet) => got.push({ topic: t, text: p.toString(), retain: packet.retain }));
  await new Promise<void>((resolve, reject) => c.once('connect', () => c.subscribe(topic, { qos }, (e) => (e ? reject(e) : resolve()))));
  return { c, got };
}

const ended = (l: LinkClient) => new Promise<void>((resolve) => l.end(resolve));
const published = (l: LinkClient, topic: string, text: string, retain = false) => new Promise<void>((resolve, reject) => l.publish(topic, text, { qos: 1, retain }, (e) => (e ? reject(e) : resolve())));

test('70,000 QoS 1 publishes through mosquitto: each acknowledged once, all delivered in order, across the wrap of the 16-bit packet id', async (t) => {
  const m = await startMosquitto();
  t.teardown(() => m.stop());
  const w = await watcher(m, 'licd/v1/test/seq');
  t.teardown(() => void w.c.end(true));
  const l = link(m);
  await waitConnected(l);
  const N = 70_000;
  const acked = new Uint8Array(N);
  let errors = 0;
  for (let i = 0; i < N; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, N - i) }, (_, k) =>
        new Promise<void>((resolve) =>
          l.publish('licd/v1/test/seq', String(i + k), { qos: 1 }, (e) => {
            if (e) errors++;
            acked[i + k]!++;
            resolve();
          }),
        ),
      ),
    );
  }
  t.is(errors, 0);
  t.true(acked.every((n) => n === 1), 'every callback ran exactly once');
  await until(() => w.got.length >= N, 'the watcher to receive every message', 30_000);
  t.is(w.got.length, N);
  t.true(w.got.every((g, i) => g.text === String(i)), 'in the order published');
  await ended(l);
});

test("a broker killed and started again: the link says so once, comes back by itself, and what was published while it was down is delivered", async (t) => {
  const m = await startMosquitto();
  t.teardown(() => m.stop());
  const l = link(m);
  const events: string[] = [];
  for (const e of ['connect', 'offline'] as const) l.on(e, () => events.push(e));
  await waitConnected(l);
  await m.kill('SIGKILL');
  await until(() => !l.connected && events.includes('offline'), 'the link to notice');
  // Published while there is no broker: retained, so a watcher that comes later sees them.
  const sent = [1, 2, 3].map((i) => published(l, `licd/v1/test/down/${i}`, `while down ${i}`, true));
  await new Promise((r) => setTimeout(r, 600));
  await m.relaunch();
  await Promise.all(sent);
  t.true(l.connected);
  t.deepEqual(events, ['connect', 'offline', 'connect'], 'one offline for the outage, one connect after it');
  const w = await watcher(m, 'licd/v1/test/down/+');
  t.teardown(() => void w.c.end(true));
  await until(() => w.got.length >= 3, 'the retained messages');
  t.deepEqual(w.got.map((g) => g.text).sort(), ['while down 1', 'while down 2', 'while down 3']);
  t.true(w.got.every((g) => g.retain));
  await ended(l);
});

for (const version of [4, 5] as const) {
  test(`a wrong password is refused with the broker's reason (MQTT ${version === 4 ? '3.1.1' : '5'}), and waiting for the connection fails with it`, async (t) => {
    const m = await startMosquitto();
    t.teardown(() => m.stop());
    const l = link(m, { password: 'not-the-password', protocolVersion: version });
    const e = await t.throwsAsync(waitConnected(l, 5000), { instanceOf: MqttRefusal });
    t.regex(e!.message, /^Connection refused: (Not authori[sz]ed|Bad user ?name or password)/i);
    t.true(version === 4 ? [4, 5].includes(e!.code) : [0x86, 0x87].includes(e!.code), `code ${e!.code}`);
    t.false(l.connected);
    await ended(l);
  });
}

test('the last will goes out when the connection dies, not when the link ends cleanly', async (t) => {
  const m = await startMosquitto();
  t.teardown(() => m.stop());
  const w = await watcher(m, 'licd/v1/test/will');
  t.teardown(() => void w.c.end(true));
  const l = link(m, { will: { topic: 'licd/v1/test/will', payload: Buffer.from('gone'), qos: 1, retain: false } });
  await waitConnected(l);
  l.stream!.destroy();
  await until(() => w.got.length === 1, 'the will');
  t.is(w.got[0]!.text, 'gone');
  await until(() => l.connected, 'the link to reconnect');
  await ended(l);
  await new Promise((r) => setTimeout(r, 500));
  t.is(w.got.length, 1, 'no will after a clean end');
});

test('MQTT 5 through mosquitto: the link subscribes, receives, and its publishes are acknowledged', async (t) => {
  const m = await startMosquitto();
  t.teardown(() => m.stop());
  const l = link(m, { protocolVersion: 5 });
  const got: Array<[string, string]> = [];
  l.on('message', (topic, payload) => got.push([topic, payload.toString()]));
  await waitConnected(l);
  const granted = await new Promise<number[]>((resolve, reject) => l.subscribe({ 'licd/v1/test/five/+': { qos: 1 }, 'licd/v1/test/zero': { qos: 0 } }, (e, g) => (e ? reject(e) : resolve(g!))));
  t.deepEqual(granted, [1, 0]);
  const other = mqtt.connect(m.url, { username: 'licd', password: m.passwords.licd, protocolVersion: 5 });
  t.teardown(() => void other.end(true));
  await new Promise<void>((r) => other.once('connect', () => r()));
  await other.publishAsync('licd/v1/test/five/a', 'héllo', { qos: 1 });
  await other.publishAsync('licd/v1/test/zero', Buffer.alloc(70_000, 'x'), { qos: 0 });
  await until(() => got.length === 2, 'both messages');
  t.deepEqual(got[0], ['licd/v1/test/five/a', 'héllo']);
  t.is(got[1]![1].length, 70_000);
  await published(l, 'licd/v1/test/five/b', 'answer');
  await ended(l);
});

/** A broker written here: it answers CONNECT with CONNACK and then does what the test says. */
async function fakeBroker(onConnect: (s: Socket, n: number) => void): Promise<{ server: Server; url: string; received: Buffer[] }> {
  const received: Buffer[] = [];
  let n = 0;
  const server = createServer((s) => {
    s.setNoDelay(true);
    let first = true;
    s.on('data', (d) => {
      received.push(d);
      if (first && d[0] === 0x10) {
        first = false;
        s.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
        onConnect(s, ++n);
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { server, url: `mqtt://127.0.0.1:${port}`, received };
}

function publishPacket(topic: string, payload: string, qos: 0 | 1, id = 0): Buffer {
  const t = Buffer.from(topic);
  const p = Buffer.from(payload);
  const rest = 2 + t.length + (qos ? 2 : 0) + p.length;
  const head = rest < 128 ? [rest] : [(rest % 128) | 0x80, Math.floor(rest / 128)];
  return Buffer.concat([Buffer.from([0x30 | (qos << 1), ...head, t.length >> 8, t.length & 0xff]), t, Buffer.from(qos ? [id >> 8, id & 0xff] : []), p]);
}

test('packets split at every byte or sent together are read whole; a malformed packet costs the connection, not the process', async (t) => {
  const b = await fakeBroker((s, n) => {
    if (n !== 1) return;
    const two = Buffer.concat([publishPacket('licd/v1/a', 'x'.repeat(300), 1, 7), publishPacket('licd/v1/b', 'second', 0)]);
    void (async () => {
      for (const byte of two) {
        s.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      s.write(Buffer.concat([publishPacket('licd/v1/c', 'third', 0), publishPacket('licd/v1/d', 'fourth', 0)]));
      // A remaining length of five bytes: no such packet.
      setTimeout(() => s.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), 200);
    })();
  });
  t.teardown(() => void b.server.close());
  const l = new LinkClient({ urls: [b.url], clientId: 'licd-daemon-fake', protocolVersion: 4, backoff: FAST });
  const got: string[] = [];
  const errors: string[] = [];
  l.on('message', (topic, payload) => got.push(`${topic}=${payload.length > 10 ? payload.length : payload.toString()}`));
  l.on('error', (e) => errors.push(e.message));
  let connects = 0;
  l.on('connect', () => connects++);
  await until(() => connects >= 2, 'the link to reconnect after the malformed packet');
  t.deepEqual(got, ['licd/v1/a=300', 'licd/v1/b=second', 'licd/v1/c=third', 'licd/v1/d=fourth']);
  t.true(errors.some((m) => /packet length of more than 4 bytes/.test(m)), errors.join('; '));
  const all = Buffer.concat(b.received);
  t.true(all.includes(Buffer.from([0x40, 0x02, 0x00, 0x07])), 'the QoS 1 message was acknowledged (PUBACK 7)');
  await ended(l);
});

test('a broker that stops answering PINGREQ is left after one keep-alive, and the link connects again', async (t) => {
  const b = await fakeBroker(() => {});
  t.teardown(() => void b.server.close());
  const l = new LinkClient({ urls: [b.url], clientId: 'licd-daemon-ka', protocolVersion: 4, backoff: FAST, keepaliveSeconds: 1 });
  const errors: string[] = [];
  l.on('error', (e) => errors.push(e.message));
  let connects = 0;
  l.on('connect', () => connects++);
  await until(() => connects >= 2, 'a second connection after the silent keep-alive', 10_000);
  t.true(Buffer.concat(b.received).includes(Buffer.from([0xc0, 0x00])), 'a PINGREQ was sent');
  t.true(errors.some((m) => /did not answer a PINGREQ within the keep-alive of 1 s/.test(m)), errors.join('; '));
  await ended(l);
});

/** The MQTT packets in a byte stream: each one's first byte, where its variable header starts, and its remaining length. */
function* packetsIn(bytes: Buffer): Generator<{ head: number; at: number; len: number }> {
  let i = 0;
  while (i < bytes.length) {
    const head = bytes[i]!;
    let len = 0;
    let mult = 1;
    let j = i + 1;
    for (;;) {
      const b = bytes[j++]!;
      len += (b & 0x7f) * mult;
      mult *= 128;
      if ((b & 0x80) === 0) break;
    }
    yield { head, at: j, len };
    i = j + len;
  }
}

/** The PUBLISH packets in a byte stream: packet id, DUP flag, payload. */
function publishesIn(bytes: Buffer): Array<{ id: number; dup: boolean; payload: string }> {
  const out: Array<{ id: number; dup: boolean; payload: string }> = [];
  for (const { head, at, len } of packetsIn(bytes)) {
    if (head >> 4 !== 3 || ((head >> 1) & 3) !== 1) continue;
    const tlen = bytes.readUInt16BE(at);
    out.push({ id: bytes.readUInt16BE(at + 2 + tlen), dup: (head & 0x08) !== 0, payload: bytes.toString('utf8', at + 4 + tlen, at + len) });
  }
  return out;
}

/** The packet ids of the PUBACKs in a byte stream from the link (its CONNECT first). */
function publishesAcked(bytes: Buffer): number[] {
  const out: number[] = [];
  for (const { head, at, len } of packetsIn(bytes)) if (head === 0x40 && len === 2) out.push(bytes.readUInt16BE(at));
  return out;
}

test('PUBACKs out of order, twice, or for no publish: each publish is acknowledged once, and only the unacknowledged one is sent again after a reconnect', async (t) => {
  const conns: Array<{ s: Socket; bytes: Buffer[] }> = [];
  const server = createServer((s) => {
    s.setNoDelay(true);
    const c = { s, bytes: [] as Buffer[] };
    conns.push(c);
    s.on('data', (d) => {
      if (c.bytes.length === 0 && d[0] === 0x10) s.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
      c.bytes.push(d);
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => void server.close());
  const l = new LinkClient({ urls: [`mqtt://127.0.0.1:${(server.address() as { port: number }).port}`], clientId: 'licd-daemon-acks', protocolVersion: 4, backoff: FAST });
  await waitConnected(l);
  const calls: Record<string, number> = {};
  for (const n of ['m1', 'm2', 'm3', 'm4', 'm5']) {
    l.publish('licd/v1/test/acks', n, { qos: 1 }, (e) => {
      if (!e) calls[n] = (calls[n] ?? 0) + 1;
    });
  }
  await until(() => publishesIn(Buffer.concat(conns[0]!.bytes)).length === 5, 'five publishes at the broker');
  const sent = publishesIn(Buffer.concat(conns[0]!.bytes));
  const id = (n: string) => sent.find((p) => p.payload === n)!.id;
  const puback = (x: number) => Buffer.from([0x40, 0x02, x >> 8, x & 0xff]);
  const unknown = (Math.max(...sent.map((p) => p.id)) + 100) & 0xffff;
  // Third, first, fifth, fifth again, one nothing was published under, second; the fourth never.
  conns[0]!.s.write(Buffer.concat([puback(id('m3')), puback(id('m1')), puback(id('m5')), puback(id('m5')), puback(unknown), puback(id('m2'))]));
  await until(() => Object.keys(calls).length === 4, 'four publishes acknowledged');
  t.deepEqual(calls, { m1: 1, m2: 1, m3: 1, m5: 1 });
  conns[0]!.s.destroy();
  await until(() => conns.length === 2 && publishesIn(Buffer.concat(conns[1]!.bytes)).length >= 1, 'the unacknowledged publish sent again on the new connection');
  const again = publishesIn(Buffer.concat(conns[1]!.bytes));
  t.deepEqual(again.map((p) => ({ payload: p.payload, dup: p.dup, id: p.id })), [{ payload: 'm4', dup: true, id: id('m4') }]);
  conns[1]!.s.write(puback(id('m4')));
  await until(() => calls.m4 === 1, 'the fourth acknowledged');
  // Ids free again: a new publish goes out, and its PUBACK is taken.
  const done = new Promise<void>((resolve, reject) => l.publish('licd/v1/test/acks', 'm6', { qos: 1 }, (e) => (e ? reject(e) : resolve())));
  await until(() => publishesIn(Buffer.concat(conns[1]!.bytes)).some((p) => p.payload === 'm6'), 'the sixth at the broker');
  conns[1]!.s.write(puback(publishesIn(Buffer.concat(conns[1]!.bytes)).find((p) => p.payload === 'm6')!.id));
  await done;
  t.deepEqual(calls, { m1: 1, m2: 1, m3: 1, m4: 1, m5: 1 });
  l.end();
});

test('a burst of publishes read in one chunk is handled in passes: the event loop turns (answers go out, timers run) long before the last is handled, and every one arrives in order, acknowledged once', async (t) => {
  let broker: Socket | null = null;
  const b = await fakeBroker((s) => {
    broker = s;
  });
  t.teardown(() => void b.server.close());
  const l = new LinkClient({ urls: [b.url], clientId: 'licd-daemon-burst', protocolVersion: 4, backoff: FAST });
  const got: number[] = [];
  // How many had been handled when the first turn of the event loop after the first one came.
  let turnedAt: number | null = null;
  l.on('message', (_topic, payload) => {
    got.push(Number(payload.toString()));
    if (got.length === 1) setImmediate(() => (turnedAt = got.length));
  });
  // Two bursts of 2,000 QoS 1 requests, about 40 KB each, written while the link is still handling
  // the CONNACK: both are in the socket's receive buffer at its next read, as when thousands of
  // nodes ask at the same instant (npm run bench, the burst). The second tests that reading
  // resumes, in order, after the passes.
  const burst = (from: number) => Buffer.concat(Array.from({ length: 2000 }, (_, i) => publishPacket('licd/v1/r', String(from + i), 1, from + i + 1)));
  l.once('connect', () => {
    broker!.write(burst(0));
    broker!.write(burst(2000));
  });
  await until(() => got.length === 4000, 'all 4,000 publishes handled', 20_000);
  t.deepEqual(got, Array.from({ length: 4000 }, (_, i) => i), 'every publish once, in the order sent');
  t.not(turnedAt, null);
  t.true(turnedAt! <= 512, `the event loop turned after ${turnedAt} of 4,000 publishes (at most two passes of 256)`);
  await until(() => publishesAcked(Buffer.concat(b.received)).length === 4000, 'a PUBACK for each');
  const acks = publishesAcked(Buffer.concat(b.received));
  t.is(new Set(acks).size, 4000, 'each packet id acknowledged once');
  await ended(l);
});

