/**
 * Issue 15 through real processes: the daemon (a child process with its embedded broker and
 * LevelDB) loads its policy file at start; a refused licctl checkout names the rule and its line
 * (exit 2); licctl policy set changes the rules at once and survives a restart; a bad policy is
 * refused naming its line; SIGHUP reloads the file; a bad file stops the start.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

const POLICY = [
  '# seats for the lighting team',
  'GROUP lighting alice bob',
  '',
  'RESERVE 2 vray_render GROUP lighting',
  'EXCLUDE nuke_i USER mallory',
].join('\n');

async function daemon(dir: string): Promise<{ d: Proc; url: string }> {
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  return { d, url };
}

test('a refused checkout names the rule and its line; policy set takes effect at once and is kept over a restart; SIGHUP reloads the file', async (t) => {
  t.timeout(150_000); // generous: the machine is shared
  const dir = tempDir();
  writeFileSync(join(dir, 'policy.txt'), POLICY);
  let { d, url } = await daemon(dir);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const B = ['--broker', url];
  const admin = () => [...B, '--user', 'admin', '--password-file', join(dir, 'admin.password')];
  const as = (user: string) => ({ LICD_USER: user, LICD_HOST: `ws-${user}` });

  // Two of four seats out: the other two are kept for lighting.
  const holders = [licctl(['checkout', 'vray_render', ...B], as('dave')), licctl(['checkout', 'vray_render', ...B], as('erin'))];
  for (const h of holders) await h.waitFor(/granted vray_render/);
  const refused = await run(['run', 'vray_render', ...B, '--', 'true'], as('frank'));
  t.is(refused.code, 2, refused.stderr);
  t.regex(refused.stderr, /POLICY_RESERVED: vray_render: 2 of 4 free, but both are reserved for group lighting \(policy line 4\)/);
  const json = await run(['checkout', 'nuke_i', '--json', ...B], as('mallory'));
  t.is(json.code, 2);
  t.is((JSON.parse(json.stderr.trim().split('\n').pop()!) as { error: { code: string } }).error.code, 'POLICY_DENIED');
  t.regex(json.stderr, /mallory@ws-mallory may not use it: user mallory is excluded \(policy line 5\)/);
  t.is((await run(['run', 'vray_render', ...B, '--', 'true'], as('alice'))).code, 0);

  // Status shows the reservation and how much of it is used.
  const st = await run(['status', 'vray_render', ...B]);
  t.regex(st.stdout, /policy {3}reserved 2 for group lighting \(0 in use; line 4\)/);

  // A bad policy is refused with its line, here and on the server, and nothing changes.
  const bad = join(dir, 'bad.txt');
  writeFileSync(bad, 'GROUP lighting alice\nRESERVE two vray_render GROUP lighting\n');
  const b1 = await run(['policy', 'check', bad]);
  t.is(b1.code, 2);
  t.regex(b1.stderr, /POLICY_INVALID: policy line 2: RESERVE needs a count, a feature and USER\|GROUP\|HOST\|HOST_GROUP NAME/);
  const b2 = await run(['policy', 'set', bad, ...admin()]);
  t.is(b2.code, 2);
  t.regex(b2.stderr, /bad\.txt: policy line 2: RESERVE needs a count/);

  // policy set: in force at once (frank now gets a seat; mallory is refused vray_render too).
  const next = join(dir, 'next.txt');
  writeFileSync(next, 'EXCLUDE vray_render USER mallory\n');
  const set = await run(['policy', 'set', next, ...admin()]);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stdout, /policy set from .*next\.txt and in force now .*: 1 rule line\(s\) for vray_render/);
  t.is((await run(['run', 'vray_render', ...B, '--', 'true'], as('frank'))).code, 0);
  t.is((await run(['run', 'nuke_i', ...B, '--', 'true'], as('mallory'))).code, 0);
  t.regex((await run(['run', 'vray_render', ...B, '--', 'true'], as('mallory'))).stderr, /POLICY_DENIED: vray_render: mallory@ws-mallory may not use it: user mallory is excluded \(policy line 1\)/);
  t.is(readFileSync(join(dir, 'policy.txt'), 'utf8'), 'EXCLUDE vray_render USER mallory\n');

  // SIGHUP: the file is read again.
  writeFileSync(join(dir, 'policy.txt'), 'INCLUDE vray_render USER zoe\n');
  d.child.kill('SIGHUP');
  await d.waitFor(/policy reloaded/);
  t.regex((await run(['run', 'vray_render', ...B, '--', 'true'], as('frank'))).stderr, /POLICY_DENIED: vray_render: only user zoe may use it \(policy line 1\), and frank@ws-frank is not among them/);

  // A restart keeps it (it is the file), and licctl policy show numbers its lines.
  for (const h of holders) h.child.kill('SIGTERM');
  for (const h of holders) await h.exited;
  d.child.kill('SIGTERM');
  await d.exited;
  ({ d, url } = await daemon(dir));
  const show = await run(['policy', 'show', '--broker', url, '--user', 'admin', '--password-file', join(dir, 'admin.password')]);
  t.is(show.code, 0, show.stderr);
  t.regex(show.stdout, /policy from .*policy\.txt: 1 rule line\(s\) for vray_render\n {3}1 {2}INCLUDE vray_render USER zoe/);
  t.is((await run(['run', 'vray_render', '--broker', url, '--', 'true'], as('frank'))).code, 2);

  // A bad file stops the start (exit 78), naming the file, the line and the fix.
  d.child.kill('SIGTERM');
  await d.exited;
  writeFileSync(join(dir, 'policy.txt'), 'MAX 2 vray_render PROJECT x\n');
  d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const end = await d.exited;
  t.is(end.code, 78);
  t.regex(d.stderr(), /licd: cannot start: CONFIG_INVALID: .*policy\.txt: policy line 1: MAX needs a count, a feature and USER\|GROUP\|HOST\|HOST_GROUP NAME.*"PROJECT" is not USER, GROUP, HOST or HOST_GROUP.*Fix the file \(licctl policy check FILE says what is wrong\)/);
});

test('LINGER through real clients: a checked-in seat stays with its user@host, who gets it back from a new licctl run; others are refused until it ends', async (t) => {
  t.timeout(120_000);
  const dir = tempDir();
  writeFileSync(join(dir, 'policy.txt'), 'LINGER nuke_i 600\n');
  const { d, url } = await daemon(dir);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const B = ['--broker', url];
  const alice = { LICD_USER: 'alice', LICD_HOST: 'ws-a' };
  const first = await run(['run', 'nuke_i', ...B, '--', 'true'], alice);
  t.is(first.code, 0, first.stderr);
  const lease = /lease (\S+),/.exec(first.stderr)![1]!;
  const st = await run(['status', 'nuke_i', ...B]);
  t.regex(st.stdout, new RegExp(`leased {3}alice@ws-a .*\\(checked in; lingers for its user@host\\) {2}\\[${lease}\\]`));
  t.regex(st.stdout, /policy {3}lingers 600 s after check-in \(line 1\)/);
  const bob = await run(['run', 'nuke_i', ...B, '--', 'true'], { LICD_USER: 'bob', LICD_HOST: 'ws-b' });
  t.is(bob.code, 3, bob.stderr);
  const again = await run(['run', 'nuke_i', ...B, '--', 'true'], alice);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stderr, new RegExp(`granted nuke_i to alice@ws-a \\(lease ${lease},`));
});
