/** Seat state records: what the store persists and the status shows. Times are ms since epoch. */
export interface Lease {
  id: string;
  feature: string;
  count: number;
  /** The MQTT client that holds it: the only client that may heartbeat or check it in. */
  clientId: string;
  /** Process id on the client, so two processes of one client hold separate leases. */
  pid: number;
  user: string;
  host: string;
  since: number;
  expiresAt: number;
  ttlMs: number;
  /** Set when the client's connection died (its last will); the lease then ends after the grace. */
  disconnectedAt: number | null;
  /**
   * Hash of the holder secret the client sent with its checkout: heartbeats, check-ins and last
   * wills act on the lease only with the same secret, so taking over the MQTT client id gains
   * nothing. Absent on leases stored before holder secrets: the first request of the same client
   * id that carries a secret binds them (docs/protocol.md).
   */
  holder?: string;
  /**
   * Checked in, but kept for its user@host until expiresAt (the policy's LINGER, docs/policy.md):
   * a checkout by the same user@host of the feature takes it back at once; else it ends then.
   */
  lingering?: true;
  /** When its client last reported activity (heartbeat `idle`); absent: never reported, never judged idle. */
  activeAt?: number;
  /** How long its checkout waited in the queue before this lease was granted, ms (absent: it did not wait). */
  waitedMs?: number;
  /**
   * The end the stored record of this lease covers, written ahead of `expiresAt` by a heartbeat
   * (SeatTable.heartbeat): a heartbeat whose new end is within it is answered without a write.
   * In memory it is set only once that record is durable. At a start, a stored lease whose
   * `storedUntil` is past its stored `expiresAt` may have been renewed up to it, and no later than
   * one TTL after the start: restoredEnd (docs/protocol.md, "Heartbeats and the disk").
   */
  storedUntil?: number | undefined;
}

export interface Borrow {
  id: string;
  feature: string;
  count: number;
  user: string;
  /** Stable host id from the client SDK (not a MAC address). */
  hostId: string;
  hostName: string;
  /** The client's own Ed25519 public key (hex): the token is bound to it. */
  clientKey: string;
  /** The MQTT client that borrowed, if online. */
  clientId: string | null;
  since: number;
  expiresAt: number;
  /** The admin marked it lost: the seat stays reserved until expiry (the token works offline). */
  lost: boolean;
  autoRenew: boolean;
  /** How the token was issued: online over MQTT or from an air-gapped request file. */
  via: 'online' | 'file';
  /** The client's request id, so a repeated request gets the same tokens, not more seats. */
  requestId: string;
  /** The current token, and when it was issued (renewals issue a new one for the same seat). */
  tokenId: string;
  tokenIssuedAt: number;
  /** The borrow period asked for, hours (a refresh on reconnect restores it). */
  hours: number;
  /**
   * Set when a clock step moved `expiresAt` (docs/threat-model.md, "Clock steps"): the expiry
   * the current token states, in the terms it was issued in. The reservation never ends before it.
   */
  tokenExpires?: { token: string; at: number };
}

/** One state change. A change of seat state is a list of these, written as one atomic batch. */
export type Mutation =
  | { kind: 'lease.put'; lease: Lease }
  | { kind: 'lease.del'; id: string }
  | { kind: 'borrow.put'; borrow: Borrow }
  | { kind: 'borrow.del'; id: string }
  | { kind: 'meta.put'; key: string; value: unknown }
  /**
   * A record of a space kept beside the seat state (usage history, the audit log): written in the
   * same batch, never loaded at start (read with StateStore.scan). Keys sort as strings.
   */
  /** `json`, when given, is `value` already encoded as JSON: a store may write it as it is (an audit record's text, made for its hash anyway). */
  | { kind: 'rec.put'; space: RecordSpace; key: string; value: unknown; json?: string }
  | { kind: 'rec.del'; space: RecordSpace; key: string };

/** The record spaces (docs/storage.md); 'queue': the checkouts waiting for a seat, read back at start (docs/policy.md, "Durability"). */
export type RecordSpace = 'history' | 'audit' | 'queue';

export interface Change<T> {
  result: T;
  mutations: Mutation[];
  /** Puts the in-memory table back as it was before this change (when the write failed). */
  undo(): void;
  /** Called once the change's write is durable (not when it failed): what memory may only know then. */
  durable?: () => void;
}

export interface Availability {
  feature: string;
  product: string;
  version: string;
  type: string;
  total: number;
  leased: number;
  borrowed: number;
  /** Seats held back by a quarantine (see docs/threat-model.md). */
  held: number;
  free: number;
  expires: string | null;
  borrow: { allowed: boolean; maxHours: number };
}
