/**
 * Alerts: conditions an admin should hear about, decided from the seat state and the server's own
 * state (docs/monitoring.md). Pure: the caller gives a snapshot and the time; an AlertBook says which
 * alerts were raised, changed (a stage of an expiry, the dongle's grace ending) or cleared since
 * the last evaluation. Each active alert keeps the time it was first raised (`since`).
 *
 * Every alert has a `message` that names the feature, user and hosts, for admins, and a `summary`
 * without user or host names, for the retained server state that every client can read.
 */

export type AlertKind = 'double-use' | 'at-limit' | 'expiry' | 'dongle-absent' | 'quarantine' | 'clock' | 'store' | 'license' | 'warning';
export type AlertSeverity = 'info' | 'warning' | 'critical';

export interface Alert {
  /** Stable while the condition lasts: "double-use:vray_render:ann", "expiry:nuke_i", "dongle-absent". */
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  /** When it was first raised (ISO 8601). */
  since: string;
  /** For admins: names the feature, user and hosts, and what to do. */
  message: string;
  /** For everyone (the retained server state): no user or host names. */
  summary: string;
  feature?: string;
  user?: string;
  /** The hosts of a double use: the first MAX_ALERT_HOSTS (sorted); hostCount says how many in all. */
  hosts?: string[];
  hostCount?: number;
  /** Expiry alerts: the stage, days left at most (30, 7, 1), 0 once ended. */
  stage?: number;
}

export interface AlertFeature {
  name: string;
  total: number;
  leased: number;
  borrowed: number;
  held: number;
  free: number;
  /** ms since the epoch, or null: does not expire. */
  expires: number | null;
}

export interface AlertInput {
  now: number;
  features: AlertFeature[];
  leases: ReadonlyArray<{ feature: string; user: string; host: string }>;
  borrows: ReadonlyArray<{ feature: string; user: string; hostName: string; lost: boolean }>;
  dongle: { present: boolean; reason?: string | undefined; absentMs: number | null; graceMs: number };
  quarantine: ReadonlyArray<{ feature: string; seats: number; until: number }>;
  /** The service's named warnings (key, text); dongle and quarantine are alerts of their own. */
  warnings: ReadonlyArray<[string, string]>;
}

export interface AlertRules {
  /** A feature with no free seat for this long is an alert. */
  atLimitMs: number;
}

export interface AlertChanges {
  raised: Alert[];
  /** Same id, new severity or message (an expiry nearer, the dongle's grace over). */
  changed: Alert[];
  cleared: Alert[];
}

const DAY = 86_400_000;

/** A host name as users write it: case and domain do not make another machine. */
export function sameHost(h: string): string {
  return h.trim().toLowerCase().split('.')[0] ?? '';
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function days(ms: number): string {
  const d = ms / DAY;
  if (d >= 2) return `${Math.floor(d)} days`;
  const h = Math.max(0, Math.floor(ms / 3_600_000));
  return h === 1 ? '1 hour' : `${h} hours`;
}

/**
 * How many hosts an alert names. A user on a whole farm (a render account with a borrowed seat and
 * 100,000 floating ones) must not make an alert of megabytes: the retained alerts topic would pass
 * the broker's packet limit (mosquitto's max_packet_size, 1 MiB as shipped), and the broker would
 * drop licd's connection at every attempt to publish it.
 */
export const MAX_ALERT_HOSTS = 20;
/** How many hosts an alert's message lists before "and N more". */
const MESSAGE_HOSTS = 5;

function hostList(hosts: string[], sep: string): string {
  if (hosts.length <= MESSAGE_HOSTS) return hosts.join(sep);
  return `${hosts.slice(0, MESSAGE_HOSTS).join(', ')} and ${thousands(hosts.length - MESSAGE_HOSTS)} more`;
}

/**
 * A count with thousands separators ("59,994"), as toLocaleString('en-US') writes it, without
 * ICU: a daemon's first call of toLocaleString pages in about 7 MiB of ICU's data and code for
 * the rest of its life (docs/performance.md, 2 December, third session).
 */
export function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Double use: the same user holds a feature borrowed on one host and floating on another, or
 * borrowed on two hosts. A user on many render nodes with floating seats only is normal; a seat
 * marked lost by an admin is not counted (the machine is gone).
 */
export function doubleUses(input: Pick<AlertInput, 'leases' | 'borrows'>): Array<{ feature: string; user: string; borrowed: string[]; floating: string[] }> {
  type Entry = { feature: string; user: string; borrowed: Map<string, string>; floating: Map<string, string> };
  // feature -> user -> entry: only users with a borrowed seat have one, and a floating lease is
  // looked up without building a key (a farm has tens of thousands of leases and few borrows).
  const byFeature = new Map<string, Map<string, Entry>>();
  const entries: Entry[] = [];
  for (const b of input.borrows) {
    if (b.lost) continue;
    let users = byFeature.get(b.feature);
    if (!users) byFeature.set(b.feature, (users = new Map()));
    let e = users.get(b.user);
    if (!e) {
      users.set(b.user, (e = { feature: b.feature, user: b.user, borrowed: new Map(), floating: new Map() }));
      entries.push(e);
    }
    e.borrowed.set(sameHost(b.hostName), b.hostName);
  }
  const out: Array<{ feature: string; user: string; borrowed: string[]; floating: string[] }> = [];
  if (entries.length === 0) return out;
  for (const l of input.leases) {
    const e = byFeature.get(l.feature)?.get(l.user);
    if (e) e.floating.set(sameHost(l.host), l.host);
  }
  for (const e of entries) {
    const floatingElsewhere = [...e.floating.entries()].filter(([k]) => !e.borrowed.has(k)).map(([, v]) => v);
    if (e.borrowed.size >= 2 || floatingElsewhere.length > 0) out.push({ feature: e.feature, user: e.user, borrowed: [...e.borrowed.values()].sort(), floating: floatingElsewhere.sort() });
  }
  return out;
}

/** Which expiry stage a feature is in: 30, 7 or 1 day(s) left, or expired (0); null: none. */
export function expiryStage(expires: number | null, now: number): { stage: 0 | 1 | 7 | 30; severity: AlertSeverity } | null {
  if (expires === null) return null;
  const left = expires - now;
  if (left <= 0) return { stage: 0, severity: 'critical' };
  if (left <= DAY) return { stage: 1, severity: 'critical' };
  if (left <= 7 * DAY) return { stage: 7, severity: 'warning' };
  if (left <= 30 * DAY) return { stage: 30, severity: 'info' };
  return null;
}

type Draft = Omit<Alert, 'since'> & { since?: number };

/** The alerts the state calls for now (before `since` is kept across evaluations). */
export function conditions(input: AlertInput, rules: AlertRules, atLimitSince: Map<string, number>): Draft[] {
  const out: Draft[] = [];
  const now = input.now;
  for (const d of doubleUses(input)) {
    const where = d.floating.length > 0 ? `borrowed on ${hostList(d.borrowed, ', ')} and floating on ${hostList(d.floating, ', ')}` : `borrowed on ${hostList(d.borrowed, ' and ')}`;
    const hosts = [...d.borrowed, ...d.floating];
    out.push({
      id: `double-use:${d.feature}:${d.user}`,
      kind: 'double-use',
      severity: 'warning',
      feature: d.feature,
      user: d.user,
      hosts: hosts.slice(0, MAX_ALERT_HOSTS),
      ...(hosts.length > MAX_ALERT_HOSTS ? { hostCount: hosts.length } : {}),
      message: `double use of ${d.feature}: user ${d.user} holds it ${where}; one person takes ${d.borrowed.length + d.floating.length} seats (return the borrowed seat, or check in the floating one)`,
      summary: `double use of ${d.feature}: one user holds it ${d.floating.length > 0 ? 'borrowed and floating' : 'borrowed'} on ${d.borrowed.length + d.floating.length} hosts`,
    });
  }
  const licensed = new Set(input.features.map((f) => f.name));
  for (const name of [...atLimitSince.keys()]) if (!licensed.has(name)) atLimitSince.delete(name);
  for (const f of input.features) {
    if (f.total > 0 && f.free <= 0) {
      if (!atLimitSince.has(f.name)) atLimitSince.set(f.name, now);
      const since = atLimitSince.get(f.name)!;
      if (now - since >= rules.atLimitMs) {
        const used = `${f.leased} leased, ${f.borrowed} borrowed${f.held > 0 ? `, ${f.held} held` : ''}`;
        const text = `${f.name} has had no free seat since ${iso(since)} (${f.total} of ${f.total} in use: ${used}); users are being refused: add seats or free some`;
        out.push({ id: `at-limit:${f.name}`, kind: 'at-limit', severity: 'warning', feature: f.name, since, message: text, summary: text });
      }
    } else atLimitSince.delete(f.name);
    const st = expiryStage(f.expires, now);
    if (st && f.expires !== null) {
      const text =
        st.stage === 0
          ? `${f.name}'s license ended at ${iso(f.expires)}: checkouts are refused (FEATURE_EXPIRED); install a renewed license (licctl activate)`
          : `${f.name}'s license ends at ${iso(f.expires)}, in ${days(f.expires - now)} (within ${st.stage === 1 ? '1 day' : `${st.stage} days`}); renew it with the vendor and install it (licctl activate)`;
      out.push({ id: `expiry:${f.name}`, kind: 'expiry', severity: st.severity, feature: f.name, stage: st.stage, message: text, summary: text });
    }
  }
  if (!input.dongle.present) {
    const over = input.dongle.absentMs !== null && input.dongle.absentMs > input.dongle.graceMs;
    const text = over
      ? `the license dongle is absent (${input.dongle.reason ?? 'not answering'}) and its grace of ${Math.round(input.dongle.graceMs / 1000)} s is over: leases are no longer renewed; plug it back in`
      : `the license dongle is absent (${input.dongle.reason ?? 'not answering'}): new checkouts and borrows are refused; plug it back in`;
    out.push({ id: 'dongle-absent', kind: 'dongle-absent', severity: over ? 'critical' : 'warning', message: text, summary: text });
  }
  const holds = input.quarantine.filter((h) => h.until > now);
  if (holds.length > 0) {
    const text = `quarantine: seats held until ${iso(Math.max(...holds.map((h) => h.until)))} (${holds.map((h) => `${h.feature} ${h.seats}`).join(', ')}); licctl status says why and how to release it`;
    out.push({ id: 'quarantine', kind: 'quarantine', severity: 'critical', message: text, summary: text });
  }
  for (const [key, text] of input.warnings) {
    if (key === 'dongle' || key === 'quarantine') continue;
    const kind: AlertKind = key.startsWith('clock') ? 'clock' : key === 'store' ? 'store' : key === 'license' ? 'license' : 'warning';
    out.push({ id: `warning:${key}`, kind, severity: kind === 'store' ? 'critical' : 'warning', message: text, summary: text });
  }
  return out;
}

/** The active alerts, and what changed at each evaluation. */
export class AlertBook {
  private readonly active = new Map<string, Alert>();
  private readonly atLimitSince = new Map<string, number>();

  constructor(private readonly rules: AlertRules) {}

  list(): Alert[] {
    return [...this.active.values()];
  }

  evaluate(input: AlertInput): AlertChanges {
    const drafts = conditions(input, this.rules, this.atLimitSince);
    const changes: AlertChanges = { raised: [], changed: [], cleared: [] };
    const seen = new Set<string>();
    for (const d of drafts) {
      seen.add(d.id);
      const was = this.active.get(d.id);
      const alert: Alert = { ...d, since: was?.since ?? iso(d.since ?? input.now) };
      if (!was) changes.raised.push(alert);
      else if (was.severity !== alert.severity || was.message !== alert.message) {
        // A message that only restates a changing count (hours left, seats by state) is not news; a new stage is.
        const counts = alert.kind === 'expiry' || alert.kind === 'at-limit';
        if (was.severity !== alert.severity || was.stage !== alert.stage || !counts) changes.changed.push(alert);
      }
      this.active.set(d.id, alert);
    }
    for (const [id, a] of this.active) {
      if (seen.has(id)) continue;
      this.active.delete(id);
      changes.cleared.push(a);
    }
    return changes;
  }
}
