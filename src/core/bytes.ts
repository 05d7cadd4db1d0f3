/** Byte helpers without Buffer, so the core stays free of node I/O modules. */
const HEX = '0123456789abcdef';

/** The two hex digits of each byte value. */
const BYTE_HEX = Array.from({ length: 256 }, (_, x) => HEX[x >> 4]! + HEX[x & 15]!);

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += BYTE_HEX[b[i]!]!;
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError('not a hex string');
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64URL_INDEX = new Map([...B64URL].map((c, i) => [c, i]));
const B64URL_CODES = Uint8Array.from(B64URL, (c) => c.charCodeAt(0));
const ASCII = new TextDecoder();

/**
 * base64url without padding (RFC 4648 section 5). The characters go into bytes decoded once into
 * a flat string: a string built by `+=` is a chain of hundreds of small objects per body, which
 * made the garbage collector the largest cost of signing a batch of grants.
 */
export function toBase64url(b: Uint8Array): string {
  const out = new Uint8Array(Math.ceil((b.length * 4) / 3));
  let o = 0;
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out[o++] = B64URL_CODES[(n >> 18) & 63]!;
    out[o++] = B64URL_CODES[(n >> 12) & 63]!;
    out[o++] = B64URL_CODES[(n >> 6) & 63]!;
    out[o++] = B64URL_CODES[n & 63]!;
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i]! << 16;
    out[o++] = B64URL_CODES[(n >> 18) & 63]!;
    out[o++] = B64URL_CODES[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8);
    out[o++] = B64URL_CODES[(n >> 18) & 63]!;
    out[o++] = B64URL_CODES[(n >> 12) & 63]!;
    out[o++] = B64URL_CODES[(n >> 6) & 63]!;
  }
  return ASCII.decode(out);
}

export function fromBase64url(s: string): Uint8Array {
  if (typeof s !== 'string' || s.length % 4 === 1) throw new TypeError('not base64url');
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (const c of s) {
    const v = B64URL_INDEX.get(c);
    if (v === undefined) throw new TypeError('not base64url');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, o);
}

const ENCODER = new TextEncoder();

export function utf8(s: string): Uint8Array {
  return ENCODER.encode(s);
}

/** Strict UTF-8, one decoder for all: without `stream` a decode keeps no state between calls (a failed one neither). */
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

/** Bytes as UTF-8 text; throws a TypeError on bytes that are not UTF-8. */
export function fromUtf8(b: Uint8Array): string {
  return UTF8_STRICT.decode(b);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
