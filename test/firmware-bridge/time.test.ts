/** TIME (0x07): the wire layout, the emulator's battery-backed clock, and dongles without one. */
import test from 'ava';
import nacl from 'tweetnacl';
import path from 'node:path';
import { DongleSession, EmulatedDongle, TIME_DOMAIN, parseEmulatorArgs, dongleSignedBytes, encodeRequestFrame, isDeviceError, timeCodec, timeSignedMessage, toHex } from '../../firmware-bridge/index.ts';
import { memoryRig, nonce, tempDir } from './helpers.ts';

test('TIME wire fixture: request frame and response layout', (t) => {
  const n = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i);
  t.is(toHex(timeCodec.encodeRequest({ nonce: n })), 'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
  const frame = encodeRequestFrame(0x07, 3, timeCodec.encodeRequest({ nonce: n }));
  t.is(toHex(frame.subarray(0, 8)), 'a55a010700030010', 'sync, version 1, code 0x07, request id 3, length 16');
  const res = timeCodec.encodeResponse({ ms: 1_795_000_000_000n, signature: new Uint8Array(64).fill(9) });
  t.is(toHex(res.subarray(0, 8)), '000001a1ee565e00', 'u64 big-endian milliseconds');
  t.is(res.length, 72);
  t.is(toHex(timeSignedMessage(1n, n)), '0000000000000001f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
});

test('the emulator with a clock answers its time, signed under dongle:time with the nonce', async (t) => {
  let host = Date.parse('2026-06-01T12:00:00Z');
  const { dongle, session } = await memoryRig(t, { clock: { offsetMs: -5000 }, hostTime: () => host });
  const r = await session.time(nonce(7));
  t.is(Number(r.ms), host - 5000);
  t.true(nacl.sign.detached.verify(dongleSignedBytes(TIME_DOMAIN, timeSignedMessage(r.ms, nonce(7)), true), r.signature, dongle.publicKey));
  t.false(nacl.sign.detached.verify(dongleSignedBytes(TIME_DOMAIN, timeSignedMessage(r.ms, nonce(8)), true), r.signature, dongle.publicKey), 'bound to the nonce');
  host += 60_000;
  t.is(Number((await session.time(nonce(1))).ms), host - 5000);
  // SIGN cannot forge a time: the domain is reserved.
  await t.throwsAsync(session.sign(TIME_DOMAIN, new Uint8Array(24)));
});

test('TIME example of PROTOCOL.md: the emulator with seed 00..1f signs the documented bytes', async (t) => {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i);
  const { session } = await memoryRig(t, { seed, clock: { offsetMs: 0 }, hostTime: () => 1_795_000_000_000 });
  const r = await session.time(Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i));
  t.is(r.ms, 1_795_000_000_000n);
  t.is(
    toHex(r.signature),
    'b1ed852c119dcae8d0aea43b78044efb38098113ed9820a8f52eb09775bf588ce782465227bb8776b61f6a2ac43d3466840926858510f641444c2adf2b3b7903',
  );
  t.is(
    toHex(dongleSignedBytes(TIME_DOMAIN, timeSignedMessage(r.ms, Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i)), true)),
    '6c6963642d646f6e676c652d7369672d7631' + '00' + '45' + '0b' + '646f6e676c653a74696d65' + '000001a1ee565e00' + 'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff',
  );
  t.is(toHex(encodeRequestFrame(0x07, 4, timeCodec.encodeRequest({ nonce: Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i) }))), 'a55a010700040010e295f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff3c93');
});

test('a dongle without a clock answers BAD_COMMAND', async (t) => {
  const { session } = await memoryRig(t);
  const e = await t.throwsAsync(session.time(nonce(1)));
  t.true(isDeviceError(e, 'BAD_COMMAND'), String(e));
});

test("the emulator's clock is kept in its state file and can be set", async (t) => {
  const dir = await tempDir(t);
  const statePath = path.join(dir, 'dongle.json');
  const d1 = await EmulatedDongle.open({ statePath, clock: {} });
  await d1.setClock(Date.now() + 3_600_000);
  await d1.close();
  const d2 = await EmulatedDongle.open({ statePath });
  const s = new DongleSession(d2.connectMemory(), { timeoutMs: 1000 });
  t.teardown(async () => {
    await s.close();
    await d2.close();
  });
  const ms = Number((await s.time(nonce(2))).ms);
  t.true(Math.abs(ms - (Date.now() + 3_600_000)) < 5000);
  await d2.setClock(null);
  t.true(isDeviceError(await t.throwsAsync(s.time(nonce(3))), 'BAD_COMMAND'));
});

test('the emulator CLI takes --clock with an optional offset and refuses a bad one', (t) => {
  t.deepEqual(parseEmulatorArgs(['--tcp', '127.0.0.1:0', '--clock']).clock, {});
  t.deepEqual(parseEmulatorArgs(['--tcp', '127.0.0.1:0', '--clock=-60000']).clock, { offsetMs: -60000 });
  t.is(parseEmulatorArgs(['--tcp', '127.0.0.1:0']).clock, undefined);
  t.throws(() => parseEmulatorArgs(['--tcp', '127.0.0.1:0', '--clock=soon']), { message: /--clock wants an offset in whole milliseconds/ });
});
