/**
 * Sharing seats by policy (issue 15, docs/policy.md): a policy file in the line format studios
 * know from FlexLM options files, and the rules a checkout or borrow is judged by: who may take a
 * seat of a feature at all (INCLUDE/EXCLUDE), how many seats one user, group, host or host group
 * may hold at once (MAX), and how many free seats are kept for someone (RESERVE). Pure: the seat
 * table hands in what is held; nothing here reads a file or a clock.
 */
import { LicdError } from './errors.ts';
import { unsafeChar } from './validate.ts';

export const SUBJECT_TYPES = ['USER', 'GROUP', 'HOST', 'HOST_GROUP'] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];

/** Who a rule applies to, and the policy line it was written on. */
export interface RuleSubject {
  type: SubjectType;
  name: string;
  line: number;
}

export interface CountRule extends RuleSubject {
  count: number;
}

export interface FeatureRules {
  include: RuleSubject[];
  exclude: RuleSubject[];
  reserve: CountRule[];
  max: CountRule[];
}

export interface Policy {
  /** The text it was parsed from, as given (policy.get returns it). */
  text: string;
  /** Users of each GROUP (several lines of one name add up). */
  groups: Map<string, { line: number; users: Set<string> }>;
  /** Host names and patterns (* and ?) of each HOST_GROUP, lower case. */
  hostGroups: Map<string, { line: number; hosts: Set<string>; patterns: RegExp[] }>;
  features: Map<string, FeatureRules>;
  /** QUEUE per feature: whether checkouts may wait for a seat (default on), and at most how many. */
  queues: Map<string, { on: boolean; max: number | null; line: number }>;
  /** LINGER per feature: a checked-in seat stays with its user@host this long, ms. */
  linger: Map<string, { ms: number; line: number }>;
  /** TIMEOUT per feature: a lease whose client reports no activity this long ends (ms). */
  idle: Map<string, { ms: number; line: number }>;
  /** PRIORITY per group: waiters of a higher one are served first (default 0). */
  priorities: Map<string, { value: number; line: number }>;
  /** BORROW_MAX and BORROW_HOURS lines, in file order (docs/policy.md, "Borrowing"). */
  borrow: BorrowRule[];
  /** How many directive lines (not comments or blank lines) it has. */
  rules: number;
}

/**
 * A borrow limit of the policy: BORROW_MAX (at most n seats borrowed at once) or BORROW_HOURS (a
 * borrow of at most n hours), of one feature or of every feature ('*': the seats borrowed of all
 * features count together), for those a subject names (all of a group's users, a host group's
 * hosts, together) or, without one, for everyone together.
 */
export interface BorrowRule {
  kind: 'max' | 'hours';
  n: number;
  feature: string;
  subject: RuleSubject | null;
  line: number;
}

/** Who asks for seats, and how many. */
export interface Seeker {
  user: string;
  host: string;
  count: number;
}

/** Seats held now of one feature (a lease or a borrow), by whom. */
export interface Holding {
  user: string;
  host: string;
  count: number;
}

export const EMPTY_POLICY: Policy = { text: '', groups: new Map(), hostGroups: new Map(), features: new Map(), queues: new Map(), priorities: new Map(), linger: new Map(), idle: new Map(), borrow: [], rules: 0 };

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;
const NAME_HELP = 'letters, digits and . _ @ + - (at most 64, starting with a letter or digit)';
const HOST_PATTERN = /^[A-Za-z0-9*?][A-Za-z0-9._*?-]{0,127}$/;
const FEATURE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const FORMS: Record<string, string> = {
  GROUP: 'GROUP needs a group name and one or more user names: GROUP lighting alice bob',
  HOST_GROUP: 'HOST_GROUP needs a name and one or more host names or patterns (* and ?): HOST_GROUP farm render-* ws01',
  RESERVE: 'RESERVE needs a count, a feature and USER|GROUP|HOST|HOST_GROUP NAME: RESERVE 2 vray_render GROUP lighting',
  MAX: 'MAX needs a count, a feature and USER|GROUP|HOST|HOST_GROUP NAME: MAX 3 vray_render USER alice',
  INCLUDE: 'INCLUDE needs a feature and USER|GROUP|HOST|HOST_GROUP NAME: INCLUDE nuke_i GROUP comp',
  EXCLUDE: 'EXCLUDE needs a feature and USER|GROUP|HOST|HOST_GROUP NAME: EXCLUDE nuke_i HOST kiosk01',
  TIMEOUT: 'TIMEOUT needs a feature and a number of seconds from 60 to 604800: TIMEOUT nuke_i 3600',
  LINGER: 'LINGER needs a feature and a number of seconds from 1 to 86400: LINGER vray_render 120',
  QUEUE: 'QUEUE needs a feature and on or off, and may give a maximum of waiters: QUEUE vray_render on max 50',
  PRIORITY: 'PRIORITY needs a group and a whole number from -1000 to 1000 (higher waiters are served first): PRIORITY lighting 10',
  BORROW_MAX: 'BORROW_MAX needs a count of seats, a feature (or * for all features together) and may name USER|GROUP|HOST|HOST_GROUP NAME: BORROW_MAX 2 vray_render GROUP lighting',
  BORROW_HOURS: 'BORROW_HOURS needs a number of hours from 1 to 8760, a feature (or * for every feature) and may name USER|GROUP|HOST|HOST_GROUP NAME: BORROW_HOURS 72 vray_render USER alice',
};

/** Directives of options files that this licd does not do yet: refused with the reason, never ignored. */
const NOT_YET: Record<string, string> = {
};

/**
 * Parses a policy file. Every problem names its line and the fix; all problems are reported at
 * once (POLICY_INVALID, details.problems lists them), so an admin fixes the file in one pass.
 */
export function parsePolicy(text: string, source = 'policy'): Policy {
  const problems: string[] = [];
  const groups: Policy['groups'] = new Map();
  const hostGroups: Policy['hostGroups'] = new Map();
  const features: Policy['features'] = new Map();
  const queues: Policy['queues'] = new Map();
  const priorities: Policy['priorities'] = new Map();
  const linger: Policy['linger'] = new Map();
  const idle: Policy['idle'] = new Map();
  const borrow: BorrowRule[] = [];
  const refs: RuleSubject[] = [];
  let rules = 0;
  const lines = text.split(/\r?\n/);
  if (lines.length > 10_000) problems.push(`${source}: ${lines.length} lines is too many; at most 10000`);
  const rulesOf = (feature: string): FeatureRules => {
    let r = features.get(feature);
    if (!r) features.set(feature, (r = { include: [], exclude: [], reserve: [], max: [] }));
    return r;
  };
  lines.slice(0, 10_000).forEach((raw, i) => {
    const n = i + 1;
    const at = `${source} line ${n}`;
    const bad = unsafeChar(raw);
    if (bad !== null) {
      problems.push(`${at}: ${bad.name} (U+${bad.code.toString(16).toUpperCase().padStart(4, '0')}) is not allowed; write plain text`);
      return;
    }
    const hash = raw.indexOf('#');
    const words = (hash >= 0 ? raw.slice(0, hash) : raw).trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    const [head, ...rest] = words;
    const directive = head!.toUpperCase();
    const got = `got ${JSON.stringify(words.join(' '))}`;
    if (NOT_YET[directive]) {
      problems.push(`${at}: ${NOT_YET[directive]}; remove the line (docs/policy.md lists the directives)`);
      return;
    }
    const form = FORMS[directive];
    if (!form) {
      problems.push(`${at}: unknown directive ${JSON.stringify(head)}; use GROUP, HOST_GROUP, RESERVE, MAX, INCLUDE, EXCLUDE, QUEUE, PRIORITY, LINGER, TIMEOUT, BORROW_MAX or BORROW_HOURS (docs/policy.md), ${got}`);
      return;
    }
    rules++;
    const fail = (why?: string) => problems.push(`${at}: ${form}${why ? ` (${why})` : ''}, ${got}`);
    if (directive === 'GROUP' || directive === 'HOST_GROUP') {
      const [name, ...members] = rest;
      if (name === undefined || members.length === 0) return fail();
      if (!NAME.test(name)) return fail(`the group name must be ${NAME_HELP}`);
      if (directive === 'GROUP') {
        const badUser = members.find((u) => !NAME.test(u));
        if (badUser !== undefined) return fail(`user ${JSON.stringify(badUser)} must be ${NAME_HELP}`);
        const g = groups.get(name) ?? { line: n, users: new Set<string>() };
        for (const u of members) g.users.add(u);
        groups.set(name, g);
      } else {
        const badHost = members.find((h) => !HOST_PATTERN.test(h));
        if (badHost !== undefined) return fail(`host ${JSON.stringify(badHost)} must be a host name or a pattern with * and ?`);
        const g = hostGroups.get(name) ?? { line: n, hosts: new Set<string>(), patterns: [] };
        for (const h of members.map((x) => x.toLowerCase())) {
          if (/[*?]/.test(h)) g.patterns.push(new RegExp(`^${h.replace(/[.+-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`));
          else g.hosts.add(h);
        }
        hostGroups.set(name, g);
      }
      return;
    }
    if (directive === 'QUEUE') {
      const [feature, onOff, maxWord, maxN, ...extra] = rest;
      if (feature === undefined || onOff === undefined || extra.length > 0) return fail(extra.length > 0 ? 'too many words' : 'too few words');
      if (!FEATURE.test(feature)) return fail(`${JSON.stringify(feature)} is not a feature name`);
      const on = onOff.toLowerCase();
      if (on !== 'on' && on !== 'off') return fail(`${JSON.stringify(onOff)} is not on or off`);
      if (maxWord !== undefined && (maxWord.toLowerCase() !== 'max' || maxN === undefined || !/^\d{1,6}$/.test(maxN))) return fail('after on, write max and a whole number');
      if (queues.has(feature)) return fail(`QUEUE ${feature} was set already on line ${queues.get(feature)!.line}`);
      queues.set(feature, { on: on === 'on', max: maxN === undefined ? null : Number(maxN), line: n });
      return;
    }
    if (directive === 'TIMEOUT') {
      const [feature, secs, ...extra] = rest;
      if (feature === undefined || secs === undefined || extra.length > 0) return fail(extra.length > 0 ? 'too many words' : 'too few words');
      if (!FEATURE.test(feature)) return fail(`${JSON.stringify(feature)} is not a feature name`);
      if (!/^\d{1,6}$/.test(secs) || Number(secs) < 60 || Number(secs) > 604800) return fail(`${JSON.stringify(secs)} is not a number of seconds from 60 to 604800`);
      if (idle.has(feature)) return fail(`TIMEOUT ${feature} was set already on line ${idle.get(feature)!.line}`);
      idle.set(feature, { ms: Number(secs) * 1000, line: n });
      return;
    }
    if (directive === 'LINGER') {
      const [feature, secs, ...extra] = rest;
      if (feature === undefined || secs === undefined || extra.length > 0) return fail(extra.length > 0 ? 'too many words' : 'too few words');
      if (!FEATURE.test(feature)) return fail(`${JSON.stringify(feature)} is not a feature name`);
      if (!/^\d{1,5}$/.test(secs) || Number(secs) < 1 || Number(secs) > 86400) return fail(`${JSON.stringify(secs)} is not a number of seconds from 1 to 86400`);
      if (linger.has(feature)) return fail(`LINGER ${feature} was set already on line ${linger.get(feature)!.line}`);
      linger.set(feature, { ms: Number(secs) * 1000, line: n });
      return;
    }
    if (directive === 'PRIORITY') {
      const [group, value, ...extra] = rest;
      if (group === undefined || value === undefined || extra.length > 0) return fail(extra.length > 0 ? 'too many words' : 'too few words');
      if (!/^-?\d{1,4}$/.test(value) || Math.abs(Number(value)) > 1000) return fail(`${JSON.stringify(value)} is not a whole number from -1000 to 1000`);
      if (priorities.has(group)) return fail(`PRIORITY ${group} was set already on line ${priorities.get(group)!.line}`);
      priorities.set(group, { value: Number(value), line: n });
      refs.push({ type: 'GROUP', name: group, line: n });
      return;
    }
    if (directive === 'BORROW_MAX' || directive === 'BORROW_HOURS') {
      const [c, feature, type, name, ...extra] = rest;
      if (c === undefined || feature === undefined || extra.length > 0 || (type !== undefined && name === undefined)) return fail(extra.length > 0 ? 'too many words' : 'too few words');
      const hours = directive === 'BORROW_HOURS';
      if (!/^\d{1,7}$/.test(c) || (hours && (Number(c) < 1 || Number(c) > 8760))) return fail(hours ? `${JSON.stringify(c)} is not a number of hours from 1 to 8760` : `the count must be a whole number, not ${JSON.stringify(c)}`);
      if (feature !== '*' && !FEATURE.test(feature)) return fail(`${JSON.stringify(feature)} is not a feature name or *`);
      let subject: RuleSubject | null = null;
      if (type !== undefined && name !== undefined) {
        const t = type.toUpperCase();
        if (!(SUBJECT_TYPES as readonly string[]).includes(t)) return fail(`${JSON.stringify(type)} is not USER, GROUP, HOST or HOST_GROUP`);
        if (!(t === 'HOST' ? HOST_PATTERN : NAME).test(name) || (t === 'HOST' && /[*?]/.test(name))) return fail(`${JSON.stringify(name)} is not a usable name${t === 'HOST' ? ' (patterns go in a HOST_GROUP)' : ''}`);
        subject = { type: t as SubjectType, name: t === 'HOST' ? name.toLowerCase() : name, line: n };
        if (t === 'GROUP' || t === 'HOST_GROUP') refs.push(subject);
      }
      borrow.push({ kind: hours ? 'hours' : 'max', n: Number(c), feature, subject, line: n });
      return;
    }
    const counted = directive === 'RESERVE' || directive === 'MAX';
    const want = counted ? 4 : 3;
    if (rest.length !== want) return fail(rest.length < want ? 'too few words' : 'too many words');
    let count = 0;
    if (counted) {
      const c = rest.shift()!;
      if (!/^\d{1,7}$/.test(c) || (directive === 'RESERVE' && Number(c) === 0)) return fail(`the count must be a whole number${directive === 'RESERVE' ? ' from 1' : ''}, not ${JSON.stringify(c)}`);
      count = Number(c);
    }
    const [feature, type, name] = rest as [string, string, string];
    if (!FEATURE.test(feature)) return fail(`${JSON.stringify(feature)} is not a feature name`);
    const t = type.toUpperCase();
    if (!(SUBJECT_TYPES as readonly string[]).includes(t)) return fail(`${JSON.stringify(type)} is not USER, GROUP, HOST or HOST_GROUP`);
    if (!(t === 'HOST' ? HOST_PATTERN : NAME).test(name) || (t === 'HOST' && /[*?]/.test(name))) return fail(`${JSON.stringify(name)} is not a usable name${t === 'HOST' ? ' (patterns go in a HOST_GROUP)' : ''}`);
    const subject: RuleSubject = { type: t as SubjectType, name: t === 'HOST' ? name.toLowerCase() : name, line: n };
    if (t === 'GROUP' || t === 'HOST_GROUP') refs.push(subject);
    const r = rulesOf(feature);
    if (directive === 'INCLUDE') r.include.push(subject);
    else if (directive === 'EXCLUDE') r.exclude.push(subject);
    else if (directive === 'RESERVE') r.reserve.push({ ...subject, count });
    else r.max.push({ ...subject, count });
  });
  // Groups may be defined after the lines that use them (as in options files), so check at the end.
  for (const s of refs) {
    const known = s.type === 'GROUP' ? groups.has(s.name) : hostGroups.has(s.name);
    if (!known) {
      problems.push(`${source} line ${s.line}: ${s.type} ${s.name} is not defined; add a line ${s.type} ${s.name} ${s.type === 'GROUP' ? 'USER...' : 'HOST-OR-PATTERN...'}, or fix the name`);
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => lineOf(a) - lineOf(b));
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem(s): ${problems.slice(1, 6).join('; ')}${problems.length > 6 ? '; ...' : ''})` : '';
    throw new LicdError('POLICY_INVALID', `${problems[0]}${more}`, { problems });
  }
  return { text, groups, hostGroups, features, queues, priorities, linger, idle, borrow, rules };
}

/**
 * The policy's borrow limits that apply to borrows of a feature (its own lines and those for *).
 * Empty: the policy says nothing about borrowing it, and the borrow limits of the config (or of
 * licctl borrow limits) apply to it as before; else these lines alone do (docs/policy.md, "Borrowing").
 */
export function borrowRulesFor(p: Policy, feature: string): BorrowRule[] {
  return p.borrow.filter((r) => r.feature === '*' || r.feature === feature);
}

/** How a borrow rule reads in a message: "BORROW_MAX 2 vray_render for group lighting (policy line 12)". */
export function describeBorrowRule(r: BorrowRule): string {
  const what = r.feature === '*' ? 'of all features' : r.feature;
  return `BORROW_${r.kind === 'max' ? 'MAX' : 'HOURS'} ${r.n} ${what} for ${r.subject ? describeSubject(r.subject) : 'everyone'} (policy line ${r.line})`;
}

function lineOf(problem: string): number {
  return Number(/ line (\d+)/.exec(problem)?.[1] ?? 0);
}

/** A user's place in queues: the highest PRIORITY of the groups they are in (0 without one). */
export function priorityOf(p: Policy, user: string): number {
  let best: number | null = null;
  for (const [group, pr] of p.priorities) if (p.groups.get(group)?.users.has(user) && (best === null || pr.value > best)) best = pr.value;
  return best ?? 0;
}

/** Whether checkouts of a feature may wait (QUEUE; on by default) and at most how many. */
export function queueRule(p: Policy, feature: string): { on: boolean; max: number | null; line: number | null } {
  const q = p.queues.get(feature);
  return q ? { on: q.on, max: q.max, line: q.line } : { on: true, max: null, line: null };
}

/** Whether someone (user@host) is who a rule names. */
export function matches(p: Policy, s: RuleSubject, user: string, host: string): boolean {
  switch (s.type) {
    case 'USER':
      return user === s.name;
    case 'HOST':
      return host.toLowerCase() === s.name;
    case 'GROUP':
      return p.groups.get(s.name)?.users.has(user) ?? false;
    case 'HOST_GROUP': {
      const g = p.hostGroups.get(s.name);
      if (!g) return false;
      const h = host.toLowerCase();
      return g.hosts.has(h) || g.patterns.some((re) => re.test(h));
    }
  }
}

/** How a rule's subject reads in a message: "group lighting", "user alice". */
export function describeSubject(s: RuleSubject): string {
  return `${s.type === 'HOST_GROUP' ? 'host group' : s.type.toLowerCase()} ${s.name}`;
}

/** Each reservation of a feature with the seats its own people hold now (used) of it. */
export function reservationUse(p: Policy, feature: string, holdings: Iterable<Holding>): Array<{ rule: CountRule; used: number }> {
  const r = p.features.get(feature);
  if (!r || r.reserve.length === 0) return [];
  const use = r.reserve.map((rule) => ({ rule, used: 0 }));
  for (const h of holdings) for (const u of use) if (matches(p, u.rule, h.user, h.host)) u.used += h.count;
  for (const u of use) u.used = Math.min(u.used, u.rule.count);
  return use;
}

/**
 * Judges a request for `seeker.count` more seats of `feature`, of which `free` are free (not
 * leased, borrowed or held). Throws POLICY_DENIED (INCLUDE/EXCLUDE/MAX, whether or not a seat is
 * free: nobody should wait for a seat they may not have) or POLICY_RESERVED (there are free seats,
 * but they are kept for others), naming the rule and its line; returns when policy allows it.
 * Fewer free seats than wanted at all is the seat table's own answer (NO_SEATS), asked after.
 *
 * The rules, as in options files: EXCLUDE wins over INCLUDE; with any INCLUDE for a feature only
 * those it names may use it. MAX n counts everything its subject holds of the feature together
 * (a GROUP's users or a HOST_GROUP's hosts all together), leases and borrows. RESERVE n keeps n
 * seats for its subject: the seats its own people hold count against it, and the rest of it
 * (unused) is not free for anyone else. A seat held by someone two reservations name counts for both.
 */
export function judge(p: Policy, feature: string, seeker: Seeker, free: number, total: number, holdings: () => Iterable<Holding>): void {
  const r = p.features.get(feature);
  if (!r) return;
  const who = `${seeker.user}@${seeker.host}`;
  const excluded = r.exclude.find((s) => matches(p, s, seeker.user, seeker.host));
  if (excluded) {
    throw new LicdError('POLICY_DENIED', `${feature}: ${who} may not use it: ${describeSubject(excluded)} is excluded (policy line ${excluded.line}); ask an admin to change the policy (licctl policy show)`, {
      feature,
      rule: 'EXCLUDE',
      line: excluded.line,
      subject: describeSubject(excluded),
    });
  }
  if (r.include.length > 0 && !r.include.some((s) => matches(p, s, seeker.user, seeker.host))) {
    const lines = r.include.map((s) => s.line);
    throw new LicdError(
      'POLICY_DENIED',
      `${feature}: only ${r.include.map(describeSubject).join(', ')} may use it (policy line${lines.length > 1 ? 's' : ''} ${lines.join(', ')}), and ${who} is not among them; ask an admin to change the policy (licctl policy show)`,
      { feature, rule: 'INCLUDE', line: lines[0], lines },
    );
  }
  if (r.max.length === 0 && r.reserve.length === 0) return;
  const held = [...holdings()];
  for (const m of r.max) {
    if (!matches(p, m, seeker.user, seeker.host)) continue;
    let has = 0;
    for (const h of held) if (matches(p, m, h.user, h.host)) has += h.count;
    if (has + seeker.count > m.count) {
      throw new LicdError(
        'POLICY_DENIED',
        `${feature}: ${describeSubject(m)} may hold at most ${m.count} seat(s) at once (policy line ${m.line}) and holds ${has}; ${seeker.count} more wanted by ${who}. Check one in first, or ask an admin to change the policy`,
        { feature, rule: 'MAX', line: m.line, subject: describeSubject(m), max: m.count, held: has, wanted: seeker.count },
      );
    }
  }
  if (free < seeker.count) return;
  const others = reservationUse(p, feature, held).filter((u) => u.used < u.rule.count && !matches(p, u.rule, seeker.user, seeker.host));
  const kept = others.reduce((a, u) => a + u.rule.count - u.used, 0);
  if (kept > 0 && free - kept < seeker.count) {
    const usable = Math.max(0, free - kept);
    const list = others.map((u) => `${u.rule.count - u.used} for ${describeSubject(u.rule)} (policy line ${u.rule.line})`);
    const whom = others.length === 1 ? `${describeSubject(others[0]!.rule)} (policy line ${others[0]!.rule.line})` : null;
    const words =
      usable === 0
        ? whom
          ? `${free === 1 ? 'it is' : free === 2 ? 'both are' : 'all are'} reserved for ${whom}`
          : `all are reserved: ${list.join(', ')}`
        : `only ${usable} may be used by ${who}, the rest are reserved: ${list.join(', ')}`;
    throw new LicdError('POLICY_RESERVED', `${feature}: ${free} of ${total} free, but ${words}; ${seeker.count} wanted. Retry when a seat is checked in`, {
      feature,
      rule: 'RESERVE',
      line: others[0]!.rule.line,
      lines: others.map((u) => u.rule.line),
      free,
      total,
      reserved: kept,
      wanted: seeker.count,
    });
  }
}

/** A summary of a policy per feature, for status and licctl policy show. */
export function policySummary(p: Policy, feature: string, holdings: Iterable<Holding>): PolicyFeatureView | null {
  const r = p.features.get(feature) ?? { include: [], exclude: [], reserve: [], max: [] };
  const q = p.queues.get(feature);
  const lg = p.linger.get(feature);
  const to = p.idle.get(feature);
  if (!p.features.has(feature) && !q && !lg && !to) return null;
  const view: PolicyFeatureView = {};
  if (q) view.queue = { on: q.on, max: q.max, line: q.line };
  if (lg) view.linger = { seconds: lg.ms / 1000, line: lg.line };
  if (to) view.timeout = { seconds: to.ms / 1000, line: to.line };
  if (r.reserve.length > 0) view.reservations = reservationUse(p, feature, holdings).map((u) => ({ for: describeSubject(u.rule), seats: u.rule.count, used: u.used, line: u.rule.line }));
  if (r.max.length > 0) view.max = r.max.map((m) => ({ for: describeSubject(m), seats: m.count, line: m.line }));
  if (r.include.length > 0) view.include = r.include.map((s) => ({ for: describeSubject(s), line: s.line }));
  if (r.exclude.length > 0) view.exclude = r.exclude.map((s) => ({ for: describeSubject(s), line: s.line }));
  return view;
}

export interface PolicyFeatureView {
  /** Seats kept for someone: how many, how many of them its people use now, and the line. */
  reservations?: Array<{ for: string; seats: number; used: number; line: number }>;
  max?: Array<{ for: string; seats: number; line: number }>;
  include?: Array<{ for: string; line: number }>;
  exclude?: Array<{ for: string; line: number }>;
  /** QUEUE for this feature, when the policy sets it (else: on, no maximum). */
  queue?: { on: boolean; max: number | null; line: number };
  /** LINGER for this feature: seconds a checked-in seat stays with its user@host. */
  linger?: { seconds: number; line: number };
  /** TIMEOUT for this feature: seconds without reported activity after which a lease ends. */
  timeout?: { seconds: number; line: number };
}
