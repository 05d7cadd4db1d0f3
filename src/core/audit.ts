/**
 * The tamper-evident audit log (docs/audit.md): every grant, end, denial, borrow, license change,
 * quarantine and admin request becomes a record chained to the one before it by a hash; the head
 * of the chain is signed ("sealed") with the daemon's session key, which the dongle delegated and
 * the vendor's entitlement certifies. `verifyAudit` checks an export offline with the vendor
 * public key alone.
 *
 * Pure: the hash, the clock and the signature come in from outside; the store only through
 * `StateStore.scan` (read) and the mutations this returns (written by the service's batches).
 *
 * How records reach the disk. A seat change's records are computed in `prepare` (in the order
 * the changes are decided) and written in the same batch as the change. Events with no change of
 * their own (denials, admin requests, quarantines) wait in memory and go with the next batch, or
 * with a batch of their own that the daemon writes on a short timer (`takeFlush`). A batch that
 * fails leaves its sequence numbers unused: the chain in memory does not roll back (batches
 * prepared after it already chain on its records), so the next batch written carries a `void`
 * record naming the numbers that never reached the disk and the hashes on either side of them.
 */
import { concat, toHex, utf8 } from './bytes.ts';
import type { EventSink, SeatEvent } from './events.ts';
import { isoTime } from './iso-time.ts';
import type { Mutation } from './model.ts';
import type { Clock, Ed25519, RecordRange, StateStore } from './ports.ts';
import { envelopeSignedBytes, type SignedEnvelope } from './signed.ts';
import { verifyChain } from './trust.ts';

/** Domain of a record's hash (docs/audit.md, "The hash"). */
export const AUDIT_RECORD_DOMAIN = 'licd-audit/1';
/** Format of a seal's signed body (an envelope-style signature: ASCII(format) || 0x00 || body). */
export const AUDIT_SEAL_FORMAT = 'licd-audit-seal/1';
/** The first line of an export file (JSON lines). */
export const AUDIT_EXPORT_FORMAT = 'licd-audit-export/1';
/** The `prev` of the first record. */
export const GENESIS = '0'.repeat(64);
/** Record keys are the sequence number in 12 digits; certificates are `k!<sha-256 hex>`. */
export const SEQ_DIGITS = 12;
export const CERT_PREFIX = 'k!';
/** The key range of the records (digits sort before `:`, certificates after). */
export const RECORD_RANGE: RecordRange = { gte: '0', lt: ':' };

/**
 * SHA-256 of bytes, or of a string's UTF-8 bytes; `hex`, when the adapter has it, hashes a string
 * straight to hex (node's one-shot hash: 0.7 µs for a record against 3.5 µs through a Hash object
 * and the bytes; every checkout and checkin hashes two records).
 */
export type Sha256 = ((data: Uint8Array | string) => Uint8Array) & { hex?: (text: string) => string };

function sha256Hex(sha256: Sha256, text: string): string {
  return sha256.hex ? sha256.hex(text) : toHex(sha256(text));
}

export interface AuditRecord {
  seq: number;
  /** ISO time the event happened (the seal: when it was signed). */
  at: string;
  kind: string;
  prev: string;
  hash: string;
  [field: string]: unknown;
}

export function recordKey(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

/** JSON with object keys sorted at every level, no spaces: the bytes that are hashed and signed. */
export function canonicalJson(v: unknown): string {
  return canonical(v, null);
}

/**
 * canonicalJson, leaving out the top-level key `skip` (a record's own hash). It runs for every
 * audit record, twice per checkout and checkin, so it avoids the costly parts of the obvious way
 * (a JSON.stringify call for every key and value, Array.prototype.sort) while writing the same
 * bytes: a string of printable ASCII without `"` or `\` is its JSON text in quotes (anything else
 * goes through JSON.stringify), a finite number's JSON is String(n), and keys are put in order by
 * an insertion sort comparing UTF-16 code units, as sort() does (records come with their keys
 * nearly in order: eventFields writes them so).
 */
function canonical(v: unknown, skip: string | null): string {
  switch (typeof v) {
    case 'string':
      return jsonString(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      return JSON.stringify(v) ?? 'null';
  }
  if (v === null) return 'null';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + (v[i] === undefined ? 'null' : canonical(v[i], null));
    return out + ']';
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined || k === skip) continue;
    out += (first ? '' : ',') + jsonString(k) + ':' + canonical(x, null);
    first = false;
  }
  return out + '}';
}

/** Printable ASCII but `"` and `\`: the JSON text of such a string is the string in quotes. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function jsonString(s: string): string {
  return PLAIN.test(s) ? '"' + s + '"' : JSON.stringify(s);
}

export function recordHash(rec: Record<string, unknown>, sha256: Sha256): string {
  return sha256Hex(sha256, `${AUDIT_RECORD_DOMAIN}\0${canonical(rec, 'hash')}`);
}

/**
 * A record as read from the store, with its hash: kept as it was stored when it has one (records
 * of older licd versions, and the memory store), else computed from its content. A record edited
 * in the database then hashes to its edited content, and the next record's link names it.
 */
export function withHash<T>(rec: T, sha256: Sha256 | null): T {
  if (sha256 && rec !== null && typeof rec === 'object' && !Array.isArray(rec) && typeof (rec as { hash?: unknown }).hash !== 'string') {
    const r = rec as Record<string, unknown>;
    r.hash = recordHash(r, sha256);
  }
  return rec;
}

/** The content address of a certificate (an entitlement or delegation envelope): sha-256 of its canonical JSON. */
export function certRef(envelope: unknown, sha256: Sha256): string {
  return sha256Hex(sha256, canonicalJson(envelope));
}

/** The bytes a seal's signature covers (docs/audit.md, "Seals"). */
export function sealSignedBytes(s: { seq: number; at: string; head: string; sessionKey: string }): Uint8Array {
  return envelopeSignedBytes(AUDIT_SEAL_FORMAT, utf8(canonicalJson({ at: s.at, head: s.head, seq: s.seq, sessionKey: s.sessionKey })));
}

/** What the fields of an event become in its record (never a secret: no holder, no token). */
export function eventFields(e: SeatEvent): Record<string, unknown> {
  switch (e.type) {
    case 'lease.granted':
      // Keys in the order canonical() puts them (it then has little to sort).
      return { client: e.lease.clientId, count: e.lease.count, feature: e.lease.feature, host: e.lease.host, lease: e.lease.id, user: e.lease.user };
    case 'lease.ended':
      return { client: e.lease.clientId, count: e.lease.count, feature: e.lease.feature, host: e.lease.host, lease: e.lease.id, reason: e.reason, user: e.lease.user, ...(e.by !== undefined ? { by: e.by } : {}) };
    case 'checkout.denied':
      return { feature: e.feature, count: e.count, user: e.user, host: e.host, client: e.client, code: e.code };
    case 'borrow.granted':
    case 'borrow.renewed':
    case 'borrow.ended':
    case 'borrow.lost': {
      const b = e.borrow;
      return {
        borrow: b.id,
        feature: b.feature,
        count: b.count,
        user: b.user,
        host: b.hostName,
        hostId: b.hostId,
        client: b.clientId,
        via: b.via,
        token: b.tokenId,
        until: isoTime(b.expiresAt),
        ...(e.type === 'borrow.ended' ? { reason: e.reason } : {}),
        ...(e.type === 'borrow.lost' ? { by: e.by } : {}),
      };
    }
    case 'borrow.denied':
      return { feature: e.feature, user: e.user, host: e.host, client: e.client, code: e.code };
    case 'license.changed':
      return { license: e.serial, issued: isoTime(e.issued), features: e.features, ended: e.ended, by: e.by };
    case 'admin':
      return { op: e.op, client: e.client, ok: e.ok, ...(e.code !== undefined ? { code: e.code } : {}), ...(e.subject !== undefined ? { subject: e.subject } : {}) };
    case 'queue.joined':
      return { feature: e.feature, count: e.count, user: e.user, host: e.host, client: e.client, priority: e.priority };
    case 'queue.left':
      return { feature: e.feature, count: e.count, user: e.user, host: e.host, client: e.client, reason: e.reason, waitedMs: e.waitedMs, ...(e.lease !== undefined ? { lease: e.lease } : {}), ...(e.code !== undefined ? { code: e.code } : {}) };
    case 'quarantine':
      return { action: e.action, reason: e.reason, holds: e.holds.map((h) => ({ feature: h.feature, seats: h.seats, until: isoTime(h.until) })), ...(e.by !== undefined ? { by: e.by } : {}) };
    case 'failover':
      return {
        action: e.action,
        primary: e.primary,
        entitlement: e.entitlement,
        since: isoTime(e.since),
        features: e.features,
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
        ...(e.usedMs !== undefined ? { usedHours: Math.round(e.usedMs / 36_000) / 100 } : {}),
      };
    default:
      return {};
  }
}

/** The empty list a batch shares until it has something of its kind (frozen: a push would throw). */
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** What signs seals: the session key, the delegation that certifies it, the entitlement that certifies the dongle. */
export interface Sealer {
  sessionKey: string;
  sign(message: Uint8Array): Uint8Array;
  delegation: SignedEnvelope;
  entitlement: unknown;
}

export interface AuditChainDeps {
  sha256: Sha256;
  /** The time of records that are the log's own (void, dropped). */
  clock: Clock;
  /** Told when something waits to be written on its own (the daemon flushes soon). */
  onPending?: (urgent: boolean) => void;
  /** Admin requests that only read: recorded, but they ask for no seal of their own. */
  readOps?: ReadonlySet<string>;
  /** The most events kept waiting for a batch; beyond it they are counted and recorded as `dropped`. */
  maxPending?: number;
}

export interface Void {
  from: number;
  to: number;
  before: string;
  last: string;
  /** 'write failed' (its batch was refused), or 'missing at start' (after the last seal, found at start). */
  why: string;
}

interface Batch {
  first: number;
  last: number;
  before: string;
  lastHash: string;
  /** Events with no change of their own that rode in this batch (they happened: a failure re-queues them). */
  notes: SeatEvent[];
  voids: Void[];
  seal: boolean;
  /** The seal's time (when seal is set). */
  sealAt: string;
  certs: string[];
  start: Record<string, unknown> | null;
  dropped: number;
}

/** A batch of records of their own, for the daemon to write (takeFlush / settleFlush). */
export interface FlushBatch {
  mutations: Mutation[];
  token: object;
}

/**
 * The chain in memory: an event sink (prepare/settle/note) plus the flush the daemon drives.
 * Call `resume` with the last record on disk before any event.
 */
export class AuditChain implements EventSink {
  private seq = 0;
  private head = GENESIS;
  /**
   * Batches prepared and not yet settled, oldest first: `pendingKeys[i]` is the key `settle` names
   * for `pendingBatches[i]`. Two arrays, not a Map: a Map whose entries come and go rehashes
   * every few changes, and V8 keeps a link from each table it leaves to the next one. Once the
   * Map's table is in the old generation (the first full collection puts it there), each new
   * young table, and every batch and record it names, is held through that link until the next
   * full collection: in the closed loop, about 60 KB more promoted per scavenge and a full
   * collection every half second (docs/performance.md, "Maps that come and go"). Batches settle
   * in the order they were prepared, so the search finds its key first.
   */
  private readonly pendingKeys: object[] = [];
  private readonly pendingBatches: Batch[] = [];
  private notes: SeatEvent[] = [];
  private voids: Void[] = [];
  private startRecord: Record<string, unknown> | null = null;
  private sealWanted = false;
  private dropped = 0;
  private readonly certsWritten = new Set<string>();
  /** The last seal known written, and how many records were written after it. */
  private lastSeal: { seq: number; at: string } | null = null;
  private sinceSeal = 0;

  constructor(private readonly deps: AuditChainDeps) {}

  /** The last record on disk (null: none): the chain continues after it. */
  resume(last: { seq: number; hash: string } | null, lastSeal: { seq: number; at: string } | null = null, sinceSeal = 0, gaps: readonly Void[] = []): void {
    for (const g of gaps) this.addVoid({ ...g });
    this.seq = last?.seq ?? 0;
    this.head = last?.hash ?? GENESIS;
    this.lastSeal = lastSeal;
    this.sinceSeal = sinceSeal;
  }

  /** The head of the chain in memory (records prepared, written or not yet). */
  get headState(): { seq: number; hash: string; sealed: { seq: number; at: string } | null; unsealed: number } {
    return { seq: this.seq, hash: this.head, sealed: this.lastSeal, unsealed: this.sinceSeal };
  }

  /** Records written since the last seal (a seal on the interval is due when > 0). */
  get unsealed(): number {
    return this.sinceSeal;
  }

  /** A record of the daemon's start (version, session key, dongle) goes with the next batch. */
  started(fields: Record<string, unknown>, at: number): void {
    this.startRecord = { ...fields, at: isoTime(at) };
    this.sealWanted = true;
    this.deps.onPending?.(true);
  }

  /** Whether a flush has anything to write. */
  get hasPending(): boolean {
    return this.notes.length > 0 || this.voids.length > 0 || this.startRecord !== null || this.dropped > 0 || (this.sealWanted && this.sinceSeal + this.pendingRecords() > 0);
  }

  private pendingRecords(): number {
    let n = 0;
    for (const b of this.pendingBatches) n += b.last - b.first + 1;
    return n;
  }

  // ---- the event sink ----------------------------------------------------------------------

  prepare(events: readonly SeatEvent[]): Mutation[] {
    const b = this.begin();
    this.addQueued(b);
    for (const e of events) {
      if ((e.type === 'lease.granted' || e.type === 'lease.ended') && this.appendLease(b, e)) continue;
      this.append(b, e.type, isoTime(e.at), eventFields(e));
    }
    return this.finish(b, events);
  }

  settle(events: readonly SeatEvent[], ok: boolean): void {
    this.settleBatch(events, ok);
  }

  note(event: SeatEvent): void {
    if (this.notes.length >= (this.deps.maxPending ?? 10_000)) {
      this.dropped++;
      return;
    }
    this.notes.push(event);
    // An admin action or a quarantine is sealed at once; denials ride with the next batch.
    const urgent = (event.type === 'admin' && !(this.deps.readOps?.has(event.op) ?? false)) || event.type === 'quarantine';
    if (urgent) this.sealWanted = true;
    this.deps.onPending?.(urgent);
  }

  // ---- batches of their own (the daemon's timer) ---------------------------------------------

  /**
   * The records waiting (denials, admin requests, voids) and, when one is due and a sealer is
   * given, a seal of the head, as one batch to write; null when nothing waits.
   */
  takeFlush(sealer: Sealer | null, now: number, opts: { seal?: boolean } = {}): FlushBatch | null {
    const sealNow = sealer !== null && (this.sealWanted || opts.seal === true) && this.sinceSeal + this.pendingRecords() + this.notes.length + this.voids.length + (this.startRecord ? 1 : 0) > 0;
    if (!this.hasPending && !sealNow) return null;
    const token = {};
    const b = this.begin();
    this.addQueued(b);
    if (sealNow) {
      const delegation = certRef(sealer.delegation, this.deps.sha256);
      const entitlement = certRef(sealer.entitlement, this.deps.sha256);
      const at = isoTime(now);
      const seq = this.seq + 1;
      const sig = toHex(sealer.sign(sealSignedBytes({ seq, at, head: this.head, sessionKey: sealer.sessionKey })));
      this.append(b, 'seal', at, { sessionKey: sealer.sessionKey, delegation, entitlement, sig });
      b.seal = true;
      b.sealAt = at;
      b.certs = [];
      b.extra = [];
      this.sealWanted = false;
      for (const [ref, env] of [
        [delegation, sealer.delegation],
        [entitlement, sealer.entitlement],
      ] as const) {
        if (this.certsWritten.has(ref)) continue;
        this.certsWritten.add(ref);
        b.certs.push(ref);
        b.extra.push({ kind: 'rec.put', space: 'audit', key: CERT_PREFIX + ref, value: env });
      }
    }
    const mutations = this.finish(b, token);
    return mutations.length === 0 ? null : { mutations, token };
  }

  settleFlush(token: object, ok: boolean): void {
    this.settleBatch(token, ok);
  }

  // ---- internals ----------------------------------------------------------------------------

  private begin(): Batch & { extra: Mutation[]; puts: Mutation[] } {
    // The lists most batches leave empty share one frozen empty array (a push on it would throw):
    // a checkout's batch allocates only its own list of records.
    return { first: this.seq + 1, last: this.seq, before: this.head, lastHash: this.head, notes: NONE, voids: NONE, seal: false, sealAt: '', certs: NONE, start: null, dropped: 0, extra: NONE, puts: [] };
  }

  /** Voids, the start record and waiting events first: they were decided before this batch. */
  private addQueued(b: Batch & { puts: Mutation[] }): void {
    if (this.voids.length > 0) {
      b.voids = this.voids;
      this.voids = [];
      for (const v of b.voids) this.append(b, 'void', this.nowIso(), { from: v.from, to: v.to, before: v.before, last: v.last, why: v.why });
    }
    if (this.startRecord) {
      const { at, ...fields } = this.startRecord;
      this.append(b, 'start', String(at), fields);
      b.start = this.startRecord;
      this.startRecord = null;
    }
    if (this.dropped > 0) {
      this.append(b, 'dropped', this.nowIso(), { count: this.dropped, why: 'more events waited for a write than audit.maxPending' });
      b.dropped = this.dropped;
      this.dropped = 0;
    }
    if (this.notes.length === 0) return;
    for (const e of this.notes) this.append(b, e.type, isoTime(e.at), eventFields(e));
    b.notes = this.notes;
    this.notes = [];
  }

  private nowIso(): string {
    return isoTime(this.deps.clock.now());
  }

  private append(b: Batch & { puts: Mutation[] }, kind: string, at: string, fields: Record<string, unknown>): void {
    const seq = ++this.seq;
    // `fields` is this record's own new object (eventFields and the callers make one each time).
    const rec = fields;
    rec.seq = seq;
    rec.at = at;
    rec.kind = kind;
    rec.prev = this.head;
    this.link(b, seq, rec, canonical(rec, 'hash'));
  }

  /**
   * Puts a record into the chain: its hash over `json`, its canonical text without the hash, which
   * is also the text the store keeps, one encoding for both. The hash is left out of the stored
   * text (it follows from the rest; readers put it back with withHash): two hex digests were 40 %
   * of a record's bytes, and each byte written is rewritten by LevelDB's compactions
   * (docs/audit.md, "Storage").
   */
  private link(b: Batch & { puts: Mutation[] }, seq: number, rec: Record<string, unknown>, json: string): void {
    const hash = sha256Hex(this.deps.sha256, `${AUDIT_RECORD_DOMAIN}\0${json}`);
    rec.hash = hash;
    this.head = hash;
    b.last = seq;
    b.lastHash = hash;
    b.puts.push({ kind: 'rec.put', space: 'audit', key: recordKey(seq), value: rec, json });
  }

  /**
   * `append` for the two records of every checkout and check-in: the record is made with its keys
   * already in canonical order (UTF-16 order, as canonical() sorts them: at, by, client, count,
   * feature, host, kind, lease, prev, reason, seq, user), so JSON.stringify writes its canonical
   * text in one pass, as one flat string (test/core/canonical-time.test.ts holds it to
   * canonicalJson). False, with nothing appended, when a field is not what a lease holds (a
   * string, a finite count): `append` then takes the record the general way.
   */
  private appendLease(b: Batch & { puts: Mutation[] }, e: Extract<SeatEvent, { type: 'lease.granted' | 'lease.ended' }>): boolean {
    const l = e.lease;
    const ended = e.type === 'lease.ended';
    if (
      typeof l.clientId !== 'string' ||
      typeof l.feature !== 'string' ||
      typeof l.host !== 'string' ||
      typeof l.id !== 'string' ||
      typeof l.user !== 'string' ||
      typeof l.count !== 'number' ||
      !Number.isFinite(l.count) ||
      (ended && (typeof e.reason !== 'string' || (e.by !== undefined && typeof e.by !== 'string')))
    ) {
      return false;
    }
    const seq = ++this.seq;
    const at = isoTime(e.at);
    const prev = this.head;
    // Three literal shapes, each with its keys in canonical order (no key added later but the hash).
    const rec: Record<string, unknown> = !ended
      ? { at, client: l.clientId, count: l.count, feature: l.feature, host: l.host, kind: e.type, lease: l.id, prev, seq, user: l.user }
      : e.by === undefined
        ? { at, client: l.clientId, count: l.count, feature: l.feature, host: l.host, kind: e.type, lease: l.id, prev, reason: e.reason, seq, user: l.user }
        : { at, by: e.by, client: l.clientId, count: l.count, feature: l.feature, host: l.host, kind: e.type, lease: l.id, prev, reason: e.reason, seq, user: l.user };
    this.link(b, seq, rec, JSON.stringify(rec));
    return true;
  }

  private finish(b: Batch & { extra: Mutation[]; puts: Mutation[] }, key: object): Mutation[] {
    if (b.puts.length === 0) return [];
    // The batch is kept as it is (its two lists are not read again): no copy on the checkout path.
    this.pendingKeys.push(key);
    this.pendingBatches.push(b);
    const puts = b.puts;
    for (const m of b.extra) puts.push(m);
    return puts;
  }

  private settleBatch(key: object, ok: boolean): void {
    const i = this.pendingKeys.indexOf(key);
    if (i < 0) return;
    const b = this.pendingBatches[i]!;
    if (i === 0) {
      this.pendingKeys.shift();
      this.pendingBatches.shift();
    } else {
      this.pendingKeys.splice(i, 1);
      this.pendingBatches.splice(i, 1);
    }
    if (ok) {
      const n = b.last - b.first + 1;
      if (b.seal) {
        // Records prepared after the seal (in later batches) are not covered by it.
        // The seal is the last record of its batch. Records of batches prepared after it are counted when they settle.
        this.lastSeal = { seq: b.last, at: b.sealAt };
        this.sinceSeal = 0;
      } else this.sinceSeal += n;
      return;
    }
    // The batch did not reach the disk (or may have, if only its fsync failed): its numbers are
    // voided by the next batch; the events that happened anyway (denials, admin requests) go again.
    this.addVoid({ from: b.first, to: b.last, before: b.before, last: b.lastHash, why: 'write failed' });
    for (const v of b.voids) this.addVoid(v);
    this.notes = [...b.notes, ...this.notes];
    if (b.start && !this.startRecord) this.startRecord = b.start;
    this.dropped += b.dropped;
    if (b.seal) this.sealWanted = true;
    for (const c of b.certs) this.certsWritten.delete(c);
    this.deps.onPending?.(false);
  }

  private addVoid(v: Void): void {
    // Runs that meet become one: a void that failed to be written is voided with its own batch.
    this.voids.push(v);
    this.voids.sort((a, c) => a.from - c.from);
    const merged: Void[] = [];
    for (const x of this.voids) {
      const top = merged.at(-1);
      if (top && x.from <= top.to + 1) {
        if (x.to > top.to) {
          top.to = x.to;
          top.last = x.last;
        }
      } else merged.push({ ...x });
    }
    this.voids = merged;
  }
}

/** The last record on disk and the last seal before it (a bounded reverse scan), for `resume`. */
/**
 * Numbers missing after the last seal are voided at start ('missing at start'): a batch whose write
 * was refused, with a later one written before licd could say so (a failed counter step), then a
 * crash. The unsealed tail is not protected anyway (docs/audit.md); a gap before a seal never is
 * voided, and verify calls it a deletion.
 */
export async function readChainHead(
  store: Pick<StateStore, 'scan'>,
  maxScan = 100_000,
  /** Puts back the hash a stored record leaves out (withHash); without it, such a record is malformed. */
  sha256: Sha256 | null = null,
): Promise<{ last: { seq: number; hash: string } | null; lastSeal: { seq: number; at: string } | null; sinceSeal: number; gaps: Void[]; problem?: string }> {
  let last: { seq: number; hash: string } | null = null;
  let problem: string | undefined;
  let n = 0;
  const gaps: Void[] = [];
  let above: { seq: number; prev: string } | null = null;
  // A record's hash is needed only for the last one and at a gap: not computed for every record
  // scanned (the unsealed tail can be long when no dongle has been seen to seal it).
  const hashOf = (r: Partial<AuditRecord> | null): string | null => (typeof r?.hash === 'string' ? r.hash : r !== null && typeof r === 'object' && !Array.isArray(r) && sha256 ? recordHash(r as Record<string, unknown>, sha256) : null);
  for await (const [key, value] of store.scan('audit', { ...RECORD_RANGE, reverse: true, limit: maxScan })) {
    const r = value as Partial<AuditRecord> | null;
    const wellFormed = r !== null && typeof r === 'object' && typeof r.seq === 'number' && r.seq === Number(key) && (typeof r.hash === 'string' || sha256 !== null) && typeof r.prev === 'string';
    if (wellFormed && above && above.seq > r.seq! + 1) gaps.unshift({ from: r.seq! + 1, to: above.seq - 1, before: hashOf(r)!, last: above.prev, why: 'missing at start' });
    above = wellFormed ? { seq: r.seq!, prev: r.prev! } : null;
    if (last === null) {
      const seq = Number(key);
      const hash = hashOf(r);
      if (r && hash !== null && /^[0-9a-f]{64}$/.test(hash) && r.seq === seq) last = { seq, hash };
      else {
        // A last record that is not one (edited while licd was stopped): the chain goes on from
        // its number, and verify names it.
        problem = `the last audit record (key ${key}) is malformed`;
        last = { seq: Number.isSafeInteger(seq) ? seq : 0, hash: hash ?? GENESIS };
      }
    }
    if (r && r.kind === 'seal' && typeof r.seq === 'number' && typeof r.at === 'string') return { last, lastSeal: { seq: r.seq, at: r.at }, sinceSeal: n, gaps, ...(problem ? { problem } : {}) };
    n++;
  }
  if (above && above.seq > 1 && n < maxScan) gaps.unshift({ from: 1, to: above.seq - 1, before: GENESIS, last: above.prev, why: 'missing at start' });
  return { last, lastSeal: null, sinceSeal: n, gaps, ...(problem ? { problem } : {}) };
}

// ---- verification -------------------------------------------------------------------------

export type AuditProblemReason = 'edited' | 'deleted' | 'reordered' | 'bad-seal' | 'malformed' | 'gap';

export interface AuditProblem {
  seq: number;
  reason: AuditProblemReason;
  message: string;
}

export interface AuditVerdict {
  ok: boolean;
  /** Records read, first and last sequence number. */
  records: number;
  first: number | null;
  last: number | null;
  /** Every record up to this one is covered by a valid seal. */
  sealedThrough: number | null;
  /** Records after the last valid seal: not yet sealed (not proven). */
  unsealed: { from: number; to: number } | null;
  seals: number;
  /** Sequence numbers whose batch was not written (a failed write), as the chain itself says. */
  voided: Array<{ from: number; to: number }>;
  /** The session keys and dongles that sealed. */
  keys: Array<{ sessionKey: string; dongle: string; emulated: boolean; entitlement: string }>;
  problem: AuditProblem | null;
}

export interface VerifyOptions {
  vendorPublicKey: Uint8Array;
  ed: Ed25519;
  sha256: Sha256;
  /** Start at the first record with seq >= from (its link to the one before is taken as given). */
  from?: number;
}

/**
 * Verifies records (in the order given: key order) against their hashes, links and seals.
 * Stops at the first problem, naming the sequence number and what is wrong.
 */
export function verifyAudit(input: readonly unknown[], certs: ReadonlyMap<string, unknown>, o: VerifyOptions): AuditVerdict {
  const records = input.filter((r) => o.from === undefined || typeof (r as AuditRecord)?.seq !== 'number' || (r as AuditRecord).seq >= o.from);
  const v: AuditVerdict = { ok: true, records: records.length, first: null, last: null, sealedThrough: null, unsealed: null, seals: 0, voided: [], keys: [], problem: null };
  const fail = (seq: number, reason: AuditProblemReason, message: string): AuditVerdict => {
    v.ok = false;
    v.problem = { seq, reason, message };
    return v;
  };
  // Shape first: every record a JSON object with a whole seq.
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as Partial<AuditRecord> | null;
    if (!r || typeof r !== 'object' || !Number.isSafeInteger(r.seq) || (r.seq as number) < 1 || typeof r.hash !== 'string' || typeof r.prev !== 'string' || typeof r.kind !== 'string' || typeof r.at !== 'string') {
      const prevSeq = i > 0 ? (records[i - 1] as AuditRecord)?.seq : undefined;
      return fail(typeof r?.seq === 'number' ? r.seq : typeof prevSeq === 'number' ? prevSeq + 1 : 0, 'malformed', `record ${i + 1} of the export is not an audit record (seq, at, kind, prev, hash)`);
    }
  }
  const recs = records as AuditRecord[];
  const present = new Set(recs.map((r) => r.seq));
  // The voids the chain declares (checked as records like any other when they are reached).
  const voids = recs.filter((r) => r.kind === 'void' && Number.isSafeInteger(r.from) && Number.isSafeInteger(r.to)).map((r) => ({ from: r.from as number, to: r.to as number, before: String(r.before), last: String(r.last), at: r.seq }));
  let expected = recs[0]?.seq ?? 1;
  let prevHash: string | null = recs[0] ? (recs[0].seq === 1 ? GENESIS : null) : GENESIS;
  if (o.from === undefined && recs[0] && recs[0].seq !== 1) {
    const first = recs[0].seq;
    const covered = voids.find((x) => x.from === 1 && x.to >= first - 1);
    if (!covered) return fail(1, 'deleted', `records 1 to ${first - 1} are missing: the export starts at ${first} (deleted, or give --from ${first})`);
  }
  let lastSealed: number | null = null;
  const keysSeen = new Map<string, AuditVerdict['keys'][number]>();
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (recordHash(r, o.sha256) !== r.hash) return fail(r.seq, 'edited', `record ${r.seq} (${r.kind}) was edited: its content does not match its hash`);
    if (r.seq < expected) {
      return fail(r.seq, 'reordered', `record ${r.seq} (${r.kind}) comes after record ${recs[i - 1]?.seq}: the records were reordered`);
    }
    if (r.seq > expected) {
      // Missing numbers: voided by the chain itself, reordered, or deleted.
      const a = expected;
      const z = r.seq - 1;
      const later = [...Array(z - a + 1).keys()].map((k) => a + k).find((s) => present.has(s));
      if (later !== undefined) return fail(a, 'reordered', `record ${later} comes after record ${r.seq}: the records were reordered`);
      const vd = voids.find((x) => x.from <= a && z <= x.to && x.at > z);
      if (!vd) return fail(a, 'deleted', a === z ? `record ${a} is missing (deleted)` : `records ${a} to ${z} are missing (deleted)`);
      if (a === vd.from && prevHash !== null && vd.before !== prevHash) return fail(a, 'deleted', `records ${a} to ${z} are missing and the void record ${vd.at} that would explain them names another chain`);
      if (z === vd.to && r.prev !== vd.last) return fail(r.seq, 'edited', `record ${r.seq} does not follow the void record ${vd.at} (its link to ${z} is not the one voided)`);
      v.voided.push({ from: a, to: z });
      prevHash = r.prev;
    }
    if (prevHash !== null && r.prev !== prevHash) {
      const before = recs[i - 1];
      return fail(before ? before.seq : r.seq, 'edited', before ? `record ${before.seq} (${before.kind}) was edited and its hash recomputed: record ${r.seq} links to another` : `record ${r.seq} does not start the chain`);
    }
    if (r.kind === 'seal') {
      const problem = checkSeal(r, certs, o, keysSeen);
      if (problem) return fail(r.seq, 'bad-seal', `the seal at record ${r.seq} is bad: ${problem}`);
      v.seals++;
      lastSealed = r.seq;
    }
    prevHash = r.hash;
    expected = r.seq + 1;
  }
  // Records voided by a void record but present anyway (their write landed though it was refused).
  for (const x of voids) for (const r of recs) if (r.seq >= x.from && r.seq <= x.to && !v.voided.some((y) => r.seq >= y.from && r.seq <= y.to)) v.voided.push({ from: r.seq, to: r.seq });
  v.first = recs[0]?.seq ?? null;
  v.last = recs.at(-1)?.seq ?? null;
  v.sealedThrough = lastSealed;
  if (v.last !== null && (lastSealed === null || lastSealed < v.last)) v.unsealed = { from: lastSealed === null ? v.first! : lastSealed + 1, to: v.last };
  v.keys = [...keysSeen.values()];
  return v;
}

function checkSeal(r: AuditRecord, certs: ReadonlyMap<string, unknown>, o: VerifyOptions, keys: Map<string, AuditVerdict['keys'][number]>): string | null {
  const sk = r.sessionKey;
  const sig = r.sig;
  if (typeof sk !== 'string' || !/^[0-9a-f]{64}$/.test(sk) || typeof sig !== 'string' || !/^[0-9a-f]{128}$/.test(sig)) return 'it lacks a session key or signature';
  const delegation = certs.get(String(r.delegation));
  const entitlement = certs.get(String(r.entitlement));
  if (delegation === undefined || entitlement === undefined) return `the export lacks the ${delegation === undefined ? 'delegation' : 'entitlement'} it names (${String(delegation === undefined ? r.delegation : r.entitlement).slice(0, 16)}...)`;
  if (certRef(delegation, o.sha256) !== r.delegation || certRef(entitlement, o.sha256) !== r.entitlement) return 'the delegation or entitlement in the export is not the one it names';
  const at = Date.parse(r.at);
  let chain;
  try {
    chain = verifyChain({ entitlement, delegation }, { vendorPublicKey: o.vendorPublicKey, ed: o.ed, at });
  } catch (e) {
    return `its key is not certified: ${(e as Error).message}`;
  }
  if (toHex(chain.delegation.sessionKey) !== sk) return `it was signed by session key ${sk.slice(0, 16)}..., which its delegation does not certify (the delegation names ${toHex(chain.delegation.sessionKey).slice(0, 16)}...)`;
  const ok = o.ed.verify(hexBytes(sk), sealSignedBytes({ seq: r.seq, at: r.at, head: r.prev, sessionKey: sk }), hexBytes(sig));
  if (!ok) return 'its signature does not verify with its session key (forged, or the chain before it was changed)';
  if (!keys.has(sk)) keys.set(sk, { sessionKey: sk, dongle: chain.delegation.dongleSerial, emulated: chain.delegation.emulated, entitlement: chain.entitlement.id });
  return null;
}

function hexBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}
