/**
 * SLOT_WRITE (0x06): stage bytes for a slot, and optionally commit them.
 *   request:  u8 slot | u8 flags (bit 0 = COMMIT) | u16 offset | data (rest of the payload)
 *   response: u16 staged length | u8 flags (bit 0 = committed)
 * The dongle keeps one staging buffer per slot, equal to the committed content after every commit
 * and at power-up. A write truncates the staging buffer to `offset` (which must be <= its length)
 * and appends `data`; COMMIT then replaces the slot content atomically. Because a write states its
 * offset instead of appending blindly, sending the same write twice leaves the same result:
 * SLOT_WRITE is idempotent and the session may resend it.
 */
import { ByteReader, ByteWriter } from '../bytes.ts';
import { CommandCode, SlotWriteFlag } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export interface SlotWriteRequest {
  slot: number;
  offset: number;
  commit: boolean;
  data: Uint8Array;
}
export interface SlotWriteResponse {
  staged: number;
  committed: boolean;
}

export const slotWriteCodec: CommandCodec<SlotWriteRequest, SlotWriteResponse> = {
  code: CommandCode.SLOT_WRITE,
  name: 'SLOT_WRITE',
  idempotent: true,
  encodeRequest: ({ slot, offset, commit, data }) =>
    new ByteWriter().u8(slot).u8(commit ? SlotWriteFlag.COMMIT : 0).u16(offset).bytes(data).finish(),
  decodeRequest: (payload) => {
    const r = new ByteReader(payload, 'SLOT_WRITE request');
    const slot = r.u8('slot');
    const flags = r.u8('flags');
    const offset = r.u16('offset');
    return { slot, offset, commit: (flags & SlotWriteFlag.COMMIT) !== 0, data: r.rest() };
  },
  encodeResponse: ({ staged, committed }) => new ByteWriter().u16(staged).u8(committed ? 1 : 0).finish(),
  decodeResponse: (payload) => {
    const r = new ByteReader(payload, 'SLOT_WRITE response');
    const res = { staged: r.u16('staged length'), committed: (r.u8('flags') & 1) !== 0 };
    r.end();
    return res;
  },
};
