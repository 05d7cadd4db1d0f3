/**
 * What happened to seats, told to the parts that keep records of it (usage history, the audit log,
 * metrics, alerts). The service emits events; sinks observe them. Pure: no I/O here.
 *
 * Events that come with a change of seat state (a grant, a check-in, an expiry) are given to every
 * sink's `prepare` before the change is written: the records a sink returns are written in the same
 * batch (the same group commit, the same fsync) as the change itself, so a record exists exactly
 * when the change does. `settle` follows with whether the batch was written (ok) or undone (the
 * write failed: the events did not happen). Events with no change of state (a denial, an admin
 * request that was refused, a license refused) go to `note` only.
 *
 * Sinks are called synchronously on the request path: keep them to a few microseconds (count, push
 * to an array); do slow work (rollups, signatures) off the path, on a timer of the sink's own.
 */
import type { ErrorCode } from './errors.ts';
import type { Borrow, Lease, Mutation } from './model.ts';

export type LeaseEndReason =
  /** The holder checked it in. */
  | 'checkin'
  /** No heartbeat within its time to live. */
  | 'expired'
  /** Its client's connection died and it did not come back within the grace. */
  | 'client-gone'
  /** An admin revoked it. */
  | 'revoked'
  /** A new license has fewer seats or no longer has the feature. */
  | 'license-reduced'
  /** Checked in, it lingered for its user@host (the policy's LINGER) and was not taken back. */
  | 'lingered'
  /** Its client reported no activity for the policy's TIMEOUT. */
  | 'idle'
  /** A failover seat: the primary box came back, or the failover hours were used up (docs/scale-out.md). */
  | 'failover-ended';

export type BorrowEndReason = 'returned' | 'expired';

/**
 * Why a waiting checkout left its feature's queue (docs/policy.md, "Queueing"): it got its seat,
 * its maxWait passed, its client's connection died and it did not ask again within the grace, it
 * left itself (a check-in of the feature or process, or asking again without waiting), or a change
 * made its checkout impossible (a policy, a block, the license: `code` says which).
 */
export type QueueLeftReason = 'granted' | 'timeout' | 'gone' | 'cancelled' | 'refused';

export type SeatEvent =
  /** A new lease (a checkout that extended a lease the client already held is not one). */
  | { type: 'lease.granted'; at: number; lease: Lease }
  | { type: 'lease.ended'; at: number; lease: Lease; reason: LeaseEndReason; by?: string }
  /** A checkout refused: no seats, not licensed, blocked, dongle absent, ... (code says which). */
  | { type: 'checkout.denied'; at: number; feature: string; user: string; host: string; client: string; count: number; code: ErrorCode; message: string }
  | { type: 'borrow.granted'; at: number; borrow: Borrow }
  | { type: 'borrow.renewed'; at: number; borrow: Borrow }
  | { type: 'borrow.ended'; at: number; borrow: Borrow; reason: BorrowEndReason }
  /** An admin marked a borrowed seat lost. */
  | { type: 'borrow.lost'; at: number; borrow: Borrow; by: string }
  /** A checkout began to wait for a seat (docs/policy.md, "Queueing"); `since` is when it first waited. */
  | { type: 'queue.joined'; at: number; feature: string; user: string; host: string; client: string; count: number; priority: number; since: number }
  /**
   * A waiting checkout left the queue; `waitedMs` is how long it waited (`at` - `since`). With
   * reason granted it comes in the same batch as its lease.granted (`lease` names it).
   */
  | { type: 'queue.left'; at: number; feature: string; user: string; host: string; client: string; count: number; since: number; waitedMs: number; reason: QueueLeftReason; lease?: string; code?: ErrorCode }
  /** A borrow refused (code says why). */
  | { type: 'borrow.denied'; at: number; feature: string; user: string; host: string; client: string; code: ErrorCode; message: string }
  /** A new entitlement took effect at runtime (activation, import). */
  | { type: 'license.changed'; at: number; serial: string; issued: number; features: string[]; ended: number; by: string }
  /**
   * Seats held back because the database is behind the dongle's counter (set), or such holds
   * lifted by a vendor release (released). Its change is written first; the event comes by note.
   */
  | { type: 'quarantine'; at: number; action: 'set' | 'released'; reason: string; holds: Array<{ feature: string; seats: number; until: number }>; by?: string }
  /**
   * Every request on the admin topic, once answered: ok or the refusal's code. `subject` names what
   * it acted on when the request said (a lease id, a feature), never a secret.
   */
  | { type: 'admin'; at: number; op: string; client: string; ok: boolean; code?: ErrorCode; subject?: string }
  /**
   * A failover period of this box for a primary box began or ended (docs/scale-out.md): `since`
   * is when it began; `usedMs` the failover time used this month when it ended.
   */
  | { type: 'failover'; at: number; action: 'started' | 'ended'; primary: string; entitlement: string; since: number; reason?: string; usedMs?: number; features: Array<{ feature: string; seats: number }> };

export type SeatEventType = SeatEvent['type'];

export interface EventSink {
  /** Records to write in the same batch as the change these events describe (called before the write). */
  prepare?(events: readonly SeatEvent[]): Mutation[] | void;
  /** The batch was written (ok) or undone (its write failed: the events did not happen). */
  settle?(events: readonly SeatEvent[], ok: boolean): void;
  /** An event that changed no stored state (a denial, an admin request), or whose change is already written. */
  note?(event: SeatEvent): void;
}

/** Fans events out to several sinks; a sink that throws is logged by the caller and skipped. */
export class EventBus implements EventSink {
  private readonly sinks: EventSink[] = [];
  constructor(private readonly onError: (sink: number, e: unknown) => void = () => {}) {}

  add(sink: EventSink): void {
    this.sinks.push(sink);
  }

  get size(): number {
    return this.sinks.length;
  }

  prepare(events: readonly SeatEvent[]): Mutation[] {
    if (events.length === 0 || this.sinks.length === 0) return [];
    // Plain loops: this runs twice per checkout+checkin (no closure or spread per call).
    const out: Mutation[] = [];
    for (let i = 0; i < this.sinks.length; i++) {
      try {
        const m = this.sinks[i]!.prepare?.(events);
        if (m) for (let j = 0; j < m.length; j++) out.push(m[j]!);
      } catch (e) {
        this.onError(i, e);
      }
    }
    return out;
  }

  settle(events: readonly SeatEvent[], ok: boolean): void {
    if (events.length === 0) return;
    for (let i = 0; i < this.sinks.length; i++) {
      try {
        this.sinks[i]!.settle?.(events, ok);
      } catch (e) {
        this.onError(i, e);
      }
    }
  }

  note(event: SeatEvent): void {
    this.sinks.forEach((s, i) => {
      try {
        s.note?.(event);
      } catch (e) {
        this.onError(i, e);
      }
    });
  }
}
