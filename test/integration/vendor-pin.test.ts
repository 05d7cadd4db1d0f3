/**
 * Issue 11 finding 7: a client of a daemon on a non-default data dir and port, with no
 * LICD_DATA_DIR (and no LICD_VENDOR_KEY) in its environment, pins the server's vendor key by its
 * fingerprint on the first borrow, and its tokens then verify offline. A wrong fingerprint and a
 * changed key are refused and nothing is borrowed. Admin commands without a password say where the
 * development admin password is and how to give it.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, ROOT, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function daemon(dir: string, port = '0') {
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: port });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  // The fingerprint the daemon prints at start, which an admin hands to users.
  const printed = (await d.waitFor(/vendor key: (SHA256:[0-9a-f]{32})/))[1]!;
  return { d, url, printed };
}

/** The client's shell: its own home, the server's URL, and nothing shared with the daemon. */
function clientEnv(home: string, url: string): Record<string, string> {
  return { LICD_HOME: home, LICD_BROKER: url, LICD_USER: 'carol', LICD_DATA_DIR: '/nonexistent-client-side', LICD_VENDOR_KEY: '' };
}

function borrowed(json: string, feature: string): number {
  return (JSON.parse(json) as { features: Array<{ feature: string; borrowed: number }> }).features.find((f) => f.feature === feature)!.borrowed;
}

test('first borrow pins the vendor key by fingerprint; tokens verify offline with no LICD_DATA_DIR; a wrong fingerprint is refused', async (t) => {
  t.timeout(90_000);
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const { d, url, printed } = await daemon(dir);
  const env = clientEnv(home, url);
  const borrow = ['borrow', '--feature', 'vray_render', '--hours', '24', '--yes'];

  // Not pinned, not on a terminal: refused, naming the fingerprint and the flag; nothing borrowed.
  const first = await run(borrow, env);
  t.is(first.code, 2, first.stdout + first.stderr);
  t.regex(first.stderr, /VENDOR_KEY_UNTRUSTED/);
  const fp = /--trust-vendor-key (SHA256:[0-9a-f]{32})/.exec(first.stderr)?.[1];
  t.is(fp, printed, 'licctl shows the fingerprint the daemon printed at start');
  t.notRegex(first.stderr, /at .*\.ts:\d+/, 'no stack trace');
  t.is(borrowed((await run(['status', '--json'], env)).stdout, 'vray_render'), 0);

  // A fingerprint that is not the server's: refused, nothing pinned or borrowed.
  const wrong = await run([...borrow, '--trust-vendor-key', 'SHA256:' + '0'.repeat(32)], env);
  t.is(wrong.code, 2, wrong.stdout + wrong.stderr);
  t.regex(wrong.stderr, /VENDOR_KEY_UNTRUSTED/);
  t.regex(wrong.stderr, new RegExp(`offers the vendor key ${fp}`));
  t.is(borrowed((await run(['status', '--json'], env)).stdout, 'vray_render'), 0);

  // The right one: pinned, borrowed, and the token is usable.
  const ok = await run([...borrow, '--trust-vendor-key', fp!], env);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, new RegExp(`pinned vendor key ${fp}`));
  t.regex(ok.stdout, /Licenses available offline until/);
  const pins = JSON.parse(readFileSync(join(home, 'known-vendors.json'), 'utf8')) as Record<string, { publicKey: string }>;
  const daemonKey = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  t.is(pins[url]?.publicKey, daemonKey);
  const tokens = JSON.parse((await run(['tokens', '--json'], env)).stdout) as Array<{ feature: string; valid: boolean; problem: string | null }>;
  t.deepEqual(
    tokens.map((x) => [x.feature, x.valid, x.problem]),
    [['vray_render', true, null]],
  );

  // The pin belongs to that server: for another one, nothing is pinned and the message says how.
  const elsewhere = JSON.parse((await run(['tokens', '--json'], { ...env, LICD_BROKER: 'mqtt://127.0.0.1:1' })).stdout) as Array<{ valid: boolean; problem: string | null }>;
  t.false(elsewhere[0]!.valid);
  t.regex(elsewhere[0]!.problem ?? '', /--trust-vendor-key/);

  // The server goes away: the token runs the licensed command offline.
  d.child.kill('SIGTERM');
  await d.exited;
  const off = await run(['run', 'vray_render', '--timeout', '2000', '--', 'sh', '-c', 'echo rendering offline'], env);
  t.is(off.code, 0, off.stderr);
  t.regex(off.stdout, /rendering offline/);
});

test('a server that offers another vendor key than the pinned one is refused loudly; nothing is borrowed', async (t) => {
  t.timeout(90_000);
  const dirA = tempDir();
  const dirB = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    for (const x of [dirA, dirB, home]) rmSync(x, { recursive: true, force: true });
  });
  const a = await daemon(dirA);
  const env = clientEnv(home, a.url);
  const first = await run(['borrow', '--feature', 'vray_render', '--hours', '24', '--yes'], env);
  const fp = /--trust-vendor-key (SHA256:[0-9a-f]{32})/.exec(first.stderr)?.[1];
  t.truthy(fp, first.stderr);
  const ok = await run(['borrow', '--feature', 'vray_render', '--hours', '24', '--yes', '--trust-vendor-key', fp!], env);
  t.is(ok.code, 0, ok.stderr);
  a.d.child.kill('SIGTERM');
  await a.d.exited;

  // Another server (another vendor key) answers at the same address.
  const b = await daemon(dirB, a.url.split(':').pop()!);
  t.is(b.url, a.url);
  const changed = await run(['borrow', '--feature', 'vray_interface', '--hours', '24', '--yes'], env);
  t.is(changed.code, 2, changed.stdout + changed.stderr);
  t.regex(changed.stderr, /VENDOR_KEY_CHANGED/);
  t.regex(changed.stderr, /THE VENDOR KEY OF .* HAS CHANGED/);
  t.regex(changed.stderr, new RegExp(`You pinned ${fp}`));
  t.regex(changed.stderr, /licctl trust remove mqtt:\/\/127\.0\.0\.1:\d+/, 'the message names the command that removes the pin');
  // Even naming the new key's fingerprint does not silently replace a pin.
  const newFp = /offers (SHA256:[0-9a-f]{32})/.exec(changed.stderr)?.[1];
  t.truthy(newFp);
  const again = await run(['borrow', '--feature', 'vray_interface', '--hours', '24', '--yes', '--trust-vendor-key', newFp!], env);
  t.is(again.code, 2);
  t.regex(again.stderr, /VENDOR_KEY_CHANGED/);
  t.is(borrowed((await run(['status', '--json'], env)).stdout, 'vray_interface'), 0);

  // The user removes the old pin on purpose (the vendor confirmed the new key), then pins the new one.
  const listed = await run(['trust', 'list', '--json'], env);
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual((JSON.parse(listed.stdout) as { pins: Array<{ fingerprint: string }> }).pins.map((p) => p.fingerprint), [fp]);
  const removed = await run(['trust', 'remove', a.url], env);
  t.is(removed.code, 0, removed.stderr);
  t.regex(removed.stdout, new RegExp(`removed the vendor key ${fp}`));
  const none = await run(['trust', 'remove', a.url], env);
  t.is(none.code, 1, 'nothing left to remove');
  const repinned = await run(['borrow', '--feature', 'vray_interface', '--hours', '24', '--yes', '--trust-vendor-key', newFp!], env);
  t.is(repinned.code, 0, repinned.stderr);
  t.is(borrowed((await run(['status', '--json'], env)).stdout, 'vray_interface'), 1);
});

test('an admin command with no password names the data dir file and how to give it', async (t) => {
  t.timeout(60_000);
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const { url } = await daemon(dir);
  const env = clientEnv(home, url);
  const r = await run(['borrows', '--timeout', '5000'], env);
  t.not(r.code, 0);
  t.regex(r.stderr, /admin\.password/);
  t.regex(r.stderr, /--password-file/);
  t.regex(r.stderr, /LICD_DATA_DIR/);
  t.notRegex(r.stderr, /at .*\.ts:\d+/, 'no stack trace');
  // Given as the message says, it works.
  const ok = await run(['borrows', '--password-file', join(dir, 'admin.password')], env);
  t.is(ok.code, 0, ok.stderr);
});

test('on a terminal, the first borrow shows the fingerprint and asks; yes pins it', async (t) => {
  t.timeout(60_000);
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const { url, printed } = await daemon(dir);
  // socat gives licctl a real pty as its terminal; the answers are typed into it.
  const p = spawn('socat', ['-', `EXEC:${process.execPath} ${join(ROOT, 'bin', 'licctl.mjs')} borrow,pty,setsid,ctty,stderr,echo=0`], {
    env: { ...process.env, ...clientEnv(home, url) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (x) => (out += x));
  p.stderr.on('data', (x) => (out += x));
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 400 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    if (!re.test(out)) throw new Error(`licctl never showed ${re}:\n${out}`);
  };
  await waitFor(/Trust this vendor key for this server \(yes\/no\)\?/);
  t.true(out.includes(printed), out);
  t.false(existsSync(join(home, 'known-vendors.json')), 'nothing pinned before the answer');
  p.stdin.write('yes\n');
  await waitFor(/how many of V-Ray for Maya at once/);
  t.regex(out, new RegExp(`pinned vendor key ${printed}`));
  p.stdin.end();
  p.kill();
  const pins = JSON.parse(readFileSync(join(home, 'known-vendors.json'), 'utf8')) as Record<string, { fingerprint: string }>;
  t.is(pins[url]?.fingerprint, printed);
});
