/**
 * Issue 17, part 2: a render node with no broker configured finds the licd boxes of its LAN by
 * mDNS (_licd._tcp). Real processes in network namespaces this test makes: licd daemons on a
 * "box" namespace, licctl on a "node" namespace, one LAN (a bridge) between them.
 */
import test from 'ava';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { makeLan } from '../helpers/netns.ts';
import { killAll, ROOT, start, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function runIn(prefix: string[], args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(prefix[0]!, [...prefix.slice(1), process.execPath, join(ROOT, 'bin', 'licctl.mjs'), ...args], env);
  const { code } = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

test('a render node with no broker configured finds every box of its LAN by mDNS, and says what to set when there is none', async (t) => {
  t.timeout(120_000);
  const lan = makeLan(['box', 'node']);
  t.teardown(() => lan.dispose());
  const dir = tempDir('licd-disco-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const home = join(dir, 'home');
  mkdirSync(home);
  // Nothing configured: no flag, no LICD_BROKER, no client config (HOME is empty).
  const env = { HOME: home, LICD_HOME: home, LICD_BROKER: '', LICD_CLIENT_CONFIG: '', LICD_DISCOVERY_WAIT: '2000' };

  // No box yet: a clear error naming what to set, after a short wait.
  const none = await runIn(lan.exec('node'), ['status'], env);
  t.not(none.code, 0);
  t.regex(none.stderr, /no license server found: no broker is configured.*--broker mqtt:\/\/BOX:1883 or LICD_BROKER/);
  t.notRegex(none.stderr, /at .*\.ts:\d+/);

  // Two boxes (two daemons on the box namespace, each with its own broker port and server id).
  const daemons: Proc[] = [];
  for (const name of ['licd-a', 'licd-b']) {
    const config = join(dir, `${name}.json`);
    writeFileSync(config, JSON.stringify({ dataDir: join(dir, name), development: true, discovery: { enabled: true, name } }));
    const d = start(lan.exec('box')[0]!, [...lan.exec('box').slice(1), process.execPath, '--import', 'tsx', join(ROOT, 'src', 'main.ts')], {
      LICD_CONFIG: config,
      LICD_MQTT_HOST: '0.0.0.0',
      LICD_MQTT_PORT: '0',
      LICD_HTTP_PORT: '0',
    });
    daemons.push(d);
    await d.waitFor(/discovery: announced on the LAN/, 40_000);
  }

  const servers = await runIn(lan.exec('node'), ['servers', '--json'], env);
  t.is(servers.code, 0, servers.stderr);
  const found = (JSON.parse(servers.stdout) as { servers: Array<{ server: string; urls: string[] }> }).servers;
  t.deepEqual(found.map((s) => s.server).sort(), ['licd-a', 'licd-b']);
  for (const s of found) t.regex(s.urls[0]!, new RegExp(`^mqtt://${lan.addr.box!.replace(/\./g, '\\.')}:\\d+$`));

  // licctl status with nothing configured reaches a box it found.
  const status = await runIn(lan.exec('node'), ['status', '--json'], env);
  t.is(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { server: { state: string }; features: Array<{ feature: string }> };
  t.is(s.server.state, 'online');
  t.true(s.features.some((f) => f.feature === 'nuke_i'));

  // A box that stops is no longer found (it said goodbye, and answers no query).
  daemons[1]!.child.kill('SIGTERM');
  await daemons[1]!.exited;
  const after = await runIn(lan.exec('node'), ['servers', '--json'], env);
  t.deepEqual((JSON.parse(after.stdout) as { servers: Array<{ server: string }> }).servers.map((x) => x.server), ['licd-a']);
  daemons[0]!.child.kill('SIGTERM');
  await daemons[0]!.exited;
});
