/**
 * TIME (0x07): read the dongle's battery-backed clock, signed.
 *   request:  16-byte host nonce
 *   response: u64 milliseconds since the Unix epoch | 64-byte signature under domain
 *             "dongle:time" over (u64 ms || nonce)
 * Idempotent (a resend reads the clock again). A dongle without a clock answers BAD_COMMAND.
 */
import { ByteReader, ByteWriter } from '../bytes.ts';
import { CommandCode, NONCE_SIZE, SIGNATURE_SIZE } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface TimeRequest {
  nonce: Uint8Array;
}
export interface TimeResponse {
  /** Milliseconds since the Unix epoch, UTC. */
  ms: bigint;
  signature: Uint8Array;
}

export const timeCodec: CommandCodec<TimeRequest, TimeResponse> = {
  code: CommandCode.TIME,
  name: 'TIME',
  idempotent: true,
  encodeRequest: ({ nonce }) => {
    if (nonce.length !== NONCE_SIZE) throw new RangeError(`nonce must be ${NONCE_SIZE} bytes`);
    return Uint8Array.from(nonce);
  },
  decodeRequest: (payload) => {
    const r = new ByteReader(payload, 'TIME request');
    const nonce = r.bytes(NONCE_SIZE, 'nonce');
    r.end();
    return { nonce };
  },
  encodeResponse: ({ ms, signature }) => {
    if (signature.length !== SIGNATURE_SIZE) throw new RangeError('signature must be 64 bytes');
    return new ByteWriter().u64(ms).bytes(signature).finish();
  },
  decodeResponse: (payload) => {
    const r = new ByteReader(payload, 'TIME response');
    const ms = r.u64('time');
    const signature = r.bytes(SIGNATURE_SIZE, 'signature');
    r.end();
    return { ms, signature };
  },
};
