/** Admin commands on leases, the clock and quarantine (each needs an admin identity). */
import type { QuarantineReleaseResult, RevokeResult } from '../../core/protocol.ts';
import { readJsonFile } from '../../files.ts';
import { flag, type ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { adminRequest, cell, json, out, outJson, timeOf } from '../context.ts';
import { parseDuration } from '../holding.ts';
import { UsageError } from '../args.ts';

const ADMIN = 'licctl ... --user admin --password-file admin.password';

async function revoke(a: ParsedArgs): Promise<number> {
  const id = a.positional[2]!;
  const blockText = flag(a, 'block');
  const block = blockText === undefined ? undefined : parseDuration(blockText, '--block');
  const r = await adminRequest<RevokeResult>(a, 'lease.revoke', { lease: id, ...(block ? { block } : {}) });
  if (json(a)) outJson({ lease: id, ...r });
  else {
    const who = `${cell(r.revoked.user)}@${cell(r.revoked.host)}`;
    out(`revoked lease ${cell(id)} of ${cell(r.revoked.feature)} held by ${who} (the holder is told)${r.blockedUntil ? `; ${who} is blocked from ${cell(r.revoked.feature)} until ${timeOf(a)(r.blockedUntil)}` : ''}`);
  }
  return 0;
}

async function unblock(a: ParsedArgs): Promise<number> {
  const [feature, who] = [a.positional[2]!, a.positional[3]!];
  const at = who.lastIndexOf('@');
  if (at <= 0 || at === who.length - 1) throw new UsageError(`licctl lease unblock: ${JSON.stringify(who)} is not USER@HOST (licctl status lists the blocks)`);
  const r = await adminRequest<Record<string, unknown>>(a, 'lease.unblock', { feature, user: who.slice(0, at), host: who.slice(at + 1) });
  if (json(a)) outJson({ feature, user: who.slice(0, at), host: who.slice(at + 1), ...r });
  else out(`unblocked ${who} from ${feature}`);
  return 0;
}

async function clockAccept(a: ParsedArgs): Promise<number> {
  const r = await adminRequest<{ highWater: string; was: string; released?: string[] }>(a, 'clock.accept', {});
  if (json(a)) {
    outJson(r);
    return 0;
  }
  const time = timeOf(a);
  out(`clock accepted: the high-water mark is now ${time(r.highWater)} (it was ${time(r.was)})`);
  if (r.released && r.released.length > 0) out(`${r.released.length} borrow(s) kept only for a gap in time at start have ended: ${r.released.join(', ')}`);
  return 0;
}

async function quarantineRelease(a: ParsedArgs): Promise<number> {
  const file = a.positional[2]!;
  const release = readJsonFile(file, 'the quarantine release', { code: 'RELEASE_INVALID', fix: 'give the file licctl vendor release-quarantine wrote' });
  const r = await adminRequest<QuarantineReleaseResult>(a, 'quarantine.release', { release });
  if (json(a)) {
    outJson(r);
    return 0;
  }
  const time = timeOf(a);
  out(`quarantine released for ${r.released.map((x) => `${x.feature} (${x.seats} seats)`).join(', ')}${r.remaining.length ? `; still held: ${r.remaining.map((x) => `${x.feature} ${x.seats} until ${time(x.until)}`).join(', ')}` : '; no seats are held any more'}`);
  return 0;
}

export const adminCommands: Command[] = [
  {
    path: 'lease revoke',
    section: 'admin',
    synopsis: 'lease revoke LEASE_ID [--block DURATION]',
    summary: 'take a lease back (its holder is told); --block also refuses that user@host the feature for a while',
    connects: true,
    args: { min: 1, max: 1, names: 'a LEASE_ID (licctl status shows them in brackets)' },
    options: { block: { type: 'string', arg: 'DURATION', help: 'refuse the holder\'s user@host this feature for 30m, 2h, 1d ... (licctl lease unblock lifts it)' } },
    json: '{lease, revoked: {feature, user, host, ...}, blockedUntil?}',
    examples: ['licctl lease revoke L-3KX9F2 --block 2h --user admin --password-file admin.password'],
    run: revoke,
  },
  {
    path: 'lease unblock',
    section: 'admin',
    synopsis: 'lease unblock FEATURE USER@HOST',
    summary: 'lift a --block before its end',
    connects: true,
    args: { min: 2, max: 2, names: 'FEATURE and USER@HOST' },
    json: '{feature, user, host}',
    examples: ['licctl lease unblock vray_render anna@ws-12 --user admin --password-file admin.password'],
    run: unblock,
  },
  {
    path: 'clock accept',
    section: 'admin',
    synopsis: 'clock accept',
    summary: "vouch for the server's clock after a set-back warning",
    connects: true,
    json: '{highWater, was, released?}',
    examples: [ADMIN.replace('...', 'clock accept')],
    run: clockAccept,
  },
  {
    path: 'quarantine release',
    section: 'admin',
    synopsis: 'quarantine release RELEASE.json',
    summary: 'lift a quarantine with a vendor-signed release (licctl vendor release-quarantine makes it)',
    connects: true,
    args: { min: 1, max: 1, names: 'the RELEASE.json file' },
    json: '{released: [{feature, seats}], remaining: [{feature, seats, until}]}',
    examples: [ADMIN.replace('...', 'quarantine release release.json')],
    run: quarantineRelease,
  },
];
