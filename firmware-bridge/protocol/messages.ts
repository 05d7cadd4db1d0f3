/**
 * Layer 2: frames <-> messages. The code byte says what a frame is:
 *   0x01..0x3f  request for that command            (host -> dongle)
 *   0x81..0xbf  successful response, command | 0x80  (dongle -> host)
 *   0xc1..0xff  error response, command | 0xc0       (dongle -> host), payload = error payload
 */
import { COMMAND_MASK, ERROR_BIT, RESPONSE_BIT } from './constants.ts';
import { decodeErrorPayload, encodeErrorPayload, type DeviceErrorPayload } from './device-errors.ts';
import { encodeFrame, type Frame } from './frame.ts';

export type Message =
  | { kind: 'request'; command: number; requestId: number; payload: Uint8Array }
  | { kind: 'response'; command: number; requestId: number; payload: Uint8Array }
  | { kind: 'error'; command: number; requestId: number; error: DeviceErrorPayload };

/** Throws DecodeError only for an error response whose payload is empty. */
export function frameToMessage(frame: Frame): Message {
  const command = frame.code & COMMAND_MASK;
  const { requestId, payload } = frame;
  if ((frame.code & RESPONSE_BIT) === 0) return { kind: 'request', command: frame.code, requestId, payload };
  if ((frame.code & ERROR_BIT) === 0) return { kind: 'response', command, requestId, payload };
  return { kind: 'error', command, requestId, error: decodeErrorPayload(payload) };
}

export function encodeRequestFrame(command: number, requestId: number, payload: Uint8Array): Uint8Array {
  return encodeFrame({ code: command & COMMAND_MASK, requestId, payload });
}

export function encodeResponseFrame(command: number, requestId: number, payload: Uint8Array): Uint8Array {
  return encodeFrame({ code: (command & COMMAND_MASK) | RESPONSE_BIT, requestId, payload });
}

export function encodeErrorFrame(command: number, requestId: number, error: DeviceErrorPayload): Uint8Array {
  return encodeFrame({ code: (command & COMMAND_MASK) | RESPONSE_BIT | ERROR_BIT, requestId, payload: encodeErrorPayload(error) });
}
