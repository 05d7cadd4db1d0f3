/**
 * The serial transport through a real pseudo-terminal pair made by socat: the emulator opens one
 * end with serialport, a DongleSession the other.
 */
import path from 'node:path';
import test from 'ava';
import nacl from 'tweetnacl';
import { DongleError, DongleSession, EmulatedDongle, dongleSignedBytes, type ServeHandle } from '../../firmware-bridge/index.ts';
import { nonce, patternBytes, ptyPair, tempDir } from './helpers.ts';

test.serial('a session over a real pty pair, end to end, then the dongle goes silent when unplugged', async (t) => {
  const dir = await tempDir(t);
  const pty = await ptyPair(t, dir);
  const dongle = await EmulatedDongle.open({ serial: 'EMU-PTY', statePath: path.join(dir, 'state.json') });
  t.teardown(() => dongle.close());
  const served: ServeHandle = await dongle.serveSerial(pty.device);
  t.is(served.address, `serial:${pty.device}`);

  const session = await DongleSession.open({ kind: 'serial', path: pty.host, baudRate: 115200 }, { timeoutMs: 1500, retries: 1 });
  t.teardown(() => session.close());
  t.is(session.transport.kind, 'serial');

  const info = await session.info();
  t.is(info.serial, 'EMU-PTY');
  t.is(info.flags & 1, 1);
  const message = patternBytes(1022); // the largest message a 1-byte domain leaves room for
  const signature = await session.sign('p', message);
  t.true(nacl.sign.detached.verify(dongleSignedBytes('p', message, true), signature, info.publicKey));
  t.deepEqual(await session.ping(patternBytes(1024)), patternBytes(1024));
  const slot = patternBytes(8192, 11);
  await session.writeSlot(0, slot);
  t.deepEqual(await session.readSlot(0), slot);
  t.is((await session.counterIncrement(nonce(1))).counter, 1n);

  // A serial dongle that is pulled cannot close the host's line; it goes silent.
  dongle.unplug();
  const error = await t.throwsAsync(session.info(), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_TIMEOUT');
  dongle.plug();
  t.is((await session.info()).counter, 1n);
});

test.serial('the serial line going away (socat killed): the next request fails with DONGLE_CLOSED', async (t) => {
  const dir = await tempDir(t);
  const pty = await ptyPair(t, dir);
  const session = await DongleSession.open({ kind: 'serial', path: pty.host }, { timeoutMs: 2000, retries: 0 });
  t.teardown(() => session.close());
  const exited = new Promise((resolve) => pty.socat.once('exit', resolve));
  pty.socat.kill('SIGTERM');
  await exited;
  // serialport's poller does not always see a pty hangup by itself (it depends on when the line
  // was opened); the next write always does. Either way the caller gets DONGLE_CLOSED.
  const error = await t.throwsAsync(session.ping(Uint8Array.from([1])), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_CLOSED');
  t.is((await session.closed).code, 'DONGLE_CLOSED');
});

test.serial('a serial path that does not exist gives DONGLE_TRANSPORT naming the path', async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, 'no-such-tty');
  const error = await t.throwsAsync(DongleSession.open({ kind: 'serial', path: missing }), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_TRANSPORT');
  t.true(error?.message.includes(missing));
});
