import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { DongleError, DongleSession, parseEmulatorArgs } from '../../firmware-bridge/index.ts';
import { nonce, ptyPair, tempDir } from './helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliPath = path.join(root, 'firmware-bridge/cli.ts');

interface Running {
  child: ChildProcess;
  lines: AsyncIterator<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

function startCli(t: { teardown(fn: () => Promise<void> | void): void }, args: string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', cliPath, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
  });
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, lines, exit, stderr: () => stderr };
}

async function nextLine(run: Running): Promise<string> {
  const next = await run.lines.next();
  if (next.done) throw new Error(`emulator CLI ended without output; stderr: ${run.stderr()}`);
  return next.value;
}

const READY = /^licd dongle emulator serving (\S+) serial (\S+) public-key ([0-9a-f]{64}) state (.+)$/;

test('CLI over TCP: ready line, SIGUSR1 pulls and replugs, SIGTERM stops, the state file keeps the counter', async (t) => {
  const dir = await tempDir(t);
  const state = path.join(dir, 'dongle.json');
  const run = startCli(t, ['--tcp', '127.0.0.1:0', '--state', state, '--serial', 'EMU-CLI1']);
  const ready = READY.exec(await nextLine(run));
  t.truthy(ready, 'one ready line');
  const [, address, serial, publicKey = '', statePrinted] = ready!;
  t.is(serial, 'EMU-CLI1');
  t.is(statePrinted, state);
  const port = Number(/^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(address!)![1]);
  const spec = { kind: 'tcp', host: '127.0.0.1', port } as const;

  const session = await DongleSession.open(spec, { timeoutMs: 3000 });
  const info = await session.info();
  t.is(Buffer.from(info.publicKey).toString('hex'), publicKey);
  t.is((await session.counterIncrement(nonce(1))).counter, 1n);
  t.is((await session.counterIncrement(nonce(2))).counter, 2n);

  run.child.kill('SIGUSR1');
  t.is(await nextLine(run), 'licd dongle emulator EMU-CLI1 unplugged');
  t.is((await session.closed).code, 'DONGLE_CLOSED');
  const whilePulled = await DongleSession.open(spec, { retries: 0 });
  t.is((await t.throwsAsync(whilePulled.ping(), { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');

  run.child.kill('SIGUSR1');
  t.is(await nextLine(run), 'licd dongle emulator EMU-CLI1 plugged in');
  const replugged = await DongleSession.open(spec);
  t.is((await replugged.info()).counter, 2n);
  await replugged.close();

  run.child.kill('SIGTERM');
  t.deepEqual(await run.exit, { code: 0, signal: null });

  // A restart on the same state file is the same dongle with the same counter.
  const again = startCli(t, ['--tcp', '127.0.0.1:0', '--state', state]);
  const ready2 = READY.exec(await nextLine(again))!;
  t.is(ready2[2], 'EMU-CLI1');
  t.is(ready2[3], publicKey);
  const port2 = Number(/:(\d+)$/.exec(ready2[1]!)![1]);
  const s2 = await DongleSession.open({ kind: 'tcp', host: '127.0.0.1', port: port2 });
  t.is((await s2.info()).counter, 2n);
  t.is((await s2.counterIncrement(nonce(3))).counter, 3n);
  await s2.close();
  again.child.kill('SIGINT');
  t.deepEqual(await again.exit, { code: 0, signal: null });
});

test('CLI on a pty with a fault: serves serial, and the fault shows', async (t) => {
  const dir = await tempDir(t);
  const pty = await ptyPair(t, dir);
  const run = startCli(t, ['--pty', pty.device, '--fault', 'counter-failure']);
  const ready = READY.exec(await nextLine(run))!;
  t.is(ready[1], `serial:${pty.device}`);
  t.is(ready[4], '(memory)');
  const session = await DongleSession.open({ kind: 'serial', path: pty.host }, { timeoutMs: 3000 });
  t.teardown(() => session.close());
  t.is((await session.info()).serial, ready[2]!);
  const error = await t.throwsAsync(session.counterIncrement(nonce(1)), { instanceOf: DongleError });
  t.is(error?.deviceError, 'COUNTER_FAILURE');
  t.is((await session.info()).counter, 0n);
  run.child.kill('SIGTERM');
  t.deepEqual(await run.exit, { code: 0, signal: null });
});

test('CLI refuses bad arguments with exit code 2 and a usage line', async (t) => {
  const run = startCli(t, ['--tcp', 'nowhere']);
  t.deepEqual(await run.exit, { code: 2, signal: null });
  t.regex(run.stderr(), /--tcp wants HOST:PORT/);
});

test('parseEmulatorArgs', (t) => {
  t.deepEqual(parseEmulatorArgs(['--tcp', '127.0.0.1:7321', '--fault', 'slowMs=20', '--fault=corruptFrames=10%', '--state=/x.json']), {
    faults: { slowMs: 20, corruptFrames: { probability: 0.1 } },
    tcp: { host: '127.0.0.1', port: 7321 },
    statePath: '/x.json',
  });
  t.deepEqual(parseEmulatorArgs(['--tcp', '[::1]:0']).tcp, { host: '::1', port: 0 });
  t.throws(() => parseEmulatorArgs([]), { message: /exactly one of --tcp, --pty and --hidg/ });
  t.throws(() => parseEmulatorArgs(['--tcp', 'a:1', '--pty', '/dev/x']), { message: /exactly one/ });
  t.throws(() => parseEmulatorArgs(['--pty', '/dev/x', '--bogus']), { message: /unknown argument "--bogus"/ });
  t.throws(() => parseEmulatorArgs(['--pty']), { message: /--pty needs a value/ });
});
