/**
 * A load generator process: forked by bench/run.ts, it holds its share of the client connections
 * and runs the loads it is told to over IPC (bench/lib/gen-protocol.ts). Every loop is bounded in
 * count and time.
 */
import type {
  BurstCmd,
  BurstResult,
  ConnectCmd,
  ConnectResult,
  FarmCmd,
  FarmResult,
  FarmStopResult,
  GenCmd,
  GenReply,
  LatencyResult,
  OpenCmd,
  PairsCmd,
  QueueCmd,
  QueueResult,
} from './lib/gen-protocol.ts';
import { borrowRequestParams } from './lib/borrow.ts';
import { fillParams } from './lib/params.ts';
import { nowMs } from './lib/proc.ts';
import { WireClient, type Outcome } from './lib/wire.ts';

/** A lease id the echo responder never knows: the same length as the daemon's (9 random bytes, base64url). */
const PLACEHOLDER_LEASE = 'xxxxxxxxxxxx';
const USER = 'render';
const HOST_PREFIX = 'rn';

let clients: WireClient[] = [];
let expiry: NodeJS.Timeout | null = null;
let requestTimeoutMs = 30_000;
/** Leases held by burst or farm, per client index. */
const held = new Map<number, string>();
/** Further leases of a grown farm (FarmCmd.more); dropped with the clients, never checked in. */
let extraHeld: string[] = [];
let farmTimers: NodeJS.Timeout[] = [];
let farmStats: { heartbeats: number; unknown: number; errors: Record<string, number>; samples: number[] } | null = null;

function hostOf(i: number): string {
  return `${HOST_PREFIX}-${process.pid}-${i}`;
}

function bump(errors: Record<string, number>, code: string): void {
  errors[code] = (errors[code] ?? 0) + 1;
}

async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}

async function connect(c: ConnectCmd): Promise<ConnectResult> {
  requestTimeoutMs = c.timeoutMs;
  const t0 = nowMs();
  let failed = 0;
  let firstError: string | null = null;
  const made: WireClient[] = [];
  await pool(c.count, c.concurrency, async (i) => {
    const w = new WireClient({
      url: c.url,
      clientId: `${c.idPrefix}-${i}`,
      ...(c.username ? { username: c.username } : {}),
      ...(c.password ? { password: c.password } : {}),
      ...(c.keepalive ? { keepalive: c.keepalive } : {}),
      ...(c.qos !== undefined ? { qos: c.qos } : {}),
    });
    try {
      await w.connect(c.timeoutMs);
      made[i] = w;
    } catch (e) {
      failed++;
      firstError ??= String((e as Error).message ?? e);
      w.mqtt.end(true);
    }
  });
  clients = [...clients, ...made.filter(Boolean)];
  expiry ??= setInterval(() => {
    const now = nowMs();
    for (const w of clients) if (w.pending.size > 0) w.expire(now, requestTimeoutMs);
  }, 250);
  return { connected: clients.length, failed, firstError, ms: nowMs() - t0 };
}

function payloadBytes(op: string, params: Record<string, unknown>): number {
  // The same shape WireClient sends; the id has the same length as a live one.
  // Lease requests carry the 22-character holder secret (WireClient adds it).
  const holder = op === 'checkout' || op === 'heartbeat' || op === 'checkin' ? { holder: 'h'.repeat(22) } : {};
  return Buffer.byteLength(JSON.stringify({ ...params, ...holder, id: `${Date.now().toString(36)}-1`, op }));
}

async function pairs(c: PairsCmd): Promise<LatencyResult> {
  const cpu0 = process.cpuUsage();
  const start = nowMs();
  const from = start + c.warmupMs;
  const end = from + c.durationMs;
  const samples: Record<string, number[]> = { checkout: [], checkin: [] };
  const errors: Record<string, number> = {};
  const bytes: LatencyResult['bytes'] = {};
  let count = 0;
  const record = (op: string, o: Outcome) => {
    if (!o.ok) bump(errors, `${op}:${o.code}`);
    if (o.doneAt >= from && o.doneAt <= end) {
      count++;
      samples[op]!.push(o.doneAt - o.sentAt);
    }
    if (o.bytes > 0) bytes[op] = { request: bytes[op]?.request ?? 0, answer: o.bytes };
  };
  await Promise.all(
    clients.map(async (w, i) => {
      const co = { feature: c.feature, user: USER, host: hostOf(i), pid: 1000 + i };
      bytes.checkout ??= { request: payloadBytes('checkout', co), answer: 0 };
      while (nowMs() < end) {
        const a = await w.request('checkout', co);
        record('checkout', a);
        const lease = (a.answer?.result?.lease as { id?: string } | undefined)?.id ?? PLACEHOLDER_LEASE;
        const ci = { leases: [lease] };
        bytes.checkin ??= { request: payloadBytes('checkin', ci), answer: 0 };
        const b = await w.request('checkin', ci);
        record('checkin', b);
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return {
    count,
    windowMs: c.durationMs,
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, Float64Array.from(v)])),
    errors,
    bytes,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

async function open(c: OpenCmd): Promise<LatencyResult> {
  const cpu0 = process.cpuUsage();
  const start = nowMs() + 5;
  const from = start + c.warmupMs;
  const end = from + c.durationMs;
  const total = Math.floor((c.rate * (c.warmupMs + c.durationMs)) / 1000);
  const samples: Record<string, number[]> = { checkout: [], checkin: [] };
  const lags: number[] = [];
  const errors: Record<string, number> = {};
  let count = 0;
  let issued = 0;
  let outstanding = 0;
  let pid = 100_000;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const launch = (w: WireClient, i: number, intended: number) => {
    outstanding++;
    const co = { feature: c.feature, user: USER, host: hostOf(i), pid: pid++ };
    void w.request('checkout', co).then(async (a) => {
      if (intended >= from) {
        lags.push(a.sentAt - intended);
        if (a.doneAt <= end) {
          count++;
          samples.checkout!.push(a.doneAt - a.sentAt);
        }
      }
      if (!a.ok) bump(errors, `checkout:${a.code}`);
      const lease = (a.answer?.result?.lease as { id?: string } | undefined)?.id ?? PLACEHOLDER_LEASE;
      const b = await w.request('checkin', { leases: [lease] });
      if (!b.ok) bump(errors, `checkin:${b.code}`);
      if (intended >= from && b.doneAt <= end) {
        count++;
        samples.checkin!.push(b.doneAt - b.sentAt);
      }
      if (--outstanding === 0 && issued >= total) done();
    });
  };
  let rr = 0;
  const tick = () => {
    const now = nowMs();
    const due = Math.min(total, Math.floor(((now - start) * c.rate) / 1000));
    while (issued < due) {
      const intended = start + (issued * 1000) / c.rate;
      const i = rr++ % clients.length;
      issued++;
      launch(clients[i]!, i, intended);
    }
    if (issued < total) setTimeout(tick, 1);
    else if (outstanding === 0) done();
  };
  setTimeout(tick, Math.max(0, start - nowMs()));
  await finished;
  const cpu = process.cpuUsage(cpu0);
  const lagSorted = Float64Array.from(lags).sort();
  return {
    count,
    windowMs: c.durationMs,
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, Float64Array.from(v)])),
    errors,
    bytes: {},
    lagP99Ms: lagSorted.length ? lagSorted[Math.ceil(0.99 * lagSorted.length) - 1]! : 0,
    lagMaxMs: lagSorted.length ? lagSorted[lagSorted.length - 1]! : 0,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** The queue load: every client waits for a seat, holds it a while, checks it in (bench/run.ts phaseQueue). */
async function queue(c: QueueCmd): Promise<QueueResult> {
  const n = clients.length;
  const joins = new Float64Array(n).fill(NaN);
  const grants = new Float64Array(n).fill(NaN);
  const errors: Record<string, number> = {};
  let served = 0;
  let queued = 0;
  let notices = 0;
  let lastCheckinAt: number | null = null;
  await new Promise<void>((r) => setTimeout(r, Math.max(0, c.at - nowMs())));
  await Promise.all(
    clients.map(async (w, i) => {
      // The grant may come as a notice at any time after the request; wait for whichever comes.
      let granted: ((lease: { id: string; since: string } | null, code?: string) => void) | null = null;
      const seat = new Promise<{ lease: { id: string; since: string } | null; code?: string }>((resolve) => {
        granted = (lease, code) => resolve(code === undefined ? { lease } : { lease, code });
      });
      w.onNotice = (a) => {
        notices++;
        if (a.op === 'queue.granted' && a.ok) granted!((a.result?.lease as { id: string; since: string }) ?? null);
        else if (a.op === 'queue.failed') granted!(null, a.error?.code ?? 'QUEUE_FAILED');
      };
      const o = await w.request('checkout', { feature: c.feature, user: USER, host: hostOf(i), pid: 1, wait: true, maxWait: c.maxWait });
      if (!o.ok) {
        bump(errors, `checkout:${o.code}`);
        return;
      }
      const r = o.answer!.result!;
      if (r.status === 'queued') {
        queued++;
        joins[i] = Date.parse((r.queue as { until: string }).until) - c.maxWait * 1000;
      } else granted!(r.lease as { id: string; since: string });
      const timer = setTimeout(() => granted!(null, 'NOT_SERVED'), c.timeoutMs);
      const got = await seat;
      clearTimeout(timer);
      w.onNotice = null;
      if (!got.lease) {
        bump(errors, got.code ?? 'NOT_SERVED');
        return;
      }
      grants[i] = Date.parse(got.lease.since);
      if (r.status !== 'queued') joins[i] = grants[i]!;
      await new Promise((res) => setTimeout(res, c.holdMs));
      const ci = await w.request('checkin', { leases: [got.lease.id] });
      if (!ci.ok) bump(errors, `checkin:${ci.code}`);
      else {
        served++;
        lastCheckinAt = Math.max(lastCheckinAt ?? 0, ci.doneAt);
      }
    }),
  );
  return { sent: n, served, queued, errors, joins, grants, lastCheckinAt, notices };
}

async function burst(c: BurstCmd): Promise<BurstResult> {
  const n = Math.min(c.clients ?? clients.length, clients.length);
  const errors: Record<string, number> = {};
  const samples: number[] = [];
  let ok = 0;
  let first: number | null = null;
  let last: number | null = null;
  let sample: unknown = null;
  // Requests are made (and borrow requests signed) before the start, so the burst measures the server.
  const params = Array.from({ length: n }, (_, i) =>
    c.borrow ? borrowRequestParams(c.borrow.feature, c.borrow.hours, `rn-${process.pid}-${i}`) : fillParams(c.params, i),
  );
  await new Promise<void>((r) => setTimeout(r, Math.max(0, c.at - nowMs())));
  const outcomes: Array<Promise<Outcome>> = [];
  for (let i = 0; i < n; i++) outcomes.push(clients[i]!.request(c.op, params[i]!));
  const lastSentAt = nowMs();
  const results = await Promise.all(
    outcomes.map((p, i) =>
      p.then((o) => {
        if (o.ok) {
          ok++;
          first = first === null ? o.doneAt : Math.min(first, o.doneAt);
          last = last === null ? o.doneAt : Math.max(last, o.doneAt);
          samples.push(o.doneAt - o.sentAt);
          sample ??= o.answer?.result ?? null;
          const lease = (o.answer?.result?.lease as { id?: string } | undefined)?.id;
          if (lease) held.set(i, lease);
        } else bump(errors, o.code ?? 'UNKNOWN');
        return o;
      }),
    ),
  );
  void results;
  return { sent: n, ok, errors, firstAnswerAt: first, lastAnswerAt: last, samples: Float64Array.from(samples), lastSentAt, sample };
}

async function farm(c: FarmCmd): Promise<FarmResult> {
  const errors: Record<string, number> = {};
  let heartbeatSeconds = 0;
  let failed = 0;
  if (!c.more || !farmStats) farmStats = { heartbeats: 0, unknown: 0, errors: {}, samples: [] };
  const stats = farmStats;
  /** Checks out one lease for client i (as process `pid`) and heartbeats it on its own phase. */
  const hold = async (i: number, pid: number): Promise<string | null> => {
    const w = clients[i]!;
    const o = await w.request('checkout', { feature: c.feature, user: USER, host: hostOf(i), pid, ...(c.ttl ? { ttl: c.ttl } : {}) });
    if (!o.ok) {
      failed++;
      bump(errors, o.code ?? 'UNKNOWN');
      return null;
    }
    const r = o.answer!.result as { lease: { id: string }; heartbeat: number };
    heartbeatSeconds = r.heartbeat;
    // Nodes of a farm started at different times: each heartbeats on its own phase of the period.
    const periodMs = r.heartbeat * 1000;
    const beat = () => {
      void w.request('heartbeat', { leases: [r.lease.id] }).then((h) => {
        if (farmStats !== stats) return;
        if (!h.ok) return bump(stats.errors, h.code ?? 'UNKNOWN');
        stats.heartbeats++;
        stats.samples.push(h.doneAt - h.sentAt);
        if (((h.answer?.result?.unknown as unknown[] | undefined) ?? []).length > 0) stats.unknown++;
      });
    };
    const first = setTimeout(() => {
      beat();
      farmTimers.push(setInterval(beat, periodMs));
    }, Math.random() * periodMs);
    farmTimers.push(first);
    return r.lease.id;
  };
  if (c.more) {
    const extra = c.more;
    // A daemon that cannot keep up answers nothing (each request then waits its whole timeout):
    // after 20 refused or unanswered checkouts the farm grows no further, and says how far it got.
    await pool(clients.length * extra, c.concurrency, async (k) => {
      if (failed >= 20) return;
      const lease = await hold(Math.floor(k / extra), 2 + (k % extra));
      if (lease) extraHeld.push(lease);
    });
  } else {
    await pool(clients.length, c.concurrency, async (i) => {
      const lease = await hold(i, 1);
      if (lease) held.set(i, lease);
    });
  }
  return { leases: held.size + extraHeld.length, failed, heartbeatSeconds, errors };
}

function farmStop(): FarmStopResult {
  for (const t of farmTimers) clearTimeout(t);
  farmTimers = [];
  const s = farmStats ?? { heartbeats: 0, unknown: 0, errors: {}, samples: [] };
  farmStats = null;
  return { heartbeats: s.heartbeats, unknown: s.unknown, errors: s.errors, samples: Float64Array.from(s.samples) };
}

async function checkinAll(concurrency: number): Promise<{ released: number; errors: number }> {
  const entries = [...held.entries()];
  held.clear();
  let released = 0;
  let errors = 0;
  await pool(entries.length, concurrency, async (k) => {
    const [i, lease] = entries[k]!;
    const w = clients[i];
    if (!w) return;
    const o = await w.request('checkin', { leases: [lease] });
    if (o.ok) released++;
    else errors++;
  });
  return { released, errors };
}

/** Disconnects every client (cleanly: no last will) and forgets their leases. */
async function drop(): Promise<null> {
  farmStop();
  held.clear();
  extraHeld = [];
  for (const w of clients) w.expire(Number.POSITIVE_INFINITY, 0);
  await Promise.all(clients.map((w) => Promise.race([w.end(), new Promise<void>((r) => setTimeout(r, 2000))])));
  clients = [];
  return null;
}

async function close(): Promise<null> {
  if (expiry) clearInterval(expiry);
  expiry = null;
  return drop();
}

async function run(cmd: GenCmd): Promise<unknown> {
  switch (cmd.cmd) {
    case 'connect':
      return connect(cmd);
    case 'pairs':
      return pairs(cmd);
    case 'open':
      return open(cmd);
    case 'queue':
      return queue(cmd);
    case 'burst':
      return burst(cmd);
    case 'farm':
      return farm(cmd);
    case 'farmStop':
      return farmStop();
    case 'checkinAll':
      return checkinAll(cmd.concurrency);
    case 'drop':
      return drop();
    case 'close':
      return close();
  }
}

process.on('message', (m: { seq: number; cmd: GenCmd }) => {
  void run(m.cmd).then(
    (result) => process.send!({ seq: m.seq, ok: true, result } satisfies GenReply),
    (e) => process.send!({ seq: m.seq, ok: false, error: String((e as Error)?.stack ?? e) } satisfies GenReply),
  );
  if (m.cmd.cmd === 'close') setTimeout(() => process.exit(0), 2500).unref();
});
// The benchmark went away: do not linger.
process.on('disconnect', () => process.exit(0));
