/**
 * Issue 10: admin credentials never cross the network in clear. licd as a real process with its
 * embedded broker's TLS listener, licctl as a real process over mqtts:// trusting the server by
 * the fingerprint licd prints.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

// Generous: a daemon's start takes seconds alone and much longer on a loaded machine.
const START_DEADLINE = 120_000;
const TLS_LINE = /TLS on (mqtts:\/\/[\d.]+:\d+): certificate (SHA256:[0-9A-F:]{95})/;

function writeConfig(dir: string, broker: Record<string, unknown>): string {
  const file = join(dir, 'licd.json');
  writeFileSync(file, JSON.stringify({ dataDir: dir, mqtt: { host: '127.0.0.1', port: 0 }, broker }));
  return file;
}

/** The fingerprint as openssl computes it, independently of licd (the command systemd/README.md gives). */
function opensslFingerprint(certFile: string): string {
  const out = execFileSync('openssl', ['x509', '-fingerprint', '-sha256', '-noout', '-in', certFile], { encoding: 'utf8' });
  return `SHA256:${out.trim().split('=')[1]}`;
}

/** The same fingerprint with its last hex digit changed. */
function wrong(fp: string): string {
  return fp.slice(0, -1) + (fp.endsWith('0') ? '1' : '0');
}

async function stop(d: Proc): Promise<void> {
  d.child.kill('SIGTERM');
  await d.exited;
}

test('embedded broker: certificate made at first start, licctl over mqtts with the pin works as admin, a wrong pin is refused, a restart keeps the certificate', async (t) => {
  t.timeout(300_000);
  const dir = tempDir();
  const cfg = writeConfig(dir, { tls: { enabled: true, port: 0 } });
  const certFile = join(dir, 'tls', 'cert.pem');
  t.false(existsSync(certFile), 'no certificate before the first start');

  let d = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', cfg]);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const [, url, fp] = await d.waitFor(TLS_LINE, START_DEADLINE);
  t.regex(d.stdout(), /made now, first start with TLS/);
  t.true(existsSync(certFile));
  t.is(fp, opensslFingerprint(certFile), 'licd shows the fingerprint openssl computes');
  t.is(statSync(join(dir, 'tls', 'key.pem')).mode & 0o077, 0, 'the key is readable by its owner only');

  const admin = ['--user', 'admin', '--password-file', join(dir, 'admin.password')];
  const ok = await run(['status', '--broker', url!, '--fingerprint', fp!, ...admin]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /vray_render/);
  t.true(ok.stdout.includes(`certificate ${fp}`), 'licctl status shows the fingerprint');
  // An admin operation over TLS.
  const borrows = await run(['borrows', '--broker', url!, '--fingerprint', fp!.toLowerCase().replace('sha256:', ''), ...admin]);
  t.is(borrows.code, 0, borrows.stderr);

  const bad = await run(['status', '--broker', url!, '--fingerprint', wrong(fp!), ...admin]);
  t.is(bad.code, 6);
  t.true(bad.stderr.includes(`TLS_MISMATCH: the server at ${url} presented certificate ${fp} but ${wrong(fp!)} was expected; nothing was sent`), bad.stderr);

  // No pin and no CA: refused, and told how to pin (trust on first use is never silent).
  const unpinned = await run(['status', '--broker', url!, ...admin]);
  t.is(unpinned.code, 6);
  t.true(unpinned.stderr.includes(`TLS_UNTRUSTED: the server at ${url} presented certificate ${fp}`), unpinned.stderr);
  t.true(unpinned.stderr.includes(`--fingerprint ${fp}`));

  // The certificate itself as the CA works too (how a studio CA is given).
  const withCa = await run(['status', '--broker', url!, '--ca', certFile, ...admin]);
  t.is(withCa.code, 0, withCa.stderr);

  // A password is never sent over plain MQTT to another machine (checked before connecting).
  const plainLan = await run(['status', '--broker', 'mqtt://192.0.2.7:1883', ...admin]);
  t.is(plainLan.code, 2);
  t.regex(plainLan.stderr, /refusing to send the password of "admin" in clear to mqtt:\/\/192\.0\.2\.7:1883/);

  await stop(d);
  d = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', cfg]);
  const [, url2, fp2] = await d.waitFor(TLS_LINE, START_DEADLINE);
  t.is(fp2, fp, 'the same certificate after a restart');
  t.notRegex(d.stdout(), /made now/);
  const again = await run(['status', '--broker', url2!, '--fingerprint', fp!, ...admin]);
  t.is(again.code, 0, again.stderr);
});

test('a wrong pin is refused at the handshake: the server receives not one byte (no CONNECT, no password)', async (t) => {
  t.timeout(180_000);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A certificate made the way licd makes it, served by a TLS server that records what it gets.
  const { ensureSelfSignedCert, certFingerprint } = await import('../../src/mqtt/tls.ts');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  ensureSelfSignedCert({ certFile, keyFile });
  const fp = certFingerprint(readFileSync(certFile));
  const received: Buffer[] = [];
  const server = createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => {
    s.on('data', (b: Buffer) => {
      received.push(b);
      // CONNACK "not authorized", so that the control run below ends at once.
      s.end(Buffer.from([0x20, 0x02, 0x00, 0x05]));
    });
    s.on('error', () => {});
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const url = `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, 'very-secret-admin-password\n');
  const args = ['status', '--broker', url, '--user', 'admin', '--password-file', pwFile, '--timeout', '30000'];

  const bad = await run([...args, '--fingerprint', wrong(fp)]);
  t.is(bad.code, 6, bad.stderr);
  t.regex(bad.stderr, /TLS_MISMATCH/);
  const unpinned = await run(args);
  t.is(unpinned.code, 6, unpinned.stderr);
  t.regex(unpinned.stderr, /TLS_UNTRUSTED/);
  t.is(Buffer.concat(received).length, 0, 'nothing reached the server');

  // The control: with the right pin the same server gets the CONNECT with the password.
  const right = await run([...args, '--fingerprint', fp]);
  t.is(right.code, 2, right.stderr);
  t.regex(right.stderr, /FORBIDDEN/);
  t.true(Buffer.concat(received).includes('very-secret-admin-password'), 'the recorder does see a CONNECT when the pin matches');
});

test('broker.plain false: only the TLS listener; licd reaches its own broker over TLS and licctl works with the pin', async (t) => {
  t.timeout(180_000);
  const dir = tempDir();
  const cfg = writeConfig(dir, { plain: false, tls: { enabled: true, port: 0 } });
  const d = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', cfg]);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const [, url, fp] = await d.waitFor(TLS_LINE, START_DEADLINE);
  t.regex(d.stdout(), /listening on mqtts:\/\//);
  const r = await run(['status', '--broker', url!, '--fingerprint', fp!]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /online/);
});

test('TLS settings that cannot work stop start-up with the field and the file', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const half = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', writeConfig(dir, { tls: { enabled: true, certFile: 'mine.pem' } })]);
  t.is((await half.exited).code, 78);
  t.regex(half.stderr(), /broker\.tls\.keyFile is needed with broker\.tls\.certFile/);

  const missing = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', writeConfig(dir, { tls: { enabled: true, port: 0, certFile: 'mine.pem', keyFile: 'mine.key' } })]);
  t.is((await missing.exited).code, 78);
  t.true(missing.stderr().includes(`broker.tls.certFile: cannot read ${join(dir, 'mine.pem')} (ENOENT)`), missing.stderr());
  t.false(existsSync(join(dir, 'mine.pem')), 'licd does not make files the admin named');

  const none = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', writeConfig(dir, { plain: false })]);
  t.is((await none.exited).code, 78);
  t.regex(none.stderr(), /broker\.plain is false but broker\.tls\.enabled is not true/);
});
