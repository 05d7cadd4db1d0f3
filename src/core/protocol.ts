/**
 * MQTT API v1: the one typed map of topics and payloads. docs/protocol.md follows this file;
 * the daemon and the client SDK both use it, so they cannot disagree.
 */
import type { Alert } from './alerts.ts';
import type { ErrorCode } from './errors.ts';
import type { FailoverView } from './failover.ts';
import type { GrantEnvelope } from './grant-batch.ts';
import type { Availability } from './model.ts';
import type { SignedEnvelope } from './signed.ts';
import type { PolicyFeatureView } from './policy.ts';

export const TOPIC_PREFIX = 'licd/v1';

export const topics = {
  /** Retained. The daemon's state; its last will sets {state: "offline"}. */
  serverState: `${TOPIC_PREFIX}/server/state`,
  /** Retained. The trust chain clients verify grants and tokens with: {entitlement, delegation}. */
  serverChain: `${TOPIC_PREFIX}/server/chain`,
  /** Retained, one per feature: seats total, leased, borrowed, free; republished on every change. */
  feature: (name: string) => `${TOPIC_PREFIX}/feature/${name}`,
  featureWildcard: `${TOPIC_PREFIX}/feature/+`,
  /** A client publishes its requests here; the broker lets only that client id publish. */
  clientRequest: (clientId: string) => `${TOPIC_PREFIX}/client/${clientId}/req`,
  clientRequestWildcard: `${TOPIC_PREFIX}/client/+/req`,
  /** Answers to a client (and to an admin); only that client id may subscribe. */
  clientResponse: (clientId: string) => `${TOPIC_PREFIX}/client/${clientId}/res`,
  /** A client's last will: the broker publishes it when the client's connection dies. */
  clientWill: (clientId: string) => `${TOPIC_PREFIX}/client/${clientId}/will`,
  clientWillWildcard: `${TOPIC_PREFIX}/client/+/will`,
  /** Admin requests; the broker lets only admin identities publish here. */
  adminRequest: (clientId: string) => `${TOPIC_PREFIX}/admin/${clientId}/req`,
  adminRequestWildcard: `${TOPIC_PREFIX}/admin/+/req`,
  /**
   * The same three topics for a client logged in to the broker: the login name stands in the
   * topic, and the broker lets only that login (as that client id) use them, so licd knows who
   * sent a request. Required when the server has identity.requireLogin.
   */
  loginRequest: (login: string, clientId: string) => `${TOPIC_PREFIX}/login/${login}/${clientId}/req`,
  loginResponse: (login: string, clientId: string) => `${TOPIC_PREFIX}/login/${login}/${clientId}/res`,
  loginWill: (login: string, clientId: string) => `${TOPIC_PREFIX}/login/${login}/${clientId}/will`,
  loginRequestWildcard: `${TOPIC_PREFIX}/login/+/+/req`,
  loginWillWildcard: `${TOPIC_PREFIX}/login/+/+/will`,
  /** Retained. The active alerts with user and host names (AlertsResult); admins only (docs/monitoring.md). */
  alerts: `${TOPIC_PREFIX}/alerts`,
} as const;

/** Where the topics of a box of a cluster live: licd/v1/s/<server id>/... (docs/scale-out.md). */
export const serverPrefix = (server: string): string => `${TOPIC_PREFIX}/s/${server}`;
/** Every box's retained state, and availability, in a cluster. */
export const clusterTopics = {
  serverStateWildcard: `${TOPIC_PREFIX}/s/+/server/state`,
  featureWildcard: `${TOPIC_PREFIX}/s/+/feature/+`,
} as const;

/** The server id of a cluster box's state topic (licd/v1/s/<server>/server/state), or null for any other topic. */
export function serverOfStateTopic(topic: string): string | null {
  const p = topic.split('/');
  return p.length === 6 && topic.startsWith(`${TOPIC_PREFIX}/s/`) && p[4] === 'server' && p[5] === 'state' ? p[3]! : null;
}

/**
 * The topics of one box of a cluster: the same map with licd/v1 replaced by licd/v1/s/<server>.
 * A lone box (server null) keeps the topics above unchanged.
 */
export function topicsOf(server: string | null | undefined): typeof topics {
  if (!server) return topics;
  const prefix = serverPrefix(server);
  const move = (t: string) => prefix + t.slice(TOPIC_PREFIX.length);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(topics)) out[k] = typeof v === 'string' ? move(v) : (...a: string[]) => move((v as (...x: string[]) => string)(...a));
  return out as typeof topics;
}

/** Parses a topic the daemon subscribes to into its kind, client id and (login topics) login. */
export function parseTopic(topic: string, prefix: string = TOPIC_PREFIX): { kind: 'request' | 'admin' | 'will'; clientId: string; login?: string } | null {
  if (prefix !== TOPIC_PREFIX) {
    if (!topic.startsWith(`${prefix}/`)) return null;
    topic = TOPIC_PREFIX + topic.slice(prefix.length);
  }
  const parts = topic.split('/');
  if (parts.length === 6 && parts[0] === 'licd' && parts[1] === 'v1' && parts[2] === 'login') {
    if (parts[5] === 'req') return { kind: 'request', clientId: parts[4]!, login: parts[3]! };
    if (parts[5] === 'will') return { kind: 'will', clientId: parts[4]!, login: parts[3]! };
    return null;
  }
  if (parts.length !== 5 || parts[0] !== 'licd' || parts[1] !== 'v1') return null;
  const clientId = parts[3]!;
  if (parts[2] === 'client' && parts[4] === 'req') return { kind: 'request', clientId };
  if (parts[2] === 'client' && parts[4] === 'will') return { kind: 'will', clientId };
  if (parts[2] === 'admin' && parts[4] === 'req') return { kind: 'admin', clientId };
  return null;
}

// ---- payloads -------------------------------------------------------------------------------

export interface LeaseView {
  id: string;
  feature: string;
  count: number;
  user: string;
  host: string;
  clientId: string;
  pid: number;
  since: string;
  until: string;
  /** lingering: checked in, kept for its user@host for the policy's LINGER (docs/policy.md). */
  state: 'active' | 'disconnected' | 'lingering';
}

export interface BorrowView {
  id: string;
  feature: string;
  count: number;
  user: string;
  hostId: string;
  hostName: string;
  since: string;
  until: string;
  state: 'active' | 'lost';
  autoRenew: boolean;
  via: 'online' | 'file';
}

export interface DongleView {
  present: boolean;
  serial: string | null;
  emulated: boolean;
  /** Why it is absent, when it is. */
  reason?: string;
}

export interface ServerState {
  state: 'online' | 'offline';
  version: string;
  since: string;
  /** Development material (dev vendor key, emulated dongle, demo entitlement) is in use. */
  development: boolean;
  dongle: DongleView;
  entitlement: { id: string; customer: string } | null;
  features: string[];
  /** Why granting is limited, if it is (dongle absent, quarantine, clock set back). */
  warnings: string[];
  /**
   * The broker's TLS listener, when licd knows it: the SHA-256 fingerprint of its certificate
   * (SHA256:AB:CD:...) for clients to pin, and its port when licd runs it.
   */
  tls?: { fingerprint: string; port?: number };
  /**
   * Active alerts (docs/monitoring.md), without user or host names: everyone can read this topic.
   * The full alerts are on licd/v1/alerts and the admin op alerts.list.
   */
  alerts?: AlertSummary[];
  /** A failover box (docs/scale-out.md): whose seats it mirrors, dormant or active since when, hours used. */
  failover?: FailoverView;
}

export interface AlertSummary {
  kind: Alert['kind'];
  severity: Alert['severity'];
  since: string;
  feature?: string;
  summary: string;
}

/** Result of the admin op alerts.list, and the retained payload of licd/v1/alerts. */
export interface AlertsResult {
  alerts: Alert[];
  /** When the list last changed. */
  updated: string;
  /** How many active alerts are not in the list (it carries at most 100, the most severe first). */
  more?: number;
}

export interface FeatureStatus extends Availability {
  leases: LeaseView[];
  borrows: BorrowView[];
  /** Entries left out of the lists by the status `limit`. */
  more?: { leases: number; borrows: number };
  /** Checkouts waiting for a seat of this feature, in serving order (docs/policy.md, "Queueing"); only when there are some. */
  queue?: WaiterView[];
  /** The sharing policy's rules for this feature (docs/policy.md), when it has any: reservations with their use, MAX, INCLUDE, EXCLUDE. */
  policy?: PolicyFeatureView;
}

/** A product (docs/borrowing.md, "Products"): the licenses one machine running it needs, by feature. */
export interface ProductView {
  id: string;
  name: string;
  licenses: Array<{ feature: string; type: string; count: number }>;
}

export interface StatusResult {
  server: ServerState;
  features: FeatureStatus[];
  /** The entitlement's products (one per feature when it lists none); with `feature`, those that need it. */
  products: ProductView[];
  quarantine: Array<{ feature: string; seats: number; until: string }>;
  /**
   * While a quarantine holds seats: the dongle serial and counter value a vendor release must
   * name (licctl vendor release-quarantine --serial S --counter N).
   */
  quarantineBinding?: { dongleSerial: string; counter: string; reason: string };
  /** Admins' blocks in force (lease.revoke with block), when there are any. */
  blocks?: Array<{ feature: string; user: string; host: string; until: string }>;
}

export interface CheckoutParams {
  feature: string;
  version?: string;
  count?: number;
  user: string;
  host: string;
  pid: number;
  /** Requested lease time to live in seconds (the server clamps it to its limits). */
  ttl?: number;
  /** Wait for a seat when none is free (docs/policy.md, "Queueing"): answered `queued`, granted later by a queue.granted notice. */
  wait?: boolean;
  /** With wait: leave the queue after this many seconds (default a day); told by queue.failed TIMEOUT. */
  maxWait?: number;
}

/** A checkout that waits: its place in the feature's queue (the answer `queued` and the queue.position notice). */
export interface QueueView {
  feature: string;
  /** The pid of the checkout: a client with several waiting processes tells them apart by it. */
  pid: number;
  /** 1 = next to be served. */
  position: number;
  /** Waiters of the feature in all. */
  waiting: number;
  /** A rough estimate of the wait in seconds (from how long seats of the feature were held lately); null: no data yet. */
  estimate: number | null;
  /** When it leaves the queue if not served (its maxWait). */
  until: string;
}

export interface CheckoutQueued {
  status: 'queued';
  queue: QueueView;
}

/** A waiting checkout in status (per feature, in serving order). */
export interface WaiterView {
  position: number;
  user: string;
  host: string;
  clientId: string;
  pid: number;
  count: number;
  priority: number;
  since: string;
  until: string;
}

export interface CheckoutResult {
  status: 'granted' | 'extended';
  lease: LeaseView;
  /** Seconds between heartbeats the client should keep. */
  heartbeat: number;
  /**
   * The grant, signed by the daemon's session key (chained to the dongle and the vendor); a grant
   * of a batch carries its proof (`batch`, docs/tokens.md).
   */
  grant?: GrantEnvelope;
}

export interface HeartbeatParams {
  leases?: string[];
  /** Seconds since the application last reported activity (SDK activity()); the policy's TIMEOUT judges it. */
  idle?: number;
}

export interface HeartbeatResult {
  renewed: Array<{ id: string; until: string }>;
  /** Leases this client no longer holds: check out again, unless `gone` says why not to. */
  unknown: string[];
  /**
   * Why some of the unknown leases are gone, when the server knows: a revoked lease is listed
   * here with code REVOKED, and the client must not check it out again on its own.
   */
  gone?: Record<string, { code: ErrorCode; message: string }>;
}

/** Parameters of the admin op lease.revoke. */
export interface RevokeParams {
  lease: string;
  /** Also refuse this user@host the feature for this many seconds (BLOCKED); survives restarts. */
  block?: number;
}

export interface RevokeResult {
  revoked: LeaseView;
  /** When the block of this user@host for the feature ends, if one was set. */
  blockedUntil?: string;
}

/**
 * Notices: unsolicited messages the server publishes on a client's answer topic. They have the
 * shape of a refused answer with `id: null`, so a client that knows no notices ignores them (no
 * request of its own has a null id). `op` names the notice.
 */
export const NOTICE_OPS = ['lease.lost', 'queue.position', 'queue.granted', 'queue.failed'] as const;
export type NoticeOp = (typeof NOTICE_OPS)[number];

/** lease.lost: the holder's lease was taken back (error.code REVOKED, or LICENSE_REDUCED by a new license); details say which. */
export interface LeaseLostNotice {
  id: null;
  ok: false;
  op: 'lease.lost';
  error: { code: ErrorCode; message: string; details: { lease: string; feature: string; blockedUntil?: string } };
}

/**
 * Queue notices (docs/policy.md, "Queueing"), only to a client that asked to wait: its place
 * changed; its seat was granted (the lease, as a checkout answer would give it); it left the queue
 * without a seat (TIMEOUT at its maxWait; POLICY_DENIED, BLOCKED, FEATURE_EXPIRED ... when a
 * change made its checkout impossible). The first two are ok: true: a client that never waits never gets them.
 */
export interface QueuePositionNotice {
  id: null;
  ok: true;
  op: 'queue.position';
  result: QueueView;
}

export interface QueueGrantedNotice {
  id: null;
  ok: true;
  op: 'queue.granted';
  result: CheckoutResult;
}

export interface QueueFailedNotice {
  id: null;
  ok: false;
  op: 'queue.failed';
  error: { code: ErrorCode; message: string; details: { feature: string; pid: number } & Record<string, unknown> };
}

export type Notice = LeaseLostNotice | QueuePositionNotice | QueueGrantedNotice | QueueFailedNotice;

/** Parameters of the admin op quarantine.release: a vendor-signed release document. */
export interface QuarantineReleaseParams {
  release: SignedEnvelope;
}

export interface QuarantineReleaseResult {
  /** Features whose held seats were released. */
  released: Array<{ feature: string; seats: number }>;
  /** Holds still in force (features the release did not name). */
  remaining: Array<{ feature: string; seats: number; until: string }>;
}

/** Result of the admin op activation.request: a request signed by the dongle (docs/activation.md). */
export interface ActivationRequestResult {
  request: SignedEnvelope;
  dongle: string;
  counter: string;
}

/** Parameters of the admin op license.install: a vendor-signed entitlement (the license file). */
export interface LicenseInstallParams {
  license: SignedEnvelope;
}

/** Parameters of the admin op activation.online: optionally a service URL other than activation.url. */
export interface ActivationOnlineParams {
  url?: string;
}

/** Result of license.install and activation.online (this one adds `url`). */
export interface LicenseInstallResult {
  installed: { id: string; issuedAt: string; sequence: number | null; customer: string };
  was: { id: string; issuedAt: string; sequence: number | null };
  /** The same license was installed already: nothing changed. */
  unchanged: boolean;
  added: string[];
  removed: string[];
  changed: string[];
  /** Leases ended because the new license has fewer seats or lacks their feature (LICENSE_REDUCED). */
  ended: Array<{ lease: string; feature: string; user: string; host: string }>;
  file: string;
  warning?: string;
  url?: string;
}

export interface CheckinParams {
  leases?: string[];
  feature?: string;
  pid?: number;
}

export interface CheckinResult {
  released: string[];
  unknown: string[];
  /** Waiting checkouts of this holder that left the queue (a check-in by feature, pid or all also ends waiting). */
  dequeued?: number;
}

export interface RequestBase {
  id: string;
  op: string;
}

export type Answer<T = unknown> =
  | { id: string | null; ok: true; op: string; result: T }
  | { id: string | null; ok: false; op: string | null; error: { code: ErrorCode; message: string; details?: Record<string, unknown> } };

export const CLIENT_OPS = [
  'status',
  'checkout',
  'heartbeat',
  'checkin',
  'borrow',
  'borrow.renew',
  'borrow.return',
  'borrow.list',
  'borrow.preview',
] as const;

export const ADMIN_OPS = [
  'lease.revoke',
  'borrows',
  'borrow.lost',
  'borrow.file',
  'return.file',
  'limits.get',
  'limits.set',
  'clock.accept',
  'quarantine.release',
  'lease.unblock',
  'activation.request',
  'license.install',
  'activation.online',
  // usage history and reports (docs/history.md)
  'report.usage',
  'report.users',
  'report.denials',
  'report.borrows',
  'report.advice',
  'report.series',
  'audit.head',
  'audit.export',
  'alerts.list',
  'policy.get',
  'policy.set',
] as const;

export type ClientOp = (typeof CLIENT_OPS)[number];
export type AdminOp = (typeof ADMIN_OPS)[number];

export const DEFAULT_MAX_PAYLOAD = 64 * 1024;
/** Answers above this are replaced by an error: brokers cut larger packets (mosquitto: 1 MiB here). */
export const MAX_ANSWER_BYTES = 512 * 1024;

/** `audit.head` (docs/audit.md): the head of the audit chain in memory and the last seal written. */
export interface AuditHeadResult {
  head: { seq: number; hash: string };
  sealed: { seq: number; at: string } | null;
  /** Records written after the last seal (sealed at the next interval or admin action). */
  unsealed: number;
  /** The session key that seals now (null: no dongle has delegated one yet). */
  sessionKey: string | null;
  sealIntervalSeconds: number;
}

/** `audit.export`: one page of records in sequence order, and the certificates its seals name. */
export interface AuditExportResult {
  records: Array<{ seq: number; at: string; kind: string; prev: string; hash: string; [field: string]: unknown }>;
  /** Entitlement and delegation envelopes by their sha-256 reference. */
  certs: Record<string, unknown>;
  /** The seq to ask for next (`from`), or null when this page reached the end. */
  next: number | null;
  head: { seq: number; hash: string };
}
