/**
 * A failover box's grant of a feature only the primary has (docs/scale-out.md, "Failover server")
 * names its failover entitlement, which the box's chain carries: it verifies offline from the
 * vendor key alone, and a failover entitlement for another dongle, altered or absent, is refused.
 */
import test from 'ava';
import { fromBase64url, toBase64url, toHex, utf8 } from '../../src/core/bytes.ts';
import { FORMATS, sealEnvelope } from '../../src/core/signed.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../../src/core/trust.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { verifyGrant } from '../../src/sdk/verify.ts';
import { demoEntitlementBody, generateVendorKey, issueEntitlement, issueFailover } from '../../src/vendor.ts';
import type { FailoverBody } from '../../src/core/failover.ts';

const ed = nodeEd25519();
const now = Date.parse('2026-11-30T12:00:00Z');
const vendor = generateVendorKey(ed, { bytes: (n) => new Uint8Array(n).map((_, i) => (i * 11 + 5) & 255) }, true);
const vendorPublicKey = Uint8Array.from(Buffer.from(vendor.publicKey, 'hex'));
const dongleSeed = new Uint8Array(32).fill(7);
const dongle = { serial: 'EMU-B', publicKey: ed.publicKey(dongleSeed), counter: 0n, emulated: true, firmwareVersion: 'x' };
const sessionSeed = new Uint8Array(32).fill(9);
const sessionKey = ed.publicKey(sessionSeed);
const entitlement = issueEntitlement(demoEntitlementBody(dongle, now), vendor, ed);
const dBody = utf8(JSON.stringify(delegationBody({ sessionKey, dongleSerial: dongle.serial, emulated: true, notBefore: now - 60_000, notAfter: now + 86400_000 })));
const delegation = delegationEnvelope(dBody, ed.sign(dongleSeed, dongleSignedBytes(DELEGATION_DOMAIN, dBody, true)), toBase64url);
const failoverBody = (over: Partial<FailoverBody> = {}): FailoverBody => ({
  id: 'FO-1',
  issuedAt: new Date(now).toISOString(),
  customer: 'Studio',
  development: true,
  dongle: { serial: dongle.serial, publicKey: toHex(dongle.publicKey), emulated: true },
  primary: { server: 'box-a' },
  afterSeconds: 60,
  maxHoursPerMonth: 10,
  features: [{ name: 'houdini', version: '20.0', seats: 2, expires: null, type: 'interface' }],
  ...over,
});
const failover = issueFailover(failoverBody(), vendor, ed);
const grant = (over: Record<string, unknown> = {}) =>
  sealEnvelope(
    FORMATS.grant,
    { lease: 'L1', feature: 'houdini', count: 1, user: 'u', host: 'h', clientId: 'c1', issuedAt: new Date(now).toISOString(), until: new Date(now + 60_000).toISOString(), entitlement: 'FO-1', sessionKey: toHex(sessionKey), ...over },
    sessionSeed,
    ed,
  );
const verify = (bundle: Parameters<typeof verifyGrant>[0]) => verifyGrant(bundle, { vendorPublicKey, ed, now });

test("a grant of the primary's feature verifies through the failover entitlement in the chain", (t) => {
  const v = verify({ grant: grant(), entitlement, delegation, failover });
  t.is(v.feature.name, 'houdini');
  t.is(v.grant.entitlement, 'FO-1');
  // The box's own features still verify through its license, with or without the failover file.
  t.is(verify({ grant: grant({ feature: 'nuke_i', entitlement: `DEV-DEMO-${dongle.serial}` }), entitlement, delegation, failover }).feature.name, 'nuke_i');
});

test('without the failover entitlement, with one for another dongle, altered, or over its count, the grant is refused', (t) => {
  const e1 = t.throws(() => verify({ grant: grant(), entitlement, delegation }));
  t.regex(e1!.message, /the grant names license FO-1, but its chain carries DEV-DEMO-EMU-B/);
  const other = issueFailover(failoverBody({ dongle: { serial: 'EMU-Z', publicKey: toHex(ed.publicKey(new Uint8Array(32).fill(3))), emulated: true } }), vendor, ed);
  const e2 = t.throws(() => verify({ grant: grant(), entitlement, delegation, failover: other }));
  t.regex(e2!.message, /failover entitlement behind the grant does not hold: .*for another dongle/);
  const body = JSON.parse(Buffer.from(fromBase64url(failover.body)).toString()) as FailoverBody;
  body.features[0]!.seats = 50;
  const e3 = t.throws(() => verify({ grant: grant(), entitlement, delegation, failover: { ...failover, body: toBase64url(utf8(JSON.stringify(body))) } }));
  t.regex(e3!.message, /does not verify with the vendor key/);
  const e4 = t.throws(() => verify({ grant: grant({ count: 3 }), entitlement, delegation, failover }));
  t.regex(e4!.message, /the license has 2/);
  const e5 = t.throws(() => verify({ grant: grant({ entitlement: 'FO-2' }), entitlement, delegation, failover }));
  t.regex(e5!.message, /names license FO-2/);
});
