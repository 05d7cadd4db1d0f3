/**
 * Every error a client or admin can meet carries a stable code (part of the protocol; see
 * docs/protocol.md) and a message that names the cause and the fix.
 */
export const ErrorCodes = [
  // request shape
  'BAD_JSON',
  'BAD_REQUEST',
  'UNKNOWN_OP',
  'PAYLOAD_TOO_LARGE',
  'BAD_CLIENT_ID',
  'FORBIDDEN',
  // licensing rules
  'UNKNOWN_FEATURE',
  'UNKNOWN_PRODUCT',
  'VERSION_NOT_LICENSED',
  'FEATURE_EXPIRED',
  'NO_SEATS',
  'UNKNOWN_LEASE',
  'BORROW_NOT_ALLOWED',
  'BORROW_HOURS',
  'BORROW_LIMIT',
  'UNKNOWN_BORROW',
  'CLOCK_SET_BACK',
  'QUARANTINE',
  'REVOKED',
  'BLOCKED',
  // the server's own state
  'DONGLE_ABSENT',
  'STORE_FAILED',
  'SHUTTING_DOWN',
  'BUSY',
  'INTERNAL',
  // configuration and trust
  'CONFIG_INVALID',
  'ENTITLEMENT_INVALID',
  'TOKEN_INVALID',
  'RELEASE_INVALID',
  'TIMEOUT',
  // mqtts: the server's certificate is not the pinned one / not vouched for by a trusted CA
  'TLS_MISMATCH',
  'TLS_UNTRUSTED',
  // borrowed tokens on the client: a returned borrow's token; every borrowed seat on this host in use
  'TOKEN_RETURNED',
  'TOKEN_IN_USE',
  // the vendor key a client verifies a server's tokens with: not pinned / wrong fingerprint; pinned key changed
  'VENDOR_KEY_UNTRUSTED',
  'VENDOR_KEY_CHANGED',
  // licenses changed at runtime (docs/activation.md): a lease ended because the new license has
  // fewer seats or lacks its feature; a license older than the one installed; an activation refused
  'LICENSE_REDUCED',
  'LICENSE_DOWNGRADE',
  'ACTIVATION_INVALID',
  'ACTIVATION_FAILED',
  // sharing seats by policy (docs/policy.md): a rule refuses this user/host the feature (INCLUDE,
  // EXCLUDE, MAX); the free seats are reserved for others (RESERVE); a policy file is not valid
  'POLICY_DENIED',
  'POLICY_RESERVED',
  'POLICY_INVALID',
  // a lease ended because its client reported no activity for the policy's TIMEOUT (docs/policy.md)
  'LEASE_IDLE',
  // a failover box (docs/scale-out.md): the primary's seats are not served now (it is online, or
  // offline for less than the delay, or the hours are used up); a failover lease ended (the primary is back)
  'FAILOVER_DORMANT',
  'FAILOVER_ENDED',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export class LicdError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'LicdError';
    this.code = code;
    this.details = details;
  }
  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isLicdError(e: unknown): e is LicdError {
  return e instanceof LicdError;
}

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && (ErrorCodes as readonly string[]).includes(s);
}
