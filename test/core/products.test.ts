/**
 * Products (issue 11, finding 8): an entitlement may group features into products, each needing
 * some seats of some features per machine; borrow.preview answers per product the licenses by type
 * it needs and, per feature, what this user may borrow now (free seats and the admin's limits).
 */
import test from 'ava';
import { entitlementBodyOf, parseEntitlementBody, verifyEntitlement, type EntitlementBody } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import { Borrowing, defaultBorrowPolicy, type BorrowLimits, type BorrowPreview } from '../../src/core/borrowing.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import type { Answer, StatusResult } from '../../src/core/protocol.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { demoEntitlementBody, generateVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { ManualClock } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const vendor = generateVendorKey(ed, { bytes: (n) => new Uint8Array(n).fill(5) }, true);
const dongle = { serial: 'EMU-1', publicKey: ed.publicKey(new Uint8Array(32).fill(1)), counter: 0n, emulated: true, firmwareVersion: 'x' };
const now = Date.parse('2026-06-01T00:00:00Z');
const vpk = Uint8Array.from(Buffer.from(vendor.publicKey, 'hex'));

function body(products?: unknown): EntitlementBody {
  const b = demoEntitlementBody(dongle, now) as EntitlementBody & { products?: unknown };
  if (products === undefined) delete b.products;
  else b.products = products as EntitlementBody['products'];
  return b;
}

function refusal(f: () => unknown): string {
  try {
    f();
    return 'accepted';
  } catch (e) {
    return `${(e as LicdError).code}: ${(e as Error).message}`;
  }
}

test('the demo entitlement groups its features into products, with the types the features carry', (t) => {
  const e = verifyEntitlement(issueEntitlement(body(demoEntitlementBody(dongle, now).products), vendor, ed), { vendorPublicKey: vpk, dongle, now, ed });
  t.true(e.productsListed);
  t.deepEqual(
    e.products.map((p) => [p.id, p.name, p.licenses.map((l) => `${l.count} ${l.feature}`).join(' + ')]),
    [
      ['vray_maya', 'V-Ray for Maya', '1 vray_interface + 1 vray_render'],
      ['vray_render_node', 'V-Ray Render Node', '1 vray_render'],
      ['vray_dr', 'V-Ray Distributed Rendering', '1 vray_distributed'],
      ['nuke', 'Nuke Interactive', '1 nuke_i'],
    ],
  );
  t.deepEqual(entitlementBodyOf(e).products, demoEntitlementBody(dongle, now).products, 'signed as part of the body, and written back as listed');
});

test('an entitlement without products still verifies: each feature is its own product, and none is written back', (t) => {
  const e = verifyEntitlement(issueEntitlement(body(), vendor, ed), { vendorPublicKey: vpk, dongle, now, ed });
  t.false(e.productsListed);
  t.deepEqual(
    e.products.map((p) => [p.id, p.name, p.licenses]),
    e.features.map((f) => [f.name, f.product, [{ feature: f.name, count: 1 }]]),
  );
  t.false('products' in entitlementBodyOf(e));
});

test('a products list is checked strictly, each refusal naming the field and the fix', (t) => {
  const parse = (products: unknown) => refusal(() => parseEntitlementBody(body(products)));
  const maya = (licenses: unknown) => [{ id: 'vray_maya', name: 'V-Ray for Maya', licenses }];
  t.is(parse(maya([{ feature: 'vray_render', count: 2 }])), 'accepted');
  t.regex(parse(maya([{ feature: 'vray_modo', count: 1 }])), /^ENTITLEMENT_INVALID: entitlement\.products\[0\]\.licenses\[0\]\.feature vray_modo is not a feature of this entitlement \(features: vray_render, vray_interface, vray_distributed, nuke_i\)/);
  t.regex(parse(maya([{ feature: 'vray_render', count: 1 }, { feature: 'vray_render', count: 1 }])), /products\[0\]\.licenses\[1\]\.feature vray_render is listed twice in product vray_maya; list it once with the total count/);
  t.regex(parse(maya([{ feature: 'vray_render', count: 0 }])), /products\[0\]\.licenses\[0\]\.count must be from 1 to 1000, got 0/);
  t.regex(parse(maya([{ feature: 'vray_render', count: 1.5 }])), /count must be a whole number/);
  t.regex(parse(maya([])), /products\[0\]\.licenses must list at least one license/);
  t.regex(parse(maya([{ feature: 'vray_render', count: 1, type: 'render' }])), /licenses\[0\]\.type is not a known field \(known: feature, count\)/);
  t.regex(parse([...maya([{ feature: 'vray_render', count: 1 }]), { id: 'vray_maya', name: 'Other', licenses: [{ feature: 'nuke_i', count: 1 }] }]), /products\[1\]\.id vray_maya is used by two products; give each product its own id/);
  t.regex(parse([...maya([{ feature: 'vray_render', count: 1 }]), { id: 'other', name: 'V-Ray for Maya', licenses: [{ feature: 'nuke_i', count: 1 }] }]), /products\[1\]\.name "V-Ray for Maya" is the name of two products/);
  t.regex(parse([{ id: 'a/b', name: 'x', licenses: [{ feature: 'nuke_i', count: 1 }] }]), /products\[0\]\.id must be 1 to 64 letters, digits or \. _ -/);
  t.regex(parse([]), /entitlement\.products must list at least one product, or be left out/);
  t.regex(parse(null), /entitlement\.products must be a list, got null/);
  t.regex(refusal(() => issueEntitlement(body(maya([{ feature: 'nope', count: 1 }])), vendor, ed)), /ENTITLEMENT_INVALID: .*nope is not a feature/, 'the vendor tool refuses to sign it');
});

function service(limits: BorrowLimits, products = true) {
  const e = verifyEntitlement(issueEntitlement(products ? body(demoEntitlementBody(dongle, now).products) : body(), vendor, ed), { vendorPublicKey: vpk, dongle, now, ed });
  const clock = new ManualClock(now);
  const table = new SeatTable(e.features, () => 'x');
  const svc = new LicenseService({ clock, store: new MemoryStore(), table, entitlement: e, policy: defaultLeasePolicy, log: silentLog, version: 'test', maxPayloadBytes: 65536, holderHash: sha256HolderHash });
  new Borrowing({ service: svc, entitlement: e, policy: defaultBorrowPolicy, limits, newId: () => 'id', ed, signToken: () => null, chain: () => ({ entitlement: e.envelope as never, delegation: null }), sessionKeyHex: '00' });
  let n = 0;
  const ask = async <T>(req: Record<string, unknown>): Promise<T> => {
    const a = (await svc.handle('c1', false, new TextEncoder().encode(JSON.stringify({ id: String(++n), ...req })))) as Answer<T>;
    if (!a.ok) throw new LicdError(a.error.code, a.error.message);
    return a.result;
  };
  return { ask, table, clock };
}

test('status lists the products with the type of each license they need', async (t) => {
  const { ask } = service({});
  const s = await ask<StatusResult>({ op: 'status' });
  t.deepEqual(s.products[0], { id: 'vray_maya', name: 'V-Ray for Maya', licenses: [{ feature: 'vray_interface', type: 'interface', count: 1 }, { feature: 'vray_render', type: 'render', count: 1 }] });
  const one = await ask<StatusResult>({ op: 'status', feature: 'vray_render' });
  t.deepEqual(one.products.map((p) => p.id), ['vray_maya', 'vray_render_node'], 'with a feature: the products that need it');
  const old = await service({}, false).ask<StatusResult>({ op: 'status' });
  t.deepEqual(old.products.map((p) => p.id), ['vray_render', 'vray_interface', 'vray_distributed', 'nuke_i']);
});

test('borrow.preview: per product the licenses by type, per feature the sum and what this user may borrow now and for how long', async (t) => {
  const { ask } = service({
    features: { vray_render: { maxHours: 48 } },
    users: { carol: { maxSeats: 2 } },
    groups: { interns: { members: ['eve'], maxSeats: 1, maxHours: 8 } },
  });
  const p = await ask<BorrowPreview>({ op: 'borrow.preview', user: 'carol', products: [{ product: 'vray_maya', machines: 2 }, { product: 'vray_render_node', machines: 1 }] });
  t.is(p.user, 'carol');
  t.deepEqual(p.products.map((x) => [x.product, x.name, x.machines, x.licenses.map((l) => `${l.seats} ${l.type} (${l.count} per machine)`)]), [
    ['vray_maya', 'V-Ray for Maya', 2, ['2 interface (1 per machine)', '2 render (1 per machine)']],
    ['vray_render_node', 'V-Ray Render Node', 1, ['1 render (1 per machine)']],
  ]);
  const item = (f: string) => p.items.find((i) => i.feature === f)!;
  t.like(item('vray_interface'), { machines: 2, free: 2, maxSeats: 2, count: 2, maxHours: 336, hoursWhy: 'the license allows at most 336 h' });
  t.like(item('vray_render'), { machines: 3, free: 4, maxSeats: 2, count: 2, seatsWhy: 'limits.users.carol allows 2 borrowed seats and 0 are borrowed', maxHours: 48, hoursWhy: 'limits.features.vray_render allows at most 48 h' });
  t.deepEqual(p.limits, [{ limit: 'limits.users.carol', maxSeats: 2, borrowed: 0, features: ['vray_interface', 'vray_render'] }], 'a per-user limit spans the features');

  const intern = await ask<BorrowPreview>({ op: 'borrow.preview', user: 'eve', products: [{ product: 'nuke', machines: 1 }] });
  t.like(intern.items[0], { feature: 'nuke_i', maxSeats: 1, maxHours: 8, hoursWhy: 'limits.groups.interns allows at most 8 h' });
  const dr = await ask<BorrowPreview>({ op: 'borrow.preview', user: 'eve', products: [{ product: 'vray_dr', machines: 1 }] });
  t.like(dr.items[0], { feature: 'vray_distributed', maxSeats: 0, count: 0, maxHours: 0, seatsWhy: 'the license does not allow borrowing' });
});

test('borrow.preview keeps the old {feature, machines} form, and names an unknown product with the list', async (t) => {
  const { ask } = service({});
  const p = await ask<BorrowPreview>({ op: 'borrow.preview', products: [{ feature: 'vray_render', machines: 9 }] });
  t.like(p.items[0], { feature: 'vray_render', product: 'V-Ray Render Node', type: 'render', machines: 9, count: 4, free: 4, total: 4, maxSeats: 4 });
  t.deepEqual(p.products, []);
  const e = await t.throwsAsync(ask({ op: 'borrow.preview', products: [{ product: 'vray_modo', machines: 1 }] }));
  t.is((e as LicdError).code, 'UNKNOWN_PRODUCT');
  t.regex(e!.message, /no product "vray_modo" on this server; products: vray_maya, vray_render_node, vray_dr, nuke/);
  const both = await t.throwsAsync(ask({ op: 'borrow.preview', products: [{ product: 'nuke', feature: 'nuke_i', machines: 1 }] }));
  t.regex(both!.message, /products\[0\]\.feature cannot go with product/);
});
