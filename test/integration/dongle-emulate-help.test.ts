/**
 * `licctl dongle emulate --help` as a user runs it (a real licctl process): it exits 0, prints
 * the whole help on stdout (not an error on stderr), and says what SIGUSR1 does, which is the only
 * way to pull the emulated dongle and plug it back. Then the signal does what the help says.
 */
import test from 'ava';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(killAll);

for (const flag of ['--help', '-h']) {
  test(`licctl dongle emulate ${flag} exits 0 and documents the pull/replug signal`, async (t) => {
    // It returns at all (a serving emulator runs until a signal), with 0.
    const r = await run(['dongle', 'emulate', flag]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stderr, '');
    t.regex(r.stdout, /usage: licctl dongle emulate/);
    for (const option of ['--tcp', '--pty', '--state', '--serial', '--fault', '--clock']) t.true(r.stdout.includes(option), `help names ${option}`);
    t.regex(r.stdout, /SIGUSR1\s+pull the dongle out; the next SIGUSR1 plugs it back in/);
    t.regex(r.stdout, /SIGINT, SIGTERM\s+stop/);
    t.regex(r.stdout, /kill -USR1/, 'an example of sending the signal');
  });
}

test('the signal the help names pulls the emulated dongle and plugs it back', async (t) => {
  const p = licctl(['dongle', 'emulate', '--tcp', '127.0.0.1:0']);
  const [, serial] = (await p.waitFor(/serving tcp:\/\/127\.0\.0\.1:\d+ serial (\S+)/)) as RegExpMatchArray;
  p.child.kill('SIGUSR1');
  await p.waitFor(new RegExp(`${serial} unplugged`));
  p.child.kill('SIGUSR1');
  await p.waitFor(new RegExp(`${serial} plugged in`));
  p.child.kill('SIGTERM');
  t.deepEqual(await p.exited, { code: 0, signal: null });
});

test('a wrong argument still fails with a usage line that points at --help', async (t) => {
  const r = await run(['dongle', 'emulate', '--bogus']);
  t.not(r.code, 0);
  t.regex(r.stderr, /unknown argument "--bogus"/);
  t.regex(r.stderr, /licctl dongle emulate --help/);
});
