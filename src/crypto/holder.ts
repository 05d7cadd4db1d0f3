import { createHash } from 'node:crypto';
import type { HolderHash } from '../core/ports.ts';

/**
 * SHA-256 of a holder secret, domain-separated: what a lease stores in place of the secret. The
 * secret has at least 128 random bits, so a plain hash is enough (no salt or stretching).
 */
export const sha256HolderHash: HolderHash = (secret) => createHash('sha256').update('licd-holder/1\0').update(secret).digest('base64url');
