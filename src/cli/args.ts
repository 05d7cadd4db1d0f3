/** A parsed licctl command line (src/cli/command.ts makes it) and the helpers that read it. */
export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string[]>;
  /** Everything after `--`. */
  rest: string[];
}

export class UsageError extends Error {}

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
