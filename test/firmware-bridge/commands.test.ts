import test from 'ava';
import {
  CommandCode,
  type Frame,
  type ParserEvent,
  DecodeError,
  DeviceErrorCode,
  commandCodecs,
  counterIncrementCodec,
  decodeErrorPayload,
  encodeErrorFrame,
  encodeErrorPayload,
  encodeRequestFrame,
  encodeResponseFrame,
  FrameParser,
  frameToMessage,
  fromHex,
  infoCodec,
  isEmulated,
  pingCodec,
  signCodec,
  slotReadCodec,
  slotWriteCodec,
  toHex,
  type AnyCommandCodec,
  type DongleInfo,
} from '../../firmware-bridge/index.ts';

function frameOf(event: ParserEvent | undefined): Frame {
  if (event?.type !== 'frame') throw new Error(`expected a frame, got ${JSON.stringify(event)}`);
  return event.frame;
}

const info: DongleInfo = {
  protocolVersion: 1,
  flags: 0x01,
  publicKey: Uint8Array.from({ length: 32 }, (_, i) => i),
  counter: 0x0102030405060708n,
  slotCount: 4,
  slotSize: 8192,
  maxPayload: 1024,
  serial: 'EMU-0001',
  firmwareVersion: 'licd-emulator/1.0.0',
};

/** One sample request and response per command; every command in the Map must have one. */
const samples: Record<string, { request: unknown; response: unknown }> = {
  PING: { request: { data: fromHex('00 01 fe ff') }, response: { data: fromHex('00 01 fe ff') } },
  INFO: { request: {}, response: info },
  SIGN: {
    request: { domain: 'licd-delegation-v1', message: fromHex('de ad be ef') },
    response: { signature: Uint8Array.from({ length: 64 }, (_, i) => 255 - i) },
  },
  COUNTER_INCREMENT: {
    request: { nonce: Uint8Array.from({ length: 16 }, (_, i) => i + 0xa0) },
    response: { counter: 0xffff_ffff_ffff_fffen, signature: new Uint8Array(64).fill(7) },
  },
  SLOT_READ: { request: { slot: 3, offset: 8000, length: 512 }, response: { total: 8192, data: fromHex('01 02 03') } },
  SLOT_WRITE: {
    request: { slot: 1, offset: 512, commit: true, data: fromHex('aa bb') },
    response: { staged: 514, committed: true },
  },
  TIME: {
    request: { nonce: Uint8Array.from({ length: 16 }, (_, i) => i + 0xf0) },
    response: { ms: 1_795_000_000_000n, signature: new Uint8Array(64).fill(9) },
  },
};

test('the codec map holds one codec per command code', (t) => {
  t.deepEqual([...commandCodecs.keys()].sort(), Object.values(CommandCode).sort());
  for (const [code, codec] of commandCodecs) t.is(codec.code as number, code);
  t.deepEqual(Object.keys(samples).sort(), [...commandCodecs.values()].map((c) => c.name).sort());
});

for (const codec of commandCodecs.values() as Iterable<AnyCommandCodec>) {
  test(`${codec.name} request and response round-trip through bytes and frames`, (t) => {
    const sample = samples[codec.name]!;
    const reqPayload = codec.encodeRequest(sample.request);
    t.deepEqual(codec.decodeRequest(reqPayload), sample.request);
    const resPayload = codec.encodeResponse(sample.response);
    t.deepEqual(codec.decodeResponse(resPayload), sample.response);

    // And through the frame and message layers, as the session and emulator use them.
    const [reqEvent] = new FrameParser().push(encodeRequestFrame(codec.code, 42, reqPayload));
    t.is(reqEvent?.type, 'frame');
    const reqMsg = frameToMessage(frameOf(reqEvent));
    t.like(reqMsg, { kind: 'request', command: codec.code, requestId: 42 });
    const [resEvent] = new FrameParser().push(encodeResponseFrame(codec.code, 42, resPayload));
    const resMsg = frameToMessage(frameOf(resEvent));
    t.like(resMsg, { kind: 'response', command: codec.code, requestId: 42 });
    t.deepEqual(codec.decodeResponse((resMsg as { payload: Uint8Array }).payload), sample.response);
  });
}

test('INFO response layout, byte by byte', (t) => {
  const bytes = infoCodec.encodeResponse(info);
  t.is(
    toHex(bytes),
    [
      '01', //                 protocol version
      '01', //                 flags: bit 0 emulated
      toHex(info.publicKey), // 32-byte public key
      '0102030405060708', //   counter, u64 big-endian
      '04', //                 slot count
      '2000', //               slot size 8192
      '0400', //               max payload 1024
      '08', '454d552d30303031', //                      serial "EMU-0001"
      '13', toHex(new TextEncoder().encode('licd-emulator/1.0.0')), // firmware version
    ].join(''),
  );
  t.true(isEmulated(infoCodec.decodeResponse(bytes)));
});

test('SIGN request layout', (t) => {
  t.is(toHex(signCodec.encodeRequest({ domain: 'test', message: fromHex('010203') })), '04' + '74657374' + '010203');
});

test('COUNTER_INCREMENT layout: u64 big-endian value then signature', (t) => {
  const bytes = counterIncrementCodec.encodeResponse({ counter: 1n, signature: new Uint8Array(64) });
  t.is(toHex(bytes.subarray(0, 8)), '0000000000000001');
  t.is(bytes.length, 72);
});

test('SLOT_READ and SLOT_WRITE request layouts', (t) => {
  t.is(toHex(slotReadCodec.encodeRequest({ slot: 2, offset: 0x0200, length: 0x0200 })), '02' + '0200' + '0200');
  t.is(toHex(slotWriteCodec.encodeRequest({ slot: 2, offset: 0x0400, commit: true, data: fromHex('ff') })), '02' + '01' + '0400' + 'ff');
  t.is(toHex(slotWriteCodec.encodeResponse({ staged: 0x0401, committed: false })), '0401' + '00');
});

test('payloads of the wrong size are refused with DecodeError', (t) => {
  t.throws(() => infoCodec.decodeRequest(fromHex('00')), { instanceOf: DecodeError });
  t.throws(() => counterIncrementCodec.decodeRequest(new Uint8Array(15)), { instanceOf: DecodeError });
  t.throws(() => counterIncrementCodec.decodeRequest(new Uint8Array(17)), { instanceOf: DecodeError });
  t.throws(() => signCodec.decodeRequest(fromHex('05 6162')), { instanceOf: DecodeError });
  t.throws(() => signCodec.decodeResponse(new Uint8Array(63)), { instanceOf: DecodeError });
  t.throws(() => slotReadCodec.decodeRequest(fromHex('00 0000')), { instanceOf: DecodeError });
  t.throws(() => slotWriteCodec.decodeResponse(fromHex('0001 00 00')), { instanceOf: DecodeError });
  t.throws(() => infoCodec.decodeResponse(infoCodec.encodeResponse(info).subarray(0, 50)), { instanceOf: DecodeError });
});

test('error responses carry a code and a detail', (t) => {
  const payload = encodeErrorPayload({ code: DeviceErrorCode.BAD_SLOT, detail: 'slot 9 does not exist' });
  t.is(payload[0], 0x04);
  t.deepEqual(decodeErrorPayload(payload), { code: 0x04, detail: 'slot 9 does not exist' });
  // COUNTER_INCREMENT error, id 9, COUNTER_FAILURE, empty detail: as shown in PROTOCOL.md.
  t.is(toHex(encodeErrorFrame(CommandCode.COUNTER_INCREMENT, 9, { code: DeviceErrorCode.COUNTER_FAILURE, detail: '' })), 'a55a01c4000900017fbe07419f');
  const [event] = new FrameParser().push(fromHex('a55a01c4000900017fbe07419f'));
  t.deepEqual(frameToMessage(frameOf(event)), {
    kind: 'error',
    command: CommandCode.COUNTER_INCREMENT,
    requestId: 9,
    error: { code: DeviceErrorCode.COUNTER_FAILURE, detail: '' },
  });
});

test('PING codec copies, so later changes to the caller buffer do not leak in', (t) => {
  const data = fromHex('01');
  const payload = pingCodec.encodeRequest({ data });
  data[0] = 2;
  t.is(payload[0], 1);
});
