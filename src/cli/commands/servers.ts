/** The licd boxes of this network, as mDNS finds them (docs/scale-out.md, "Discovery"). */
import { browse } from '../../discovery/mdns.ts';
import { browseWaitMs } from '../../sdk/discovery.ts';
import { UsageError, type ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { flag } from '../args.ts';
import { cell, err, json, out, outJson } from '../context.ts';

async function servers(a: ParsedArgs): Promise<number> {
  const w = flag(a, 'wait');
  let waitMs = browseWaitMs();
  if (w !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(w) || Number(w) < 0.1 || Number(w) > 60) throw new UsageError(`--wait must be seconds from 0.1 to 60, got ${JSON.stringify(w)}`);
    waitMs = Math.round(Number(w) * 1000);
  }
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
    synopsis: 'servers [--wait S]',
    summary: 'the licd boxes on this network, found by mDNS (_licd._tcp), with their broker addresses',
    details: 'Asks the LAN for licd boxes and lists every one that answers within --wait seconds (default 3, or LICD_DISCOVERY_WAIT in ms). Exits 1 when none answered. licctl uses the same search when no broker is configured.',
    options: { wait: { type: 'string', arg: 'S', help: 'seconds to wait for answers (default 3)' } },
    json: '{servers: [{instance, server, urls, fingerprint, version, address}]}',
    examples: ['licctl servers', 'licctl servers --wait 5 --json'],
    run: servers,
  },
];
