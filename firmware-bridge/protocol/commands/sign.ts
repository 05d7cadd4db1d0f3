/**
 * SIGN (0x03): Ed25519 signature over dongleSignedBytes(domain, message, class).
 *   request:  u8 domain length (1..64) | domain (ASCII) | message (rest of the payload)
 *   response: 64-byte signature
 */
import { ByteReader, ByteWriter, DecodeError } from '../bytes.ts';
import { CommandCode, SIGNATURE_SIZE } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface SignRequest {
  domain: string;
  message: Uint8Array;
}
export interface SignResponse {
  signature: Uint8Array;
}

export const signCodec: CommandCodec<SignRequest, SignResponse> = {
  code: CommandCode.SIGN,
  name: 'SIGN',
  idempotent: true,
  encodeRequest: ({ domain, message }) => new ByteWriter().shortAscii(domain).bytes(message).finish(),
  decodeRequest: (payload) => {
    const r = new ByteReader(payload, 'SIGN request');
    const n = r.u8('domain length');
    // Kept as raw characters: the handler judges the domain and answers BAD_DOMAIN, not BAD_LENGTH.
    const domain = String.fromCharCode(...r.bytes(n, 'domain'));
    return { domain, message: r.rest() };
  },
  encodeResponse: ({ signature }) => {
    if (signature.length !== SIGNATURE_SIZE) throw new RangeError('signature must be 64 bytes');
    return Uint8Array.from(signature);
  },
  decodeResponse: (payload) => {
    if (payload.length !== SIGNATURE_SIZE) throw new DecodeError(`SIGN response: expected 64 bytes, got ${payload.length}`);
    return { signature: Uint8Array.from(payload) };
  },
};
