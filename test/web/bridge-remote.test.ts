/**
 * Issue 16: the web page's MQTT-over-WebSocket bridge must not defeat the broker's rule that
 * passwords travel only inside TLS or on this machine. licd as a real process, a browser's MQTT
 * client (mqtt.js over WebSocket) on "another machine": a network namespace with its own address.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { otherMachine, type OtherMachine } from '../helpers/netns.ts';
import { killAll, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

let other: OtherMachine;
test.before(() => {
  other = otherMachine();
});
test.after.always(() => other?.remove());

const START_DEADLINE = 120_000;

/** The browser side: connect, and as admin ask for `borrows`; prints CONNECTED/ANSWER or REFUSED. */
const CLIENT = `
import mqtt from 'mqtt';
const id = 'web-remote-' + process.pid;
const opts = { clientId: id, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 10000, wsOptions: { rejectUnauthorized: false } };
if (process.env.U) { opts.username = process.env.U; opts.password = process.env.P; }
const c = mqtt.connect(process.env.URL, opts);
c.on('connect', () => {
  console.log('CONNECTED');
  if (!process.env.U) { c.end(); return; }
  c.subscribe('licd/v1/client/' + id + '/res', { qos: 1 }, () => {
    c.publish('licd/v1/admin/' + id + '/req', JSON.stringify({ id: '1', op: 'borrows' }), { qos: 1 });
  });
  c.on('message', (t, p) => { console.log('ANSWER ' + p.toString()); c.end(); });
});
c.on('error', (e) => { console.log('REFUSED ' + e.code + ' ' + e.message); c.end(true); });
c.on('close', () => setTimeout(() => process.exit(0), 100));
`;

async function daemon(t: { teardown(f: () => void): void }, extra: Record<string, unknown>): Promise<{ d: Proc; url: string; password: string }> {
  const dir = tempDir();
  const cfg = join(dir, 'licd.json');
  writeFileSync(cfg, JSON.stringify({ dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: other.hostAddress, port: 0 }, ...extra }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_HTTP_PORT: '' }, ['--config', cfg]);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const [, url] = await d.waitFor(/web page on (https?:\/\/[\d.]+:\d+)\//, START_DEADLINE);
  return { d, url: url!, password: readFileSync(join(dir, 'admin.password'), 'utf8').trim() };
}

test('over plain HTTP from another machine: the admin sign-in is refused (and an anonymous viewer too, by default)', async (t) => {
  t.timeout(180_000);
  const { d, url, password } = await daemon(t, {});
  const ws = url.replace(/^http/, 'ws') + '/mqtt';
  const admin = await other.node(CLIENT, { URL: ws, U: 'admin', P: password });
  t.regex(admin.out, /REFUSED 5 /, admin.out);
  t.notRegex(admin.out, /CONNECTED|ANSWER/);
  await d.waitFor(/web sign-in over plain HTTP from another machine refused/, 10_000);
  const anon = await other.node(CLIENT, { URL: ws });
  t.regex(anon.out, /REFUSED 5 /, anon.out);
  // The page itself loads (it explains that signing in needs HTTPS).
  const page = await other.node(`const r = await fetch(${JSON.stringify(url + '/')}); console.log(r.status, r.headers.get('content-type'));`);
  t.regex(page.out, /^200 text\/html/);
});

test('over HTTPS (broker.tls on) from another machine: the admin signs in and the daemon answers', async (t) => {
  t.timeout(180_000);
  const { url, password } = await daemon(t, { broker: { tls: { enabled: true, port: 0, host: '127.0.0.1' } } });
  t.regex(url, /^https:/, 'web.https follows broker.tls');
  const admin = await other.node(CLIENT, { URL: url.replace(/^http/, 'ws') + '/mqtt', U: 'admin', P: password });
  t.regex(admin.out, /CONNECTED/, admin.out);
  t.regex(admin.out, /ANSWER .*"ok":true.*"borrows":\[\]/);
  const bad = await other.node(CLIENT, { URL: url.replace(/^http/, 'ws') + '/mqtt', U: 'admin', P: 'wrong' });
  t.regex(bad.out, /REFUSED [45] /, bad.out);
});
