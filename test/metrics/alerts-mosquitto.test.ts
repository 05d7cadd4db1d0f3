/**
 * The alerts topic through mosquitto with the shipped config and ACL (systemd/mosquitto/): an
 * admin reads licd/v1/alerts; a render node does not (mosquitto acknowledges its subscription and
 * drops every message of the topic), while both read the server state with the alerts' summaries.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { readFileSync, rmSync } from 'node:fs';
import { topics, type AlertsResult, type ServerState } from '../../src/core/protocol.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { startExternalDaemon } from '../helpers/mosquitto.ts';

async function watch(url: string, o: mqtt.IClientOptions) {
  const c = await mqtt.connectAsync(url, { ...o, clientId: `watch-${Math.random().toString(16).slice(2, 10)}`, reconnectPeriod: 0 });
  const seen: Array<{ topic: string; text: string }> = [];
  c.on('message', (topic, payload) => seen.push({ topic, text: payload.toString() }));
  await c.subscribeAsync({ [topics.alerts]: { qos: 1 }, [topics.serverState]: { qos: 1 } });
  return { c, seen };
}

test('mosquitto: licd/v1/alerts reaches admins only; the server state carries the summaries to everyone', async (t) => {
  t.timeout(60_000);
  const x = await startExternalDaemon();
  t.teardown(() => x.dispose());
  const admin = await watch(x.mosquitto.tlsUrl, { ca: readFileSync(x.mosquitto.certFile), username: 'admin', password: x.mosquitto.passwords.admin });
  t.teardown(() => admin.c.endAsync());
  const node = await watch(x.url, {});
  t.teardown(() => node.c.endAsync());

  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const laptop = await x.client({ user: 'ann', host: 'laptop-ann' });
  await new BorrowClient({ home, hostId: 'cd'.repeat(16), user: 'ann', hostName: 'laptop-ann' }).borrow(laptop, [{ feature: 'vray_render', count: 1 }], 24);
  const ws = await x.client({ user: 'ann', host: 'ws-12' });
  await ws.checkout('vray_render');

  const full = await until(() => admin.seen.filter((m) => m.topic === topics.alerts).map((m) => JSON.parse(m.text) as AlertsResult).find((r) => r.alerts.some((a) => a.kind === 'double-use')), 'the admin reads the alert');
  t.like(full!.alerts.find((a) => a.kind === 'double-use'), { user: 'ann', hosts: ['laptop-ann', 'ws-12'] });
  // The render node gets the server state with the summary (published after the alerts topic)...
  const state = await until(
    () => node.seen.filter((m) => m.topic === topics.serverState).map((m) => JSON.parse(m.text) as ServerState).find((s) => s.alerts?.some((a) => a.kind === 'double-use')),
    'the render node reads the summary in the server state',
  );
  t.notRegex(JSON.stringify(state!.alerts), /ann|laptop|ws-12/);
  // ...and by then nothing of licd/v1/alerts.
  t.deepEqual(node.seen.filter((m) => m.topic === topics.alerts), []);

  // licd restarts without those seats (another data dir): mosquitto's retained alerts are replaced.
  await laptop.close({ checkin: false });
  await ws.close({ checkin: false });
  await x.daemon.halt();
  const again = await startExternalDaemon({ mosquitto: x.mosquitto });
  t.teardown(() => again.daemon.dispose());
  const late = await watch(x.mosquitto.tlsUrl, { ca: readFileSync(x.mosquitto.certFile), username: 'admin', password: x.mosquitto.passwords.admin });
  t.teardown(() => late.c.endAsync());
  await until(() => late.seen.some((m) => m.topic === topics.alerts && (JSON.parse(m.text) as AlertsResult).alerts.length === 0), 'the retained alerts are the new daemon\'s (none)');
});
