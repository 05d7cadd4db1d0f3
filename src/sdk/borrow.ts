/**
 * Borrowing on the client: the token store (the "borrowed license file" of other products),
 * borrow / renew / return over MQTT, auto-renew and refresh on reconnect, air-gapped request,
 * token and return files, and offline use of a token.
 *
 * The store is a directory of self-contained JSON files, one per borrow, under LICD_HOME/tokens.
 * Nothing in it depends on hidden state, so copying or restoring it with backup tools does not
 * break it; a copy on another machine or for another user is refused by the host id, user and key.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LicdError, isLicdError } from '../core/errors.ts';
import { systemClock, type Clock, type Ed25519 } from '../core/ports.ts';
import type { BorrowView } from '../core/protocol.ts';
import type { SignedEnvelope } from '../core/signed.ts';
import {
  peekToken,
  sealBorrowRequest,
  sealReturn,
  verifyBorrowToken,
  type BorrowRequestBody,
  type BorrowToken,
  type TokenBundle,
  type VerifiedToken,
} from '../core/tokens.ts';
import { nodeEd25519 } from '../crypto/ed25519.ts';
import { readJsonFile } from '../files.ts';
import { writeFileAtomic } from '../vendor.ts';
import type { LicdClient } from './client.ts';
import { loadIdentity, type ClientIdentity } from './identity.ts';
import { SeatLocks, type HeldSlot, type SlotOwner } from './seat-lock.ts';

/** Expired tokens (and the records of returned borrows) are removed this long after their expiry. */
export const PRUNE_AFTER_MS = 7 * 24 * 3600_000;

/**
 * A borrow returned from this machine: its tokens (any of them, by borrow id or token id) are
 * never imported or used again, so a kept token file cannot undo a return.
 */
export interface Tombstone {
  kind: 'licd-returned-borrow';
  borrowId: string;
  tokenIds: string[];
  feature: string;
  count: number;
  expiresAt: string;
  returnedAt: string;
  how: 'online' | 'file';
}

export interface StoredToken {
  kind: 'licd-stored-token';
  bundle: TokenBundle;
  autoRenew: boolean;
  hours: number;
  savedAt: string;
}

export interface BorrowResultView {
  tokens: TokenBundle[];
  borrows: BorrowView[];
  unchanged?: string[];
}

export interface LocalToken {
  borrowId: string;
  token: BorrowToken;
  stored: StoredToken;
  /** Verified for use here and now, or why not. */
  valid: VerifiedToken | null;
  problem: LicdError | null;
}

/** Tokens closer than this to expiry are renewed when the client can reach the server. */
export function renewDue(t: BorrowToken, now: number): boolean {
  const period = t.expiresAt - t.issuedAt;
  const left = t.expiresAt - now;
  return left < Math.min(period / 4, 24 * 3600_000);
}

export class BorrowClient {
  readonly identity: ClientIdentity;
  private readonly ed: Ed25519;
  readonly tokenDir: string;
  readonly returnedDir: string;
  readonly locks: SeatLocks;
  private readonly clockFile: string;
  private readonly clock: Clock;

  constructor(opts: { home?: string; user?: string; hostName?: string; hostId?: string; ed?: Ed25519; clock?: Clock } = {}) {
    this.ed = opts.ed ?? nodeEd25519();
    this.clock = opts.clock ?? systemClock;
    this.identity = loadIdentity({ ...opts, ed: this.ed });
    this.tokenDir = join(this.identity.home, 'tokens');
    this.clockFile = join(this.identity.home, 'clock.json');
    this.returnedDir = join(this.identity.home, 'returned');
    this.locks = new SeatLocks(join(this.identity.home, 'locks'));
    mkdirSync(this.tokenDir, { recursive: true, mode: 0o700 });
  }

  // ---- documents ------------------------------------------------------------------------------

  request(items: Array<{ feature: string; count: number }>, hours: number, o: { autoRenew?: boolean; renew?: string[]; refresh?: boolean; now?: number } = {}): SignedEnvelope {
    const id = this.identity;
    const body: BorrowRequestBody = {
      requestId: randomBytes(12).toString('base64url'),
      items,
      hours,
      user: id.user,
      hostId: id.hostId,
      hostName: id.hostName,
      clientKey: id.publicKey,
      autoRenew: o.autoRenew ?? false,
      createdAt: new Date(o.now ?? this.clock.now()).toISOString(),
      ...(o.renew ? { renew: o.renew } : {}),
      ...(o.refresh ? { refresh: true } : {}),
    };
    return sealBorrowRequest(body, id.seed, this.ed);
  }

  returnNote(borrowIds: string[], now = this.clock.now()): SignedEnvelope {
    const id = this.identity;
    return sealReturn({ borrowIds, hostId: id.hostId, user: id.user, clientKey: id.publicKey, createdAt: new Date(now).toISOString() }, id.seed, this.ed);
  }

  // ---- the store ------------------------------------------------------------------------------

  save(bundle: TokenBundle, autoRenew: boolean, hours: number): BorrowToken {
    const t = peekToken(bundle);
    if (t.clientKey !== this.identity.publicKey || t.hostId !== this.identity.hostId) {
      throw new LicdError('TOKEN_INVALID', `this token was made for another machine or key (host id ${t.hostId.slice(0, 12)}…); import it on the machine that made the request`, { reason: 'host' });
    }
    const gone = this.returnedRecord(t);
    if (gone) throw returnedError(t, gone);
    const stored: StoredToken = { kind: 'licd-stored-token', bundle, autoRenew, hours, savedAt: new Date().toISOString() };
    writeFileAtomic(join(this.tokenDir, `${t.borrowId}.json`), JSON.stringify(stored, null, 2) + '\n', 0o600);
    return t;
  }

  stored(borrowId: string): StoredToken | null {
    try {
      return JSON.parse(readFileSync(join(this.tokenDir, `${borrowId}.json`), 'utf8')) as StoredToken;
    } catch {
      return null;
    }
  }

  remove(borrowId: string): void {
    rmSync(join(this.tokenDir, `${borrowId}.json`), { force: true });
  }

  /**
   * Remembers that a borrow was returned from here, then deletes its token: written before the
   * token goes, so that no crash leaves a returned token without its record.
   */
  private bury(borrowId: string, how: 'online' | 'file'): void {
    const st = this.stored(borrowId);
    let t: BorrowToken | null = null;
    try {
      t = st ? peekToken(st.bundle) : null;
    } catch {
      t = null;
    }
    const prev = this.readTombstone(borrowId);
    const stone: Tombstone = {
      kind: 'licd-returned-borrow',
      borrowId,
      tokenIds: [...new Set([...(prev?.tokenIds ?? []), ...(t ? [t.tokenId] : [])])],
      feature: t?.feature ?? prev?.feature ?? '',
      count: t?.count ?? prev?.count ?? 0,
      // Without the token the expiry is unknown: keep the record for the longest borrow there is.
      expiresAt: new Date(t ? t.expiresAt : prev ? Date.parse(prev.expiresAt) : this.clock.now() + 8760 * 3600_000).toISOString(),
      returnedAt: new Date(this.clock.now()).toISOString(),
      how,
    };
    writeFileAtomic(join(this.returnedDir, `${safeName(borrowId)}.json`), JSON.stringify(stone, null, 2) + '\n', 0o600);
    this.remove(borrowId);
  }

  private readTombstone(borrowId: string): Tombstone | null {
    try {
      const j = JSON.parse(readFileSync(join(this.returnedDir, `${safeName(borrowId)}.json`), 'utf8')) as Tombstone;
      return j.kind === 'licd-returned-borrow' ? j : null;
    } catch {
      return null;
    }
  }

  /** The record of a return that covers this token (its borrow, or its token id), if any. */
  returnedRecord(t: Pick<BorrowToken, 'borrowId' | 'tokenId'>): Tombstone | null {
    const byBorrow = this.readTombstone(t.borrowId);
    if (byBorrow) return byBorrow;
    if (!existsSync(this.returnedDir)) return null;
    for (const f of readdirSync(this.returnedDir).filter((x) => x.endsWith('.json'))) {
      try {
        const j = JSON.parse(readFileSync(join(this.returnedDir, f), 'utf8')) as Tombstone;
        if (j.kind === 'licd-returned-borrow' && j.tokenIds.includes(t.tokenId)) return j;
      } catch {
        continue;
      }
    }
    return null;
  }

  /**
   * Removes token files and return records more than PRUNE_AFTER_MS past their expiry (an expired
   * token is shown as expired until then). Returns the borrow ids of the tokens removed.
   */
  prune(now = this.clock.now()): string[] {
    const removed: string[] = [];
    for (const [dir, expiry] of [
      [this.tokenDir, (j: unknown) => peekToken((j as StoredToken).bundle).expiresAt],
      [this.returnedDir, (j: unknown) => Date.parse((j as Tombstone).expiresAt)],
    ] as const) {
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
        let end: number;
        try {
          end = expiry(JSON.parse(readFileSync(join(dir, f), 'utf8')));
        } catch {
          continue;
        }
        if (Number.isFinite(end) && now > end + PRUNE_AFTER_MS) {
          rmSync(join(dir, f), { force: true });
          if (dir === this.tokenDir) {
            const id = f.slice(0, -'.json'.length);
            rmSync(join(this.identity.home, 'locks', safeName(id)), { recursive: true, force: true });
            removed.push(id);
          }
        }
      }
    }
    return removed;
  }

  /** Whether any token is stored (a directory listing, no parsing). */
  hasTokens(): boolean {
    return existsSync(this.tokenDir) && readdirSync(this.tokenDir).some((x) => x.endsWith('.json'));
  }

  /** Every stored token, each verified for this machine, user and time (or why not). */
  list(vendorPublicKey: Uint8Array | null, now = this.clock.now(), o: { refuseEmulated?: boolean } = {}): LocalToken[] {
    if (!existsSync(this.tokenDir)) return [];
    this.prune(now);
    const out: LocalToken[] = [];
    const highWater = this.highWater();
    for (const f of readdirSync(this.tokenDir).filter((x) => x.endsWith('.json'))) {
      let stored: StoredToken;
      let token: BorrowToken;
      try {
        stored = JSON.parse(readFileSync(join(this.tokenDir, f), 'utf8')) as StoredToken;
        token = peekToken(stored.bundle);
      } catch {
        continue;
      }
      let valid: VerifiedToken | null = null;
      let problem: LicdError | null = null;
      const gone = this.returnedRecord(token);
      if (gone) problem = returnedError(token, gone);
      else if (!vendorPublicKey) problem = new LicdError('TOKEN_INVALID', 'no vendor public key to verify with: none is pinned for this server (--broker, LICD_BROKER or "broker" in the client config) and none is configured; set LICD_VENDOR_KEY or "vendorPublicKey" in the client config, or pin the server\'s key with licctl borrow --trust-vendor-key SHA256:... (licd prints it at start; docs/borrowing.md)');
      else {
        try {
          valid = verifyBorrowToken(stored.bundle, {
            vendorPublicKey,
            ed: this.ed,
            now,
            hostId: this.identity.hostId,
            user: this.identity.user,
            clientKey: this.identity.publicKey,
            ...(highWater !== null ? { highWater } : {}),
            ...(o.refuseEmulated ? { refuseEmulated: true } : {}),
          });
        } catch (e) {
          if (!isLicdError(e)) throw e;
          problem = e;
        }
      }
      out.push({ borrowId: token.borrowId, token, stored, valid, problem });
    }
    return out.sort((a, b) => a.token.feature.localeCompare(b.token.feature));
  }

  /** A token good for `feature` here and now, or the reason there is none. */
  usable(feature: string, vendorPublicKey: Uint8Array | null, now = this.clock.now()): { ok: LocalToken } | { ok: null; reason: string } {
    const mine = this.list(vendorPublicKey, now).filter((t) => t.token.feature === feature);
    const good = mine.find((t) => t.valid);
    if (good) {
      this.markTime(now);
      return { ok: good };
    }
    if (mine.length === 0) return { ok: null, reason: `no borrowed ${feature} on this machine` };
    return { ok: null, reason: mine.map((t) => t.problem?.message ?? 'invalid').join('; ') };
  }

  /**
   * A token good for `feature` here and now with a free seat slot on this host, locked for this
   * process until `release` (or its death): concurrent offline uses never exceed the borrowed
   * count. `inUse` lists the live holders when valid tokens exist but every slot is taken.
   */
  acquire(feature: string, vendorPublicKey: Uint8Array | null, now = this.clock.now()): { ok: LocalToken; slot: HeldSlot } | { ok: null; reason: string; inUse: SlotOwner[] } {
    const mine = this.list(vendorPublicKey, now).filter((t) => t.token.feature === feature);
    const good = mine.filter((t) => t.valid);
    for (const t of good) {
      const slot = this.locks.acquire(t.borrowId, t.token.count, feature);
      if (slot) {
        this.markTime(now);
        return { ok: t, slot };
      }
    }
    if (good.length > 0) {
      const inUse = good.flatMap((t) => this.locks.owners(t.borrowId, t.token.count));
      const seats = good.reduce((n, t) => n + t.token.count, 0);
      return {
        ok: null,
        inUse,
        reason: `all ${seats} borrowed seat${seats === 1 ? '' : 's'} of ${feature} on this machine are in use (pid ${inUse.map((o) => o.pid).join(', ') || '?'}); wait for one to end, or borrow more with licctl borrow --feature ${feature}`,
      };
    }
    if (mine.length === 0) return { ok: null, reason: `no borrowed ${feature} on this machine`, inUse: [] };
    return { ok: null, reason: mine.map((t) => t.problem?.message ?? 'invalid').join('; '), inUse: [] };
  }

  /** The latest time seen while using tokens: a clock set back below it is caught. */
  highWater(): number | null {
    try {
      const j = JSON.parse(readFileSync(this.clockFile, 'utf8')) as { highWater: number };
      return typeof j.highWater === 'number' ? j.highWater : null;
    } catch {
      return null;
    }
  }

  markTime(now: number): void {
    const hw = this.highWater();
    if (hw === null || now > hw) writeFileAtomic(this.clockFile, JSON.stringify({ highWater: now, at: new Date(now).toISOString() }) + '\n', 0o600);
  }

  // ---- online operations ------------------------------------------------------------------------

  async borrow(client: LicdClient, items: Array<{ feature: string; count: number }>, hours: number, o: { autoRenew?: boolean } = {}): Promise<BorrowResultView> {
    const r = await client.request<BorrowResultView>('borrow', { request: this.request(items, hours, o) });
    for (const b of r.tokens) this.save(b, o.autoRenew ?? false, hours);
    this.markTime(this.clock.now());
    return r;
  }

  async renew(client: LicdClient, borrowIds: string[], hours: number, o: { autoRenew?: boolean; refresh?: boolean } = {}): Promise<BorrowResultView> {
    const r = await client.request<BorrowResultView>('borrow.renew', { request: this.request([], hours, { ...o, renew: borrowIds }) });
    for (const b of r.tokens) {
      const t = peekToken(b);
      const prev = this.stored(t.borrowId);
      // The period to renew to by default: never shorter than one asked for before.
      this.save(b, o.autoRenew ?? prev?.autoRenew ?? false, Math.max(prev?.hours ?? 0, hours));
    }
    return r;
  }

  /** Returns borrows early. The local tokens are deleted first, so they cannot be used after. */
  async giveBack(client: LicdClient, borrowIds: string[]): Promise<{ returned: string[]; unknown: string[] }> {
    for (const id of borrowIds) this.bury(id, 'online');
    return client.request('borrow.return', { return: this.returnNote(borrowIds) });
  }

  /**
   * What a connected client does for its borrows: renews those that opted in to auto-renew and are
   * near expiry, and (LM-X's refresh on reconnect) asks to refresh the others to their full period;
   * the server declines refreshes within the first hour.
   *
   * A token is deleted only on a positive answer that its borrow was returned (giveBack,
   * writeReturnFile): never because the server does not know the borrow. After a restore or wipe
   * of the server's database (a quarantine) the server has no record of a borrow that is still out,
   * and its signed token is still valid offline until it expires, so it is kept, with a warning
   * in `unknownOnServer`. `dropped` stays empty; it is kept for callers of the old shape.
   */
  async maintain(
    client: LicdClient,
    vendorPublicKey: Uint8Array | null,
    now = this.clock.now(),
  ): Promise<{ renewed: string[]; refreshed: string[]; dropped: string[]; unknownOnServer: string[]; errors: string[] }> {
    const res = { renewed: [] as string[], refreshed: [] as string[], dropped: [] as string[], unknownOnServer: [] as string[], errors: [] as string[] };
    const local = this.list(vendorPublicKey, now).filter((t) => t.valid);
    for (const t of local) {
      const auto = t.stored.autoRenew && renewDue(t.token, now);
      try {
        const r = await this.renew(client, [t.borrowId], t.stored.hours, { autoRenew: t.stored.autoRenew, refresh: !auto });
        if (!r.unchanged?.includes(t.borrowId)) (auto ? res.renewed : res.refreshed).push(t.borrowId);
      } catch (e) {
        if (isLicdError(e) && e.code === 'UNKNOWN_BORROW') res.unknownOnServer.push(unknownOnServerText(t.token, e));
        else res.errors.push(`${t.token.feature}: ${(e as Error).message}`);
      }
    }
    return res;
  }

  // ---- air-gapped files -------------------------------------------------------------------------

  writeRequestFile(path: string, items: Array<{ feature: string; count: number }>, hours: number, o: { autoRenew?: boolean } = {}): void {
    writeFileAtomic(path, JSON.stringify({ kind: 'licd-borrow-request-file', request: this.request(items, hours, o), autoRenew: o.autoRenew ?? false }, null, 2) + '\n');
  }

  /**
   * Imports the tokens of a token file. A token of a borrow returned from this machine is refused
   * (TOKEN_RETURNED) and the others are imported; if every token is refused, the first refusal is thrown.
   */
  importTokenFile(path: string): BorrowToken[] {
    return this.importTokens(path).imported;
  }

  importTokens(path: string): { imported: BorrowToken[]; refused: LicdError[] } {
    const j = (readJsonFile(path, 'the token file', { code: 'TOKEN_INVALID', fix: 'import the file licctl borrow --request FILE --out FILE made' }) ?? {}) as { kind?: string; tokens?: TokenBundle[]; hours?: number; autoRenew?: boolean };
    if (j.kind !== 'licd-token-file' || !Array.isArray(j.tokens)) throw new LicdError('TOKEN_INVALID', `${path} is not a licd token file (made by licctl borrow --request FILE --out FILE)`);
    const imported: BorrowToken[] = [];
    const refused: LicdError[] = [];
    for (const b of j.tokens) {
      try {
        imported.push(this.save(b, false, j.hours ?? Math.round((peekToken(b).expiresAt - peekToken(b).issuedAt) / 3600_000)));
      } catch (e) {
        if (isLicdError(e) && e.code === 'TOKEN_RETURNED') refused.push(e);
        else throw e;
      }
    }
    if (imported.length === 0 && refused.length > 0) throw refused[0]!;
    return { imported, refused };
  }

  /** Deletes the local tokens and writes a signed return note for an admin to process. */
  writeReturnFile(path: string, borrowIds: string[]): void {
    const note = this.returnNote(borrowIds);
    for (const id of borrowIds) this.bury(id, 'file');
    writeFileAtomic(path, JSON.stringify({ kind: 'licd-return-file', return: note }, null, 2) + '\n');
  }
}

/** A borrow id as a file name (ids are server-made; this keeps a strange one inside the dir). */
function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function returnedError(t: BorrowToken, r: Tombstone): LicdError {
  return new LicdError(
    'TOKEN_RETURNED',
    `borrow ${t.borrowId} (${t.count} ${t.feature}) was returned from this machine at ${r.returnedAt}${r.how === 'file' ? ' by a return file' : ''}; its token cannot be imported or used again. Borrow again (licctl borrow, or licctl borrow request --out FILE)`,
    { borrow: t.borrowId, token: t.tokenId, returnedAt: r.returnedAt },
  );
}

/** The warning for a token whose borrow the server does not know: kept, and why. */
export function unknownOnServerText(t: BorrowToken, e: LicdError): string {
  const q = e.details?.quarantine === true ? ' (the server is in quarantine: its database was restored or wiped)' : '';
  return `the license server has no record of borrow ${t.borrowId} (${t.count} ${t.feature})${q}; the local token is kept and stays valid offline until ${new Date(t.expiresAt).toISOString()}. If it was returned from another machine, remove it with licctl return ${t.borrowId}`;
}

/** What an admin's machine does with a request file: ask the server, write the token file. */
export async function fulfilRequestFile(admin: LicdClient, requestPath: string, outPath: string): Promise<BorrowResultView> {
  const j = (readJsonFile(requestPath, 'the borrow request file', { code: 'BAD_REQUEST', fix: 'give the file licctl borrow request --out FILE made' }) ?? {}) as { kind?: string; request?: unknown };
  if (j.kind !== 'licd-borrow-request-file' || !j.request) throw new LicdError('BAD_REQUEST', `${requestPath} is not a licd borrow request file (made by licctl borrow request --out FILE)`);
  const r = await admin.request<BorrowResultView>('borrow.file', { request: j.request }, { admin: true });
  writeFileAtomic(outPath, JSON.stringify({ kind: 'licd-token-file', tokens: r.tokens, borrows: r.borrows }, null, 2) + '\n');
  return r;
}

export async function processReturnFile(admin: LicdClient, path: string): Promise<{ returned: string[]; unknown: string[] }> {
  const j = (readJsonFile(path, 'the return file', { code: 'BAD_REQUEST', fix: 'give the file licctl return --out FILE made' }) ?? {}) as { kind?: string; return?: unknown };
  if (j.kind !== 'licd-return-file' || !j.return) throw new LicdError('BAD_REQUEST', `${path} is not a licd return file (made by licctl return --out FILE)`);
  return admin.request('return.file', { return: j.return }, { admin: true });
}
