/**
 * A box's daemon with a broker list (mqtt.url "mqtts://A,mqtts://B", docs/scale-out.md): when
 * its broker dies it carries on through the next one, and so do its clients, whose seats stay
 * theirs. Real processes: two mosquittos, licd, and an SDK client.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, until } from '../helpers/daemon.ts';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';
import { killAll, startDaemonProcess } from '../helpers/procs.ts';
import { LicdClient } from '../../src/sdk/client.ts';

test.after.always(() => killAll());

test("a daemon whose broker dies carries on through the next broker of its list, and its clients' seats stay theirs", async (t) => {
  t.timeout(120_000);
  const password = 'cluster-test-password';
  const brokers: Mosquitto[] = [];
  t.teardown(async () => {
    for (const m of brokers) await m.stop().catch(() => {});
  });
  for (let i = 0; i < 2; i++) brokers.push(await startMosquitto({ users: { cluster: password } }));
  const dir = tempDir('licd-daemon-brokers-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The daemon trusts both boxes' certificates (one CA file holding both) and logs in as "cluster" on either.
  const ca = join(dir, 'cluster-ca.pem');
  writeFileSync(ca, brokers.map((m) => readFileSync(m.certFile, 'utf8')).join('\n'));
  const config = join(dir, 'licd.json');
  writeFileSync(
    config,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      development: true,
      mqtt: { broker: 'external', url: `${brokers[0]!.tlsUrl},${brokers[1]!.tlsUrl}`, username: 'cluster', password, caFile: ca },
      cluster: { serverId: 'box-a' },
      leases: { minTtlSeconds: 3, ttlSeconds: 9, disconnectGraceSeconds: 3 },
    }),
  );
  const d = startDaemonProcess({ LICD_CONFIG: config });
  // "listening on" comes once licd's subscription to the request topics is acknowledged.
  await d.waitFor(/listening on/, 40_000);

  const c = await LicdClient.connect({ url: brokers[0]!.url, urls: brokers.map((m) => m.url), server: 'box-a', user: 'alice', host: 'node-1', timeoutMs: 5000 });
  t.teardown(() => c.close({ checkin: false }));
  const lease = await c.checkout('nuke_i');
  let lost = false;
  lease.on('lost', () => (lost = true));
  const before = Date.parse(lease.view.until);

  // Broker A dies: licd and the client both move to broker B; the client's heartbeats get through.
  await brokers[0]!.kill('SIGKILL');
  await until(() => Date.parse(lease.view.until) > before + 1000 && c.brokerUrl === brokers[1]!.url, 'the seat renewed through broker B', 60_000, 200);
  const s = await c.status();
  const f = s.features.find((x) => x.feature === 'nuke_i')!;
  t.deepEqual(f.leases.map((l) => [l.id, l.user, l.state]), [[lease.id, 'alice', 'active']]);
  t.false(lost);
  t.is(lease.state, 'held');
});
