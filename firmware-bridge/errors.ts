/**
 * One error class for everything a caller of the firmware bridge can meet. `code` is stable and
 * meant for programs; `message` names the cause and the fix for people.
 */
import { deviceErrorName } from './protocol/device-errors.ts';

export const DongleErrorCode = {
  /** No valid answer within the timeout, after every allowed attempt. */
  TIMEOUT: 'DONGLE_TIMEOUT',
  /** The transport closed (dongle unplugged, emulator stopped, session closed). */
  CLOSED: 'DONGLE_CLOSED',
  /** Answers kept arriving corrupted (CRC mismatch) until the attempts ran out. */
  CRC: 'DONGLE_CRC',
  /** The dongle answered with an error code; see `deviceCode` and `deviceError`. */
  DEVICE_ERROR: 'DONGLE_DEVICE_ERROR',
  /** The dongle's answer broke the protocol (wrong layout, version, command). */
  PROTOCOL: 'DONGLE_PROTOCOL',
  /**
   * COUNTER_INCREMENT was sent but got no valid answer (timeout, damaged answer, or the link
   * closed while it waited). The dongle may or may not have stepped; it was not resent because a
   * resend could step it twice. Read INFO, then increment again with a new nonce.
   */
  COUNTER_UNCERTAIN: 'DONGLE_COUNTER_UNCERTAIN',
  /** The host asked for something the protocol cannot express (domain too long, bad nonce size). */
  BAD_ARGUMENT: 'DONGLE_BAD_ARGUMENT',
  /** Opening or writing the transport failed (no such device, permission, refused connection). */
  TRANSPORT: 'DONGLE_TRANSPORT',
} as const;
export type DongleErrorCode = (typeof DongleErrorCode)[keyof typeof DongleErrorCode];

export interface DongleErrorOptions {
  cause?: unknown;
  /** Numeric code from the dongle's error response. */
  deviceCode?: number;
  /** Name of the command that failed, e.g. "SIGN". */
  command?: string;
  /** How many times the request was sent. */
  attempts?: number;
}

export class DongleError extends Error {
  override readonly name = 'DongleError';
  readonly code: DongleErrorCode;
  readonly deviceCode: number | undefined;
  readonly deviceError: string | undefined;
  readonly command: string | undefined;
  readonly attempts: number | undefined;

  constructor(code: DongleErrorCode, message: string, options: DongleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.deviceCode = options.deviceCode;
    this.deviceError = options.deviceCode === undefined ? undefined : deviceErrorName(options.deviceCode);
    this.command = options.command;
    this.attempts = options.attempts;
  }
}

export function isDongleError(error: unknown, code?: DongleErrorCode): error is DongleError {
  return error instanceof DongleError && (code === undefined || error.code === code);
}

/** True for a device error response with the given name, e.g. isDeviceError(e, 'BUSY'). */
export function isDeviceError(error: unknown, name?: string): error is DongleError {
  return isDongleError(error, DongleErrorCode.DEVICE_ERROR) && (name === undefined || error.deviceError === name);
}
