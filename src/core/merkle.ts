/**
 * Merkle trees as RFC 9162 (Certificate Transparency v2), section 2.1, defines them: the hash of a
 * leaf is SHA-256(0x00 || data), of an inner node SHA-256(0x01 || left || right), and the tree over
 * n > 1 leaves splits them at k, the largest power of two below n (the left subtree is complete).
 * An inclusion proof (audit path) is the list of sibling hashes from the leaf up to the root.
 *
 * Pure: SHA-256 comes in as a function, so the core stays free of node I/O modules. The daemon uses
 * this to sign the grants of one group commit with one signature (src/core/grant-batch.ts).
 */
import { concat } from './bytes.ts';

/** SHA-256 of bytes (node:crypto in the daemon and the SDK; anything else in a test). */
export type HashBytes = (data: Uint8Array) => Uint8Array;

/** Tree sizes and indexes are whole numbers below 2^32 here (a batch says its size in 4 bytes). */
export const MAX_TREE_SIZE = 0xffff_ffff;

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** SHA-256(0x00 || data). */
export function leafHash(sha256: HashBytes, data: Uint8Array): Uint8Array {
  return sha256(concat(LEAF_PREFIX, data));
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(sha256: HashBytes, left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(concat(NODE_PREFIX, left, right));
}

/** The largest power of two strictly below n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * A tree over leaf hashes: its root and the inclusion path of every leaf, all in one pass
 * (n - 1 node hashes; each path is ordered from the leaf's sibling up to the root's child).
 */
export function merkleTree(sha256: HashBytes, leaves: readonly Uint8Array[]): { root: Uint8Array; paths: Uint8Array[][] } {
  if (leaves.length === 0) throw new RangeError('a Merkle tree needs at least one leaf here');
  if (leaves.length > MAX_TREE_SIZE) throw new RangeError(`a Merkle tree of at most ${MAX_TREE_SIZE} leaves`);
  const paths: Uint8Array[][] = leaves.map(() => []);
  // The subtree over leaves[lo, hi): its hash; each leaf under it learns its sibling on the way up.
  const build = (lo: number, hi: number): Uint8Array => {
    if (hi - lo === 1) return leaves[lo]!;
    const mid = lo + splitPoint(hi - lo);
    const left = build(lo, mid);
    const right = build(mid, hi);
    for (let i = lo; i < mid; i++) paths[i]!.push(right);
    for (let i = mid; i < hi; i++) paths[i]!.push(left);
    return nodeHash(sha256, left, right);
  };
  return { root: build(0, leaves.length), paths };
}

/** The length an inclusion path of leaf `index` in a tree of `size` leaves has; null when index >= size. */
export function inclusionPathLength(index: number, size: number): number | null {
  if (!isTreeIndex(size) || size < 1 || !isTreeIndex(index) || index >= size) return null;
  // The loop of RFC 9162 2.1.3.2 without the hashing: each step consumes one path entry.
  let fn = index;
  let sn = size - 1;
  let length = 0;
  while (sn !== 0) {
    // (fn odd or fn = sn) and fn even: the right-most node of its level, which moves up unhashed.
    if (fn === sn && fn % 2 === 0) {
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
    length++;
  }
  return length;
}

function isTreeIndex(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0 && x <= MAX_TREE_SIZE;
}

/**
 * The root an inclusion path leads to from leaf `index` (its hash `leaf`) in a tree of `size`
 * leaves, exactly as RFC 9162 section 2.1.3.2 verifies a proof; null when the proof cannot hold
 * (index >= size, a path too long or too short). The caller compares the root with the one it trusts.
 */
export function rootFromInclusionPath(sha256: HashBytes, index: number, size: number, leaf: Uint8Array, path: readonly Uint8Array[]): Uint8Array | null {
  if (!isTreeIndex(size) || !isTreeIndex(index) || index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(sha256, p, r);
      // A right-most node with no sibling at this level moves up without hashing.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(sha256, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

/** Whether `path` proves leaf `index` (hash `leaf`) is in the tree of `size` leaves whose root is `root`. */
export function verifyInclusion(sha256: HashBytes, index: number, size: number, leaf: Uint8Array, path: readonly Uint8Array[], root: Uint8Array): boolean {
  const r = rootFromInclusionPath(sha256, index, size, leaf, path);
  return r !== null && equalBytes(r, root);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
