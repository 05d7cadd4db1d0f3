/**
 * What a box announces on the LAN (docs/scale-out.md, "Discovery"), from its configuration and
 * the listeners it has: a broker reachable only on loopback is not announced.
 */
import type { Config } from '../config.ts';
import type { AnnounceOptions } from './mdns.ts';

export interface Listeners {
  /** The embedded broker's listeners, null with an external broker. */
  embedded: { plain: { host: string; port: number } | null; tls: { host: string; port: number } | null } | null;
  /** The TLS certificate's fingerprint, when licd knows it (its own or mqtt.brokerCertFile). */
  fingerprint: string | null;
}

const isLoopback = (h: string) => h === 'localhost' || h === '::1' || /^127\./.test(h);
const isAny = (h: string) => h === '0.0.0.0' || h === '::' || h === '';

/** The announcement, or the reason there is none (for the log). */
export function announcementOf(config: Config, l: Listeners, version: string): { plan: Omit<AnnounceOptions, 'onError'> } | { none: string } {
  const base = { name: config.discovery.name, version, fingerprint: l.fingerprint };
  if (config.discovery.urls) return { plan: { ...base, urls: config.discovery.urls } };
  if (l.embedded) {
    const open = [l.embedded.plain, l.embedded.tls].filter((x): x is { host: string; port: number } => x !== null && !isLoopback(x.host));
    if (open.length === 0) {
      return { none: `the broker listens on loopback only (mqtt.host ${config.mqtt.host}): set mqtt.host (LICD_MQTT_HOST) to 0.0.0.0 or the box's LAN address, or discovery.urls` };
    }
    const specific = open.map((x) => x.host).filter((h) => !isAny(h) && /^\d+\.\d+\.\d+\.\d+$/.test(h));
    const plain = l.embedded.plain && !isLoopback(l.embedded.plain.host) ? l.embedded.plain.port : null;
    const tls = l.embedded.tls && !isLoopback(l.embedded.tls.host) ? l.embedded.tls.port : null;
    return { plan: { ...base, mqttPort: plain, mqttsPort: tls, addresses: specific.length > 0 ? [...new Set(specific)] : null } };
  }
  // An external broker: on this machine (the appliance's mosquitto, listening on every address:
  // 1883 plain, 8883 TLS as systemd/mosquitto/licd.conf ships it), or elsewhere (its URL).
  const first = config.mqtt.url!.split(',')[0]!.trim();
  const u = new URL(first);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port ? Number(u.port) : u.protocol === 'mqtts:' ? 8883 : 1883;
  if (!isLoopback(host)) return { plan: { ...base, urls: [first] } };
  if (u.protocol === 'mqtts:') return { plan: { ...base, mqttsPort: port } };
  return { plan: { ...base, mqttPort: port, mqttsPort: l.fingerprint ? 8883 : null } };
}
