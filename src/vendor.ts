/** Vendor tooling: keys and entitlements (`licctl vendor keygen|issue`) and development material. */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LicdError } from './core/errors.ts';
import { readJsonFile } from './files.ts';
import { fromHex, toHex } from './core/bytes.ts';
import { parseEntitlementBody, type EntitlementBody } from './core/entitlement.ts';
import type { DongleIdentity, Ed25519, Random } from './core/ports.ts';
import { FORMATS, sealEnvelope, type SignedEnvelope } from './core/signed.ts';
import { parseReleaseBody, type ReleaseBody } from './core/integrity.ts';
import { parseFailoverBody, type FailoverBody } from './core/failover.ts';
import { activationEntitlementBody, selectSpec, verifyActivationRequest, type ActivationEntitlementBody, type ActivationRequest, type ActivationSpec } from './core/activation.ts';

export interface VendorKeyFile {
  kind: 'licd-vendor-key';
  development: boolean;
  /** 32-byte Ed25519 seed, hex. Keep this file secret. */
  seed: string;
  publicKey: string;
  created: string;
}

/** Writes a file atomically (temp, fsync, rename) with the given mode. */
export function writeFileAtomic(path: string, data: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
  chmodSync(path, mode);
}

/**
 * A vendor public key's fingerprint, as licd prints it at start and licctl asks users to compare:
 * SHA256: and the first 32 hex digits (128 bits) of SHA-256 over the 32 key bytes.
 */
export function vendorFingerprint(publicKey: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKey).digest('hex').slice(0, 32)}`;
}

export function generateVendorKey(ed: Ed25519, random: Random, development: boolean): VendorKeyFile {
  const seed = random.bytes(32);
  return { kind: 'licd-vendor-key', development, seed: toHex(seed), publicKey: toHex(ed.publicKey(seed)), created: new Date().toISOString() };
}

export function readVendorKey(path: string): VendorKeyFile {
  const v = readJsonFile(path, 'the vendor key', { fix: 'give the file licctl vendor keygen wrote (--key FILE)' }) as VendorKeyFile | null;
  if (typeof v !== 'object' || v === null || v.kind !== 'licd-vendor-key' || typeof v.seed !== 'string' || !/^[0-9a-f]{64}$/.test(v.seed)) {
    throw new LicdError('CONFIG_INVALID', `the vendor key: ${path} is not a licd vendor key file (no "kind": "licd-vendor-key" with a 64-hex-digit "seed"); give the file licctl vendor keygen wrote (--key FILE)`, { file: path });
  }
  return v;
}

export function issueEntitlement(body: EntitlementBody, key: VendorKeyFile, ed: Ed25519): SignedEnvelope {
  parseEntitlementBody(body); // refuse to sign what the daemon would refuse to load
  return sealEnvelope(FORMATS.entitlement, body, fromHex(key.seed), ed);
}

/** A failover entitlement for a failover box (`licctl vendor failover`, docs/scale-out.md). */
export function issueFailover(body: FailoverBody, key: VendorKeyFile, ed: Ed25519): SignedEnvelope {
  parseFailoverBody(body); // refuse to sign what the daemon would refuse to load
  return sealEnvelope(FORMATS.failover, body, fromHex(key.seed), ed);
}

/** A vendor-signed quarantine release (`licctl vendor release-quarantine`, docs/tokens.md). */
export function issueQuarantineRelease(body: ReleaseBody, key: VendorKeyFile, ed: Ed25519): SignedEnvelope {
  parseReleaseBody(body); // refuse to sign what the daemon would refuse to read
  return sealEnvelope(FORMATS.quarantineRelease, body, fromHex(key.seed), ed);
}

/** The demo license of development mode: clearly marked, bound to the emulated dongle. */
export function demoEntitlementBody(dongle: DongleIdentity, now: number): EntitlementBody {
  const year = new Date(now + 365 * 86400_000).toISOString();
  return {
    id: `DEV-DEMO-${dongle.serial}`,
    issuedAt: new Date(now).toISOString(),
    customer: 'DEVELOPMENT ONLY - demo entitlement, not a license',
    development: true,
    dongle: { serial: dongle.serial, publicKey: toHex(dongle.publicKey), emulated: dongle.emulated },
    features: [
      { name: 'vray_render', product: 'V-Ray Render Node', version: '6.2', seats: 4, expires: year, type: 'render', borrow: { allowed: true, maxHours: 336 } },
      { name: 'vray_interface', product: 'V-Ray for Maya', version: '6.2', seats: 2, expires: year, type: 'interface', borrow: { allowed: true, maxHours: 336 } },
      { name: 'vray_distributed', product: 'V-Ray Distributed Rendering', version: '6.2', seats: 8, expires: year, type: 'distributed', borrow: { allowed: false, maxHours: 0 } },
      { name: 'nuke_i', product: 'Nuke Interactive', version: '15.1', seats: 1, expires: null, type: 'interface', borrow: { allowed: true, maxHours: 8760 } },
    ],
    // As V-Ray's wizard maps them: a workstation product needs an Interface license and a Render
    // license per machine, a render node only a Render license (docs/borrowing.md, "Products").
    products: [
      { id: 'vray_maya', name: 'V-Ray for Maya', licenses: [{ feature: 'vray_interface', count: 1 }, { feature: 'vray_render', count: 1 }] },
      { id: 'vray_render_node', name: 'V-Ray Render Node', licenses: [{ feature: 'vray_render', count: 1 }] },
      { id: 'vray_dr', name: 'V-Ray Distributed Rendering', licenses: [{ feature: 'vray_distributed', count: 1 }] },
      { id: 'nuke', name: 'Nuke Interactive', licenses: [{ feature: 'nuke_i', count: 1 }] },
    ],
  };
}

/** Loads or makes the development vendor key under the data directory. */
export function devVendorKey(path: string, ed: Ed25519, random: Random): VendorKeyFile {
  if (existsSync(path)) return readVendorKey(path);
  const key = generateVendorKey(ed, random, true);
  writeFileAtomic(path, JSON.stringify(key, null, 2) + '\n', 0o600);
  return key;
}

/**
 * The vendor's answer to an activation request (`licctl vendor activate`, `licctl vendor serve`,
 * docs/activation.md): checks that the dongle it names signed it, and signs an entitlement bound
 * to that dongle with the features of the spec that applies. A request from an emulated dongle
 * is refused unless the key is a development key or allowEmulated is set.
 */
export function issueActivationLicense(
  request: unknown,
  specs: { bySerial: ReadonlyMap<string, ActivationSpec>; fallback: ActivationSpec | null },
  key: VendorKeyFile,
  ed: Ed25519,
  o: { now: number; allowEmulated?: boolean },
): { license: SignedEnvelope; request: ActivationRequest; body: ActivationEntitlementBody } {
  const req = verifyActivationRequest(request, ed);
  if (req.dongle.emulated && !key.development && !o.allowEmulated) {
    throw new LicdError(
      'ACTIVATION_INVALID',
      `the request comes from an emulated dongle (${req.dongle.serial}); a production vendor key does not license emulated dongles. Use a hardware dongle, or --allow-emulated for a test`,
      { reason: 'emulated', serial: req.dongle.serial },
    );
  }
  const spec = selectSpec(specs, req.dongle.serial);
  const body = activationEntitlementBody(req, spec, { now: o.now, development: key.development });
  return { license: issueEntitlement(body, key, ed), request: req, body };
}
