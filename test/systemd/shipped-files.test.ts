/**
 * The appliance files in systemd/ agree with the code they configure. (How mosquitto behaves with
 * its shipped config and ACL is tested in test/mosquitto/.)
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LICD_DONGLE_USB } from '../../firmware-bridge/usb-ids.ts';
import { parseConfig } from '../../src/config.ts';

const file = (p: string) => fileURLToPath(new URL(`../../systemd/${p}`, import.meta.url));
const read = (p: string) => readFileSync(file(p), 'utf8');

test('licd.json.example is a valid production config for the external mosquitto', (t) => {
  const c = parseConfig(JSON.parse(read('licd.json.example')), {}, '/etc/licd');
  t.false(c.development);
  t.is(c.dataDir, '/var/lib/licd');
  t.is(c.entitlementFile, '/etc/licd/entitlement.json');
  t.regex(c.vendorPublicKey ?? '', /^[0-9a-f]{64}$/);
  t.like(c.mqtt, { broker: 'external', url: 'mqtt://127.0.0.1:1883', username: 'licd', password: null, passwordFile: '/etc/licd/mqtt.password' });
  t.like(c.dongle, { transport: 'hid', vendorId: LICD_DONGLE_USB.vendorId, productId: LICD_DONGLE_USB.productId, path: '/dev/licd-dongle' });
});

test('the serial variant described in systemd/README.md parses too', (t) => {
  const raw = JSON.parse(read('licd.json.example')) as Record<string, unknown>;
  raw.dongle = { transport: 'serial', path: '/dev/licd-dongle-tty' };
  const c = parseConfig(raw, {}, '/etc/licd');
  t.like(c.dongle, { transport: 'serial', path: '/dev/licd-dongle-tty', baudRate: 115200 });
  t.regex(read('README.md'), /"transport": "serial", "path": "\/dev\/licd-dongle-tty"/);
});

test('the udev rule matches the dongle ids of firmware-bridge/usb-ids.ts and names both nodes', (t) => {
  const rules = read('udev/99-licd-dongle.rules')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#') && /SUBSYSTEM==/.test(l));
  const hex = (n: number) => n.toString(16).padStart(4, '0');
  const bySubsystem = new Map(rules.map((l) => [/SUBSYSTEM=="(\w+)"/.exec(l)![1]!, l]));
  t.deepEqual([...bySubsystem.keys()].sort(), ['hidraw', 'tty']);
  for (const [subsystem, rule] of bySubsystem) {
    t.true(rule.includes(`ATTRS{idVendor}=="${hex(LICD_DONGLE_USB.vendorId)}"`), `${subsystem}: vendor id`);
    t.true(rule.includes(`ATTRS{idProduct}=="${hex(LICD_DONGLE_USB.productId)}"`), `${subsystem}: product id`);
    t.true(rule.includes(`ATTRS{product}=="${LICD_DONGLE_USB.product}"`), `${subsystem}: product string`);
    t.true(rule.includes('GROUP="licd"') && rule.includes('MODE="0660"'), `${subsystem}: group licd, mode 0660`);
  }
  t.true(bySubsystem.get('hidraw')!.includes('SYMLINK+="licd-dongle"'));
  t.true(bySubsystem.get('tty')!.includes('SYMLINK+="licd-dongle-tty"'));
});

test('the unit runs the compiled entry point with the shipped config path', (t) => {
  const unit = read('licd.service');
  // The compiled build (npm run build, images/build.sh): src/main.ts compiled into dist/ by tsconfig.build.json.
  const build = JSON.parse(readFileSync(fileURLToPath(new URL('../../tsconfig.build.json', import.meta.url)), 'utf8')) as { compilerOptions: { outDir: string }; include: string[] };
  t.is(build.compilerOptions.outDir, 'dist');
  t.true(build.include.includes('src'));
  // node [V8 flags] the compiled entry point --config the shipped config (bench/lib/daemon.ts reads the flags).
  t.regex(unit, /^ExecStart=\/usr\/bin\/node (--[a-z-]+(=\d+)? )*\/opt\/licd\/dist\/src\/main\.js --config \/etc\/licd\/licd\.json$/m);
  t.regex(unit, /^Type=notify$/m);
  t.regex(unit, /^NotifyAccess=all$/m);
  t.regex(unit, /^User=licd$/m);
  t.regex(unit, /^Group=licd$/m);
});

test('TLS: the first-boot unit runs the shipped script; mosquitto, licd and the image agree on /etc/licd/tls; the image carries no key', (t) => {
  const unit = read('licd-tls-setup.service');
  t.regex(unit, /^ExecStart=\/opt\/licd\/systemd\/licd-tls-setup \/etc\/licd\/tls$/m);
  t.regex(unit, /^ConditionPathExists=!\/etc\/licd\/tls\/cert\.pem$/m);
  t.regex(unit, /^Before=mosquitto\.service$/m);
  const conf = read('mosquitto/licd.conf');
  t.regex(conf, /^per_listener_settings true$/m);
  t.regex(conf, /^listener 8883$/m);
  t.regex(conf, /^certfile \/etc\/licd\/tls\/cert\.pem$/m);
  t.regex(conf, /^keyfile \/etc\/licd\/tls\/key\.pem$/m);
  t.is(parseConfig(JSON.parse(read('licd.json.example')), {}, '/etc/licd').mqtt.brokerCertFile, '/etc/licd/tls/cert.pem');
  const build = readFileSync(fileURLToPath(new URL('../../images/build.sh', import.meta.url)), 'utf8');
  // The image makes the certificate at first boot through licd-firstboot, which runs licd-tls-setup.
  t.regex(build, /systemctl enable [^\n]*licd-firstboot\.service/);
  t.regex(read('licd-firstboot'), /"\$TLS_SETUP" "\$ETC\/licd\/tls"/);
  t.regex(read('licd-firstboot.service'), /^Before=mosquitto\.service licd\.service/m);
  t.regex(build, /PKGS=\([^)]*\bopenssl\b/);
  t.notRegex(build, /licd-tls-setup \/|openssl req/, 'the image build does not make a certificate');
});
