import { LicdError, type ErrorCode } from './errors.ts';

/**
 * Field readers for untrusted JSON. Each names the field and what it should be, so that a bad
 * request, entitlement or config file is answered with the fix rather than a stack trace.
 */
export class Fields {
  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly where: string,
    private readonly code: ErrorCode = 'BAD_REQUEST',
  ) {}

  static of(value: unknown, where: string, code: ErrorCode = 'BAD_REQUEST'): Fields {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new LicdError(code, `${where} must be a JSON object`);
    }
    return new Fields(value as Record<string, unknown>, where, code);
  }

  private name(f: string): string {
    return this.where ? `${this.where}.${f}` : f;
  }

  fail(field: string, what: string): never {
    throw new LicdError(this.code, `${this.name(field)} ${what}`, { field: this.name(field) });
  }

  has(f: string): boolean {
    return this.obj[f] !== undefined;
  }

  raw(f: string): unknown {
    return this.obj[f];
  }

  /**
   * Every string read here is text that may be shown to people (status, logs, licctl tables), so
   * it must hold no control characters, bidi controls or unpaired surrogates (see unsafeChar).
   */
  string(f: string, opt: { max?: number; pattern?: RegExp; patternHelp?: string } = {}): string {
    const v = this.obj[f];
    if (typeof v !== 'string' || v.length === 0) this.fail(f, `must be a non-empty string, got ${describe(v)}`);
    if (v.length > (opt.max ?? 256)) this.fail(f, `must be at most ${opt.max ?? 256} characters`);
    const bad = unsafeChar(v);
    if (bad !== null) {
      this.fail(f, `must be plain text: ${bad.name} (U+${bad.code.toString(16).toUpperCase().padStart(4, '0')}) at position ${bad.index} is not allowed (no control characters, bidi controls or unpaired surrogates)`);
    }
    if (opt.pattern && !opt.pattern.test(v)) this.fail(f, `must be ${opt.patternHelp ?? `like ${opt.pattern}`}, got ${JSON.stringify(v)}`);
    return v;
  }

  optString(f: string, opt: { max?: number; pattern?: RegExp; patternHelp?: string } = {}): string | undefined {
    return this.obj[f] === undefined ? undefined : this.string(f, opt);
  }

  int(f: string, opt: { min?: number; max?: number } = {}): number {
    const v = this.obj[f];
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(f, `must be a whole number, got ${describe(v)}`);
    const min = opt.min ?? Number.MIN_SAFE_INTEGER;
    const max = opt.max ?? Number.MAX_SAFE_INTEGER;
    if (v < min || v > max) this.fail(f, `must be from ${min} to ${max}, got ${v}`);
    return v;
  }

  optInt(f: string, opt: { min?: number; max?: number } = {}): number | undefined {
    return this.obj[f] === undefined ? undefined : this.int(f, opt);
  }

  number(f: string, opt: { min?: number; max?: number } = {}): number {
    const v = this.obj[f];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(f, `must be a number, got ${describe(v)}`);
    if (opt.min !== undefined && v < opt.min) this.fail(f, `must be at least ${opt.min}, got ${v}`);
    if (opt.max !== undefined && v > opt.max) this.fail(f, `must be at most ${opt.max}, got ${v}`);
    return v;
  }

  optNumber(f: string, opt: { min?: number; max?: number } = {}): number | undefined {
    return this.obj[f] === undefined ? undefined : this.number(f, opt);
  }

  bool(f: string): boolean {
    const v = this.obj[f];
    if (typeof v !== 'boolean') this.fail(f, `must be true or false, got ${describe(v)}`);
    return v;
  }

  optBool(f: string): boolean | undefined {
    return this.obj[f] === undefined ? undefined : this.bool(f);
  }

  oneOf<T extends string>(f: string, options: readonly T[]): T {
    const v = this.obj[f];
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      this.fail(f, `must be one of ${options.join(', ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  optOneOf<T extends string>(f: string, options: readonly T[]): T | undefined {
    return this.obj[f] === undefined ? undefined : this.oneOf(f, options);
  }

  object(f: string): Fields {
    const v = this.obj[f];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(f, `must be an object, got ${describe(v)}`);
    return new Fields(v as Record<string, unknown>, this.name(f), this.code);
  }

  optObject(f: string): Fields | undefined {
    return this.obj[f] === undefined ? undefined : this.object(f);
  }

  array(f: string, opt: { max?: number } = {}): unknown[] {
    const v = this.obj[f];
    if (!Array.isArray(v)) this.fail(f, `must be a list, got ${describe(v)}`);
    if (opt.max !== undefined && v.length > opt.max) this.fail(f, `must have at most ${opt.max} entries`);
    return v;
  }

  optArray(f: string, opt: { max?: number } = {}): unknown[] | undefined {
    return this.obj[f] === undefined ? undefined : this.array(f, opt);
  }

  /** Rejects fields this reader does not know, so a typo in a config file is not silently ignored. */
  only(known: readonly string[]): void {
    for (const k of Object.keys(this.obj)) {
      if (!known.includes(k)) this.fail(k, `is not a known field (known: ${known.join(', ')})`);
    }
  }

  keys(): string[] {
    return Object.keys(this.obj);
  }

  element(index: number, value: unknown, f: string): Fields {
    return Fields.of(value, `${this.name(f)}[${index}]`, this.code);
  }
}

/**
 * Characters that must not reach a terminal or a log line: C0 and C1 controls and DEL (cursor
 * movement, colours, forged lines), the line and paragraph separators, the bidi embeddings,
 * overrides, isolates and marks (text that reads differently from what it is), and unpaired
 * surrogates (not text at all).
 */
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/u;
const UNSAFE_CHARS_GLOBAL = new RegExp(UNSAFE_CHARS.source, 'gu');

/** The first character of `s` that the text rule refuses, or null. */
export function unsafeChar(s: string): { index: number; code: number; name: string } | null {
  const m = UNSAFE_CHARS.exec(s);
  if (!m) return null;
  const code = m[0].charCodeAt(0);
  const name =
    code < 0x20 || code === 0x7f ? 'a control character'
    : code <= 0x9f ? 'a C1 control character'
    : code >= 0xd800 && code <= 0xdfff ? 'an unpaired surrogate'
    : code === 0x2028 || code === 0x2029 ? 'a line separator'
    : 'a bidi control';
  return { index: m.index, code, name };
}

/**
 * Makes a string inert for a terminal or a text log: every character the text rule refuses is
 * written as a \uXXXX escape (which JSON reads back as the same character, so JSON text stays
 * valid). Strings stored before the rule existed are shown this way instead of acting on the
 * screen. With keepNewlines, \n stays (for whole multi-line outputs whose cells were escaped).
 */
export function escapeText(s: string, opt: { keepNewlines?: boolean } = {}): string {
  if (!UNSAFE_CHARS.test(s)) return s;
  return s.replace(UNSAFE_CHARS_GLOBAL, (c) => (opt.keepNewlines && c === '\n' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Names of features, users, hosts: printable, no MQTT wildcards or separators. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;
export const NAME_HELP = '1 to 64 letters, digits or . _ @ + - (starting with a letter or digit)';
/** Feature names stand in topics (licd/v1/feature/<name>): no MQTT wildcards, no separators. */
export const FEATURE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const FEATURE_HELP = '1 to 64 letters, digits or . _ - (starting with a letter or digit)';
/** MQTT client ids usable in topics and in mosquitto's %c ACL patterns. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const CLIENT_ID_HELP = '1 to 64 letters, digits or . _ - (starting with a letter or digit)';
/**
 * A lease holder's secret (docs/protocol.md): chosen by the client, at least 128 bits in
 * base64url or hex, sent with checkout, heartbeat and check-in and never in an answer.
 */
export const HOLDER_PATTERN = /^[A-Za-z0-9_-]{22,128}$/;
export const HOLDER_HELP = '22 to 128 letters, digits, _ or - (at least 128 random bits, e.g. 16 random bytes in base64url)';
export const VERSION_PATTERN = /^\d{1,6}(\.\d{1,6}){0,3}$/;

/** Compares dotted numeric versions: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
