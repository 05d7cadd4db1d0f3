/**
 * Issue 16 with mosquitto: the web page's WebSocket is relayed to mosquitto's listener, and the
 * relay itself keeps passwords off plain HTTP from other machines (mosquitto sees every relayed
 * connection come from 127.0.0.1). A real mosquitto with the shipped ACL, licd on it, and a
 * browser's MQTT client (mqtt.js over WebSocket) on "another machine" (a network namespace).
 */
import test from 'ava';
import { otherMachine, type OtherMachine } from '../helpers/netns.ts';
import { startExternalDaemon } from '../helpers/mosquitto.ts';

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
