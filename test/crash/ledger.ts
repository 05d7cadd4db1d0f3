/**
 * The crash harness's ledger: every request the test process sent, when, and what the daemon
 * answered (or that no answer came). The invariants are judged against it:
 *
 *  - an answer is a fact: the daemon promised it only after the change was on disk;
 *  - a request without an answer (cut off by a kill, or lost with its connection) is a "maybe": it
 *    may or may not have changed the state, at any time between its sending and the end of its
 *    window (the kill, for a client that was closed with the daemon; the first answered request
 *    sent after it on the same connection, for a client that reconnected: mqtt.js resends its
 *    unacknowledged publishes before anything newer, and the daemon decides in arrival order);
 *  - a request answered after a kill it was sent before may have been carried out twice (by the
 *    daemon that died, answer lost, and again after the restart).
 *
 * From this the ledger derives, for a moment in time, which leases and borrows must exist (every
 * way they could have ended is ruled out) and what bounds their ends must lie within.
 */
import type { BorrowView, LeaseView, StatusResult } from '../../src/core/protocol.ts';
import { STORED_TTLS } from '../../src/core/seats.ts';

export type Outcome = 'pending' | 'ok' | 'error' | 'unknown' | 'unsent';

export interface Req {
  seq: number;
  client: string;
  op: string;
  params: Record<string, unknown>;
  sentAt: number;
  outcome: Outcome;
  answeredAt: number | null;
  /** After this time the request can no longer change anything (null: not known yet). */
  windowEnd: number | null;
  result: unknown;
  code: string | null;
  message: string | null;
  trial: number;
  /** checkout: `${clientId}\0${pid}\0${feature}` */
  slot?: string;
  /** borrow / borrow.renew: the signed request's body. */
  borrowBody?: { clientKey: string; hostId: string; requestId: string; items: Array<{ feature: string; count: number }>; hours: number; renew?: string[] };
  /** borrow.return: the note's borrow ids. */
  returnIds?: string[];
}

interface Answered {
  sentAt: number;
  at: number;
  until: number;
  /** The latest end among this and every earlier answer (answers are kept in arrival order). */
  max: number;
}

export interface LeaseRec {
  id: string;
  client: string;
  pid: number;
  feature: string;
  slot: string;
  count: number;
  since: number;
  revealedAt: number;
  answers: Answered[];
  /** When an answer said it was released (checkin). */
  releasedAt: number | null;
}

export interface BorrowRec {
  id: string;
  feature: string;
  count: number;
  hostId: string;
  hours: number;
  since: number;
  revealedAt: number;
  answers: Answered[];
  returnedAt: number | null;
}

export const INVARIANTS = {
  'grant-kept': 'no answered grant lost: every lease answered granted, not checked in and within its answered TTL is still there',
  seats: 'leased + borrowed + held never above the count (daemon status), and the leases and borrows the answers prove alive never above it either',
  ttl: 'no lease outliving its TTL: every lease in status ends at most a reaper tick ago, and never later than the last request that could have renewed it allows',
  'borrow-kept': 'every borrowed seat still reserved: every borrow answered, not returned and not expired is in status with the same id, count and end',
  'no-resurrection': 'nothing answered released comes back: a lease checked in or a borrow returned never reappears',
  'no-phantom': 'nothing appears that no request could have made: every lease and borrow in status is explained by a request',
  'no-false-quarantine': 'no quarantine, held seats, warnings or QUARANTINE/CLOCK_SET_BACK answers after plain crashes and restarts',
  'clean-answers': 'no INTERNAL or STORE_FAILED answers',
  restart: 'the daemon comes back after every kill, and exits 0 on SIGTERM',
} as const;

export type Invariant = keyof typeof INVARIANTS;

export interface Violation {
  invariant: Invariant;
  trial: number;
  seed: number;
  at: string;
  message: string;
  details?: unknown;
}

/** How late the reaper may be: it ticks every second; allow one more for a busy event loop. */
export const REAP_SLACK_MS = 2000;

const MINUTE = 60_000;

function ms(iso: string): number {
  return Date.parse(iso);
}

function decodeBody(env: unknown): Record<string, unknown> | null {
  try {
    const body = (env as { body?: unknown }).body;
    if (typeof body !== 'string') return null;
    return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export function slotKey(client: string, pid: number, feature: string): string {
  return `${client}\0${pid}\0${feature}`;
}

export class Ledger {
  private seq = 0;
  readonly reqs: Req[] = [];
  readonly kills: number[] = [];
  readonly starts: number[] = [];
  readonly leases = new Map<string, LeaseRec>();
  readonly borrows = new Map<string, BorrowRec>();
  private readonly activeLeases = new Set<LeaseRec>();
  private readonly activeBorrows = new Set<BorrowRec>();
  private readonly byClient = new Map<string, Req[]>();
  private readonly bySlot = new Map<string, Req[]>();
  private readonly returnsByBorrow = new Map<string, Req[]>();
  private readonly renewsByBorrow = new Map<string, Req[]>();
  private readonly borrowReqs: Req[] = [];
  /** Requests whose window is open and unbounded: they matter to every scan whatever their age. */
  private readonly open = new Set<Req>();
  /** A client's connection dropped while the daemon was up: its leases may end by the will. */
  private readonly disconnects = new Map<string, number[]>();
  readonly violations: Violation[] = [];
  readonly notes = new Map<string, { text: string; count: number }>();
  private readonly seen = new Set<string>();
  readonly checks = new Map<Invariant, { checked: number; violations: number }>();
  /** Seats per feature (from the first status). */
  seats = new Map<string, number>();
  /** Effective TTL per slot, ms. */
  readonly slotTtl = new Map<string, number>();
  /** Borrow hours per host id (fixed per borrower, so an end only grows with time). */
  readonly hostHours = new Map<string, number>();
  trial = 0;
  seed = 0;
  readonly counts = { sent: 0, ok: 0, error: 0, unknown: 0, unsent: 0, snapshots: 0 };

  constructor() {
    for (const k of Object.keys(INVARIANTS) as Invariant[]) this.checks.set(k, { checked: 0, violations: 0 });
  }

  // ---- recording ---------------------------------------------------------------------------------

  begin(client: string, op: string, params: Record<string, unknown>): Req {
    const r: Req = {
      seq: ++this.seq,
      client,
      op,
      params,
      sentAt: Date.now(),
      outcome: 'pending',
      answeredAt: null,
      windowEnd: null,
      result: undefined,
      code: null,
      message: null,
      trial: this.trial,
    };
    if (op === 'checkout' && typeof params.pid === 'number' && typeof params.feature === 'string') {
      r.slot = slotKey(client, params.pid, params.feature);
      list(this.bySlot, r.slot).push(r);
    }
    if (op === 'borrow' || op === 'borrow.renew') {
      const b = decodeBody(params.request);
      if (b) {
        r.borrowBody = {
          clientKey: String(b.clientKey),
          hostId: String(b.hostId),
          requestId: String(b.requestId),
          items: (b.items as Array<{ feature: string; count: number }>) ?? [],
          hours: Number(b.hours),
          ...(Array.isArray(b.renew) ? { renew: b.renew as string[] } : {}),
        };
        if (op === 'borrow') this.borrowReqs.push(r);
        for (const id of r.borrowBody.renew ?? []) list(this.renewsByBorrow, id).push(r);
      }
    }
    if (op === 'borrow.return') {
      const b = decodeBody(params.return);
      r.returnIds = Array.isArray(b?.borrowIds) ? (b!.borrowIds as string[]) : [];
      for (const id of r.returnIds) list(this.returnsByBorrow, id).push(r);
    }
    this.reqs.push(r);
    list(this.byClient, client).push(r);
    this.open.add(r);
    this.counts.sent++;
    return r;
  }

  /** The daemon answered. */
  answered(r: Req, ok: boolean, result: unknown, code: string | null, message: string | null): void {
    r.answeredAt = Date.now();
    r.outcome = ok ? 'ok' : 'error';
    r.result = result;
    r.code = code;
    r.message = message;
    this.open.delete(r);
    if (ok) this.counts.ok++;
    else this.counts.error++;
    this.count('clean-answers');
    if (ok) this.onOk(r);
    else this.onError(r);
  }

  /** No answer will come (timeout, the client closed); the outcome stays unknown. */
  noAnswer(r: Req, sent: boolean): void {
    if (r.outcome !== 'pending') return;
    r.outcome = sent ? 'unknown' : 'unsent';
    if (sent) this.counts.unknown++;
    else {
      this.counts.unsent++;
      this.open.delete(r);
    }
  }

  /** Requests of these clients sent before `before` can no longer act after `end`. */
  closeWindows(clients: Iterable<string> | null, before: number, end: number): number {
    let n = 0;
    const wanted = clients ? new Set(clients) : null;
    for (const r of [...this.open]) {
      if (wanted && !wanted.has(r.client)) continue;
      if (r.sentAt > before || r.windowEnd !== null) continue;
      if (r.outcome === 'ok' || r.outcome === 'error' || r.outcome === 'unsent') continue;
      r.windowEnd = end;
      this.open.delete(r);
      n++;
    }
    return n;
  }

  killed(at: number): void {
    this.kills.push(at);
  }

  /** A daemon was up again at `at` (it read its leases back before). */
  started(at: number): void {
    this.starts.push(at);
  }

  disconnected(client: string, at: number): void {
    list(this.disconnects, client).push(at);
  }

  pendingCount(): number {
    let n = 0;
    for (const r of this.open) if (r.outcome === 'pending') n++;
    return n;
  }

  // ---- derived facts -------------------------------------------------------------------------------

  private end(r: Req): number {
    return Math.min(r.answeredAt ?? Infinity, r.windowEnd ?? Infinity);
  }

  /** The request may have been carried out by a daemon that was killed before it answered. */
  private spanned(r: Req): boolean {
    const stop = r.answeredAt ?? Infinity;
    return this.kills.some((k) => k >= r.sentAt && k <= stop);
  }

  /** Latest end of a lease or borrow known from answers received before `before`. */
  private untilBefore(answers: Answered[], before: number): number {
    for (let i = answers.length - 1; i >= 0; i--) if (answers[i]!.at < before) return answers[i]!.max;
    return -Infinity;
  }

  private maxUntil(answers: Answered[]): number {
    return answers.length === 0 ? -Infinity : answers[answers.length - 1]!.max;
  }

  private addAnswer(answers: Answered[], sentAt: number, at: number, until: number): void {
    const prev = this.maxUntil(answers);
    answers.push({ sentAt, at, until, max: Math.max(prev, until) });
  }

  /** Requests of a client sent in [from, to], newest first, plus any with an unbounded window. */
  private *clientReqs(client: string, from: number, to: number): Generator<Req> {
    const xs = this.byClient.get(client) ?? [];
    const done = new Set<Req>();
    for (let i = xs.length - 1; i >= 0; i--) {
      const r = xs[i]!;
      if (r.sentAt > to) continue;
      if (r.sentAt < from) break;
      done.add(r);
      yield r;
    }
    for (const r of this.open) if (r.client === client && !done.has(r) && r.sentAt <= to) yield r;
  }

  private checkinMatches(r: Req, l: LeaseRec): boolean {
    const p = r.params;
    if (Array.isArray(p.leases)) return (p.leases as string[]).includes(l.id);
    if (p.feature !== undefined && p.feature !== l.feature) return false;
    if (p.pid !== undefined && p.pid !== l.pid) return false;
    return true;
  }

  /** Could this checkin have ended the lease at or before `to`? */
  private couldRelease(r: Req, l: LeaseRec, to: number): boolean {
    if (r.op !== 'checkin' || r.client !== l.client || r.sentAt > to) return false;
    if (!this.checkinMatches(r, l)) return false;
    if (this.end(r) < l.since) return false;
    if (r.outcome === 'unsent') return false;
    const twice = this.spanned(r);
    if (r.outcome === 'ok') {
      const released = ((r.result as { released?: string[] })?.released ?? []).includes(l.id);
      return released || twice;
    }
    if (r.outcome === 'error') return twice;
    return true;
  }

  private couldReturn(r: Req, b: BorrowRec, to: number): boolean {
    if (r.sentAt > to || r.outcome === 'unsent') return false;
    if (this.end(r) < b.since) return false;
    const twice = this.spanned(r);
    if (r.outcome === 'ok') return ((r.result as { returned?: string[] })?.returned ?? []).includes(b.id) || twice;
    if (r.outcome === 'error') return twice;
    return true;
  }

  private disconnectedSince(client: string, since: number, to: number): boolean {
    return (this.disconnects.get(client) ?? []).some((d) => d >= since - 1000 && d <= to);
  }

  /**
   * The lease must exist in the daemon at any moment in [.., to], judging by what was answered
   * before `from`: it was answered, its answered end is after `to`, and no checkin, will or other
   * way it could have ended can have acted by `to`.
   */
  leaseMustExist(l: LeaseRec, from: number, to: number, except?: Req): boolean {
    if (l.revealedAt >= from) return false;
    if (l.releasedAt !== null && l.releasedAt <= to) return false;
    if (this.untilBefore(l.answers, from) <= to) return false;
    if (this.disconnectedSince(l.client, l.since, to)) return false;
    for (const r of this.clientReqs(l.client, l.since - 2 * MINUTE, to)) {
      if (r === except) continue;
      if (this.couldRelease(r, l, to)) return false;
    }
    return true;
  }

  borrowMustExist(b: BorrowRec, from: number, to: number, except?: Req): boolean {
    if (b.revealedAt >= from) return false;
    if (b.returnedAt !== null && b.returnedAt <= to) return false;
    if (this.untilBefore(b.answers, from) <= to) return false;
    for (const r of this.returnsByBorrow.get(b.id) ?? []) {
      if (r === except) continue;
      if (this.couldReturn(r, b, to)) return false;
    }
    return true;
  }

  // ---- answers -------------------------------------------------------------------------------------

  private onOk(r: Req): void {
    const at = r.answeredAt!;
    switch (r.op) {
      case 'checkout': {
        const res = r.result as { status: 'granted' | 'extended'; lease: LeaseView };
        const l = this.revealLease(res.lease, r);
        // The slot's earlier lease, if the answers prove it alive, must have been extended, not
        // replaced: a new id means the daemon lost it.
        for (const other of this.activeLeases) {
          if (other.slot !== l.slot || other.id === l.id) continue;
          if (this.leaseMustExist(other, r.sentAt, at)) {
            this.count('grant-kept');
            this.violate('grant-kept', `lease ${other.id} (${other.feature} x${other.count}, client ${other.client} pid ${other.pid}) must be alive, but a checkout of the same slot was answered with a new lease ${l.id}: the daemon lost it`, { lost: other, answer: res, request: brief(r) }, `regrant:${other.id}`);
          }
        }
        if (res.status === 'granted') this.overGrantCheck(r, [{ feature: l.feature, count: l.count }], new Set([l.id]));
        break;
      }
      case 'heartbeat': {
        const res = r.result as { renewed: Array<{ id: string; until: string }>; unknown: string[] };
        for (const x of res.renewed) {
          const l = this.leases.get(x.id);
          if (l) this.addAnswer(l.answers, r.sentAt, at, ms(x.until));
        }
        for (const id of res.unknown) this.unknownLeaseEvidence(r, id, 'heartbeat');
        break;
      }
      case 'checkin': {
        const res = r.result as { released: string[]; unknown: string[] };
        for (const id of res.released) {
          const l = this.leases.get(id);
          if (l && l.releasedAt === null) l.releasedAt = at;
        }
        for (const id of res.unknown) this.unknownLeaseEvidence(r, id, 'checkin');
        break;
      }
      case 'borrow':
      case 'borrow.renew': {
        const res = r.result as { borrows: BorrowView[] };
        const fresh: Array<{ feature: string; count: number }> = [];
        const ids = new Set<string>();
        for (const v of res.borrows) {
          const known = this.borrows.has(v.id);
          this.revealBorrow(v, r);
          ids.add(v.id);
          if (!known && r.op === 'borrow') fresh.push({ feature: v.feature, count: v.count });
        }
        if (fresh.length > 0) this.overGrantCheck(r, fresh, ids);
        break;
      }
      case 'borrow.return': {
        const res = r.result as { returned: string[]; unknown: string[] };
        for (const id of res.returned) {
          const b = this.borrows.get(id);
          if (b && b.returnedAt === null) b.returnedAt = at;
        }
        for (const id of res.unknown) this.unknownBorrowEvidence(r, id, 'borrow.return');
        break;
      }
    }
  }

  private onError(r: Req): void {
    const code = r.code ?? '';
    this.count('no-false-quarantine');
    if (code === 'QUARANTINE' || code === 'CLOCK_SET_BACK') {
      this.violate('no-false-quarantine', `${r.op} was refused with ${code} although the database was never restored, wiped or the clock set back: ${r.message}`, { request: brief(r) }, `code:${code}:${r.seq}`);
    }
    if (code === 'DONGLE_ABSENT' || code === 'SHUTTING_DOWN') this.note(`${r.op} refused with ${code}: ${r.message}`);
    if (code === 'INTERNAL' || code === 'STORE_FAILED') {
      this.violate('clean-answers', `${r.op} was answered ${code}: ${r.message}`, { request: brief(r) }, `code:${code}:${r.seq}`);
    }
    if (r.op === 'borrow.renew' && code === 'UNKNOWN_BORROW') {
      for (const id of r.borrowBody?.renew ?? []) this.unknownBorrowEvidence(r, id, 'borrow.renew');
    }
  }

  private revealLease(v: LeaseView, r: Req): LeaseRec {
    let l = this.leases.get(v.id);
    const at = r.answeredAt!;
    if (!l) {
      l = {
        id: v.id,
        client: v.clientId,
        pid: v.pid,
        feature: v.feature,
        slot: slotKey(v.clientId, v.pid, v.feature),
        count: v.count,
        since: ms(v.since),
        revealedAt: at,
        answers: [],
        releasedAt: null,
      };
      this.leases.set(v.id, l);
      this.activeLeases.add(l);
    }
    this.addAnswer(l.answers, r.sentAt, at, ms(v.until));
    return l;
  }

  private revealBorrow(v: BorrowView, r: Req): BorrowRec {
    let b = this.borrows.get(v.id);
    const at = r.answeredAt!;
    if (!b) {
      b = {
        id: v.id,
        feature: v.feature,
        count: v.count,
        hostId: v.hostId,
        hours: r.borrowBody?.hours ?? this.hostHours.get(v.hostId) ?? 1,
        since: ms(v.since),
        revealedAt: at,
        answers: [],
        returnedAt: null,
      };
      this.borrows.set(v.id, b);
      this.activeBorrows.add(b);
    }
    this.addAnswer(b.answers, r.sentAt, at, ms(v.until));
    return b;
  }

  /** An answer said the daemon does not know a lease that the answers before it prove alive. */
  private unknownLeaseEvidence(r: Req, id: string, what: string): void {
    const l = this.leases.get(id);
    if (!l) return;
    this.count('grant-kept');
    if (this.leaseMustExist(l, r.sentAt, r.answeredAt!, r.op === 'checkin' && !this.spanned(r) ? r : undefined)) {
      this.violate(
        'grant-kept',
        `${what} answered that lease ${id} (${l.feature} x${l.count}, client ${l.client}) is unknown, but it was granted and must be alive until ${new Date(this.untilBefore(l.answers, r.sentAt)).toISOString()}`,
        { lease: l, request: brief(r) },
        `unknown-lease:${id}`,
      );
    }
  }

  private unknownBorrowEvidence(r: Req, id: string, what: string): void {
    const b = this.borrows.get(id);
    if (!b) return;
    this.count('borrow-kept');
    if (this.borrowMustExist(b, r.sentAt, r.answeredAt!, r.op === 'borrow.return' && !this.spanned(r) ? r : undefined)) {
      this.violate('borrow-kept', `${what} answered that borrow ${id} (${b.feature} x${b.count}) is unknown, but it was borrowed, never returned and runs until ${new Date(this.untilBefore(b.answers, r.sentAt)).toISOString()}`, { borrow: b, request: brief(r) }, `unknown-borrow:${id}`);
    }
  }

  /**
   * A grant was answered: the leases and borrows the answers prove alive at that moment, plus this
   * grant, must fit in the seats. A daemon that lost a grant in a crash and gave its seat away fails
   * this even if its own status adds up.
   */
  private overGrantCheck(r: Req, items: Array<{ feature: string; count: number }>, own: Set<string>): void {
    const from = r.sentAt;
    const to = r.answeredAt!;
    const byFeature = new Map<string, number>();
    for (const i of items) byFeature.set(i.feature, (byFeature.get(i.feature) ?? 0) + i.count);
    for (const [feature, wanted] of byFeature) {
      const total = this.seats.get(feature);
      if (total === undefined) continue;
      let alive = 0;
      const who: string[] = [];
      for (const l of this.activeLeases) {
        if (l.feature !== feature || own.has(l.id)) continue;
        if (this.leaseMustExist(l, from, to)) {
          alive += l.count;
          who.push(`lease ${l.id} x${l.count}`);
        }
      }
      for (const b of this.activeBorrows) {
        if (b.feature !== feature || own.has(b.id)) continue;
        if (this.borrowMustExist(b, from, to)) {
          alive += b.count;
          who.push(`borrow ${b.id} x${b.count}`);
        }
      }
      this.count('seats');
      if (alive + wanted > total) {
        this.violate('seats', `over-grant: ${r.op} was answered with ${wanted} more ${feature} seat(s) while the answers prove ${alive} of ${total} already held (${who.join(', ')})`, { request: brief(r), alive: who }, `over:${r.seq}:${feature}`);
      }
    }
  }

  // ---- a status snapshot -------------------------------------------------------------------------------

  /**
   * Judges one status answer. `s0` is when the status request was sent, `s1` when its answer came:
   * the daemon took the snapshot somewhere in between.
   */
  snapshot(s: StatusResult, s0: number, s1: number, where: string): void {
    this.counts.snapshots++;
    const inStatusLeases = new Map<string, LeaseView>();
    const inStatusBorrows = new Map<string, BorrowView>();
    // -- seats, as the daemon counts them
    for (const f of s.features) {
      if (!this.seats.has(f.feature)) this.seats.set(f.feature, f.total);
      const leased = f.leases.reduce((n, l) => n + l.count, 0);
      const borrowed = f.borrows.reduce((n, b) => n + b.count, 0);
      this.count('seats');
      const problems: string[] = [];
      if (leased !== f.leased) problems.push(`its leases add to ${leased} but it says leased ${f.leased}`);
      if (borrowed !== f.borrowed) problems.push(`its borrows add to ${borrowed} but it says borrowed ${f.borrowed}`);
      if (f.leased + f.borrowed + f.held > f.total) problems.push(`${f.leased} leased + ${f.borrowed} borrowed + ${f.held} held > ${f.total} seats`);
      if (leased + borrowed > f.total) problems.push(`the leases and borrows listed hold ${leased + borrowed} > ${f.total} seats`);
      if (f.free !== Math.max(0, f.total - f.leased - f.borrowed - f.held)) problems.push(`free ${f.free} does not match`);
      // Reported once per set of borrows involved: an over-count caused by a borrow lasts as long as it.
      if (problems.length > 0) this.violate('seats', `${where}: ${f.feature}: ${problems.join('; ')}`, { feature: f }, `seats:${f.feature}:${f.borrows.map((b) => b.id).sort().join(',')}`);
      this.count('no-false-quarantine');
      if (f.held > 0) this.violate('no-false-quarantine', `${where}: ${f.feature} has ${f.held} seats held by a quarantine after plain crashes`, { feature: f.feature, held: f.held, quarantine: s.quarantine }, `held:${f.feature}`);
      for (const l of f.leases) inStatusLeases.set(l.id, l);
      for (const b of f.borrows) inStatusBorrows.set(b.id, b);
    }
    this.count('no-false-quarantine');
    if (s.quarantine.length > 0) this.violate('no-false-quarantine', `${where}: the daemon is in quarantine after plain crashes: ${JSON.stringify(s.quarantine)}`, { quarantine: s.quarantine, warnings: s.server.warnings }, 'quarantine');
    for (const w of s.server.warnings) {
      if (/quarantin|clock|rollback|restored|wiped/i.test(w)) this.violate('no-false-quarantine', `${where}: the server warns after plain crashes: ${w}`, { warnings: s.server.warnings }, `warn:${w}`);
      else this.note(`${where}: server warning: ${w}`);
    }

    // -- every lease in status
    for (const v of inStatusLeases.values()) {
      const until = ms(v.until);
      const l = this.leases.get(v.id);
      const slot = slotKey(v.clientId, v.pid, v.feature);
      const ttl = this.slotTtl.get(slot);
      this.count('ttl');
      if (until < s0 - REAP_SLACK_MS) {
        this.violate('ttl', `${where}: lease ${v.id} (${v.feature}, client ${v.clientId}) ended at ${v.until}, ${s0 - until} ms before the status was asked for: it outlived its TTL`, { lease: v }, `late:${v.id}`);
      }
      if (l) {
        this.count('no-resurrection');
        if (l.releasedAt !== null && l.releasedAt < s0) {
          this.violate('no-resurrection', `${where}: lease ${v.id} (${v.feature}) was answered checked in at ${new Date(l.releasedAt).toISOString()} but is back`, { lease: v, rec: l }, `res-lease:${v.id}`);
        }
        if (v.count !== l.count) this.violate('seats', `${where}: lease ${v.id} holds ${v.count} seats, answered with ${l.count}`, { lease: v }, `count:${v.id}`);
      }
      // The latest end any request could have given it.
      const bound = this.leaseUntilBound(v, slot, ttl, s1);
      this.count('ttl');
      this.count('no-phantom');
      if (bound === null) {
        this.violate('no-phantom', `${where}: lease ${v.id} (${v.feature} x${v.count}, client ${v.clientId} pid ${v.pid}) is in status but no checkout could have made it`, { lease: v }, `phantom-lease:${v.id}`);
      } else if (until > bound + 1) {
        this.violate('ttl', `${where}: lease ${v.id} (${v.feature}) ends at ${v.until}, ${until - bound} ms after the latest end any checkout or heartbeat could have given it (${new Date(bound).toISOString()})`, { lease: v }, `renew:${v.id}`);
      }
    }
    // -- every lease the answers prove alive must be there
    for (const l of this.activeLeases) {
      if (this.prunedLease(l, s1)) continue;
      if (!this.leaseMustExist(l, s0, s1)) continue;
      this.count('grant-kept');
      if (!inStatusLeases.has(l.id)) {
        this.violate(
          'grant-kept',
          `${where}: lease ${l.id} (${l.feature} x${l.count}, client ${l.client} pid ${l.pid}) was granted, never checked in, answered alive until ${new Date(this.untilBefore(l.answers, s0)).toISOString()}, and is gone`,
          { lease: l, answers: l.answers.slice(-4) },
          `lost-lease:${l.id}`,
        );
      }
    }
    // -- every borrow in status
    for (const v of inStatusBorrows.values()) {
      const until = ms(v.until);
      const b = this.borrows.get(v.id);
      this.count('borrow-kept');
      if (until < s0 - REAP_SLACK_MS) this.violate('borrow-kept', `${where}: borrow ${v.id} ended at ${v.until} but is still reserved`, { borrow: v }, `late-borrow:${v.id}`);
      if (b) {
        this.count('no-resurrection');
        if (b.returnedAt !== null && b.returnedAt < s0) {
          this.violate('no-resurrection', `${where}: borrow ${v.id} (${v.feature}) was answered returned at ${new Date(b.returnedAt).toISOString()} but is back`, { borrow: v }, `res-borrow:${v.id}`);
        }
        const least = this.untilBefore(b.answers, s0);
        if (until < least - 1) {
          this.violate('borrow-kept', `${where}: borrow ${v.id} (${v.feature}) ends at ${v.until}, before the end answered to its client (${new Date(least).toISOString()})`, { borrow: v, rec: b }, `short-borrow:${v.id}`);
        }
        if (v.count !== b.count || v.feature !== b.feature) this.violate('borrow-kept', `${where}: borrow ${v.id} changed: ${v.feature} x${v.count}, answered ${b.feature} x${b.count}`, { borrow: v }, `changed-borrow:${v.id}`);
      }
      const bound = this.borrowUntilBound(v, s1);
      this.count('no-phantom');
      if (bound === null) {
        this.violate('no-phantom', `${where}: borrow ${v.id} (${v.feature} x${v.count}, host ${v.hostName}) is in status but no borrow request could have made it`, { borrow: v }, `phantom-borrow:${v.id}`);
      } else if (until > bound + 1) {
        this.violate('borrow-kept', `${where}: borrow ${v.id} ends at ${v.until}, later than any borrow or renewal could have set (${new Date(bound).toISOString()})`, { borrow: v }, `long-borrow:${v.id}`);
      }
    }
    // -- every borrow the answers prove alive must be there
    for (const b of this.activeBorrows) {
      if (this.prunedBorrow(b, s1)) continue;
      if (!this.borrowMustExist(b, s0, s1)) continue;
      this.count('borrow-kept');
      const v = inStatusBorrows.get(b.id);
      if (!v) {
        this.violate('borrow-kept', `${where}: borrow ${b.id} (${b.feature} x${b.count}) was answered, never returned, runs until ${new Date(this.untilBefore(b.answers, s0)).toISOString()}, and is gone`, { borrow: b }, `lost-borrow:${b.id}`);
      }
    }
  }

  /** The latest end any request could have given this lease; null if none could have made it. */
  private leaseUntilBound(v: LeaseView, slot: string, ttl: number | undefined, s1: number): number | null {
    const since = ms(v.since);
    const t = ttl ?? 3600_000;
    let bound: number | null = null;
    const consider = (x: number) => {
      bound = bound === null ? x : Math.max(bound, x);
    };
    let made = false;
    for (const r of this.bySlot.get(slot) ?? []) {
      if (r.sentAt > s1 || r.outcome === 'unsent') continue;
      const twice = this.spanned(r);
      const res = r.outcome === 'ok' ? (r.result as { lease: LeaseView }) : null;
      if (res && res.lease.id === v.id) {
        consider(ms(res.lease.until));
        made = true;
      }
      if ((r.outcome === 'ok' && !twice) || (r.outcome === 'error' && !twice)) continue;
      // Unanswered, or carried out twice: it may have made or renewed the lease while its window was open.
      if (r.sentAt <= since + 5 && this.end(r) >= since - 5) made = true;
      if (this.end(r) >= since - 5) consider(Math.min(this.end(r), s1) + t);
    }
    if (!made) return null;
    // Heartbeats that may have renewed it, each with the latest time it may have been handled.
    const renewals: Array<{ sentAt: number; by: number }> = [];
    for (const r of this.clientReqs(v.clientId, since - 2 * MINUTE, s1)) {
      if (r.op !== 'heartbeat' || r.outcome === 'unsent') continue;
      const ids = r.params.leases as string[] | undefined;
      if (ids && !ids.includes(v.id)) continue;
      const twice = this.spanned(r);
      if (r.outcome === 'ok') {
        const x = (r.result as { renewed: Array<{ id: string; until: string }> }).renewed.find((y) => y.id === v.id);
        if (x) {
          consider(ms(x.until));
          renewals.push({ sentAt: r.sentAt, by: Math.min(this.end(r), s1) });
        }
        if (!twice) continue;
      } else if (r.outcome === 'error' && !twice) continue;
      if (this.end(r) >= since - 5) {
        consider(Math.min(this.end(r), s1) + t);
        renewals.push({ sentAt: r.sentAt, by: Math.min(this.end(r), s1) });
      }
    }
    // A renewal may have been written STORED_TTLS TTLs ahead (most are not written at all), and a
    // start keeps such a lease until then or one TTL after the start, whichever is sooner
    // (restoredEnd in src/core/seats.ts, docs/crash-safety.md).
    for (const up of this.starts) {
      if (up > s1) continue;
      let last: number | null = null;
      for (const h of renewals) if (h.sentAt < up) last = Math.max(last ?? h.by, Math.min(h.by, up));
      if (last !== null) consider(Math.min(last + STORED_TTLS * t, up + t));
    }
    return bound;
  }

  private borrowUntilBound(v: BorrowView, s1: number): number | null {
    const since = ms(v.since);
    let bound: number | null = null;
    const consider = (x: number) => {
      bound = bound === null ? x : Math.max(bound, x);
    };
    let made = false;
    for (const r of this.borrowReqs) {
      if (r.sentAt > s1 || r.outcome === 'unsent' || r.borrowBody?.hostId !== v.hostId) continue;
      if (!r.borrowBody.items.some((i) => i.feature === v.feature && i.count === v.count)) continue;
      const twice = this.spanned(r);
      const res = r.outcome === 'ok' ? (r.result as { borrows: BorrowView[] }) : null;
      const mine = res?.borrows.find((x) => x.id === v.id);
      if (mine) {
        made = true;
        consider(ms(mine.until));
      }
      if ((r.outcome === 'ok' && !twice) || (r.outcome === 'error' && !twice)) continue;
      if (r.sentAt <= since + 5 && this.end(r) >= since - 5) {
        made = true;
        consider(Math.min(this.end(r), s1) + r.borrowBody.hours * 3600_000);
      }
    }
    if (!made) return null;
    for (const r of this.renewsByBorrow.get(v.id) ?? []) {
      if (r.sentAt > s1 || r.outcome === 'unsent' || !r.borrowBody) continue;
      const twice = this.spanned(r);
      if (r.outcome === 'ok') {
        const x = (r.result as { borrows: BorrowView[] }).borrows.find((y) => y.id === v.id);
        if (x) consider(ms(x.until));
        if (!twice) continue;
      } else if (r.outcome === 'error' && !twice) continue;
      consider(Math.min(this.end(r), s1) + r.borrowBody.hours * 3600_000);
    }
    return bound;
  }

  /** Leases long over (or answered released long ago) leave the active set. */
  private prunedLease(l: LeaseRec, now: number): boolean {
    const over = l.releasedAt !== null ? l.releasedAt : this.maxUntil(l.answers);
    if (over < now - 5 * MINUTE) {
      this.activeLeases.delete(l);
      return true;
    }
    return false;
  }

  private prunedBorrow(b: BorrowRec, now: number): boolean {
    const over = b.returnedAt !== null ? b.returnedAt : this.maxUntil(b.answers);
    if (over < now - 5 * MINUTE) {
      this.activeBorrows.delete(b);
      return true;
    }
    return false;
  }

  // ---- for the load generator ----------------------------------------------------------------------

  /** Lease ids a client believes it holds: answered, not released, answered end not passed. */
  liveLeaseIds(client: string, now = Date.now()): string[] {
    const out: string[] = [];
    for (const l of this.activeLeases) if (l.client === client && l.releasedAt === null && this.maxUntil(l.answers) > now) out.push(l.id);
    return out;
  }

  /**
   * Borrows a host believes it holds: answered, not returned, no return under way (and, with
   * `quiet`, no renewal or borrow of it under way either).
   */
  liveBorrowIds(hostId: string, quiet = false): string[] {
    const out: string[] = [];
    for (const b of this.activeBorrows) {
      if (b.hostId !== hostId || b.returnedAt !== null) continue;
      if ((this.returnsByBorrow.get(b.id) ?? []).some((r) => r.outcome === 'pending')) continue;
      if (quiet && (this.renewsByBorrow.get(b.id) ?? []).some((r) => r.outcome === 'pending')) continue;
      out.push(b.id);
    }
    return out;
  }

  pendingBorrows(hostId: string): number {
    let n = 0;
    for (const r of this.open) if (r.op === 'borrow' && r.outcome === 'pending' && r.borrowBody?.hostId === hostId) n++;
    return n;
  }

  // ---- bookkeeping ---------------------------------------------------------------------------------

  /** Things worth telling that break no invariant (a dongle flap, a refused request). */
  note(text: string): void {
    const k = text.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, '').replace(/\d+/g, 'N');
    const n = this.notes.get(k);
    if (n) n.count++;
    else this.notes.set(k, { text, count: 1 });
  }

  count(inv: Invariant, n = 1): void {
    this.checks.get(inv)!.checked += n;
  }

  violate(inv: Invariant, message: string, details?: unknown, key?: string): void {
    const k = `${inv}:${key ?? message}`;
    if (this.seen.has(k)) return;
    this.seen.add(k);
    this.checks.get(inv)!.violations++;
    this.violations.push({ invariant: inv, trial: this.trial, seed: this.seed, at: new Date().toISOString(), message, details });
  }
}

function list<K, V>(m: Map<K, V[]>, k: K): V[] {
  let xs = m.get(k);
  if (!xs) m.set(k, (xs = []));
  return xs;
}

function brief(r: Req): Record<string, unknown> {
  return {
    seq: r.seq,
    client: r.client,
    op: r.op,
    params: r.op.startsWith('borrow') ? { ...(r.borrowBody ?? {}), returnIds: r.returnIds } : r.params,
    sentAt: new Date(r.sentAt).toISOString(),
    answeredAt: r.answeredAt ? new Date(r.answeredAt).toISOString() : null,
    outcome: r.outcome,
    code: r.code,
  };
}
