/**
 * Issue 11, finding 5: licctl's command line as a user meets it. Each subcommand takes only its own
 * options (strictly), connection and global flags are taken anywhere on the line, every command has
 * `--help` and `licctl help CMD` with an example, `--version` answers, and `--json` prints JSON on
 * every command that reads or changes something (errors included). Through the real licctl binary.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandHelp } from '../../src/cli/command.ts';
import { COMMANDS } from '../../src/cli/licctl.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, licctl, ROOT, run } from '../helpers/procs.ts';

test.after.always(killAll);

const UNREACHABLE = { LICD_BROKER: 'mqtt://127.0.0.1:1', LICD_HOME: '/nonexistent-licd-home' };

test('options a subcommand does not take are refused, naming the option, and nothing is done', async (t) => {
  const r = await run(['tokens', '--hours', '3', '--yes', '--dongle-key', 'zz'], UNREACHABLE);
  t.is(r.code, 64, r.stdout + r.stderr);
  t.regex(r.stderr, /tokens: unknown option --hours; licctl tokens --help lists its options/);
  t.is(r.stdout, '');
  const v = await run(['vendor', 'keygen', '--out', '/tmp/never-written.key', '--broker', 'mqtt://x:1']);
  t.is(v.code, 64);
  t.regex(v.stderr, /unknown option --broker \(vendor keygen does not talk to the server\)/);
  const miss = await run(['status', '--limit'], UNREACHABLE);
  t.is(miss.code, 64);
  t.regex(miss.stderr, /--limit needs a value \(N\)/);
  const swallowed = await run(['borrow', 'request', '--hours', '--out', 'x.json'], UNREACHABLE);
  t.is(swallowed.code, 64);
  t.regex(swallowed.stderr, /--hours needs a value \(H\), got the option --out/);
  const extra = await run(['watch', 'vray_render'], UNREACHABLE);
  t.is(extra.code, 64);
  t.regex(extra.stderr, /unexpected argument "vray_render" \(watch takes none\)/);
  const sub = await run(['borrow', 'lots'], UNREACHABLE);
  t.is(sub.code, 64);
  t.regex(sub.stderr, /unknown subcommand "borrow lots": borrow takes borrow request, borrow import/);
  const needs = await run(['vendor', 'issue', '--out', '/tmp/x.lic']);
  t.is(needs.code, 64);
  t.regex(needs.stderr, /vendor issue needs --key/);
});

test('--help, -h and help CMD print the help of every command with an example, exit 0 and never connect', async (t) => {
  t.timeout(120_000);
  // Every command's help (what `licctl help CMD` and `CMD --help` print) has its usage and an example.
  for (const c of COMMANDS) {
    const h = commandHelp(c);
    t.true(h.includes(`usage: licctl ${c.path}`), `licctl help ${c.path} shows its usage`);
    t.regex(h, /Example/, `licctl help ${c.path} has an example`);
  }
  // Through the binary, a few of them by each way of asking.
  for (const path of ['borrow request', 'trust remove', 'vendor issue']) {
    const r = await run(['help', ...path.split(' ')], UNREACHABLE);
    t.is(r.code, 0, `licctl help ${path}: ${r.stderr}`);
    t.true(r.stdout.includes(`usage: licctl ${path}`));
  }
  for (const argv of [['status', '--help'], ['status', '-h'], ['--broker', 'mqtt://127.0.0.1:1', 'checkout', 'x', '-h'], ['lease', 'revoke', '--help']]) {
    const r = await run(argv, UNREACHABLE);
    t.is(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /^licctl \w+/);
    t.notRegex(r.stderr, /TIMEOUT|cannot reach/, 'help does not connect');
  }
  const group = await run(['vendor', '--help']);
  t.is(group.code, 0);
  t.regex(group.stdout, /licctl vendor keygen[\s\S]*licctl vendor issue[\s\S]*licctl vendor release-quarantine/);
  const top = await run(['--help']);
  t.is(top.code, 0);
  for (const c of COMMANDS) t.true(top.stdout.includes(`licctl ${c.path}`), `licctl --help lists ${c.path}`);
  t.regex(top.stdout, /--vendor-key HEX\|FILE[\s\S]*LICD_VENDOR_KEY/, 'the vendor key option and its variable are in the help');
  t.regex(top.stdout, /Exit codes: 0 ok/);
  const emu = await run(['dongle', 'emulate', '--help']);
  t.is(emu.code, 0);
  t.regex(emu.stdout, /SIGUSR1 +pull the dongle out/);
});

test('--version prints the version, wherever it is given', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const argv of [['--version'], ['version'], ['status', '--version']]) {
    const r = await run(argv, UNREACHABLE);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), `licctl ${pkg.version}`);
  }
});

test('global and connection flags work before the command; --json covers watch, checkin, run, checkout, dongle info and errors', async (t) => {
  t.timeout(120_000);
  const s = await devDaemonProcess(t, { LICD_USER: 'flags' });
  const env = { ...s.env, LICD_BROKER: 'mqtt://127.0.0.1:1' };

  // The broker given before the command word.
  const st = await run(['--broker', s.url, '--json', 'status', 'nuke_i'], env);
  t.is(st.code, 0, st.stderr);
  t.is((JSON.parse(st.stdout) as { features: Array<{ feature: string }> }).features.find((f) => f.feature === 'nuke_i')?.feature, 'nuke_i');

  // watch --json: one JSON object per line, each with its time.
  const w = licctl(['watch', '--json', '--broker', s.url], env);
  const line = (await w.waitFor(/^\{.*"type":"availability".*\}$/m, 30_000))[0];
  const ev = JSON.parse(line) as { time: string; type: string; availability: { feature: string } };
  t.true(Number.isFinite(Date.parse(ev.time)));
  t.truthy(ev.availability.feature);
  w.child.kill('SIGINT');
  t.is((await w.exited).code, 0);

  // checkout --json: events as JSON lines; checkin --json: one object.
  const co = licctl(['checkout', 'nuke_i', '--json', '--broker', s.url], env);
  const granted = JSON.parse((await co.waitFor(/^\{"event":"granted".*\}$/m, 30_000))[0]) as { lease: { id: string; feature: string } };
  t.is(granted.lease.feature, 'nuke_i');
  await co.waitFor(/"event":"holding"/);
  const ci = await run(['checkin', '--json', '--broker', s.url], env);
  t.is(ci.code, 0, ci.stderr);
  const ciJson = JSON.parse(ci.stdout) as { signalled: unknown[] };
  t.is(ciJson.signalled.length, 1);
  t.is((await co.exited).code, 0);
  t.regex(co.stdout(), /"event":"checkedIn"/);

  // run --json: stdout is the command's; licctl's reports are JSON lines on stderr.
  const r = await run(['run', 'nuke_i', '--json', '--broker', s.url, '--', process.execPath, '-e', 'console.log("rendered")'], env);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'rendered');
  const events = r.stderr.trim().split("\n").map((l: string) => JSON.parse(l) as { event: string; code?: number });
  t.deepEqual(events.map((e) => e.event), ['granted', 'checkedIn', 'exit']);
  t.is(events.at(-1)!.code, 0);

  // An error under --json is one JSON object on stderr, with its code and exit code.
  const e = await run(['status', '--json', '--timeout', '500'], { ...env, LICD_BROKER: 'mqtt://127.0.0.1:1' });
  t.is(e.code, 4);
  const err = JSON.parse(e.stderr) as { error: { code: string; message: string; exit: number } };
  t.is(err.error.code, 'TIMEOUT');
  t.is(err.error.exit, 4);
  t.regex(err.error.message, /127\.0\.0\.1:1/);
  const u = await run(['status', '--json', '--bogus'], env);
  t.is(u.code, 64);
  t.is((JSON.parse(u.stderr) as { error: { code: string } }).error.code, 'USAGE');
});

test('dongle info --json prints the dongle as one object', async (t) => {
  t.timeout(60_000);
  const emu = licctl(['dongle', 'emulate', '--tcp', '127.0.0.1:0']);
  const m = await emu.waitFor(/serving tcp:\/\/([\d.]+:\d+) serial (\S+)/, 30_000);
  const r = await run(['dongle', 'info', '--json', '--dongle', `tcp:${m[1]}`]);
  emu.child.kill('SIGTERM');
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { serial: string; publicKey: string; counter: string; emulated: boolean };
  t.is(info.serial, m[2]!);
  t.regex(info.publicKey, /^[0-9a-f]{64}$/);
  t.true(info.emulated);
});
