/**
 * Nothing freed early, nothing granted twice: the borrow state bound to the dongle's monotonic
 * counter (anti-rollback), and a persisted high-water mark of time (clock integrity).
 * docs/threat-model.md says what this protects against and what it does not.
 */
import { LicdError } from './errors.ts';
import type { FeatureLicense } from './entitlement.ts';
import type { Borrow, Lease, Mutation } from './model.ts';
import type { StateStore } from './ports.ts';

// ---- the counter -----------------------------------------------------------------------------

/** Meta keys (docs/storage.md). Counters are stored as decimal strings (they are u64). */
export const META_COUNTER = 'dongle-counter';
export const META_COUNTER_PENDING = 'dongle-counter-pending';
/** The serial of the dongle whose counter META_COUNTER records. */
export const META_COUNTER_SERIAL = 'dongle-counter-serial';
export const META_QUARANTINE = 'quarantine';
export const META_CLOCK = 'clock';

export type CounterVerdict =
  | { kind: 'fresh' }
  | { kind: 'ok' }
  | { kind: 'adopt'; why: string }
  | { kind: 'restored'; stored: bigint; dongle: bigint }
  | { kind: 'wiped'; dongle: bigint }
  | { kind: 'other'; stored: bigint; dongle: bigint; storedSerial: string; serial: string }
  | { kind: 'ahead'; stored: bigint; dongle: bigint; serialKnown: boolean };

/**
 * Compares what the database says about the counter with the dongle. Every borrow or renewal
 * steps the counter first and records the new value in the same batch as the borrow, after a
 * "pending" marker, so:
 *   stored == dongle                      the database is current;
 *   pending == dongle == stored + 1       the daemon died between the step and the write: the
 *                                         change was never answered, nothing is out;
 *   stored < dongle (otherwise)           the database is older than the dongle: restored from a
 *                                         copy, or the dongle was used by another box;
 *   nothing stored, dongle > 0            a new or wiped database, or the dongle was used on
 *                                         another box;
 *   stored for another serial             the database's counter is another dongle's;
 *   stored > dongle                       the counter went back: not a genuine dongle state.
 */
export function judgeCounter(meta: Map<string, unknown>, dongle: bigint, serial?: string): CounterVerdict {
  const s = meta.get(META_COUNTER);
  const p = meta.get(META_COUNTER_PENDING);
  const ss = meta.get(META_COUNTER_SERIAL);
  const stored = typeof s === 'string' ? BigInt(s) : null;
  const pending = typeof p === 'string' ? BigInt(p) : null;
  const storedSerial = typeof ss === 'string' ? ss : null;
  if (stored === null) {
    if (dongle === 0n) return { kind: 'fresh' };
    if (pending !== null && pending === dongle && dongle === 1n) return { kind: 'adopt', why: 'the first counter step was cut off before its write' };
    return { kind: 'wiped', dongle };
  }
  if (serial !== undefined && storedSerial !== null && storedSerial !== serial) {
    // Another dongle's counter says nothing about this one; borrows bound to either may be out.
    return { kind: 'other', stored, dongle, storedSerial, serial };
  }
  if (stored === dongle) return { kind: 'ok' };
  if (pending !== null && pending === dongle && stored + 1n === dongle) return { kind: 'adopt', why: 'a counter step was cut off before its write (nothing was answered)' };
  if (stored < dongle) return { kind: 'restored', stored, dongle };
  return { kind: 'ahead', stored, dongle, serialKnown: storedSerial !== null };
}

export interface Quarantine {
  reason: string;
  since: number;
  holds: Array<{ feature: string; seats: number; until: number }>;
  /**
   * The dongle serial and its counter value when the quarantine was set: a vendor release names
   * both (docs/threat-model.md). Absent in quarantines stored by older versions.
   */
  dongleSerial?: string;
  counter?: string;
  /** Nonces of the releases applied to it, so none is applied twice. */
  releases?: string[];
}

/**
 * The seats that could still be out on borrow, unknown to this database, held until the longest
 * possible borrow has run out: for each feature that allows borrowing, every seat not already
 * accounted for by a known borrow, until now + its maximum borrow hours (or the license's end).
 */
export function quarantineFor(verdict: CounterVerdict, licenses: readonly FeatureLicense[], known: readonly Borrow[], now: number, serial?: string): Quarantine | null {
  let reason: string;
  switch (verdict.kind) {
    case 'fresh':
    case 'ok':
    case 'adopt':
      return null;
    case 'restored':
      reason = `the database is older than the dongle (its counter is ${verdict.dongle}, the database knows ${verdict.stored}): it was restored from a copy, or the dongle was used elsewhere`;
      break;
    case 'wiped':
      reason = `the database has no record of this dongle's counter ${verdict.dongle}: a new or wiped database, or the dongle was used on another box`;
      break;
    case 'other':
      reason = `the database's borrows were bound to dongle ${verdict.storedSerial} (counter ${verdict.stored}), not to this dongle ${verdict.serial} (counter ${verdict.dongle}): the database came from another box, or the dongle was replaced`;
      break;
    case 'ahead':
      reason = verdict.serialKnown
        ? `the database knows counter ${verdict.stored} of this dongle but the dongle says ${verdict.dongle}: the counter went back, which a genuine dongle cannot do`
        : `the database knows counter ${verdict.stored} but this dongle says ${verdict.dongle}: the database was used with another dongle, or the counter went back (which a genuine dongle cannot do)`;
      break;
  }
  const holds = [];
  for (const l of licenses) {
    if (!l.borrow.allowed) continue;
    const borrowed = known.filter((b) => b.feature === l.name).reduce((n, b) => n + b.count, 0);
    const seats = Math.max(0, l.seats - borrowed);
    if (seats === 0) continue;
    const longest = now + l.borrow.maxHours * 3600_000;
    holds.push({ feature: l.name, seats, until: l.expires === null ? longest : Math.min(longest, l.expires) });
  }
  const q: Quarantine = { reason, since: now, holds, counter: verdict.dongle.toString() };
  if (serial !== undefined) q.dongleSerial = serial;
  return q;
}

export function serializeQuarantine(q: Quarantine): unknown {
  return {
    reason: q.reason,
    since: q.since,
    holds: q.holds,
    ...(q.dongleSerial !== undefined ? { dongleSerial: q.dongleSerial } : {}),
    ...(q.counter !== undefined ? { counter: q.counter } : {}),
    ...(q.releases !== undefined ? { releases: q.releases } : {}),
  };
}

// ---- quarantine release ----------------------------------------------------------------------

/** The body of a vendor-signed quarantine release (format licd-quarantine-release/1, docs/tokens.md). */
export interface ReleaseBody {
  dongleSerial: string;
  /** The dongle's counter when the quarantine was set (decimal), as licctl status shows it. */
  counter: string;
  /** Features whose holds are lifted; null lifts every hold. */
  features: string[] | null;
  issuedAt: string;
  expiresAt: string;
  /** Random, so each release is one document that is applied once. */
  nonce: string;
}

function releaseInvalid(message: string, details?: Record<string, unknown>): LicdError {
  return new LicdError('RELEASE_INVALID', message, details);
}

export function parseReleaseBody(json: unknown): ReleaseBody {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw releaseInvalid('the quarantine release body is not a JSON object');
  const b = json as Record<string, unknown>;
  const str = (k: string, re: RegExp, what: string): string => {
    const v = b[k];
    if (typeof v !== 'string' || !re.test(v)) throw releaseInvalid(`the quarantine release field ${k} must be ${what}`, { field: k });
    return v;
  };
  const dongleSerial = str('dongleSerial', /^[\x21-\x7e]{1,64}$/, 'a dongle serial');
  const counter = str('counter', /^(0|[1-9][0-9]{0,19})$/, 'a decimal counter value');
  const issuedAt = str('issuedAt', /^\d{4}-\d\d-\d\dT/, 'an ISO time');
  const expiresAt = str('expiresAt', /^\d{4}-\d\d-\d\dT/, 'an ISO time');
  const nonce = str('nonce', /^[A-Za-z0-9_-]{8,64}$/, '8..64 base64url characters');
  let features: string[] | null = null;
  if (b.features !== null && b.features !== undefined) {
    if (!Array.isArray(b.features) || b.features.some((f) => typeof f !== 'string') || b.features.length === 0) throw releaseInvalid('the quarantine release field features must be a non-empty list of feature names, or null for all', { field: 'features' });
    features = b.features as string[];
  }
  if (Number.isNaN(Date.parse(issuedAt)) || Number.isNaN(Date.parse(expiresAt))) throw releaseInvalid('the quarantine release times are not valid ISO times');
  return { dongleSerial, counter, features, issuedAt, expiresAt, nonce };
}

/**
 * Applies a verified release to the current quarantine: it must name this dongle and the counter
 * value the quarantine was set at (so it cannot lift a later quarantine, which would be set at a
 * later counter value: one with more borrows possibly out), be within its validity, and not have
 * been applied before. Returns the quarantine left after it, and what was lifted.
 */
export function applyRelease(
  r: ReleaseBody,
  q: Quarantine | null,
  dongleSerial: string,
  now: number,
): { left: Quarantine | null; lifted: Array<{ feature: string; seats: number }> } {
  const live = q ? q.holds.filter((h) => h.until > now) : [];
  if (!q || live.length === 0) throw releaseInvalid('there is no quarantine to release: no seats are held (licctl status shows the quarantine when there is one)');
  if (r.dongleSerial !== dongleSerial) {
    throw releaseInvalid(`the release is for dongle ${r.dongleSerial}, but this server's dongle is ${dongleSerial}; ask the vendor for a release with --serial ${dongleSerial}`, { serial: r.dongleSerial, expected: dongleSerial });
  }
  if (q.counter === undefined) {
    throw releaseInvalid('this quarantine was recorded without the dongle counter (by an older licd), so no release can be bound to it; it ends at its time', {});
  }
  if (r.counter !== q.counter) {
    throw releaseInvalid(
      `the release is for the quarantine set at counter ${r.counter}, but the current quarantine was set at counter ${q.counter} (licctl status shows it); ask the vendor for a release with --counter ${q.counter}`,
      { counter: r.counter, expected: q.counter },
    );
  }
  if (Date.parse(r.expiresAt) <= now) throw releaseInvalid(`the release expired at ${r.expiresAt}; ask the vendor for a new one`, { expiresAt: r.expiresAt });
  if (Date.parse(r.issuedAt) > now + 5 * 60_000) throw releaseInvalid(`the release is issued at ${r.issuedAt}, in the future of this server's clock; check the clock`, { issuedAt: r.issuedAt });
  if (q.releases?.includes(r.nonce)) throw releaseInvalid('this release was applied already', { nonce: r.nonce });
  const lift = (f: string) => r.features === null || r.features.includes(f);
  const lifted = live.filter((h) => lift(h.feature)).map((h) => ({ feature: h.feature, seats: h.seats }));
  if (lifted.length === 0) throw releaseInvalid(`the release names ${r.features!.join(', ')}, none of which is held (held: ${live.map((h) => h.feature).join(', ')})`);
  const rest = live.filter((h) => !lift(h.feature));
  const left: Quarantine = { ...q, holds: rest, releases: [...(q.releases ?? []), r.nonce] };
  return { left, lifted };
}

export function parseQuarantine(v: unknown): Quarantine | null {
  if (!v || typeof v !== 'object') return null;
  const q = v as Quarantine;
  if (typeof q.reason !== 'string' || !Array.isArray(q.holds)) return null;
  return q;
}

/** The dongle did not step its counter (failed, uncertain, or a signature that does not verify). */
export class CounterStepError extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = 'CounterStepError';
  }
}

/**
 * Group commit for changes bound to the counter: changes that arrive while a step is under way
 * wait and go out together. For each group: a synced "pending" marker, one counter step on the
 * dongle, then one synced batch with the changes and the new counter value. If the step fails,
 * nothing of the group is written and every caller gets the error.
 */
export class CounterGate {
  private queue: Array<{ mutations: readonly Mutation[]; step: boolean; resolve(): void; reject(e: unknown): void }> = [];
  private busy = false;
  /** Steps made and groups written, for the benchmark and tests. */
  readonly stats = { steps: 0, changes: 0 };

  private needResync = false;

  constructor(
    private readonly store: StateStore,
    private readonly step: () => Promise<bigint>,
    private current: bigint,
    /** Reads the dongle's counter (INFO) after a failed or uncertain step. */
    private readonly readCounter?: () => Promise<bigint>,
  ) {}

  get value(): bigint {
    return this.current;
  }

  /** A step failed and may have stepped the dongle: its counter may be one above `value`. */
  get uncertain(): boolean {
    return this.needResync;
  }

  adopt(v: bigint): void {
    this.current = v;
  }

  /** Something is queued or being written: every change must then queue here to keep the order. */
  get active(): boolean {
    return this.busy || this.queue.length > 0;
  }

  /**
   * Queues a change. `step: false` is for changes that touch borrow records without extending
   * them (a return, a lost mark, an expiry): they need no counter step, but they must be written
   * in the order they were decided relative to the stepped ones, or a return decided after a
   * renewal could be overwritten by it on disk.
   */
  commit(mutations: readonly Mutation[], opts: { step?: boolean } = {}): Promise<void> {
    // A group is written only after its step, and the table changes some lease objects in place
    // (a heartbeat renews the table's own object; it writes a copy, but a change handed the
    // table's object must not reach the disk with a later, perhaps undone, value). The lease is
    // copied as it is now (a store serializes at once).
    const frozen = mutations.some((m) => m.kind === 'lease.put')
      ? mutations.map((m): Mutation => (m.kind === 'lease.put' ? { kind: 'lease.put', lease: { ...m.lease } } : m))
      : mutations;
    return new Promise((resolve, reject) => {
      this.queue.push({ mutations: frozen, step: opts.step !== false, resolve, reject });
      if (!this.busy) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0) {
      const group = this.queue;
      this.queue = [];
      const stepped = group.filter((g) => g.step);
      let written = group;
      let value: bigint | null = null;
      if (stepped.length > 0) {
        try {
          if (this.needResync && this.readCounter) {
            // A step that failed may still have stepped the dongle; nothing was answered for it,
            // so the database adopts the dongle's value before going on. A dongle that cannot
            // even say its counter is a dongle fault, not a disk one.
            try {
              this.current = await this.readCounter();
            } catch (e) {
              throw new CounterStepError(e);
            }
            await this.store.commit([{ kind: 'meta.put', key: META_COUNTER, value: this.current.toString() }]);
            this.needResync = false;
          }
          await this.store.commit([{ kind: 'meta.put', key: META_COUNTER_PENDING, value: (this.current + 1n).toString() }]);
          try {
            value = await this.step();
          } catch (e) {
            throw new CounterStepError(e);
          }
          this.current = value;
          this.stats.steps++;
        } catch (e) {
          this.needResync = true;
          // Nothing of the group is written, and every change in it is undone newest first, so a
          // record two of them touched (a renewal, then a return of the same borrow) ends as it
          // was before both.
          for (const g of [...group].reverse()) g.reject(e);
          written = [];
        }
      }
      if (written.length === 0) continue;
      try {
        const tail: Mutation[] = value === null ? [] : [{ kind: 'meta.put', key: META_COUNTER, value: value.toString() }];
        await this.store.commit([...written.flatMap((g) => g.mutations), ...tail]);
        this.stats.changes += written.length;
        for (const g of written) g.resolve();
      } catch (e) {
        for (const g of [...written].reverse()) g.reject(e);
      }
    }
    this.busy = false;
  }
}

// ---- the clock -------------------------------------------------------------------------------

/**
 * A persisted high-water mark of time. A clock found more than the tolerance below it was set
 * back: new borrows are refused and leases kept short until it is right (or an admin accepts the
 * clock). NTP corrections are far below the default tolerance of 5 minutes.
 */
export class ClockGuard {
  private setBack = 0;

  constructor(
    private hwm: number,
    readonly toleranceMs: number,
  ) {}

  get highWater(): number {
    return this.hwm;
  }

  /** Returns how far the clock is set back (0 if it is fine) and raises the mark. */
  observe(now: number): number {
    if (now >= this.hwm - this.toleranceMs) {
      if (now > this.hwm) this.hwm = now;
      this.setBack = 0;
    } else {
      this.setBack = this.hwm - now;
    }
    return this.setBack;
  }

  get setBackMs(): number {
    return this.setBack;
  }

  accept(now: number): void {
    this.hwm = now;
    this.setBack = 0;
    this.forward = 0;
  }

  /** How far the clock stepped forward while running, not yet undone by a step back. */
  private forward = 0;

  /**
   * A step of the clock seen while running (the monotonic clock vouches for the real time that
   * passed). A forward step raises the mark with the clock; a step back lowers it by as much of
   * the forward steps as it undoes, so fixing a clock that jumped ahead is no set-back. A step
   * back below every time seen stays a set-back, as at a restart.
   */
  stepped(deltaMs: number): void {
    if (deltaMs > 0) {
      this.forward += deltaMs;
      this.hwm += deltaMs;
    } else {
      const undo = Math.min(-deltaMs, this.forward);
      this.forward -= undo;
      this.hwm -= undo;
    }
  }

  refuse(what: string): void {
    if (this.setBack > 0) {
      throw new LicdError('CLOCK_SET_BACK', `${what} refused: the clock was set back by ${describeMs(this.setBack)} (it read ${new Date(this.hwm).toISOString()} before); set the clock right, or an admin can accept it with licctl clock accept`, {
        jumpMs: this.setBack,
        highWater: new Date(this.hwm).toISOString(),
      });
    }
  }
}

export function describeMs(ms: number): string {
  const m = Math.round(ms / 60_000);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} days ${h % 24} h`;
}

// ---- a gap at start (no trusted time) --------------------------------------------------------

export const META_CLOCK_GAP = 'clock-gap';

/** What a restart kept in case the clock was set forward while the daemon was down. */
export interface ClockGap {
  /** How far the clock is past the last time licd saw (persisted every minute and at stop), ms. */
  gapMs: number;
  /** The last time seen (named highWater in version 1 records). */
  highWater: number;
  at: number;
  /** Borrows kept only for the gap: their end as it was, to release them if an admin confirms the clock. */
  borrows: Array<{ id: string; token: string; until: number }>;
}

/**
 * At start with no trusted time, a clock far past the last time licd saw (`highWater` here: the
 * persisted `last`, else the mark) is either a long stop or a clock set forward while stopped;
 * nothing tells them apart. What only the gap would end is kept: a borrow whose end falls in
 * (last seen, now] is moved later by the gap (it then ends no
 * earlier in real time than its token, whatever the step was) until an admin confirms the clock;
 * a lease that ended in the gap gets one TTL from now, so a live client can heartbeat again.
 */
export function bridgeGap(
  leases: readonly Lease[],
  borrows: readonly Borrow[],
  highWater: number,
  now: number,
  toleranceMs: number,
): { leases: Lease[]; borrows: Borrow[]; gap: ClockGap | null; keptLeases: number } {
  const gapMs = now - highWater;
  if (gapMs <= toleranceMs) return { leases: [...leases], borrows: [...borrows], gap: null, keptLeases: 0 };
  let keptLeases = 0;
  const outLeases = leases.map((l) => {
    if (l.expiresAt > highWater && l.expiresAt <= now) {
      keptLeases++;
      return { ...l, expiresAt: now + l.ttlMs };
    }
    return l;
  });
  const kept: ClockGap['borrows'] = [];
  const outBorrows = borrows.map((b) => {
    if (b.expiresAt > highWater && b.expiresAt <= now) {
      kept.push({ id: b.id, token: b.tokenId, until: b.expiresAt });
      return { ...b, expiresAt: b.expiresAt + gapMs };
    }
    return b;
  });
  return { leases: outLeases, borrows: outBorrows, gap: { gapMs, highWater, at: now, borrows: kept }, keptLeases };
}

export function parseClockGap(v: unknown): ClockGap | null {
  if (!v || typeof v !== 'object') return null;
  const g = v as ClockGap;
  if (typeof g.gapMs !== 'number' || !Array.isArray(g.borrows)) return null;
  return g;
}
