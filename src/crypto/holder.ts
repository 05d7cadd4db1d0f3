import { hash } from 'node:crypto';
import type { HolderHash } from '../core/ports.ts';

/**
 * SHA-256 of a holder secret, domain-separated: what a lease stores in place of the secret. The
 * secret has at least 128 random bits, so a plain hash is enough (no salt or stretching).
 * `crypto.hash` (node 20.12+) is the one-shot form: every request with a holder hashes it, and
 * the one-shot costs about a third of createHash().update().digest() (docs/performance.md).
 */
export const sha256HolderHash: HolderHash = (secret) => hash('sha256', 'licd-holder/1\0' + secret, 'base64url');
