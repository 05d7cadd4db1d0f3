/**
 * COUNTER_INCREMENT (0x04): step the monotonic counter by one and sign the new value.
 *   request:  16-byte host nonce
 *   response: u64 new value | 64-byte signature under domain "counter" over (u64 value || nonce)
 * Not idempotent: a resend steps the counter again. The session never resends it.
 */
import { ByteReader, ByteWriter } from '../bytes.ts';
import { CommandCode, NONCE_SIZE, SIGNATURE_SIZE } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface CounterIncrementRequest {
  nonce: Uint8Array;
}
export interface CounterIncrementResponse {
  counter: bigint;
  signature: Uint8Array;
}

export const counterIncrementCodec: CommandCodec<CounterIncrementRequest, CounterIncrementResponse> = {
  code: CommandCode.COUNTER_INCREMENT,
  name: 'COUNTER_INCREMENT',
  idempotent: false,
  encodeRequest: ({ nonce }) => {
    if (nonce.length !== NONCE_SIZE) throw new RangeError(`nonce must be ${NONCE_SIZE} bytes`);
    return Uint8Array.from(nonce);
  },
  decodeRequest: (payload) => {
    const r = new ByteReader(payload, 'COUNTER_INCREMENT request');
    const nonce = r.bytes(NONCE_SIZE, 'nonce');
    r.end();
    return { nonce };
  },
  encodeResponse: ({ counter, signature }) => {
    if (signature.length !== SIGNATURE_SIZE) throw new RangeError('signature must be 64 bytes');
    return new ByteWriter().u64(counter).bytes(signature).finish();
  },
  decodeResponse: (payload) => {
    const r = new ByteReader(payload, 'COUNTER_INCREMENT response');
    const counter = r.u64('counter');
    const signature = r.bytes(SIGNATURE_SIZE, 'signature');
    r.end();
    return { counter, signature };
  },
};
