import { createPrivateKey, createPublicKey, randomBytes, randomFillSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import type { Ed25519, Random } from '../core/ports.ts';

// DER prefixes that wrap a raw 32-byte Ed25519 seed (PKCS#8) or public key (SPKI) for node:crypto.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * Ed25519 through node:crypto: about 100 times faster than tweetnacl here, with identical
 * signatures (Ed25519 is deterministic). Keys are cached because DER parsing dominates otherwise.
 */
export function nodeEd25519(): Ed25519 {
  const privKey = keyCache(64, (seed) => createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }));
  const pubKey = keyCache(1024, (pk) => createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pk]), format: 'der', type: 'spki' }));
  return {
    publicKey(seed) {
      const der = createPublicKey(privKey(seed)).export({ format: 'der', type: 'spki' });
      return new Uint8Array(der.subarray(der.length - 32));
    },
    sign(seed, message) {
      return new Uint8Array(nodeSign(null, message, privKey(seed)));
    },
    verify(publicKey, message, signature) {
      if (publicKey.length !== 32 || signature.length !== 64) return false;
      try {
        return nodeVerify(null, message, pubKey(publicKey), signature);
      } catch {
        return false;
      }
    },
  };
}

/** Key objects by their raw bytes, dropped wholesale when the cache is full. */
function keyCache(max: number, make: (raw: Uint8Array) => KeyObject): (raw: Uint8Array) => KeyObject {
  const cache = new Map<string, KeyObject>();
  return (raw) => {
    const k = Buffer.from(raw).toString('hex');
    let key = cache.get(k);
    if (!key) {
      if (cache.size >= max) cache.clear();
      key = make(raw);
      cache.set(k, key);
    }
    return key;
  };
}

/** Ed25519 through tweetnacl: the independent implementation clients and tests cross-check with. */
export function naclEd25519(): Ed25519 {
  return {
    publicKey: (seed) => nacl.sign.keyPair.fromSeed(seed).publicKey,
    sign: (seed, message) => nacl.sign.detached(message, nacl.sign.keyPair.fromSeed(seed).secretKey),
    verify: (publicKey, message, signature) =>
      publicKey.length === 32 && signature.length === 64 && nacl.sign.detached.verify(message, signature, publicKey),
  };
}

/**
 * Random bytes from node's CSPRNG. Each call of `randomBytes` costs about 6 µs of CPU here
 * whatever its size (a job set up in C++, OpenSSL's generator locked), and every checkout draws a
 * lease id: 9 bytes, 6 µs, as much as the rest of the seat table's work for it. Requests under 32
 * bytes (ids, nonces) are served from a pool of 4 KiB drawn at once, as node's own randomUUID
 * does: the same generator's output, fetched in bulk, each byte handed out once and the pool
 * wiped as it is used. Keys and seeds (32 bytes and more) are drawn on their own, so no key's
 * bytes wait in memory before they are needed.
 */
const POOL_BYTES = 4096;
const POOLED_BELOW = 32;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;

export const systemRandom: Random = {
  bytes(n) {
    if (n >= POOLED_BELOW) return new Uint8Array(randomBytes(n));
    if (poolAt + n > POOL_BYTES) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const out = new Uint8Array(n);
    out.set(pool.subarray(poolAt, poolAt + n));
    pool.fill(0, poolAt, poolAt + n);
    poolAt += n;
    return out;
  },
};
