/**
 * The kill harness (issue 5): runs licd as a child process on a data dir and broker port that
 * survive restarts, drives mixed concurrent load from LicdClient and BorrowClient instances in
 * this process, kills the daemon (SIGKILL at a random moment, in the middle of requests, in the
 * burst of a borrow + checkout wave; or a clean SIGTERM), restarts it, reconnects, and checks the
 * invariants of docs/crash-safety.md against a ledger of what the daemon answered.
 *
 * Used by test/crash/crash.test.ts (a short bounded run) and test/crash/soak.ts (`npm run soak`).
 */
import { mkdirSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLicdError } from '../../src/core/errors.ts';
import type { StatusResult } from '../../src/core/protocol.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { INVARIANTS, Ledger, slotKey, type Invariant, type Violation } from './ledger.ts';
import { Rng, deriveSeed } from './rng.ts';

export { INVARIANTS, type Invariant, type Violation } from './ledger.ts';

export type KillKind = 'sigkill-random' | 'sigkill-inflight' | 'sigkill-burst' | 'sigkill-on-answer' | 'sigterm';
export type ReconnectMode = 'reconnect' | 'fresh';

export type LoadPattern = 'repeat' | 'renew-return';

/** Targeted scenarios (round after round, no background load). */
export type ScenarioName = 'renew-return' | 'repeat-kill' | 'repeat-return' | 'borrow-kill' | 'return-checkout';
export const SCENARIOS: Record<ScenarioName, string> = {
  'return-checkout':
    'a borrow of the 1-seat nuke_i returned while another host borrows (its counter step under way), a checkout taking the freed seat, SIGKILL on the checkout answer: the restart must not hold more than the seat',
  'borrow-kill': 'a burst of borrows, SIGKILL inside the counter gate (at random, or the moment the dongle steps), restart: no false quarantine, every answered borrow kept',
  'renew-return': 'a borrow renewed and returned at once (renewal first), then SIGKILL and restart: the returned borrow must stay returned',
  'repeat-kill': 'the same signed borrow request sent twice, SIGKILL the moment the first answer arrives: the answered borrow must survive',
  'repeat-return': 'the same signed borrow request sent twice, the borrow returned on the first answer, then a clean restart: it must stay returned',
};
export const LOAD_PATTERNS: readonly LoadPattern[] = ['repeat', 'renew-return'];

export const KILL_KINDS: readonly KillKind[] = ['sigkill-random', 'sigkill-inflight', 'sigkill-burst', 'sigkill-on-answer', 'sigterm'];

export const KIND_HELP: Record<KillKind, string> = {
  'sigkill-random': 'SIGKILL at a random moment of the load',
  'sigkill-inflight': 'SIGKILL the moment several requests are in flight',
  'sigkill-burst': 'SIGKILL inside the burst of a concurrent borrow + checkout wave (with a repeated borrow request)',
  'sigkill-on-answer': 'SIGKILL from inside the answer handler, the instant a state change is answered (an answer sent before its write is lost)',
  sigterm: 'a clean stop (SIGTERM) and restart',
};

/** The daemon's lease policy for the harness: short, so TTLs pass during a run. */
export const LEASES = { ttlSeconds: 10, minTtlSeconds: 2, maxTtlSeconds: 60, disconnectGraceSeconds: 1 } as const;

export interface CampaignOptions {
  seed: number;
  /** Stop after this many trials (kill + restart cycles)... */
  trials?: number;
  /** ...or once this many minutes have passed (whichever comes first). */
  minutes?: number;
  /** Load before each kill, ms [min, max]. */
  loadMs?: [number, number];
  clients?: number;
  borrowers?: number;
  actorsPerClient?: number;
  /** Pause between one actor's requests, ms (0..thinkMs). */
  thinkMs?: number;
  /** Keep the temp dir (data, daemon logs) even without violations. */
  keep?: boolean;
  /**
   * Load patterns to leave out, to look past a known bug: "repeat" (the same signed borrow
   * request sent twice at once) and "renew-return" (a return racing a renewal of the same borrow).
   */
  skip?: LoadPattern[];
  log?: (line: string) => void;
}

export interface TrialReport {
  trial: number;
  seed: number;
  kind: KillKind;
  mode: ReconnectMode;
  loadMs: number;
  sent: number;
  ok: number;
  errors: number;
  unknown: number;
  inFlightAtKill: number;
  exit: string;
  downMs: number;
  barrierMs: number;
  leases: number;
  borrows: number;
  violations: number;
}

export interface CampaignReport {
  seed: number;
  trials: TrialReport[];
  kills: { sigkill: number; sigterm: number };
  restarts: number;
  /** Restarts that found a counter step cut off by the kill (pending marker) and adopted it. */
  adopted: number;
  scenario: string | null;
  sent: number;
  ok: number;
  errors: number;
  unknown: number;
  snapshots: number;
  checks: Array<{ invariant: Invariant; what: string; checked: number; violations: number }>;
  violations: Violation[];
  notes: Array<{ text: string; count: number }>;
  durationMs: number;
  dir: string;
  kept: boolean;
}

const FEATURES = [
  ['vray_render', 35],
  ['vray_interface', 25],
  ['nuke_i', 15],
  ['vray_distributed', 25],
] as const;
const BORROWABLE = ['vray_render', 'vray_interface', 'nuke_i'] as const;
const TTL_CHOICES = [undefined, 1, 2, 3, 5, 10, 30] as const;
const BORROW_HOURS = [2, 24, 300] as const;
const MAX_BORROWS_PER_HOST = 3;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function effectiveTtlMs(ttl: number | undefined): number {
  return Math.min(LEASES.maxTtlSeconds, Math.max(LEASES.minTtlSeconds, ttl ?? LEASES.ttlSeconds)) * 1000;
}

// ---- the daemon as a child process ---------------------------------------------------------------

class DaemonProcess {
  proc: Proc | null = null;
  epoch = 0;
  /** Starts at which licd recognised a counter step cut off by the kill (and adopted it). */
  adopted = 0;
  constructor(
    private readonly dir: string,
    readonly port: number,
  ) {}

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** Starts licd and waits for its "listening" line; returns how long it took. */
  async start(): Promise<number> {
    const t0 = Date.now();
    this.epoch++;
    const p = startDaemonProcess({
      LICD_DATA_DIR: this.dataDir,
      LICD_MQTT_PORT: String(this.port),
      LICD_MQTT_HOST: '127.0.0.1',
      LICD_CONFIG: join(this.dir, 'licd.json'),
      LICD_LOG_LEVEL: 'info',
    });
    this.proc = p;
    await p.waitFor(/listening on mqtt:\/\//, 30_000);
    if (/counter adopted/.test(p.stdout() + p.stderr())) this.adopted++;
    return Date.now() - t0;
  }

  /** Signals the daemon and waits for it to exit; its output goes to logs/daemon-<epoch>.log. */
  async stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const p = this.proc;
    if (!p) return { code: null, signal: null };
    p.child.kill(signal);
    const exit = await Promise.race([p.exited, sleep(15_000).then(() => null)]);
    if (!exit) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    this.saveLog(p, this.epoch);
    this.proc = null;
    return exit ?? { code: null, signal: 'SIGKILL' };
  }

  saveLog(p: Proc, epoch: number): void {
    try {
      mkdirSync(join(this.dir, 'logs'), { recursive: true });
      writeFileSync(join(this.dir, 'logs', `daemon-${String(epoch).padStart(3, '0')}.log`), p.stdout() + (p.stderr() ? `\n--- stderr ---\n${p.stderr()}` : ''));
    } catch {
      /* logs are a help, not a requirement */
    }
  }
}

// ---- clients ------------------------------------------------------------------------------------

interface Node {
  idx: number;
  id: string;
  user: string;
  host: string;
  pids: number[];
  client: LicdClient;
  gen: number;
}

interface Borrower {
  idx: number;
  bc: BorrowClient;
  hostId: string;
  hours: number;
}

interface SlotConfig {
  count: number;
  ttl: number | undefined;
}

/**
 * Routes every request of the client (its own, the SDK's heartbeats and re-checkouts, and
 * BorrowClient's) through the ledger: sent, answered ok, answered with an error, or no answer.
 */
const MUTATING = new Set(['checkout', 'heartbeat', 'checkin', 'borrow', 'borrow.renew', 'borrow.return']);

function instrument(c: LicdClient, ledger: Ledger, onAnswer: (op: string) => void): void {
  const orig = c.request.bind(c) as (op: string, params?: Record<string, unknown>, opt?: { admin?: boolean; timeoutMs?: number }) => Promise<unknown>;
  const wrapped = async (op: string, params: Record<string, unknown> = {}, opt: { admin?: boolean; timeoutMs?: number } = {}): Promise<unknown> => {
    const r = ledger.begin(c.clientId, op, params);
    try {
      const res = await orig(op, params, opt);
      ledger.answered(r, true, res, null, null);
      onAnswer(op);
      return res;
    } catch (e) {
      if (isLicdError(e)) {
        if (e.code === 'TIMEOUT') ledger.noAnswer(r, true);
        else if (e.code === 'SHUTTING_DOWN' && e.message === 'this client is closed') ledger.noAnswer(r, false);
        else if (e.code === 'SHUTTING_DOWN' && e.message === 'client closed') ledger.noAnswer(r, true);
        else if (e.code === 'FORBIDDEN' && e.message.startsWith('could not send')) ledger.noAnswer(r, true);
        else ledger.answered(r, false, undefined, e.code, e.message);
      } else ledger.noAnswer(r, true);
      throw e;
    }
  };
  c.request = wrapped as LicdClient['request'];
}

// ---- the campaign -------------------------------------------------------------------------------

export class Campaign {
  readonly ledger = new Ledger();
  readonly opts: Required<Omit<CampaignOptions, 'trials' | 'minutes'>> & Pick<CampaignOptions, 'trials' | 'minutes'>;
  private readonly dir: string;
  private daemon!: DaemonProcess;
  private url = '';
  private nodes: Node[] = [];
  private borrowers: Borrower[] = [];
  private checker: LicdClient | null = null;
  private readonly rng: Rng;
  private readonly slots = new Map<string, SlotConfig>();
  private actorRngs: Rng[] = [];
  private actorLoops: Promise<void>[] = [];
  private stopped = false;
  private paused = true;
  private resumeWaiters: Array<() => void> = [];
  private killWindow = false;
  private gen = 0;
  private readonly trials: TrialReport[] = [];
  private readonly kills = { sigkill: 0, sigterm: 0 };
  private restarts = 0;
  private readonly t0 = Date.now();
  private readonly tag: string;
  private scenario: string | null = null;

  constructor(opts: CampaignOptions) {
    this.opts = {
      loadMs: [2000, 5000],
      clients: 5,
      borrowers: 3,
      actorsPerClient: 2,
      thinkMs: 30,
      keep: false,
      skip: [],
      log: (l) => console.log(l),
      ...opts,
    };
    this.rng = new Rng(deriveSeed(opts.seed, 0));
    this.tag = (opts.seed >>> 0).toString(16).padStart(8, '0');
    this.dir = mkdtempSync(join(tmpdir(), 'licd-crash-'));
    this.ledger.seed = opts.seed;
  }

  private log(line: string): void {
    this.opts.log(line);
  }

  // ---- set-up --------------------------------------------------------------------------------

  private async setUp(actors = true): Promise<void> {
    const port = await freePort();
    writeFileSync(join(this.dir, 'licd.json'), JSON.stringify({ leases: LEASES }, null, 2) + '\n');
    this.daemon = new DaemonProcess(this.dir, port);
    this.url = `mqtt://127.0.0.1:${port}`;
    const ms = await this.daemon.start();
    this.log(`licd up on ${this.url} in ${ms} ms; data in ${this.daemon.dataDir}`);
    for (let j = 0; j < this.opts.borrowers; j++) {
      const hostId = this.rng.hex(16);
      const hours = BORROW_HOURS[j % BORROW_HOURS.length]!;
      const bc = new BorrowClient({ home: join(this.dir, 'homes', `bc${j}`), hostId, user: `borrower${j}`, hostName: `laptop${j}` });
      this.borrowers.push({ idx: j, bc, hostId, hours });
      this.ledger.hostHours.set(hostId, hours);
    }
    for (let i = 0; i < this.opts.clients; i++) {
      const id = `crash-${this.tag}-n${i}`;
      const node: Node = { idx: i, id, user: `user${i}`, host: `node${i}`, pids: [1000 * (i + 1) + 1, 1000 * (i + 1) + 2, 1000 * (i + 1) + 3], client: null as unknown as LicdClient, gen: 0 };
      this.nodes.push(node);
    }
    await this.connectAll();
    const s = await this.status('start');
    this.log(`features: ${s.features.map((f) => `${f.feature} ${f.total}`).join(', ')}`);
    if (!actors) return;
    const n = this.opts.clients * this.opts.actorsPerClient;
    for (let a = 0; a < n; a++) this.actorRngs.push(new Rng(deriveSeed(this.opts.seed, 7, a)));
    for (let a = 0; a < n; a++) this.actorLoops.push(this.actor(a, a % this.opts.clients));
  }

  private async connectAll(): Promise<void> {
    this.gen++;
    const gen = this.gen;
    await Promise.all(
      this.nodes.map(async (n) => {
        // One holder secret per node across reconnects: the node's leases stay its own (as for a
        // real client process that keeps its LicdClient across broker and daemon restarts).
        const holder = Buffer.from(`crash-holder/${n.id}`).toString('base64url').padEnd(22, '0').slice(0, 128);
        const c = await LicdClient.connect({ url: this.url, clientId: n.id, user: n.user, host: n.host, timeoutMs: 6000, holder });
        instrument(c, this.ledger, (op) => this.onAnswer(op));
        c.on('offline', () => {
          if (!this.killWindow && n.gen === gen && !this.stopped) {
            this.ledger.disconnected(n.id, Date.now());
            this.ledger.note(`client ${n.id} lost its connection while the daemon was up`);
          }
        });
        n.client = c;
        n.gen = gen;
      }),
    );
    this.checker = await LicdClient.connect({ url: this.url, clientId: `crash-${this.tag}-check-${gen}`, user: 'checker', host: 'checker', timeoutMs: 5000 });
  }

  /** Armed by a sigkill-on-answer trial: kills the daemon synchronously on the next answered change. */
  private killOnAnswer: (() => void) | null = null;

  private onAnswer(op: string): void {
    if (this.killOnAnswer && MUTATING.has(op)) {
      const k = this.killOnAnswer;
      this.killOnAnswer = null;
      k();
    }
  }

  private async closeAll(): Promise<void> {
    const all = [...this.nodes.map((n) => n.client), ...(this.checker ? [this.checker] : [])];
    for (const c of all) {
      // close() rejects what is pending at once (before it waits for the socket); kill() then
      // drops the socket without waiting for a broker that is gone.
      void c.close({ checkin: false }).catch(() => {});
      c.kill();
    }
  }

  // ---- the status check --------------------------------------------------------------------------

  /** Asks for the status (retrying while the daemon comes up) and judges it. */
  private async status(where: string, client = this.checker!): Promise<StatusResult> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const s0 = Date.now();
      try {
        const s = await client.request<StatusResult>('status', {}, { timeoutMs: 2000 });
        const s1 = Date.now();
        this.ledger.snapshot(s, s0, s1, where);
        return s;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${where}: no status from the daemon within 20 s: ${(e as Error).message}`);
        await sleep(100);
      }
    }
  }

  // ---- load ----------------------------------------------------------------------------------------

  private async gate(): Promise<void> {
    while (this.paused && !this.stopped) await new Promise<void>((r) => this.resumeWaiters.push(r));
  }

  private pause(): void {
    this.paused = true;
  }

  private resume(): void {
    this.paused = false;
    const ws = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const w of ws) w();
  }

  private async actor(a: number, nodeIdx: number): Promise<void> {
    for (;;) {
      await this.gate();
      if (this.stopped) return;
      const rng = this.actorRngs[a]!;
      const node = this.nodes[nodeIdx]!;
      try {
        await this.step(rng, node);
      } catch {
        /* refusals and timeouts are part of the load; the ledger has them */
      }
      await sleep(rng.int(0, this.opts.thinkMs));
    }
  }

  private slot(rng: Rng, node: Node): { pid: number; feature: string; cfg: SlotConfig } {
    const pid = rng.pick(node.pids);
    const feature = rng.weighted(FEATURES);
    const key = slotKey(node.id, pid, feature);
    let cfg = this.slots.get(key);
    if (!cfg) {
      const seats = this.ledger.seats.get(feature) ?? 1;
      const count = seats >= 8 ? this.rng.pick([1, 2, 3]) : seats >= 4 ? this.rng.pick([1, 1, 2]) : 1;
      cfg = { count, ttl: this.rng.pick(TTL_CHOICES) };
      this.slots.set(key, cfg);
      this.ledger.slotTtl.set(key, effectiveTtlMs(cfg.ttl));
    }
    return { pid, feature, cfg };
  }

  private skips(p: LoadPattern): boolean {
    return this.opts.skip.includes(p);
  }

  private borrowerOf(node: Node): Borrower {
    return this.borrowers[node.idx % this.borrowers.length]!;
  }

  private checkout(rng: Rng, node: Node): Promise<unknown> {
    const { pid, feature, cfg } = this.slot(rng, node);
    return node.client.checkout(feature, { pid, count: cfg.count, ...(cfg.ttl !== undefined ? { ttl: cfg.ttl } : {}) });
  }

  private borrowItems(rng: Rng): Array<{ feature: string; count: number }> {
    const fs = rng.shuffle(BORROWABLE).slice(0, rng.chance(0.3) ? 2 : 1);
    return fs.map((feature) => ({ feature, count: 1 }));
  }

  /** One action of the load. */
  private async step(rng: Rng, node: Node): Promise<void> {
    const c = node.client;
    const b = this.borrowerOf(node);
    const action = rng.weighted([
      ['checkout', 30],
      ['heartbeat', 8],
      ['checkin', 20],
      ['status', 4],
      ['borrow', 9],
      ['renew', 5],
      ['return', 9],
      ['repeat', 2],
      ['abandon', 3],
    ] as const);
    switch (action) {
      case 'checkout':
        await this.checkout(rng, node);
        return;
      case 'heartbeat': {
        if (rng.chance(0.5)) return c.heartbeatNow();
        const ids = this.ledger.liveLeaseIds(node.id);
        await c.request('heartbeat', ids.length > 0 && rng.chance(0.8) ? { leases: rng.shuffle(ids).slice(0, rng.int(1, ids.length)) } : {});
        return;
      }
      case 'checkin': {
        const how = rng.weighted([
          ['id', 50],
          ['feature', 20],
          ['pid', 15],
          ['all', 15],
        ] as const);
        if (how === 'id') {
          const ids = this.ledger.liveLeaseIds(node.id);
          if (ids.length === 0) return;
          const id = rng.pick(ids);
          const held = c.heldLeases().find((l) => l.id === id);
          if (held) await held.release();
          else await c.checkin({ leases: [id] });
        } else if (how === 'feature') await c.checkin({ feature: rng.weighted(FEATURES) });
        else if (how === 'pid') await c.checkin({ pid: rng.pick(node.pids) });
        else await c.checkin();
        return;
      }
      case 'status': {
        const s0 = Date.now();
        const s = await c.status();
        this.ledger.snapshot(s, s0, Date.now(), `status under load (daemon #${this.daemon.epoch})`);
        return;
      }
      case 'borrow': {
        if (this.ledger.liveBorrowIds(b.hostId).length + this.ledger.pendingBorrows(b.hostId) >= MAX_BORROWS_PER_HOST) return;
        await b.bc.borrow(c, this.borrowItems(rng), b.hours, { autoRenew: rng.chance(0.3) });
        return;
      }
      case 'renew': {
        const ids = this.ledger.liveBorrowIds(b.hostId, this.skips('renew-return'));
        if (ids.length === 0) return;
        await b.bc.renew(c, [rng.pick(ids)], b.hours);
        return;
      }
      case 'return': {
        const ids = this.ledger.liveBorrowIds(b.hostId, this.skips('renew-return'));
        if (ids.length === 0) return;
        await b.bc.giveBack(c, rng.shuffle(ids).slice(0, rng.int(1, Math.min(2, ids.length))));
        return;
      }
      case 'abandon': {
        // A process that checks out and dies without a word: its lease (TTL 2 s, on a pid the SDK
        // does not heartbeat) must be reaped within a tick of its end.
        const pid = node.pids[0]! + 900;
        const feature = rng.weighted(FEATURES);
        const key = slotKey(node.id, pid, feature);
        if (!this.slots.has(key)) {
          this.slots.set(key, { count: 1, ttl: 2 });
          this.ledger.slotTtl.set(key, effectiveTtlMs(2));
        }
        await c.request('checkout', { feature, user: node.user, host: node.host, pid, count: 1, ttl: 2 });
        return;
      }
      case 'repeat': {
        // The same signed request twice at once, as a client retrying a lost answer would: one
        // set of seats, and the second answer must not come before the first is on disk.
        if (this.skips('repeat')) return;
        if (this.ledger.liveBorrowIds(b.hostId).length + this.ledger.pendingBorrows(b.hostId) >= MAX_BORROWS_PER_HOST) return;
        const env = b.bc.request(this.borrowItems(rng), b.hours);
        await Promise.allSettled([c.request('borrow', { request: env }), c.request('borrow', { request: env })]);
        return;
      }
    }
  }

  /** A concurrent wave: a borrow from every borrower, a checkout from every node, a repeated borrow. */
  private wave(rng: Rng): Array<Promise<unknown>> {
    const ps: Array<Promise<unknown>> = [];
    for (const n of this.nodes) {
      ps.push(this.checkout(rng, n));
      if (rng.chance(0.5)) ps.push(this.checkout(rng, n));
    }
    for (const b of this.borrowers) {
      const n = this.nodes[b.idx % this.nodes.length]!;
      ps.push(b.bc.borrow(n.client, this.borrowItems(rng), b.hours));
    }
    if (!this.skips('repeat')) {
      const b = rng.pick(this.borrowers);
      const n = this.nodes[b.idx % this.nodes.length]!;
      const env = b.bc.request(this.borrowItems(rng), b.hours);
      ps.push(n.client.request('borrow', { request: env }), n.client.request('borrow', { request: env }));
    }
    for (const p of ps) p.catch(() => {});
    return ps;
  }

  // ---- one trial --------------------------------------------------------------------------------

  private schedule(i: number): { kind: KillKind; mode: ReconnectMode } {
    // Every run of five trials covers each kind once (in a seeded order); the modes alternate, so
    // over ten trials each kind meets both.
    const n = KILL_KINDS.length;
    const order = new Rng(deriveSeed(this.opts.seed, 3, Math.floor((i - 1) / n))).shuffle(KILL_KINDS);
    const kind = order[(i - 1) % n]!;
    const mode: ReconnectMode = (i - 1) % 2 === 0 ? 'reconnect' : 'fresh';
    return { kind, mode };
  }

  private async trial(i: number): Promise<TrialReport> {
    const seed = deriveSeed(this.opts.seed, 1, i);
    const rng = new Rng(seed);
    const { kind, mode } = this.schedule(i);
    this.ledger.trial = i;
    for (let a = 0; a < this.actorRngs.length; a++) this.actorRngs[a] = new Rng(deriveSeed(seed, 2, a));
    const before = { ...this.ledger.counts };
    const vBefore = this.ledger.violations.length;
    const loadMs = rng.int(this.opts.loadMs[0], this.opts.loadMs[1]);
    // Actors still waiting for answers that will never come (requests the new broker took before
    // the daemon subscribed) would thin out this trial's load: give them a moment to time out.
    for (const deadline = Date.now() + 7000; this.ledger.pendingCount() > 2 && Date.now() < deadline; ) await sleep(50);
    this.resume();

    // -- the kill
    let inFlight = 0;
    let exit = '';
    let killAt = 0;
    const killNow = async (signal: 'SIGKILL' | 'SIGTERM') => {
      inFlight = this.ledger.pendingCount();
      killAt = Date.now();
      exit = await this.stopDaemon(signal, `trial ${i}`);
    };
    await sleep(loadMs);
    switch (kind) {
      case 'sigkill-random':
        await killNow('SIGKILL');
        break;
      case 'sigkill-inflight': {
        const want = rng.int(2, 6);
        const deadline = Date.now() + 3000;
        while (this.ledger.pendingCount() < want && Date.now() < deadline) await new Promise((r) => setImmediate(r));
        await killNow('SIGKILL');
        break;
      }
      case 'sigkill-burst': {
        const ps = this.wave(rng);
        if (rng.chance(0.5)) await Promise.race([Promise.race(ps.map((p) => p.then(() => undefined, () => undefined))), sleep(500)]);
        else await sleep(rng.pick([0, 0, 1, 2, 3, 5, 8, 13]));
        await killNow('SIGKILL');
        break;
      }
      case 'sigkill-on-answer': {
        // The signal goes out synchronously from the answer's handler, a fraction of a
        // millisecond after the daemon published it: whatever it answered before writing is lost.
        const fired = new Promise<void>((resolve) => {
          this.killOnAnswer = () => {
            this.ledger.killed(Date.now());
            this.daemon.proc?.child.kill('SIGKILL');
            resolve();
          };
        });
        await Promise.race([fired, sleep(3000)]);
        this.killOnAnswer = null;
        await killNow('SIGKILL');
        break;
      }
      case 'sigterm':
        await killNow('SIGTERM');
        break;
    }
    this.pause();

    // -- between the kill and the restart
    if (mode === 'reconnect' && rng.chance(0.6)) {
      // Requests sent while the daemon is down: mqtt.js keeps them and sends them on reconnect.
      for (const n of this.nodes) {
        const k = rng.int(0, 2);
        for (let j = 0; j < k; j++) this.step(rng, n).catch(() => {});
      }
    }
    const { s, barrierMs, upAt } = await this.restart(mode, `trial ${i} after restart`, `${kind}`);
    const downMs = upAt - killAt;

    const after = this.ledger.counts;
    const report: TrialReport = {
      trial: i,
      seed,
      kind,
      mode,
      loadMs,
      sent: after.sent - before.sent,
      ok: after.ok - before.ok,
      errors: after.error - before.error,
      unknown: after.unknown - before.unknown,
      inFlightAtKill: inFlight,
      exit,
      downMs,
      barrierMs,
      leases: s.features.reduce((n, f) => n + f.leases.length, 0),
      borrows: s.features.reduce((n, f) => n + f.borrows.length, 0),
      violations: this.ledger.violations.length - vBefore,
    };
    this.trials.push(report);
    return report;
  }

  /**
   * Brings the daemon back after it was stopped: in "fresh" mode the clients die with it and new
   * ones connect with the same ids; in "reconnect" mode they reconnect by themselves. Then the
   * barrier, and a judged status.
   */
  private async restart(mode: ReconnectMode, where: string, after: string): Promise<{ s: StatusResult; barrierMs: number; upAt: number }> {
    if (mode === 'fresh') {
      // These clients die with the daemon: nothing they sent can act any more.
      this.ledger.closeWindows(null, Date.now(), Date.now());
      await this.closeAll();
      this.ledger.closeWindows(null, Date.now(), Date.now());
    }
    await this.daemon.start().catch((e: Error) => {
      this.ledger.count('restart');
      this.ledger.violate('restart', `${where}: licd did not come back after ${after}: ${e.message.slice(0, 2000)}`, undefined, `start:${this.daemon.epoch}`);
      throw e;
    });
    this.ledger.count('restart');
    this.restarts++;
    const upAt = Date.now();
    this.ledger.started(upAt);
    if (mode === 'fresh') await this.connectAll();
    await this.barrier();
    const barrierMs = Date.now() - upAt;
    const s = await this.status(where);
    this.killWindow = false;
    await this.returnResurrected(s);
    return { s, barrierMs, upAt };
  }

  /**
   * A borrow answered returned that came back (a violation, already recorded) would hold its seat
   * for hours and starve the rest of the run: its borrower returns it again.
   */
  private async returnResurrected(s: StatusResult): Promise<void> {
    for (const f of s.features) {
      for (const v of f.borrows) {
        if (this.ledger.borrows.get(v.id)?.returnedAt == null) continue;
        const x = this.borrowers.find((b) => b.hostId === v.hostId);
        if (x) await x.bc.giveBack(this.nodes[x.idx % this.nodes.length]!.client, [v.id]).catch(() => {});
      }
    }
  }

  /** Stops the daemon (kill window open: connection drops are expected). */
  private async stopDaemon(signal: 'SIGKILL' | 'SIGTERM', where: string): Promise<string> {
    this.killWindow = true;
    this.ledger.killed(Date.now());
    const e = await this.daemon.stop(signal);
    if (signal === 'SIGKILL') this.kills.sigkill++;
    else this.kills.sigterm++;
    const exit = e.signal ? e.signal : `exit ${e.code}`;
    if (signal === 'SIGTERM') {
      this.ledger.count('restart');
      if (e.code !== 0) this.ledger.violate('restart', `${where}: licd did not stop cleanly on SIGTERM (${exit}); see logs/daemon-${String(this.daemon.epoch).padStart(3, '0')}.log`, { exit: e }, `sigterm:${this.daemon.epoch}`);
    }
    return exit;
  }

  /**
   * After a restart, every node's requests sent before this point are either carried out by now
   * or lost: each node gets one answered status on its new connection (mqtt.js resends what it
   * kept before anything newer, and the daemon decides requests in arrival order).
   */
  private async barrier(): Promise<void> {
    const deadline = Date.now() + 30_000;
    await Promise.all(
      this.nodes.map(async (n) => {
        for (;;) {
          if (Date.now() > deadline) throw new Error(`client ${n.id} could not reach the restarted daemon within 30 s`);
          if (!n.client.mqtt.connected) {
            await sleep(50);
            continue;
          }
          const t = Date.now();
          try {
            await n.client.request('status', {}, { timeoutMs: 1500 });
            this.ledger.closeWindows([n.id], t, Date.now());
            return;
          } catch {
            await sleep(50);
          }
        }
      }),
    );
  }

  // ---- the run ---------------------------------------------------------------------------------

  async run(): Promise<CampaignReport> {
    let failure: unknown = null;
    try {
      await this.setUp();
      const deadline = this.opts.minutes !== undefined ? this.t0 + this.opts.minutes * 60_000 : Infinity;
      const maxTrials = this.opts.trials ?? (this.opts.minutes !== undefined ? Infinity : 8);
      for (let i = 1; i <= maxTrials && Date.now() < deadline; i++) {
        const r = await this.trial(i);
        this.log(formatTrial(r));
        for (const v of this.ledger.violations.slice(this.ledger.violations.length - r.violations)) this.log(formatViolation(v));
      }
      // A last look under load, then a quiet one.
      this.resume();
      await sleep(1000);
      this.pause();
      await this.status('final');
    } catch (e) {
      failure = e;
    }
    return this.finish(failure);
  }

  /**
   * A targeted scenario, round after round (no background load): the interleavings the random
   * trials hit only now and then, made to happen every time.
   */
  async runScenarios(plan: Array<[ScenarioName, number]>): Promise<CampaignReport> {
    let failure: unknown = null;
    this.scenario = plan.map(([n]) => n).join(', ');
    try {
      await this.setUp(false);
      let round = 0;
      for (const [name, rounds] of plan) {
        for (let i = 1; i <= rounds; i++) {
          this.ledger.trial = ++round;
          const v0 = this.ledger.violations.length;
          const line = await this.scenarioRound(name, i);
          this.log(`${name} round ${i}: ${line}${this.ledger.violations.length > v0 ? `  ${this.ledger.violations.length - v0} VIOLATION(S)` : '  ok'}`);
          for (const v of this.ledger.violations.slice(v0)) this.log(formatViolation(v));
        }
      }
      await this.status('final');
    } catch (e) {
      failure = e;
    }
    return this.finish(failure);
  }

  /**
   * Returns every borrow the harness's borrowers hold in the daemon (whatever the ledger thinks:
   * a borrow that came back is returned too), so the rounds do not run out of seats.
   */
  private async returnAllBorrows(): Promise<void> {
    const s = await this.checker!.request<StatusResult>('status', {}, { timeoutMs: 5000 });
    for (const x of this.borrowers) {
      const ids = s.features.flatMap((f) => f.borrows.filter((v) => v.hostId === x.hostId).map((v) => v.id));
      if (ids.length > 0) await x.bc.giveBack(this.nodes[x.idx % this.nodes.length]!.client, ids);
    }
  }

  private async scenarioRound(name: ScenarioName, i: number): Promise<string> {
    await this.returnAllBorrows();
    const node = this.nodes[0]!;
    const b = this.borrowers[0]!;
    const items = [{ feature: 'vray_render', count: 1 }];
    const has = (s: StatusResult, id: string) => s.features.some((f) => f.borrows.some((x) => x.id === id));
    const codeOf = (e: unknown) => (isLicdError(e) ? e.code : String(e));
    switch (name) {
      case 'renew-return': {
        // A renewal and a return of the same borrow, in that order, on one connection.
        const r = await b.bc.borrow(node.client, items, b.hours);
        const id = r.borrows[0]!.id;
        const renew = b.bc.renew(node.client, [id], b.hours).then(
          () => 'renew answered ok',
          (e) => `renew refused ${codeOf(e)}`,
        );
        const ret = b.bc.giveBack(node.client, [id]).then(
          (x) => (x.returned.includes(id) ? 'return answered returned' : 'return answered unknown'),
          (e) => `return refused ${codeOf(e)}`,
        );
        const said = await Promise.all([renew, ret]);
        await this.stopDaemon('SIGKILL', `round ${i}`);
        const { s } = await this.restart('fresh', `renew-return round ${i} after restart`, 'SIGKILL');
        return `borrow ${id}: ${said.join(', ')}; after SIGKILL and restart it is ${has(s, id) ? 'BACK' : 'gone'}`;
      }
      case 'repeat-kill': {
        // The same signed request twice; SIGKILL the moment the first answer arrives.
        const env = b.bc.request(items, b.hours);
        const p1 = node.client.request<{ borrows: Array<{ id: string }> }>('borrow', { request: env });
        const p2 = node.client.request<{ borrows: Array<{ id: string }> }>('borrow', { request: env });
        p1.catch(() => {});
        p2.catch(() => {});
        const first = await Promise.race([p1.then((x) => ({ copy: 1, x })), p2.then((x) => ({ copy: 2, x }))]);
        await this.stopDaemon('SIGKILL', `round ${i}`);
        const id = first.x.borrows[0]!.id;
        const { s } = await this.restart('fresh', `repeat-kill round ${i} after restart`, 'SIGKILL');
        return `borrow ${id} answered first to copy ${first.copy}; after SIGKILL and restart it is ${has(s, id) ? 'there' : 'LOST'}`;
      }
      case 'borrow-kill': {
        const rng = new Rng(deriveSeed(this.opts.seed, 5, i));
        let answered = 0;
        // Odd rounds: SIGKILL at a random moment of the gate (the pending marker's sync, the
        // dongle's step, the batch). Even rounds: SIGKILL the moment the emulated dongle's state
        // file is renamed into place, i.e. the counter has stepped but the batch is not written.
        const onStep = i % 2 === 0;
        let stepped: Promise<void> | null = null;
        let watcher: ReturnType<typeof watch> | null = null;
        if (onStep) {
          stepped = new Promise<void>((resolve) => {
            watcher = watch(join(this.daemon.dataDir, 'dev'), (_ev, file) => {
              if (file === 'dongle.json') resolve();
            });
          });
        }
        const ps = this.borrowers.map((x) => x.bc.borrow(this.nodes[x.idx % this.nodes.length]!.client, [{ feature: rng.pick(BORROWABLE), count: 1 }], x.hours));
        for (const p of ps) p.then(() => answered++, () => {});
        let delay = rng.int(0, 60);
        const t0 = Date.now();
        if (stepped) {
          await Promise.race([stepped, sleep(3000)]);
          (watcher as ReturnType<typeof watch> | null)?.close();
          delay = Date.now() - t0;
        } else while (Date.now() - t0 < delay) await new Promise((r) => setImmediate(r));
        await this.stopDaemon('SIGKILL', `round ${i}`);
        const adoptedBefore = this.daemon.adopted;
        const { s } = await this.restart('fresh', `borrow-kill round ${i} after restart`, 'SIGKILL');
        const held = s.features.reduce((n, f) => n + f.held, 0);
        return `${ps.length} borrows, SIGKILL ${onStep ? 'on the dongle counter step' : 'at random'} after ${delay} ms (${answered} answered before it); restart ${this.daemon.adopted > adoptedBefore ? 'adopted a cut-off counter step' : 'found the counter in step'}; quarantine: ${s.quarantine.length === 0 && held === 0 ? 'none' : 'YES'}`;
      }
      case 'return-checkout': {
        // Host 0 holds the one nuke_i seat. Host 1 borrows something else (a counter step under
        // way), host 0 returns nuke_i, a node checks nuke_i out on the seat the return freed; the
        // daemon is killed the instant the checkout is answered.
        const b1 = this.borrowers[1 % this.borrowers.length]!;
        const n1 = this.nodes[1 % this.nodes.length]!;
        const got = await b.bc.borrow(node.client, [{ feature: 'nuke_i', count: 1 }], b.hours);
        const id = got.borrows[0]!.id;
        const other = b1.bc.borrow(n1.client, [{ feature: 'vray_render', count: 1 }], b1.hours);
        const ret = b.bc.giveBack(node.client, [id]);
        const co = this.nodes[2 % this.nodes.length]!.client.request<{ lease: { id: string } }>('checkout', {
          feature: 'nuke_i',
          user: 'u',
          host: 'h',
          pid: 7000 + i,
          ttl: 30,
        });
        for (const p of [other, ret, co]) p.catch(() => {});
        const key = slotKey(this.nodes[2 % this.nodes.length]!.id, 7000 + i, 'nuke_i');
        this.slots.set(key, { count: 1, ttl: 30 });
        this.ledger.slotTtl.set(key, effectiveTtlMs(30));
        let what: string;
        try {
          const lease = await co;
          this.ledger.killed(Date.now());
          this.daemon.proc?.child.kill('SIGKILL');
          what = `checkout answered ${lease.lease.id}`;
        } catch (e) {
          what = `checkout refused ${codeOf(e)} (the seat was not free yet)`;
        }
        const retSaid = await Promise.race([ret.then((x) => (x.returned.includes(id) ? 'answered returned' : 'answered unknown'), () => 'no answer'), sleep(50).then(() => 'no answer before the kill')]);
        await this.stopDaemon('SIGKILL', `round ${i}`);
        const { s } = await this.restart('fresh', `return-checkout round ${i} after restart`, 'SIGKILL');
        const f = s.features.find((x) => x.feature === 'nuke_i')!;
        // Free the seat for the next round.
        await this.nodes[2 % this.nodes.length]!.client.request('checkin', { feature: 'nuke_i' }).catch(() => {});
        return `nuke_i borrow ${id} returned (${retSaid}), ${what}, SIGKILL; after restart nuke_i holds ${f.leased} leased + ${f.borrowed} borrowed of ${f.total}${f.leased + f.borrowed > f.total ? '  OVER THE COUNT' : ''}`;
      }
      case 'repeat-return': {
        // The same signed request twice; return the borrow the moment the first answer arrives.
        const env = b.bc.request(items, b.hours);
        const p1 = node.client.request<{ borrows: Array<{ id: string }> }>('borrow', { request: env });
        const p2 = node.client.request<{ borrows: Array<{ id: string }> }>('borrow', { request: env });
        p1.catch(() => {});
        p2.catch(() => {});
        const first = await Promise.race([p1.then((x) => ({ copy: 1, x })), p2.then((x) => ({ copy: 2, x }))]);
        const id = first.x.borrows[0]!.id;
        const back = await b.bc.giveBack(node.client, [id]);
        await Promise.allSettled([p1, p2]);
        await this.stopDaemon('SIGTERM', `round ${i}`);
        const { s } = await this.restart('fresh', `repeat-return round ${i} after restart`, 'SIGTERM');
        return `borrow ${id} answered first to copy ${first.copy}, returned (${back.returned.includes(id) ? 'answered returned' : 'answered unknown'}); after a clean restart it is ${has(s, id) ? 'BACK' : 'gone'}`;
      }
    }
  }

  private async finish(failure: unknown): Promise<CampaignReport> {
    if (failure) {
      this.log(`harness stopped: ${(failure as Error)?.stack ?? failure}`);
      if (!this.ledger.violations.some((v) => v.invariant === 'restart')) {
        this.ledger.count('restart');
        this.ledger.violate('restart', `the run could not go on: ${(failure as Error)?.message ?? failure}`);
      }
    }
    this.stopped = true;
    this.resume();
    await Promise.race([Promise.allSettled(this.actorLoops), sleep(10_000)]);
    await this.closeAll().catch(() => {});
    if (this.daemon?.proc) {
      const e = await this.daemon.stop('SIGTERM');
      this.kills.sigterm++;
      if (!failure) {
        this.ledger.count('restart');
        if (e.code !== 0) this.ledger.violate('restart', `licd did not stop cleanly on SIGTERM at the end (${e.signal ?? `exit ${e.code}`})`);
      }
    }
    const kept = this.opts.keep || this.ledger.violations.length > 0;
    if (!kept) rmSync(this.dir, { recursive: true, force: true });
    const c = this.ledger.counts;
    return {
      seed: this.opts.seed,
      trials: this.trials,
      kills: { ...this.kills },
      restarts: this.restarts,
      adopted: this.daemon?.adopted ?? 0,
      scenario: this.scenario,
      sent: c.sent,
      ok: c.ok,
      errors: c.error,
      unknown: c.unknown,
      snapshots: c.snapshots,
      checks: [...this.ledger.checks].map(([invariant, x]) => ({ invariant, what: INVARIANTS[invariant], ...x })),
      violations: this.ledger.violations,
      notes: [...this.ledger.notes.values()].sort((a, b) => b.count - a.count),
      durationMs: Date.now() - this.t0,
      dir: this.dir,
      kept,
    };
  }
}

export function runCampaign(opts: CampaignOptions): Promise<CampaignReport> {
  return new Campaign(opts).run();
}

/** Runs targeted scenarios one after the other on one daemon: [[name, rounds], ...]. */
export function runScenarios(plan: Array<[ScenarioName, number]>, opts: CampaignOptions): Promise<CampaignReport> {
  return new Campaign(opts).runScenarios(plan);
}

// ---- printing ---------------------------------------------------------------------------------------

export function formatTrial(r: TrialReport): string {
  return (
    `trial ${String(r.trial).padStart(3)} seed ${String(r.seed).padStart(10)}  ${r.kind.padEnd(17)} ${r.mode.padEnd(9)} ` +
    `load ${String(r.loadMs).padStart(4)} ms  ops ${String(r.sent).padStart(5)} (ok ${r.ok}, refused ${r.errors}, no answer ${r.unknown})  ` +
    `in flight at kill ${r.inFlightAtKill}  ${r.exit}  down ${r.downMs} ms  reconnect ${r.barrierMs} ms  ` +
    `after: ${r.leases} leases, ${r.borrows} borrows  ${r.violations === 0 ? 'ok' : `${r.violations} VIOLATION(S)`}`
  );
}

export function formatViolation(v: Violation): string {
  return `VIOLATION [${v.invariant}] trial ${v.trial} (campaign seed ${v.seed}): ${v.message}\n  details: ${JSON.stringify(v.details ?? null)}`;
}

export function formatReport(r: CampaignReport): string {
  const lines: string[] = [];
  lines.push(
    `${r.scenario ? `scenarios ${r.scenario}` : 'campaign'} seed ${r.seed}: ${r.scenario ? `${r.restarts} rounds` : `${r.trials.length} trials`} in ${(r.durationMs / 1000).toFixed(1)} s; ` +
      `kills: ${r.kills.sigkill} SIGKILL, ${r.kills.sigterm} SIGTERM (the last one the final stop); restarts ${r.restarts} (${r.adopted} found a counter step cut off by the kill and adopted it); ` +
      `requests ${r.sent} (answered ok ${r.ok}, refused ${r.errors}, no answer ${r.unknown}); status snapshots judged ${r.snapshots}`,
  );
  const byKind = new Map<string, number>();
  for (const t of r.trials) byKind.set(`${t.kind}/${t.mode}`, (byKind.get(`${t.kind}/${t.mode}`) ?? 0) + 1);
  if (r.trials.length > 0) lines.push(`trials by kind: ${[...byKind].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  lines.push('invariants checked:');
  for (const c of r.checks) lines.push(`  ${c.violations === 0 ? 'ok  ' : 'FAIL'} ${c.invariant.padEnd(20)} ${String(c.checked).padStart(8)} checks, ${c.violations} violations: ${c.what}`);
  if (r.notes.length > 0) {
    lines.push('notes (not violations):');
    for (const n of r.notes.slice(0, 12)) lines.push(`  ${String(n.count).padStart(6)} x ${n.text.slice(0, 240)}`);
  }
  if (r.violations.length > 0) {
    lines.push(`${r.violations.length} VIOLATION(S); reproduce the schedule with: npm run soak -- --seed ${r.seed} --trials ${Math.max(...r.violations.map((v) => v.trial), 1)}`);
    for (const v of r.violations) lines.push(formatViolation(v));
  }
  if (r.kept) lines.push(`data dir and daemon logs kept in ${r.dir}`);
  return lines.join('\n');
}

