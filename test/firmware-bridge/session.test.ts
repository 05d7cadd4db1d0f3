import test from 'ava';
import nacl from 'tweetnacl';
import {
  COUNTER_DOMAIN,
  CommandCode,
  DeviceErrorCode,
  DeviceFailure,
  DongleError,
  DongleSession,
  counterSignedMessage,
  dongleSignedBytes,
  isDeviceError,
  isDongleError,
  openTransport,
  signCodec,
  slotReadCodec,
} from '../../firmware-bridge/index.ts';
import { memoryRig, nonce, patternBytes } from './helpers.ts';

test('INFO describes the emulated dongle', async (t) => {
  const { dongle, session } = await memoryRig(t, { serial: 'EMU-INFO1' });
  const info = await session.info();
  t.like(info, { protocolVersion: 1, flags: 1, serial: 'EMU-INFO1', counter: 0n, slotCount: 4, slotSize: 8192, maxPayload: 1024 });
  t.deepEqual(info.publicKey, dongle.publicKey);
  t.regex(info.firmwareVersion, /emulator/);
});

test('an emulated signature has class E: it verifies over (..., true) and not over (..., false)', async (t) => {
  const { session } = await memoryRig(t);
  const info = await session.info();
  const message = new TextEncoder().encode('session key 1234');
  const signature = await session.sign('licd-delegation-v1', message);
  t.is(signature.length, 64);
  // tweetnacl: an implementation independent of the node:crypto the emulator signs with.
  t.true(nacl.sign.detached.verify(dongleSignedBytes('licd-delegation-v1', message, true), signature, info.publicKey));
  t.false(nacl.sign.detached.verify(dongleSignedBytes('licd-delegation-v1', message, false), signature, info.publicKey));
});

test('PING echoes, up to the maximum payload', async (t) => {
  const { session } = await memoryRig(t, {}, {}, 5);
  t.deepEqual(await session.ping(Uint8Array.from([1, 2, 3])), Uint8Array.from([1, 2, 3]));
  t.deepEqual(await session.ping(), new Uint8Array(0));
  const big = patternBytes(1024);
  t.deepEqual(await session.ping(big), big);
  await t.throwsAsync(session.ping(new Uint8Array(1025)), { instanceOf: DongleError, message: /1025/ });
});

test('counterIncrement steps by one and signs value || nonce under domain "counter"', async (t) => {
  const { session } = await memoryRig(t);
  const { publicKey } = await session.info();
  const first = await session.counterIncrement(nonce(0xaa));
  const second = await session.counterIncrement(nonce(0xbb));
  t.is(first.counter, 1n);
  t.is(second.counter, 2n);
  t.true(nacl.sign.detached.verify(dongleSignedBytes(COUNTER_DOMAIN, counterSignedMessage(2n, nonce(0xbb)), true), second.signature, publicKey));
  t.is((await session.info()).counter, 2n);
  await t.throwsAsync(session.counterIncrement(new Uint8Array(15)), { instanceOf: DongleError, message: /16 bytes/ });
});

test('writeSlot and readSlot move a whole 8 KiB slot in chunks', async (t) => {
  const { dongle, session } = await memoryRig(t, {}, { chunkSize: 700 }, 61);
  const data = patternBytes(8192, 7);
  await session.writeSlot(2, data);
  t.deepEqual(dongle.slotContent(2), data);
  t.deepEqual(await session.readSlot(2), data);
  t.deepEqual(await session.readSlot(0), new Uint8Array(0));
  await session.writeSlot(2, Uint8Array.from([9]));
  t.deepEqual(await session.readSlot(2), Uint8Array.from([9]));
  await session.writeSlot(2, new Uint8Array(0));
  t.deepEqual(await session.readSlot(2), new Uint8Array(0));
  t.is(dongle.requestCounts.get('SLOT_WRITE'), 12 + 1 + 1);
});

test('device errors are mapped: bad slot, too much data, bad domain', async (t) => {
  const { session } = await memoryRig(t);
  const badSlot = await t.throwsAsync(session.readSlot(4), { instanceOf: DongleError });
  t.is(badSlot?.code, 'DONGLE_DEVICE_ERROR');
  t.is(badSlot?.deviceCode, DeviceErrorCode.BAD_SLOT);
  t.is(badSlot?.deviceError, 'BAD_SLOT');
  t.regex(badSlot?.message ?? '', /slots 0\.\.3/);
  t.true(isDeviceError(await t.throwsAsync(session.writeSlot(0, new Uint8Array(8193))), 'BAD_OFFSET'));
  // The session refuses a reserved domain itself; sent raw, the dongle refuses it too.
  t.true(isDongleError(await t.throwsAsync(session.sign('counter', new Uint8Array(8))), 'DONGLE_BAD_ARGUMENT'));
  const raw = await t.throwsAsync(session.request(signCodec, { domain: 'counter', message: new Uint8Array(24) }));
  t.true(isDeviceError(raw, 'BAD_DOMAIN'));
  t.true(isDeviceError(await t.throwsAsync(session.request(slotReadCodec, { slot: 0, offset: 1, length: 1 })), 'BAD_OFFSET'));
});

test('requests queue: one in flight, answers matched to callers in order', async (t) => {
  const { session } = await memoryRig(t, { faults: { slowMs: 5 } }, {}, 3);
  const pings = Array.from({ length: 20 }, (_, i) => session.ping(Uint8Array.from([i])));
  const signs = Array.from({ length: 5 }, (_, i) => session.sign('order', Uint8Array.from([i])));
  const results = await Promise.all(pings);
  results.forEach((r, i) => t.deepEqual(r, Uint8Array.from([i])));
  t.is(new Set((await Promise.all(signs)).map((s) => Buffer.from(s).toString('hex'))).size, 5);
});

test('a slow dongle: the retry is sent, and the late answer to the first attempt is accepted', async (t) => {
  const { dongle, session } = await memoryRig(t, { faults: { slowMs: 300 } }, { timeoutMs: 200, retries: 2 });
  const info = await session.info();
  t.is(info.counter, 0n);
  t.true((dongle.requestCounts.get('INFO') ?? 0) >= 2, 'the session resent INFO after its timeout');
  t.true(session.stats.resends >= 1);
});

test('no answer at all: DONGLE_TIMEOUT after every attempt', async (t) => {
  const { dongle, session } = await memoryRig(t, { faults: { slowMs: 60_000 } }, { timeoutMs: 100, retries: 2 });
  const error = await t.throwsAsync(session.ping(Uint8Array.from([1])), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_TIMEOUT');
  t.is(error?.attempts, 3);
  t.regex(error?.message ?? '', /no answer from the dongle .* 3 attempts/);
  t.is(dongle.requestCounts.get('PING'), 3);
});

test('a corrupt answer is dropped and reported, and the request resent at once', async (t) => {
  const { dongle, session } = await memoryRig(t, { faults: { corruptFrames: 2 } }, { timeoutMs: 5000, retries: 2 });
  const frameErrors: unknown[] = [];
  session.on('frameError', (e) => frameErrors.push(e));
  const signature = await session.sign('retry', Uint8Array.from([1]));
  t.is(signature.length, 64);
  t.is(dongle.requestCounts.get('SIGN'), 3);
  t.is(frameErrors.length, 2);
  t.is(session.stats.badCrc + session.stats.badHeader, 2);
});

test('answers corrupt every time: DONGLE_CRC', async (t) => {
  const { session } = await memoryRig(t, { faults: { corruptFrames: { probability: 1 } } }, { timeoutMs: 5000, retries: 1 });
  const error = await t.throwsAsync(session.readSlot(0), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_CRC');
  t.is(error?.attempts, 2);
});

test('COUNTER_INCREMENT is never resent after a corrupt answer: DONGLE_COUNTER_UNCERTAIN, stepped once', async (t) => {
  const { dongle, session } = await memoryRig(t, {}, { timeoutMs: 300, retries: 3 });
  dongle.setFaults({ corruptFrames: 1 });
  const error = await t.throwsAsync(session.counterIncrement(nonce(1)), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_COUNTER_UNCERTAIN');
  t.is((error?.cause as DongleError).code, 'DONGLE_CRC');
  t.regex(error?.message ?? '', /not resent/);
  t.is(dongle.requestCounts.get('COUNTER_INCREMENT'), 1);
  t.is((await session.info()).counter, 1n, 'the dongle stepped exactly once');
});

test('COUNTER_INCREMENT is never resent after a timeout either', async (t) => {
  const { dongle, session } = await memoryRig(t, {}, { timeoutMs: 100, counterTimeoutMs: 150, retries: 3 });
  dongle.setFaults({ slowMs: 400 });
  const error = await t.throwsAsync(session.counterIncrement(nonce(2)), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_COUNTER_UNCERTAIN');
  t.is((error?.cause as DongleError).code, 'DONGLE_TIMEOUT');
  dongle.setFaults({ slowMs: 0 });
  t.is((await session.info()).counter, 1n);
  t.is(dongle.requestCounts.get('COUNTER_INCREMENT'), 1);
});

test('BUSY means "not executed": resent after a pause, even COUNTER_INCREMENT', async (t) => {
  const { dongle, session } = await memoryRig(t, {}, { retries: 2, busyDelayMs: 1 });
  const original = dongle.getBehaviour(CommandCode.COUNTER_INCREMENT)!;
  let busy = 2;
  dongle.setBehaviour(CommandCode.COUNTER_INCREMENT, (payload, ctx) => {
    if (busy-- > 0) throw new DeviceFailure(DeviceErrorCode.BUSY, 'flash erase in progress');
    return original(payload, ctx);
  });
  t.is((await session.counterIncrement(nonce(3))).counter, 1n);
  t.is(dongle.requestCounts.get('COUNTER_INCREMENT'), 3);

  busy = 10;
  const error = await t.throwsAsync(session.counterIncrement(nonce(4)));
  t.true(isDeviceError(error, 'BUSY'));
  t.regex(error?.message ?? '', /flash erase in progress/);
  dongle.setBehaviour(CommandCode.COUNTER_INCREMENT, undefined);
  t.is((await session.counterIncrement(nonce(5))).counter, 2n);
});

test('an unknown command is answered BAD_COMMAND', async (t) => {
  const { session } = await memoryRig(t);
  const bogus = { ...signCodec, code: 0x3f as never, name: 'SIGN' as const };
  const error = await t.throwsAsync(session.request(bogus, { domain: 'x', message: new Uint8Array(0) }));
  t.true(isDeviceError(error, 'BAD_COMMAND'));
});

test('close() fails the request in flight and the queued ones with DONGLE_CLOSED', async (t) => {
  const { session } = await memoryRig(t, { faults: { slowMs: 10_000 } });
  const pending = [session.info(), session.ping(), session.sign('a', new Uint8Array(1))];
  await new Promise((r) => setTimeout(r, 20));
  await session.close();
  for (const p of pending) t.is((await t.throwsAsync(p, { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');
  t.is((await t.throwsAsync(session.info(), { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');
  t.false(session.isOpen);
});

test('the transport closing from the far side ends the session with a close event', async (t) => {
  const transport = await openTransport({ kind: 'memory' });
  const session = new DongleSession(transport, { timeoutMs: 10_000 });
  let closeEvents = 0;
  session.on('close', () => closeEvents++);
  const pending = session.ping(Uint8Array.from([1])); // nobody answers on the far side
  await transport.peer.close();
  const error = await session.closed;
  t.is(error.code, 'DONGLE_CLOSED');
  t.is((await t.throwsAsync(pending, { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');
  t.is(closeEvents, 1);
});

test('request ids wrap from 65535 to 1, never 0', async (t) => {
  const { session } = await memoryRig(t);
  (session as unknown as { lastId: number }).lastId = 0xfffe;
  const seen: number[] = [];
  const write = session.transport.write.bind(session.transport);
  session.transport.write = (bytes: Uint8Array) => {
    seen.push((bytes[4]! << 8) | bytes[5]!);
    write(bytes);
  };
  for (let i = 0; i < 3; i++) await session.ping();
  t.deepEqual(seen, [0xffff, 1, 2]);
});

test('the link closing while COUNTER_INCREMENT waits: uncertain; a queued one that was never sent: DONGLE_CLOSED', async (t) => {
  const { dongle, session } = await memoryRig(t, { faults: { slowMs: 10_000 } });
  const inFlight = session.counterIncrement(nonce(1));
  const queued = session.counterIncrement(nonce(2));
  while ((dongle.requestCounts.get('COUNTER_INCREMENT') ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
  dongle.unplug();
  const uncertain = await t.throwsAsync(inFlight, { instanceOf: DongleError });
  t.is(uncertain?.code, 'DONGLE_COUNTER_UNCERTAIN');
  t.is((uncertain?.cause as DongleError).code, 'DONGLE_CLOSED');
  t.is((await t.throwsAsync(queued, { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');
  t.is(dongle.requestCounts.get('COUNTER_INCREMENT'), 1);
});
