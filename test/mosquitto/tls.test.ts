/**
 * Issue 10 on the appliance's broker: a real mosquitto with the shipped config's TLS listener and
 * a certificate made by the shipped first-boot script (systemd/licd-tls-setup), licd connected to
 * it, and licctl as a real process over mqtts:// trusting the fingerprint.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certFingerprint } from '../../src/mqtt/tls.ts';
import { LicdError } from '../../src/core/errors.ts';
import { startExternalDaemon, startMosquitto } from '../helpers/mosquitto.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('mosquitto TLS listener with the first-boot certificate: licctl status over mqtts with the pin works as admin; a wrong pin is refused; admins cannot log in on plain MQTT', async (t) => {
  t.timeout(240_000);
  const mosquitto = await startMosquitto();
  const fp = certFingerprint(readFileSync(mosquitto.certFile));
  // The first-boot script prints the fingerprint as licd and licctl write it.
  t.true(mosquitto.tlsSetupOutput.trim().endsWith(fp), mosquitto.tlsSetupOutput);
  const x = await startExternalDaemon({ mosquitto, config: { mqtt: { broker: 'external', url: mosquitto.url, username: 'licd', password: mosquitto.passwords.licd, brokerCertFile: mosquitto.certFile } } });
  t.teardown(() => x.dispose());
  const pw = join(mosquitto.dir, 'admin.pw');
  writeFileSync(pw, mosquitto.passwords.admin + '\n');
  const admin = ['--user', 'admin', '--password-file', pw];

  const ok = await run(['status', '--broker', mosquitto.tlsUrl, '--fingerprint', fp, ...admin]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /licd .*: online/);
  t.true(ok.stdout.includes(`certificate ${fp}`), 'licctl status shows the fingerprint licd read from mqtt.brokerCertFile');
  const borrows = await run(['borrows', '--broker', mosquitto.tlsUrl, '--fingerprint', fp, ...admin]);
  t.is(borrows.code, 0, borrows.stderr);
  // The certificate as CA (how a studio's CA is given) works as well.
  const ca = await run(['status', '--broker', mosquitto.tlsUrl, '--ca', mosquitto.certFile, ...admin]);
  t.is(ca.code, 0, ca.stderr);

  const wrongPin = fp.slice(0, -1) + (fp.endsWith('0') ? '1' : '0');
  const logBefore = mosquitto.output().length;
  const bad = await run(['status', '--broker', mosquitto.tlsUrl, '--fingerprint', wrongPin, ...admin]);
  t.is(bad.code, 6);
  t.true(bad.stderr.includes(`TLS_MISMATCH: the server at ${mosquitto.tlsUrl} presented certificate ${fp} but ${wrongPin} was expected`), bad.stderr);
  t.notRegex(mosquitto.output().slice(logBefore), /admin|New client connected/, 'mosquitto never saw a CONNECT on the refused connection');

  // Render nodes keep plain MQTT, anonymously; an admin is refused there by mosquitto itself.
  const anon = await run(['status', '--broker', mosquitto.url]);
  t.is(anon.code, 0, anon.stderr);
  const plainAdmin = await run(['status', '--broker', mosquitto.url, ...admin]);
  t.is(plainAdmin.code, 2);
  t.regex(plainAdmin.stderr, /FORBIDDEN: the broker at mqtt:\/\/127\.0\.0\.1:\d+ refused user "admin"/);
});

test('licd itself can reach mosquitto over mqtts (for a box without the plain listener), and refuses a broker whose certificate is not the pinned one', async (t) => {
  t.timeout(180_000);
  const mosquitto = await startMosquitto();
  t.teardown(() => mosquitto.stop());
  const fp = certFingerprint(readFileSync(mosquitto.certFile));
  const mqtt = { broker: 'external', url: mosquitto.tlsUrl, username: 'licd', password: mosquitto.passwords.licd };

  const wrongPin = fp.slice(0, -1) + (fp.endsWith('0') ? '1' : '0');
  const e = await t.throwsAsync(startExternalDaemon({ mosquitto, config: { mqtt: { ...mqtt, fingerprint: wrongPin } } }));
  t.regex(e!.message, /presented certificate SHA256:[0-9A-F:]+ but SHA256:[0-9A-F:]+ was expected/);

  const x = await startExternalDaemon({ mosquitto, config: { mqtt: { ...mqtt, fingerprint: fp } } });
  t.teardown(() => x.dispose());
  const c = await x.client({ tls: { fingerprint: fp } });
  const lease = await c.checkout('vray_render');
  t.is(lease.view.feature, 'vray_render');
  // The SDK refuses an unpinned, untrusted server with its own code.
  const { LicdClient } = await import('../../src/sdk/client.ts');
  const refused = await t.throwsAsync(LicdClient.connect({ url: mosquitto.tlsUrl, timeoutMs: 5000 }), { instanceOf: LicdError });
  t.is(refused!.code, 'TLS_UNTRUSTED');
});
