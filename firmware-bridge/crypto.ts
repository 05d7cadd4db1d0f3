/**
 * Ed25519 through node:crypto (about 100x faster than tweetnacl here; the signatures are the same
 * bytes because Ed25519 is deterministic). Keys are built from raw 32-byte seeds and public keys
 * by prefixing the fixed DER headers of PKCS#8 and SPKI for Ed25519.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { dongleSignedBytes } from './protocol/signing.ts';

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new RangeError(`Ed25519 seed must be 32 bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

export function publicKeyBytes(privateKey: KeyObject): Uint8Array {
  const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return Uint8Array.from(der.subarray(der.length - 32));
}

export function publicKeyFromBytes(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== 32) throw new RangeError(`Ed25519 public key must be 32 bytes, got ${publicKey.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

export function signEd25519(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return Uint8Array.from(sign(null, message, privateKey));
}

export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  return verify(null, message, publicKeyFromBytes(publicKey), signature);
}

/**
 * Checks a dongle signature. `emulated` says which class byte to expect; a production verifier
 * passes false and so rejects every emulator signature.
 */
export function verifyDongleSignature(args: {
  publicKey: Uint8Array;
  domain: string;
  message: Uint8Array;
  signature: Uint8Array;
  emulated: boolean;
}): boolean {
  return verifyEd25519(args.publicKey, dongleSignedBytes(args.domain, args.message, args.emulated), args.signature);
}
