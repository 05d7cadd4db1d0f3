/**
 * The audit log's canonical JSON and the cheap ISO time write exactly the bytes of the obvious
 * ways (JSON.stringify with sorted keys; Date#toISOString): records hashed by older versions of
 * licd must still verify, and a time must read the same wherever it is written.
 */
import test from 'ava';
import { AuditChain, canonicalJson, eventFields, recordHash } from '../../src/core/audit.ts';
import type { SeatEvent } from '../../src/core/events.ts';
import type { Lease } from '../../src/core/model.ts';
import { sha256 } from '../../src/crypto/sha256.ts';
import { isoTime } from '../../src/core/iso-time.ts';

/** The reference: one JSON.stringify per key and value, keys sorted by Array#sort. */
function reference(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return '[' + v.map((x) => (x === undefined ? 'null' : reference(x))).join(',') + ']';
  const o = v as Record<string, unknown>;
  return (
    '{' +
    Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => JSON.stringify(k) + ':' + reference(o[k]))
      .join(',') +
    '}'
  );
}

/** A small deterministic generator (xorshift32), so a failure repeats. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const ODD_STRINGS = ['', 'plain', 'quote"d', 'back\\slash', 'tab\there', 'nl\n', '\u0000', '\u001f', '\u007f', 'é', '日本', '\ud83d\ude00', '\ud800', 'x\udfff', '</script>', ' ', '~', 'a"b\\c'];
const ODD_NUMBERS = [0, -0, 1, -1, 0.1, 1e21, 1e-7, -1e300, Number.MAX_SAFE_INTEGER, NaN, Infinity, -Infinity, 123456789.125];

function randomValue(r: () => number, depth: number): unknown {
  const pick = r();
  if (depth > 3 || pick < 0.3) return ODD_STRINGS[Math.floor(r() * ODD_STRINGS.length)]! + (r() < 0.5 ? String.fromCharCode(Math.floor(r() * 0x10000)) : '');
  if (pick < 0.45) return ODD_NUMBERS[Math.floor(r() * ODD_NUMBERS.length)];
  if (pick < 0.5) return r() < 0.5;
  if (pick < 0.55) return r() < 0.5 ? null : undefined;
  if (pick < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
  const o: Record<string, unknown> = {};
  const n = Math.floor(r() * 8);
  for (let i = 0; i < n; i++) o[r() < 0.2 ? ODD_STRINGS[Math.floor(r() * ODD_STRINGS.length)]! : r() < 0.1 ? String(Math.floor(r() * 20)) : 'k' + Math.floor(r() * 30).toString(36)] = randomValue(r, depth + 1);
  return o;
}

test('canonicalJson writes the bytes of sorted JSON.stringify for odd strings, numbers and keys', (t) => {
  const r = rng(0x5eed);
  for (let i = 0; i < 5000; i++) {
    const v = randomValue(r, 0);
    t.is(canonicalJson(v), reference(v), `value ${i}`);
  }
  // Keys that sort differently by code unit than by locale, and integer-like keys.
  const o = { b: 1, B: 2, a: 3, 'é': 4, '10': 5, '9': 6, Z: 7, _: 8 };
  t.is(canonicalJson(o), reference(o));
  t.is(canonicalJson({ seq: 1, at: 'x', kind: 'k', prev: 'p', client: 'c', count: 1 }), '{"at":"x","client":"c","count":1,"kind":"k","prev":"p","seq":1}');
});

test('isoTime is Date#toISOString, cached seconds or not', (t) => {
  const r = rng(0xc10c);
  const edges = [0, 1, 999, 1000, 1001, 59_999, 1_764_547_200_000, 1_764_547_200_999.9, 253_402_300_799_999, 253_402_300_800_000, -1, -1000.5, 8.64e15, -8.64e15, 1.5, 0.999];
  for (const ms of edges) t.is(isoTime(ms), new Date(ms).toISOString(), String(ms));
  // Times that meet in the cache's slots, and times in the same second asked for again.
  let ms = 1_764_547_200_000;
  for (let i = 0; i < 20_000; i++) {
    ms += Math.floor(r() * 3000) - (r() < 0.3 ? 2900 : 0);
    const at = r() < 0.05 ? Math.floor(r() * 253_402_300_800_000) : ms;
    t.is(isoTime(at), new Date(at).toISOString(), String(at));
  }
  t.throws(() => isoTime(NaN), { instanceOf: RangeError });
  t.throws(() => isoTime(8.64e15 + 1), { instanceOf: RangeError });
});

test("a lease's audit records, written field by field, are the canonical JSON of the general way and hash alike", (t) => {
  const r = rng(0x1ea5e);
  const odd = () => ODD_STRINGS[Math.floor(r() * ODD_STRINGS.length)]! + (r() < 0.5 ? String.fromCharCode(Math.floor(r() * 0x10000)) : '');
  const chain = new AuditChain({ sha256, clock: { now: () => 1_764_547_200_000 } });
  chain.resume(null);
  let at = 1_764_547_200_000;
  for (let i = 0; i < 2000; i++) {
    const lease: Lease = { id: r() < 0.8 ? `L${i.toString(36)}` : odd(), feature: r() < 0.8 ? 'vray' : odd(), count: r() < 0.8 ? 1 + Math.floor(r() * 8) : ODD_NUMBERS[Math.floor(r() * ODD_NUMBERS.length)]!, clientId: r() < 0.8 ? `node-${i}` : odd(), pid: 1, user: odd(), host: odd(), since: at, expiresAt: at + 60_000, ttlMs: 60_000, disconnectedAt: null };
    const e: SeatEvent = r() < 0.5 ? { type: 'lease.granted', at: at++, lease } : { type: 'lease.ended', at: at++, lease, reason: r() < 0.8 ? 'checkin' : (odd() as 'checkin'), ...(r() < 0.3 ? { by: odd() } : {}) };
    const [m, ...more] = chain.prepare([e]);
    chain.settle([e], true);
    t.is(more.length, 0);
    if (m?.kind !== 'rec.put') return t.fail('no record');
    const { hash, ...rest } = m.value as Record<string, unknown>;
    // The general way: the event's fields plus the chain's, one canonical text, one hash.
    const general = { ...eventFields(e), seq: rest.seq, at: rest.at, kind: e.type, prev: rest.prev };
    t.deepEqual(rest, general, `record ${i}`);
    t.is(m.json, canonicalJson(general), `record ${i}`);
    t.is(hash, recordHash(general, sha256), `record ${i}`);
  }
});
