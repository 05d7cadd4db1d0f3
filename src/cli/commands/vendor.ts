/** License issuers: vendor keys, entitlements and quarantine releases. */
import { existsSync } from 'node:fs';
import type { EntitlementBody, LicenseType } from '../../core/entitlement.ts';
import { nodeEd25519, systemRandom } from '../../crypto/ed25519.ts';
import { readJsonFile } from '../../files.ts';
import { generateVendorKey, issueEntitlement, issueQuarantineRelease, readVendorKey, writeFileAtomic } from '../../vendor.ts';
import { flag, has, intFlag, UsageError, type ParsedArgs } from '../args.ts';
import { checkOutFile } from '../borrow-cmds.ts';
import type { Command } from '../command.ts';
import { json, out, outJson, timeOf } from '../context.ts';

function parseFeatureSpec(spec: string): EntitlementBody['features'][number] {
  const kv = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--feature ${JSON.stringify(spec)}: each part must be key=value`);
    kv.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const need = (k: string) => {
    const v = kv.get(k);
    if (!v) throw new UsageError(`--feature ${JSON.stringify(spec)} needs ${k}=...`);
    return v;
  };
  const borrow = kv.get('borrow');
  const expires = kv.get('expires');
  if (expires && (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/.test(expires) || Number.isNaN(new Date(expires).getTime()))) {
    throw new UsageError(`--feature ${JSON.stringify(spec)}: expires=${JSON.stringify(expires)} is not a date; give it as YYYY-MM-DD (expires=2027-12-31) or an ISO time (2027-12-31T23:59:59Z)`);
  }
  return {
    name: need('name'),
    version: need('version'),
    seats: Number(need('seats')),
    type: need('type') as LicenseType,
    expires: expires ? new Date(expires).toISOString() : null,
    ...(kv.get('product') ? { product: kv.get('product')! } : {}),
    borrow: borrow && borrow !== '0' ? { allowed: true, maxHours: Number(borrow) } : { allowed: false, maxHours: 0 },
  };
}

function keygen(a: ParsedArgs): number {
  const file = flag(a, 'out')!;
  if (existsSync(file)) throw new UsageError(`${file} exists; refusing to overwrite a vendor key`);
  checkOutFile(file);
  const key = generateVendorKey(nodeEd25519(), systemRandom, has(a, 'dev'));
  writeFileAtomic(file, JSON.stringify(key, null, 2) + '\n', 0o600);
  if (json(a)) outJson({ file, publicKey: key.publicKey, development: has(a, 'dev') });
  else out(`vendor key written to ${file} (keep it secret)\npublic key: ${key.publicKey}`);
  return 0;
}

function issue(a: ParsedArgs): number {
  const file = flag(a, 'out')!;
  checkOutFile(file);
  const key = readVendorKey(flag(a, 'key')!);
  let body: EntitlementBody;
  const spec = flag(a, 'spec');
  if (spec) {
    for (const o of ['dongle-serial', 'dongle-key', 'customer', 'feature', 'id', 'emulated']) if (has(a, o)) throw new UsageError(`licctl vendor issue: --${o} and --spec do not go together: the spec file holds the whole body`);
    body = readJsonFile(spec, 'the entitlement spec (--spec)', { fix: 'give a JSON entitlement body with id, issuedAt, customer, dongle and features' }) as EntitlementBody;
  } else {
    const serial = flag(a, 'dongle-serial');
    const dkey = flag(a, 'dongle-key');
    const customer = flag(a, 'customer');
    const features = a.flags.get('feature') ?? [];
    if (!serial || !dkey || !customer || features.length === 0) throw new UsageError('licctl vendor issue needs --dongle-serial, --dongle-key, --customer and at least one --feature (or --spec FILE)');
    body = {
      id: flag(a, 'id') ?? `ENT-${Date.now().toString(36).toUpperCase()}`,
      issuedAt: new Date().toISOString(),
      customer,
      ...(key.development ? { development: true } : {}),
      dongle: { serial, publicKey: dkey.toLowerCase(), emulated: has(a, 'emulated') },
      features: features.map(parseFeatureSpec),
    };
  }
  const env = issueEntitlement(body, key, nodeEd25519());
  writeFileAtomic(file, JSON.stringify(env, null, 2) + '\n');
  if (json(a)) outJson({ file, id: body.id, customer: body.customer, dongle: body.dongle.serial, features: body.features.map((f) => ({ name: f.name, seats: f.seats })) });
  else out(`entitlement ${body.id} for ${body.customer}, dongle ${body.dongle.serial}: ${body.features.map((f) => `${f.name} x${f.seats}`).join(', ')}\nwritten to ${file}`);
  return 0;
}

function releaseQuarantine(a: ParsedArgs): number {
  const file = flag(a, 'out')!;
  const serial = flag(a, 'serial')!;
  const counter = flag(a, 'counter')!;
  if (!/^(0|[1-9][0-9]{0,19})$/.test(counter)) throw new UsageError(`--counter must be the decimal counter value licctl status shows, got ${JSON.stringify(counter)}`);
  checkOutFile(file);
  const days = intFlag(a, 'days', 1, 365) ?? 7;
  const features = a.flags.get('feature') ?? [];
  const now = Date.now();
  const body = {
    dongleSerial: serial,
    counter,
    features: features.length > 0 ? features : null,
    issuedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + days * 86400_000).toISOString(),
    nonce: Buffer.from(systemRandom.bytes(12)).toString('base64url'),
  };
  const env = issueQuarantineRelease(body, readVendorKey(flag(a, 'key')!), nodeEd25519());
  writeFileAtomic(file, JSON.stringify(env, null, 2) + '\n');
  if (json(a)) outJson({ file, dongleSerial: serial, counter, features: body.features, expiresAt: body.expiresAt });
  else out(`quarantine release for dongle ${serial} at counter ${counter} (${features.length ? features.join(', ') : 'every feature'}), valid until ${timeOf(a)(body.expiresAt)}\nwritten to ${file}; the admin runs: licctl quarantine release ${file}`);
  return 0;
}

/** Options a command cannot run without: refused up front, naming every one missing. */
export function requireOptions(a: ParsedArgs, path: string, names: string[]): void {
  const missing = names.filter((n) => !has(a, n));
  if (missing.length > 0) throw new UsageError(`licctl ${path} needs ${missing.map((n) => `--${n}`).join(', ')}; licctl ${path} --help says more`);
}

const KEY = { type: 'string', arg: 'VENDOR.key', help: 'the vendor key file (licctl vendor keygen made it)' } as const;
const OUT = { type: 'string', arg: 'FILE', help: 'the file to write (its directory must exist)' } as const;

export const vendorCommands: Command[] = [
  {
    path: 'vendor keygen',
    section: 'vendor',
    synopsis: 'vendor keygen --out FILE [--dev]',
    summary: 'make an Ed25519 vendor key (never overwrites a file)',
    options: { out: OUT, dev: { type: 'boolean', help: 'mark it a development key (licd then shows DEVELOPMENT MATERIAL)' } },
    json: '{file, publicKey, development}',
    examples: ['licctl vendor keygen --out vendor.key'],
    run: (a) => {
      requireOptions(a, 'vendor keygen', ['out']);
      return keygen(a);
    },
  },
  {
    path: 'vendor issue',
    section: 'vendor',
    synopsis: 'vendor issue --key FILE (--spec BODY.json | --dongle-serial S --dongle-key HEX --customer NAME --feature SPEC ...) --out FILE',
    summary: 'sign an entitlement (license) for one dongle',
    details: 'SPEC: name=vray_render,version=6.2,seats=4,type=render[,expires=2027-12-31][,borrow=336][,product=TEXT]\n(type: interface, render or distributed; borrow: the most hours a seat may be borrowed, 0 or absent: not at all)\n--spec gives the whole entitlement body as JSON instead (docs/tokens.md).',
    options: {
      key: KEY,
      out: OUT,
      spec: { type: 'string', arg: 'BODY.json', help: 'the whole entitlement body as JSON' },
      'dongle-serial': { type: 'string', arg: 'S', help: "the dongle's serial (licctl dongle info shows it)" },
      'dongle-key': { type: 'string', arg: 'HEX', help: "the dongle's public key, 64 hex digits" },
      emulated: { type: 'boolean', help: 'the dongle is an emulated one (development)' },
      customer: { type: 'string', arg: 'NAME', help: 'the customer the license is for' },
      feature: { type: 'string', multiple: true, arg: 'SPEC', help: 'a licensed feature (repeat for several)' },
      id: { type: 'string', arg: 'ID', help: 'the entitlement id (default ENT-<time>)' },
    },
    json: '{file, id, customer, dongle, features: [{name, seats}]}',
    examples: ['licctl vendor issue --key vendor.key --dongle-serial D-0042 --dongle-key 3f...a9 --customer "Studio A" --feature name=vray_render,version=6.2,seats=4,type=render,borrow=336 --out studio-a.lic'],
    run: (a) => {
      requireOptions(a, 'vendor issue', ['key', 'out']);
      return issue(a);
    },
  },
  {
    path: 'vendor release-quarantine',
    section: 'vendor',
    synopsis: 'vendor release-quarantine --key FILE --serial S --counter N [--feature F ...] [--days D] --out FILE',
    summary: "a signed release of the quarantine set at dongle S's counter N (licctl status shows both)",
    options: {
      key: KEY,
      out: OUT,
      serial: { type: 'string', arg: 'S', help: "the dongle's serial" },
      counter: { type: 'string', arg: 'N', help: 'the counter value the quarantine was set at' },
      feature: { type: 'string', multiple: true, arg: 'F', help: 'release only this feature (repeat; default every feature)' },
      days: { type: 'string', arg: 'D', help: 'days the release is valid for (default 7)' },
    },
    json: '{file, dongleSerial, counter, features, expiresAt}',
    examples: ['licctl vendor release-quarantine --key vendor.key --serial D-0042 --counter 1187 --out release.json'],
    run: (a) => {
      requireOptions(a, 'vendor release-quarantine', ['key', 'serial', 'counter', 'out']);
      return releaseQuarantine(a);
    },
  },
];
