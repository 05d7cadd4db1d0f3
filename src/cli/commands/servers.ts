/**
 * The licd boxes of this network, as mDNS finds them (docs/scale-out.md, "Discovery"), or as a
 * broker's retained server states show them (--broker: across subnets mDNS does not reach).
 */
import { browse } from '../../discovery/mdns.ts';
import { clusterTopics, serverOfStateTopic, topics, type ServerState } from '../../core/protocol.ts';
import { browseWaitMs } from '../../sdk/discovery.ts';
import { UsageError, type ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { flag } from '../args.ts';
import { cell, connect, err, json, out, outJson } from '../context.ts';

/** A server as its retained state on a broker shows it. */
interface SeenServer {
  /** The cluster server id, or null for a lone box (licd/v1/server/state). */
  server: string | null;
  state: ServerState['state'];
  version: string;
  since: string;
  dongle: { present: boolean; serial: string | null; emulated: boolean };
  license: string | null;
  customer: string | null;
  features: string[];
  warnings: string[];
}

/** The retained server states on the broker: a lone box's and every box's of a cluster. */
async function serversOnBroker(a: ParsedArgs, waitMs: number): Promise<number> {
  const c = await connect(a);
  const seen = new Map<string, SeenServer>();
  try {
    c.mqtt.on('message', (topic, payload) => {
      const server = topic === topics.serverState ? null : serverOfStateTopic(topic);
      if ((server === null && topic !== topics.serverState) || payload.length === 0) return;
      try {
        const s = JSON.parse(payload.toString('utf8')) as ServerState;
        if (typeof s !== 'object' || s === null || typeof s.state !== 'string') return;
        const strings = (x: unknown) => (Array.isArray(x) ? x.filter((v): v is string => typeof v === 'string') : []);
        seen.set(server ?? '', {
          server,
          state: s.state,
          version: String(s.version ?? ''),
          since: String(s.since ?? ''),
          dongle: { present: Boolean(s.dongle?.present), serial: typeof s.dongle?.serial === 'string' ? s.dongle.serial : null, emulated: Boolean(s.dongle?.emulated) },
          license: typeof s.entitlement?.id === 'string' ? s.entitlement.id : null,
          customer: typeof s.entitlement?.customer === 'string' ? s.entitlement.customer : null,
          features: strings(s.features),
          warnings: strings(s.warnings),
        });
      } catch {
        /* not a server state: left out */
      }
    });
    await c.mqtt.subscribeAsync({ [topics.serverState]: { qos: 1 } });
    // licd's embedded broker refuses the cluster's topics (a lone box): that is not an error here.
    await c.mqtt.subscribeAsync({ [clusterTopics.serverStateWildcard]: { qos: 1 } }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, waitMs));
  } finally {
    await c.close({ checkin: false }).catch(() => undefined);
  }
  const found = [...seen.values()].sort((x, y) => (x.server ?? '').localeCompare(y.server ?? ''));
  const broker = flag(a, 'broker')!;
  if (json(a)) outJson({ servers: found });
  else if (found.length === 0) err(`licctl: the broker at ${broker} carries no licd server state (licd/v1/server/state, licd/v1/s/+/server/state) within ${waitMs / 1000} s: is licd connected to it?`);
  else {
    out(`${'SERVER'.padEnd(16)} ${'STATE'.padEnd(7)} ${'VERSION'.padEnd(8)} ${'DONGLE'.padEnd(20)} LICENSE`);
    for (const s of found) {
      const dongle = s.dongle.present ? `${s.dongle.serial ?? '?'}${s.dongle.emulated ? ' (emul.)' : ''}` : 'ABSENT';
      out(`${cell(s.server ?? '(lone box)').padEnd(16)} ${cell(s.state).padEnd(7)} ${cell(s.version).padEnd(8)} ${cell(dongle).padEnd(20)} ${cell(s.license ?? '-')}`);
    }
  }
  return found.length === 0 ? 1 : 0;
}

async function servers(a: ParsedArgs): Promise<number> {
  const w = flag(a, 'wait');
  let waitMs = browseWaitMs();
  if (w !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(w) || Number(w) < 0.1 || Number(w) > 60) throw new UsageError(`--wait must be seconds from 0.1 to 60, got ${JSON.stringify(w)}`);
    waitMs = Math.round(Number(w) * 1000);
  }
  if (flag(a, 'broker') !== undefined) return serversOnBroker(a, w === undefined ? 1000 : waitMs);
  const found = (await browse({ waitMs })).sort((x, y) => x.server.localeCompare(y.server));
  if (json(a)) outJson({ servers: found });
  else if (found.length === 0) err(`licctl: no licd box answered on this network (mDNS, _licd._tcp) within ${waitMs / 1000} s: is the box on this LAN, with discovery on (its "discovery" setting), and UDP 5353 open between here and there?`);
  else {
    out(`${'SERVER'.padEnd(20)} ${'BROKERS'.padEnd(48)} VERSION  TLS FINGERPRINT`);
    for (const s of found) out(`${cell(s.server).padEnd(20)} ${cell(s.urls.join(',')).padEnd(48)} ${cell(s.version ?? '-').padEnd(8)} ${cell(s.fingerprint ?? '-')}`);
    out('A fingerprint found this way is not trusted by itself: compare it with the box (its console) before pinning it with --fingerprint.');
  }
  return found.length === 0 ? 1 : 0;
}

export const serversCommands: Command[] = [
  {
    path: 'servers',
    section: 'machine',
    synopsis: 'servers [--wait S] [--broker URL]',
    summary: 'the licd boxes on this network, found by mDNS (_licd._tcp), or on a broker (--broker)',
    details:
      'Asks the LAN for licd boxes and lists every one that answers within --wait seconds (default 3, or LICD_DISCOVERY_WAIT in ms), with their broker addresses. licctl uses the same search when no broker is configured. With --broker, lists instead every server whose retained state that broker carries (a lone box, or every box of a cluster, also across subnets mDNS does not reach), online or offline, within --wait seconds (default 1). Exits 1 when none was found.',
    // The connection options (--broker, --user, --fingerprint...) apply with --broker only.
    connects: true,
    options: { wait: { type: 'string', arg: 'S', help: 'seconds to wait for answers (default 3; 1 with --broker)' } },
    json: '{servers: [{instance, server, urls, fingerprint, version, address}]}; with --broker {servers: [{server, state, version, since, dongle, license, customer, features, warnings}]}',
    examples: ['licctl servers', 'licctl servers --wait 5 --json', 'licctl servers --broker mqtt://licd-a.studio.lan:1883'],
    run: servers,
  },
];
