/**
 * licd's Prometheus metrics (docs/monitoring.md lists each). Counters are kept from the seat events
 * (src/core/events.ts: an EventSink that only adds numbers on the request path); gauges are read
 * from the seat table and the service at scrape time; the request and commit histograms are fed by
 * the MQTT link and the store, where those things happen.
 *
 * No user or host labels: each distinct value is a time series kept forever by Prometheus, so a
 * farm of render nodes or a stream of user names would grow the server's memory without bound, and
 * they would put who-uses-what into every dashboard. Who holds what is in licctl status and the
 * usage reports. Feature labels are bounded by the license: a denial for a feature the license does
 * not have is counted under feature="_unlicensed" (no licensed name can start with "_").
 */
import type { ErrorCode } from '../core/errors.ts';
import type { EventSink, SeatEvent } from '../core/events.ts';
import { ADMIN_OPS, CLIENT_OPS } from '../core/protocol.ts';
import type { LicenseService } from '../core/service.ts';
import { Counter, Gauge, Histogram, Registry } from './exposition.ts';

export const UNLICENSED = '_unlicensed';

/** Seconds: from half a millisecond (a status on loopback) to 10 s (a counter step on a slow dongle). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

const KNOWN_OPS = new Set<string>([...CLIENT_OPS, ...ADMIN_OPS]);

export interface MetricsDeps {
  service: LicenseService;
  version: string;
  /** Active alerts by kind and severity (src/core/alerts.ts), if alerts run. */
  alerts?: () => Array<{ kind: string; severity: string }>;
  /** Unix seconds the daemon started. */
  startedAt: number;
}

export class LicdMetrics implements EventSink {
  readonly registry = new Registry();
  private readonly checkouts: Counter;
  private readonly leasesEnded: Counter;
  private readonly borrows: Counter;
  private readonly requests: Histogram;
  private readonly commits: Histogram;
  private readonly known = new Set<string>();

  constructor(private readonly deps: MetricsDeps) {
    const r = this.registry;
    const svc = deps.service;
    const now = () => svc.clock.now();
    r.add(new Gauge('licd_build_info', 'licd build: its version and the Node.js version it runs on (always 1).', () => [{ labels: { version: deps.version, nodejs: process.version }, value: 1 }]));
    r.add(new Gauge('licd_start_time_seconds', 'When this licd process started, seconds since the Unix epoch.', () => [{ value: deps.startedAt }]));
    r.add(new Gauge('licd_dongle_present', 'Whether the license dongle answers (1) or is absent (0).', () => [{ value: svc.dongleView().present ? 1 : 0 }]));
    r.add(
      new Gauge('licd_seats_licensed', 'Seats the license grants per feature.', () =>
        svc.table.featureNames().map((f) => ({ labels: { feature: f }, value: svc.table.license(f)?.seats ?? 0 })),
      ),
    );
    r.add(
      new Gauge('licd_seats', 'Seats per feature by state: leased (floating, online), borrowed (offline tokens), held (quarantine), free.', () => {
        const t = now();
        return svc.table.featureNames().flatMap((f) => {
          const a = svc.table.availability(f, t);
          return (['leased', 'borrowed', 'held', 'free'] as const).map((state) => ({ labels: { feature: f, state }, value: a[state] }));
        });
      }),
    );
    r.add(
      new Gauge('licd_feature_expiry_timestamp_seconds', 'When a feature\'s license ends, seconds since the Unix epoch (features that do not expire have no sample).', () =>
        svc.table.featureNames().flatMap((f) => {
          const exp = svc.table.license(f)?.expires;
          return exp === null || exp === undefined ? [] : [{ labels: { feature: f }, value: Math.floor(exp / 1000) }];
        }),
      ),
    );
    this.checkouts = r.add(new Counter('licd_checkouts_total', 'Checkouts by feature and result: granted, or denied with the refusal\'s code (NO_SEATS, BLOCKED, DONGLE_ABSENT, ...). A checkout that extends a lease the client holds is not counted.'));
    this.leasesEnded = r.add(new Counter('licd_leases_ended_total', 'Leases ended by feature and reason: checkin, expired, client-gone, revoked, license-reduced, failover-ended.'));
    this.borrows = r.add(new Counter('licd_borrows_total', 'Borrow events by feature: granted, renewed, returned, expired, lost (marked by an admin), denied.'));
    this.requests = r.add(new Histogram('licd_request_duration_seconds', 'Time from a request\'s arrival at licd to its answer being handed to the broker, by operation.', LATENCY_BUCKETS));
    this.commits = r.add(new Histogram('licd_store_commit_duration_seconds', 'Time of one synced batch write of the license database (a group commit).', LATENCY_BUCKETS));
    r.add(
      new Gauge('licd_alerts', 'Active alerts by kind and severity (licctl alerts lists them).', () => {
        const counts = new Map<string, { kind: string; severity: string; n: number }>();
        for (const a of deps.alerts?.() ?? []) {
          const k = `${a.kind}\0${a.severity}`;
          const c = counts.get(k) ?? { kind: a.kind, severity: a.severity, n: 0 };
          c.n++;
          counts.set(k, c);
        }
        return [...counts.values()].map((c) => ({ labels: { kind: c.kind, severity: c.severity }, value: c.n }));
      }),
    );
    // A failover box (docs/scale-out.md, "Failover server"); no sample on other boxes.
    const failover = () => svc.serverState().failover;
    r.add(
      new Gauge('licd_failover_active', "On a failover box: 1 while it grants its primary's seats, 0 while dormant or this month's failover hours are used up.", () => {
        const f = failover();
        return f ? [{ labels: { primary: f.primary }, value: f.state === 'active' ? 1 : 0 }] : [];
      }),
    );
    r.add(
      new Gauge('licd_failover_used_hours', "On a failover box: failover hours used this month (UTC); the failover entitlement's cap is licd_failover_max_hours.", () => {
        const f = failover();
        return f ? [{ labels: { primary: f.primary }, value: f.usedHours }] : [];
      }),
    );
    r.add(
      new Gauge('licd_failover_max_hours', "On a failover box: the failover entitlement's cap on failover hours per month.", () => {
        const f = failover();
        return f ? [{ labels: { primary: f.primary }, value: f.maxHoursPerMonth }] : [];
      }),
    );
    for (const op of ['checkout', 'heartbeat', 'checkin', 'status']) this.requests.touch({ op });
    this.commits.touch({});
    this.licensed(svc.table.featureNames());
  }

  /** Every licensed feature's counters exist from the start, at 0. */
  private licensed(features: readonly string[]): void {
    for (const feature of features) {
      if (this.known.has(feature)) continue;
      this.known.add(feature);
      this.checkouts.touch({ feature, result: 'granted' });
      this.checkouts.touch({ feature, result: 'denied', code: 'NO_SEATS' });
      for (const reason of ['checkin', 'expired', 'client-gone', 'revoked']) this.leasesEnded.touch({ feature, reason });
      for (const event of ['granted', 'renewed', 'returned', 'expired', 'lost', 'denied']) this.borrows.touch({ feature, event });
    }
  }

  private featureLabel(feature: string): string {
    return this.deps.service.table.license(feature) || this.known.has(feature) ? feature : UNLICENSED;
  }

  settle(events: readonly SeatEvent[], ok: boolean): void {
    if (ok) for (const e of events) this.count(e);
  }

  note(e: SeatEvent): void {
    this.count(e);
  }

  private count(e: SeatEvent): void {
    switch (e.type) {
      case 'lease.granted':
        this.checkouts.inc({ feature: this.featureLabel(e.lease.feature), result: 'granted' });
        break;
      case 'checkout.denied':
        this.checkouts.inc({ feature: this.featureLabel(e.feature), result: 'denied', code: e.code as ErrorCode });
        break;
      case 'lease.ended':
        this.leasesEnded.inc({ feature: this.featureLabel(e.lease.feature), reason: e.reason });
        break;
      case 'borrow.granted':
      case 'borrow.renewed':
        this.borrows.inc({ feature: this.featureLabel(e.borrow.feature), event: e.type.slice('borrow.'.length) });
        break;
      case 'borrow.ended':
        this.borrows.inc({ feature: this.featureLabel(e.borrow.feature), event: e.reason });
        break;
      case 'borrow.lost':
        this.borrows.inc({ feature: this.featureLabel(e.borrow.feature), event: 'lost' });
        break;
      case 'borrow.denied':
        this.borrows.inc({ feature: this.featureLabel(e.feature), event: 'denied' });
        break;
      case 'license.changed':
        this.licensed(e.features);
        break;
      default:
        break;
    }
  }

  /** One request answered (src/mqtt/server-link.ts); op names outside the protocol count as "other". */
  observeRequest(op: string | null, seconds: number): void {
    this.requests.observe(seconds, { op: op !== null && KNOWN_OPS.has(op) ? op : 'other' });
  }

  /** One batch written (src/store/level-store.ts). */
  observeCommit(seconds: number): void {
    this.commits.observe(seconds);
  }

  render(): string {
    return this.registry.render();
  }
}
