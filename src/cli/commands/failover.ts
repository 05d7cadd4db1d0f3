/** Failover servers (docs/scale-out.md, "Failover server"): the vendor signs a failover entitlement. */
import type { FailoverBody } from '../../core/failover.ts';
import { nodeEd25519 } from '../../crypto/ed25519.ts';
import { readJsonFile } from '../../files.ts';
import { issueFailover, readVendorKey, writeFileAtomic } from '../../vendor.ts';
import { flag, type ParsedArgs } from '../args.ts';
import { checkOutFile } from '../borrow-cmds.ts';
import type { Command } from '../command.ts';
import { json, out, outJson } from '../context.ts';
import { requireOptions } from './vendor.ts';

function issue(a: ParsedArgs): number {
  const file = flag(a, 'out')!;
  checkOutFile(file);
  const key = readVendorKey(flag(a, 'key')!);
  const body = readJsonFile(flag(a, 'spec')!, 'the failover entitlement body (--spec)', {
    code: 'ENTITLEMENT_INVALID',
    fix: 'give a JSON body with id, issuedAt, customer, dongle (the failover box\'s), primary {server, dongle?, license?}, afterSeconds, maxHoursPerMonth and features (docs/scale-out.md)',
  }) as FailoverBody;
  const env = issueFailover(body, key, nodeEd25519());
  writeFileAtomic(file, JSON.stringify(env, null, 2) + '\n');
  const features = body.features.map((f) => ({ name: f.name, seats: f.seats }));
  if (json(a)) outJson({ file, id: body.id, dongle: body.dongle.serial, primary: body.primary.server, afterSeconds: body.afterSeconds, maxHoursPerMonth: body.maxHoursPerMonth, features });
  else
    out(
      `failover entitlement ${body.id} for dongle ${body.dongle.serial}: serves ${body.primary.server}'s ${features.map((f) => `${f.name} x${f.seats}`).join(', ')} ` +
        `after ${body.afterSeconds} s offline, at most ${body.maxHoursPerMonth} h a month\nwritten to ${file}; the failover box names it in failover.entitlementFile`,
    );
  return 0;
}

export const failoverCommands: Command[] = [
  {
    path: 'vendor failover',
    section: 'vendor',
    synopsis: 'vendor failover --key FILE --spec BODY.json --out FILE',
    summary: "sign a failover entitlement: a box may serve another box's seats while that box is offline",
    details:
      'BODY.json: {"id", "issuedAt", "customer", "dongle": {serial, publicKey, emulated} of the failover box, "primary": {"server": the primary\'s cluster.serverId, "dongle"?: its serial, "license"?: its license id}, "afterSeconds": the delay, "maxHoursPerMonth", "features": [{name, version, seats, expires, type}] of the primary} (docs/scale-out.md).',
    options: {
      key: { type: 'string', arg: 'VENDOR.key', help: 'the vendor key file (licctl vendor keygen made it)' },
      spec: { type: 'string', arg: 'BODY.json', help: 'the failover entitlement body as JSON' },
      out: { type: 'string', arg: 'FILE', help: 'the file to write (its directory must exist)' },
    },
    json: '{file, id, dongle, primary, afterSeconds, maxHoursPerMonth, features: [{name, seats}]}',
    examples: ['licctl vendor failover --key vendor.key --spec box-b-failover.json --out box-b-failover.lic'],
    run: (a) => {
      requireOptions(a, 'vendor failover', ['key', 'spec', 'out']);
      return issue(a);
    },
  },
];
