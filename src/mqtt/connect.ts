import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import type { Socket } from 'node:net';
import { openTls, type TlsTrust } from './tls.ts';

/**
 * Connects mqtt.js with TCP_NODELAY on the socket. Without it a request/answer exchange on
 * loopback waits for Nagle against delayed ACK: measured here 44 ms p50 instead of 1 ms.
 */
export function connectMqtt(url: string, options: IClientOptions, trust?: TlsTrust, backoff: Backoff = CLIENT_BACKOFF): MqttClient {
  // writeCache: false: mqtt-packet otherwise fills a table of 65,536 two-byte Buffers on the first
  // packet written (about 8 MiB of heap, a tenth of an idle daemon) to save one small allocation
  // per length field. The setting is process-wide (it covers the embedded broker's writes too).
  const defaults = { reconnectPeriod: 1000, connectTimeout: 5000, writeCache: false };
  // mqtts:// goes through openTls on every (re)connect: it refuses an untrusted or unpinned
  // server at the handshake, before the CONNECT packet (and its password) is written.
  const client = url.startsWith('mqtts:')
    ? new MqttClient(() => openTls(url, trust ?? {}), { ...defaults, ...options, protocol: 'mqtts' })
    : mqtt.connect(url, { ...defaults, ...options });
  if ((options.reconnectPeriod ?? 1000) > 0) jitterReconnects(client, backoff);
  const noDelay = () => {
    const s = client.stream as unknown as Partial<Socket> | undefined;
    if (s && typeof s.setNoDelay === 'function') s.setNoDelay(true);
  };
  noDelay();
  client.on('packetsend', (p) => {
    if (p.cmd === 'connect') noDelay();
  });
  return client;
}

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
 * mqtt.js retries on a fixed period (reconnectPeriod), so a broker restart brings every node
 * back in the same second. This replaces its retry timer, after each lost connection or failed
 * attempt, with one of a jittered, exponentially growing delay; a successful connect starts the
 * count again.
 */
function jitterReconnects(client: MqttClient, b: Backoff): void {
  // mqtt.js internals used here (mqtt 5.x): reconnectTimer (an interval it sets up in its own
  // 'close' handler, which runs before this one) and _reconnect().
  const c = client as unknown as { reconnectTimer: NodeJS.Timeout | null; disconnecting: boolean; _reconnect(): void };
  let attempt = 0;
  client.on('connect', () => {
    attempt = 0;
  });
  client.on('close', () => {
    if (!c.reconnectTimer || c.disconnecting) return;
    clearInterval(c.reconnectTimer);
    const delay = backoffDelay(b, attempt++);
    const t = setTimeout(() => {
      if (c.reconnectTimer !== t) return;
      c.reconnectTimer = null;
      if (!c.disconnecting) c._reconnect();
    }, delay);
    c.reconnectTimer = t;
  });
}

/** Resolves on the first connect, rejects on an error before it (bad credentials, refused). */
export function waitConnected(client: MqttClient, timeoutMs = 10_000): Promise<void> {
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
