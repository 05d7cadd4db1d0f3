/**
 * Issue 16 with mosquitto: the web page's WebSocket is relayed to mosquitto's listener, and the
 * relay itself keeps passwords off plain HTTP from other machines (mosquitto sees every relayed
 * connection come from 127.0.0.1). A real mosquitto with the shipped ACL, licd on it, and a
 * browser's MQTT client (mqtt.js over WebSocket) on "another machine" (a network namespace).
 */
import test from 'ava';
import mqtt from 'mqtt';
import { join } from 'node:path';
import { otherMachine, type OtherMachine } from '../helpers/netns.ts';
import { startExternalDaemon, startMosquitto } from '../helpers/mosquitto.ts';

let other: OtherMachine;
test.before(() => {
  other = otherMachine();
});
test.after.always(() => other?.remove());

const CLIENT = `
import mqtt from 'mqtt';
const opts = { clientId: 'web-viewer-' + process.pid, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 10000 };
if (process.env.U) { opts.username = process.env.U; opts.password = process.env.P; }
const c = mqtt.connect(process.env.URL, opts);
c.on('connect', () => { console.log('CONNECTED'); c.subscribe('licd/v1/feature/+', { qos: 1 }); });
c.on('message', (t) => { console.log('FEATURE ' + t); c.end(); });
c.on('error', (e) => { console.log('REFUSED ' + e.code + ' ' + e.message); c.end(true); });
c.on('close', () => setTimeout(() => process.exit(0), 100));
setTimeout(() => process.exit(0), 15000);
`;

test('relayed to mosquitto: an anonymous viewer (web.anonymous) reads the retained features; a password over plain HTTP from another machine is refused by the relay', async (t) => {
  t.timeout(90_000);
  const x = await startExternalDaemon({ config: { http: { host: other.hostAddress, port: 0 }, web: { anonymous: true } } });
  t.teardown(() => x.dispose());
  const url = `${x.daemon.http!.url.replace(/^http/, 'ws')}/mqtt`;
  const viewer = await other.node(CLIENT, { URL: url });
  t.regex(viewer.out, /CONNECTED/, viewer.out);
  t.regex(viewer.out, /FEATURE licd\/v1\/feature\/\w+/);
  // mosquitto's plain listener knows the daemon's own login: the relay must not pass its password on.
  const login = await other.node(CLIENT, { URL: url, U: 'licd', P: x.mosquitto.passwords.licd });
  t.regex(login.out, /REFUSED 5 /, login.out);
  t.notRegex(login.out, /CONNECTED/);
});

test('relayed to mosquitto\'s TLS listener (web.brokerUrl) and served over HTTPS (web.certFile): the admin signs in and is answered', async (t) => {
  t.timeout(90_000);
  const mosq = await startMosquitto();
  const x = await startExternalDaemon({
    mosquitto: mosq,
    config: {
      mqtt: { broker: 'external', url: mosq.url, username: 'licd', password: mosq.passwords.licd, brokerCertFile: mosq.certFile },
      web: { brokerUrl: mosq.tlsUrl, certFile: mosq.certFile, keyFile: join(mosq.dir, 'tls', 'key.pem') },
    },
  });
  t.teardown(() => x.dispose());
  t.regex(x.daemon.http!.url, /^https:/);
  const url = `${x.daemon.http!.url.replace(/^http/, 'ws')}/mqtt`;
  const c = await new Promise<mqtt.MqttClient>((resolve, reject) => {
    const m = mqtt.connect(url, { clientId: 'web-admin-m', username: 'admin', password: mosq.passwords.admin, protocolVersion: 4, reconnectPeriod: 0, wsOptions: { rejectUnauthorized: false } });
    m.once('connect', () => resolve(m));
    m.once('error', reject);
  });
  t.teardown(() => c.end(true));
  await c.subscribeAsync('licd/v1/client/web-admin-m/res', { qos: 1 });
  const answer = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(p.toString())));
  c.publish('licd/v1/admin/web-admin-m/req', JSON.stringify({ id: '1', op: 'borrows' }), { qos: 1 });
  t.deepEqual(JSON.parse(await answer), { id: '1', ok: true, op: 'borrows', result: { borrows: [] } });
});
