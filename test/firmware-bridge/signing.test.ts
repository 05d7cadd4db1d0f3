import test from 'ava';
import nacl from 'tweetnacl';
import {
  COUNTER_DOMAIN,
  counterSignedMessage,
  dongleSignedBytes,
  fromHex,
  privateKeyFromSeed,
  publicKeyBytes,
  signEd25519,
  toHex,
  verifyDongleSignature,
} from '../../firmware-bridge/index.ts';

test('dongleSignedBytes: the documented layout', (t) => {
  const bytes = dongleSignedBytes('test', fromHex('01 02 03'), true);
  t.is(
    toHex(bytes),
    [
      '6c6963642d646f6e676c652d7369672d7631', // "licd-dongle-sig-v1" (18 bytes)
      '00', //                                   separator
      '45', //                                   class 'E': emulated
      '04', //                                   domain length
      '74657374', //                             "test"
      '010203', //                               message
    ].join(''),
  );
  t.is(dongleSignedBytes('test', fromHex('01 02 03'), false)[19], 0x48); // 'H': hardware
});

test('dongleSignedBytes refuses domains the dongle would refuse', (t) => {
  t.throws(() => dongleSignedBytes('', new Uint8Array(0), true), { instanceOf: RangeError });
  t.throws(() => dongleSignedBytes('x'.repeat(65), new Uint8Array(0), true), { instanceOf: RangeError });
  t.throws(() => dongleSignedBytes('has space', new Uint8Array(0), true), { instanceOf: RangeError });
  t.notThrows(() => dongleSignedBytes('x'.repeat(64), new Uint8Array(0), true));
});

test('counter message: u64 big-endian value, then the nonce', (t) => {
  const nonce = Uint8Array.from({ length: 16 }, (_, i) => i);
  t.is(toHex(counterSignedMessage(0x1122n, nonce)), '0000000000001122' + '000102030405060708090a0b0c0d0e0f');
  t.throws(() => counterSignedMessage(1n, new Uint8Array(15)), { instanceOf: RangeError });
  t.is(COUNTER_DOMAIN, 'counter');
});

// Test vector printed in PROTOCOL.md: seed 00..1f, domain "test", message 01 02 03, class 'E'.
const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const VECTOR_SIGNATURE =
  'd6c8a3c078e64f81f9ecc97de291a078a86a22f3503cbbd43adb943c3fecfe14743aea9787413e255c27040199710818949d31ce42274350be9153725cd22907';

test('node:crypto and tweetnacl agree on the signature over dongleSignedBytes (test vector)', (t) => {
  const key = privateKeyFromSeed(SEED);
  const pub = publicKeyBytes(key);
  const naclKeys = nacl.sign.keyPair.fromSeed(SEED);
  t.deepEqual(pub, naclKeys.publicKey);
  const signed = dongleSignedBytes('test', fromHex('010203'), true);
  const sig = signEd25519(key, signed);
  t.deepEqual(sig, nacl.sign.detached(signed, naclKeys.secretKey));
  t.is(toHex(sig), VECTOR_SIGNATURE);
  t.true(nacl.sign.detached.verify(signed, sig, pub));
  t.true(verifyDongleSignature({ publicKey: pub, domain: 'test', message: fromHex('010203'), signature: sig, emulated: true }));
  t.false(verifyDongleSignature({ publicKey: pub, domain: 'test', message: fromHex('010203'), signature: sig, emulated: false }));
});

test('more PROTOCOL.md vectors: hardware class, and a counter step', (t) => {
  const key = privateKeyFromSeed(SEED);
  t.is(toHex(publicKeyBytes(key)), '03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8');
  t.is(
    toHex(signEd25519(key, dongleSignedBytes('test', fromHex('010203'), false))),
    'daef29806ea5be5310f49c8d3dd341eed1c0049c32ee035aba521b944172dc55d29741659de91e06fe63ca2ae61bba37f54e0446c7902ec4cce8bf698a682309',
  );
  const nonce = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i);
  const signed = dongleSignedBytes(COUNTER_DOMAIN, counterSignedMessage(5n, nonce), true);
  t.is(toHex(signed), '6c6963642d646f6e676c652d7369672d7631' + '00' + '45' + '07' + '636f756e746572' + '0000000000000005' + 'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
  t.is(
    toHex(signEd25519(key, signed)),
    'd5526b96a2d3aa3c4c4640a77195c4533765c6b165a1597b8eae8d40053b8b4ca8d9f58a344a5bdd0fd1258eb31cb2bfe8f04818b798d236ad579b6fe6510e0c',
  );
});
