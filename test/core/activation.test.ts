/**
 * The rules of activation and licenses at runtime (src/core/activation.ts, SeatTable.replaceLicenses),
 * under an injected time: request signatures, the vendor's issue, anti-downgrade, fewer seats.
 */
import test from 'ava';
import { toBase64url, utf8 } from '../../src/core/bytes.ts';
import {
  ACTIVATION_DOMAIN,
  activationEntitlementBody,
  activationRequestBody,
  judgeLicense,
  parseActivationSpec,
  selectSpec,
  verifyActivationRequest,
  type LicenseOrder,
} from '../../src/core/activation.ts';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { LicdError } from '../../src/core/errors.ts';
import type { Borrow } from '../../src/core/model.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { FORMATS } from '../../src/core/signed.ts';
import { dongleSignedBytes } from '../../src/core/trust.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';

const ed = nodeEd25519();
const T0 = Date.parse('2026-06-01T12:00:00Z');
const dongleSeed = new Uint8Array(32).fill(7);
const dongle = { serial: 'HW-0001', publicKey: ed.publicKey(dongleSeed), emulated: false };

function request(o: { installed?: LicenseOrder | null; seed?: Uint8Array } = {}) {
  const body = utf8(JSON.stringify(activationRequestBody({ dongle, counter: 42n, box: { hostId: 'abc', hostName: 'box-1' }, nonce: 'AAAAAAAAAAAAAAAAAAAAAA', now: T0, installed: o.installed ?? null })));
  const sig = ed.sign(o.seed ?? dongleSeed, dongleSignedBytes(ACTIVATION_DOMAIN, body, false));
  return { format: FORMATS.activationRequest, body: toBase64url(body), sig: toBase64url(sig) };
}

const spec = parseActivationSpec(
  {
    customer: 'ACME',
    features: [
      { name: 'render', version: '6.2', seats: 4, days: 30, type: 'render', borrow: { allowed: true, maxHours: 72 } },
      { name: 'ui', version: '6.2', seats: 1, expires: null, type: 'interface', borrow: { allowed: false, maxHours: 0 } },
    ],
  },
  'spec',
);

test('an activation request verifies only with the signature of the dongle it names', (t) => {
  const r = verifyActivationRequest(request(), ed);
  t.is(r.dongle.serial, 'HW-0001');
  t.is(r.counter, 42n);
  t.is(r.box.hostName, 'box-1');
  // Signed by another key (not the dongle it names): refused.
  const e = t.throws(() => verifyActivationRequest(request({ seed: new Uint8Array(32).fill(9) }), ed), { instanceOf: LicdError })!;
  t.is(e.code, 'ACTIVATION_INVALID');
  t.is((e.details as { reason: string }).reason, 'bad-signature');
  // The same bytes signed as a delegation (another domain) are not an activation request.
  const req = request();
  const asDelegation = { ...req, sig: toBase64url(ed.sign(dongleSeed, dongleSignedBytes('delegation', Buffer.from(req.body, 'base64url'), false))) };
  t.is(t.throws(() => verifyActivationRequest(asDelegation, ed), { instanceOf: LicdError })!.code, 'ACTIVATION_INVALID');
  // Another document format is refused before any signature is checked.
  t.regex(t.throws(() => verifyActivationRequest({ ...req, format: FORMATS.entitlement }, ed), { instanceOf: LicdError })!.message, /not a licd-activation-request\/1 document/);
});

test('the vendor issues a license bound to the dongle, newer than the one the request says is installed, even with its clock behind', (t) => {
  const installed = { id: 'ACT-HW-0001-9', issuedAt: T0 + 3600_000, sequence: T0 + 3600_000 };
  const body = activationEntitlementBody(verifyActivationRequest(request({ installed }), ed), spec, { now: T0, development: false });
  t.is(body.dongle.serial, 'HW-0001');
  t.is(body.dongle.publicKey, Buffer.from(dongle.publicKey).toString('hex'));
  t.true(Date.parse(body.issuedAt) > installed.issuedAt);
  t.true(body.sequence > installed.sequence);
  t.is(body.features[0]!.expires, new Date(Date.parse(body.issuedAt) + 30 * 86400_000).toISOString());
  t.is(body.features[1]!.expires, null);
  t.is(body.activation.nonce, 'AAAAAAAAAAAAAAAAAAAAAA');
  t.is(judgeLicense({ id: body.id, issuedAt: Date.parse(body.issuedAt), sequence: body.sequence }, installed), 'newer');
});

test('which spec applies: the dongle\'s own, else the default, else a refusal naming the serial', (t) => {
  const own = { ...spec, customer: 'Own' };
  t.is(selectSpec({ bySerial: new Map([['HW-0001', own]]), fallback: spec }, 'HW-0001').customer, 'Own');
  t.is(selectSpec({ bySerial: new Map([['HW-0001', own]]), fallback: spec }, 'HW-0002').customer, 'ACME');
  const e = t.throws(() => selectSpec({ bySerial: new Map(), fallback: null }, 'HW-0003'), { instanceOf: LicdError })!;
  t.is(e.code, 'ACTIVATION_INVALID');
  t.regex(e.message, /no license is on record for dongle HW-0003/);
  t.regex(t.throws(() => parseActivationSpec({ customer: 'x', features: [{ name: 'a', version: '1', seats: 1, type: 'render', borrow: { allowed: false, maxHours: 0 } }] }, 's'))!.message, /expires is missing/);
});

test('anti-downgrade: older by issue time or by sequence is refused; the same license is "same"; later is "newer"', (t) => {
  const cur = { id: 'A-2', issuedAt: T0, sequence: 2, body: 'x' };
  t.is(judgeLicense({ ...cur }, cur), 'same');
  t.is(judgeLicense({ id: 'A-3', issuedAt: T0 + 1, sequence: 3 }, cur), 'newer');
  t.is(judgeLicense({ id: 'A-0', issuedAt: T0 + 1, sequence: null }, { ...cur, sequence: null }), 'newer', 'no sequence: the issue time decides');
  t.is(judgeLicense({ id: 'first', issuedAt: T0, sequence: null }, null), 'newer');
  for (const older of [
    { id: 'A-1', issuedAt: T0 - 1, sequence: 3 },
    { id: 'A-1', issuedAt: T0 + 1, sequence: 1 },
    { id: 'A-2', issuedAt: T0 + 1, sequence: 2 },
    { id: 'A-2b', issuedAt: T0, sequence: 2 },
    { id: 'A-2', issuedAt: T0, sequence: 2, body: 'another body' },
  ]) {
    const e = t.throws(() => judgeLicense(older, cur), { instanceOf: LicdError }, JSON.stringify(older))!;
    t.is(e.code, 'LICENSE_DOWNGRADE');
    t.regex(e.message, /is not newer than the one installed \(A-2 issued/);
  }
});

const lic = (name: string, seats: number): FeatureLicense => ({ name, product: name, version: '6.2', seats, expires: null, type: 'render', borrow: { allowed: true, maxHours: 72 } });
const req = (clientId: string, feature = 'render') => ({ clientId, holder: 'h', pid: 1, user: clientId, host: 'h', feature, count: 1, ttlMs: 60_000 });
const borrowOf = (id: string, feature: string): Borrow => ({
  id, feature, count: 1, user: 'u', hostId: 'h', hostName: 'h', clientKey: 'k', clientId: null, since: T0, expiresAt: T0 + 3600_000,
  lost: false, autoRenew: false, via: 'online', requestId: id, tokenId: 't' + id, tokenIssuedAt: T0, hours: 1,
});

test('fewer seats end the newest leases; a removed feature ends its leases and keeps its borrows; the ended are remembered with LICENSE_REDUCED', (t) => {
  let n = 0;
  const s = new SeatTable([lic('render', 4), lic('gone', 2), lic('kept', 1)], () => `id${++n}`);
  const a = s.checkout(req('a'), T0).result.lease;
  s.checkout(req('b'), T0 + 1);
  s.checkout(req('c'), T0 + 2);
  s.borrow(borrowOf('B1', 'render'), T0);
  const g = s.checkout(req('g', 'gone'), T0).result.lease;
  s.borrow(borrowOf('B2', 'gone'), T0);
  const k = s.checkout(req('k', 'kept'), T0).result.lease;

  const change = s.replaceLicenses([lic('render', 2), lic('kept', 1), lic('new', 5)], T0 + 10);
  t.deepEqual(change.result.ended.map((x) => x.lease.user).sort(), ['b', 'c', 'g']);
  t.deepEqual(change.result.added, ['new']);
  t.deepEqual(change.result.removed, ['gone']);
  t.deepEqual(change.result.changed, ['render']);
  t.deepEqual(s.featureListing('render').leases.map((l) => l.id), [a.id], 'the oldest lease stays');
  t.is(s.availability('render', T0).borrowed, 1, 'the borrow stays');
  t.is(s.availability('gone', T0).total, 0, 'a removed feature with a borrow out stays, with no seats');
  t.is(s.availability('gone', T0).borrowed, 1);
  t.is(s.getLease(k.id)?.id, k.id);
  t.is(s.availability('new', T0).free, 5);
  t.deepEqual(s.checkInvariants(T0), []);
  t.is(s.revokedLease(g.id, 'g', T0 + 20)?.code, 'LICENSE_REDUCED');
  t.regex(s.revokedLease(g.id, 'g', T0 + 20)!.message!, /gone is no longer in the license/);
  t.true(change.mutations.some((m) => m.kind === 'meta.put'), 'the ended leases are remembered durably');

  // Undone (the write failed): every license, lease and memory as before.
  change.undo();
  t.is(s.availability('render', T0).total, 4);
  t.is(s.availability('render', T0).leased, 3);
  t.is(s.availability('gone', T0).total, 2);
  t.is(s.availability('gone', T0).leased, 1);
  t.false(s.featureNames().includes('new'));
  t.is(s.revokedLease(g.id, 'g', T0 + 20), null);
  t.deepEqual(s.checkInvariants(T0), []);
});

test('a feature removed with no borrows out disappears; one that comes back takes its seats again', (t) => {
  const s = new SeatTable([lic('render', 2), lic('gone', 2)], () => 'x');
  s.borrow(borrowOf('B2', 'gone'), T0);
  s.replaceLicenses([lic('render', 2)], T0);
  t.deepEqual(s.featureNames(), ['render', 'gone']);
  s.replaceLicenses([lic('render', 2), lic('gone', 3)], T0);
  t.is(s.availability('gone', T0).total, 3);
  t.is(s.availability('gone', T0).free, 2);
  s.returnBorrow('B2');
  s.replaceLicenses([lic('render', 2)], T0);
  t.deepEqual(s.featureNames(), ['render']);
});
