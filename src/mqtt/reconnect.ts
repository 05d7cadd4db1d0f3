/**
 * Reconnecting to a broker, shared by mqtt.js clients (connect.ts: the SDK, licctl, the tests) and
 * the daemon's own link (link-client.ts): the rotation through a list of brokers, the jittered
 * backoff, and waiting for the first connect. Nothing here loads an MQTT library.
 */

/** What waitConnected needs of a client: mqtt.js's MqttClient and LinkClient both have it. */
export interface ConnectEvents {
  readonly connected: boolean;
  on(event: 'connect', listener: () => void): unknown;
  on(event: 'error', listener: (e: Error) => void): unknown;
  off(event: 'connect', listener: () => void): unknown;
  off(event: 'error', listener: (e: Error) => void): unknown;
}

/**
 * The brokers of a list (bridged brokers of one licd namespace, docs/scale-out.md) and the one in
 * use. Every (re)connect goes to `current`; a lost connection or a failed attempt moves to the
 * next, so a client whose broker dies carries on through another. It starts at `prefer` (the
 * one the user's last run reached, src/sdk/discovery.ts) when that is in the list.
 */
export class BrokerRotation {
  readonly urls: readonly string[];
  private index = 0;
  /** Attempts since the last successful connect. */
  failures = 0;
  /** The last error seen on each broker (for the message when none answers). */
  readonly errors = new Map<string, string>();
  constructor(urls: readonly string[], prefer?: string | null) {
    if (urls.length === 0) throw new Error('BrokerRotation needs at least one URL');
    this.urls = urls;
    const i = prefer ? urls.indexOf(prefer) : -1;
    if (i >= 0) this.index = i;
  }
  get current(): string {
    return this.urls[this.index]!;
  }
  next(): void {
    this.index = (this.index + 1) % this.urls.length;
  }
}

/** A pause of 0.1-0.3 s before trying the next broker of a list, while some of the round are untried. */
export const NEXT_BROKER: Backoff = { firstMs: 200, capMs: 200 };

/** Reconnect delays: attempt n waits min(capMs, firstMs * 2^n) times a random factor in [0.5, 1.5). */
export interface Backoff {
  firstMs: number;
  capMs: number;
  /** Where the random factor comes from (tests); Math.random by default. */
  random?: () => number;
}

/** Render nodes (the SDK, licctl): first retry after 0.5-1.5 s, then doubling, never over 6 s: a farm's nodes
 * spread over seconds, and a node is back within seconds of its broker (a lease outlives a daemon
 * restart by one TTL at most). */
export const CLIENT_BACKOFF: Backoff = { firstMs: 1000, capMs: 4000 };
/** The daemon's own link: first retry after 0.5-1.5 s, never over 4.5 s (one connection, no herd). */
export const DAEMON_BACKOFF: Backoff = { firstMs: 1000, capMs: 3000 };

export function backoffDelay(b: Backoff, attempt: number): number {
  const base = Math.min(b.capMs, b.firstMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.5 + (b.random ?? Math.random)()));
}

/**
 * Resolves on the first connect, rejects on an error before it (bad credentials, refused). An
 * error `tolerate` accepts is waited past (a broker list: the next broker is tried).
 */
export function waitConnected(client: ConnectEvents, timeoutMs = 10_000, tolerate?: (e: Error) => boolean): Promise<void> {
  if (client.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`could not reach the MQTT broker within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (e: Error) => {
      if (tolerate?.(e)) return;
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      clearTimeout(t);
      client.off('connect', onConnect);
      client.off('error', onError);
    };
    client.on('connect', onConnect);
    client.on('error', onError);
  });
}
