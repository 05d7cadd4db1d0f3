import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../src/config.ts';
import { LicdError } from '../src/core/errors.ts';

const msg = (f: () => unknown) => {
  try {
    f();
    return 'ok';
  } catch (e) {
    t_code(e);
    return (e as Error).message;
  }
};
function t_code(e: unknown) {
  if (!(e instanceof LicdError) || e.code !== 'CONFIG_INVALID') throw e;
}

test('defaults run the embedded development setup', (t) => {
  const c = parseConfig({}, {}, '/srv');
  t.is(c.dataDir, '/srv/data');
  t.true(c.development);
  t.is(c.mqtt.broker, 'embedded');
  t.is(c.mqtt.port, 1883);
  t.is(c.mqtt.host, '127.0.0.1');
  t.is(c.dongle.transport, 'emulated');
});

test('a bad config names the field and the fix', (t) => {
  t.is(msg(() => parseConfig({ leases: { ttlSeconds: 'long' } })), 'config: leases.ttlSeconds must be a whole number, got the string "long"');
  t.regex(msg(() => parseConfig({ mqtt: { prot: 1883 } })), /mqtt.prot is not a known field \(known: broker, host, port/);
  t.regex(msg(() => parseConfig({ mqtt: { broker: 'external' } })), /mqtt.url is required when mqtt.broker is "external"/);
  t.regex(msg(() => parseConfig({ entitlementFile: '/etc/licd/e.json' })), /vendorPublicKey is required outside development mode/);
  t.regex(msg(() => parseConfig({ dongle: { transport: 'usb' } })), /dongle.transport must be one of emulated, tcp, serial, hid, got the string "usb"/);
  t.regex(msg(() => parseConfig({ dongle: { transport: 'tcp' } })), /dongle.port must be a whole number, got nothing/);
  t.regex(msg(() => parseConfig({ leases: { ttlSeconds: 5, minTtlSeconds: 10 } })), /leases.ttlSeconds \(5\) must be between/);
  t.regex(msg(() => parseConfig({}, { LICD_MQTT_PORT: 'x' })), /LICD_MQTT_PORT must be a whole number/);
  t.regex(msg(() => parseConfig({}, { LICD_DONGLE: 'usb:1' })), /LICD_DONGLE "usb:1" is not understood/);
});

test('a config file that is not JSON says so; environment overrides the file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'licd-cfg-'));
  writeFileSync(join(dir, 'bad.json'), '{ "dataDir": ');
  t.regex(msg(() => loadConfig({ file: join(dir, 'bad.json'), env: {} })), /is not valid JSON/);
  t.regex(msg(() => loadConfig({ file: join(dir, 'missing.json'), env: {} })), /no such file: .*missing.json/);
  writeFileSync(join(dir, 'ok.json'), JSON.stringify({ mqtt: { port: 2000 }, dongle: { transport: 'tcp', port: 7000 } }));
  const c = loadConfig({ file: join(dir, 'ok.json'), env: { LICD_MQTT_PORT: '3000', LICD_DONGLE: 'serial:/dev/ttyACM0' } });
  t.is(c.mqtt.port, 3000);
  t.like(c.dongle, { transport: 'serial', path: '/dev/ttyACM0' });
  t.is(c.dataDir, join(dir, 'data'));
});
