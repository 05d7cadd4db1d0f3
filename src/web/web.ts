/**
 * The web page on licd's HTTP server (docs/web.md): its files (src/web/assets.ts) and the
 * MQTT-over-WebSocket bridge at /mqtt (src/web/bridge.ts), wired by the daemon.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config.ts';
import { certFingerprint } from '../mqtt/tls.ts';
import type { Log } from '../core/service.ts';
import type { HttpServer } from '../http/server.ts';
import type { EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { addPageRoutes } from './assets.ts';
import { WebBridge, type BridgeTarget } from './bridge.ts';

export interface Web {
  bridge: WebBridge;
  close(): Promise<void>;
}

export async function startWeb(o: { http: HttpServer; config: Config; broker: EmbeddedBroker | null; secure: boolean; log: Log }): Promise<Web | null> {
  addPageRoutes(o.http, o.log, o.config.cluster.serverId);
  let target: BridgeTarget | null = null;
  if (o.broker) target = { kind: 'embedded', broker: o.broker };
  else {
    // mqtt.url may be a list (a box of a cluster: its own broker first, then the others'): the
    // page's relay goes to the box's own broker, the first.
    const url = o.config.web.brokerUrl ?? o.config.mqtt.url?.split(',')[0]?.trim();
    if (url) {
      const u = new URL(url);
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (u.protocol === 'mqtt:') target = { kind: 'external', host, port: Number(u.port || 1883) };
      else {
        // mqtts://: trusted as the daemon trusts its broker (mqtt.fingerprint, mqtt.caFile), or pinned to mqtt.brokerCertFile.
        const m = o.config.mqtt;
        let fingerprint = m.fingerprint ?? undefined;
        if (!fingerprint && m.brokerCertFile) {
          try {
            fingerprint = certFingerprint(readFileSync(m.brokerCertFile));
          } catch (e) {
            o.log.warn('web: mqtt.brokerCertFile cannot be read: the relay to web.brokerUrl trusts only a CA', { error: (e as Error).message });
          }
        }
        const ca = m.caFile ? readFileSync(m.caFile) : undefined;
        target = { kind: 'external', host, port: Number(u.port || 8883), tls: { url, trust: { fingerprint, ca } } };
      }
    }
  }
  if (!target) return null;
  const w = o.config.web;
  const bridge = new WebBridge({ target, secure: o.secure, anonymous: w.anonymous && o.config.broker.allowAnonymous, maxConnections: w.maxConnections, maxFrameBytes: w.maxFrameBytes, log: o.log });
  o.http.onUpgrade(bridge.upgrade);
  return { bridge, close: () => bridge.close() };
}
