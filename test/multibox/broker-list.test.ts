/**
 * Issue 17, part 1: a client given several brokers (--broker "mqtt://a,mqtt://b", LICD_BROKER,
 * "broker" in the client config) tries them in order and moves to the next when one is
 * unreachable or drops. Real processes: licd, licctl, and a second way to licd's broker (socat, a
 * separate process that can die on its own, as a broker does).
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { tempDir, until } from '../helpers/daemon.ts';
import { freePort, killAll, licctl, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());


/** socat forwarding a loopback port to licd's broker: a broker address that can die. Its own process group, so that a kill takes the forked copies too. */
async function proxy(to: number): Promise<{ url: string; kill(): void }> {
  const port = await freePort();
  const child: ChildProcess = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `TCP:127.0.0.1:${to}`], { detached: true, stdio: 'ignore' });
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  // Ready when it takes a connection.
  await until(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      }),
    'socat listening',
    10_000,
    50,
  );
  return { url: `mqtt://127.0.0.1:${port}`, kill };
}

async function daemon(t: { teardown(f: () => void): void }, leases: Record<string, unknown> = {}) {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const config = join(dir, 'licd.json');
  writeFileSync(config, JSON.stringify({ dataDir: join(dir, 'data'), development: true, leases }));
  const d = startDaemonProcess({ LICD_CONFIG: config, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'data', 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  return { d, url, port: Number(new URL(url).port), env: { LICD_HOME: home, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice', LICD_HOST: 'node-7' } };
}

test('a list of brokers: an unreachable first one is passed over, and a wrong entry is named', async (t) => {
  const { url, env } = await daemon(t);
  const dead = `mqtt://127.0.0.1:${await freePort()}`;
  const ok = await run(['status', '--json', '--broker', `${dead},${url}`], env);
  t.is(ok.code, 0, ok.stderr);
  t.is((JSON.parse(ok.stdout) as { server: { state: string } }).server.state, 'online');
  t.notRegex(ok.stderr, /DeprecationWarning/);
  // The broker this run reached is the one the next run of the same list tries first.
  const last = JSON.parse(readFileSync(join(env.LICD_HOME, 'last-broker.json'), 'utf8')) as Record<string, string>;
  t.deepEqual(last, { [`${dead},${url}`]: url });

  // The same list from LICD_BROKER, and from the client config as an array.
  const viaEnv = await run(['status', '--json'], { ...env, LICD_BROKER: `${dead}, ${url}` });
  t.is(viaEnv.code, 0, viaEnv.stderr);
  const cfg = join(env.LICD_HOME, 'client.json');
  writeFileSync(cfg, JSON.stringify({ broker: [dead, url] }));
  const viaFile = await run(['status', '--json', '--config', cfg], env);
  t.is(viaFile.code, 0, viaFile.stderr);

  // A bad entry: refused before anything is sent, naming where it came from and which entry.
  const bad = await run(['status', '--broker', `${url},mqtt://licd.local:99999`], env);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /--broker, entry 2.*99999.*not a number from 1 to 65535/);
  t.notRegex(bad.stderr, /DeprecationWarning|at .*\.ts:\d+/);
  const badFile = join(env.LICD_HOME, 'bad.json');
  writeFileSync(badFile, JSON.stringify({ broker: [url, 'http://licd.local'] }));
  const bad2 = await run(['status', '--config', badFile], env);
  t.not(bad2.code, 0);
  t.regex(bad2.stderr, /"broker" in .*bad\.json, entry 2.*must start with mqtt:\/\/ or mqtts:\/\//);

  // None reachable: the error names each broker.
  const none = await run(['status', '--broker', `${dead},mqtt://127.0.0.1:1`, '--timeout', '5000'], env);
  t.not(none.code, 0);
  t.regex(none.stderr, new RegExp(`${dead.replace(/[.]/g, '\\.')}: ECONNREFUSED`));
});

test('a held seat survives the death of the broker the client uses: it carries on through the next one', async (t) => {
  t.timeout(90_000);
  // A short disconnect grace: had the client not come back through the second broker, the seat
  // would be gone (LEASE_EXPIRED) by the end of the test.
  const { url, port, env } = await daemon(t, { disconnectGraceSeconds: 2, minTtlSeconds: 3, ttlSeconds: 6 });
  const first = await proxy(port);
  t.teardown(() => first.kill());
  const holder = licctl(['checkout', 'nuke_i', '--json', '--broker', `${first.url},${url}`], env);
  const line = (await holder.waitFor(/^\{"event":"granted".*$/m, 30_000))[0];
  const leaseId = (JSON.parse(line) as { lease: { id: string } }).lease.id;
  t.truthy(leaseId);

  first.kill();
  // The daemon saw the connection end (the will); the client is back through the second broker
  // and its heartbeat renews the seat. Past the grace and two TTLs the seat is still its own.
  await new Promise((r) => setTimeout(r, 14_000));
  const s = await run(['status', 'nuke_i', '--json', '--broker', url], env);
  t.is(s.code, 0, s.stderr);
  const f = (JSON.parse(s.stdout) as { features: Array<{ feature: string; leases: Array<{ id: string; state: string; user: string }> }> }).features.find((x) => x.feature === 'nuke_i')!;
  t.deepEqual(f.leases.map((l) => [l.id, l.state, l.user]), [[leaseId, 'active', 'alice']]);
  t.notRegex(holder.stdout(), /"event":"lost"/);
  holder.child.kill('SIGINT');
  await holder.exited;
});
