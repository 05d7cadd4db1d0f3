/**
 * systemRandom serves ids and nonces from a pool of CSPRNG output (src/crypto/ed25519.ts): every
 * byte handed out once, across refills, never the wiped zeros of a used part of the pool; keys
 * (32 bytes and more) drawn on their own.
 */
import test from 'ava';
import { systemRandom } from '../../src/crypto/ed25519.ts';

test('pooled draws are unique, of the size asked, and cross pool refills without repeating or handing out wiped bytes', (t) => {
  const seen = new Set<string>();
  const counts = new Array<number>(256).fill(0);
  let bytes = 0;
  // Sizes 1 to 31 in turn: the draws straddle the 4 KiB pool's end again and again (about 50 refills).
  for (let i = 0; i < 13_000; i++) {
    const n = (i % 31) + 1;
    const b = systemRandom.bytes(n);
    t.is(b.length, n);
    t.true(b instanceof Uint8Array);
    for (const x of b) counts[x]!++;
    bytes += n;
    if (n >= 9) {
      const hex = Buffer.from(b).toString('hex');
      t.false(seen.has(hex), `draw ${i} (${n} bytes) repeated an earlier one`);
      seen.add(hex);
      t.not(hex, '00'.repeat(n), `draw ${i} is zeros: a used part of the pool handed out again`);
    }
  }
  // Each byte value about equally often (208,000 bytes: 812 each expected; chi-square with 255
  // degrees of freedom, 400 is far beyond p = 0.0001).
  const expected = bytes / 256;
  const chi = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  t.true(chi < 400, `byte values skewed: chi-square ${chi.toFixed(0)}`);
});

test('a copy is handed out: changing it changes no later draw', (t) => {
  const a = systemRandom.bytes(16);
  a.fill(0);
  const b = systemRandom.bytes(16);
  t.not(Buffer.from(b).toString('hex'), '00'.repeat(16));
});

test('keys and seeds (32 bytes and more) are drawn on their own, each different', (t) => {
  const a = systemRandom.bytes(32);
  const b = systemRandom.bytes(32);
  const c = systemRandom.bytes(64);
  t.is(a.length, 32);
  t.is(c.length, 64);
  t.notDeepEqual(a, b);
});
