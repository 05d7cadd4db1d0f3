/**
 * The audit log as a part of the daemon (docs/audit.md): the chain of src/core/audit.ts as an
 * event sink, a short timer that writes what waits (denials, admin requests, voids, seals) in a
 * batch of its own, a seal of the head every `audit.sealIntervalSeconds` when something was
 * appended and soon after every admin action, and the admin operations `audit.head` and
 * `audit.export`. Signatures are made here, on the timer, never on a request's path.
 */
import type { Config } from '../config.ts';
import { AuditChain, CERT_PREFIX, RECORD_RANGE, readChainHead, recordKey, withHash, type AuditRecord, type Sealer, type Sha256 } from '../core/audit.ts';
import { LicdError } from '../core/errors.ts';
import type { Clock, StateStore } from '../core/ports.ts';
import type { AuditExportResult, AuditHeadResult } from '../core/protocol.ts';
import type { LicenseService, Log } from '../core/service.ts';

/** Admin requests that only read: recorded, without a seal of their own. */
export const AUDIT_READ_OPS: ReadonlySet<string> = new Set(['audit.head', 'audit.export', 'borrows', 'limits.get', 'policy.get', 'alerts.list', 'report.usage', 'report.users', 'report.denials', 'report.borrows', 'report.advice', 'report.series']);

/** How soon waiting records are written: at once after an admin action, within a second otherwise. */
const URGENT_MS = 50;
const BATCH_MS = 1000;
/** After a failed write of its own, the log waits this long before trying again. */
const RETRY_MS = 5000;
/** The most records (and bytes, about) one export page carries: far below broker packet limits. */
const PAGE_MAX = 1000;
const PAGE_DEFAULT = 500;
const PAGE_BYTES = 256 * 1024;

export interface AuditLogDeps {
  store: StateStore;
  service: LicenseService;
  clock: Clock;
  log: Log;
  config: Config['audit'];
  sha256: Sha256;
  /** The session key's sealer; null while no delegation exists (no dongle seen yet). */
  sealer: () => Sealer | null;
}

export class AuditLog {
  readonly chain: AuditChain;
  private timer: NodeJS.Timeout | null = null;
  private interval: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private retryAfter = 0;
  private stopped = false;

  private constructor(private readonly deps: AuditLogDeps) {
    this.chain = new AuditChain({
      sha256: deps.sha256,
      clock: deps.clock,
      readOps: AUDIT_READ_OPS,
      maxPending: deps.config.maxPending,
      onPending: (urgent) => this.schedule(urgent ? URGENT_MS : BATCH_MS),
    });
  }

  /** Reads the head of the chain from the store (the last record, and the last seal before it). */
  static async open(deps: AuditLogDeps): Promise<AuditLog> {
    const a = new AuditLog(deps);
    const head = await readChainHead(deps.store, undefined, deps.sha256);
    if (head.problem) deps.log.error(`${head.problem}: the audit chain goes on after it; licctl audit verify names what is wrong`);
    if (head.gaps.length > 0) deps.log.warn('audit records missing after the last seal (a refused write, then a crash): voided', { gaps: head.gaps.map((g) => `${g.from}-${g.to}`) });
    a.chain.resume(head.last, head.lastSeal, head.sinceSeal, head.gaps);
    a.registerOps();
    return a;
  }

  get enabled(): boolean {
    return this.deps.config.enabled;
  }

  /** Records the start (version, session key, dongle) and starts the seal interval. */
  start(fields: Record<string, unknown>): void {
    if (!this.enabled) return;
    this.chain.started(fields, this.deps.clock.now());
    this.interval = setInterval(() => {
      if (this.chain.unsealed > 0 || this.chain.hasPending) void this.flush({ seal: true });
    }, this.deps.config.sealIntervalSeconds * 1000);
    this.interval.unref?.();
  }

  private schedule(ms: number): void {
    if (this.stopped || !this.enabled) return;
    const wait = Math.max(ms, this.retryAfter - Date.now());
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, wait);
    this.timer.unref?.();
  }

  /** Writes what waits (and a seal when one is due), through the service so it keeps the write order. */
  async flush(opts: { seal?: boolean } = {}): Promise<void> {
    while (this.flushing) await this.flushing;
    const run = this.flushNow(opts);
    this.flushing = run;
    try {
      await run;
    } finally {
      this.flushing = null;
    }
  }

  private async flushNow(opts: { seal?: boolean }): Promise<void> {
    let sealer: Sealer | null = null;
    try {
      sealer = this.deps.sealer();
    } catch (e) {
      this.deps.log.warn('the audit log cannot seal now', { error: String(e) });
    }
    const batch = this.chain.takeFlush(sealer, this.deps.clock.now(), opts);
    if (!batch) return;
    try {
      await this.deps.service.commit({ result: null, mutations: batch.mutations, undo: () => {} }, []);
      this.chain.settleFlush(batch.token, true);
      this.retryAfter = 0;
    } catch (e) {
      // The store says why (and logs it once); the numbers are voided by the next batch written.
      this.retryAfter = Date.now() + RETRY_MS;
      this.chain.settleFlush(batch.token, false);
      this.deps.log.debug('audit records not written; retrying', { error: String(e) });
    }
  }

  /** Stops the timers; writes what waits and seals the head, so a stop leaves nothing unsealed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.close();
    if (!this.enabled) return;
    await this.flush({ seal: true }).catch(() => {});
    this.stopped = true;
  }

  /** Stops the timers only (a start that failed). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.interval) clearInterval(this.interval);
    this.timer = null;
    this.interval = null;
  }

  // ---- admin operations -----------------------------------------------------------------------

  private registerOps(): void {
    const { service } = this.deps;
    const need = () => {
      if (!this.enabled) throw new LicdError('BAD_REQUEST', 'the audit log is off on this server (audit.enabled is false in its config); turn it on and restart licd');
    };
    service.register('audit.head', true, async (): Promise<AuditHeadResult> => {
      need();
      // What waits (denials, admin requests) is written first, so the answer includes it.
      await this.flush();
      const h = this.chain.headState;
      const s = this.deps.sealer();
      return { head: { seq: h.seq, hash: h.hash }, sealed: h.sealed, unsealed: h.unsealed, sessionKey: s?.sessionKey ?? null, sealIntervalSeconds: this.deps.config.sealIntervalSeconds };
    });
    service.register('audit.export', true, async (_ctx, f): Promise<AuditExportResult> => {
      need();
      const from = f.optInt('from', { min: 1, max: Number.MAX_SAFE_INTEGER });
      const since = f.optString('since', { max: 40 });
      const limit = f.optInt('limit', { min: 1, max: PAGE_MAX }) ?? PAGE_DEFAULT;
      await this.flush();
      let start = from ?? 1;
      if (since !== undefined) {
        const t = Date.parse(since);
        if (!Number.isFinite(t)) f.fail('since', 'must be an ISO time like 2026-11-30T08:00:00Z');
        start = Math.max(start, await this.firstAt(t));
      }
      return this.page(start, limit);
    });
  }

  /** One page of records from `start`, with the certificates its seals name. */
  private async page(start: number, limit: number): Promise<AuditExportResult> {
    const { store } = this.deps;
    const records: AuditRecord[] = [];
    let bytes = 0;
    let next: number | null = null;
    for await (const [key, value] of store.scan('audit', { gte: recordKey(start), lt: RECORD_RANGE.lt!, limit: limit + 1 })) {
      const rec = withHash(value as AuditRecord, this.deps.sha256);
      const size = JSON.stringify(rec).length;
      if (records.length >= limit || (records.length > 0 && bytes + size > PAGE_BYTES)) {
        next = Number(key);
        break;
      }
      bytes += size;
      records.push(rec);
    }
    const certs: Record<string, unknown> = {};
    for (const r of records) {
      if (r?.kind !== 'seal') continue;
      for (const ref of [r.delegation, r.entitlement]) {
        if (typeof ref !== 'string' || ref in certs) continue;
        for await (const [k, v] of store.scan('audit', { gte: CERT_PREFIX + ref, limit: 1 })) if (k === CERT_PREFIX + ref) certs[ref] = v;
      }
    }
    const h = this.chain.headState;
    return { records, certs, next, head: { seq: h.seq, hash: h.hash } };
  }

  /** The first sequence number whose record is at or after t (binary search over the keys). */
  private async firstAt(t: number): Promise<number> {
    const at = async (seq: number): Promise<number | null> => {
      for await (const [, v] of this.deps.store.scan('audit', { gte: recordKey(seq), lt: RECORD_RANGE.lt!, limit: 1 })) return Date.parse(String((v as AuditRecord)?.at));
      return null;
    };
    let lo = 1;
    let hi = this.chain.headState.seq + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const m = await at(mid);
      if (m === null || m >= t) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
