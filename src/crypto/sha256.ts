import { createHash, hash } from 'node:crypto';
import type { Sha256 } from '../core/audit.ts';

/** SHA-256 from node:crypto, for the audit chain (src/core/audit.ts takes the hash injected). */
export const sha256: Sha256 = Object.assign((data: Uint8Array | string) => createHash('sha256').update(data).digest(), {
  hex: (text: string) => hash('sha256', text, 'hex'),
});

/**
 * SHA-256 of bytes in one call (node's one-shot hash: about a third of a Hash object's cost), for
 * the Merkle trees of batched grants (src/core/grant-batch.ts): two hashes per grant.
 */
export const sha256Bytes = (data: Uint8Array): Uint8Array => hash('sha256', data, 'buffer');
