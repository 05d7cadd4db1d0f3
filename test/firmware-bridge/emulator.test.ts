import fs from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import nacl from 'tweetnacl';
import {
  COUNTER_DOMAIN,
  DongleError,
  DongleSession,
  EmulatedDongle,
  counterSignedMessage,
  dongleSignedBytes,
  isDeviceError,
  parseFault,
} from '../../firmware-bridge/index.ts';
import { memoryRig, nonce, patternBytes, tempDir } from './helpers.ts';

test('unplugged: the open session gets DONGLE_CLOSED, new connections are refused until plug()', async (t) => {
  const { dongle, session } = await memoryRig(t);
  await session.info();
  dongle.unplug();
  const error = await t.throwsAsync(session.info(), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_CLOSED');
  t.regex(error?.message ?? '', /plugged in/);
  t.is((await session.closed).code, 'DONGLE_CLOSED');
  const refused = t.throws(() => dongle.connectMemory(), { instanceOf: DongleError });
  t.is(refused?.code, 'DONGLE_TRANSPORT');

  dongle.plug();
  const again = new DongleSession(dongle.connectMemory());
  t.teardown(() => again.close());
  t.is((await again.info()).serial, dongle.serial);
});

test('unplugged while a request is in flight: DONGLE_CLOSED, not a hang', async (t) => {
  const { dongle, session } = await memoryRig(t, { faults: { slowMs: 10_000 } });
  const pending = session.sign('x', new Uint8Array(1));
  await new Promise((r) => setTimeout(r, 20));
  dongle.setFaults({ unplugged: true });
  t.is((await t.throwsAsync(pending, { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');
});

test('wrongSignature: signatures fail to verify against the public key INFO reports', async (t) => {
  const { dongle, session } = await memoryRig(t);
  const { publicKey } = await session.info();
  const message = Uint8Array.from([1, 2, 3]);
  dongle.setFaults({ wrongSignature: true });
  const bad = await session.sign('licd-test', message);
  t.false(nacl.sign.detached.verify(dongleSignedBytes('licd-test', message, true), bad, publicKey));
  const step = await session.counterIncrement(nonce(9));
  t.false(nacl.sign.detached.verify(dongleSignedBytes(COUNTER_DOMAIN, counterSignedMessage(step.counter, nonce(9)), true), step.signature, publicKey));

  dongle.setFaults({ wrongSignature: false });
  const good = await session.sign('licd-test', message);
  t.true(nacl.sign.detached.verify(dongleSignedBytes('licd-test', message, true), good, publicKey));
});

test('counterFailure: a device error, and the counter does not step', async (t) => {
  const dir = await tempDir(t);
  const statePath = path.join(dir, 'dongle.json');
  const { dongle, session } = await memoryRig(t, { statePath });
  await session.counterIncrement(nonce(1));
  dongle.setFaults({ counterFailure: true });
  const before = await fs.readFile(statePath, 'utf8');
  const error = await t.throwsAsync(session.counterIncrement(nonce(2)), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_DEVICE_ERROR');
  t.is(error?.deviceError, 'COUNTER_FAILURE');
  t.is(error?.deviceCode, 0x07);
  t.is(dongle.requestCounts.get('COUNTER_INCREMENT'), 2, 'not resent');
  t.is((await session.info()).counter, 1n);
  t.is(await fs.readFile(statePath, 'utf8'), before);

  dongle.setFaults({ counterFailure: false });
  t.is((await session.counterIncrement(nonce(3))).counter, 2n);
});

test('a state file that cannot be written: COUNTER_FAILURE and no step', async (t) => {
  const dir = await tempDir(t);
  const stateDir = path.join(dir, 'state');
  await fs.mkdir(stateDir);
  const { dongle, session } = await memoryRig(t, { statePath: path.join(stateDir, 'dongle.json') });
  await fs.rm(stateDir, { recursive: true });
  t.true(isDeviceError(await t.throwsAsync(session.counterIncrement(nonce(1))), 'COUNTER_FAILURE'));
  t.true(isDeviceError(await t.throwsAsync(session.writeSlot(0, Uint8Array.from([1]))), 'STORAGE_FAILURE'));
  t.is(dongle.counter, 0n);
  t.deepEqual(await session.readSlot(0), new Uint8Array(0));
});

test('the state file keeps counter, key, serial and slots across a restart', async (t) => {
  const dir = await tempDir(t);
  const statePath = path.join(dir, 'dongle.json');
  const entitlement = patternBytes(6000, 3);

  const first = await EmulatedDongle.open({ statePath, serial: 'EMU-PERSIST' });
  t.is((await fs.stat(statePath)).mode & 0o777, 0o600, 'the file holds the private seed');
  const s1 = new DongleSession(first.connectMemory());
  const info1 = await s1.info();
  for (let i = 0; i < 5; i++) await s1.counterIncrement(nonce(i));
  await s1.writeSlot(1, entitlement);
  await s1.close();
  await first.close();

  const second = await EmulatedDongle.open({ statePath });
  const s2 = new DongleSession(second.connectMemory());
  t.teardown(async () => {
    await s2.close();
    await second.close();
  });
  const info2 = await s2.info();
  t.is(info2.serial, 'EMU-PERSIST');
  t.is(info2.counter, 5n);
  t.deepEqual(info2.publicKey, info1.publicKey);
  t.deepEqual(await s2.readSlot(1), entitlement);
  t.is((await s2.counterIncrement(nonce(7))).counter, 6n);
  t.deepEqual(await fs.readdir(dir), ['dongle.json'], 'no temporary files left behind');
  const json = JSON.parse(await fs.readFile(statePath, 'utf8'));
  t.like(json, { format: 'licd-emulated-dongle-state', version: 1, serial: 'EMU-PERSIST', counter: '6' });
});

test('a state file of another dongle, or a broken one, is refused with a clear message', async (t) => {
  const dir = await tempDir(t);
  const statePath = path.join(dir, 'dongle.json');
  await (await EmulatedDongle.open({ statePath, serial: 'EMU-A' })).close();
  await t.throwsAsync(EmulatedDongle.open({ statePath, serial: 'EMU-B' }), { message: /belongs to dongle EMU-A/ });
  await fs.writeFile(statePath, '{"format":"licd-emulated-dongle-state","version":1,"serial":"x"');
  await t.throwsAsync(EmulatedDongle.open({ statePath }), { message: /unusable: not JSON/ });
});

test('without a state file the dongle lives in memory only', async (t) => {
  const a = await EmulatedDongle.open();
  const b = await EmulatedDongle.open();
  t.not(a.serial, b.serial);
  t.notDeepEqual(a.publicKey, b.publicKey);
  t.regex(a.serial, /^EMU-[0-9A-F]{8}$/);
  await a.close();
  await b.close();
});

test('a given seed gives the same key every time', async (t) => {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i);
  const a = await EmulatedDongle.open({ seed });
  t.is(Buffer.from(a.publicKey).toString('hex'), '03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8');
  await a.close();
});

test('slot writes: half-staged data is not visible, a commit replaces the slot at once', async (t) => {
  const { dongle, session } = await memoryRig(t);
  await session.writeSlot(0, Uint8Array.from([1, 2, 3]));
  // Stage without committing through the raw request API.
  const { slotWriteCodec } = await import('../../firmware-bridge/index.ts');
  await session.request(slotWriteCodec, { slot: 0, offset: 0, commit: false, data: Uint8Array.from([9, 9, 9, 9]) });
  t.deepEqual(await session.readSlot(0), Uint8Array.from([1, 2, 3]));
  // Resending the same chunk is harmless (the write is idempotent by offset).
  await session.request(slotWriteCodec, { slot: 0, offset: 0, commit: false, data: Uint8Array.from([9, 9, 9, 9]) });
  await session.request(slotWriteCodec, { slot: 0, offset: 4, commit: true, data: Uint8Array.from([8]) });
  await session.request(slotWriteCodec, { slot: 0, offset: 4, commit: true, data: Uint8Array.from([8]) });
  t.deepEqual(dongle.slotContent(0), Uint8Array.from([9, 9, 9, 9, 8]));
  const gap = await t.throwsAsync(session.request(slotWriteCodec, { slot: 0, offset: 9, commit: true, data: new Uint8Array(1) }));
  t.true(isDeviceError(gap, 'BAD_OFFSET'));
});

test('parseFault reads the CLI fault syntax', (t) => {
  t.deepEqual(parseFault('unplugged'), { unplugged: true });
  t.deepEqual(parseFault('wrong-signature'), { wrongSignature: true });
  t.deepEqual(parseFault('counterFailure=false'), { counterFailure: false });
  t.deepEqual(parseFault('slowMs=250'), { slowMs: 250 });
  t.deepEqual(parseFault('corruptFrames=3'), { corruptFrames: 3 });
  t.deepEqual(parseFault('corrupt-frames=25%'), { corruptFrames: { probability: 0.25 } });
  t.deepEqual(parseFault('corruptFrames=0.5'), { corruptFrames: { probability: 0.5 } });
  t.throws(() => parseFault('slowMs'), { message: /slowMs needs/ });
  t.throws(() => parseFault('meltdown'), { message: /unknown fault "meltdown"/ });
});

test('a frame of another protocol version is answered BAD_VERSION in a version-1 frame; responses are ignored', async (t) => {
  const { encodeFrame, FrameParser, frameToMessage } = await import('../../firmware-bridge/index.ts');
  const dongle = await EmulatedDongle.open();
  t.teardown(() => dongle.close());
  const transport = dongle.connectMemory();
  const parser = new FrameParser();
  const answers: unknown[] = [];
  transport.on('data', (chunk) => {
    for (const e of parser.push(chunk)) if (e.type === 'frame') answers.push({ version: e.frame.version, message: frameToMessage(e.frame) });
  });
  transport.write(encodeFrame({ version: 2, code: 0x01, requestId: 5, payload: new Uint8Array(0) }));
  transport.write(encodeFrame({ code: 0x81, requestId: 6, payload: new Uint8Array(0) })); // a response: ignored
  transport.write(encodeFrame({ code: 0x01, requestId: 7, payload: Uint8Array.from([1]) }));
  while (answers.length < 2) await new Promise((r) => setTimeout(r, 5));
  t.like(answers[0], { version: 1, message: { kind: 'error', command: 1, requestId: 5, error: { code: 0x03 } } });
  t.like(answers[1], { version: 1, message: { kind: 'response', command: 1, requestId: 7 } });
  await transport.close();
});
