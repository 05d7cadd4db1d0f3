import { LicdError } from './errors.ts';
import { equalBytes, fromHex, toHex } from './bytes.ts';
import type { Ed25519 } from './ports.ts';
import type { ProductView } from './protocol.ts';
import { FORMATS, verifyEnvelope } from './signed.ts';
import { Fields, FEATURE_HELP, FEATURE_PATTERN, VERSION_PATTERN } from './validate.ts';

export const LICENSE_TYPES = ['interface', 'render', 'distributed'] as const;
export type LicenseType = (typeof LICENSE_TYPES)[number];

export const MAX_BORROW_HOURS = 8760;

export interface FeatureLicense {
  name: string;
  version: string;
  seats: number;
  /** ms since epoch, or null for a permanent license. */
  expires: number | null;
  type: LicenseType;
  /** Product name shown to people (the V-Ray wizard's "Product"). */
  product: string;
  borrow: { allowed: boolean; maxHours: number };
}

/** One license a product needs: `count` seats of `feature` per machine (its type is the feature's). */
export interface ProductLicense {
  feature: string;
  count: number;
}

/**
 * A product as people choose it (V-Ray's wizard: "V-Ray for Modo", "V-Ray Render Node"): the
 * licenses, by feature, one machine running it needs. Absent from an entitlement, each feature is
 * its own product (id = the feature name, name = its `product`, one seat of it).
 */
export interface Product {
  id: string;
  name: string;
  licenses: ProductLicense[];
}

export interface DongleBinding {
  serial: string;
  publicKey: Uint8Array;
  emulated: boolean;
}

export interface Entitlement {
  id: string;
  issuedAt: number;
  customer: string;
  development: boolean;
  dongle: DongleBinding;
  features: FeatureLicense[];
  /** The products, as listed in the body or (when it lists none) one per feature. */
  products: Product[];
  /** Whether the body listed the products (false: derived one per feature, and not written back). */
  productsListed: boolean;
  /** The signed document as issued, kept so it can be forwarded to clients for offline checks. */
  envelope: unknown;
}

/** The body a vendor signs (also what `licctl vendor issue` builds). Times are ISO 8601. */
export interface EntitlementBody {
  id: string;
  issuedAt: string;
  customer: string;
  development?: boolean;
  dongle: { serial: string; publicKey: string; emulated: boolean };
  features: Array<{
    name: string;
    version: string;
    seats: number;
    expires: string | null;
    type: LicenseType;
    product?: string;
    borrow: { allowed: boolean; maxHours: number };
  }>;
  /** Optional (docs/borrowing.md, "Products"); absent: one product per feature. */
  products?: Array<{ id: string; name: string; licenses: Array<{ feature: string; count: number }> }>;
}

/** Each feature as its own product: what an entitlement without a products list offers. */
export function productsOfFeatures(features: readonly FeatureLicense[]): Product[] {
  return features.map((f) => ({ id: f.name, name: f.product, licenses: [{ feature: f.name, count: 1 }] }));
}

export const MAX_LICENSE_COUNT = 1000;
/** Kept small enough that status and a preview of every product stay far below the answer limit. */
export const MAX_PRODUCTS = 200;

/**
 * Products as status shows them, each license with its feature's type; with `only`, the products
 * that need that feature.
 */
export function productViews(products: readonly Product[], license: (feature: string) => FeatureLicense | undefined, only?: string): ProductView[] {
  return products
    .filter((p) => only === undefined || p.licenses.some((l) => l.feature === only))
    .map((p) => ({ id: p.id, name: p.name, licenses: p.licenses.map((l) => ({ feature: l.feature, type: license(l.feature)?.type ?? 'render', count: l.count })) }));
}

function parseProducts(f: Fields, features: readonly FeatureLicense[]): Product[] {
  const list = f.array('products', { max: MAX_PRODUCTS });
  if (list.length === 0) f.fail('products', 'must list at least one product, or be left out (then each feature is its own product)');
  const known = new Set(features.map((x) => x.name));
  const ids = new Set<string>();
  const names = new Set<string>();
  return list.map((raw, i) => {
    const x = f.element(i, raw, 'products');
    x.only(['id', 'name', 'licenses']);
    const id = x.string('id', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    if (ids.has(id)) x.fail('id', `${id} is used by two products; give each product its own id`);
    ids.add(id);
    const name = x.string('name', { max: 128 });
    if (names.has(name)) x.fail('name', `${JSON.stringify(name)} is the name of two products; people choose products by name, so give each its own`);
    names.add(name);
    const licenses = x.array('licenses', { max: 16 });
    if (licenses.length === 0) x.fail('licenses', 'must list at least one license the product needs, as {"feature": "...", "count": 1}');
    const seen = new Set<string>();
    return {
      id,
      name,
      licenses: licenses.map((rawL, k) => {
        const l = x.element(k, rawL, 'licenses');
        l.only(['feature', 'count']);
        const feature = l.string('feature', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
        if (!known.has(feature)) l.fail('feature', `${feature} is not a feature of this entitlement (features: ${[...known].join(', ')})`);
        if (seen.has(feature)) l.fail('feature', `${feature} is listed twice in product ${id}; list it once with the total count`);
        seen.add(feature);
        return { feature, count: l.int('count', { min: 1, max: MAX_LICENSE_COUNT }) };
      }),
    };
  });
}

/** An ISO 8601 time field of a vendor document, as ms. */
export function parseTime(f: Fields, field: string): number {
  const s = f.string(field, { max: 40 });
  const t = Date.parse(s);
  if (!Number.isFinite(t)) f.fail(field, `must be an ISO 8601 time, got ${JSON.stringify(s)}`);
  return t;
}

/**
 * The `features` of a vendor document, each listed once. With `borrow`, each names its borrow
 * terms (an entitlement); without, a feature has none and cannot be borrowed, and no other field
 * is allowed (a failover entitlement).
 */
export function parseFeatures(f: Fields, o: { borrow: boolean; empty: string }): FeatureLicense[] {
  const features: FeatureLicense[] = [];
  const seen = new Set<string>();
  const list = f.array('features', { max: 1000 });
  list.forEach((raw, i) => {
    const x = f.element(i, raw, 'features');
    if (!o.borrow) x.only(['name', 'version', 'seats', 'expires', 'type', 'product']);
    const name = x.string('name', { max: 64, pattern: FEATURE_PATTERN, patternHelp: FEATURE_HELP });
    if (seen.has(name)) x.fail('name', `${name} is listed twice; list each feature once`);
    seen.add(name);
    let borrow = { allowed: false, maxHours: 0 };
    if (o.borrow) {
      const b = x.object('borrow');
      const allowed = b.bool('allowed');
      borrow = { allowed, maxHours: b.int('maxHours', { min: allowed ? 1 : 0, max: MAX_BORROW_HOURS }) };
    }
    const expiresRaw = x.raw('expires');
    features.push({
      name,
      version: x.string('version', { max: 32, pattern: VERSION_PATTERN, patternHelp: 'a dotted version like 6.2' }),
      seats: x.int('seats', { min: 1, max: 1_000_000 }),
      expires: expiresRaw === null ? null : parseTime(x, 'expires'),
      type: x.oneOf('type', LICENSE_TYPES),
      product: x.optString('product', { max: 128 }) ?? name,
      borrow,
    });
  });
  if (features.length === 0) f.fail('features', o.empty);
  return features;
}

/** Validates an entitlement body (already signature-checked or about to be signed). */
export function parseEntitlementBody(json: unknown): Omit<Entitlement, 'envelope'> {
  const f = Fields.of(json, 'entitlement', 'ENTITLEMENT_INVALID');
  const d = f.object('dongle');
  const pkHex = d.string('publicKey', { max: 64 });
  const publicKey = /^[0-9a-fA-F]{64}$/.test(pkHex) ? fromHex(pkHex) : d.fail('publicKey', 'must be 64 hex digits (32 bytes)');
  if (publicKey.length !== 32) d.fail('publicKey', 'must be 64 hex digits (32 bytes)');
  const features = parseFeatures(f, { borrow: true, empty: 'must list at least one feature' });
  const productsListed = f.has('products');
  const products = productsListed ? parseProducts(f, features) : productsOfFeatures(features);
  return {
    id: f.string('id', { max: 128 }),
    issuedAt: parseTime(f, 'issuedAt'),
    customer: f.string('customer', { max: 256 }),
    development: f.optBool('development') ?? false,
    dongle: { serial: d.string('serial', { max: 64 }), publicKey, emulated: d.bool('emulated') },
    features,
    products,
    productsListed,
  };
}

/**
 * Verifies a license file against the vendor key and the dongle the daemon actually has.
 * Refuses, and says which: unsigned, altered, for another dongle, expired.
 */
export function verifyEntitlement(
  envelope: unknown,
  opts: { vendorPublicKey: Uint8Array; dongle: { serial: string; publicKey: Uint8Array }; now: number; ed: Ed25519 },
): Entitlement {
  const json = verifyEnvelope(envelope, FORMATS.entitlement, opts.vendorPublicKey, opts.ed, 'ENTITLEMENT_INVALID', 'vendor');
  const e = parseEntitlementBody(json);
  if (e.dongle.serial !== opts.dongle.serial || !equalBytes(e.dongle.publicKey, opts.dongle.publicKey)) {
    throw new LicdError(
      'ENTITLEMENT_INVALID',
      `entitlement ${e.id} is for another dongle (serial ${e.dongle.serial}); the dongle here is ${opts.dongle.serial}. ` +
        'Ask the vendor for a license file issued to this dongle.',
      { reason: 'other-dongle', entitlementDongle: e.dongle.serial, dongle: opts.dongle.serial },
    );
  }
  const live = e.features.filter((x) => x.expires === null || x.expires > opts.now);
  if (live.length === 0) {
    const last = Math.max(...e.features.map((x) => x.expires ?? 0));
    throw new LicdError('ENTITLEMENT_INVALID', `entitlement ${e.id} has expired (its last feature ended ${new Date(last).toISOString()}); ask the vendor for a renewal`, {
      reason: 'expired',
    });
  }
  return { ...e, envelope };
}

export function entitlementBodyOf(e: Omit<Entitlement, 'envelope'>): EntitlementBody {
  return {
    id: e.id,
    issuedAt: new Date(e.issuedAt).toISOString(),
    customer: e.customer,
    ...(e.development ? { development: true } : {}),
    dongle: { serial: e.dongle.serial, publicKey: toHex(e.dongle.publicKey), emulated: e.dongle.emulated },
    features: e.features.map((x) => ({
      name: x.name,
      version: x.version,
      seats: x.seats,
      expires: x.expires === null ? null : new Date(x.expires).toISOString(),
      type: x.type,
      product: x.product,
      borrow: { ...x.borrow },
    })),
    ...(e.productsListed ? { products: e.products.map((p) => ({ id: p.id, name: p.name, licenses: p.licenses.map((l) => ({ ...l })) })) } : {}),
  };
}
