/** PING (0x01): the dongle answers with the request payload unchanged. */
import { CommandCode } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface PingRequest {
  data: Uint8Array;
}
export interface PingResponse {
  data: Uint8Array;
}

export const pingCodec: CommandCodec<PingRequest, PingResponse> = {
  code: CommandCode.PING,
  name: 'PING',
  idempotent: true,
  encodeRequest: ({ data }) => Uint8Array.from(data),
  decodeRequest: (payload) => ({ data: Uint8Array.from(payload) }),
  encodeResponse: ({ data }) => Uint8Array.from(data),
  decodeResponse: (payload) => ({ data: Uint8Array.from(payload) }),
};
