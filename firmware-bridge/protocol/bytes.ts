/** Small big-endian reader/writer used by the command codecs. */

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

export class ByteWriter {
  private readonly parts: number[] = [];

  u8(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new RangeError(`u8 out of range: ${value}`);
    this.parts.push(value);
    return this;
  }

  u16(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new RangeError(`u16 out of range: ${value}`);
    this.parts.push(value >>> 8, value & 0xff);
    return this;
  }

  u64(value: bigint): this {
    if (value < 0n || value > 0xffff_ffff_ffff_ffffn) throw new RangeError(`u64 out of range: ${value}`);
    for (let shift = 56n; shift >= 0n; shift -= 8n) this.parts.push(Number((value >> shift) & 0xffn));
    return this;
  }

  bytes(value: Uint8Array): this {
    for (const b of value) this.parts.push(b);
    return this;
  }

  /** A string of printable ASCII preceded by its length in one byte. */
  shortAscii(value: string): this {
    const bytes = asciiBytes(value);
    if (bytes.length > 0xff) throw new RangeError(`string longer than 255 bytes: ${value.slice(0, 32)}...`);
    return this.u8(bytes.length).bytes(bytes);
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export class ByteReader {
  private offset = 0;
  constructor(private readonly data: Uint8Array, private readonly what: string) {}

  get remaining(): number {
    return this.data.length - this.offset;
  }

  private take(n: number, field: string): Uint8Array {
    if (this.remaining < n) {
      throw new DecodeError(`${this.what}: ${field} needs ${n} bytes at offset ${this.offset}, only ${this.remaining} left`);
    }
    const out = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(field: string): number {
    return this.take(1, field)[0]!;
  }

  u16(field: string): number {
    const b = this.take(2, field);
    return (b[0]! << 8) | b[1]!;
  }

  u64(field: string): bigint {
    const b = this.take(8, field);
    let v = 0n;
    for (const byte of b) v = (v << 8n) | BigInt(byte);
    return v;
  }

  bytes(n: number, field: string): Uint8Array {
    return Uint8Array.from(this.take(n, field));
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining, 'rest');
  }

  shortAscii(field: string): string {
    const n = this.u8(`${field} length`);
    return asciiString(this.take(n, field), `${this.what}: ${field}`);
  }

  /** Throws if bytes are left over: every v1 payload has an exact layout. */
  end(): void {
    if (this.remaining !== 0) throw new DecodeError(`${this.what}: ${this.remaining} unexpected trailing bytes`);
  }
}

export function asciiBytes(value: string): Uint8Array {
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new RangeError(`not printable ASCII at index ${i}: ${JSON.stringify(value)}`);
    out[i] = c;
  }
  return out;
}

export function asciiString(bytes: Uint8Array, what: string): string {
  let s = '';
  for (const b of bytes) {
    if (b < 0x20 || b > 0x7e) throw new DecodeError(`${what}: byte 0x${b.toString(16)} is not printable ASCII`);
    s += String.fromCharCode(b);
  }
  return s;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/[\s_]/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new RangeError(`not hex: ${hex}`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
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

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
