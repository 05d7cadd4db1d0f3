/**
 * Several licd boxes on one broker cluster (docs/scale-out.md): every box publishes its state and
 * availability under licd/v1/s/<server id>/, the brokers are bridged, and a render node sees all
 * of them. ClusterClient pools their seats: a checkout goes to the server the client used last if
 * it has a free seat, else to the one with the most free seats; when a server goes offline (its
 * retained state says so: its last will) or refuses to renew, the client's leases there move to
 * another server with free seats. Each box grants only its own seats, so the pool never holds
 * more than the sum of the boxes' counts. Borrowed tokens are not pooled: they stay with the box
 * that issued them.
 *
 * One MQTT connection watches the cluster; each server the client holds seats on gets a
 * LicdClient of its own (its own connection and client id), all on the same broker list.
 */
import { EventEmitter } from 'node:events';
import { LicdError, isLicdError } from '../core/errors.ts';
import { clusterTopics, serverOfStateTopic, TOPIC_PREFIX, type ServerState, type StatusResult } from '../core/protocol.ts';
import type { Availability } from '../core/model.ts';
import { LicdClient, type ClientOptions, type Lease } from './client.ts';

/**
 * The server ids of a cluster whose retained state this connection's broker holds (none for a
 * lone box): subscribes, and waits for the retained messages that follow the subscription.
 */
export async function clusterServerIds(c: Pick<LicdClient, 'mqtt'>, settleMs = 200): Promise<string[]> {
  const ids = new Set<string>();
  const on = (topic: string, payload: Buffer) => {
    const id = serverOfStateTopic(topic);
    if (id !== null && payload.length > 0) ids.add(id);
  };
  c.mqtt.on('message', on);
  try {
    await c.mqtt.subscribeAsync({ [clusterTopics.serverStateWildcard]: { qos: 1 } });
    await new Promise((r) => setTimeout(r, settleMs));
    await c.mqtt.unsubscribeAsync(clusterTopics.serverStateWildcard).catch(() => {});
  } catch {
    // A broker without the cluster's topics (licd's embedded broker refuses them): a lone box.
    return [];
  } finally {
    c.mqtt.off('message', on);
  }
  return [...ids].sort();
}

/**
 * On a cluster, the server to take `count` seats of `feature` from, as this connection's broker
 * shows the retained states: an online one with room, the most free seats first (ties by id);
 * with no room anywhere, the first online one (its refusal, or its queue, then says so). Null on
 * a lone box (no cluster topics) or when no server is online.
 */
export async function chooseServer(c: Pick<LicdClient, 'mqtt'>, feature: string, count = 1, settleMs = 150): Promise<string | null> {
  const online = new Set<string>();
  const free = new Map<string, number>();
  const on = (topic: string, payload: Buffer) => {
    const p = topic.split('/');
    if (!topic.startsWith(`${TOPIC_PREFIX}/s/`) || p.length !== 6 || payload.length === 0) return;
    try {
      const body = JSON.parse(payload.toString('utf8')) as { state?: string; free?: number };
      if (p[4] === 'server' && p[5] === 'state') {
        if (body.state === 'online') online.add(p[3]!);
        else online.delete(p[3]!);
      } else if (p[4] === 'feature' && p[5] === feature && typeof body.free === 'number') free.set(p[3]!, body.free);
    } catch {
      /* not ours to judge */
    }
  };
  const featureTopic = clusterTopics.featureWildcard;
  c.mqtt.on('message', on);
  try {
    await c.mqtt.subscribeAsync({ [clusterTopics.serverStateWildcard]: { qos: 1 }, [featureTopic]: { qos: 1 } });
    await new Promise((r) => setTimeout(r, settleMs));
    await c.mqtt.unsubscribeAsync([clusterTopics.serverStateWildcard, featureTopic]).catch(() => {});
  } catch {
    return null;
  } finally {
    c.mqtt.off('message', on);
  }
  const ids = [...online].sort();
  const room = ids.filter((id) => (free.get(id) ?? 0) >= count).sort((a, b) => free.get(b)! - free.get(a)! || a.localeCompare(b));
  return room[0] ?? ids[0] ?? null;
}

export interface ServerView {
  id: string;
  state: ServerState | null;
  features: Map<string, Availability>;
}

/** How often a lease that found no server with a free seat looks again, ms. */
const RETRY_MS = 2000;
/** A seat not renewed this close to its end is taken as lost with its server, ms. */
const UNRENEWED_MARGIN_MS = 1000;
/** How long a server whose seats could not be renewed is passed over, ms. */
const UNREACHABLE_MS = 30_000;

/**
 * A seat held somewhere in the cluster. Events: 'moved' (from, to: server ids) when it moved to
 * another server; 'lost' (error, {retrying}) when no server had a seat for it (retrying: it keeps
 * trying) or an admin took it back or the license shrank (not retrying: it stays lost);
 * 'regained' (server) when it is held again.
 */
export class ClusterLease extends EventEmitter {
  /** held; lost (being tried again on every server); revoked (an admin's or the license's doing: not moved); released. */
  state: 'held' | 'lost' | 'revoked' | 'released' = 'held';
  constructor(
    private readonly cluster: ClusterClient,
    public server: string,
    public lease: Lease,
    readonly feature: string,
    readonly opt: { count?: number; version?: string; ttl?: number },
  ) {
    super();
  }

  get id(): string {
    return this.lease.id;
  }

  async release(): Promise<void> {
    this.state = 'released';
    this.cluster.drop(this);
    await this.lease.release().catch(() => {});
  }
}

export class ClusterClient extends EventEmitter {
  readonly servers = new Map<string, ServerView>();
  private readonly perServer = new Map<string, Promise<LicdClient>>();
  private readonly held = new Set<ClusterLease>();
  private lastUsed: string | null = null;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;

  /** Servers whose seats could not be renewed (unreachable though their retained state says online), until when. */
  private readonly unreachable = new Map<string, number>();
  private readonly checker: NodeJS.Timeout;

  private constructor(
    private readonly watcher: LicdClient,
    private readonly opts: ClientOptions,
  ) {
    super();
    watcher.mqtt.on('message', (topic, payload) => this.onMessage(topic, payload));
    watcher.mqtt.on('connect', () => void this.subscribe());
    // A server whose broker died stays "online" in the retained copies on the other brokers (no
    // will reaches them): a seat there that was not renewed by its end is gone, and moves.
    this.checker = setInterval(() => this.checkRenewals(), 1000);
    this.checker.unref?.();
  }

  private checkRenewals(): void {
    const now = Date.now();
    for (const cl of this.held) {
      if (cl.state !== 'held' || this.moving.has(cl)) continue;
      const until = Date.parse(cl.lease.view.until);
      if (Number.isFinite(until) && until - now < UNRENEWED_MARGIN_MS) {
        this.unreachable.set(cl.server, now + UNREACHABLE_MS);
        void this.move(cl);
      }
    }
  }

  /** Connects to the cluster's brokers (opts.urls) and waits up to waitMs for the servers' retained state. */
  static async connect(opts: ClientOptions, o: { waitMs?: number; expect?: number } = {}): Promise<ClusterClient> {
    const watcher = await LicdClient.connect({ ...opts, server: null });
    const c = new ClusterClient(watcher, opts);
    await c.subscribe();
    const deadline = Date.now() + (o.waitMs ?? 2000);
    while (Date.now() < deadline && c.servers.size < (o.expect ?? Infinity)) await new Promise((r) => setTimeout(r, 50));
    return c;
  }

  private async subscribe(): Promise<void> {
    await this.watcher.mqtt.subscribeAsync({ [clusterTopics.serverStateWildcard]: { qos: 1 }, [clusterTopics.featureWildcard]: { qos: 1 } });
  }

  private view(id: string): ServerView {
    let v = this.servers.get(id);
    if (!v) {
      v = { id, state: null, features: new Map() };
      this.servers.set(id, v);
    }
    return v;
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parts = topic.split('/');
    if (topic.startsWith(`${TOPIC_PREFIX}/s/`) === false || parts.length < 6 || payload.length === 0) return;
    const id = parts[3]!;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    if (parts[4] === 'server' && parts[5] === 'state' && parts.length === 6) {
      const v = this.view(id);
      const was = v.state?.state;
      v.state = body as ServerState;
      this.emit('server', id, v.state);
      if (v.state.state === 'offline' && was !== 'offline') this.serverGone(id);
      if (v.state.state === 'online' && was !== 'online') {
        // Back (a restart publishes its state again): seats that found no room may fit there now.
        this.unreachable.delete(id);
        if ([...this.held].some((cl) => cl.state === 'lost')) this.scheduleRetry();
      }
    } else if (parts[4] === 'feature' && parts.length === 6) {
      const a = body as Availability;
      this.view(id).features.set(a.feature, a);
      this.emit('availability', id, a);
    }
  }

  /** The online servers, best first for `feature` and `count`: the one used last if it has room, then the most free seats. */
  candidates(feature: string, count = 1, exclude: string[] = []): string[] {
    const free = (id: string) => this.servers.get(id)?.features.get(feature)?.free ?? -1;
    const now = Date.now();
    const ids = [...this.servers.values()]
      .filter((v) => v.state?.state === 'online' && !exclude.includes(v.id) && (this.unreachable.get(v.id) ?? 0) < now && (v.features.get(feature)?.free ?? 0) >= count)
      .map((v) => v.id);
    return ids.sort((a, b) => (a === this.lastUsed ? -1 : b === this.lastUsed ? 1 : free(b) - free(a) || a.localeCompare(b)));
  }

  private client(id: string): Promise<LicdClient> {
    let p = this.perServer.get(id);
    if (!p) {
      p = LicdClient.connect({ ...this.opts, server: id });
      p.catch(() => this.perServer.delete(id));
      this.perServer.set(id, p);
    }
    return p;
  }

  /** Takes a seat from the pool; throws NO_SEATS (naming every server) when none has room. */
  async checkout(feature: string, opt: { count?: number; version?: string; ttl?: number } = {}): Promise<ClusterLease> {
    const got = await this.take(feature, opt, []);
    if (!got) {
      const seen = [...this.servers.values()].map((v) => `${v.id}: ${v.state?.state !== 'online' ? 'offline' : `${v.features.get(feature)?.free ?? 0} free`}`).join(', ');
      throw new LicdError('NO_SEATS', `${feature}: no server of the cluster has ${opt.count ?? 1} free seat(s) (${seen || 'no server seen'})`);
    }
    const cl = new ClusterLease(this, got.server, got.lease, feature, opt);
    this.watch(cl);
    this.held.add(cl);
    return cl;
  }

  private async take(feature: string, opt: { count?: number; version?: string; ttl?: number }, exclude: string[]): Promise<{ server: string; lease: Lease } | null> {
    for (const id of this.candidates(feature, opt.count ?? 1, exclude)) {
      try {
        const c = await this.client(id);
        const lease = await c.checkout(feature, opt);
        this.lastUsed = id;
        return { server: id, lease };
      } catch (e) {
        // Full by now, or unreachable: the next server.
        if (isLicdError(e) && !['NO_SEATS', 'TIMEOUT', 'DONGLE_ABSENT', 'QUARANTINE', 'SHUTTING_DOWN', 'FAILOVER_DORMANT'].includes(e.code)) throw e;
      }
    }
    return null;
  }

  private watch(cl: ClusterLease): void {
    const mine = cl.lease;
    mine.on('lost', (e: LicdError) => {
      if (cl.lease !== mine || cl.state !== 'held') return;
      // Taken back by an admin, or the license changed: not moved elsewhere.
      if (['REVOKED', 'BLOCKED', 'LICENSE_REDUCED'].includes(e.code)) {
        cl.state = 'revoked';
        cl.emit('lost', e, { retrying: false });
        return;
      }
      void this.move(cl);
    });
  }

  /** The server went offline: every lease there moves to another server with free seats. */
  private serverGone(id: string): void {
    for (const cl of this.held) if (cl.server === id && (cl.state === 'held' || cl.state === 'lost')) void this.move(cl);
  }

  private moving = new Set<ClusterLease>();

  private async move(cl: ClusterLease): Promise<void> {
    if (this.moving.has(cl) || this.closed) return;
    this.moving.add(cl);
    try {
      const from = cl.server;
      const old = cl.lease;
      const got = await this.take(cl.feature, cl.opt, [from]);
      if (!got) {
        // The seat on `from` is given up (its server is gone or unreachable): no more heartbeats for it there.
        void this.perServer.get(from)?.then((c) => c.forget(old.id)).catch(() => {});
        if (cl.state === 'held') {
          cl.state = 'lost';
          cl.emit('lost', new LicdError('NO_SEATS', `${cl.feature}: server ${from} is gone and no other server has a free seat; trying again`), { retrying: true });
        }
        this.scheduleRetry();
        return;
      }
      // The old server is offline: its lease ends there by itself (TTL or its restart).
      void this.perServer.get(from)?.then((c) => c.forget(old.id)).catch(() => {});
      const wasLost = cl.state === 'lost';
      cl.server = got.server;
      cl.lease = got.lease;
      cl.state = 'held';
      this.watch(cl);
      cl.emit('moved', from, got.server);
      if (wasLost) cl.emit('regained', got.server);
    } finally {
      this.moving.delete(cl);
    }
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      for (const cl of this.held) if (cl.state === 'lost') void this.move(cl);
      if ([...this.held].some((cl) => cl.state === 'lost')) this.scheduleRetry();
    }, RETRY_MS);
    this.retry.unref?.();
  }

  /** @internal */
  drop(cl: ClusterLease): void {
    this.held.delete(cl);
  }

  heldLeases(): ClusterLease[] {
    return [...this.held];
  }

  /** Every server's status (seats, leases), by server id; a server that does not answer is left out with its error. */
  async statusAll(): Promise<Array<{ server: string; status?: StatusResult; error?: string }>> {
    const ids = [...this.servers.keys()].sort();
    return Promise.all(
      ids.map(async (id) => {
        try {
          const c = await this.client(id);
          return { server: id, status: await c.status() };
        } catch (e) {
          return { server: id, error: (e as Error).message };
        }
      }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.checker);
    if (this.retry) clearTimeout(this.retry);
    for (const p of this.perServer.values()) await p.then((c) => c.close()).catch(() => {});
    await this.watcher.close({ checkin: false });
  }
}
