/** licctl status, checkout, run, checkin, watch: floating seats for users and render nodes. */
import { LicdError, isLicdError } from '../../core/errors.ts';
import type { FeatureStatus, QueueView, StatusResult } from '../../core/protocol.ts';
import { BorrowClient } from '../../sdk/borrow.ts';
import type { Lease, LicdClient } from '../../sdk/client.ts';
import { clusterServerIds, type ClusterClient, type ClusterLease } from '../../sdk/cluster.ts';
import { flag, has, intFlag, UsageError, type ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { cell, connect, connectCluster, connectForSeat, err, json, jsonLine, out, outJson, serverOf, timeOf, vendorKey } from '../context.ts';
import { checkinHeld, checkinLines, EXIT_SEAT_LOST, lossLine, normaliseServer, parseDuration, recordHeld, startChild, watchLoss, type LossPolicy, type LossSource, type Say } from '../holding.ts';
import { formatTime } from '../time.ts';

/** A feature whose license has ended: no seat of it can be checked out, whatever the counts say. */
export function featureExpired(f: FeatureStatus, now: number): boolean {
  return f.expires !== null && Date.parse(f.expires) <= now;
}

/** A failover box's state (docs/scale-out.md, "Failover server"), one line (licctl status, the console's status). */
export function failoverLine(f: NonNullable<StatusResult['server']['failover']>, time: (t: string | number | Date) => string): string {
  const seats = f.features.map((x) => `${cell(x.feature)} x${x.seats}`).join(', ');
  const state =
    f.state === 'active'
      ? `ACTIVE since ${time(f.since!)} (${cell(f.primary)} offline since ${time(f.offlineSince!)})`
      : f.state === 'used-up'
        ? `stopped: this month's failover hours are used up (${cell(f.primary)} offline since ${time(f.offlineSince!)})`
        : f.reason === 'waiting'
          ? `dormant: ${cell(f.primary)} offline since ${time(f.offlineSince!)}, failover starts at ${time(f.startsAt!)}`
          : `dormant (${cell(f.reason === 'online' ? `${f.primary} is online` : f.reason === 'unseen' ? `${f.primary}'s state not seen` : (f.reason ?? ''))})`;
  return `failover for ${cell(f.primary)}: ${state}; ${seats}; used ${f.usedHours} of ${f.maxHoursPerMonth} h this month (${cell(f.entitlement)})`;
}

export function formatStatus(s: StatusResult, only?: string, time: (t: string | number | Date) => string = (t) => formatTime(t), now = Date.now()): string {
  const lines: string[] = [];
  const srv = s.server;
  const dongle = srv.dongle.present ? `dongle ${cell(srv.dongle.serial ?? '?')} present${srv.dongle.emulated ? ' (emulated)' : ''}` : `DONGLE ABSENT (${cell(srv.dongle.reason ?? 'not answering')})`;
  lines.push(`licd ${cell(srv.version)}: ${srv.state}, ${dongle}${srv.development ? ', DEVELOPMENT MATERIAL' : ''}`);
  if (srv.entitlement) lines.push(`license ${cell(srv.entitlement.id)} for ${cell(srv.entitlement.customer)}`);
  for (const w of srv.warnings) lines.push(`warning: ${cell(w)}`);
  if (srv.failover) lines.push(failoverLine(srv.failover, time));
  for (const x of srv.alerts ?? []) lines.push(`alert (${x.severity}, since ${time(x.since)}): ${cell(x.summary)}`);
  for (const q of s.quarantine) lines.push(`quarantine: ${cell(q.feature)} ${q.seats} seats held until ${time(q.until)}`);
  if (srv.tls) lines.push(`TLS${srv.tls.port ? ` port ${srv.tls.port}` : ''}: certificate ${cell(srv.tls.fingerprint)} (pin it: --fingerprint ${cell(srv.tls.fingerprint)})`);
  for (const b of s.blocks ?? []) lines.push(`blocked: ${cell(b.user)}@${cell(b.host)} from ${cell(b.feature)} until ${time(b.until)} (licctl lease unblock ${cell(b.feature)} ${cell(b.user)}@${cell(b.host)})`);
  if (s.quarantineBinding) lines.push(`quarantine release: the vendor needs dongle serial ${cell(s.quarantineBinding.dongleSerial)} and counter ${cell(String(s.quarantineBinding.counter))} (licctl vendor release-quarantine --serial ${cell(s.quarantineBinding.dongleSerial)} --counter ${cell(String(s.quarantineBinding.counter))})`);
  lines.push('');
  lines.push(`${'FEATURE'.padEnd(18)} ${'VERSION'.padEnd(8)} ${'TYPE'.padEnd(11)} ${'TOTAL'.padStart(5)} ${'LEASED'.padStart(6)} ${'BORROWED'.padStart(8)} ${'FREE'.padStart(5)}  EXPIRES`);
  const features: FeatureStatus[] = only ? s.features.filter((f) => f.feature === only) : s.features;
  for (const f of features) {
    const expired = featureExpired(f, now);
    lines.push(
      `${cell(f.feature).padEnd(18)} ${cell(f.version).padEnd(8)} ${cell(f.type).padEnd(11)} ${String(f.total).padStart(5)} ${String(f.leased).padStart(6)} ${String(f.borrowed).padStart(8)} ${String(expired ? 0 : f.free).padStart(5)}  ${f.expires ? `${expired ? 'expired ' : ''}${time(f.expires)}` : 'permanent'}`,
    );
    if (f.policy) lines.push(`    policy   ${policyLine(f.policy)}`);
    for (const w of f.queue ?? []) {
      lines.push(`    waiting  #${w.position} ${w.count > 1 ? `${w.count}x ` : ''}${cell(w.user)}@${cell(w.host)} pid ${w.pid}  since ${time(w.since)}  until ${time(w.until)}${w.priority !== 0 ? `  priority ${w.priority}` : ''}`);
    }
    for (const l of f.leases) {
      lines.push(`    leased   ${l.count > 1 ? `${l.count}x ` : ''}${cell(l.user)}@${cell(l.host)} pid ${l.pid}  since ${time(l.since)}  until ${time(l.until)}${l.state === 'disconnected' ? '  (client gone, ending)' : l.state === 'lingering' ? '  (checked in; lingers for its user@host)' : ''}  [${cell(l.id)}]`);
    }
    if (f.more && f.more.leases > 0) lines.push(`    ... and ${f.more.leases} more leases (licctl status FEATURE --limit N)`);
    for (const b of f.borrows) {
      lines.push(`    borrowed ${b.count > 1 ? `${b.count}x ` : ''}${cell(b.user)}@${cell(b.hostName)} (host ${cell(b.hostId.slice(0, 12))})  since ${time(b.since)}  until ${time(b.until)}${b.state === 'lost' ? '  LOST (reserved until expiry)' : ''}${b.autoRenew ? '  auto-renew' : ''}  [${cell(b.id)}]`);
    }
  }
  for (const f of features) if (f.more && f.more.borrows > 0) lines.push(`(${cell(f.feature)}: ${f.more.borrows} more borrows not listed)`);
  // Products, when the license groups features into them (one product per feature says nothing new).
  const grouped = (s.products ?? []).filter((p) => p.licenses.length > 1 || p.licenses[0]?.count !== 1 || p.id !== p.licenses[0]?.feature);
  if (grouped.length > 0) {
    lines.push('', `${'PRODUCT'.padEnd(18)} ${'NAME'.padEnd(30)} LICENSES (per machine)`);
    for (const p of grouped) lines.push(`${cell(p.id).padEnd(18)} ${cell(p.name).padEnd(30)} ${p.licenses.map((l) => `${l.count} ${cell(l.feature)} (${cell(l.type)})`).join(' + ')}`);
  }
  if (only && features.length === 0) lines.push(`(no feature ${cell(only)}; features: ${s.features.map((f) => cell(f.feature)).join(', ')})`);
  return lines.join('\n');
}

/** A feature's sharing rules in one line (docs/policy.md): what is reserved and used, maximums, who may or may not. */
function policyLine(p: NonNullable<FeatureStatus['policy']>): string {
  const parts = [
    ...(p.reservations ?? []).map((r) => `reserved ${r.seats} for ${cell(r.for)} (${r.used} in use; line ${r.line})`),
    ...(p.max ?? []).map((m) => `at most ${m.seats} for ${cell(m.for)} (line ${m.line})`),
    ...(p.include ?? []).map((i) => `only ${cell(i.for)} (line ${i.line})`),
    ...(p.exclude ?? []).map((x) => `not ${cell(x.for)} (line ${x.line})`),
    ...(p.timeout ? [`idle leases end after ${p.timeout.seconds} s (line ${p.timeout.line})`] : []),
    ...(p.linger ? [`lingers ${p.linger.seconds} s after check-in (line ${p.linger.line})`] : []),
    ...(p.queue ? [p.queue.on ? `queue on${p.queue.max !== null ? `, at most ${p.queue.max} waiting` : ''} (line ${p.queue.line})` : `no waiting (line ${p.queue.line})`] : []),
  ];
  return parts.join('; ');
}

function leaseView(lease: Lease) {
  const v = lease.view;
  return { id: v.id, feature: v.feature, count: v.count, user: v.user, host: v.host, until: v.until, status: lease.status };
}

function leaseLine(lease: Lease, time: (t: string) => string = (t) => formatTime(t)): string {
  const v = lease.view;
  return `${lease.status === 'granted' ? 'granted' : 'extended'} ${v.count > 1 ? `${v.count} seats of ` : ''}${cell(v.feature)} to ${cell(v.user)}@${cell(v.host)} (lease ${cell(v.id)}, until ${time(v.until)}, renewed by heartbeats)`;
}

/**
 * Holds the lease until a signal, saying when the seat is lost and why and when it is back. A
 * seat an admin revoked or blocked is not taken again: licctl then exits with EXIT_SEAT_LOST.
 * With --json each of these is one JSON line on stdout ({"event": ...}).
 */
async function holdUntilSignal(client: LicdClient, lease: Lease, server: string | null, time: (t: string) => string, asJson: boolean): Promise<number> {
  const feature = lease.view.feature;
  const held = server === null ? null : recordHeld({ server, feature, lease: lease.id, clientId: client.clientId });
  const writeRecord = () => held?.write(lease.id);
  // Recorded before it is said: a `licctl checkin` run as soon as this line shows finds it.
  writeRecord();
  if (asJson) jsonLine('out', { event: 'holding', lease: lease.id, feature });
  else out('holding; press Ctrl-C (or run licctl checkin) to give it back');
  const ended = await new Promise<'signal' | 'revoked'>((resolve) => {
    const done = () => resolve('signal');
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    process.once('SIGHUP', done);
    lease.on('lost', (e: LicdError, info: { retrying: boolean }) => {
      if (asJson) jsonLine('out', { event: 'lost', lease: lease.id, feature, code: e.code, message: e.message, retrying: info.retrying });
      else err(lossLine(feature, e, info.retrying));
      if (!info.retrying) resolve('revoked');
    });
    lease.on('regained', () => {
      writeRecord();
      if (asJson) jsonLine('out', { event: 'regained', lease: leaseView(lease) });
      else out(`regained ${feature} (lease ${lease.id}, until ${time(lease.view.until)}); holding`);
    });
  });
  if (ended === 'revoked' || lease.state === 'revoked') {
    client.forget(lease.id);
    held?.remove();
    const code = lease.lossReason?.code ?? 'REVOKED';
    if (asJson) jsonLine('out', { event: 'ended', lease: lease.id, feature, code, exit: EXIT_SEAT_LOST });
    else out(`no longer holding ${feature}: ${code}`);
    return EXIT_SEAT_LOST;
  }
  // Held, or lost for a while (the server may still keep it): give it back either way. A client
  // that is reconnecting (licd or the broker just restarted) is given the longest reconnect delay
  // (CLIENT_BACKOFF, about 6 s) to come back first, or its check-in could not be sent at all.
  if (!client.connected) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 7000);
      client.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  try {
    // A short wait: with the server gone the check-in cannot arrive, and the lease ends by itself.
    await client.request('checkin', { leases: [lease.id] }, { timeoutMs: 3000 });
    client.forget(lease.id);
    if (asJson) jsonLine('out', { event: 'checkedIn', lease: lease.id, feature });
    else out(`checked in ${lease.view.feature} (lease ${lease.id})`);
  } catch (e) {
    client.forget(lease.id);
    const message = `could not check in ${lease.view.feature} (${(e as Error).message}); the seat returns when its lease times out or the server sees this client gone`;
    if (asJson) jsonLine('out', { event: 'notCheckedIn', lease: lease.id, feature, message });
    else err(`licctl: ${message}`);
  } finally {
    held?.remove();
  }
  return 0;
}

function checkoutOptions(a: ParsedArgs, onQueue?: (q: QueueView) => void) {
  const version = flag(a, 'version');
  const ttl = intFlag(a, 'ttl', 1, 86400);
  const maxWaitText = flag(a, 'max-wait');
  if (maxWaitText !== undefined && !has(a, 'wait')) throw new UsageError('--max-wait goes with --wait (wait for a seat when none is free)');
  const maxWait = maxWaitText === undefined ? undefined : parseDuration(maxWaitText, '--max-wait');
  if (maxWait !== undefined && (maxWait < 1 || maxWait > 7 * 86400)) throw new UsageError(`--max-wait ${maxWaitText}: give at most 7d`);
  const wait = has(a, 'wait') ? { wait: true, ...(maxWait ? { maxWait } : {}), ...(onQueue ? { onQueue } : {}) } : {};
  return { ...(version ? { version } : {}), count: intFlag(a, 'count', 1, 1_000_000) ?? 1, ...(ttl ? { ttl } : {}), ...wait };
}

/** licctl status on a cluster: each server's status under its id; a server that does not answer is named with the reason. */
async function clusterStatus(a: ParsedArgs, ids: string[], only: string | undefined, limit: number | undefined): Promise<number> {
  const results: Array<{ server: string; status?: StatusResult; error?: { code: string; message: string } }> = [];
  for (const server of ids) {
    try {
      const sc = await connect(a, false, { maintain: false, server, timeoutMs: 5000 });
      try {
        results.push({ server, status: await sc.request<StatusResult>('status', { ...(only ? { feature: only } : {}), ...(limit !== undefined ? { limit } : {}) }, { timeoutMs: 5000 }) });
      } finally {
        await sc.close();
      }
    } catch (e) {
      results.push({ server, error: { code: isLicdError(e) ? e.code : 'INTERNAL', message: (e as Error).message } });
    }
  }
  if (json(a)) outJson({ servers: results });
  else {
    out(`${ids.length} servers on this broker cluster: ${ids.join(', ')}`);
    for (const r of results) {
      out('');
      out(`== server ${cell(r.server)} ==`);
      if (r.status) out(formatStatus(r.status, only, timeOf(a)));
      else out(`not answering: ${r.error!.code}: ${cell(r.error!.message)}`);
    }
  }
  return results.some((r) => r.status) ? 0 : 1;
}

/** A waiting checkout's place, as licctl says it (docs/policy.md, "Queueing"). */
function queueLine(q: QueueView, time: (t: string) => string): string {
  const est = q.estimate === null ? '' : `, about ${q.estimate < 90 ? `${q.estimate} s` : `${Math.round(q.estimate / 60)} min`}`;
  return `waiting for ${cell(q.feature)}: position ${q.position} of ${q.waiting}${est} (waits until ${time(q.until)})`;
}

async function status(a: ParsedArgs): Promise<number> {
  const c = await connect(a);
  try {
    const only = a.positional[1];
    const limit = intFlag(a, 'limit', 0, 100_000);
    // Several boxes on bridged brokers (docs/scale-out.md): every server's status, one after another.
    const cluster = flag(a, 'server') === undefined ? await clusterServerIds(c) : [];
    if (cluster.length > 0) return await clusterStatus(a, cluster, only, limit);
    const s = await c.request<StatusResult>('status', { ...(only ? { feature: only } : {}), ...(limit !== undefined ? { limit } : {}) });
    if (json(a)) outJson(s);
    else out(formatStatus(s, only, timeOf(a)));
  } finally {
    await c.close();
  }
  return 0;
}

async function checkout(a: ParsedArgs): Promise<number> {
  const feature = a.positional[1]!;
  const c = await connectForSeat(a, feature, intFlag(a, 'count', 1, 1_000_000) ?? 1);
  try {
    const onQueue = (q: QueueView) => (json(a) ? jsonLine('out', { event: 'queued', ...q }) : out(queueLine(q, timeOf(a))));
    const lease = await c.checkout(feature, checkoutOptions(a, onQueue));
    if (json(a)) jsonLine('out', { event: 'granted', lease: leaseView(lease) });
    else out(leaseLine(lease, timeOf(a)));
    return await holdUntilSignal(c, lease, serverOf(a), timeOf(a), json(a));
  } finally {
    await c.close({ checkin: false });
  }
}

async function run(a: ParsedArgs): Promise<number> {
  const feature = a.positional[1]!;
  const time = timeOf(a);
  const asJson = json(a);
  // licctl's own reports go to stderr (stdout is the command's); with --json one JSON line each.
  const report = (event: string, fields: Record<string, unknown>, text: string) => (asJson ? jsonLine('err', { event, ...fields }) : err(`licctl: ${text}`));
  const say: Say = asJson ? { out: (s) => jsonLine('err', { event: 'message', message: s.replace(/^licctl: /, '') }), err: (s) => jsonLine('err', { event: 'message', message: s.replace(/^licctl: /, '') }) } : { out, err };
  const onLoss = flag(a, 'on-loss') ?? 'warn';
  if (onLoss !== 'warn' && onLoss !== 'stop') throw new UsageError(`--on-loss must be warn or stop, got ${JSON.stringify(onLoss)}`);
  const policy = { mode: onLoss, graceSeconds: intFlag(a, 'grace', 0, 86400) ?? 60, warnEverySeconds: intFlag(a, 'warn-every', 1, 86400) ?? 60 } as const;
  // A borrowed token for the feature is used first: it needs no network, and its seat is
  // already reserved for this machine. Each offline use takes one of the token's seat slots on
  // this host (docs/borrowing.md).
  let busy: string | null = null;
  if (!has(a, 'online')) {
    const local = new BorrowClient().acquire(feature, vendorKey(a));
    if (local.ok) {
      try {
        report('offline', { feature, borrowId: local.ok.borrowId, until: new Date(local.ok.token.expiresAt).toISOString() }, `using borrowed ${feature} (offline token, valid until ${time(local.ok.token.expiresAt)})`);
        const conn = await connect(a, false, { timeoutMs: 1500 }).catch(() => null);
        if (conn) await conn.close({ checkin: false });
        const code = await startChild(a.rest, say).exit;
        if (asJson) jsonLine('err', { event: 'exit', code });
        return code;
      } finally {
        local.slot.release();
      }
    }
    if (local.inUse.length > 0) busy = local.reason;
  }
  let conn: { c: LicdClient } | { cluster: ClusterClient };
  try {
    // On a cluster of boxes the seat moves to another box when its box goes offline; waiting in a
    // queue is one box's (docs/scale-out.md), so --wait takes a box with room and stays there.
    if (has(a, 'wait')) conn = { c: await connectForSeat(a, feature, intFlag(a, 'count', 1, 1_000_000) ?? 1) };
    else {
      const probe = await connect(a);
      const cluster = await connectCluster(a, probe).catch(async (e: unknown) => {
        await probe.close({ checkin: false });
        throw e;
      });
      conn = cluster ? { cluster } : { c: probe };
    }
  } catch (e) {
    if (busy) throw new LicdError('TOKEN_IN_USE', `${busy} (and the license server was not reached: ${(e as Error).message})`);
    const local = new BorrowClient().usable(feature, vendorKey(a));
    throw new LicdError('TIMEOUT', `${(e as Error).message}; no borrowed license to fall back on (${'reason' in local ? local.reason : ''})`);
  }
  if ('cluster' in conn) return runOnCluster(a, conn.cluster, feature, report, say, policy);
  const c = conn.c;
  let lease: Lease;
  try {
    lease = await c.checkout(feature, checkoutOptions(a, (q) => report('queued', { ...q }, queueLine(q, time))));
  } catch (e) {
    await c.close();
    throw e;
  }
  report('granted', { lease: leaseView(lease) }, leaseLine(lease, time));
  return runWhileHeld(a, feature, report, say, policy, {
    source: lease,
    where: () => ({}),
    giveBack: () => {
      if (lease.state !== 'revoked') return c.checkin({ leases: [lease.id] });
      c.forget(lease.id);
      return null;
    },
    close: () => c.close({ checkin: false }),
  });
}

type Report = (event: string, fields: Record<string, unknown>, text: string) => void;

/** What licctl run holds while its command runs: a lease of one box, or a cluster's seat that may move between boxes. */
interface RunSeat {
  /** Says when the seat is lost and when it is back. */
  source: LossSource;
  /** Where it is held now, for the reports: {server} on a cluster. */
  where(): { server?: string };
  /** Gives the seat back; null when it is not this command's to give (revoked, or lost on a cluster). */
  giveBack(): Promise<unknown> | null;
  close(): Promise<void>;
}

/** Runs the command while `seat` is held, applies --on-loss, gives the seat back at the end; exits with the command's code. */
async function runWhileHeld(a: ParsedArgs, feature: string, report: Report, say: Say, policy: LossPolicy, seat: RunSeat): Promise<number> {
  const child = startChild(a.rest, say);
  const unwatch = watchLoss(seat.source, feature, child, policy, say);
  const code = await child.exit;
  const stopped = unwatch();
  const where = seat.where();
  const id = seat.source.id;
  const back = seat.giveBack();
  if (back) {
    try {
      await back;
      report('checkedIn', { lease: id, feature, ...where }, `checked in ${feature}${where.server ? ` on server ${where.server}` : ''}`);
    } catch (e) {
      report('notCheckedIn', { lease: id, feature, ...where, message: (e as Error).message }, `could not check in ${feature} (${(e as Error).message}); the seat returns when its lease times out`);
    }
  }
  await seat.close();
  const exit = stopped ? EXIT_SEAT_LOST : code;
  if (json(a)) jsonLine('err', { event: 'exit', code: exit, commandExit: code, stopped });
  return exit;
}

/**
 * licctl run on a cluster of boxes: the seat comes from the box the ClusterClient picks and moves
 * to another box with a free seat when its box goes offline, while the command runs on.
 */
async function runOnCluster(a: ParsedArgs, cluster: ClusterClient, feature: string, report: Report, say: Say, policy: LossPolicy): Promise<number> {
  const time = timeOf(a);
  const o = checkoutOptions(a);
  let cl: ClusterLease;
  try {
    cl = await cluster.checkout(feature, { count: o.count, ...(o.version ? { version: o.version } : {}), ...(o.ttl ? { ttl: o.ttl } : {}) });
  } catch (e) {
    await cluster.close();
    throw e;
  }
  report('granted', { lease: leaseView(cl.lease), server: cl.server }, `${leaseLine(cl.lease, time)} from server ${cl.server}`);
  cl.on('moved', (from: string, to: string) => report('moved', { feature, from, to, lease: leaseView(cl.lease) }, `server ${from} is gone: the seat of ${feature} moved to server ${to} (lease ${cl.id}, until ${time(cl.lease.view.until)})`));
  return runWhileHeld(a, feature, report, say, policy, {
    source: cl,
    where: () => ({ server: cl.server }),
    giveBack: () => {
      if (cl.state !== 'held') return null;
      cl.state = 'released';
      cluster.drop(cl);
      return cl.lease.release();
    },
    close: () => cluster.close(),
  });
}

async function checkin(a: ParsedArgs): Promise<number> {
  const feature = a.positional[1];
  const server = serverOf(a);
  const o = await checkinHeld({ server, feature });
  if (json(a)) outJson({ server: normaliseServer(server), ...(feature ? { feature } : {}), ...o });
  else for (const line of checkinLines(o, server, feature)) out(line);
  return 0;
}

async function watch(a: ParsedArgs): Promise<number> {
  const c = await connect(a);
  const time = timeOf(a);
  // Each line says when it was seen: a log of a night's changes is no use without the times.
  if (json(a)) {
    c.on('server', (s) => jsonLine('out', { time: new Date().toISOString(), type: 'server', server: s }));
    c.on('availability', (x) => jsonLine('out', { time: new Date().toISOString(), type: 'availability', availability: x }));
  } else {
    c.on('server', (s) => out(`${time(Date.now())}  server: ${s.state}${s.dongle.present ? '' : ' DONGLE ABSENT'}${s.warnings.length ? ' - ' + s.warnings.join('; ') : ''}`));
    c.on('availability', (x) => out(`${time(Date.now())}  ${x.feature}: ${x.free} of ${x.total} free (${x.leased} leased, ${x.borrowed} borrowed)`));
  }
  // The signal handlers first: lines print as soon as the subscription delivers the retained
  // state, and a Ctrl-C right then must still end the watch cleanly.
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await c.watch();
  await stopped;
  await c.close();
  return 0;
}

const SEAT_OPTIONS = {
  version: { type: 'string', arg: 'V', help: 'the version wanted (default: the licensed one)' },
  count: { type: 'string', arg: 'N', help: 'seats in one lease (default 1)' },
  wait: { type: 'boolean', help: 'when no seat is free, wait in the queue for one (its place is shown as it changes; docs/policy.md)' },
  'max-wait': { type: 'string', arg: 'DURATION', help: 'with --wait: give up after 30m, 2h, 1d ... (default 1d; exit 4, TIMEOUT)' },
} as const;

export const useCommands: Command[] = [
  {
    path: 'status',
    section: 'use',
    synopsis: 'status [FEATURE] [--limit N]',
    summary: 'seats per feature and who holds them (like lmstat)',
    details: 'Per feature: version, type, total, leased, borrowed and free seats, the expiry, and each lease and borrow with user, host, since and until. Also the server state, dongle, warnings, alerts (without names: licctl alerts has them), quarantine, blocks and the TLS fingerprint.',
    connects: true,
    args: { min: 0, max: 1, names: 'FEATURE' },
    options: { limit: { type: 'string', arg: 'N', help: 'list at most N leases and borrows per feature (the rest are counted)' } },
    json: 'the status result as licd sends it (docs/protocol.md, "status"); on a cluster of boxes {servers: [{server, status} or {server, error}]}',
    examples: ['licctl status', 'licctl status vray_render --json'],
    run: status,
  },
  {
    path: 'checkout',
    section: 'use',
    synopsis: 'checkout FEATURE [--version V] [--count N] [--ttl S] [--wait [--max-wait DURATION]]',
    summary: 'hold a seat, heartbeating, until Ctrl-C or licctl checkin',
    connects: true,
    args: { min: 1, max: 1, names: 'a FEATURE' },
    options: { ...SEAT_OPTIONS, ttl: { type: 'string', arg: 'S', help: 'the lease\'s time to live between heartbeats, in seconds' } },
    json: 'one JSON line per event on stdout: granted, holding, lost, regained, checkedIn or ended (with code and exit)',
    examples: ['licctl checkout nuke_i', 'licctl checkout vray_render --count 2 --json'],
    run: checkout,
  },
  {
    path: 'run',
    section: 'use',
    synopsis: 'run FEATURE [--version V] [--count N] [--wait [--max-wait DURATION]] [--on-loss warn|stop] [--grace S] -- COMMAND [ARGS...]',
    summary: 'hold a seat while COMMAND runs; exits with its exit code',
    details:
      'A valid borrowed token for FEATURE on this machine is used first (no network needed; --online skips it).\nOn a cluster of boxes (docs/scale-out.md) the seat moves to another box when its box goes offline, and the command runs on (not with --wait, which stays on one box).\nIf the seat is lost: warn (default; on stderr every --warn-every S) or stop COMMAND after --grace S (SIGTERM to it and every process under it, SIGKILL 5 s later; licctl then exits with 5).',
    connects: true,
    args: { min: 1, max: 1, names: 'a FEATURE' },
    rest: true,
    options: {
      ...SEAT_OPTIONS,
      'on-loss': { type: 'string', arg: 'warn|stop', help: 'what to do when the seat is lost (default warn)' },
      grace: { type: 'string', arg: 'S', help: 'with --on-loss stop: seconds to wait for the seat to come back (default 60)' },
      'warn-every': { type: 'string', arg: 'S', help: 'with --on-loss warn: seconds between warnings (default 60)' },
      online: { type: 'boolean', help: 'take a floating seat even when a borrowed token is on this machine' },
    },
    json: "licctl's own reports (offline, granted, message, checkedIn, exit; on a cluster of boxes also moved, with from and to) as JSON lines on stderr; stdout stays the command's",
    examples: ['licctl run vray_render -- ./render.sh scene.vrscene', 'licctl run vray_render --wait --max-wait 2h -- ./render.sh shot42.vrscene', 'licctl run nuke_i --on-loss stop --grace 120 -- nuke -x comp.nk'],
    run,
  },
  {
    path: 'checkin',
    section: 'use',
    synopsis: 'checkin [FEATURE]',
    summary: 'release the seats your licctl checkout processes hold from this server on this machine',
    details: 'Only checkouts of the user who runs it and of the server it points at (--broker) are touched; a record whose process is gone or whose pid was reused is removed without signalling anything.',
    connects: true,
    args: { min: 0, max: 1, names: 'FEATURE' },
    json: 'one object {server, feature?, signalled[], removed[], skipped[]}',
    examples: ['licctl checkin', 'licctl checkin nuke_i --json'],
    run: checkin,
  },
  {
    path: 'watch',
    section: 'use',
    synopsis: 'watch',
    summary: 'print availability and server state as they change, each line with its time, until Ctrl-C',
    connects: true,
    json: 'one JSON line per change: {time, type: "availability", availability} or {time, type: "server", server}',
    examples: ['licctl watch', 'licctl watch --json --utc'],
    run: watch,
  },
];
