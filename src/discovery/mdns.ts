/**
 * Finding licd boxes on the LAN without configuration: DNS-SD over multicast DNS (RFC 6762/6763),
 * service type _licd._tcp, in-process with the multicast-dns package on both sides (the daemon
 * answers, licctl and the SDK ask). docs/scale-out.md says why in-process rather than avahi.
 *
 * A box answers a PTR query for _licd._tcp.local with its instance (PTR), SRV (host and the plain
 * MQTT port), TXT and the A records of its host. The TXT strings (key=value):
 *   v=1            this format
 *   server=ID      the box's server id (discovery.name; its host name by default)
 *   mqtt=PORT      the plain MQTT listener, on the addresses the answer came from
 *   mqtts=PORT     the TLS listener
 *   fp=SHA256:..   the TLS certificate's fingerprint (to compare with the box, never trusted by itself)
 *   urls=U1,U2     explicit broker URLs (discovery.urls), which win over the ports
 *   version=X      licd's version
 * Nothing in an answer is trusted: it only says where to connect. Grants and tokens are verified
 * with the vendor key as always, and a password goes only over TLS to a pinned or CA-verified
 * certificate (docs/threat-model.md).
 */
import makeMdns from 'multicast-dns';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import type { RemoteInfo } from 'node:dgram';

export const SERVICE_TYPE = '_licd._tcp.local';
/** How long a client browses by default, ms (LICD_DISCOVERY_WAIT overrides). */
export const DEFAULT_BROWSE_MS = 3000;

export interface AnnounceOptions {
  /** The instance and server id. */
  name: string;
  mqttPort?: number | null;
  mqttsPort?: number | null;
  fingerprint?: string | null;
  urls?: string[] | null;
  version: string;
  /** Only these IPv4 addresses (the broker listens on one address); else every non-loopback one. */
  addresses?: string[] | null;
  /** UDP port (5353; tests may pick another). */
  port?: number;
  onError?: (e: Error) => void;
}

export interface Announcer {
  close(): Promise<void>;
}

/** What a client found: one box. */
export interface FoundServer {
  /** The DNS-SD instance name. */
  instance: string;
  server: string;
  /** The broker URLs to try, plain before TLS. */
  urls: string[];
  fingerprint: string | null;
  version: string | null;
  /** Where the answer came from. */
  address: string;
}

const TTL = 120;

function lanAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

/** A DNS label: letters, digits, '-', at most 63. */
function label(s: string): string {
  return s.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'licd';
}

function txtOf(o: AnnounceOptions): string[] {
  const t = ['v=1', `server=${o.name}`, `version=${o.version}`];
  if (o.mqttPort) t.push(`mqtt=${o.mqttPort}`);
  if (o.mqttsPort) t.push(`mqtts=${o.mqttsPort}`);
  if (o.fingerprint) t.push(`fp=${o.fingerprint}`);
  if (o.urls && o.urls.length > 0) t.push(`urls=${o.urls.join(',')}`);
  return t;
}

/** Answers _licd._tcp queries until closed; announces itself at start and says goodbye (TTL 0) at close. */
export function announce(o: AnnounceOptions): Announcer {
  const mdns = makeMdns({ port: o.port ?? 5353 });
  const instance = `${label(o.name)}.${SERVICE_TYPE}`;
  const host = `${label(hostname())}.local`;
  const records = (ttl: number) => {
    const addrs = o.addresses && o.addresses.length > 0 ? o.addresses : lanAddresses();
    return {
      answers: [{ name: SERVICE_TYPE, type: 'PTR' as const, ttl, data: instance }],
      additionals: [
        { name: instance, type: 'SRV' as const, ttl, data: { port: o.mqttPort ?? o.mqttsPort ?? 1883, target: host } },
        { name: instance, type: 'TXT' as const, ttl, data: txtOf(o) },
        ...addrs.filter((a) => isIP(a) === 4).map((a) => ({ name: host, type: 'A' as const, ttl, data: a })),
      ],
    };
  };
  mdns.on('error', (e: Error) => o.onError?.(e));
  mdns.on('warning', () => {});
  mdns.on('query', (q) => {
    const asked = q.questions.some(
      (x) => (x.name.toLowerCase() === SERVICE_TYPE && ['PTR', 'ANY'].includes(String(x.type))) || (x.name.toLowerCase() === instance.toLowerCase() && ['SRV', 'TXT', 'ANY'].includes(String(x.type))),
    );
    if (asked) mdns.respond(records(TTL));
  });
  // Unsolicited announcements (RFC 6762 section 8.3): at start and a second later.
  const hello = () => mdns.respond(records(TTL));
  mdns.once('ready', hello);
  const again = setTimeout(hello, 1000);
  again.unref?.();
  let closed = false;
  return {
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(again);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        try {
          mdns.respond(records(0), () => {
            clearTimeout(t);
            resolve();
          });
        } catch {
          clearTimeout(t);
          resolve();
        }
      });
      await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
    },
  };
}

function txtMap(data: unknown): Map<string, string> {
  const m = new Map<string, string>();
  const items = Array.isArray(data) ? data : [data];
  for (const it of items) {
    const s = Buffer.isBuffer(it) ? it.toString('utf8') : String(it);
    const i = s.indexOf('=');
    if (i > 0 && !m.has(s.slice(0, i))) m.set(s.slice(0, i).toLowerCase(), s.slice(i + 1));
  }
  return m;
}

const portOf = (s: string | undefined): number | null => (s && /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535 ? Number(s) : null);

/** The servers in one mDNS answer (usually one). Exported for tests of the format. */
export function serversIn(packet: { answers?: unknown[]; additionals?: unknown[] }, rinfo: Pick<RemoteInfo, 'address'>): FoundServer[] {
  type Rec = { name: string; type: string; data: unknown };
  const recs = [...(packet.answers ?? []), ...(packet.additionals ?? [])] as Rec[];
  const found: FoundServer[] = [];
  const instances = new Set<string>();
  for (const r of recs) if (r.type === 'PTR' && r.name.toLowerCase() === SERVICE_TYPE && typeof r.data === 'string') instances.add(r.data);
  for (const r of recs) if ((r.type === 'TXT' || r.type === 'SRV') && r.name.toLowerCase().endsWith(`.${SERVICE_TYPE}`)) instances.add(r.name);
  for (const instance of instances) {
    const txt = recs.find((r) => r.type === 'TXT' && r.name.toLowerCase() === instance.toLowerCase());
    if (!txt) continue;
    const t = txtMap(txt.data);
    if (t.get('v') !== '1') continue;
    const srv = recs.find((r) => r.type === 'SRV' && r.name.toLowerCase() === instance.toLowerCase()) as { data: { target?: string } } | undefined;
    const target = srv?.data?.target?.toLowerCase();
    const addrs = [rinfo.address];
    for (const r of recs) if (r.type === 'A' && typeof r.data === 'string' && r.name.toLowerCase() === target && !addrs.includes(r.data)) addrs.push(r.data);
    let urls: string[];
    const explicit = t.get('urls');
    if (explicit) urls = explicit.split(',').map((u) => u.trim()).filter((u) => /^mqtts?:\/\/[^\s,]+$/.test(u));
    else {
      urls = [];
      const plain = portOf(t.get('mqtt'));
      const tls = portOf(t.get('mqtts'));
      if (plain) for (const a of addrs) urls.push(`mqtt://${a}:${plain}`);
      if (tls) for (const a of addrs) urls.push(`mqtts://${a}:${tls}`);
    }
    if (urls.length === 0) continue;
    found.push({ instance, server: t.get('server') ?? instance.slice(0, -SERVICE_TYPE.length - 1), urls, fingerprint: t.get('fp') ?? null, version: t.get('version') ?? null, address: rinfo.address });
  }
  return found;
}

/**
 * Asks the LAN for licd boxes and collects the answers for `waitMs` (or, with `firstMs`, until
 * that long after the first answer). Several boxes are all listed, each once (by server id).
 */
export async function browse(o: { waitMs?: number; firstMs?: number; port?: number } = {}): Promise<FoundServer[]> {
  const waitMs = o.waitMs ?? DEFAULT_BROWSE_MS;
  const mdns = makeMdns({ port: o.port ?? 5353 });
  const found = new Map<string, FoundServer>();
  try {
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(all);
        clearTimeout(first);
        clearInterval(ask);
        resolve();
      };
      const all = setTimeout(finish, waitMs);
      let first: NodeJS.Timeout | undefined;
      mdns.on('error', finish);
      mdns.on('warning', () => {});
      mdns.on('response', (packet, rinfo) => {
        for (const s of serversIn(packet, rinfo)) {
          const known = found.get(s.server);
          if (!known) found.set(s.server, s);
          else for (const u of s.urls) if (!known.urls.includes(u)) known.urls.push(u);
        }
        if (found.size > 0 && o.firstMs !== undefined && !first) first = setTimeout(finish, o.firstMs);
      });
      const query = () => mdns.query({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] });
      mdns.once('ready', query);
      // Queries are lost sometimes (UDP): ask again every second while waiting.
      const ask = setInterval(query, 1000);
    });
  } finally {
    await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
  }
  return [...found.values()];
}
