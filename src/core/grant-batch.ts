/**
 * Grants signed in batches (docs/tokens.md, "Grants signed in a batch"). The grants of one group
 * commit are made in the same event-loop turn; instead of one Ed25519 signature each, the session
 * key signs the root of a Merkle tree (RFC 9162, src/core/merkle.ts) over them once, and each grant
 * carries the inclusion proof of its leaf:
 *
 *     leaf      = ASCII("licd-grant/1") || 0x00 || body bytes   (what a lone grant's signature covers)
 *     signed    = ASCII("licd-grant-batch/1") || 0x00 || uint32be(size) || root
 *     envelope  = {format, body, sig, batch: {index, size, path: [base64url 32 bytes, ...]}}
 *
 * A batch of one is the plain envelope (no `batch`), signed as before.
 *
 * Pure: SHA-256, Ed25519 and the scheduler come in from outside.
 */
import { LicdError, type ErrorCode } from './errors.ts';
import { concat, fromBase64url, toBase64url, utf8 } from './bytes.ts';
import { inclusionPathLength, leafHash, MAX_TREE_SIZE, merkleTree, rootFromInclusionPath, type HashBytes } from './merkle.ts';
import type { Ed25519 } from './ports.ts';
import { envelopeSignedBytes, FORMATS, parseEnvelope, verifyEnvelope, type SignedEnvelope } from './signed.ts';

/** The domain separator of a batch signature (never the format of an envelope). */
export const GRANT_BATCH_FORMAT = FORMATS.grantBatch;

/** The daemon signs at most this many grants with one signature; more go in further batches. */
export const MAX_GRANT_BATCH = 1024;

/** The proof a grant of a batch of two or more carries. */
export interface GrantBatchProof {
  /** The grant's leaf, 0-based, in the order the grants were asked for. */
  index: number;
  /** The number of grants (leaves) the signature covers, 2..2^32-1. */
  size: number;
  /** The inclusion path (RFC 9162 2.1.3.1): 32-byte sibling hashes, base64url, from the leaf up. */
  path: string[];
}

/** A grant: the plain envelope, or (in a batch of two or more) the envelope with its proof. */
export interface GrantEnvelope extends SignedEnvelope {
  batch?: GrantBatchProof;
}

/** The leaf hash of a grant body: SHA-256(0x00 || ASCII("licd-grant/1") || 0x00 || body). */
export function grantLeafHash(sha256: HashBytes, body: Uint8Array): Uint8Array {
  return leafHash(sha256, envelopeSignedBytes(FORMATS.grant, body));
}

/** What the session key signs for a batch: ASCII("licd-grant-batch/1") || 0x00 || uint32be(size) || root. */
export function batchSignedBytes(size: number, root: Uint8Array): Uint8Array {
  if (!Number.isInteger(size) || size < 2 || size > MAX_TREE_SIZE) throw new RangeError(`a grant batch has 2..${MAX_TREE_SIZE} grants, not ${size}`);
  if (root.length !== 32) throw new RangeError('a Merkle root is 32 bytes');
  const n = new Uint8Array(4);
  new DataView(n.buffer).setUint32(0, size);
  return envelopeSignedBytes(GRANT_BATCH_FORMAT, concat(n, root));
}

/**
 * Signs grant bodies with one signature: the envelopes in the order of `bodies`. One body gives
 * the plain envelope (its own signature, no proof).
 */
export function sealGrants(bodies: readonly unknown[], seed: Uint8Array, ed: Ed25519, sha256: HashBytes): GrantEnvelope[] {
  const bytes = bodies.map((b) => utf8(JSON.stringify(b)));
  if (bytes.length === 0) return [];
  if (bytes.length === 1) {
    const body = bytes[0]!;
    return [{ format: FORMATS.grant, body: toBase64url(body), sig: toBase64url(ed.sign(seed, envelopeSignedBytes(FORMATS.grant, body))) }];
  }
  const { root, paths } = merkleTree(
    sha256,
    bytes.map((b) => grantLeafHash(sha256, b)),
  );
  const sig = toBase64url(ed.sign(seed, batchSignedBytes(bytes.length, root)));
  // A node is the sibling on the paths of every leaf under its sibling (half the tree for the
  // root's children): each of the 2n - 1 nodes is encoded once, not once per path it is on.
  const encoded = new Map<Uint8Array, string>();
  const encode = (h: Uint8Array): string => {
    let s = encoded.get(h);
    if (s === undefined) encoded.set(h, (s = toBase64url(h)));
    return s;
  };
  return bytes.map((body, index) => ({
    format: FORMATS.grant,
    body: toBase64url(body),
    sig,
    batch: { index, size: bytes.length, path: paths[index]!.map(encode) },
  }));
}

/** A batch proof read and checked for shape (not yet for what it proves). */
export interface ParsedBatchProof {
  index: number;
  size: number;
  path: Uint8Array[];
}

/**
 * Reads the `batch` of a grant envelope: null when it has none (a lone grant). Anything else that
 * is not a well-formed proof throws LicdError(code, …, {reason: 'malformed'}), never another error.
 */
export function parseBatchProof(value: unknown, code: ErrorCode): ParsedBatchProof | null {
  if (value === undefined) return null;
  const bad = (why: string): LicdError => new LicdError(code, `${FORMATS.grant}: the batch proof ${why}`, { reason: 'malformed' });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('must be an object {index, size, path}');
  const v = value as Record<string, unknown>;
  const extra = Object.keys(v).filter((k) => k !== 'index' && k !== 'size' && k !== 'path');
  if (extra.length > 0) throw bad(`has unknown fields (${extra.slice(0, 3).join(', ')}); it has only index, size and path`);
  const { index, size, path } = v;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 2 || size > MAX_TREE_SIZE) {
    throw bad(`size must be a whole number from 2 to ${MAX_TREE_SIZE} (a lone grant has no batch), got ${JSON.stringify(size ?? null)}`);
  }
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= size) {
    throw bad(`index must be a whole number from 0 to size - 1 (${size - 1}), got ${JSON.stringify(index ?? null)}`);
  }
  if (!Array.isArray(path)) throw bad('path must be an array of base64url hashes');
  const want = inclusionPathLength(index, size)!;
  if (path.length !== want) throw bad(`path must have ${want} entries for leaf ${index} of ${size}, it has ${path.length}`);
  const hashes = path.map((p, i) => {
    let h: Uint8Array | null = null;
    if (typeof p === 'string') {
      try {
        h = fromBase64url(p);
      } catch {
        h = null;
      }
    }
    // The canonical base64url of 32 bytes only: one proof has one spelling.
    if (h === null || h.length !== 32 || toBase64url(h) !== p) throw bad(`path[${i}] must be 32 bytes in base64url (43 characters, no padding)`);
    return h;
  });
  return { index, size, path: hashes };
}

/**
 * Verifies a grant envelope, lone or batched, with the session public key and returns its body's
 * JSON. A batched grant: the leaf is computed from the body, the path walked up to the root
 * (RFC 9162 2.1.3.2), and the signature checked over the batch message of that root and size.
 * Throws LicdError(code) with a `reason` (unsigned, malformed, bad-signature).
 */
export function verifyGrantEnvelope(value: unknown, publicKey: Uint8Array, ed: Ed25519, sha256: HashBytes, code: ErrorCode, signerName: string): unknown {
  const proof = parseBatchProof(typeof value === 'object' && value !== null ? (value as Record<string, unknown>).batch : undefined, code);
  // A lone grant is an envelope like any other.
  if (proof === null) return verifyEnvelope(value, FORMATS.grant, publicKey, ed, code, signerName);
  const { body, sig, json } = parseEnvelope(value, FORMATS.grant, code);
  const root = rootFromInclusionPath(sha256, proof.index, proof.size, grantLeafHash(sha256, body), proof.path);
  // parseBatchProof checked the path's length, so a root is always found; a null would be a bug there.
  if (root === null || !ed.verify(publicKey, batchSignedBytes(proof.size, root), sig)) {
    throw new LicdError(
      code,
      `${FORMATS.grant}: the batch signature does not verify with the ${signerName} key over the root the grant's proof leads to (the grant, its proof or the signature altered, or signed by another key)`,
      { reason: 'bad-signature' },
    );
  }
  return json;
}

/**
 * Collects the grant bodies asked for in one event-loop turn and signs them together when
 * `defer` runs (the daemon: setImmediate, after the store resolved its whole group commit):
 * one tree, one signature per batch of at most `maxBatch`. If signing throws, every grant of that
 * batch is rejected with the error.
 */
export class GrantBatcher {
  private queue: Array<{ body: unknown; resolve: (g: GrantEnvelope) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  private readonly maxBatch: number;

  constructor(
    private readonly o: {
      seal: (bodies: readonly unknown[]) => GrantEnvelope[];
      defer: (run: () => void) => void;
      maxBatch?: number;
      /** Told the size of each batch signed (metrics, tests). */
      onBatch?: (size: number) => void;
    },
  ) {
    this.maxBatch = Math.max(1, o.maxBatch ?? MAX_GRANT_BATCH);
  }

  /** The grant for `body` (built by the caller now, so issuedAt is the time the grant is made). */
  sign(body: unknown): Promise<GrantEnvelope> {
    return new Promise<GrantEnvelope>((resolve, reject) => {
      this.queue.push({ body, resolve, reject });
      this.schedule();
    });
  }

  /** Grants asked for and not yet signed. */
  get pending(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.o.defer(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue.splice(0, this.maxBatch);
    // The rest in a later turn, so answers and other I/O go out between batches.
    if (this.queue.length > 0) this.schedule();
    if (batch.length === 0) return;
    let grants: GrantEnvelope[];
    try {
      grants = this.o.seal(batch.map((b) => b.body));
      if (grants.length !== batch.length) throw new Error(`signed ${grants.length} grants for ${batch.length} asked`);
    } catch (e) {
      for (const b of batch) b.reject(e);
      return;
    }
    this.o.onBatch?.(batch.length);
    batch.forEach((b, i) => b.resolve(grants[i]!));
  }
}
