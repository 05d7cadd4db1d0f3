import test from 'ava';
import { readFileSync } from 'node:fs';
import nacl from 'tweetnacl';
import { LicdError } from '../src/core/errors.ts';
import { verifyBorrowToken } from '../src/core/tokens.ts';
import { naclEd25519, nodeEd25519 } from '../src/crypto/ed25519.ts';
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
