/**
 * licctl run on several boxes (docs/scale-out.md): the seat of a running command moves to another
 * box when its box's daemon dies, and the command runs on; at its end the seat is checked in on
 * the box that holds it. Real parts: two licd processes with their own emulated dongles, two
 * mosquittos bridged with the shipped configuration, licctl as a process.
 */
import test from 'ava';
import { rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { boxConfig, startBoxes, startBridgedBrokers } from '../helpers/bridged-boxes.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import type { Mosquitto } from '../helpers/mosquitto.ts';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

const IDS = ['box-a', 'box-b'] as const;

interface Seat {
  server: string;
  users: string[];
}

test('licctl run: when the box holding its seat dies, the seat moves to the other box, the command runs on, and the seat is checked in there at its end', async (t) => {
  t.timeout(120_000);
  const brokers: Mosquitto[] = [];
  t.teardown(async () => {
    for (const m of brokers) await m.stop().catch(() => {});
  });
  await startBridgedBrokers(IDS, (m) => brokers.push(m));
  const dir = tempDir('licd-run-moves-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const daemons = await startBoxes(IDS.map((id, i) => boxConfig(dir, id, brokers[i]!)));
  const env = { LICD_HOME: join(dir, 'home'), LICD_USER: 'render-7', LICD_HOST: 'node-7' };
  const broker = `${brokers[0]!.url},${brokers[1]!.url}`;
  const seats = async (): Promise<Seat[]> => {
    const st = await run(['status', 'nuke_i', '--json', '--broker', broker], env);
    const servers = (JSON.parse(st.stdout) as { servers: Array<{ server: string; status?: { features: Array<{ feature: string; leases: Array<{ user: string }> }> } }> }).servers;
    return servers.filter((s) => s.status).map((s) => ({ server: s.server, users: s.status!.features.find((f) => f.feature === 'nuke_i')!.leases.map((l) => l.user) }));
  };
  await until(async () => (await seats().catch(() => [])).length === 2, 'both boxes answer licctl status', 30_000, 500);

  // The command runs until the test lets it end (a file appears).
  const done = join(dir, 'done');
  const script = `while [ ! -e '${done}' ]; do sleep 0.2; done; echo finished`;
  const p = licctl(['run', 'nuke_i', '--json', '--broker', broker, '--', 'sh', '-c', script], env);
  await p.waitFor(/"event":"granted"/, 30_000);
  const granted = JSON.parse(p.stderr().split('\n').find((l) => l.includes('"event":"granted"'))!) as { server: string; lease: { id: string } };
  t.true((IDS as readonly string[]).includes(granted.server));
  const other = IDS.find((id) => id !== granted.server)!;
  t.deepEqual((await seats()).find((s) => s.server === granted.server)!.users, ['render-7']);

  // The box holding the seat dies: its broker publishes its will (offline) to both brokers.
  daemons[IDS.indexOf(granted.server as (typeof IDS)[number])]!.child.kill('SIGKILL');
  await p.waitFor(/"event":"moved"/, 30_000);
  const moved = JSON.parse(p.stderr().split('\n').find((l) => l.includes('"event":"moved"'))!) as { from: string; to: string; lease: { id: string } };
  t.is(moved.from, granted.server);
  t.is(moved.to, other);
  t.deepEqual((await seats()).find((s) => s.server === other)!.users, ['render-7'], 'the other box holds the seat');
  t.false(existsSync(done));
  t.is(p.child.exitCode, null, 'the command still runs');

  // The command ends: licctl checks the seat in on the box that holds it now, and exits with its code.
  writeFileSync(done, '');
  const { code } = await p.exited;
  t.is(code, 0, p.stderr());
  t.regex(p.stdout(), /finished/);
  t.regex(p.stderr(), new RegExp(`"event":"checkedIn".*"server":"${other}"`));
  t.deepEqual((await seats()).find((s) => s.server === other)!.users, []);
});
