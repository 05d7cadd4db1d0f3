/**
 * SLOT_READ (0x05): read part of a slot's content.
 *   request:  u8 slot | u16 offset | u16 max length
 *   response: u16 content length of the slot | data (min(max length, content length - offset) bytes)
 * offset > content length is BAD_OFFSET; offset == content length returns no data.
 */
import { ByteReader, ByteWriter } from '../bytes.ts';
import { CommandCode } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface SlotReadRequest {
  slot: number;
  offset: number;
  length: number;
}
export interface SlotReadResponse {
  /** Length of the slot's whole committed content. */
  total: number;
  data: Uint8Array;
}

export const slotReadCodec: CommandCodec<SlotReadRequest, SlotReadResponse> = {
  code: CommandCode.SLOT_READ,
  name: 'SLOT_READ',
  idempotent: true,
  encodeRequest: ({ slot, offset, length }) => new ByteWriter().u8(slot).u16(offset).u16(length).finish(),
  decodeRequest: (payload) => {
    const r = new ByteReader(payload, 'SLOT_READ request');
    const req = { slot: r.u8('slot'), offset: r.u16('offset'), length: r.u16('length') };
    r.end();
    return req;
  },
  encodeResponse: ({ total, data }) => new ByteWriter().u16(total).bytes(data).finish(),
  decodeResponse: (payload) => {
    const r = new ByteReader(payload, 'SLOT_READ response');
    return { total: r.u16('total'), data: r.rest() };
  },
};
