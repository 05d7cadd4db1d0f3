/** The vendor keys this machine pinned per server (like ssh's known_hosts): list them, remove one. */
import { listPinnedVendorKeys, removePinnedVendorKey } from '../../sdk/known-vendors.ts';
import { normaliseServer } from '../holding.ts';
import type { ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { json, out, outJson, timeOf } from '../context.ts';

function list(a: ParsedArgs): number {
  const { file, pins } = listPinnedVendorKeys();
  if (json(a)) {
    outJson({ file, pins });
    return 0;
  }
  out(`vendor keys pinned on this machine (${file}):`);
  if (pins.length === 0) out('  none');
  const time = timeOf(a);
  for (const p of pins) out(`  ${p.server.padEnd(32)} ${p.fingerprint}  pinned ${p.pinnedAt ? time(p.pinnedAt) : '-'}`);
  return 0;
}

function remove(a: ParsedArgs): number {
  const which = a.positional[2]!;
  const r = removePinnedVendorKey(which, normaliseServer);
  if (json(a)) outJson(r);
  else if (r.removed.length === 0) {
    out(`no vendor key pinned for ${which} (licctl trust list shows the pins)`);
    return 1;
  } else for (const p of r.removed) out(`removed the vendor key ${p.fingerprint} pinned for ${p.server} from ${r.file}; the next borrow from it asks again`);
  return r.removed.length === 0 ? 1 : 0;
}

export const trustCommands: Command[] = [
  {
    path: 'trust list',
    section: 'machine',
    synopsis: 'trust list',
    summary: 'the vendor keys pinned on this machine, per server',
    json: '{file, pins: [{server, fingerprint, publicKey, pinnedAt}]}',
    examples: ['licctl trust list'],
    run: list,
  },
  {
    path: 'trust remove',
    section: 'machine',
    synopsis: 'trust remove SERVER|FINGERPRINT',
    summary: "forget a pinned vendor key (after the vendor confirmed a new one); the next borrow asks again",
    args: { min: 1, max: 1, names: 'a SERVER (mqtt://HOST:PORT) or a FINGERPRINT' },
    json: '{file, removed: [{server, fingerprint, publicKey, pinnedAt}]}',
    examples: ['licctl trust remove mqtt://licd.studio.lan:1883', 'licctl trust remove SHA256:9f86d081884c7d659a2feaa0c55ad015'],
    run: remove,
  },
];
