/** Error codes a dongle puts in an error response, and the error payload codec. */
import { asciiBytes, ByteReader, ByteWriter, DecodeError } from './bytes.ts';

export const DeviceErrorCode = {
  /** Unknown command code. */
  BAD_COMMAND: 0x01,
  /** The payload length does not fit the command's layout. */
  BAD_LENGTH: 0x02,
  /** The frame's protocol version is not one the dongle speaks. */
  BAD_VERSION: 0x03,
  /** Slot number >= slot count. */
  BAD_SLOT: 0x04,
  /** Offset or length outside the slot content, the staged data or the slot size. */
  BAD_OFFSET: 0x05,
  /** Domain empty, longer than 64 bytes, not printable ASCII, or reserved. */
  BAD_DOMAIN: 0x06,
  /** The counter could not be stepped (storage or hardware fault). Its value is unchanged. */
  COUNTER_FAILURE: 0x07,
  /** The counter is at 2^64-1 and will never step again. */
  COUNTER_EXHAUSTED: 0x08,
  /** The dongle did not execute the request; the host may send it again later. */
  BUSY: 0x09,
  /** A slot write could not be committed; the slot keeps its previous content. */
  STORAGE_FAILURE: 0x0a,
  /** Anything else. */
  INTERNAL: 0x7f,
} as const;
export type DeviceErrorName = keyof typeof DeviceErrorCode;
export type DeviceErrorCode = (typeof DeviceErrorCode)[DeviceErrorName];

export function deviceErrorName(code: number): DeviceErrorName | `UNKNOWN_0x${string}` {
  for (const [name, value] of Object.entries(DeviceErrorCode)) if (value === code) return name as DeviceErrorName;
  return `UNKNOWN_0x${code.toString(16).padStart(2, '0')}`;
}

export interface DeviceErrorPayload {
  code: number;
  /** Printable ASCII, at most 200 bytes; for people, never parsed. */
  detail: string;
}

export const MAX_ERROR_DETAIL = 200;

export function encodeErrorPayload(error: DeviceErrorPayload): Uint8Array {
  let detail = error.detail.replace(/[^\x20-\x7e]/g, '?');
  if (detail.length > MAX_ERROR_DETAIL) detail = detail.slice(0, MAX_ERROR_DETAIL);
  return new ByteWriter().u8(error.code).bytes(asciiBytes(detail)).finish();
}

export function decodeErrorPayload(payload: Uint8Array): DeviceErrorPayload {
  const r = new ByteReader(payload, 'error response');
  const code = r.u8('error code');
  const rest = r.rest();
  if (rest.length > MAX_ERROR_DETAIL) throw new DecodeError(`error response: detail of ${rest.length} bytes exceeds ${MAX_ERROR_DETAIL}`);
  // Detail is informational: tolerate odd bytes rather than lose the error code.
  const detail = Array.from(rest, (b) => (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : '?')).join('');
  return { code, detail };
}

/** Thrown by a request handler to make the dongle answer with an error response. */
export class DeviceFailure extends Error {
  override readonly name = 'DeviceFailure';
  constructor(readonly code: DeviceErrorCode, detail: string) {
    super(detail);
  }
}
