/**
 * INFO (0x02): who the dongle is. Request payload is empty. Response:
 *   u8 protocol version | u8 flags | 32 public key | u64 counter | u8 slot count | u16 slot size
 *   | u16 max payload | u8 n + serial (ASCII) | u8 n + firmware version (ASCII)
 */
import { ByteReader, ByteWriter } from '../bytes.ts';
import { CommandCode, InfoFlag, PUBLIC_KEY_SIZE } from '../constants.ts';
import type { CommandCodec } from './codec.ts';

export type InfoRequest = Record<string, never>;

export interface DongleInfo {
  protocolVersion: number;
  /** Raw flag byte; bit 0 = emulated. */
  flags: number;
  /** Ed25519 public key of the device key, 32 bytes. */
  publicKey: Uint8Array;
  /** Current value of the monotonic counter. */
  counter: bigint;
  slotCount: number;
  /** Capacity of each slot in bytes. */
  slotSize: number;
  /** Largest frame payload the dongle accepts. */
  maxPayload: number;
  serial: string;
  firmwareVersion: string;
}

export function isEmulated(info: Pick<DongleInfo, 'flags'>): boolean {
  return (info.flags & InfoFlag.EMULATED) !== 0;
}

export const infoCodec: CommandCodec<InfoRequest, DongleInfo> = {
  code: CommandCode.INFO,
  name: 'INFO',
  idempotent: true,
  encodeRequest: () => new Uint8Array(0),
  decodeRequest: (payload) => {
    new ByteReader(payload, 'INFO request').end();
    return {};
  },
  encodeResponse: (info) => {
    if (info.publicKey.length !== PUBLIC_KEY_SIZE) throw new RangeError('public key must be 32 bytes');
    return new ByteWriter()
      .u8(info.protocolVersion)
      .u8(info.flags)
      .bytes(info.publicKey)
      .u64(info.counter)
      .u8(info.slotCount)
      .u16(info.slotSize)
      .u16(info.maxPayload)
      .shortAscii(info.serial)
      .shortAscii(info.firmwareVersion)
      .finish();
  },
  decodeResponse: (payload) => {
    const r = new ByteReader(payload, 'INFO response');
    const info: DongleInfo = {
      protocolVersion: r.u8('protocol version'),
      flags: r.u8('flags'),
      publicKey: r.bytes(PUBLIC_KEY_SIZE, 'public key'),
      counter: r.u64('counter'),
      slotCount: r.u8('slot count'),
      slotSize: r.u16('slot size'),
      maxPayload: r.u16('max payload'),
      serial: r.shortAscii('serial'),
      firmwareVersion: r.shortAscii('firmware version'),
    };
    r.end();
    return info;
  },
};
