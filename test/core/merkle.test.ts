/**
 * The RFC 9162 Merkle tree of src/core/merkle.ts against a plain recursive reading of the RFC
 * written here (MTH and PATH of section 2.1, with node:crypto's SHA-256): roots and paths of trees
 * of 1..33 leaves agree, every proof verifies, and a changed leaf, index, path entry or order of
 * entries does not.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { inclusionPathLength, leafHash, merkleTree, rootFromInclusionPath, verifyInclusion } from '../../src/core/merkle.ts';

const sha = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const sha256 = (data: Uint8Array): Uint8Array => sha(data);

// ---- the reference: RFC 9162 section 2.1.1 and 2.1.3.1, word for word --------------------------
const largestPowerOfTwoBelow = (n: number): number => 2 ** Math.floor(Math.log2(n - 1));
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return sha(Buffer.alloc(0));
  if (d.length === 1) return sha(Buffer.of(0x00), d[0]!);
  const k = largestPowerOfTwoBelow(d.length);
  return sha(Buffer.of(0x01), mth(d.slice(0, k)), mth(d.slice(k)));
}
function refPath(m: number, d: Buffer[]): Buffer[] {
  if (d.length === 1) return [];
  const k = largestPowerOfTwoBelow(d.length);
  return m < k ? [...refPath(m, d.slice(0, k)), mth(d.slice(k))] : [...refPath(m - k, d.slice(k)), mth(d.slice(0, k))];
}

const data = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`leaf ${i} of ${n}`));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const flip = (b: Uint8Array, at = 0): Uint8Array => {
  const c = Uint8Array.from(b);
  c[at]! ^= 0x01;
  return c;
};

test('the reference split is the largest power of two below n', (t) => {
  t.deepEqual([2, 3, 4, 5, 8, 9, 33].map(largestPowerOfTwoBelow), [1, 2, 2, 4, 4, 8, 32]);
});

test('leaf and node hashes carry the 0x00 and 0x01 prefixes', (t) => {
  const d = Buffer.from('abc');
  t.is(hex(leafHash(sha256, d)), hex(sha(Buffer.of(0), d)));
  t.is(hex(merkleTree(sha256, [leafHash(sha256, d)]).root), hex(sha(Buffer.of(0), d)), 'one leaf: the root is the leaf hash');
  // A well-known value: the tree of the empty string as its one leaf (RFC 6962 test vectors).
  t.is(hex(leafHash(sha256, new Uint8Array(0))), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
});

test('roots and paths of trees of 1..33 leaves equal the recursive reference, and every proof verifies', (t) => {
  for (let n = 1; n <= 33; n++) {
    const d = data(n);
    const leaves = d.map((x) => leafHash(sha256, x));
    const { root, paths } = merkleTree(sha256, leaves);
    t.is(hex(root), hex(mth(d)), `root of ${n}`);
    for (let i = 0; i < n; i++) {
      const ref = refPath(i, d);
      t.deepEqual(paths[i]!.map(hex), ref.map(hex), `path of ${i} in ${n}`);
      t.is(inclusionPathLength(i, n), ref.length, `length of the path of ${i} in ${n}`);
      t.true(verifyInclusion(sha256, i, n, leaves[i]!, paths[i]!, root), `proof of ${i} in ${n}`);
      t.is(hex(rootFromInclusionPath(sha256, i, n, leaves[i]!, paths[i]!)!), hex(root));
    }
  }
});

test('a changed leaf, index, path entry, or a swapped pair of entries does not verify', (t) => {
  for (let n = 1; n <= 33; n++) {
    const leaves = data(n).map((x) => leafHash(sha256, x));
    const { root, paths } = merkleTree(sha256, leaves);
    for (let i = 0; i < n; i++) {
      const path = paths[i]!;
      t.false(verifyInclusion(sha256, i, n, flip(leaves[i]!), path, root), `leaf ${i} of ${n} changed`);
      if (n > 1) t.false(verifyInclusion(sha256, i, n, leaves[(i + 1) % n]!, path, root), `another leaf at ${i} of ${n}`);
      for (let j = 0; j < n; j++) if (j !== i) t.false(verifyInclusion(sha256, j, n, leaves[i]!, path, root), `leaf ${i} of ${n} claimed at ${j}`);
      for (let k = 0; k < path.length; k++) {
        t.false(verifyInclusion(sha256, i, n, leaves[i]!, path.map((p, x) => (x === k ? flip(p, 31) : p)), root), `entry ${k} of ${i} in ${n} changed`);
        if (k + 1 < path.length) {
          const swapped = [...path];
          [swapped[k], swapped[k + 1]] = [swapped[k + 1]!, swapped[k]!];
          t.false(verifyInclusion(sha256, i, n, leaves[i]!, swapped, root), `entries ${k}, ${k + 1} of ${i} in ${n} swapped`);
        }
      }
      t.false(verifyInclusion(sha256, i, n, leaves[i]!, path, flip(root)), 'another root');
    }
  }
});

test('a changed size fails unless the leaf sits in the same shape of tree, which is why the batch signature covers the size', (t) => {
  let same = 0;
  for (let n = 1; n <= 33; n++) {
    const leaves = data(n).map((x) => leafHash(sha256, x));
    const { root, paths } = merkleTree(sha256, leaves);
    for (let i = 0; i < n; i++) {
      for (let m = 1; m <= 40; m++) {
        if (m === n) continue;
        const r = rootFromInclusionPath(sha256, i, m, leaves[i]!, paths[i]!);
        if (r === null) continue;
        // The walk is the same as in the true size (same length, same sides): it leads to the same
        // root, so a proof alone does not fix the size; grant-batch signs uint32(size) with the root.
        if (hex(r) === hex(root)) same++;
        else t.fail(`leaf ${i} of ${n} claimed in ${m} leads to a third root`);
      }
    }
  }
  t.true(same > 0);
  // The plain case of the RFC's rules: index >= size, paths one too long or too short.
  const leaves = data(5).map((x) => leafHash(sha256, x));
  const { root, paths } = merkleTree(sha256, leaves);
  t.false(verifyInclusion(sha256, 4, 4, leaves[4]!, paths[4]!, root));
  t.false(verifyInclusion(sha256, 0, 2, leaves[0]!, paths[0]!, root), 'a path longer than the size allows');
  t.false(verifyInclusion(sha256, 0, 5, leaves[0]!, paths[0]!.slice(0, -1), root), 'a path one short');
  t.false(verifyInclusion(sha256, 0, 5, leaves[0]!, [...paths[0]!, root], root), 'a path one too long');
});

test('sizes and indexes out of range are refused, not computed', (t) => {
  const leaf = leafHash(sha256, Buffer.from('x'));
  for (const [i, n] of [
    [0, 0],
    [-1, 4],
    [1.5, 4],
    [0, 2 ** 32],
    [NaN, 3],
    [0, Infinity],
  ] as const) {
    t.is(rootFromInclusionPath(sha256, i, n, leaf, []), null, `${i} of ${n}`);
    t.is(inclusionPathLength(i, n), null, `${i} of ${n}`);
  }
  // The largest size a batch can say: 32 levels, computed without a tree.
  t.is(inclusionPathLength(0, 2 ** 32 - 1), 32);
  t.is(inclusionPathLength(2 ** 32 - 2, 2 ** 32 - 1), 31);
  t.throws(() => merkleTree(sha256, []), { instanceOf: RangeError });
});
