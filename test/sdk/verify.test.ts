/**
 * The grant verifier of the client SDK: a grant from a real daemon (emulated dongle in-process,
 * LevelDB, the embedded broker) verifies offline from the vendor public key alone (with node:crypto
 * and with tweetnacl); the same chain altered at each link is refused, naming the link.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { EmulatedDongle } from '../../firmware-bridge/index.ts';
import { concat, fromBase64url, fromHex, fromUtf8, toBase64url, toHex, utf8 } from '../../src/core/bytes.ts';
import { LicdError } from '../../src/core/errors.ts';
import { FORMATS, sealEnvelope, type SignedEnvelope } from '../../src/core/signed.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../../src/core/trust.ts';
import { naclEd25519, nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { fetchAndVerifyGrant, fetchChain, peekGrant, verifyGrant, type GrantBundle, type PublishedChain } from '../../src/sdk/verify.ts';
import { generateVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { ManualClock, startTestDaemon, tempDir, until, type TestDaemon } from '../helpers/daemon.ts';

// node:crypto for speed (tweetnacl blocks the event loop that the daemon and broker share with
// these tests); the first test verifies with tweetnacl too, as an independent implementation.
const ed = nodeEd25519();
const nacl = naclEd25519();
const DONGLE_SEED = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);
const OTHER_SEED = Uint8Array.from({ length: 32 }, (_, i) => 0x90 + i);
const random = { bytes: (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff) };

interface Rig {
  daemon: TestDaemon;
  bundle: GrantBundle & { grant: SignedEnvelope } & PublishedChain;
  vendorPublicKey: Uint8Array;
}

/** One daemon for the whole file; each test works on copies of the one grant it handed out. */
let rigPromise: Promise<Rig> | null = null;
function rig(): Promise<Rig> {
  rigPromise ??= (async () => {
    const dataDir = tempDir('licd-verify-');
    // The emulated dongle with a seed the tests know, so they can sign as the dongle.
    mkdirSync(join(dataDir, 'dev'), { recursive: true });
    const pre = await EmulatedDongle.open({ statePath: join(dataDir, 'dev', 'dongle.json'), seed: DONGLE_SEED, serial: 'EMU-VERIFY1' });
    await pre.close();
    const daemon = await startTestDaemon({ dataDir });
    const client = await daemon.client({ user: 'alice', host: 'node-7' });
    const lease = await client.checkout('vray_render', { count: 2 });
    if (!lease.grant) throw new Error('the checkout answer carries no grant');
    const chain = await fetchChain(client);
    return { daemon, bundle: { grant: lease.grant, ...chain }, vendorPublicKey: daemon.vendorPublicKey };
  })();
  return rigPromise;
}

test.after.always(async () => {
  if (!rigPromise) return;
  const r = await rigPromise.catch(() => null);
  if (r) {
    await r.daemon.halt();
    rmSync(r.daemon.dataDir, { recursive: true, force: true });
  }
});

const clone = <T>(v: T): T => structuredClone(v);
const bodyOf = (env: SignedEnvelope): Record<string, unknown> => JSON.parse(fromUtf8(fromBase64url(env.body))) as Record<string, unknown>;
const withBody = (env: SignedEnvelope, body: unknown): SignedEnvelope => ({ ...env, body: toBase64url(utf8(JSON.stringify(body))) });
function flipSig(env: SignedEnvelope): SignedEnvelope {
  const sig = fromBase64url(env.sig);
  sig[10]! ^= 0x01;
  return { ...env, sig: toBase64url(sig) };
}

function refused(t: ExecutionContext, bundle: GrantBundle, vendorPublicKey: Uint8Array, link: string, message: RegExp, extra: { refuseEmulated?: boolean } = {}): LicdError {
  const e = t.throws(() => verifyGrant(bundle, { vendorPublicKey, ed, ...extra }), { instanceOf: LicdError });
  t.is(e?.code, 'TOKEN_INVALID');
  t.is(e?.details?.link, link, `refusal names link ${link}: ${e?.message}`);
  t.regex(e?.message ?? '', message);
  return e!;
}

test('a grant from a real daemon verifies offline through the chain on licd/v1/server/chain', async (t) => {
  const { daemon, bundle, vendorPublicKey } = await rig();
  // The published chain is the daemon's own.
  t.deepEqual(bundle.entitlement, daemon.chain().entitlement);
  t.deepEqual(bundle.delegation, daemon.chain().delegation);
  const v = verifyGrant(bundle, { vendorPublicKey, ed, now: Date.now() });
  t.deepEqual(verifyGrant(bundle, { vendorPublicKey, ed: nacl, now: Date.now() }).grant, v.grant);
  t.like(v.grant, { feature: 'vray_render', count: 2, user: 'alice', host: 'node-7', entitlement: daemon.entitlement.id });
  t.is(v.chain.entitlement.dongle.serial, 'EMU-VERIFY1');
  t.true(v.chain.entitlement.dongle.emulated);
  t.is(toHex(v.chain.entitlement.dongle.publicKey), toHex(ed.publicKey(DONGLE_SEED)));
  t.is(v.feature.seats, 4);
  t.deepEqual(peekGrant(bundle.grant), v.grant);
  // From JSON text alone (what a client stores), too.
  t.notThrows(() => verifyGrant(JSON.parse(JSON.stringify(bundle)) as GrantBundle, { vendorPublicKey, ed }));
  // The one-call online path.
  const c = await daemon.client();
  const online = await fetchAndVerifyGrant(c, bundle.grant, { vendorPublicKey, ed });
  t.is(online.grant.lease, v.grant.lease);
});

test('link 1: an altered entitlement body is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  const body = bodyOf(b.entitlement) as { features: Array<{ seats: number }> };
  body.features[0]!.seats = 400;
  b.entitlement = withBody(b.entitlement, body);
  refused(t, b, vendorPublicKey, 'entitlement', /chain link 1 \(vendor -> entitlement\) is broken: .*signature does not verify with the vendor key/);
});

test('link 1: an altered entitlement signature is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  b.entitlement = flipSig(b.entitlement);
  refused(t, b, vendorPublicKey, 'entitlement', /chain link 1 \(vendor -> entitlement\) is broken/);
});

test('link 1: the same entitlement signed by another vendor key is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  const other = generateVendorKey(ed, { bytes: () => OTHER_SEED }, false);
  b.entitlement = issueEntitlement(bodyOf(b.entitlement) as never, other, ed);
  refused(t, b, vendorPublicKey, 'entitlement', /chain link 1 .*vendor key/);
  // It is a good chain for that other vendor: the refusal is about the key, nothing else.
  t.notThrows(() => verifyGrant(b, { vendorPublicKey: ed.publicKey(OTHER_SEED), ed }));
});

test('link 2: an altered delegation body is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  const body = bodyOf(b.delegation);
  body.notAfter = '2099-01-01T00:00:00.000Z';
  b.delegation = withBody(b.delegation, body);
  refused(t, b, vendorPublicKey, 'delegation', /chain link 2 \(dongle -> delegation\) is broken: the delegation is not signed by the dongle the entitlement names/);
});

test('link 2: a delegation signed with the hardware class byte by the emulated dongle is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const body = fromBase64url(bundle.delegation.body);
  // Control: the emulated class byte with the dongle's key reproduces the daemon's delegation.
  const asEmulated = ed.sign(DONGLE_SEED, dongleSignedBytes(DELEGATION_DOMAIN, body, true));
  t.is(toBase64url(asEmulated), bundle.delegation.sig);
  const b = clone(bundle);
  b.delegation = delegationEnvelope(body, ed.sign(DONGLE_SEED, dongleSignedBytes(DELEGATION_DOMAIN, body, false)), toBase64url);
  refused(t, b, vendorPublicKey, 'delegation', /chain link 2 .*not signed by the dongle/);
});

test('link 2: a delegation signed by another dongle is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const body = fromBase64url(bundle.delegation.body);
  const b = clone(bundle);
  b.delegation = delegationEnvelope(body, ed.sign(OTHER_SEED, dongleSignedBytes(DELEGATION_DOMAIN, body, true)), toBase64url);
  refused(t, b, vendorPublicKey, 'delegation', /chain link 2/);
});

test('link 3: an altered grant body is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  for (const change of [{ count: 4 }, { feature: 'vray_interface' }, { until: '2099-01-01T00:00:00.000Z' }, { user: 'mallory' }]) {
    const b = clone(bundle);
    b.grant = withBody(b.grant, { ...bodyOf(b.grant), ...change });
    refused(t, b, vendorPublicKey, 'grant', /chain link 3 \(session key -> grant\) is broken: .*signature does not verify with the license server session key/);
  }
});

test('link 3: a grant signed by another key is refused, whichever session key it names', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  b.grant = sealEnvelope(FORMATS.grant, bodyOf(b.grant), OTHER_SEED, ed);
  refused(t, b, vendorPublicKey, 'grant', /chain link 3 .*signature does not verify/);
  const c = clone(bundle);
  c.grant = sealEnvelope(FORMATS.grant, { ...bodyOf(c.grant), sessionKey: toHex(ed.publicKey(OTHER_SEED)) }, OTHER_SEED, ed);
  const e = refused(t, c, vendorPublicKey, 'grant', /chain link 3 .*names another session key than the delegation/);
  t.is(e.details?.reason, 'session-key');
});

test('a grant passed off as another kind of document is refused', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  b.grant = { ...b.grant, format: FORMATS.borrowToken };
  refused(t, b, vendorPublicKey, 'grant', /not a licd-grant\/1 document/);
  const u = clone(bundle);
  u.grant = { ...u.grant, sig: '' };
  refused(t, u, vendorPublicKey, 'grant', /unsigned/);
});

/** A chain through a hardware dongle, made from the documented pieces (class 'H', emulated: false). */
function hardwareChain(now: number) {
  const vendor = generateVendorKey(ed, random, false);
  const hwSeed = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
  const entitlement = issueEntitlement(
    {
      id: 'ENT-HW-1',
      issuedAt: new Date(now - 86400_000).toISOString(),
      customer: 'Studio',
      dongle: { serial: 'HW-00000042', publicKey: toHex(ed.publicKey(hwSeed)), emulated: false },
      features: [{ name: 'vray_render', version: '6.2', seats: 4, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }],
    },
    vendor,
    ed,
  );
  const sessionSeed = Uint8Array.from({ length: 32 }, (_, i) => i * 3);
  const sessionKey = toHex(ed.publicKey(sessionSeed));
  const dBody = utf8(JSON.stringify(delegationBody({ sessionKey: ed.publicKey(sessionSeed), dongleSerial: 'HW-00000042', emulated: false, notBefore: now - 60_000, notAfter: now + 86400_000 })));
  // The dongle's framing written out byte by byte, as docs/tokens.md gives it.
  const signed = concat(utf8('licd-dongle-sig-v1'), Uint8Array.of(0x00, 0x48, 10), utf8('delegation'), dBody);
  const delegation = delegationEnvelope(dBody, ed.sign(hwSeed, signed), toBase64url);
  const grant = (over: Record<string, unknown> = {}) =>
    sealEnvelope(
      FORMATS.grant,
      { lease: 'L1', feature: 'vray_render', count: 1, user: 'u', host: 'h', clientId: 'c1', issuedAt: new Date(now).toISOString(), until: new Date(now + 60_000).toISOString(), entitlement: 'ENT-HW-1', sessionKey, ...over },
      sessionSeed,
      ed,
    );
  return { vendorPublicKey: fromHex(vendor.publicKey), entitlement, delegation, grant };
}

test('refuseEmulated refuses the chain of the emulated dongle and accepts a hardware one', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const e = refused(t, bundle, vendorPublicKey, 'entitlement', /emulated dongle \(EMU-VERIFY1\)/, { refuseEmulated: true });
  t.is(e.details?.reason, 'emulated');
  const now = Date.now();
  const hw = hardwareChain(now);
  const v = verifyGrant({ grant: hw.grant(), entitlement: hw.entitlement, delegation: hw.delegation }, { vendorPublicKey: hw.vendorPublicKey, ed, now, refuseEmulated: true });
  t.false(v.chain.entitlement.dongle.emulated);
});

test('with now, a grant must be current: not past its until, not from the future', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const g = peekGrant(bundle.grant);
  t.notThrows(() => verifyGrant(bundle, { vendorPublicKey, ed, now: g.issuedAt }));
  const late = t.throws(() => verifyGrant(bundle, { vendorPublicKey, ed, now: g.until + 1 }), { instanceOf: LicdError });
  t.is(late?.details?.reason, 'expired');
  const early = t.throws(() => verifyGrant(bundle, { vendorPublicKey, ed, now: g.issuedAt - 3600_000 }), { instanceOf: LicdError });
  t.is(early?.details?.reason, 'not-yet-valid');
  // Without now, only the issue is checked (heartbeats renew a lease without a new grant).
  t.notThrows(() => verifyGrant(bundle, { vendorPublicKey, ed }));
});

test('an altered issue time is a broken grant; a signed one outside the delegation is a broken link 2', async (t) => {
  const { bundle, vendorPublicKey } = await rig();
  const b = clone(bundle);
  const g = peekGrant(b.grant);
  b.grant = withBody(b.grant, { ...bodyOf(b.grant), issuedAt: new Date(g.issuedAt - 40 * 86400_000).toISOString() });
  refused(t, b, vendorPublicKey, 'grant', /chain link 3 .*signature does not verify/);

  const now = Date.now();
  const hw = hardwareChain(now);
  const old = { grant: hw.grant({ issuedAt: new Date(now - 3600_000).toISOString() }), entitlement: hw.entitlement, delegation: hw.delegation };
  const e = refused(t, old, hw.vendorPublicKey, 'delegation', /chain link 2 \(dongle -> delegation\) does not cover/);
  t.is(e.details?.reason, 'outside-validity');
});

test('a grant for a feature or seat count its license does not have is refused', (t) => {
  const now = Date.now();
  const hw = hardwareChain(now);
  const chain = { entitlement: hw.entitlement, delegation: hw.delegation };
  const opts = { vendorPublicKey: hw.vendorPublicKey, ed };
  t.regex(t.throws(() => verifyGrant({ grant: hw.grant({ feature: 'nuke_i' }), ...chain }, opts))!.message, /has no feature nuke_i/);
  t.regex(t.throws(() => verifyGrant({ grant: hw.grant({ count: 5 }), ...chain }, opts))!.message, /5 seats of vray_render; the license has 4/);
  t.regex(t.throws(() => verifyGrant({ grant: hw.grant({ entitlement: 'ENT-OTHER' }), ...chain }, opts))!.message, /names license ENT-OTHER/);
});

// The delegation re-signed when the dongle comes back keeps the window of its session key.
test('a grant issued long before the dongle was replugged still verifies against the republished chain', async (t) => {
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const lease = await c.checkout('nuke_i');
  const emulator = d.opener.emulator!;
  emulator.unplug();
  await until(() => !d.service.dongleView().present, 'the dongle to be absent');
  clock.advance(10 * 60_000);
  emulator.plug();
  await until(() => d.service.dongleView().present, 'the dongle to be back');
  const delegation = d.chain().delegation;
  t.truthy(delegation);
  t.notThrows(() => verifyGrant({ grant: lease.grant, entitlement: d.chain().entitlement, delegation }, { vendorPublicKey: d.vendorPublicKey, ed }));
});
