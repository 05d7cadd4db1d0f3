import test from 'ava';
import { fromBase64url, toBase64url, toHex } from '../../src/core/bytes.ts';
import { verifyEntitlement } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { demoEntitlementBody, issueEntitlement, generateVendorKey } from '../../src/vendor.ts';

const ed = nodeEd25519();
const rnd = { bytes: (n: number) => new Uint8Array(n).map((_, i) => (i * 7 + 3) & 255) };
const vendor = generateVendorKey(ed, rnd, true);
const other = generateVendorKey(ed, { bytes: (n) => new Uint8Array(n).fill(9) }, true);
const dongleSeed = new Uint8Array(32).fill(1);
const dongle = { serial: 'EMU-1', publicKey: ed.publicKey(dongleSeed), counter: 0n, emulated: true, firmwareVersion: 'x' };
const now = Date.parse('2026-06-01T00:00:00Z');
const env = issueEntitlement(demoEntitlementBody(dongle, now), vendor, ed);
const vpk = Uint8Array.from(Buffer.from(vendor.publicKey, 'hex'));

function reason(f: () => unknown): string {
  try {
    f();
    return 'accepted';
  } catch (e) {
    return (e as LicdError).code + ': ' + (e as Error).message;
  }
}

test('a good entitlement verifies', (t) => {
  const e = verifyEntitlement(env, { vendorPublicKey: vpk, dongle, now, ed });
  t.is(e.features.length, 4);
  t.true(e.development);
});

test('unsigned, altered, wrong vendor, other dongle and expired are refused, each saying which', (t) => {
  t.regex(reason(() => verifyEntitlement({ ...env, sig: '' }, { vendorPublicKey: vpk, dongle, now, ed })), /ENTITLEMENT_INVALID: .*unsigned/);
  const body = JSON.parse(Buffer.from(fromBase64url(env.body)).toString());
  body.features[0].seats = 400;
  const altered = { ...env, body: toBase64url(new TextEncoder().encode(JSON.stringify(body))) };
  t.regex(reason(() => verifyEntitlement(altered, { vendorPublicKey: vpk, dongle, now, ed })), /does not verify with the vendor key/);
  t.regex(reason(() => verifyEntitlement(env, { vendorPublicKey: Uint8Array.from(Buffer.from(other.publicKey, 'hex')), dongle, now, ed })), /does not verify/);
  const otherDongle = { ...dongle, serial: 'EMU-2' };
  t.regex(reason(() => verifyEntitlement(env, { vendorPublicKey: vpk, dongle: otherDongle, now, ed })), /for another dongle \(serial EMU-1\); the dongle here is EMU-2/);
  const shortBody = demoEntitlementBody(dongle, now);
  for (const f of shortBody.features) f.expires = new Date(now + 86400_000).toISOString();
  const short = issueEntitlement(shortBody, vendor, ed);
  t.is(reason(() => verifyEntitlement(short, { vendorPublicKey: vpk, dongle, now, ed })), 'accepted');
  t.regex(reason(() => verifyEntitlement(short, { vendorPublicKey: vpk, dongle, now: now + 2 * 86400_000, ed })), /has expired \(its last feature ended 2026-06-02/);
  t.regex(reason(() => verifyEntitlement({ format: 'something-else' }, { vendorPublicKey: vpk, dongle, now, ed })), /not a licd-entitlement\/1 document/);
  t.is(toHex(dongle.publicKey).length, 64);
});

test('the vendor tool refuses to sign a malformed entitlement', (t) => {
  const body = demoEntitlementBody(dongle, now);
  body.features[0]!.borrow.maxHours = 9000;
  t.throws(() => issueEntitlement(body, vendor, ed), { message: /maxHours must be from 1 to 8760/ });
});
