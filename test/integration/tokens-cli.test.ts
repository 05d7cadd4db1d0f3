/**
 * Borrowed tokens as people meet them (issue 11, findings 1-3 and expired tokens): through real
 * licctl processes against a real licd process.
 */
import test from 'ava';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { FakeClockFile, faketimeAvailable } from '../helpers/faketime.ts';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function daemon(t: { teardown(f: () => void): void }) {
  const { d, dir, home, url, vendor, env, offline } = await devDaemonProcess(t, { LICD_USER: 'alice' });
  const admin = { LICD_BROKER: url, LICD_DATA_DIR: dir, LICD_HOME: tempDir('licd-admin-') };
  t.teardown(() => rmSync(admin.LICD_HOME, { recursive: true, force: true }));
  return { d, dir, home, url, vendor, env, offline, admin };
}

async function borrowed(env: Record<string, string>, feature: string): Promise<number> {
  const s = await run(['status', '--json'], env);
  return (JSON.parse(s.stdout) as { features: Array<{ feature: string; borrowed: number }> }).features.find((f) => f.feature === feature)!.borrowed;
}

const hoursLeft = (iso: string) => (Date.parse(iso) - Date.now()) / 3600_000;

test('a bare return is refused and lists the borrows; --json prints one object; renew never shortens a borrow', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { env } = await daemon(t);
  t.is((await run(['borrow', '--feature', 'vray_render', '--feature', 'nuke_i', '--hours', '10', '--yes'], env)).code, 0);

  const bare = await run(['return'], env);
  t.is(bare.code, 64, 'a bare return is a usage error');
  t.regex(bare.stderr, /needs FEATURE, BORROW_ID or --all/);
  t.regex(bare.stderr, /vray_render x1 until/);
  t.regex(bare.stderr, /nuke_i x1 until/);
  t.is(await borrowed(env, 'vray_render'), 1, 'nothing was returned');
  t.is(await borrowed(env, 'nuke_i'), 1);

  // renew --hours 48, then a plain renew and an explicit shorter one: the 48 h stay.
  const long = await run(['renew', 'vray_render', '--hours', '48', '--json'], env);
  t.is(long.code, 0, long.stderr);
  const lj = JSON.parse(long.stdout) as { renewed: Array<{ feature: string; until: string; hours: number }>; unknownOnServer: unknown[] };
  t.is(lj.renewed.length, 1);
  t.is(lj.renewed[0]!.feature, 'vray_render');
  t.true(hoursLeft(lj.renewed[0]!.until) > 47);
  const plain = await run(['renew', 'vray_render', '--json'], env);
  t.is(plain.code, 0, plain.stderr);
  t.true(hoursLeft((JSON.parse(plain.stdout) as typeof lj).renewed[0]!.until) > 47, 'a plain renew keeps the 48 h');
  const shorter = await run(['renew', 'vray_render', '--hours', '10'], env);
  t.is(shorter.code, 0, shorter.stderr);
  const tokens = JSON.parse((await run(['tokens', '--json'], env)).stdout) as Array<{ feature: string; until: string }>;
  t.true(hoursLeft(tokens.find((x) => x.feature === 'vray_render')!.until) > 47, 'the server keeps the later end');

  const ret = await run(['return', 'nuke_i', '--json'], env);
  t.is(ret.code, 0, ret.stderr);
  const rj = JSON.parse(ret.stdout) as { returned: Array<{ feature: string; count: number; borrowId: string }>; unknownOnServer: unknown[]; returnFile: string | null };
  t.deepEqual(rj.returned.map((x) => [x.feature, x.count]), [['nuke_i', 1]]);
  t.deepEqual(rj.unknownOnServer, []);
  t.is(rj.returnFile, null);
  t.is(await borrowed(env, 'nuke_i'), 0);
  t.is(await borrowed(env, 'vray_render'), 1, 'only the named borrow went back');
  const all = await run(['return', '--all'], env);
  t.is(all.code, 0, all.stderr);
  t.is(await borrowed(env, 'vray_render'), 0);
});

test('an air-gapped return cannot be undone by importing the token file again', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { home, offline, admin } = await daemon(t);
  const files = tempDir('licd-files-');
  t.teardown(() => rmSync(files, { recursive: true, force: true }));
  const [req, tok, ret] = ['req.json', 'tokens.json', 'ret.json'].map((f) => join(files, f)) as [string, string, string];
  t.is((await run(['borrow', 'request', '--feature', 'nuke_i', '--hours', '48', '--out', req], offline)).code, 0);
  t.is((await run(['borrow', '--request', req, '--out', tok], admin)).code, 0);
  t.is((await run(['borrow', 'import', tok], offline)).code, 0);
  t.is((await run(['run', 'nuke_i', '--', 'true'], offline)).code, 0);
  t.is((await run(['return', '--all', '--out', ret], offline)).code, 0);
  const back = await run(['return', '--process', ret], admin);
  t.regex(back.stdout, /returned 1 borrow/);
  t.is(await borrowed(admin, 'nuke_i'), 0);

  const again = await run(['borrow', 'import', tok], offline);
  t.is(again.code, 2, again.stdout + again.stderr);
  t.regex(again.stderr, /TOKEN_RETURNED: borrow \S+ \(1 nuke_i\) was returned from this machine .* by a return file/);
  t.deepEqual(readdirSync(join(home, 'tokens')).filter((f) => f.endsWith('.json')), [], 'nothing was imported');
  const use = await run(['run', 'nuke_i', '--', 'true'], offline);
  t.not(use.code, 0, 'the returned token is not used offline');
});

test('concurrent offline uses of a token never exceed its count, and a crashed user frees its seat', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { env, offline } = await daemon(t);
  t.is((await run(['borrow', '--feature', 'vray_interface=1', '--feature', 'vray_render=2', '--hours', '24', '--yes'], env)).code, 0);

  const first = licctl(['run', 'vray_interface', '--', 'sleep', '60'], offline);
  await first.waitFor(/using borrowed vray_interface/);
  const second = await run(['run', 'vray_interface', '--', 'true'], offline);
  t.is(second.code, 7, second.stderr);
  t.regex(second.stderr, /TOKEN_IN_USE: all 1 borrowed seat of vray_interface on this machine are in use \(pid \d+\)/);

  // A crash (SIGKILL: no clean-up) of the holder: its slot is stale and the next use takes it.
  first.child.kill('SIGKILL');
  await first.exited;
  const third = await run(['run', 'vray_interface', '--', 'sh', '-c', 'echo third'], offline);
  t.is(third.code, 0, third.stderr);
  t.regex(third.stdout, /third/);

  // Two seats: two at once, not three; and a use that ends frees its seat.
  const a = licctl(['run', 'vray_render', '--', 'sleep', '60'], offline);
  const b = licctl(['run', 'vray_render', '--', 'sleep', '60'], offline);
  await a.waitFor(/using borrowed vray_render/);
  await b.waitFor(/using borrowed vray_render/);
  const c = await run(['run', 'vray_render', '--', 'true'], offline);
  t.is(c.code, 7, c.stderr);
  t.regex(c.stderr, /all 2 borrowed seats of vray_render/);
  a.child.kill('SIGTERM');
  await a.exited;
  const d = await run(['run', 'vray_render', '--', 'true'], offline);
  t.is(d.code, 0, d.stderr);
  b.child.kill('SIGKILL');
  await b.exited;
});

test('expired tokens are shown as expired, then removed 7 days after expiry', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  if (!faketimeAvailable()) return t.fail('libfaketime is needed');
  const { env } = await daemon(t);
  t.is((await run(['borrow', '--feature', 'nuke_i', '--hours', '1', '--yes'], env)).code, 0);
  const clock = new FakeClockFile(join(env.LICD_HOME, '..', `faketime-${process.pid}-${Date.now()}`));
  t.teardown(() => rmSync(clock.path, { force: true }));
  const at = (offset: string) => {
    clock.set(offset);
    return { ...env, LICD_BROKER: 'mqtt://127.0.0.1:1', ...clock.env() };
  };
  const later = await run(['tokens'], at('+2h'));
  t.is(later.code, 0, later.stderr);
  t.regex(later.stdout, /nuke_i\s+1 .*EXPIRED \(removed after /);
  const j = JSON.parse((await run(['tokens', '--json'], at('+2h'))).stdout) as Array<{ expired: boolean; valid: boolean; removeAfter: string }>;
  t.is(j.length, 1);
  t.true(j[0]!.expired);
  t.false(j[0]!.valid);
  const week = await run(['tokens', '--json'], at('+9d'));
  t.deepEqual(JSON.parse(week.stdout), [], 'pruned a week after expiry');
  t.deepEqual(readdirSync(join(env.LICD_HOME, 'tokens')).filter((f) => f.endsWith('.json')), []);
});

test('an --out into a directory that does not exist is refused, naming it, and creates nothing', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { env, home } = await daemon(t);
  const missing = join(home, 'no-such-dir', 'deeper');
  const r = await run(['borrow', 'request', '--feature', 'nuke_i', '--hours', '4', '--out', join(missing, 'req.json')], env);
  t.is(r.code, 64);
  t.true(r.stderr.includes(`the directory ${missing} does not exist`), r.stderr);
  t.false(existsSync(join(home, 'no-such-dir')));
  t.is((await run(['borrow', '--feature', 'nuke_i', '--hours', '4', '--yes'], env)).code, 0);
  const ret = await run(['return', '--all', '--out', join(missing, 'ret.json')], env);
  t.is(ret.code, 64);
  t.true(ret.stderr.includes(missing), ret.stderr);
  t.is(await borrowed(env, 'nuke_i'), 1, 'the borrow is kept');
  t.is(JSON.parse((await run(['tokens', '--json'], env)).stdout).length, 1, 'and so is its token');
});
