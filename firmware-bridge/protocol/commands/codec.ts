/** Layer 3: one small codec per command. A codec is plain data; the registry is a Map. */
import type { CommandCode, CommandName } from '../constants.ts';

export interface CommandCodec<Req, Res> {
  readonly code: CommandCode;
  readonly name: CommandName;
  /**
   * True when sending the request twice has the same effect as sending it once, so the session
   * may resend it after a lost or corrupt answer. COUNTER_INCREMENT is the one that is not.
   */
  readonly idempotent: boolean;
  encodeRequest(request: Req): Uint8Array;
  /** Throws DecodeError when the payload does not fit the layout (answered as BAD_LENGTH). */
  decodeRequest(payload: Uint8Array): Req;
  encodeResponse(response: Res): Uint8Array;
  decodeResponse(payload: Uint8Array): Res;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommandCodec = CommandCodec<any, any>;
export type RequestOf<C> = C extends CommandCodec<infer Req, unknown> ? Req : never;
export type ResponseOf<C> = C extends CommandCodec<unknown, infer Res> ? Res : never;
