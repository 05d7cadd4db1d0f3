/**
 * Builds docs/token-vectors.json from fixed keys and times, so an independent implementation
 * (libsodium in any language) can check every signature of the chain byte for byte.
 * `npx tsx test/vectors/token-vectors.ts --write` rewrites the file; a test keeps it current.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromBase64url, toBase64url, toHex, utf8 } from '../../src/core/bytes.ts';
import { entitlementBodyOf, parseEntitlementBody, type EntitlementBody } from '../../src/core/entitlement.ts';
import { batchSignedBytes, grantLeafHash, sealGrants, type GrantEnvelope } from '../../src/core/grant-batch.ts';
import { merkleTree } from '../../src/core/merkle.ts';
import { envelopeSignedBytes, FORMATS, sealEnvelope, type SignedEnvelope } from '../../src/core/signed.ts';
import { sealBorrowRequest, sealReturn, sealToken, type TokenBundle } from '../../src/core/tokens.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../../src/core/trust.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { sha256Bytes } from '../../src/crypto/sha256.ts';

const ed = nodeEd25519();
const seed = (b: number) => new Uint8Array(32).fill(b);
export const VECTOR_KEYS = { vendor: seed(0x11), dongle: seed(0x22), session: seed(0x33), client: seed(0x44) };
const T = Date.parse('2026-06-01T09:00:00.000Z');
const HOST_ID = '0123456789abcdef0123456789abcdef';

function sigEntry(name: string, publicKey: Uint8Array, signed: Uint8Array, sig: string) {
  return { name, publicKey: toHex(publicKey), signedBytes: toHex(signed), signature: toHex(fromBase64url(sig)) };
}

function alterBody(env: SignedEnvelope, edit: (j: Record<string, unknown>) => void): SignedEnvelope {
  const j = JSON.parse(new TextDecoder().decode(fromBase64url(env.body))) as Record<string, unknown>;
  edit(j);
  return { ...env, body: toBase64url(utf8(JSON.stringify(j))) };
}

export function makeTokenVectors(emulated = false) {
  const pk = (s: Uint8Array) => ed.publicKey(s);
  const entBody: EntitlementBody = {
    id: 'ENT-VECTORS-1',
    issuedAt: new Date(T - 86400_000).toISOString(),
    customer: 'Test Vector Studio',
    dongle: { serial: 'HW-00000001', publicKey: toHex(pk(VECTOR_KEYS.dongle)), emulated },
    features: [{ name: 'vray_render', product: 'V-Ray Render Node', version: '6.2', seats: 4, expires: '2027-06-01T00:00:00.000Z', type: 'render', borrow: { allowed: true, maxHours: 336 } }],
  };
  // Round-trip through the parser so the vector body is exactly what the tools produce.
  const body = entitlementBodyOf(parseEntitlementBody(entBody));
  const entitlement = sealEnvelope(FORMATS.entitlement, body, VECTOR_KEYS.vendor, ed);

  const delBytes = utf8(JSON.stringify(delegationBody({ sessionKey: pk(VECTOR_KEYS.session), dongleSerial: 'HW-00000001', emulated, notBefore: T - 300_000, notAfter: T + 30 * 86400_000 })));
  const delSigned = dongleSignedBytes(DELEGATION_DOMAIN, delBytes, emulated);
  const delegation = delegationEnvelope(delBytes, ed.sign(VECTOR_KEYS.dongle, delSigned), toBase64url);

  const token = sealToken(
    {
      tokenId: 'tok-1',
      borrowId: 'bor-1',
      feature: 'vray_render',
      product: 'V-Ray Render Node',
      version: '6.2',
      type: 'render',
      count: 1,
      user: 'alice',
      hostId: HOST_ID,
      hostName: 'laptop-7',
      clientKey: toHex(pk(VECTOR_KEYS.client)),
      issuedAt: T,
      expiresAt: T + 72 * 3600_000,
      entitlementId: 'ENT-VECTORS-1',
      dongleSerial: 'HW-00000001',
      sessionKey: toHex(pk(VECTOR_KEYS.session)),
    },
    VECTOR_KEYS.session,
    ed,
  );
  const bundle: TokenBundle = { format: 'licd-token-bundle/1', token, entitlement, delegation };

  const request = sealBorrowRequest(
    { requestId: 'req-1', items: [{ feature: 'vray_render', count: 1 }], hours: 72, user: 'alice', hostId: HOST_ID, hostName: 'laptop-7', clientKey: toHex(pk(VECTOR_KEYS.client)), autoRenew: true, createdAt: new Date(T - 1000).toISOString() },
    VECTOR_KEYS.client,
    ed,
  );
  const ret = sealReturn({ borrowIds: ['bor-1'], hostId: HOST_ID, user: 'alice', clientKey: toHex(pk(VECTOR_KEYS.client)), createdAt: new Date(T + 3600_000).toISOString() }, VECTOR_KEYS.client, ed);
  const bytesOf = (e: SignedEnvelope) => envelopeSignedBytes(e.format, fromBase64url(e.body));

  const otherSeed = seed(0x55);
  const tampered: Array<{ name: string; bundle: TokenBundle; brokenLink: string }> = [
    { name: 'token body altered (count 1 -> 2), signature kept', bundle: { ...bundle, token: alterBody(token, (j) => (j.count = 2)) }, brokenLink: 'token' },
    { name: 'token moved to another host id', bundle: { ...bundle, token: alterBody(token, (j) => (j.hostId = 'ffffffffffffffffffffffffffffffff')) }, brokenLink: 'token' },
    { name: 'token expiry extended', bundle: { ...bundle, token: alterBody(token, (j) => (j.expiresAt = '2026-12-01T09:00:00.000Z')) }, brokenLink: 'token' },
    { name: 'token signed by another session key', bundle: { ...bundle, token: { ...token, sig: sealToken({ ...JSON.parse(new TextDecoder().decode(fromBase64url(token.body))), issuedAt: T, expiresAt: T + 72 * 3600_000 }, otherSeed, ed).sig } }, brokenLink: 'token' },
    { name: 'delegation altered (other session key)', bundle: { ...bundle, delegation: alterBody(delegation, (j) => (j.sessionKey = toHex(pk(otherSeed)))) }, brokenLink: 'delegation' },
    { name: `delegation signed with the other class byte (${emulated ? "'H' instead of 'E'" : "'E' (emulated) instead of 'H'"})`, bundle: { ...bundle, delegation: { ...delegation, sig: toBase64url(ed.sign(VECTOR_KEYS.dongle, dongleSignedBytes(DELEGATION_DOMAIN, delBytes, !emulated))) } }, brokenLink: 'delegation' },
    { name: 'entitlement altered (seats 4 -> 400)', bundle: { ...bundle, entitlement: alterBody(entitlement, (j) => ((j.features as Array<{ seats: number }>)[0]!.seats = 400)) }, brokenLink: 'entitlement' },
    { name: 'entitlement re-signed by another vendor key', bundle: { ...bundle, entitlement: sealEnvelope(FORMATS.entitlement, body, otherSeed, ed) }, brokenLink: 'entitlement' },
    { name: 'signature removed', bundle: { ...bundle, token: { ...token, sig: '' } }, brokenLink: 'token' },
  ];

  // Grants (session key): one alone (the plain envelope), and a batch of three signed once over
  // the root of their Merkle tree, each with its proof (docs/tokens.md, "Grants signed in a batch").
  const grantBody = (i: number, user: string, host: string) => ({
    lease: `lease-${i}`,
    feature: 'vray_render',
    count: 1,
    user,
    host,
    clientId: `licd-${host}-${i}`,
    issuedAt: new Date(T + 60_000).toISOString(),
    until: new Date(T + 2 * 3600_000).toISOString(),
    entitlement: 'ENT-VECTORS-1',
    sessionKey: toHex(pk(VECTOR_KEYS.session)),
  });
  const [lone] = sealGrants([grantBody(0, 'alice', 'node-7')], VECTOR_KEYS.session, ed, sha256Bytes) as [GrantEnvelope];
  const batchBodies = [grantBody(1, 'alice', 'node-7'), grantBody(2, 'bob', 'node-8'), grantBody(3, 'carol', 'node-9')];
  const batched = sealGrants(batchBodies, VECTOR_KEYS.session, ed, sha256Bytes);
  const leafData = batched.map((g) => envelopeSignedBytes(g.format, fromBase64url(g.body)));
  const leafHashes = batched.map((g) => grantLeafHash(sha256Bytes, fromBase64url(g.body)));
  const { root } = merkleTree(sha256Bytes, leafHashes);
  const rootSigned = batchSignedBytes(batched.length, root);
  const shown = batched[2]!;
  const alterProof = (g: GrantEnvelope, edit: (b: NonNullable<GrantEnvelope['batch']>) => void): GrantEnvelope => {
    const b = structuredClone(g.batch!);
    edit(b);
    return { ...g, batch: b };
  };
  const grants = {
    lone,
    batch: {
      grants: batched,
      // Grant 2 of 3 worked through: leaf, the nodes of its path, the root, the signed message.
      shown: {
        index: 2,
        leafData: toHex(leafData[2]!),
        leafHash: toHex(leafHashes[2]!),
        path: shown.batch!.path.map((p) => toHex(fromBase64url(p))),
        leafHashes: leafHashes.map(toHex),
        root: toHex(root),
        signedBytes: toHex(rootSigned),
      },
    },
    tampered: [
      { name: 'batched grant body altered (count 1 -> 2), proof and signature kept', grant: alterBody(batched[0]!, (j) => (j.count = 2)) },
      { name: 'batched grant moved to another index', grant: alterProof(batched[0]!, (b) => (b.index = 1)) },
      { name: 'batched grant with a path entry altered', grant: alterProof(shown, (b) => (b.path[0] = toBase64url(new Uint8Array(32).fill(0xab)))) },
      { name: 'batched grant claiming a batch of 4', grant: alterProof(shown, (b) => (b.size = 4)) },
      { name: 'batched grant with its proof removed', grant: { format: shown.format, body: shown.body, sig: shown.sig } },
      { name: 'batched grant with index = size (malformed)', grant: alterProof(shown, (b) => (b.index = 3)) },
      { name: 'batched grant with a path one entry short (malformed)', grant: alterProof(shown, (b) => b.path.pop()) },
    ],
  };

  return {
    about:
      'licd token test vectors. Every signature is Ed25519 (RFC 8032) over the exact bytes given in signedBytes. ' +
      'Envelopes sign ASCII(format) || 0x00 || body bytes; the dongle signs "licd-dongle-sig-v1" || 0x00 || class || len(domain) || domain || message. ' +
      'A batch of grants signs "licd-grant-batch/1" || 0x00 || uint32be(size) || the RFC 9162 Merkle root over the grants\' envelope bytes. ' +
      'See docs/tokens.md. Keys are fixed test keys: never use them for anything else.',
    keys: Object.fromEntries(Object.entries(VECTOR_KEYS).map(([k, s]) => [k, { seed: toHex(s), publicKey: toHex(pk(s)) }])),
    verifyAt: new Date(T + 3600_000).toISOString(),
    binding: { hostId: HOST_ID, user: 'alice', clientKey: toHex(pk(VECTOR_KEYS.client)) },
    signatures: [
      sigEntry('entitlement (vendor key)', pk(VECTOR_KEYS.vendor), bytesOf(entitlement), entitlement.sig),
      sigEntry(`delegation (dongle key, class ${emulated ? "'E' emulated" : "'H' hardware"})`, pk(VECTOR_KEYS.dongle), delSigned, delegation.sig),
      sigEntry('borrow token (session key)', pk(VECTOR_KEYS.session), bytesOf(token), token.sig),
      sigEntry('borrow request (client key)', pk(VECTOR_KEYS.client), bytesOf(request), request.sig),
      sigEntry('return note (client key)', pk(VECTOR_KEYS.client), bytesOf(ret), ret.sig),
      sigEntry('grant alone (session key)', pk(VECTOR_KEYS.session), bytesOf(lone), lone.sig),
      sigEntry('grant batch of 3 (session key, over the Merkle root)', pk(VECTOR_KEYS.session), rootSigned, shown.sig),
    ],
    bundle,
    request,
    return: ret,
    tampered,
    grants,
  };
}

export const VECTORS_PATH = fileURLToPath(new URL('../../docs/token-vectors.json', import.meta.url));

export function renderVectors(): string {
  return JSON.stringify(makeTokenVectors(), null, 2) + '\n';
}

if (process.argv.includes('--write')) {
  writeFileSync(VECTORS_PATH, renderVectors());
  process.stdout.write(`wrote ${VECTORS_PATH}\n`);
}
