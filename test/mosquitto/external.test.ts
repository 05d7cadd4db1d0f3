/**
 * licd with mqtt.broker "external" against a real mosquitto running the shipped config and ACL
 * (systemd/mosquitto/), as on the appliance.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { LicdError } from '../../src/core/errors.ts';
import { topics, type Answer, type ServerState } from '../../src/core/protocol.ts';
import { until } from '../helpers/daemon.ts';
import { startExternalDaemon, startMosquitto } from '../helpers/mosquitto.ts';
import { publishAndWait, rawConnect, rawSubscribe } from '../helpers/access-rules.ts';

test('status through mosquitto lists the demo features with free seats', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const c = await x.client();
  const s = await c.status();
  t.is(s.server.state, 'online');
  t.true(s.server.dongle.present);
  t.like(
    s.features.find((f) => f.feature === 'vray_render'),
    { total: 4, leased: 0, borrowed: 0, free: 4 },
  );
  t.is(x.daemon.broker, null, 'licd runs no broker of its own in external mode');
});

test('clients check seats out until the next is denied with the reason, and check in', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const a = await x.client({ user: 'alice', host: 'node-1' });
  const b = await x.client({ user: 'bob', host: 'node-2' });
  const l1 = await a.checkout('vray_render', { count: 3 });
  t.is(l1.status, 'granted');
  await b.checkout('vray_render');
  const e = await t.throwsAsync(b.checkout('vray_render', { pid: 999 }), { instanceOf: LicdError });
  t.is(e!.code, 'NO_SEATS');
  t.is(e!.message.split(';')[0], 'vray_render: 0 of 4 seats free (4 leased, 0 borrowed)');
  await l1.release();
  const s = await b.status();
  t.like(
    s.features.find((f) => f.feature === 'vray_render'),
    { leased: 1, free: 3 },
  );
});

test('a killed client frees its seat within the disconnect grace (its will goes through mosquitto)', async (t) => {
  const x = await startExternalDaemon({ config: { leases: { disconnectGraceSeconds: 1 } } });
  t.teardown(() => x.dispose());
  const a = await x.client();
  await a.checkout('nuke_i');
  const watcher = await x.client();
  t.is((await watcher.status()).features.find((f) => f.feature === 'nuke_i')!.free, 0);
  a.kill();
  await until(async () => (await watcher.status()).features.find((f) => f.feature === 'nuke_i')!.free === 1, 'the seat to come back', 8000, 100);
  t.pass();
});

test('retained server state and availability follow every change', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const w = await x.client();
  await w.watch();
  await until(() => w.availability.get('vray_render')?.free === 4, 'initial availability');
  t.is(w.server?.state, 'online');
  const a = await x.client();
  const l = await a.checkout('vray_render', { count: 2 });
  await until(() => w.availability.get('vray_render')?.free === 2, 'availability after checkout');
  await l.release();
  await until(() => w.availability.get('vray_render')?.free === 4, 'availability after checkin');
  // A client that connects later gets the current state at once, from the broker's retained copy.
  const late = await x.client();
  await late.watch();
  await until(() => late.server !== null && late.availability.has('vray_render'), 'retained state for a late watcher');
  t.is(late.server!.state, 'online');
  t.like(late.availability.get('vray_render'), { total: 4, free: 4 });
});

test('the server state goes offline when the daemon\'s connection dies abruptly, and online again when it reconnects', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const w = await x.client();
  const seen: ServerState[] = [];
  w.on('server', (s: ServerState) => seen.push(s));
  await w.watch();
  await until(() => w.server?.state === 'online', 'the server state online');

  // No DISCONNECT packet: the broker sees the TCP connection drop and publishes licd's last will.
  (x.daemon.link.client.stream as unknown as Socket).destroy();
  await until(() => seen.some((s) => s.state === 'offline'), 'the last will to mark the server offline');
  const offline = seen.find((s) => s.state === 'offline')!;
  t.true(
    offline.warnings.some((m) => /connection to the broker was lost/.test(m)),
    'the offline state says why',
  );
  // mqtt.js reconnects by itself; licd republishes its retained state.
  await until(
    () => {
      const i = seen.findIndex((s) => s.state === 'offline');
      return i >= 0 && seen.slice(i + 1).some((s) => s.state === 'online');
    },
    'the server back online',
    10_000,
  );
  t.is(seen.at(-1)?.state, 'online');
  const s = await w.status();
  t.is(s.server.state, 'online');
});

test('a clean stop of licd leaves the retained server state offline', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(async () => {
    await x.mosquitto.stop();
    rmSync(x.daemon.dataDir, { recursive: true, force: true });
  });
  await x.daemon.halt();
  // Someone who starts watching after licd stopped learns it from the retained state.
  const raw = await rawConnect({ url: x.url, protocolVersion: 4 }, { clientId: 'after-stop' });
  await rawSubscribe(raw, [topics.serverState]);
  await until(() => raw.received.some((m) => m.topic === topics.serverState), 'the retained server state');
  const state = JSON.parse(raw.received.find((m) => m.topic === topics.serverState)!.payload) as ServerState;
  t.is(state.state, 'offline');
  t.true(state.warnings.some((m) => /stopped/.test(m)));
  await raw.end();
});

test('a request over 64 KiB reaches licd through mosquitto and is answered PAYLOAD_TOO_LARGE', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  // A raw client: the SDK cannot match this answer to its request yet, because licd refuses an
  // oversized request before reading its id and answers with "id": null.
  const raw = await rawConnect({ url: x.url, protocolVersion: 4 }, { clientId: 'big-request' });
  await rawSubscribe(raw, [topics.clientResponse('big-request')]);
  const request = JSON.stringify({ id: 'big-1', op: 'status', pad: 'x'.repeat(70 * 1024) });
  t.true(request.length > 64 * 1024);
  t.is(await publishAndWait(raw.mqtt!, topics.clientRequest('big-request'), request), 'acknowledged');
  await until(() => raw.received.some((m) => m.topic === topics.clientResponse('big-request')), "licd's answer to the oversized request");
  const answer = JSON.parse(raw.received.find((m) => m.topic === topics.clientResponse('big-request'))!.payload) as Answer;
  t.false(answer.ok);
  t.is(!answer.ok && answer.error.code, 'PAYLOAD_TOO_LARGE');
  t.true(raw.mqtt!.connected, 'the broker kept the client connected');
  await raw.end();
});

test('a packet over the broker limit costs its sender the connection, not licd', async (t) => {
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const big = await rawConnect({ url: x.url, protocolVersion: 4 }, { clientId: 'big-sender' });
  const outcome = await publishAndWait(big.mqtt!, topics.clientRequest('big-sender'), JSON.stringify({ id: '1', op: 'status', pad: 'x'.repeat(2 * 1024 * 1024) }));
  t.is(outcome, 'connection closed');
  await big.end();
  const c = await x.client();
  const s = await c.status();
  t.is(s.server.state, 'online');
  t.true(x.daemon.link.client.connected, "licd's own connection was not affected");
});

test('MQTT 5: licd and clients speaking MQTT 5 through mosquitto', async (t) => {
  const x = await startExternalDaemon({ protocolVersion: 5, config: { leases: { disconnectGraceSeconds: 1 } } });
  t.teardown(() => x.dispose());
  const w = await x.client({ protocolVersion: 5 });
  await w.watch();
  await until(() => w.server?.state === 'online' && w.availability.get('nuke_i')?.free === 1, 'retained state over MQTT 5');

  const a = await x.client({ protocolVersion: 5, user: 'alice', host: 'node-1' });
  const lease = await a.checkout('nuke_i');
  t.is(lease.status, 'granted');
  t.truthy(lease.grant, 'the grant is signed');
  await until(() => w.availability.get('nuke_i')?.free === 0, 'availability after the checkout');

  // An MQTT 3.1.1 client is served by the same MQTT 5 daemon.
  const old = await x.client({ protocolVersion: 4, user: 'bob', host: 'node-2' });
  const e = await t.throwsAsync(old.checkout('nuke_i'), { instanceOf: LicdError });
  t.is(e!.code, 'NO_SEATS');

  // The MQTT 5 client's last will frees its seat.
  a.kill();
  await until(() => w.availability.get('nuke_i')?.free === 1, 'the killed MQTT 5 client\'s seat to come back', 8000);

  // Forbidden publishes are refused in the PUBACK under MQTT 5, so the SDK says so at once.
  const plain = await x.client({ protocolVersion: 5 });
  const denied = await t.throwsAsync(plain.request('lease.revoke', { lease: lease.id }, { admin: true }), { instanceOf: LicdError });
  t.is(denied!.code, 'FORBIDDEN');
  t.regex(denied!.message, /could not send lease\.revoke: .*not authori[sz]ed/i);

  const admin = await x.admin({ protocolVersion: 5 });
  const again = await old.checkout('nuke_i');
  const r = await admin.request<{ revoked: { id: string } }>('lease.revoke', { lease: again.id }, { admin: true });
  t.is(r.revoked.id, again.id);
});

test('mosquitto configured as on the appliance: Debian\'s mosquitto.conf with licd.conf in conf.d', async (t) => {
  const mosquitto = await startMosquitto({ debianMain: true });
  const x = await startExternalDaemon({ mosquitto });
  t.teardown(() => x.dispose());
  t.regex(mosquitto.output(), /conf\.d\/licd\.conf/, 'mosquitto read the drop-in');
  const c = await x.client();
  const lease = await c.checkout('vray_render');
  const s = await c.status();
  t.like(
    s.features.find((f) => f.feature === 'vray_render'),
    { leased: 1, free: 3 },
  );
  await lease.release();
});
