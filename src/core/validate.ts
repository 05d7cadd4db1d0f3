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

  string(f: string, opt: { max?: number; pattern?: RegExp; patternHelp?: string } = {}): string {
    const v = this.obj[f];
    if (typeof v !== 'string' || v.length === 0) this.fail(f, `must be a non-empty string, got ${describe(v)}`);
    if (v.length > (opt.max ?? 256)) this.fail(f, `must be at most ${opt.max ?? 256} characters`);
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
