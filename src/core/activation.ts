/**
 * Activation (docs/activation.md): the box asks the vendor for a license bound to its dongle, and
 * licenses replace each other at runtime, never by an older one. Pure: the dongle's signature,
 * time and randomness come in from the caller.
 *
 * The request is a signed envelope (src/core/signed.ts shape) whose signature is the DONGLE's,
 * over the dongle's signed bytes (src/core/trust.ts):
 *
 *     dongleSignedBytes("activation", body bytes, emulated)
 *
 * so the vendor knows the request was made with that dongle at hand, and cannot be replayed as a
 * delegation or any other dongle-signed document.
 */
import { LicdError } from './errors.ts';
import { fromBase64url, fromHex, toHex } from './bytes.ts';
import { LICENSE_TYPES, MAX_BORROW_HOURS, type Entitlement, type EntitlementBody } from './entitlement.ts';
import type { Ed25519 } from './ports.ts';
import { FORMATS, parseEnvelope, type SignedEnvelope } from './signed.ts';
import { dongleSignedBytes } from './trust.ts';
import { Fields, FEATURE_HELP, FEATURE_PATTERN } from './validate.ts';

/** The dongle SIGN domain of activation requests (not reserved by the firmware). */
export const ACTIVATION_DOMAIN = 'activation';

/** What the box says about the license it has, so the vendor issues a newer one. */
export interface LicenseOrder {
  id: string;
  /** ms since epoch. */
  issuedAt: number;
  /** The license's sequence (increasing per dongle); null for licenses issued without one. */
  sequence: number | null;
}

export interface ActivationRequestBody {
  dongle: { serial: string; publicKey: string; emulated: boolean };
  /** The dongle's monotonic counter when the request was made (decimal). */
  counter: string;
  box: { hostId: string; hostName: string };
  /** 16 random bytes, base64url: the license issued for this request echoes it. */
  nonce: string;
  createdAt: string;
  installed: { id: string; issuedAt: string; sequence: number | null } | null;
}

export interface ActivationRequest {
  dongle: { serial: string; publicKey: Uint8Array; emulated: boolean };
  counter: bigint;
  box: { hostId: string; hostName: string };
  nonce: string;
  createdAt: number;
  installed: LicenseOrder | null;
  envelope: SignedEnvelope;
}

export function activationRequestBody(o: {
  dongle: { serial: string; publicKey: Uint8Array; emulated: boolean };
  counter: bigint;
  box: { hostId: string; hostName: string };
  nonce: string;
  now: number;
  installed: LicenseOrder | null;
}): ActivationRequestBody {
  return {
    dongle: { serial: o.dongle.serial, publicKey: toHex(o.dongle.publicKey), emulated: o.dongle.emulated },
    counter: o.counter.toString(),
    box: { hostId: o.box.hostId, hostName: o.box.hostName.slice(0, 64) },
    nonce: o.nonce,
    createdAt: new Date(o.now).toISOString(),
    installed: o.installed ? { id: o.installed.id, issuedAt: new Date(o.installed.issuedAt).toISOString(), sequence: o.installed.sequence } : null,
  };
}

function time(f: Fields, field: string): number {
  const s = f.string(field, { max: 40 });
  const t = Date.parse(s);
  if (!Number.isFinite(t)) f.fail(field, `must be an ISO 8601 time, got ${JSON.stringify(s)}`);
  return t;
}

/**
 * Reads an activation request and checks that the dongle it names signed it. It proves the
 * request was made with that dongle; whether the vendor licenses that dongle is the vendor's call.
 */
export function verifyActivationRequest(value: unknown, ed: Ed25519): ActivationRequest {
  const { body, sig, json } = parseEnvelope(value, FORMATS.activationRequest, 'ACTIVATION_INVALID');
  const f = Fields.of(json, 'activation request', 'ACTIVATION_INVALID');
  const d = f.object('dongle');
  const publicKey = fromHex(d.string('publicKey', { max: 64, pattern: /^[0-9a-f]{64}$/, patternHelp: '64 lowercase hex digits' }));
  const emulated = d.bool('emulated');
  const serial = d.string('serial', { max: 64 });
  const counterText = f.string('counter', { max: 20, pattern: /^[0-9]{1,20}$/, patternHelp: 'a decimal number' });
  const box = f.object('box');
  const nonce = f.string('nonce', { max: 64, pattern: /^[A-Za-z0-9_-]{16,64}$/, patternHelp: 'base64url' });
  const createdAt = time(f, 'createdAt');
  let installed: LicenseOrder | null = null;
  const inst = f.raw('installed');
  if (inst !== null && inst !== undefined) {
    const i = f.object('installed');
    const seq = i.raw('sequence');
    installed = { id: i.string('id', { max: 128 }), issuedAt: time(i, 'issuedAt'), sequence: seq === null || seq === undefined ? null : i.int('sequence', { min: 0 }) };
  }
  if (!ed.verify(publicKey, dongleSignedBytes(ACTIVATION_DOMAIN, body, emulated), sig)) {
    throw new LicdError(
      'ACTIVATION_INVALID',
      `the activation request is not signed by the dongle it names (serial ${serial}): it was altered, or made without that dongle. Make a new one on the box with licctl activate request --out FILE`,
      { reason: 'bad-signature', serial },
    );
  }
  return {
    dongle: { serial, publicKey, emulated },
    counter: BigInt(counterText),
    box: { hostId: box.string('hostId', { max: 128 }), hostName: box.string('hostName', { max: 64 }) },
    nonce,
    createdAt,
    installed,
    envelope: value as SignedEnvelope,
  };
}

// ---- what the vendor issues ------------------------------------------------------------------

/** The license a vendor grants a dongle: features as in an entitlement, expiry absolute or in days. */
export interface ActivationSpec {
  customer: string;
  features: Array<{
    name: string;
    version: string;
    seats: number;
    /** ISO 8601, or null for permanent; or `days` from the issue time. */
    expires?: string | null;
    days?: number;
    type: (typeof LICENSE_TYPES)[number];
    product?: string;
    borrow: { allowed: boolean; maxHours: number };
  }>;
}

/** Checks a spec's shape; the features are checked again as an entitlement when issued. */
export function parseActivationSpec(json: unknown, where: string): ActivationSpec {
  const f = Fields.of(json, where, 'CONFIG_INVALID');
  const customer = f.string('customer', { max: 256 });
  const list = f.array('features', { max: 1000 });
  if (list.length === 0) f.fail('features', 'must list at least one feature');
  const features = list.map((raw, i) => {
    const x = f.element(i, raw, 'features');
    const name = x.string('name', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    const hasDays = x.has('days');
    if (hasDays && x.raw('expires') !== undefined) x.fail('days', 'and expires are both given; give one (days from the issue time, or expires as an ISO time or null)');
    if (!hasDays && x.raw('expires') === undefined) x.fail('expires', 'is missing: give an ISO 8601 time, null for a permanent license, or days (from the issue time)');
    const b = x.object('borrow');
    const allowed = b.bool('allowed');
    return {
      name,
      version: x.string('version', { max: 32 }),
      seats: x.int('seats', { min: 1, max: 1_000_000 }),
      ...(hasDays ? { days: x.int('days', { min: 1, max: 36_500 }) } : { expires: x.raw('expires') === null ? null : x.string('expires', { max: 40 }) }),
      type: x.oneOf('type', LICENSE_TYPES),
      ...(x.has('product') ? { product: x.string('product', { max: 128 }) } : {}),
      borrow: { allowed, maxHours: b.int('maxHours', { min: allowed ? 1 : 0, max: MAX_BORROW_HOURS }) },
    };
  });
  return { customer, features };
}

/** The body of an activation license: an entitlement body plus its sequence and the request it answers. */
export type ActivationEntitlementBody = EntitlementBody & { sequence: number; activation: { nonce: string; counter: string; hostName: string } };

/**
 * The entitlement the vendor signs for a verified request: bound to the dongle that signed it,
 * features from the spec, issued now. Its issue time and sequence are above those of the license
 * the request says is installed, so the box takes it as newer even if the vendor's clock is behind.
 */
export function activationEntitlementBody(req: ActivationRequest, spec: ActivationSpec, o: { now: number; development: boolean }): ActivationEntitlementBody {
  const issuedAt = Math.max(o.now, (req.installed?.issuedAt ?? 0) + 1);
  const sequence = Math.max(o.now, (req.installed?.sequence ?? 0) + 1);
  return {
    id: `ACT-${req.dongle.serial}-${sequence}`,
    issuedAt: new Date(issuedAt).toISOString(),
    customer: spec.customer,
    ...(o.development ? { development: true } : {}),
    dongle: { serial: req.dongle.serial, publicKey: toHex(req.dongle.publicKey), emulated: req.dongle.emulated },
    features: spec.features.map((x) => ({
      name: x.name,
      version: x.version,
      seats: x.seats,
      expires: x.days !== undefined ? new Date(issuedAt + x.days * 86400_000).toISOString() : (x.expires ?? null),
      type: x.type,
      ...(x.product !== undefined ? { product: x.product } : {}),
      borrow: { ...x.borrow },
    })),
    sequence,
    activation: { nonce: req.nonce, counter: req.counter.toString(), hostName: req.box.hostName },
  };
}

/** Which spec applies to a dongle: its own (by serial), else the default; none: refused. */
export function selectSpec(specs: { bySerial: ReadonlyMap<string, ActivationSpec>; fallback: ActivationSpec | null }, serial: string): ActivationSpec {
  const s = specs.bySerial.get(serial) ?? specs.fallback;
  if (!s) {
    throw new LicdError('ACTIVATION_INVALID', `no license is on record for dongle ${serial}: the vendor has no spec for this serial and no default; ask the vendor to add one`, {
      reason: 'unknown-dongle',
      serial,
    });
  }
  return s;
}

// ---- anti-downgrade --------------------------------------------------------------------------

/** The order of a verified entitlement: id, issue time, and its sequence if the body has one. */
export function licenseOrderOf(e: Entitlement): LicenseOrder {
  let sequence: number | null = null;
  try {
    const env = e.envelope as { body?: string };
    const body = JSON.parse(new TextDecoder().decode(fromBase64url(String(env.body)))) as { sequence?: unknown };
    if (typeof body.sequence === 'number' && Number.isSafeInteger(body.sequence) && body.sequence >= 0) sequence = body.sequence;
  } catch {
    sequence = null;
  }
  return { id: e.id, issuedAt: e.issuedAt, sequence };
}

/** The nonce of the activation request a license answers, if it says. */
export function activationNonceOf(e: Entitlement): string | null {
  try {
    const env = e.envelope as { body?: string };
    const body = JSON.parse(new TextDecoder().decode(fromBase64url(String(env.body)))) as { activation?: { nonce?: unknown } };
    return typeof body.activation?.nonce === 'string' ? body.activation.nonce : null;
  } catch {
    return null;
  }
}

export function describeOrder(o: LicenseOrder): string {
  return `${o.id} issued ${new Date(o.issuedAt).toISOString()}${o.sequence !== null ? `, sequence ${o.sequence}` : ''}`;
}

/**
 * Whether `candidate` may replace `installed`: 'same' when it is the installed license again,
 * 'newer' when it is issued later (and, where both have one, with a higher sequence). Anything
 * else is an older license, refused with LICENSE_DOWNGRADE.
 */
export function judgeLicense(candidate: LicenseOrder & { body?: string }, installed: (LicenseOrder & { body?: string }) | null): 'newer' | 'same' {
  if (!installed) return 'newer';
  const same = candidate.id === installed.id && candidate.issuedAt === installed.issuedAt && candidate.sequence === installed.sequence;
  if (same && (candidate.body === undefined || installed.body === undefined || candidate.body === installed.body)) return 'same';
  const older =
    candidate.issuedAt < installed.issuedAt ||
    (candidate.sequence !== null && installed.sequence !== null && candidate.sequence <= installed.sequence) ||
    (candidate.issuedAt === installed.issuedAt && (candidate.sequence === null || installed.sequence === null));
  if (older) {
    throw new LicdError(
      'LICENSE_DOWNGRADE',
      `license ${describeOrder(candidate)} is not newer than the one installed (${describeOrder(installed)}); licd never goes back to an older license. Import the newest license the vendor issued, or ask the vendor for a new one (licctl activate online, or licctl activate request)`,
      {
        reason: 'older',
        candidate: { id: candidate.id, issuedAt: new Date(candidate.issuedAt).toISOString(), sequence: candidate.sequence },
        installed: { id: installed.id, issuedAt: new Date(installed.issuedAt).toISOString(), sequence: installed.sequence },
      },
    );
  }
  return 'newer';
}

/** The stored record of the installed license (meta key META_LICENSE, docs/storage.md). */
export const META_LICENSE = 'license';

export interface LicenseRecord {
  id: string;
  issuedAt: number;
  sequence: number | null;
  /** The envelope's body (base64url): tells the same license from a different one with the same id. */
  body: string;
  /** The dongle it is bound to; the install stepped that dongle's counter in the same batch. */
  dongleSerial: string;
  installedAt: number;
  /** The installed envelope itself, so an older file put back while licd was stopped is refused and this one served. */
  envelope: unknown;
}

export function parseLicenseRecord(v: unknown): LicenseRecord | null {
  if (!v || typeof v !== 'object') return null;
  const r = v as Partial<LicenseRecord>;
  if (typeof r.id !== 'string' || typeof r.issuedAt !== 'number' || typeof r.body !== 'string') return null;
  return {
    id: r.id,
    issuedAt: r.issuedAt,
    sequence: typeof r.sequence === 'number' ? r.sequence : null,
    body: r.body,
    dongleSerial: typeof r.dongleSerial === 'string' ? r.dongleSerial : '',
    installedAt: typeof r.installedAt === 'number' ? r.installedAt : 0,
    envelope: r.envelope ?? null,
  };
}

export function bodyOf(envelope: unknown): string {
  return String((envelope as { body?: unknown } | null)?.body ?? '');
}
