/**
 * One user on a whole farm: a render account that borrowed a seat on one host and holds 60,000
 * floating seats on others is one double use. Its alert must stay a small message: unbounded, it
 * named every host (about 1.5 MB), mosquitto (max_packet_size 1 MiB in the shipped config) dropped
 * licd's connection at each publish of the retained alerts, and licd never served again (found by
 * the benchmark's restart phase). Real parts: mosquitto with the shipped config, the daemon as a
 * child process, its database filled before it starts.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FEATURE, makeLicense, makeVendorKey } from '../../bench/lib/daemon.ts';
import { preload } from '../../bench/lib/preload.ts';
import { topics, type AlertsResult } from '../../src/core/protocol.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import { startMosquitto } from '../helpers/mosquitto.ts';
import { startDaemonProcess } from '../helpers/procs.ts';

const HOSTS = 60_000;

test('a double use across 60,000 hosts is one bounded alert, and licd keeps serving through mosquitto', async (t) => {
  t.timeout(150_000);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const license = await makeLicense(join(dir, 'license'), 100_000, makeVendorKey());
  const dataDir = join(dir, 'data');
  // Leases of user "render" on pre-0 ... pre-59999, and a borrow of the same user on pre-0.
  await preload(dataDir, { feature: FEATURE, leases: HOSTS, borrows: 1, leaseTtlMs: 86_400_000, borrowMs: 7 * 86_400_000 });

  const mosq = await startMosquitto();
  t.teardown(() => mosq.stop());
  const configFile = join(dir, 'licd.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      development: false,
      dataDir,
      vendorPublicKey: license.vendorPublicKey,
      entitlementFile: license.entitlementFile,
      mqtt: { broker: 'external', url: mosq.url, username: 'licd', password: mosq.passwords.licd },
      dongle: { transport: 'emulated', stateFile: license.dongleStateFile },
    }),
  );
  const d = startDaemonProcess({ LICD_DATA_DIR: dataDir }, ['--config', configFile]);
  t.teardown(() => d.child.kill('SIGKILL'));
  await d.waitFor(/listening on mqtt:/, 90_000);

  const admin = await mqtt.connectAsync(mosq.tlsUrl, { ca: readFileSync(mosq.certFile), username: 'admin', password: mosq.passwords.admin, clientId: 'watch-admin', reconnectPeriod: 0 });
  t.teardown(() => admin.endAsync());
  const seen: Buffer[] = [];
  admin.on('message', (topic, payload) => {
    if (topic === topics.alerts) seen.push(payload);
  });
  await admin.subscribeAsync(topics.alerts, { qos: 1 });
  const payload = await until(() => seen.find((p) => (JSON.parse(p.toString()) as AlertsResult).alerts.some((a) => a.kind === 'double-use')), 'the admin reads the double-use alert', 60_000);
  const alert = (JSON.parse(payload!.toString()) as AlertsResult).alerts.find((a) => a.kind === 'double-use')!;
  t.true(payload!.length < 16 * 1024, `the retained alerts are ${payload!.length} bytes`);
  t.is(alert.user, 'render');
  t.is(alert.hostCount, HOSTS);
  t.is(alert.hosts!.length, 20);
  t.regex(alert.message, /and 59,994 more/);

  // licd kept its broker connection: a render node gets a seat.
  const c = await LicdClient.connect({ url: mosq.url, timeoutMs: 10_000, user: 'ann', host: 'ws-1' });
  t.teardown(() => c.close({ checkin: false }));
  const lease = await c.checkout(FEATURE);
  t.truthy(lease.id);
  t.notRegex(d.stdout() + d.stderr(), /lost the MQTT broker/);
});
