import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import type { Socket } from 'node:net';
import { openTls, type TlsTrust } from './tls.ts';

/**
 * Connects mqtt.js with TCP_NODELAY on the socket. Without it a request/answer exchange on
 * loopback waits for Nagle against delayed ACK: measured here 44 ms p50 instead of 1 ms.
 */
export function connectMqtt(url: string, options: IClientOptions, trust?: TlsTrust): MqttClient {
  const defaults = { reconnectPeriod: 1000, connectTimeout: 5000 };
  // mqtts:// goes through openTls on every (re)connect: it refuses an untrusted or unpinned
  // server at the handshake, before the CONNECT packet (and its password) is written.
  const client = url.startsWith('mqtts:')
    ? new MqttClient(() => openTls(url, trust ?? {}), { ...defaults, ...options, protocol: 'mqtts' })
    : mqtt.connect(url, { ...defaults, ...options });
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
