/**
 * Issue 9, findings 6 and 7: a revoke sticks and its holder is told; an admin's block refuses the
 * same user@host and survives a restart; licctl run stops or warns on a loss; a SIGKILLed licctl
 * run does not leave its command running without a seat. All through real processes: the daemon
 * and every licctl are child processes.
 */
import test from 'ava';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, until } from '../helpers/daemon.ts';
import { killAll, licctl, run, startDaemonProcess, type Proc, alive } from '../helpers/procs.ts';

test.after.always(() => killAll());

interface Status {
  features: Array<{ feature: string; leased: number; leases: Array<{ id: string; user: string; host: string }> }>;
}

async function daemon(dir: string, port = '0'): Promise<{ d: Proc; url: string }> {
  const file = join(dir, 'licd.json');
  writeFileSync(file, JSON.stringify({ leases: { disconnectGraceSeconds: 1 } }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: port }, ['--config', file]);
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  return { d, url };
}

function feature(json: string, name: string) {
  return (JSON.parse(json) as Status).features.find((f) => f.feature === name)!;
}

test('a revoke with --block: the holder is told why and takes no new lease; the block refuses a re-checkout, also after a restart', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const dir = tempDir();
  let { d, url } = await daemon(dir);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const B = ['--broker', url];
  const admin = [...B, '--user', 'admin', '--password-file', join(dir, 'admin.password')];
  const alice = { LICD_USER: 'alice', LICD_HOST: 'node-a' };

  // --ttl 10: a heartbeat every 3 s, so the old silent re-checkout would happen within the test.
  const holder = licctl(['checkout', 'nuke_i', '--ttl', '10', ...B], alice);
  const lease = (await holder.waitFor(/granted nuke_i to alice@node-a \(lease (\S+),/))[1]!;

  const r = await run(['lease', 'revoke', lease, '--block', '30m', ...admin]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /revoked lease \S+ of nuke_i held by alice@node-a \(the holder is told\); alice@node-a is blocked from nuke_i until \d{4}-/);

  // The holder says the seat is gone and why, and ends with exit code 5.
  await holder.waitFor(/lost the seat of nuke_i: REVOKED: an admin revoked lease \S+ of nuke_i and blocked this user and host from nuke_i until \d{4}-\d\d-\d\dT[\d:.]+Z/);
  const ended = await holder.exited;
  t.is(ended.code, 5, holder.stderr());
  t.notRegex(holder.stdout(), /regained/);

  // Past a few heartbeats of the old client: nobody holds nuke_i, the revoke stuck.
  await new Promise((res) => setTimeout(res, 4000));
  t.is(feature((await run(['status', '--json', ...B])).stdout, 'nuke_i').leased, 0);

  // The same user@host is refused with the admin's block end; another user is not.
  const again = await run(['checkout', 'nuke_i', ...B], alice);
  t.is(again.code, 5);
  t.regex(again.stderr, /BLOCKED: nuke_i: an admin revoked the seat of alice@node-a and blocked this user and host from nuke_i until \d{4}-/);

  // The block survives a restart of the daemon.
  d.child.kill('SIGTERM');
  await d.exited;
  ({ d } = await daemon(dir, url.split(':').pop()!));
  const afterRestart = await run(['checkout', 'nuke_i', ...B], alice);
  t.is(afterRestart.code, 5);
  t.regex(afterRestart.stderr, /BLOCKED: nuke_i/);
  // --ttl 10: licctl gives its check-in 3 s; on a loaded machine it may miss them, and the seat
  // then comes back when the lease times out (as licctl says), not a minute later.
  const bob = licctl(['checkout', 'nuke_i', '--ttl', '10', ...B], { LICD_USER: 'bob', LICD_HOST: 'node-b' });
  await bob.waitFor(/granted nuke_i to bob@node-b/);
  bob.child.kill('SIGTERM');
  await bob.exited;
  await until(async () => feature((await run(['status', '--json', ...B])).stdout, 'nuke_i').leased === 0, `bob's seat back (bob said: ${bob.stdout()} ${bob.stderr()})`, 30_000, 200);

  // The admin sees the block and can lift it.
  const st = await run(['status', ...B]);
  t.regex(st.stdout, /blocked: alice@node-a from nuke_i until \d{4}-.*\(licctl lease unblock nuke_i alice@node-a\)/);
  const ub = await run(['lease', 'unblock', 'nuke_i', 'alice@node-a', ...admin]);
  t.is(ub.code, 0, ub.stderr);
  const back = licctl(['checkout', 'nuke_i', ...B], alice);
  await back.waitFor(/granted nuke_i to alice@node-a/);
  back.child.kill('SIGTERM');
  await back.exited;
});

// One daemon for the licctl run tests; each uses its own feature.
const shared: { d?: Proc; url?: string; dir?: string } = {};
test.before(async () => {
  shared.dir = tempDir();
  Object.assign(shared, await daemon(shared.dir));
});
test.after.always(() => {
  shared.d?.child.kill('SIGKILL');
  if (shared.dir) rmSync(shared.dir, { recursive: true, force: true });
});
const B = () => ['--broker', shared.url!];
const adminArgs = () => [...B(), '--user', 'admin', '--password-file', join(shared.dir!, 'admin.password')];
const leaseOf = async (f: string, user: string) =>
  until(async () => feature((await run(['status', '--json', ...B()])).stdout, f).leases.find((l) => l.user === user)?.id, `a lease of ${f} for ${user}`, 20_000, 200) as Promise<string>;

test('licctl run --on-loss stop: a revoke stops the command, and the processes under it, after the grace; exit code 5', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  // The command is a shell script with a child of its own: both are stopped.
  const stopperPid = join(shared.dir!, 'stopper.pid');
  const stopper = licctl(['run', 'vray_render', '--on-loss', 'stop', '--grace', '1', ...B(), '--', 'sh', '-c', `sleep 120 & echo $! > ${stopperPid}; echo started; wait`], { LICD_USER: 'sam' });
  await stopper.waitFor(/started/);
  const sleeper = Number(readFileSync(stopperPid, 'utf8').trim());
  t.true(alive(sleeper));
  const r1 = await run(['lease', 'revoke', await leaseOf('vray_render', 'sam'), ...adminArgs()]);
  t.is(r1.code, 0, r1.stderr);
  const s = await stopper.exited;
  t.is(s.code, 5, stopper.stderr());
  t.regex(stopper.stderr(), /lost the seat of vray_render: REVOKED/);
  t.regex(stopper.stderr(), /stopping the command: the seat of vray_render is gone \(REVOKED\) and was not back within 1 s/);
  await until(() => !alive(sleeper), 'the child of the stopped script to end too', 15_000, 100);
});

test('licctl run --on-loss warn: after a revoke the command runs on to its end, warned every --warn-every, with no silent re-checkout', async (t) => {
  t.timeout(120_000);
  const go = join(shared.dir!, 'go');
  const warner = licctl(['run', 'vray_interface', '--warn-every', '1', ...B(), '--', 'sh', '-c', `echo started; while [ ! -e ${go} ]; do sleep 0.2; done; echo finished; exit 3`], { LICD_USER: 'wes' });
  await warner.waitFor(/started/);
  const r2 = await run(['lease', 'revoke', await leaseOf('vray_interface', 'wes'), ...adminArgs()]);
  t.is(r2.code, 0, r2.stderr);
  await warner.waitFor(/still no seat of vray_interface/, 30_000);
  writeFileSync(go, '');
  const w = await warner.exited;
  t.is(w.code, 3, warner.stderr());
  t.regex(warner.stdout(), /finished/);
  t.regex(warner.stderr(), /lost the seat of vray_interface: REVOKED: an admin revoked lease/);
  t.regex(warner.stderr(), /still no seat of vray_interface \(REVOKED\)/);
  t.is(feature((await run(['status', '--json', ...B()])).stdout, 'vray_interface').leased, 0, 'no silent re-checkout');
});

test('a SIGKILLed licctl run takes its command (and the processes under it) with it, and its seat comes back', async (t) => {
  t.timeout(120_000);
  const pidFile = join(shared.dir!, 'cmd.pid');
  const killed = licctl(['run', 'nuke_i', ...B(), '--', 'sh', '-c', `sleep 300 & echo $! > ${pidFile}; wait`], { LICD_USER: 'kim' });
  await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'the command to start', 20_000);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  t.true(alive(pid));
  await leaseOf('nuke_i', 'kim');
  killed.child.kill('SIGKILL');
  await killed.exited;
  await until(() => !alive(pid), 'the command of a SIGKILLed licctl run to end', 15_000, 100);
  await until(async () => feature((await run(['status', '--json', ...B()])).stdout, 'nuke_i').leased === 0, 'the seat to come back', 20_000, 300);
  t.pass();
});
