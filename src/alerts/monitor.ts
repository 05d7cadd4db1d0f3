/**
 * The alerts part of the daemon: evaluates the rules of src/core/alerts.ts on the seat events
 * that can cause them (a grant, a borrow, a check-in: a double use is raised on the event that
 * makes it, not at the next poll) and every few seconds (time-based alerts: at the limit for N
 * minutes, expiry, dongle, clock). Each change is logged once, put in the retained server state
 * (summaries without user names), published retained on licd/v1/alerts (full, admins only) and
 * handed to the notifier (alerts.command / alerts.webhook). The admin op alerts.list reads them.
 */
import { performance } from 'node:perf_hooks';
import { AlertBook, type Alert, type AlertChanges } from '../core/alerts.ts';
import type { EventSink, SeatEvent } from '../core/events.ts';
import type { AlertsResult } from '../core/protocol.ts';
import type { LicenseService, Log } from '../core/service.ts';
import type { AlertNotifier } from './notify.ts';

/** How many alerts the retained list, the server state and alerts.list carry at most. */
export const MAX_LISTED_ALERTS = 100;
const RANK = { critical: 2, warning: 1, info: 0 } as const;

/** The least time between two evaluations caused by seat events, ms. */
export const MIN_GAP_MS = 200;

export interface AlertMonitorOptions {
  service: LicenseService;
  log: Log;
  atLimitMinutes: number;
  dongleGraceSeconds: number;
  notifier: AlertNotifier | null;
  /** Publishes the full list retained on licd/v1/alerts (the MQTT link). */
  publish: (r: AlertsResult) => void;
  /** How often the time-based rules run, ms (default 5000). */
  everyMs?: number;
}

export class AlertMonitor implements EventSink {
  private readonly book: AlertBook;
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private updated: number;

  constructor(private readonly opts: AlertMonitorOptions) {
    this.book = new AlertBook({ atLimitMs: opts.atLimitMinutes * 60_000 });
    this.updated = opts.service.clock.now();
    opts.service.register('alerts.list', true, async () => this.result());
  }

  start(): void {
    this.safely();
    // Also when there is none: a retained list from before a restart must not stand.
    this.opts.publish(this.result());
    this.timer = setInterval(() => this.safely(), this.opts.everyMs ?? 5000);
    this.timer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  active(): Alert[] {
    return this.book.list();
  }

  /**
   * The list as published and answered: at most MAX_LISTED_ALERTS, the most severe first, and how
   * many more there are (one MQTT message, well inside the broker's packet limit).
   */
  result(): AlertsResult {
    const all = this.book.list();
    const updated = new Date(this.updated).toISOString();
    if (all.length <= MAX_LISTED_ALERTS) return { alerts: all, updated };
    const shown = [...all].sort((a, b) => RANK[b.severity] - RANK[a.severity]).slice(0, MAX_LISTED_ALERTS);
    return { alerts: shown, updated, more: all.length - shown.length };
  }

  settle(events: readonly SeatEvent[], ok: boolean): void {
    // A change of who holds what can make or end a double use (heartbeats carry no events).
    if (ok && events.some((e) => e.type !== 'admin')) this.schedule();
  }

  note(e: SeatEvent): void {
    if (e.type === 'license.changed') this.schedule();
  }

  /**
   * After the change is written (settle runs after the commit), off the request path: at once
   * when the last evaluation is at least MIN_GAP_MS ago, else at its end. A full evaluation walks
   * every lease and borrow; under a burst of checkouts on a big farm this bounds it to a few per
   * second, still far inside one heartbeat (3 s at the least).
   */
  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    const wait = Math.max(0, this.lastRun + MIN_GAP_MS - performance.now());
    const run = () => {
      this.scheduled = false;
      if (!this.stopped) this.safely();
    };
    if (wait === 0) setImmediate(run);
    else setTimeout(run, wait).unref?.();
  }

  private lastRun = -Infinity;
  private stopped = false;

  /** From a timer: a failure is logged, never thrown into the event loop (licd keeps serving). */
  private safely(): void {
    try {
      this.evaluate();
    } catch (e) {
      this.opts.log.error('evaluating the alerts failed; licensing goes on', { error: String((e as Error)?.stack ?? e) });
    }
  }

  evaluate(): AlertChanges {
    this.lastRun = performance.now();
    const svc = this.opts.service;
    const now = svc.clock.now();
    const t = svc.table;
    const dongle = svc.dongleView();
    const changes = this.book.evaluate({
      now,
      features: t.featureNames().map((name) => {
        const a = t.availability(name, now);
        return { name, total: a.total, leased: a.leased, borrowed: a.borrowed, held: a.held, free: a.free, expires: t.license(name)?.expires ?? null };
      }),
      leases: t.allLeases(),
      borrows: t.allBorrows(),
      dongle: { present: dongle.present, reason: dongle.reason, absentMs: svc.dongleAbsentMs(now), graceMs: this.opts.dongleGraceSeconds * 1000 },
      quarantine: t.holds(now),
      warnings: svc.warningEntries(),
    });
    if (changes.raised.length + changes.changed.length + changes.cleared.length === 0) return changes;
    this.updated = now;
    const log = this.opts.log;
    const fields = (a: Alert) => ({ alert: a.id, kind: a.kind, severity: a.severity, ...(a.feature ? { feature: a.feature } : {}), ...(a.user ? { user: a.user } : {}), ...(a.hosts ? { hosts: a.hosts } : {}) });
    for (const a of changes.raised) log.warn(`ALERT raised: ${a.message}`, fields(a));
    for (const a of changes.changed) log.warn(`ALERT now ${a.severity}: ${a.message}`, fields(a));
    for (const a of changes.cleared) log.info(`alert cleared: ${a.message}`, fields(a));
    svc.setAlerts(this.result().alerts.map((a) => ({ kind: a.kind, severity: a.severity, since: a.since, ...(a.feature ? { feature: a.feature } : {}), summary: a.summary })));
    this.opts.publish(this.result());
    const n = this.opts.notifier;
    if (n) {
      const server = { entitlement: svc.entitlement?.id ?? null, version: svc.serverState().version };
      const at = new Date(now).toISOString();
      for (const [event, list] of [['raised', changes.raised], ['changed', changes.changed], ['cleared', changes.cleared]] as const) for (const alert of list) n.send({ event, alert, server, at });
    }
    return changes;
  }
}
