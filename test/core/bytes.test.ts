/** The byte helpers of the core against node's Buffer, which they stand in for (the core has no Buffer). */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { fromBase64url, toBase64url } from '../../src/core/bytes.ts';

test('toBase64url is base64url without padding, and fromBase64url reads it back, for 0..600 bytes', (t) => {
  for (let n = 0; n <= 600; n++) {
    for (const b of [randomBytes(n), Buffer.alloc(n, 0xff), Buffer.alloc(n, 0)]) {
      const s = toBase64url(b);
      if (s !== b.toString('base64url')) return t.fail(`${n} bytes: ${s} is not ${b.toString('base64url')}`);
      if (!Buffer.from(fromBase64url(s)).equals(b)) return t.fail(`${n} bytes do not read back`);
    }
  }
  // A view into a larger buffer encodes only its own bytes.
  const big = Buffer.from('0123456789abcdef');
  t.is(toBase64url(big.subarray(3, 8)), big.subarray(3, 8).toString('base64url'));
  t.pass();
});
