/**
 * The web page on licd's HTTP server (docs/web.md): its files (src/web/assets.ts) and the
 * MQTT-over-WebSocket bridge at /mqtt (src/web/bridge.ts), wired by the daemon.
 */
import type { Config } from '../config.ts';
import type { Log } from '../core/service.ts';
import type { HttpServer } from '../http/server.ts';
import type { EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { addPageRoutes, loadPage } from './assets.ts';
import { WebBridge, type BridgeTarget } from './bridge.ts';

export interface Web {
  bridge: WebBridge;
  close(): Promise<void>;
}

export async function startWeb(o: { http: HttpServer; config: Config; broker: EmbeddedBroker | null; secure: boolean; log: Log }): Promise<Web | null> {
  const page = await loadPage(o.log);
  if ('error' in page) o.log.warn(`web: ${page.error}`);
  else o.log.debug('web: the page is ready', { from: page.from, files: page.files.length });
  addPageRoutes(o.http, page);
  let target: BridgeTarget | null = null;
  if (o.broker) target = { kind: 'embedded', broker: o.broker };
  else if (o.config.mqtt.url) {
    const u = new URL(o.config.mqtt.url);
    // The relay speaks plain MQTT to the broker; an mqtts:// broker is reached only by the daemon.
    if (u.protocol === 'mqtt:') target = { kind: 'external', host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 1883) };
    else o.log.warn('web: the page has no MQTT: the bridge relays to a plain mqtt:// broker listener only (mqtt.url is mqtts://); see docs/web.md');
  }
  if (!target) return null;
  const w = o.config.web;
  const bridge = new WebBridge({ target, secure: o.secure, anonymous: w.anonymous && o.config.broker.allowAnonymous, maxConnections: w.maxConnections, maxFrameBytes: w.maxFrameBytes, log: o.log });
  o.http.onUpgrade(bridge.upgrade);
  return { bridge, close: () => bridge.close() };
}
