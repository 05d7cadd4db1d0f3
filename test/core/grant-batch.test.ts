/**
 * Grants signed in batches (src/core/grant-batch.ts): one signature per batch over the Merkle root
 * and the size, each grant with its proof; a batch of one is the plain envelope. Any change to a
 * grant or its proof, and any malformed proof, is TOKEN_INVALID with a reason, never another error.
 * The batcher signs what is asked for in one turn together, at most its cap at a time.
 */
import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { fromBase64url, toBase64url, utf8 } from '../../src/core/bytes.ts';
import { LicdError } from '../../src/core/errors.ts';
import { batchSignedBytes, GrantBatcher, parseBatchProof, sealGrants, verifyGrantEnvelope, type GrantEnvelope } from '../../src/core/grant-batch.ts';
import { FORMATS, sealEnvelope } from '../../src/core/signed.ts';
import { naclEd25519, nodeEd25519 } from '../../src/crypto/ed25519.ts';

const ed = nodeEd25519();
const sha256 = (d: Uint8Array): Uint8Array => createHash('sha256').update(d).digest();
const SEED = new Uint8Array(32).fill(0x33);
const KEY = ed.publicKey(SEED);
const body = (i: number) => ({ lease: `L${i}`, feature: 'vray_render', count: 1, user: 'alice', host: `node-${i}`, issuedAt: '2026-06-01T09:00:00.000Z' });
const bodies = (n: number) => Array.from({ length: n }, (_, i) => body(i));
const verify = (g: unknown) => verifyGrantEnvelope(g, KEY, ed, sha256, 'TOKEN_INVALID', 'session');
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function refused(t: ExecutionContext, g: unknown, reason: string, what: string): void {
  const e = t.throws(() => verify(g), { instanceOf: LicdError }, what);
  t.is(e?.code, 'TOKEN_INVALID', what);
  t.is(e?.details?.reason, reason, `${what}: ${e?.message}`);
}

test('a batch of one is the plain envelope, byte for byte', (t) => {
  const [g] = sealGrants([body(0)], SEED, ed, sha256);
  t.deepEqual(g, sealEnvelope(FORMATS.grant, body(0), SEED, ed));
  t.false('batch' in g!);
  t.deepEqual(verify(g), body(0));
  t.deepEqual(sealGrants([], SEED, ed, sha256), []);
});

test('every grant of batches of 2..33 verifies (node:crypto and tweetnacl); one signature per batch over the documented bytes', (t) => {
  const nacl = naclEd25519();
  for (let n = 2; n <= 33; n++) {
    const grants = sealGrants(bodies(n), SEED, ed, sha256);
    t.is(new Set(grants.map((g) => g.sig)).size, 1, `one signature for ${n}`);
    grants.forEach((g, i) => {
      t.deepEqual(g.batch && { index: g.batch.index, size: g.batch.size }, { index: i, size: n });
      t.deepEqual(verify(clone(g)), body(i));
      if (n === 5) t.deepEqual(verifyGrantEnvelope(g, KEY, nacl, sha256, 'TOKEN_INVALID', 'session'), body(i));
    });
  }
  // The signed message: "licd-grant-batch/1" 00, the size in 4 bytes big-endian, the 32-byte root.
  const m = batchSignedBytes(0x01020304, new Uint8Array(32).fill(0xaa));
  t.is(Buffer.from(m).toString('hex'), Buffer.from('licd-grant-batch/1').toString('hex') + '00' + '01020304' + 'aa'.repeat(32));
});

test('a changed body, index, size, path entry, swapped entries or signature is refused', (t) => {
  for (const n of [2, 3, 5, 8, 13]) {
    const grants = sealGrants(bodies(n), SEED, ed, sha256);
    for (const g of grants) {
      const b = g.batch!;
      const other = grants[(b.index + 1) % n]!;
      refused(t, { ...g, body: toBase64url(utf8(JSON.stringify({ ...body(b.index), count: 2 }))) }, 'bad-signature', 'body changed');
      refused(t, { ...g, body: other.body }, 'bad-signature', "another grant's body with this proof");
      for (let j = 0; j < n; j++) {
        if (j === b.index) continue;
        const e = t.throws(() => verify({ ...g, batch: { ...b, index: j } }), { instanceOf: LicdError }, `index ${b.index} -> ${j} of ${n}`);
        t.is(e?.code, 'TOKEN_INVALID');
      }
      for (const size of [n - 1, n + 1, n * 2]) {
        if (size < 2) continue;
        const e = t.throws(() => verify({ ...g, batch: { ...b, size } }), { instanceOf: LicdError }, `size ${n} -> ${size}`);
        t.is(e?.code, 'TOKEN_INVALID');
      }
      b.path.forEach((p, k) => {
        const h = fromBase64url(p);
        h[7]! ^= 0x80;
        refused(t, { ...g, batch: { ...b, path: b.path.map((x, y) => (y === k ? toBase64url(h) : x)) } }, 'bad-signature', `path entry ${k} changed`);
        if (k + 1 < b.path.length) {
          const swapped = [...b.path];
          [swapped[k], swapped[k + 1]] = [swapped[k + 1]!, swapped[k]!];
          refused(t, { ...g, batch: { ...b, path: swapped } }, 'bad-signature', `path entries ${k} and ${k + 1} swapped`);
        }
      });
      const sig = fromBase64url(g.sig);
      sig[0]! ^= 1;
      refused(t, { ...g, sig: toBase64url(sig) }, 'bad-signature', 'signature changed');
      // The batch signature is not a grant's own signature, nor the reverse.
      const { batch: _drop, ...plain } = g;
      void _drop;
      refused(t, plain, 'bad-signature', 'the proof dropped');
    }
  }
  // A lone grant passed off as a batch of two with a made-up sibling.
  const [lone] = sealGrants([body(0)], SEED, ed, sha256);
  refused(t, { ...lone, batch: { index: 0, size: 2, path: [toBase64url(new Uint8Array(32))] } }, 'bad-signature', 'a lone grant with a proof');
});

test('a grant signed in another batch, or by another key, does not verify', (t) => {
  const a = sealGrants(bodies(4), SEED, ed, sha256);
  const b = sealGrants(bodies(5), SEED, ed, sha256);
  // The same body at the same index in a batch of another size: the sizes are signed.
  refused(t, { ...a[0]!, batch: b[0]!.batch }, 'bad-signature', "a proof from another batch");
  refused(t, { ...a[0]!, sig: b[0]!.sig }, 'bad-signature', "another batch's signature");
  const other = sealGrants(bodies(4), new Uint8Array(32).fill(0x55), ed, sha256);
  refused(t, other[1]!, 'bad-signature', 'signed by another key');
});

test('a malformed proof is TOKEN_INVALID (malformed), never another kind of error', (t) => {
  const g = sealGrants(bodies(5), SEED, ed, sha256)[2]!;
  const b = g.batch!;
  const h32 = toBase64url(new Uint8Array(32).fill(7));
  const cases: Array<[string, unknown]> = [
    ['null', null],
    ['a string', 'batch'],
    ['an array', [b.index, b.size, b.path]],
    ['a number', 3],
    ['no index', { size: b.size, path: b.path }],
    ['index as a string', { ...b, index: '2' }],
    ['index negative', { ...b, index: -1 }],
    ['index a fraction', { ...b, index: 1.5 }],
    ['index NaN-like', { ...b, index: null }],
    ['index = size', { ...b, index: 5 }],
    ['index > size', { ...b, index: 9 }],
    ['size 1', { index: 0, size: 1, path: [] }],
    ['size 0', { index: 0, size: 0, path: [] }],
    ['size 2^32', { ...b, size: 2 ** 32 }],
    ['size huge', { ...b, size: 1e300 }],
    ['size as a string', { ...b, size: '5' }],
    ['no path', { index: b.index, size: b.size }],
    ['path an object', { ...b, path: { 0: h32 } }],
    ['path a string', { ...b, path: h32 }],
    ['path one short', { ...b, path: b.path.slice(1) }],
    ['path one long', { ...b, path: [...b.path, h32] }],
    ['path empty', { ...b, path: [] }],
    ['path very long', { ...b, path: Array.from({ length: 100_000 }, () => h32) }],
    ['an entry of 31 bytes', { ...b, path: [toBase64url(new Uint8Array(31)), ...b.path.slice(1)] }],
    ['an entry of 33 bytes', { ...b, path: [toBase64url(new Uint8Array(33)), ...b.path.slice(1)] }],
    ['an entry not base64url', { ...b, path: ['!'.repeat(43), ...b.path.slice(1)] }],
    ['an entry in standard base64', { ...b, path: [Buffer.alloc(32, 0xff).toString('base64'), ...b.path.slice(1)] }],
    ['an entry not canonical', { ...b, path: [h32.slice(0, 42) + 'x', ...b.path.slice(1)] }],
    ['an entry a number', { ...b, path: [7, ...b.path.slice(1)] }],
    ['an entry null', { ...b, path: [null, ...b.path.slice(1)] }],
    ['an unknown field', { ...b, root: h32 }],
  ];
  for (const [what, batch] of cases) {
    const e = t.throws(() => verify({ ...g, batch }), { instanceOf: LicdError }, what);
    t.is(e?.code, 'TOKEN_INVALID', what);
    t.is(e?.details?.reason, 'malformed', `${what}: ${e?.message}`);
    t.regex(e?.message ?? '', /licd-grant\/1: the batch proof/, what);
  }
  t.is(parseBatchProof(undefined, 'TOKEN_INVALID'), null);
  t.deepEqual(verify(g), body(2), 'the untouched grant still verifies');
});

/** A defer the test runs by hand: each run() is one "turn". */
function manualDefer() {
  const queue: Array<() => void> = [];
  return {
    defer: (f: () => void) => queue.push(f),
    run: () => {
      const f = queue.shift();
      f?.();
      return f !== undefined;
    },
    get waiting() {
      return queue.length;
    },
  };
}

test('the batcher signs what was asked for in one turn with one signature, at most its cap at a time', async (t) => {
  const d = manualDefer();
  const sealed: number[] = [];
  const batcher = new GrantBatcher({
    seal: (bs) => {
      sealed.push(bs.length);
      return sealGrants(bs, SEED, ed, sha256);
    },
    defer: d.defer,
    maxBatch: 4,
  });
  const lone = batcher.sign(body(0));
  t.is(d.waiting, 1);
  t.true(d.run());
  const g = await lone;
  t.false('batch' in g, 'one grant in its turn: the plain envelope');
  t.deepEqual(verify(g), body(0));

  const ps = bodies(10).map((b) => batcher.sign(b));
  t.is(d.waiting, 1, 'one flush for the whole turn');
  t.is(batcher.pending, 10);
  while (d.run());
  const grants: GrantEnvelope[] = await Promise.all(ps);
  t.deepEqual(sealed, [1, 4, 4, 2]);
  t.deepEqual(
    grants.map((x) => [x.batch?.index, x.batch?.size]),
    [[0, 4], [1, 4], [2, 4], [3, 4], [0, 4], [1, 4], [2, 4], [3, 4], [0, 2], [1, 2]],
  );
  t.is(new Set(grants.map((x) => x.sig)).size, 3);
  grants.forEach((x, i) => t.deepEqual(verify(x), body(i), 'each promise gets its own grant'));
});

test('when signing throws, every grant of that batch is rejected with the error; the next batch signs again', async (t) => {
  const d = manualDefer();
  let fail = true;
  const batcher = new GrantBatcher({
    seal: (bs) => {
      if (fail) throw new Error('the signer broke');
      return sealGrants(bs, SEED, ed, sha256);
    },
    defer: d.defer,
  });
  const ps = bodies(3).map((b) => batcher.sign(b));
  d.run();
  for (const p of ps) await t.throwsAsync(p, { message: 'the signer broke' });
  fail = false;
  const ok = batcher.sign(body(7));
  d.run();
  t.deepEqual(verify(await ok), body(7));
  // A sealer that returns the wrong number of grants is a failure too, not a wrong answer.
  const short = new GrantBatcher({ seal: (bs) => sealGrants(bs.slice(1), SEED, ed, sha256), defer: d.defer });
  const qs = bodies(3).map((b) => short.sign(b));
  d.run();
  for (const q of qs) await t.throwsAsync(q, { message: /signed 2 grants for 3 asked/ });
});
