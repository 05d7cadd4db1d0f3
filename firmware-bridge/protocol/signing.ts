/**
 * The exact bytes a licd dongle signs. Fixed by the project: src/core reimplements this to the
 * byte, and PROTOCOL.md section "Signed bytes" documents it with test vectors.
 *
 *   "licd-dongle-sig-v1" (18 ASCII bytes) || 0x00 || class || len(domain) || domain || message
 *
 * class is 0x45 'E' for an emulated dongle and 0x48 'H' for hardware. The dongle adds it itself,
 * so the host cannot ask an emulator for a hardware-class signature.
 */
import { ByteWriter, asciiBytes, concatBytes } from './bytes.ts';
import { MAX_DOMAIN_LENGTH, NONCE_SIZE } from './constants.ts';

export const SIGNATURE_PREFIX = 'licd-dongle-sig-v1';
export const CLASS_EMULATED = 0x45;
export const CLASS_HARDWARE = 0x48;
/** The domain COUNTER_INCREMENT signs under; SIGN refuses it so a host cannot forge a counter step. */
export const COUNTER_DOMAIN = 'counter';
/** The domain TIME signs under (reserved: it starts with "dongle:"). */
export const TIME_DOMAIN = 'dongle:time';
/** SIGN refuses "counter" and every domain starting with this prefix (kept for future dongle-made signatures). */
export const RESERVED_DOMAIN_PREFIX = 'dongle:';

export type DomainProblem = 'empty' | 'too-long' | 'not-printable-ascii';

/** Domains are 1..64 bytes of printable ASCII without spaces (0x21..0x7e). */
export function checkDomain(domain: string): DomainProblem | undefined {
  if (domain.length === 0) return 'empty';
  if (domain.length > MAX_DOMAIN_LENGTH) return 'too-long';
  for (let i = 0; i < domain.length; i++) {
    const c = domain.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return 'not-printable-ascii';
  }
  return undefined;
}

export function isReservedDomain(domain: string): boolean {
  return domain === COUNTER_DOMAIN || domain.startsWith(RESERVED_DOMAIN_PREFIX);
}

export function dongleSignedBytes(domain: string, message: Uint8Array, emulated: boolean): Uint8Array {
  const problem = checkDomain(domain);
  if (problem) throw new RangeError(`invalid signing domain ${JSON.stringify(domain)}: ${problem}`);
  const head = new ByteWriter()
    .bytes(asciiBytes(SIGNATURE_PREFIX))
    .u8(0x00)
    .u8(emulated ? CLASS_EMULATED : CLASS_HARDWARE)
    .u8(domain.length)
    .bytes(asciiBytes(domain))
    .finish();
  return concatBytes(head, message);
}

/** The message COUNTER_INCREMENT signs under domain "counter": u64 BE new value || 16-byte host nonce. */
export function counterSignedMessage(value: bigint, nonce: Uint8Array): Uint8Array {
  if (nonce.length !== NONCE_SIZE) throw new RangeError(`counter nonce must be ${NONCE_SIZE} bytes, got ${nonce.length}`);
  return new ByteWriter().u64(value).bytes(nonce).finish();
}

/** The message TIME signs under domain "dongle:time": u64 BE milliseconds since the Unix epoch || 16-byte host nonce. */
export function timeSignedMessage(ms: bigint, nonce: Uint8Array): Uint8Array {
  if (nonce.length !== NONCE_SIZE) throw new RangeError(`time nonce must be ${NONCE_SIZE} bytes, got ${nonce.length}`);
  return new ByteWriter().u64(ms).bytes(nonce).finish();
}
