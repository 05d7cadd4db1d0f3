/** Wire constants of the licd dongle protocol, version 1. PROTOCOL.md is the normative text. */

/** The two bytes every frame starts with. Chosen so that ASCII text and zero padding never match. */
export const SYNC_0 = 0xa5;
export const SYNC_1 = 0x5a;

export const PROTOCOL_VERSION = 1;

/** Bytes before the payload: sync (2), version, code, request id (2), length (2), header CRC (2). */
export const HEADER_SIZE = 10;
/** Bytes after the payload: the frame CRC. */
export const TRAILER_SIZE = 2;
/** Largest payload a v1 frame may carry. A frame is therefore at most 1036 bytes. */
export const MAX_PAYLOAD = 1024;

/** Response codes are the command code with bit 7 set; error responses also set bit 6. */
export const RESPONSE_BIT = 0x80;
export const ERROR_BIT = 0x40;
/** Command codes live in 0x01..0x3f so that the two high bits stay free. */
export const COMMAND_MASK = 0x3f;

export const CommandCode = {
  PING: 0x01,
  INFO: 0x02,
  SIGN: 0x03,
  COUNTER_INCREMENT: 0x04,
  SLOT_READ: 0x05,
  SLOT_WRITE: 0x06,
  TIME: 0x07,
} as const;
export type CommandCode = (typeof CommandCode)[keyof typeof CommandCode];
export type CommandName = keyof typeof CommandCode;

export function commandName(code: number): string {
  for (const [name, value] of Object.entries(CommandCode)) if (value === code) return name;
  return `0x${code.toString(16).padStart(2, '0')}`;
}

/** INFO flag bits. */
export const InfoFlag = {
  /** The dongle is an emulator: it signs with class byte 'E' and must not be trusted in production. */
  EMULATED: 0x01,
} as const;

/** SLOT_WRITE flag bits. */
export const SlotWriteFlag = {
  /** Commit the staged bytes to the slot atomically after this chunk. */
  COMMIT: 0x01,
} as const;

export const NONCE_SIZE = 16;
export const SIGNATURE_SIZE = 64;
export const PUBLIC_KEY_SIZE = 32;
export const MAX_DOMAIN_LENGTH = 64;
