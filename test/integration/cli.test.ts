import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, until } from '../helpers/daemon.ts';
import { killAll, licctl, run as runRaw, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());
const run = (args: string[], env: Record<string, string> = {}) => runRaw(args, { LICD_HOST: 'node-a', ...env });

test('a bad config file stops start-up with the field and the fix', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'licd.json'), JSON.stringify({ leases: { ttlSeconds: 'sixty' } }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir }, ['--config', join(dir, 'licd.json')]);
  const { code } = await d.exited;
  t.is(code, 78);
  t.regex(d.stderr(), /config: leases.ttlSeconds must be a whole number, got the string "sixty"/);
});

test('the user flow: status, checkouts until denied, run, a killed holder, restart keeps leases', async (t) => {
  const dir = tempDir();
  const env = { LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', LICD_HOST: 'node-a' };
  let d = startDaemonProcess(env, ['--config', writeConfig(dir)]);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  const B = ['--broker', url];

  const st = await run(['status', ...B]);
  t.is(st.code, 0, st.stderr);
  t.regex(st.stdout, /vray_render\s+6\.2\s+render\s+4\s+0\s+0\s+4/);
  t.regex(st.stdout, /DEVELOPMENT MATERIAL/);

  const holder1 = licctl(['checkout', 'nuke_i', ...B], { LICD_USER: 'alice', LICD_HOST: 'node-a' });
  await holder1.waitFor(/granted nuke_i to alice@node-a/);
  const denied = await run(['checkout', 'nuke_i', ...B], { LICD_USER: 'bob' });
  t.is(denied.code, 3);
  t.regex(denied.stderr, /NO_SEATS: nuke_i: 0 of 1 seats free \(1 leased, 0 borrowed\)/);

  // licctl run gives its command's exit code and returns the seat whatever the exit.
  const r = await run(['run', 'vray_render', ...B, '--', 'sh', '-c', 'echo working; exit 7']);
  t.is(r.code, 7);
  t.regex(r.stdout, /working/);
  t.regex(r.stderr, /checked in vray_render/);
  const deniedRun = await run(['run', 'nuke_i', ...B, '--', 'true']);
  t.is(deniedRun.code, 3);

  // Killing a holder frees its seat within the grace (configured 1 s here).
  holder1.child.kill('SIGKILL');
  await until(async () => / nuke_i .* 1\s+0\s+0\s+1 /.test((await run(['status', ...B])).stdout.replace(/\n/g, ' ')), 'the seat of a killed holder to come back', 15_000, 300);

  // A live holder survives a daemon restart.
  const holder2 = licctl(['checkout', 'vray_interface', ...B], { LICD_USER: 'carol', LICD_HOST: 'node-a' });
  await holder2.waitFor(/granted vray_interface/);
  d.child.kill('SIGTERM');
  await d.exited;
  d = startDaemonProcess({ ...env, LICD_MQTT_PORT: url.split(':').pop()! }, ['--config', join(dir, 'licd.json')]);
  await d.waitFor(/listening on/);
  const after = await run(['status', ...B, '--json']);
  const f = (JSON.parse(after.stdout) as { features: Array<{ feature: string; leased: number; leases: Array<{ user: string }> }> }).features.find((x) => x.feature === 'vray_interface')!;
  t.is(f.leased, 1);
  t.is(f.leases[0]!.user, 'carol');
  const ci = await run(['checkin', ...B]);
  t.is(ci.code, 0);
  await holder2.exited;
  t.regex(holder2.stdout(), /checked in vray_interface/);
});

function writeConfig(dir: string): string {
  const file = join(dir, 'licd.json');
  writeFileSync(file, JSON.stringify({ leases: { disconnectGraceSeconds: 1 } }));
  return file;
}
