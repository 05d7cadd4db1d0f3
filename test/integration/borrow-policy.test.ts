/**
 * Issue 15, the borrow limits folded into the policy file (docs/policy.md, "Borrowing"):
 * BORROW_MAX and BORROW_HOURS lines, judged with the other rules, their refusals naming the line;
 * each limit the config's borrow.limits can hold as a line; precedence (a feature with policy
 * borrow lines is judged by them alone, any other by borrow.limits as before); changed live by
 * policy.set and by SIGHUP. The rule tests run licd in-process with an injected clock; the last
 * test runs licd as a child process with its policy file and licctl borrow.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LicdError } from '../../src/core/errors.ts';
import { parsePolicy } from '../../src/core/policy.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { ManualClock, startTestDaemon, tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

const H = 3600_000;

async function setup(t: { teardown(f: () => Promise<void> | void): void }, config: Record<string, unknown> = {}) {
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock, config });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const admin = await d.admin();
  const policy = (text: string) => admin.request('policy.set', { text }, { admin: true });
  const borrower = (user: string, hostId: string, hostName = 'laptop') => {
    const home = tempDir('licd-home-');
    t.teardown(() => rmSync(home, { recursive: true, force: true }));
    return new BorrowClient({ home, hostId, user, hostName, clock });
  };
  return { d, c, clock, admin, policy, borrower };
}

const why = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return `${(e as LicdError).code}: ${(e as Error).message}`;
  }
};

test('every borrow limit the config holds is a policy line: per feature, per user and per group, in seats and hours; refusals name the line', async (t) => {
  const { c, policy, borrower } = await setup(t);
  // The same limits as borrow-rules.test.ts sets with licctl borrow limits, as lines.
  await policy(
    [
      'GROUP interns eve mallory',
      'BORROW_MAX 2 vray_render', // limits.features.vray_render.maxSeats
      'BORROW_HOURS 48 vray_render', // limits.features.vray_render.maxHours
      'BORROW_MAX 1 * USER alice', // limits.users.alice.maxSeats (all features together)
      'BORROW_MAX 1 * GROUP interns', // limits.groups.interns.maxSeats
      'BORROW_HOURS 8 * GROUP interns', // limits.groups.interns.maxHours
    ].join('\n'),
  );
  const alice = borrower('alice', 'aa'.repeat(16));
  const bob = borrower('bob', 'bb'.repeat(16));
  const eve = borrower('eve', 'cc'.repeat(16));
  const mallory = borrower('mallory', 'dd'.repeat(16));
  t.regex(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 49)), /^BORROW_HOURS: vray_render: 49 h asked for, but BORROW_HOURS 48 vray_render for everyone \(policy line 3\) allows at most 48 h$/);
  t.is(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 48)), 'ok');
  t.regex(await why(alice.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1)), /^BORROW_LIMIT: nuke_i: BORROW_MAX 1 of all features for user alice \(policy line 4\) allows 1 borrowed seats and 1 are borrowed; 1 more asked for$/);
  t.is(await why(bob.borrow(c, [{ feature: 'vray_render', count: 1 }], 10)), 'ok');
  t.regex(await why(eve.borrow(c, [{ feature: 'vray_render', count: 1 }], 8)), /BORROW_LIMIT: vray_render: BORROW_MAX 2 vray_render for everyone \(policy line 2\) allows 2/);
  t.regex(await why(eve.borrow(c, [{ feature: 'vray_interface', count: 1 }], 9)), /BORROW_HOURS: .*BORROW_HOURS 8 of all features for group interns \(policy line 6\) allows at most 8 h/);
  t.is(await why(eve.borrow(c, [{ feature: 'vray_interface', count: 1 }], 8)), 'ok');
  t.regex(await why(mallory.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1)), /BORROW_LIMIT: .*BORROW_MAX 1 of all features for group interns \(policy line 5\) allows 1/);
  // The refusal's details name the rule and the line, as the other policy refusals do.
  try {
    await mallory.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1);
    t.fail('refused');
  } catch (e) {
    t.like((e as LicdError).details, { rule: 'BORROW_MAX', line: 5, feature: 'nuke_i' });
  }
});

test('per feature and per host, and hosts by group: the lines the config cannot say; a limit counts borrows until they end (injected clock)', async (t) => {
  const { d, c, clock, policy, borrower } = await setup(t);
  await policy(['HOST_GROUP laptops lap-*', 'BORROW_MAX 1 nuke_i HOST_GROUP laptops', 'BORROW_HOURS 4 vray_render HOST kiosk', 'BORROW_MAX 0 vray_interface USER zoe'].join('\n'));
  const ann = borrower('ann', 'aa'.repeat(16), 'lap-ann');
  const ben = borrower('ben', 'bb'.repeat(16), 'LAP-BEN');
  const kiosk = borrower('kim', 'cc'.repeat(16), 'kiosk');
  const zoe = borrower('zoe', 'dd'.repeat(16), 'ws-zoe');
  t.is(await why(ann.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), 'ok');
  t.regex(await why(ben.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), /BORROW_LIMIT: nuke_i: BORROW_MAX 1 nuke_i for host group laptops \(policy line 2\) allows 1 borrowed seats and 1 are borrowed/);
  t.regex(await why(kiosk.borrow(c, [{ feature: 'vray_render', count: 1 }], 5)), /BORROW_HOURS 4 vray_render for host kiosk \(policy line 3\) allows at most 4 h/);
  const kb = await kiosk.borrow(c, [{ feature: 'vray_render', count: 1 }], 4);
  t.regex(await why(zoe.borrow(c, [{ feature: 'vray_interface', count: 1 }], 1)), /BORROW_MAX 0 vray_interface for user zoe \(policy line 4\) allows 0 borrowed seats/);
  t.is(await why(zoe.borrow(c, [{ feature: 'vray_render', count: 1 }], 100)), 'ok', 'zoe may borrow what no line limits');
  // ann's borrow ends at its expiry: the host group may borrow again.
  clock.advance(2 * H + 1000);
  await d.service.reap();
  t.is(await why(ben.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), 'ok');
  // A renewal is judged by the same lines.
  t.regex(await why(kiosk.renew(c, kb.borrows.map((b) => b.id), 6)), /BORROW_HOURS 4 vray_render for host kiosk \(policy line 3\)/);
});

test('precedence: a feature with policy borrow lines is judged by them alone; other features by borrow.limits of the config, as before; policy.set changes it live', async (t) => {
  const { c, policy, borrower } = await setup(t, { borrow: { limits: { features: { vray_render: { maxSeats: 1 }, nuke_i: { maxHours: 2 } }, users: { alice: { maxSeats: 5, maxHours: 24 } } } } });
  const alice = borrower('alice', 'aa'.repeat(16));
  const bob = borrower('bob', 'bb'.repeat(16));
  // Before any policy line: the config's limits.
  t.is(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 10)), 'ok');
  t.regex(await why(bob.borrow(c, [{ feature: 'vray_render', count: 1 }], 10)), /limits.features.vray_render allows 1 borrowed seats/);
  // A policy line for vray_render: it decides for vray_render (2 seats, up to 100 h: alice's 24 h of the config no longer applies there)...
  await policy('BORROW_MAX 3 vray_render\nBORROW_HOURS 100 vray_render\n');
  t.is(await why(bob.borrow(c, [{ feature: 'vray_render', count: 1 }], 100)), 'ok');
  t.is(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 100)), 'ok', "the config's limits.users.alice no longer applies to vray_render");
  // ...and nuke_i, which it says nothing about, keeps the config's limits.
  t.regex(await why(bob.borrow(c, [{ feature: 'nuke_i', count: 1 }], 3)), /limits.features.nuke_i allows at most 2 h/);
  t.regex(await why(alice.borrow(c, [{ feature: 'vray_interface', count: 1 }], 25)), /limits.users.alice allows at most 24 h/);
  // A line for * takes every feature over.
  await policy('BORROW_HOURS 1 *\n');
  t.regex(await why(bob.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2)), /BORROW_HOURS 1 of all features for everyone \(policy line 1\) allows at most 1 h/);
  t.is(await why(bob.borrow(c, [{ feature: 'vray_render', count: 1 }], 1)), 'ok', 'the config limit of 1 seat on vray_render no longer applies');
  // No policy lines: the config's limits again.
  await policy('');
  t.regex(await why(bob.borrow(c, [{ feature: 'nuke_i', count: 1 }], 3)), /limits.features.nuke_i allows at most 2 h/);
});

test('the policy parser checks borrow lines and names the fix', (t) => {
  const bad = (text: string) => {
    try {
      parsePolicy(text);
      return 'ok';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.regex(bad('BORROW_HOURS 9000 vray_render'), /policy line 1: BORROW_HOURS needs a number of hours from 1 to 8760.*"9000" is not a number of hours from 1 to 8760/);
  t.regex(bad('BORROW_MAX two *'), /policy line 1: BORROW_MAX needs a count of seats.*the count must be a whole number, not "two"/);
  t.regex(bad('BORROW_MAX 2 vray_render GROUP'), /too few words/);
  t.regex(bad('BORROW_MAX 2 vray_render TEAM x'), /"TEAM" is not USER, GROUP, HOST or HOST_GROUP/);
  t.regex(bad('BORROW_MAX 2 * GROUP nobody'), /policy line 1: GROUP nobody is not defined/);
  const p = parsePolicy('GROUP g a\nborrow_max 2 * group g\nBORROW_HOURS 24 nuke_i');
  t.deepEqual(
    p.borrow.map((r) => [r.kind, r.n, r.feature, r.subject?.type ?? null, r.line]),
    [
      ['max', 2, '*', 'GROUP', 2],
      ['hours', 24, 'nuke_i', null, 3],
    ],
  );
});

test('a real licd with a policy file: licctl borrow is refused naming the line; SIGHUP reloads a changed file', async (t) => {
  t.timeout(120_000);
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  writeFileSync(join(dir, 'policy.txt'), '# borrowing\nBORROW_HOURS 24 vray_render USER alice\n');
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  t.teardown(() => d.child.kill('SIGKILL'));
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  const env = { LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice' };
  const refused = await run(['borrow', '--feature', 'vray_render', '--hours', '48', '--yes'], env);
  t.not(refused.code, 0);
  t.regex(refused.stdout + refused.stderr, /BORROW_HOURS 24 vray_render for user alice \(policy line 2\) allows at most 24 h/);
  // The admin raises the limit in the file and reloads licd: the same borrow goes through.
  writeFileSync(join(dir, 'policy.txt'), '# borrowing\nBORROW_HOURS 72 vray_render USER alice\n');
  d.child.kill('SIGHUP');
  await d.waitFor(/policy reloaded/, 20_000);
  const ok = await run(['borrow', '--feature', 'vray_render', '--hours', '48', '--yes'], env);
  t.is(ok.code, 0, ok.stdout + ok.stderr);
  t.regex(ok.stdout, /Licenses available offline until/);
});
