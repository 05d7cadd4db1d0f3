/** A small argument parser: --flag value, --flag=value, boolean flags, and `--` for a command. */
export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string[]>;
  /** Everything after `--`. */
  rest: string[];
}

export class UsageError extends Error {}

export function parseArgs(argv: string[], spec: { boolean?: string[]; value?: string[] }): ParsedArgs {
  const bools = new Set(spec.boolean ?? []);
  const values = new Set(spec.value ?? []);
  const out: ParsedArgs = { positional: [], flags: new Map(), rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      let value: string;
      if (bools.has(name)) {
        if (eq > 0) throw new UsageError(`--${name} takes no value`);
        value = 'true';
      } else if (values.has(name)) {
        if (eq > 0) value = a.slice(eq + 1);
        else {
          const next = argv[++i];
          if (next === undefined) throw new UsageError(`--${name} needs a value`);
          value = next;
        }
      } else {
        throw new UsageError(`unknown option --${name}`);
      }
      const list = out.flags.get(name) ?? [];
      list.push(value);
      out.flags.set(name, list);
    } else {
      out.positional.push(a);
    }
  }
  return out;
}

export function flag(a: ParsedArgs, name: string): string | undefined {
  const v = a.flags.get(name);
  return v?.[v.length - 1];
}

export function has(a: ParsedArgs, name: string): boolean {
  return a.flags.has(name);
}

export function intFlag(a: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = flag(a, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}
