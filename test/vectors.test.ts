import test from 'ava';
import { readFileSync } from 'node:fs';
import nacl from 'tweetnacl';
import { LicdError } from '../src/core/errors.ts';
import { createHash } from 'node:crypto';
import { verifyBorrowToken } from '../src/core/tokens.ts';
import { naclEd25519, nodeEd25519 } from '../src/crypto/ed25519.ts';
import { sha256HolderHash } from '../src/crypto/holder.ts';
import { verifyGrant } from '../src/sdk/verify.ts';
import { makeTokenVectors, renderVectors, VECTORS_PATH } from './vectors/token-vectors.ts';

const doc = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as ReturnType<typeof makeTokenVectors>;
const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

test('docs/token-vectors.json is current (regenerate: npx tsx test/vectors/token-vectors.ts --write)', (t) => {
  t.is(readFileSync(VECTORS_PATH, 'utf8'), renderVectors());
});

test('every documented signature verifies with an independent Ed25519 (tweetnacl) from the bytes alone', (t) => {
  for (const s of doc.signatures) {
    t.true(nacl.sign.detached.verify(hex(s.signedBytes), hex(s.signature), hex(s.publicKey)), s.name);
    const flipped = hex(s.signedBytes);
    flipped[flipped.length - 1]! ^= 1;
    t.false(nacl.sign.detached.verify(flipped, hex(s.signature), hex(s.publicKey)), `${s.name} with a flipped byte`);
  }
});

test('the signed bytes of envelopes are ASCII(format) || 0x00 || body, as docs/tokens.md says', (t) => {
  const envs = [doc.bundle.entitlement, doc.bundle.token, doc.request, doc.return];
  const names = ['entitlement (vendor key)', 'borrow token (session key)', 'borrow request (client key)', 'return note (client key)'];
  envs.forEach((e, i) => {
    const expect = Buffer.concat([Buffer.from(e.format, 'ascii'), Buffer.from([0]), Buffer.from(e.body, 'base64url')]).toString('hex');
    t.is(doc.signatures.find((s) => s.name === names[i])!.signedBytes, expect);
  });
  const del = doc.signatures.find((s) => s.name.startsWith('delegation'))!;
  const body = Buffer.from(doc.bundle.delegation.body, 'base64url');
  const expect = Buffer.concat([Buffer.from('licd-dongle-sig-v1', 'ascii'), Buffer.from([0, 0x48, 10]), Buffer.from('delegation'), body]).toString('hex');
  t.is(del.signedBytes, expect);
});

for (const [name, ed] of [['node:crypto', nodeEd25519()], ['tweetnacl', naclEd25519()]] as const) {
  test(`the bundle verifies offline with the vendor key alone; each tampering is refused (${name})`, (t) => {
    const o = { vendorPublicKey: hex(doc.keys.vendor!.publicKey), ed, now: Date.parse(doc.verifyAt), ...doc.binding };
    const v = verifyBorrowToken(doc.bundle, o);
    t.is(v.token.feature, 'vray_render');
    for (const x of doc.tampered) {
      const e = t.throws(() => verifyBorrowToken(x.bundle, o), { instanceOf: LicdError }, x.name);
      t.is(e?.code, 'TOKEN_INVALID', x.name);
    }
    t.throws(() => verifyBorrowToken(doc.bundle, { ...o, refuseEmulated: true, vendorPublicKey: hex(doc.keys.client!.publicKey) }), { message: /chain link 1/ });
  });
}

test('an emulated chain is refused by a verifier told to refuse emulated dongles', (t) => {
  const emu = makeTokenVectors(true);
  const o = { vendorPublicKey: hex(emu.keys.vendor!.publicKey), ed: nodeEd25519(), now: Date.parse(emu.verifyAt), ...emu.binding };
  t.notThrows(() => verifyBorrowToken(emu.bundle, o));
  t.throws(() => verifyBorrowToken(emu.bundle, { ...o, refuseEmulated: true }), { message: /emulated dongle/ });
});

test('time: expired, clock before issue, clock set back past the high-water mark', (t) => {
  const o = { vendorPublicKey: hex(doc.keys.vendor!.publicKey), ed: nodeEd25519(), ...doc.binding };
  const at = Date.parse(doc.verifyAt);
  t.throws(() => verifyBorrowToken(doc.bundle, { ...o, now: at + 80 * 3600_000 }), { message: /expired at/ });
  t.throws(() => verifyBorrowToken(doc.bundle, { ...o, now: at - 86400_000 }), { message: /before the token was issued/ });
  const e = t.throws(() => verifyBorrowToken(doc.bundle, { ...o, now: at, highWater: at + 86400_000 }), { instanceOf: LicdError });
  t.is(e?.code, 'CLOCK_SET_BACK');
  t.regex(e!.message, /set back by 1440 min/);
  // A small NTP correction is no alarm.
  t.notThrows(() => verifyBorrowToken(doc.bundle, { ...o, now: at, highWater: at + 2 * 60_000 }));
});

test('every documented signature verifies with the openssl command line (a C implementation)', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'licd-vec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [i, s] of doc.signatures.entries()) {
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(s.publicKey, 'hex')]);
    writeFileSync(join(dir, `${i}.pem`), `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`);
    writeFileSync(join(dir, `${i}.msg`), Buffer.from(s.signedBytes, 'hex'));
    writeFileSync(join(dir, `${i}.sig`), Buffer.from(s.signature, 'hex'));
    const out = execFileSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(dir, `${i}.pem`), '-rawin', '-in', join(dir, `${i}.msg`), '-sigfile', join(dir, `${i}.sig`)]).toString();
    t.regex(out, /Signature Verified Successfully/, s.name);
  }
});

// ---- grants: alone, and a batch of three under one signature (docs/tokens.md) ---------------------
const sha = (...parts: Buffer[]): Buffer => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();

/** RFC 9162 2.1.3.2, written here again from the RFC: the root an inclusion path leads to, or null. */
function rootFromPath(index: number, size: number, leaf: Buffer, path: Buffer[]): Buffer | null {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = sha(Buffer.of(1), p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else r = sha(Buffer.of(1), r, p);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

test('the batched grants verify from the bytes alone: SHA-256 leaves and nodes (node:crypto), the root signed (tweetnacl)', (t) => {
  const { batch } = doc.grants;
  const sessionKey = hex(doc.keys.session!.publicKey);
  const leaves = batch.grants.map((g) => sha(Buffer.of(0), Buffer.from('licd-grant/1', 'ascii'), Buffer.of(0), Buffer.from(g.body, 'base64url')));
  // Three leaves: the left subtree holds the first two (2 is the largest power of two below 3).
  const root = sha(Buffer.of(1), sha(Buffer.of(1), leaves[0]!, leaves[1]!), leaves[2]!);
  t.is(root.toString('hex'), batch.shown.root);
  t.deepEqual(leaves.map((l) => l.toString('hex')), batch.shown.leafHashes);
  const message = Buffer.concat([Buffer.from('licd-grant-batch/1', 'ascii'), Buffer.of(0), Buffer.from([0, 0, 0, 3]), root]);
  t.is(message.toString('hex'), batch.shown.signedBytes);
  t.is(doc.signatures.find((s) => s.name.startsWith('grant batch'))!.signedBytes, message.toString('hex'), 'the openssl test checks the signature over this message');
  batch.grants.forEach((g, i) => {
    t.deepEqual(g.batch, { index: i, size: 3, path: g.batch!.path });
    t.is(g.sig, batch.grants[0]!.sig, 'one signature for the batch');
    const path = g.batch!.path.map((p) => Buffer.from(p, 'base64url'));
    t.true(path.every((p) => p.length === 32));
    t.deepEqual(rootFromPath(i, 3, leaves[i]!, path), root, `the path of grant ${i} leads to the root`);
    t.true(nacl.sign.detached.verify(message, Buffer.from(g.sig, 'base64url'), sessionKey), `grant ${i}`);
  });
  // The grant worked through in the file: its leaf bytes, hash and path.
  const s = batch.shown;
  const g = batch.grants[s.index]!;
  t.is(s.leafData, Buffer.concat([Buffer.from('licd-grant/1', 'ascii'), Buffer.of(0), Buffer.from(g.body, 'base64url')]).toString('hex'));
  t.is(s.leafHash, sha(Buffer.of(0), Buffer.from(s.leafData, 'hex')).toString('hex'));
  t.deepEqual(s.path, [sha(Buffer.of(1), leaves[0]!, leaves[1]!).toString('hex')], 'the last leaf of three: its one sibling is the node over the first two');
  t.deepEqual(g.batch!.path.map((p) => Buffer.from(p, 'base64url').toString('hex')), s.path);
  // A lone grant is the plain envelope: its signature covers ASCII("licd-grant/1") || 0x00 || body.
  const lone = doc.grants.lone;
  t.deepEqual(Object.keys(lone).sort(), ['body', 'format', 'sig']);
  t.true(nacl.sign.detached.verify(Buffer.concat([Buffer.from('licd-grant/1', 'ascii'), Buffer.of(0), Buffer.from(lone.body, 'base64url')]), Buffer.from(lone.sig, 'base64url'), sessionKey));
});

for (const [name, ed] of [['node:crypto', nodeEd25519()], ['tweetnacl', naclEd25519()]] as const) {
  test(`the grants verify with verifyGrant through the vector chain; each tampered grant is TOKEN_INVALID (${name})`, (t) => {
    const chain = { entitlement: doc.bundle.entitlement, delegation: doc.bundle.delegation };
    const o = { vendorPublicKey: hex(doc.keys.vendor!.publicKey), ed, now: Date.parse(doc.verifyAt) };
    for (const g of [doc.grants.lone, ...doc.grants.batch.grants]) t.is(verifyGrant({ grant: g, ...chain }, o).grant.feature, 'vray_render');
    t.true(doc.grants.tampered.length >= 5);
    for (const x of doc.grants.tampered) {
      const e = t.throws(() => verifyGrant({ grant: x.grant, ...chain }, o), { instanceOf: LicdError }, x.name);
      t.is(e?.code, 'TOKEN_INVALID', x.name);
      t.is(e?.details?.link, 'grant', x.name);
    }
  });
}

test('a holder secret hashes as SHA-256 of "licd-holder/1\\0" and the secret, base64url: leases stored by earlier builds keep their holder', (t) => {
  for (const secret of ['Q2hhbmdlIG1lOiBhIHJhbmRvbSBob2xkZXIgc2VjcmV0', 'x'.repeat(22), 'ÿ-not-ascii']) {
    t.is(sha256HolderHash(secret), createHash('sha256').update('licd-holder/1\0').update(secret).digest('base64url'), secret);
  }
  t.is(sha256HolderHash('Q2hhbmdlIG1lOiBhIHJhbmRvbSBob2xkZXIgc2VjcmV0'), createHash('sha256').update(Buffer.from('licd-holder/1\0Q2hhbmdlIG1lOiBhIHJhbmRvbSBob2xkZXIgc2VjcmV0', 'utf8')).digest('base64url'));
});
