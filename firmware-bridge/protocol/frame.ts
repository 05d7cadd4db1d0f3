/**
 * Layer 1: bytes <-> frames. The encoder builds one frame; FrameParser turns an arbitrary
 * stream of chunks (split frames, several frames per chunk, line noise) back into frames.
 *
 *   offset  size  field
 *   0       2     sync 0xA5 0x5A
 *   2       1     protocol version
 *   3       1     code (command, or response/error code)
 *   4       2     request id, big-endian
 *   6       2     payload length, big-endian, <= MAX_PAYLOAD
 *   8       2     header CRC: CRC-16/CCITT-FALSE of bytes 2..7
 *   10      n     payload
 *   10+n    2     frame CRC: CRC-16/CCITT-FALSE of bytes 2..7 followed by the payload
 *
 * The header CRC exists so that a corrupted length byte is caught before the parser waits
 * for bytes that will never come; the parser never stalls on a damaged header. The frame CRC
 * skips the header CRC bytes on purpose: this CRC has no final XOR, so running it over its own
 * value would reset the register and leave the frame CRC blind to the header. Computed as
 * written, it is the header CRC register carried on over the payload.
 */
import { HEADER_SIZE, MAX_PAYLOAD, PROTOCOL_VERSION, SYNC_0, SYNC_1, TRAILER_SIZE } from './constants.ts';
import { crc16 } from './crc16.ts';

export interface Frame {
  version: number;
  code: number;
  requestId: number;
  payload: Uint8Array;
}

export function encodeFrame(frame: { code: number; requestId: number; payload: Uint8Array; version?: number }): Uint8Array {
  const version = frame.version ?? PROTOCOL_VERSION;
  const n = frame.payload.length;
  if (n > MAX_PAYLOAD) throw new RangeError(`payload of ${n} bytes exceeds the protocol maximum of ${MAX_PAYLOAD}`);
  if (!Number.isInteger(frame.requestId) || frame.requestId < 0 || frame.requestId > 0xffff) {
    throw new RangeError(`request id out of range: ${frame.requestId}`);
  }
  const out = new Uint8Array(HEADER_SIZE + n + TRAILER_SIZE);
  out[0] = SYNC_0;
  out[1] = SYNC_1;
  out[2] = version & 0xff;
  out[3] = frame.code & 0xff;
  out[4] = frame.requestId >>> 8;
  out[5] = frame.requestId & 0xff;
  out[6] = n >>> 8;
  out[7] = n & 0xff;
  const hcrc = crc16(out, 2, 8);
  out[8] = hcrc >>> 8;
  out[9] = hcrc & 0xff;
  out.set(frame.payload, HEADER_SIZE);
  const fcrc = crc16(out, HEADER_SIZE, HEADER_SIZE + n, hcrc);
  out[HEADER_SIZE + n] = fcrc >>> 8;
  out[HEADER_SIZE + n + 1] = fcrc & 0xff;
  return out;
}

/** What the parser saw. Everything that is not a frame is reported, never thrown. */
export type ParserEvent =
  | { type: 'frame'; frame: Frame }
  /** Bytes skipped while looking for a sync pair (line noise, HID padding, a partial frame). */
  | { type: 'garbage'; bytes: number }
  /** A sync pair whose header CRC did not match: not a frame start, or a damaged header. */
  | { type: 'bad-header' }
  /** A valid header announcing more payload than this side accepts. */
  | { type: 'oversized'; length: number; maxPayload: number }
  /** A complete frame whose frame CRC did not match. It is dropped. */
  | { type: 'bad-crc'; code: number; requestId: number; length: number };

export interface FrameParserOptions {
  /** Largest payload accepted; defaults to the protocol maximum. */
  maxPayload?: number;
}

export class FrameParser {
  private buf: Uint8Array = new Uint8Array(0);
  private readonly maxPayload: number;
  /** Bytes of a rejected frame still to skip without calling them garbage again. */
  private absorb = 0;

  constructor(options: FrameParserOptions = {}) {
    this.maxPayload = options.maxPayload ?? MAX_PAYLOAD;
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.buf.length;
  }

  reset(): void {
    this.buf = new Uint8Array(0);
    this.absorb = 0;
  }

  push(chunk: Uint8Array): ParserEvent[] {
    const events: ParserEvent[] = [];
    let buf: Uint8Array;
    if (this.buf.length === 0) buf = chunk;
    else {
      buf = new Uint8Array(this.buf.length + chunk.length);
      buf.set(this.buf, 0);
      buf.set(chunk, this.buf.length);
    }
    let pos = 0;
    let garbage = 0;
    const skip = (n: number): void => {
      const absorbed = Math.min(this.absorb, n);
      this.absorb -= absorbed;
      garbage += n - absorbed;
      pos += n;
    };
    const flushGarbage = (): void => {
      if (garbage > 0) events.push({ type: 'garbage', bytes: garbage });
      garbage = 0;
    };

    for (;;) {
      // Hunt for the sync pair. A lone SYNC_0 at the very end may be the start of one.
      while (pos < buf.length && !(buf[pos] === SYNC_0 && (pos + 1 === buf.length || buf[pos + 1] === SYNC_1))) skip(1);
      if (buf.length - pos < HEADER_SIZE) break;

      const headerCrc = (buf[pos + 8]! << 8) | buf[pos + 9]!;
      if (crc16(buf, pos + 2, pos + 8) !== headerCrc) {
        flushGarbage();
        events.push({ type: 'bad-header' });
        skip(1);
        continue;
      }
      const length = (buf[pos + 6]! << 8) | buf[pos + 7]!;
      if (length > this.maxPayload) {
        flushGarbage();
        events.push({ type: 'oversized', length, maxPayload: this.maxPayload });
        this.absorb = HEADER_SIZE;
        skip(1);
        continue;
      }
      const total = HEADER_SIZE + length + TRAILER_SIZE;
      if (buf.length - pos < total) break;

      const frameCrc = (buf[pos + total - 2]! << 8) | buf[pos + total - 1]!;
      const code = buf[pos + 3]!;
      const requestId = (buf[pos + 4]! << 8) | buf[pos + 5]!;
      flushGarbage();
      if (crc16(buf, pos + HEADER_SIZE, pos + HEADER_SIZE + length, headerCrc) !== frameCrc) {
        events.push({ type: 'bad-crc', code, requestId, length });
        // Rescan from the next byte: a good frame may start inside the bad one's claimed extent
        // (for example when the bad frame was truncated by a reset).
        this.absorb = total;
        skip(1);
        continue;
      }
      events.push({
        type: 'frame',
        frame: {
          version: buf[pos + 2]!,
          code,
          requestId,
          payload: buf.slice(pos + HEADER_SIZE, pos + HEADER_SIZE + length),
        },
      });
      pos += total;
      this.absorb = 0;
    }
    flushGarbage();
    this.buf = pos >= buf.length ? new Uint8Array(0) : buf.slice(pos);
    return events;
  }
}
