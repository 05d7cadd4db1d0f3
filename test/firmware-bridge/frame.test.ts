import test from 'ava';
import {
  CommandCode,
  FrameParser,
  MAX_PAYLOAD,
  crc16,
  encodeFrame,
  fromHex,
  type ParserEvent,
} from '../../firmware-bridge/index.ts';

// A PING request, request id 0x0102, payload "hi". Computed independently of the TypeScript
// code (PROTOCOL.md shows the same frame), so encoder and parser are checked against the spec.
const PING_HI = Uint8Array.from([
  0xa5, 0x5a, //  sync
  0x01, //        protocol version 1
  0x01, //        code: PING request
  0x01, 0x02, //  request id 0x0102
  0x00, 0x02, //  payload length 2
  0xd9, 0x77, //  header CRC = CRC-16/CCITT-FALSE(01 01 01 02 00 02)
  0x68, 0x69, //  payload "hi"
  0xde, 0xc3, //  frame CRC = CRC-16/CCITT-FALSE(01 01 01 02 00 02 68 69)
]);

// The answer: code 0x81 (PING | response bit), same id, same payload.
const PING_HI_ANSWER = Uint8Array.from([
  0xa5, 0x5a, //  sync
  0x01, //        version
  0x81, //        code: PING response
  0x01, 0x02, //  request id 0x0102
  0x00, 0x02, //  length 2
  0xfb, 0xa7, //  header CRC
  0x68, 0x69, //  "hi"
  0x75, 0x3a, //  frame CRC
]);

// An INFO request, id 1, empty payload: the frame CRC equals the header CRC.
const INFO_1 = Uint8Array.from([
  0xa5, 0x5a, //  sync
  0x01, //        version
  0x02, //        code: INFO request
  0x00, 0x01, //  request id 1
  0x00, 0x00, //  length 0
  0x38, 0x03, //  header CRC
  0x38, 0x03, //  frame CRC (no payload: the header CRC register unchanged)
]);

// A header that announces 0x0401 = 1025 payload bytes, one more than allowed. Its header CRC is
// valid, so only the length check can refuse it.
const OVERSIZED_HEADER = Uint8Array.from([
  0xa5, 0x5a, //  sync
  0x01, //        version
  0x81, //        code: PING response
  0x00, 0x05, //  request id 5
  0x04, 0x01, //  length 1025 > MAX_PAYLOAD
  0xf4, 0x24, //  header CRC (valid)
]);

const frames = (events: ParserEvent[]) => events.flatMap((e) => (e.type === 'frame' ? [e.frame] : []));
const problems = (events: ParserEvent[]) => events.filter((e) => e.type !== 'frame');

test('CRC-16/CCITT-FALSE check value', (t) => {
  t.is(crc16(new TextEncoder().encode('123456789')), 0x29b1);
  t.is(crc16(new Uint8Array(0)), 0xffff);
});

test('encoder produces the documented bytes', (t) => {
  t.deepEqual(encodeFrame({ code: CommandCode.PING, requestId: 0x0102, payload: fromHex('6869') }), PING_HI);
  t.deepEqual(encodeFrame({ code: 0x81, requestId: 0x0102, payload: fromHex('6869') }), PING_HI_ANSWER);
  t.deepEqual(encodeFrame({ code: CommandCode.INFO, requestId: 1, payload: new Uint8Array(0) }), INFO_1);
});

test('parses a good frame', (t) => {
  const events = new FrameParser().push(PING_HI);
  t.deepEqual(events, [{ type: 'frame', frame: { version: 1, code: 0x01, requestId: 0x0102, payload: fromHex('6869') } }]);
});

test('a frame fed byte by byte comes out once, at the last byte', (t) => {
  const parser = new FrameParser();
  for (let i = 0; i < PING_HI.length - 1; i++) t.deepEqual(parser.push(PING_HI.subarray(i, i + 1)), []);
  const events = parser.push(PING_HI.subarray(PING_HI.length - 1));
  t.is(frames(events).length, 1);
  t.deepEqual(frames(events)[0]!.payload, fromHex('6869'));
  t.is(parser.buffered, 0);
});

test('several frames in one chunk, and split at every possible point', (t) => {
  const stream = Uint8Array.from([...PING_HI, ...INFO_1, ...PING_HI_ANSWER]);
  t.deepEqual(frames(new FrameParser().push(stream)).map((f) => f.code), [0x01, 0x02, 0x81]);
  for (let a = 0; a <= stream.length; a++) {
    for (let b = a; b <= stream.length; b += 3) {
      const parser = new FrameParser();
      const events = [...parser.push(stream.subarray(0, a)), ...parser.push(stream.subarray(a, b)), ...parser.push(stream.subarray(b))];
      t.deepEqual(frames(events).map((f) => f.code), [0x01, 0x02, 0x81], `split at ${a}/${b}`);
      t.deepEqual(problems(events), []);
    }
  }
});

test('garbage before and between frames is skipped and reported', (t) => {
  const noise = fromHex('00 ff 13 a5 00 5a 42'); // includes a lone sync byte
  const stream = Uint8Array.from([...noise, ...PING_HI, 0x0d, 0x0a, 0xa5, ...INFO_1]);
  const events = new FrameParser().push(stream);
  t.deepEqual(frames(events).map((f) => f.code), [0x01, 0x02]);
  t.deepEqual(problems(events), [
    { type: 'garbage', bytes: 7 },
    { type: 'garbage', bytes: 3 },
  ]);
});

test('a frame with a bad CRC is dropped and reported; the next good frame is parsed', (t) => {
  const bad = Uint8Array.from(PING_HI);
  bad[10]! ^= 0x20; // "hi" -> "Hi": payload damaged, frame CRC no longer matches
  const parser = new FrameParser();
  const events = parser.push(Uint8Array.from([...bad, ...INFO_1]));
  t.deepEqual(events, [
    { type: 'bad-crc', code: 0x01, requestId: 0x0102, length: 2 },
    { type: 'frame', frame: { version: 1, code: 0x02, requestId: 1, payload: new Uint8Array(0) } },
  ]);
});

test('a damaged header is reported and does not make the parser wait for a bogus length', (t) => {
  const bad = Uint8Array.from(PING_HI);
  bad[6] = 0x03; // length 0x0302: the header CRC catches it at once
  const events = new FrameParser().push(Uint8Array.from([...bad, ...INFO_1]));
  t.deepEqual(events[0], { type: 'bad-header' });
  t.deepEqual(frames(events).map((f) => f.code), [0x02]);
});

test('a good frame hidden inside the claimed extent of a bad one is still found', (t) => {
  // A frame cut short (say, by a reset) followed by a complete one: the cut frame's length
  // swallows the start of the next frame, and the CRC check then fails.
  const cut = PING_HI.subarray(0, 11);
  const events = new FrameParser().push(Uint8Array.from([...cut, ...INFO_1, ...PING_HI_ANSWER]));
  t.deepEqual(frames(events).map((f) => f.code), [0x02, 0x81]);
  t.true(events.some((e) => e.type === 'bad-crc'));
});

test('an oversized length is refused without waiting, and parsing goes on', (t) => {
  const parser = new FrameParser();
  const events = parser.push(Uint8Array.from([...OVERSIZED_HEADER, ...PING_HI]));
  t.deepEqual(events[0], { type: 'oversized', length: 1025, maxPayload: MAX_PAYLOAD });
  t.deepEqual(frames(events).map((f) => f.requestId), [0x0102]);
  t.is(parser.buffered, 0);
});

test('a smaller maxPayload is enforced the same way', (t) => {
  const events = new FrameParser({ maxPayload: 1 }).push(PING_HI);
  t.deepEqual(events, [{ type: 'oversized', length: 2, maxPayload: 1 }, { type: 'garbage', bytes: 4 }]);
});

test('the largest payload round-trips; one more byte is refused by the encoder', (t) => {
  const payload = Uint8Array.from({ length: MAX_PAYLOAD }, (_, i) => (i * 31) & 0xff);
  const frame = encodeFrame({ code: 0x86, requestId: 0xffff, payload });
  t.is(frame.length, MAX_PAYLOAD + 12);
  const [event] = new FrameParser().push(frame);
  t.deepEqual(event, { type: 'frame', frame: { version: 1, code: 0x86, requestId: 0xffff, payload } });
  t.throws(() => encodeFrame({ code: 1, requestId: 1, payload: new Uint8Array(MAX_PAYLOAD + 1) }), { instanceOf: RangeError });
});

test('random line noise mixed with frames never loses a frame', (t) => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const parts: number[] = [];
  const expected: number[] = [];
  for (let i = 0; i < 200; i++) {
    for (let n = Math.floor(rand() * 20); n > 0; n--) parts.push(Math.floor(rand() * 256));
    const payload = Uint8Array.from({ length: Math.floor(rand() * 60) }, () => Math.floor(rand() * 256));
    parts.push(...encodeFrame({ code: 0x81, requestId: i + 1, payload }));
    expected.push(i + 1);
  }
  const stream = Uint8Array.from(parts);
  const parser = new FrameParser();
  const got: number[] = [];
  for (let o = 0; o < stream.length; ) {
    const n = 1 + Math.floor(rand() * 100);
    for (const f of frames(parser.push(stream.subarray(o, o + n)))) got.push(f.requestId);
    o += n;
  }
  // Noise can by chance contain a valid-looking frame (1 in 2^32); the real ones must all be there.
  t.deepEqual(got.filter((id) => expected.includes(id)), expected);
});
