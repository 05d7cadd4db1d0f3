/**
 * Offline borrowing on the server: borrow, renew (and refresh on reconnect), return early,
 * previews for the multi-product wizard, admin listing, lost borrows, limits and air-gapped files.
 * The handlers plug into LicenseService; every seat change goes through the seat table and is
 * durable before the tokens are handed out.
 */
import { LicdError, isLicdError } from './errors.ts';
import type { SeatEvent } from './events.ts';
import type { Entitlement } from './entitlement.ts';
import type { Borrow, Change, Mutation } from './model.ts';
import type { Ed25519 } from './ports.ts';
import type { BorrowView } from './protocol.ts';
import type { SeatTable } from './seats.ts';
import { borrowView, iso, type LicenseService, type RequestContext } from './service.ts';
import { borrowRulesFor, describeBorrowRule, matches } from './policy.ts';
import type { SignedEnvelope } from './signed.ts';
import { openBorrowRequest, openReturn, type BorrowRequest, type BorrowToken, type TokenBundle } from './tokens.ts';
import { FEATURE_HELP, FEATURE_PATTERN, Fields, NAME_HELP, NAME_PATTERN, unsafeChar } from './validate.ts';

export interface LimitRule {
  maxSeats?: number;
  maxHours?: number;
}

/** A limit that comes from a policy line (BORROW_MAX, BORROW_HOURS), and whether it names nobody in particular. */
interface PolicyLine {
  line: number;
  everyone: boolean;
}

export interface BorrowLimits {
  features?: Record<string, LimitRule>;
  users?: Record<string, LimitRule>;
  groups?: Record<string, LimitRule & { members: string[] }>;
}

export interface BorrowPolicy {
  /** LM-X's refresh: a client reconnecting renews its borrow to the full period... */
  refreshOnReconnect: boolean;
  /** ...but not within this many minutes of the token's issue (LM-X: one hour). */
  refreshMinAgeMinutes: number;
  /** How old an online request may be (its createdAt against the server clock), minutes. */
  requestMaxAgeMinutes: number;
  /** How old an air-gapped request file may be, hours. */
  fileRequestMaxAgeHours: number;
}

export const defaultBorrowPolicy: BorrowPolicy = {
  refreshOnReconnect: true,
  refreshMinAgeMinutes: 60,
  requestMaxAgeMinutes: 15,
  fileRequestMaxAgeHours: 168,
};

export interface BorrowingDeps {
  service: LicenseService;
  entitlement: Entitlement;
  policy: BorrowPolicy;
  limits: BorrowLimits;
  newId: () => string;
  ed: Ed25519;
  /** Signs a token with the session key; null while there is no delegation (no dongle yet). */
  signToken: (t: BorrowToken) => SignedEnvelope | null;
  chain: () => { entitlement: SignedEnvelope; delegation: SignedEnvelope | null };
  sessionKeyHex: string;
  /** Extra checks before any new borrow or renewal (clock integrity, quarantine). */
  guard?: (now: number) => void;
  /** A check per item of a new borrow: a failover box lends none of the primary's seats (src/core/failover.ts). */
  admit?: (feature: string, count: number, now: number) => void;
}

/** The answer to borrow.preview (docs/protocol.md). */
export interface BorrowPreview {
  /** Whose limits the answer applies (the login, or the request's `user`); null: nobody's in particular. */
  user: string | null;
  /** Per feature needed (summed over the entries): what this user may borrow now. */
  items: Array<{
    feature: string;
    product: string;
    type: string;
    /** Seats needed (machines x the product's count, summed). */
    machines: number;
    /** min(machines, maxSeats). */
    count: number;
    free: number;
    total: number;
    borrow: { allowed: boolean; maxHours: number };
    maxSeats: number;
    seatsWhy: string;
    maxHours: number;
    hoursWhy: string;
  }>;
  /** The product entries, each with the licenses it needs per machine (count) and in all (seats). */
  products: Array<{ product: string; name: string; machines: number; licenses: Array<{ feature: string; type: string; count: number; seats: number }> }>;
  /** Per-user and per-group seat limits: the seats borrowed of all these features together stay within maxSeats - borrowed. */
  limits: Array<{ limit: string; maxSeats: number; borrowed: number; features: string[] }>;
}

export interface BorrowResult {
  tokens: TokenBundle[];
  borrows: BorrowView[];
  /** Renewals the server declined to refresh (the one-hour rule); their tokens are unchanged. */
  unchanged?: string[];
}

export function parseLimits(json: unknown, where = 'limits'): BorrowLimits {
  const f = Fields.of(json, where, 'BAD_REQUEST');
  f.only(['features', 'users', 'groups']);
  const rule = (x: Fields): LimitRule => {
    const r: LimitRule = {};
    const s = x.optInt('maxSeats', { min: 0, max: 1_000_000 });
    const h = x.optInt('maxHours', { min: 1, max: 8760 });
    if (s !== undefined) r.maxSeats = s;
    if (h !== undefined) r.maxHours = h;
    return r;
  };
  const map = <T>(name: 'features' | 'users' | 'groups', make: (x: Fields) => T): Record<string, T> | undefined => {
    const o = f.optObject(name);
    if (!o) return undefined;
    const out: Record<string, T> = {};
    for (const k of o.keys()) {
      if (!NAME_PATTERN.test(k)) o.fail(k, `is not a usable name: ${NAME_HELP}`);
      const x = o.object(k);
      x.only(name === 'groups' ? ['maxSeats', 'maxHours', 'members'] : ['maxSeats', 'maxHours']);
      out[k] = make(x);
    }
    return out;
  };
  const limits: BorrowLimits = {};
  const features = map('features', rule);
  const users = map('users', rule);
  const groups = map('groups', (x) => ({
    ...rule(x),
    members: x.array('members', { max: 10_000 }).map((m, i) => {
      if (typeof m !== 'string' || m.length === 0 || m.length > 64 || unsafeChar(m) !== null) x.fail(`members[${i}]`, 'must be a user name (plain text, at most 64 characters)');
      return m as string;
    }),
  }));
  if (features) limits.features = features;
  if (users) limits.users = users;
  if (groups) limits.groups = groups;
  return limits;
}

/**
 * With identity.requireLogin the signed request's user must be the MQTT login (the token carries
 * the user, so it cannot be replaced as a checkout's user is): per-user limits then hold.
 */
function requireIdentity(ctx: RequestContext, user: string): void {
  if (ctx.identity !== null && user !== ctx.identity) {
    throw new LicdError('FORBIDDEN', `this license server takes the user from the MQTT login: the request says user ${JSON.stringify(user)}, the login is ${JSON.stringify(ctx.identity)}; borrow as ${ctx.identity} (LICD_USER=${ctx.identity})`, {
      field: 'request.user',
      login: ctx.identity,
    });
  }
}

export class Borrowing {
  private limits: BorrowLimits;
  private readonly table: SeatTable;

  /** A new license installed at runtime: tokens from now on name it (docs/activation.md). */
  setEntitlement(e: Entitlement): void {
    this.d.entitlement = e;
  }

  constructor(private readonly d: BorrowingDeps) {
    this.limits = d.limits;
    this.table = d.service.table;
    const s = d.service;
    s.register('borrow', false, (ctx, f) => this.borrowNoting(ctx, f.raw('request'), 'online'));
    s.register('borrow.renew', false, (ctx, f) => this.renew(ctx, f.raw('request')));
    s.register('borrow.return', false, (ctx, f) => this.giveBack(ctx, f.raw('return')));
    s.register('borrow.list', false, async (_ctx, f) => this.list(f.optString('clientKey', { max: 64 })));
    s.register('borrow.preview', false, async (ctx, f) => this.preview(ctx, f));
    s.register('borrows', true, async () => this.list(undefined));
    s.register('borrow.lost', true, (ctx, f) => this.markLost(ctx, f));
    s.register('borrow.file', true, (ctx, f) => this.borrowNoting(ctx, f.raw('request'), 'file'));
    s.register('return.file', true, (ctx, f) => this.giveBack(ctx, f.raw('return')));
    s.register('limits.get', true, async () => ({ limits: this.limits }));
    s.register('limits.set', true, (ctx, f) => this.setLimits(ctx, f));
  }

  currentLimits(): BorrowLimits {
    return this.limits;
  }

  private open(raw: unknown): BorrowRequest {
    if (raw === undefined) throw new LicdError('BAD_REQUEST', 'request is missing: send the signed borrow request as "request"', { field: 'request' });
    return openBorrowRequest(raw, this.d.ed);
  }

  private fresh(req: { createdAt: number }, now: number, via: 'online' | 'file'): void {
    const max = via === 'file' ? this.d.policy.fileRequestMaxAgeHours * 3600_000 : this.d.policy.requestMaxAgeMinutes * 60_000;
    if (Math.abs(now - req.createdAt) > max) {
      throw new LicdError(
        'BAD_REQUEST',
        `the ${via === 'file' ? 'request file' : 'request'} was made at ${iso(req.createdAt)}, more than ${via === 'file' ? `${this.d.policy.fileRequestMaxAgeHours} h` : `${this.d.policy.requestMaxAgeMinutes} min`} from the server's time ${iso(now)}; make a new one (and check the clocks)`,
        { reason: 'stale-request' },
      );
    }
  }

  /** Hours allowed for a feature for this user, checking the license, the limits and the expiry. */
  private checkHours(feature: string, hours: number, user: string, host: string, now: number): void {
    const lic = this.table.license(feature);
    if (!lic) throw this.table.noSeats(feature, 0, now);
    if (!lic.borrow.allowed) {
      throw new LicdError('BORROW_NOT_ALLOWED', `${feature}: the license does not allow borrowing; use it online, or ask the vendor for a license with borrowing`, { feature });
    }
    if (hours > lic.borrow.maxHours) {
      throw new LicdError('BORROW_HOURS', `${feature}: ${hours} h asked for, the license allows at most ${lic.borrow.maxHours} h`, { feature, hours, maxHours: lic.borrow.maxHours });
    }
    if (lic.expires !== null && now + hours * 3600_000 > lic.expires) {
      const left = Math.floor((lic.expires - now) / 3600_000);
      throw new LicdError('BORROW_HOURS', `${feature}: the license ends at ${iso(lic.expires)}, so at most ${left} h can be borrowed now`, { feature, hours, maxHours: left });
    }
    for (const [scope, rule, , pl] of this.rulesFor(feature, user, host)) {
      if (rule.maxHours !== undefined && hours > rule.maxHours) {
        throw new LicdError('BORROW_HOURS', `${feature}: ${hours} h asked for, but ${scope} allows at most ${rule.maxHours} h`, { feature, hours, maxHours: rule.maxHours, limit: scope, ...(pl ? { rule: 'BORROW_HOURS', line: pl.line } : {}) });
      }
    }
  }

  /**
   * The limits a borrow of `feature` by user@host is judged by, each as [scope (how it reads in a
   * message), rule, which borrows count against it, the policy line]. A feature the policy has
   * BORROW_MAX or BORROW_HOURS lines for (its own or *) is judged by those lines alone; any other
   * by the borrow limits (config borrow.limits, or licctl borrow limits), as before
   * (docs/policy.md, "Borrowing"). Without a host (the wizard's preview) rules that name a host
   * or host group are left out.
   */
  private rulesFor(feature: string, user: string, host?: string): Array<[string, LimitRule, (b: Pick<Borrow, 'feature' | 'user' | 'hostName'>) => boolean, PolicyLine?]> {
    const p = this.table.currentPolicy();
    const fromPolicy = borrowRulesFor(p, feature);
    if (fromPolicy.length > 0) {
      const out: Array<[string, LimitRule, (b: Pick<Borrow, 'feature' | 'user' | 'hostName'>) => boolean, PolicyLine?]> = [];
      for (const r of fromPolicy) {
        const subject = r.subject;
        if (subject && (subject.type === 'HOST' || subject.type === 'HOST_GROUP') && host === undefined) continue;
        if (subject && !matches(p, subject, user, host ?? '')) continue;
        const inFeature = (b: Pick<Borrow, 'feature'>) => r.feature === '*' || b.feature === r.feature;
        const counts = subject ? (b: Pick<Borrow, 'feature' | 'user' | 'hostName'>) => inFeature(b) && matches(p, subject, b.user, b.hostName) : inFeature;
        out.push([describeBorrowRule(r), r.kind === 'hours' ? { maxHours: r.n } : { maxSeats: r.n }, counts, { line: r.line, everyone: subject === null }]);
      }
      return out;
    }
    const out: Array<[string, LimitRule, (b: Pick<Borrow, 'feature' | 'user' | 'hostName'>) => boolean, PolicyLine?]> = [];
    const f = this.limits.features?.[feature];
    if (f) out.push([`limits.features.${feature}`, f, (b) => b.feature === feature]);
    const u = this.limits.users?.[user];
    if (u) out.push([`limits.users.${user}`, u, (b) => b.user === user]);
    for (const [name, g] of Object.entries(this.limits.groups ?? {})) {
      if (g.members.includes(user)) out.push([`limits.groups.${name}`, g, (b) => g.members.includes(b.user)]);
    }
    return out;
  }

  private checkSeatLimits(items: Array<{ feature: string; count: number }>, user: string, host: string): void {
    const all = this.table.allBorrows();
    for (const item of items) {
      for (const [scope, rule, counts, pl] of this.rulesFor(item.feature, user, host)) {
        if (rule.maxSeats === undefined) continue;
        const now = all.filter(counts).reduce((n, b) => n + b.count, 0);
        const adding = items.filter((i) => counts({ feature: i.feature, user, hostName: host })).reduce((n, i) => n + i.count, 0);
        if (now + adding > rule.maxSeats) {
          throw new LicdError('BORROW_LIMIT', `${item.feature}: ${scope} allows ${rule.maxSeats} borrowed seats and ${now} are borrowed; ${adding} more asked for`, {
            feature: item.feature,
            limit: scope,
            maxSeats: rule.maxSeats,
            borrowed: now,
            ...(pl ? { rule: 'BORROW_MAX', line: pl.line } : {}),
          });
        }
      }
    }
  }

  private bundle(b: Borrow, issuedAt: number): TokenBundle {
    const lic = this.table.license(b.feature)!;
    const chain = this.d.chain();
    const token: BorrowToken = {
      tokenId: b.tokenId,
      borrowId: b.id,
      feature: b.feature,
      product: lic.product,
      version: lic.version,
      type: lic.type,
      count: b.count,
      user: b.user,
      hostId: b.hostId,
      hostName: b.hostName,
      clientKey: b.clientKey,
      issuedAt,
      expiresAt: b.expiresAt,
      entitlementId: this.d.entitlement.id,
      dongleSerial: this.d.entitlement.dongle.serial,
      sessionKey: this.d.sessionKeyHex,
    };
    const env = this.d.signToken(token);
    if (!env || !chain.delegation) throw new LicdError('DONGLE_ABSENT', 'the dongle has not delegated a session key yet; tokens cannot be signed until it is present');
    return { format: 'licd-token-bundle/1', token: env, entitlement: chain.entitlement, delegation: chain.delegation };
  }

  /** Borrow requests whose change is being written: a repeat waits for it (see borrow()). */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  /** borrow(), and the refusal of a well-formed request told to the event sinks (borrow.denied). */
  private async borrowNoting(ctx: RequestContext, raw: unknown, via: 'online' | 'file'): Promise<BorrowResult> {
    const req = this.open(raw);
    try {
      return await this.borrow(ctx, req, via);
    } catch (e) {
      if (isLicdError(e)) {
        for (const item of req.items) {
          this.d.service.note({ type: 'borrow.denied', at: ctx.now, feature: item.feature, user: ctx.identity ?? req.user, host: req.hostName, client: ctx.clientId, code: e.code, message: e.message });
        }
      }
      throw e;
    }
  }

  private async borrow(ctx: RequestContext, req: BorrowRequest, via: 'online' | 'file'): Promise<BorrowResult> {
    if (req.renew) throw new LicdError('BAD_REQUEST', 'this request renews borrows: send it as borrow.renew', { field: 'renew' });
    requireIdentity(ctx, req.user);
    const now = ctx.now;
    this.fresh(req, now, via);
    // A repeated request (a lost answer, a re-imported file) gets the same tokens, not more seats;
    // but only once they are on disk: answering from memory while the first copy is still being
    // written would hand out a token that a crash could leave without its seat.
    const key = `${req.clientKey}\0${req.requestId}`;
    const pending = this.inFlight.get(key);
    if (pending) await pending.catch(() => {});
    const existing = this.table.borrowsOfRequest(req.clientKey, req.requestId);
    if (existing.length > 0) return { tokens: existing.map((b) => this.bundle(b, b.tokenIssuedAt)), borrows: existing.map(borrowView) };
    this.d.service.requireDongle();
    this.d.guard?.(now);
    for (const item of req.items) this.checkHours(item.feature, req.hours, req.user, req.hostName, now);
    this.checkSeatLimits(req.items, req.user, req.hostName);
    for (const item of req.items) this.d.admit?.(item.feature, item.count, now);
    const changes: Array<Change<Borrow>> = [];
    try {
      for (const item of req.items) {
        changes.push(
          this.table.borrow(
            {
              feature: item.feature,
              count: item.count,
              user: req.user,
              hostId: req.hostId,
              hostName: req.hostName,
              clientKey: req.clientKey,
              clientId: via === 'online' ? ctx.clientId : null,
              since: now,
              expiresAt: now + req.hours * 3600_000,
              lost: false,
              autoRenew: req.autoRenew,
              via,
              requestId: req.requestId,
              tokenId: this.d.newId(),
              tokenIssuedAt: now,
              hours: req.hours,
            },
            now,
          ),
        );
      }
    } catch (e) {
      for (const c of changes.reverse()) c.undo();
      throw e;
    }
    const events = changes.map((c): SeatEvent => ({ type: 'borrow.granted', at: now, borrow: c.result }));
    const written = this.d.service.commit(merge(changes), req.items.map((i) => i.feature), { bindCounter: true, events });
    this.inFlight.set(key, written);
    let borrows: Borrow[];
    try {
      borrows = await written;
    } finally {
      if (this.inFlight.get(key) === written) this.inFlight.delete(key);
    }
    for (const b of borrows) this.d.service.log.info('borrowed', { borrow: b.id, feature: b.feature, count: b.count, user: b.user, host: b.hostName, until: iso(b.expiresAt), via });
    return { tokens: borrows.map((b) => this.bundle(b, now)), borrows: borrows.map(borrowView) };
  }

  private async renew(ctx: RequestContext, raw: unknown): Promise<BorrowResult> {
    const req = this.open(raw);
    if (!req.renew || req.renew.length === 0) throw new LicdError('BAD_REQUEST', 'renew must list the borrow ids to renew', { field: 'renew' });
    requireIdentity(ctx, req.user);
    const now = ctx.now;
    this.fresh(req, now, 'online');
    this.d.service.requireDongle();
    this.d.guard?.(now);
    const changes: Array<Change<Borrow>> = [];
    const unchanged: Borrow[] = [];
    try {
      for (const id of req.renew) {
        const b = this.table.getBorrow(id);
        if (!b || b.clientKey !== req.clientKey || b.hostId !== req.hostId) {
          // The server cannot tell "returned or ended" from "never recorded here" (a restored or
          // wiped database): it says both, and the client keeps its token (docs/borrowing.md).
          const quarantined = this.table.holds(now).length > 0;
          throw new LicdError(
            'UNKNOWN_BORROW',
            `this server has no record of borrow ${JSON.stringify(id)} of this machine: it was returned or has ended, or the server's database was restored or wiped${quarantined ? ' (the server is in quarantine, so that is likely)' : ''}. A token that has not expired stays valid offline`,
            { borrow: id, quarantine: quarantined },
          );
        }
        if (b.lost) throw new LicdError('BORROW_NOT_ALLOWED', `borrow ${id} of ${b.feature} was marked lost by an admin and cannot be renewed; ask the admin`, { borrow: id });
        if (req.refresh && (!this.d.policy.refreshOnReconnect || now - b.tokenIssuedAt < this.d.policy.refreshMinAgeMinutes * 60_000)) {
          unchanged.push(b);
          continue;
        }
        const hours = req.refresh ? b.hours : req.hours;
        this.checkHours(b.feature, hours, b.user, b.hostName, now);
        // A renewal never shortens a borrow: it keeps the later of the current end and the asked
        // one (a plain `licctl renew` after `renew --hours 48` must not cut the 48 h back), and the
        // longer period for later refreshes.
        const expiresAt = Math.max(b.expiresAt, now + hours * 3600_000);
        changes.push(this.table.updateBorrow({ ...b, expiresAt, hours: Math.max(b.hours, hours), tokenId: this.d.newId(), tokenIssuedAt: now, autoRenew: req.autoRenew, clientId: ctx.clientId }));
      }
    } catch (e) {
      for (const c of changes.reverse()) c.undo();
      throw e;
    }
    const renewed = await this.d.service.commit(merge(changes), [], { bindCounter: true, events: changes.map((c): SeatEvent => ({ type: 'borrow.renewed', at: now, borrow: c.result })) });
    for (const b of renewed) this.d.service.log.info(req.refresh ? 'borrow refreshed on reconnect' : 'borrow renewed', { borrow: b.id, feature: b.feature, user: b.user, until: iso(b.expiresAt) });
    const all = [...renewed, ...unchanged];
    return {
      tokens: all.map((b) => this.bundle(b, b.tokenIssuedAt)),
      borrows: all.map(borrowView),
      ...(unchanged.length > 0 ? { unchanged: unchanged.map((b) => b.id) } : {}),
    };
  }

  private async giveBack(_ctx: RequestContext, raw: unknown): Promise<{ returned: string[]; unknown: string[] }> {
    if (raw === undefined) throw new LicdError('BAD_REQUEST', 'return is missing: send the signed return note as "return"', { field: 'return' });
    const note = openReturn(raw, this.d.ed);
    const changes: Array<Change<Borrow>> = [];
    const unknown: string[] = [];
    for (const id of note.borrowIds) {
      const b = this.table.getBorrow(id);
      if (!b || b.clientKey !== note.clientKey) {
        unknown.push(id);
        continue;
      }
      changes.push(this.table.returnBorrow(id));
    }
    const at = this.d.service.clock.now();
    const events = changes.map((c): SeatEvent => ({ type: 'borrow.ended', at, borrow: c.result, reason: 'returned' }));
    const returned = await this.d.service.commit(merge(changes), changes.map((c) => c.result.feature), { events });
    for (const b of returned) this.d.service.log.info('borrow returned early', { borrow: b.id, feature: b.feature, user: b.user });
    return { returned: returned.map((b) => b.id), unknown };
  }

  private list(clientKey: string | undefined): { borrows: BorrowView[] } {
    return { borrows: this.table.allBorrows().filter((b) => clientKey === undefined || b.clientKey === clientKey).map(borrowView) };
  }

  private async markLost(ctx: RequestContext, f: Fields): Promise<{ borrow: BorrowView }> {
    const id = f.string('borrow', { max: 64 });
    const b = this.table.getBorrow(id);
    if (!b) throw new LicdError('UNKNOWN_BORROW', `no borrow ${JSON.stringify(id)}; licctl borrows lists them`, { borrow: id });
    const change = this.table.updateBorrow({ ...b, lost: true, autoRenew: false });
    const updated = await this.d.service.commit(change, [b.feature], { events: [{ type: 'borrow.lost', at: ctx.now, borrow: change.result, by: ctx.clientId }] });
    this.d.service.log.warn('borrow marked lost: its seat stays reserved until the token expires', { borrow: id, admin: ctx.clientId, until: iso(b.expiresAt) });
    return { borrow: borrowView(updated) };
  }

  /**
   * What a borrow would get, for the wizard: per product asked for (by id, with a number of
   * machines) the licenses it needs, and per feature, summed, what THIS user may borrow now (free
   * seats and every limit that applies to them) and for how many hours. Older clients send
   * `{feature, machines}` entries; both kinds may be mixed.
   */
  private preview(ctx: RequestContext, f: Fields): BorrowPreview {
    const user = ctx.identity ?? f.optString('user', { max: 64 }) ?? null;
    // The wizard previews every product the entitlement lists (at most MAX_PRODUCTS) at once.
    const entries = f.array('products', { max: 256 });
    const catalogue = this.d.entitlement.products;
    const need = new Map<string, number>();
    const products: BorrowPreview['products'] = [];
    for (const [i, raw] of entries.entries()) {
      const x = f.element(i, raw, 'products');
      const machines = x.int('machines', { min: 0, max: 10_000 });
      if (x.has('product')) {
        if (x.has('feature')) x.fail('feature', 'cannot go with product: give {"product": ID, "machines": N} or {"feature": NAME, "machines": N}');
        const id = x.string('product', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
        const p = catalogue.find((c) => c.id === id);
        if (!p) {
          throw new LicdError('UNKNOWN_PRODUCT', `no product ${JSON.stringify(id)} on this server; products: ${catalogue.map((c) => c.id).join(', ')} (licctl status lists them)`, { product: id });
        }
        const licenses = p.licenses.map((l) => ({ feature: l.feature, type: this.table.license(l.feature)?.type ?? 'render', count: l.count, seats: l.count * machines }));
        for (const l of licenses) need.set(l.feature, (need.get(l.feature) ?? 0) + l.seats);
        products.push({ product: p.id, name: p.name, machines, licenses });
      } else {
        const feature = x.string('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
        this.table.availability(feature, ctx.now); // UNKNOWN_FEATURE if it is not licensed
        need.set(feature, (need.get(feature) ?? 0) + machines);
      }
    }
    const items = [...need].map(([feature, machines]) => {
      const a = this.table.availability(feature, ctx.now);
      const most = this.mayBorrow(feature, user, a.free, a.borrow, ctx.now);
      return {
        feature,
        product: a.product,
        type: a.type,
        machines,
        count: Math.min(machines, most.seats),
        free: a.free,
        total: a.total,
        borrow: a.borrow,
        maxSeats: most.seats,
        seatsWhy: most.seatsWhy,
        maxHours: most.hours,
        hoursWhy: most.hoursWhy,
      };
    });
    return { user, items, products, limits: this.sharedLimits([...need.keys()], user) };
  }

  /**
   * The most seats of `feature` this user may borrow now and for how long, each with the reason
   * that sets it (the same rules borrow() applies: license, expiry, free seats, admin limits).
   * Without a user, only the rules that apply to everyone (the license and per-feature limits).
   */
  private mayBorrow(feature: string, user: string | null, free: number, rule: { allowed: boolean; maxHours: number }, now: number): { seats: number; seatsWhy: string; hours: number; hoursWhy: string } {
    const lic = this.table.license(feature)!;
    if (!rule.allowed) return { seats: 0, seatsWhy: 'the license does not allow borrowing', hours: 0, hoursWhy: 'the license does not allow borrowing' };
    let seats = free;
    let seatsWhy = `${free} free`;
    let hours = rule.maxHours;
    let hoursWhy = `the license allows at most ${hours} h`;
    if (lic.expires !== null) {
      const left = Math.max(0, Math.floor((lic.expires - now) / 3600_000));
      if (left < hours) {
        hours = left;
        hoursWhy = `the license ends at ${iso(lic.expires)}`;
      }
    }
    const all = this.table.allBorrows();
    for (const [scope, r, counts, pl] of this.rulesFor(feature, user ?? '\0')) {
      // Without a user, only the rules for everyone (per feature, or a policy line naming nobody).
      if (user === null && (pl ? !pl.everyone : !scope.startsWith('limits.features.'))) continue;
      if (r.maxSeats !== undefined) {
        const borrowed = all.filter(counts).reduce((n, b) => n + b.count, 0);
        const left = Math.max(0, r.maxSeats - borrowed);
        if (left < seats) {
          seats = left;
          seatsWhy = `${scope} allows ${r.maxSeats} borrowed seats and ${borrowed} are borrowed`;
        }
      }
      if (r.maxHours !== undefined && r.maxHours < hours) {
        hours = r.maxHours;
        hoursWhy = `${scope} allows at most ${r.maxHours} h`;
      }
    }
    return { seats, seatsWhy, hours, hoursWhy };
  }

  /** Seat limits that span features (per user, per group): the sum over their features must stay within. */
  private sharedLimits(features: string[], user: string | null): BorrowPreview['limits'] {
    if (user === null) return [];
    const all = this.table.allBorrows();
    const out: BorrowPreview['limits'] = [];
    const add = (limit: string, maxSeats: number | undefined, counts: (b: Borrow) => boolean) => {
      if (maxSeats === undefined) return;
      out.push({ limit, maxSeats, borrowed: all.filter(counts).reduce((n, b) => n + b.count, 0), features });
    };
    // The policy's BORROW_MAX lines for * (all features together) that name this user (or everyone).
    const p = this.table.currentPolicy();
    const policyFeatures = features.filter((f) => borrowRulesFor(p, f).length > 0);
    for (const r of p.borrow) {
      if (r.kind !== 'max' || r.feature !== '*' || policyFeatures.length === 0) continue;
      const subject = r.subject;
      if (subject && (subject.type === 'HOST' || subject.type === 'HOST_GROUP' || !matches(p, subject, user, ''))) continue;
      add(describeBorrowRule(r), r.n, subject ? (b) => matches(p, subject, b.user, b.hostName) : () => true);
    }
    // The borrow limits' own, for the features the policy says nothing of borrowing about.
    if (policyFeatures.length === features.length && features.length > 0) return out;
    const u = this.limits.users?.[user];
    if (u) add(`limits.users.${user}`, u.maxSeats, (b) => b.user === user);
    for (const [name, g] of Object.entries(this.limits.groups ?? {})) {
      if (g.members.includes(user)) add(`limits.groups.${name}`, g.maxSeats, (b) => g.members.includes(b.user));
    }
    return out;
  }

  private async setLimits(ctx: RequestContext, f: Fields): Promise<{ limits: BorrowLimits }> {
    const limits = parseLimits(f.raw('limits'));
    const change: Change<BorrowLimits> = { result: limits, mutations: [{ kind: 'meta.put', key: 'borrow-limits', value: limits }], undo: () => {} };
    await this.d.service.commit(change, []);
    this.limits = limits;
    this.d.service.log.info('borrow limits changed', { admin: ctx.clientId, limits });
    return { limits };
  }
}

function merge<T>(changes: Array<Change<T>>): Change<T[]> {
  const mutations: Mutation[] = changes.flatMap((c) => c.mutations);
  return {
    result: changes.map((c) => c.result),
    mutations,
    undo: () => {
      for (const c of [...changes].reverse()) c.undo();
    },
  };
}
