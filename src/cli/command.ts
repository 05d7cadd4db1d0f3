/**
 * licctl's command table: each command declares its own options, arguments, help and examples, and
 * its command line is parsed strictly against them (node's util.parseArgs tokens, checked here).
 * Options that apply to every command (--json, --utc, --debug, --help) and the connection options of
 * commands that talk to licd are accepted anywhere on the line, before or after the command words.
 */
import { parseArgs as nodeParseArgs } from 'node:util';
import { UsageError, type ParsedArgs } from './args.ts';

export interface OptionSpec {
  type: 'boolean' | 'string';
  /** May be given more than once (each value is kept). */
  multiple?: boolean;
  /** The value's placeholder in help, e.g. FILE. */
  arg?: string;
  help: string;
}

export type Section = 'use' | 'borrow' | 'admin' | 'vendor' | 'dongle' | 'machine';

export interface Command {
  /** The command words: 'status', 'borrow request'. */
  path: string;
  section: Section;
  /** Everything after `licctl `: 'status [FEATURE]'. */
  synopsis: string;
  summary: string;
  /** More lines of help, shown by `licctl help CMD`. */
  details?: string;
  options?: Record<string, OptionSpec>;
  /** Whether the command talks to licd (then the connection options apply). */
  connects?: boolean;
  /** Positional arguments after the command words. */
  args?: { min: number; max: number; names: string };
  /** `-- COMMAND [ARGS...]` after the options: required, or not accepted. */
  rest?: boolean;
  /** What --json prints: one line for the help. */
  json?: string;
  examples: string[];
  /** Hand the raw arguments after the command words to the command's own parser. */
  raw?: boolean;
  run(a: ParsedArgs, argv: string[]): Promise<number> | number;
}

/** Options every command takes. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', help: 'print the result as JSON (one object per result, stable keys; errors as {"error":{code,message,exit}} on stderr)' },
  utc: { type: 'boolean', help: 'print times in UTC (2026-11-30 07:15:02 UTC); or LICD_UTC=1. Default: local time with its offset' },
  debug: { type: 'boolean', help: 'on an unexpected error, print its stack trace too' },
  help: { type: 'boolean', help: 'this command\'s help (also: licctl help CMD, -h)' },
};

/** Options of every command that talks to licd. */
export const CONNECTION_OPTIONS: Record<string, OptionSpec> = {
  broker: { type: 'string', arg: 'URL[,URL...]', help: 'the server: mqtt://HOST[:PORT] or mqtts://HOST[:PORT], or several brokers separated by commas (tried in turn); or LICD_BROKER, or "broker" in the client config (default: a licd on this machine, else one found on the LAN by mDNS)' },
  config: { type: 'string', arg: 'FILE', help: 'client config file (default ~/.config/licd/client.json, then /etc/licd/client.json)' },
  user: { type: 'string', arg: 'NAME', help: 'log in as NAME (admins: admin); or LICD_MQTT_USER' },
  'password-file': { type: 'string', arg: 'FILE', help: 'the password for --user; or LICD_MQTT_PASSWORD. Sent only to this machine over mqtt://, else over mqtts://' },
  fingerprint: { type: 'string', arg: 'SHA256:..', help: 'trust an mqtts:// server by its certificate\'s fingerprint (licd prints it at start; several separated by commas, one per box); or LICD_TLS_FINGERPRINT' },
  ca: { type: 'string', arg: 'FILE', help: 'trust an mqtts:// server whose certificate this CA signed; or LICD_TLS_CA' },
  timeout: { type: 'string', arg: 'MS', help: 'how long to wait for the server, in milliseconds (default 10000)' },
  'vendor-key': { type: 'string', arg: 'HEX|FILE', help: 'the vendor public key borrowed tokens verify with; or LICD_VENDOR_KEY, "vendorPublicKey" in the client config' },
  'trust-vendor-key': { type: 'string', arg: 'SHA256:..', help: 'pin the vendor key this server offers, by its fingerprint (first borrow from a server; on a terminal licctl asks instead)' },
  server: { type: 'string', arg: 'ID', help: 'on a cluster of boxes, the box to talk to, by its server id (licctl status lists them; docs/scale-out.md)' },
};

export const SECTIONS: Array<{ id: Section; title: string }> = [
  { id: 'use', title: 'Users and render nodes' },
  { id: 'borrow', title: 'Borrowing (offline use)' },
  { id: 'admin', title: 'Admins (need an admin identity: --user admin --password-file FILE, or LICD_MQTT_USER/LICD_MQTT_PASSWORD)' },
  { id: 'vendor', title: 'License issuers (vendor)' },
  { id: 'dongle', title: 'Dongle' },
  { id: 'machine', title: 'This machine' },
];

/** Value-taking options that may come before the command words (so their values are not taken for one). */
const PRE_COMMAND_VALUES = new Set(Object.entries({ ...GLOBAL_OPTIONS, ...CONNECTION_OPTIONS }).filter(([, o]) => o.type === 'string').map(([n]) => n));

export type Resolved =
  | { kind: 'command'; command: Command; words: number[] }
  | { kind: 'group'; group: string; commands: Command[]; unknown?: string }
  | { kind: 'none' }
  | { kind: 'unknown'; word: string };

/** Finds the command words in argv (skipping options and the values of the global ones). */
export function resolveCommand(table: Command[], argv: string[]): Resolved {
  const words: Array<{ word: string; index: number }> = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const t = argv[i]!;
    if (t === '--') break;
    if (t.startsWith('-') && t !== '-') {
      if (t.startsWith('--') && !t.includes('=') && PRE_COMMAND_VALUES.has(t.slice(2))) i++;
      // Only a word right after the first one is a subcommand.
      if (words.length === 1) break;
      continue;
    }
    if (words.length === 1 && words[0]!.index !== i - 1) break;
    words.push({ word: t, index: i });
  }
  if (words.length === 0) return { kind: 'none' };
  const [w1, w2] = words;
  if (w2) {
    const two = table.find((c) => c.path === `${w1!.word} ${w2.word}`);
    if (two) return { kind: 'command', command: two, words: [w1!.index, w2.index] };
  }
  const one = table.find((c) => c.path === w1!.word);
  if (one) return { kind: 'command', command: one, words: [w1!.index] };
  const group = table.filter((c) => c.path.startsWith(`${w1!.word} `));
  if (group.length > 0) return { kind: 'group', group: w1!.word, commands: group, ...(w2 ? { unknown: w2.word } : {}) };
  return { kind: 'unknown', word: w1!.word };
}

export function optionsOf(c: Command): Record<string, OptionSpec> {
  return { ...GLOBAL_OPTIONS, ...(c.connects ? CONNECTION_OPTIONS : {}), ...(c.options ?? {}) };
}

/** Parses the command's line strictly: unknown options, missing values and stray arguments are refused. */
export function parseCommandLine(c: Command, argv: string[], words: number[], table: Command[] = []): ParsedArgs {
  const dd = argv.indexOf('--');
  const head = (dd < 0 ? argv : argv.slice(0, dd)).filter((_, i) => !words.includes(i));
  const rest = dd < 0 ? [] : argv.slice(dd + 1);
  const specs = optionsOf(c);
  const name = c.path;
  const { tokens } = nodeParseArgs({ args: head, options: Object.fromEntries(Object.entries(specs).map(([k, o]) => [k, { type: o.type, multiple: true }])), strict: false, allowPositionals: true, tokens: true });
  const flags = new Map<string, string[]>();
  const positional: string[] = c.path.split(' ');
  for (const tok of tokens) {
    if (tok.kind === 'positional') {
      positional.push(tok.value);
      continue;
    }
    if (tok.kind !== 'option') continue;
    const spec = specs[tok.name];
    if (!spec) {
      const also = !c.connects && CONNECTION_OPTIONS[tok.name] ? ` (${name} does not talk to the server)` : '';
      throw new UsageError(`${name}: unknown option ${tok.rawName}${also}; licctl ${name} --help lists its options`);
    }
    let value: string;
    if (spec.type === 'boolean') {
      if (tok.inlineValue) throw new UsageError(`${name}: ${tok.rawName} takes no value`);
      value = 'true';
    } else {
      if (tok.value === undefined) throw new UsageError(`${name}: ${tok.rawName} needs a value (${spec.arg ?? 'VALUE'})`);
      if (!tok.inlineValue && tok.value.startsWith('--')) throw new UsageError(`${name}: ${tok.rawName} needs a value (${spec.arg ?? 'VALUE'}), got the option ${tok.value}`);
      value = tok.value;
    }
    const list = flags.get(tok.name) ?? [];
    if (list.length > 0 && !spec.multiple && spec.type === 'string') throw new UsageError(`${name}: ${tok.rawName} is given twice; give it once`);
    list.push(value);
    flags.set(tok.name, list);
  }
  const args = positional.length - c.path.split(' ').length;
  const want = c.args ?? { min: 0, max: 0, names: '' };
  if (args < want.min) throw new UsageError(`${name} needs ${want.names}; usage: licctl ${c.synopsis}`);
  if (args > want.max) {
    const extra = positional[c.path.split(' ').length + want.max]!;
    const subs = table.filter((x) => x.path.startsWith(`${c.path} `)).map((x) => x.path);
    if (args === 1 && want.max === 0 && subs.length > 0) throw new UsageError(`unknown subcommand ${JSON.stringify(`${c.path} ${extra}`)}: ${c.path} takes ${subs.join(', ')}; licctl ${c.path} --help says more`);
    throw new UsageError(`${name}: unexpected argument ${JSON.stringify(extra)}${want.max === 0 ? ` (${name} takes none)` : ''}; usage: licctl ${c.synopsis}`);
  }
  if (c.rest && rest.length === 0) throw new UsageError(`${name} needs a command after --: licctl ${c.synopsis}`);
  if (!c.rest && dd >= 0) throw new UsageError(`${name} takes no command after --; usage: licctl ${c.synopsis}`);
  return { positional, flags, rest };
}

/** Whether -h or --help is on the line (before any `--`). */
export function wantsHelp(argv: string[]): boolean {
  const dd = argv.indexOf('--');
  return (dd < 0 ? argv : argv.slice(0, dd)).some((t) => t === '-h' || t === '--help');
}

/** Splits text into lines at spaces: the first at most `first` columns, the others `rest` (a longer word stays whole). */
export function wrapWords(text: string, first: number, rest = first): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of text.trim().split(/\s+/)) {
    const width = lines.length === 0 ? first : rest;
    if (line !== '' && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line === '' ? w : `${line} ${w}`;
  }
  lines.push(line);
  return lines;
}

/** `prefix` then `text` wrapped to 78 columns, continuation lines indented by `indent` spaces. */
export function wrap(text: string, prefix = '', indent = prefix.length): string {
  const rest = Math.max(30, 78 - indent);
  const first = Math.max(20, 78 - prefix.length);
  return text
    .split('\n')
    .map((para, k) => wrapWords(para, k === 0 ? first : rest, rest).map((l, i) => (i === 0 && k === 0 ? prefix : ''.padEnd(indent)) + l).join('\n'))
    .join('\n');
}

function optionLines(specs: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(specs).map(([n, o]) => [`--${n}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}${o.multiple ? ' ...' : ''}`, o.help] as const);
  const w = Math.min(24, Math.max(...rows.map(([l]) => l.length)));
  return rows.map(([l, h]) => (l.length > w ? `  ${l}\n${wrap(h, ''.padEnd(w + 4))}` : wrap(h, `  ${l.padEnd(w)}  `)));
}

/** `licctl help CMD` and `licctl CMD --help`. */
export function commandHelp(c: Command): string {
  const lines = [wrap(c.summary, `licctl ${c.path}: `, 2), '', wrap(c.synopsis, 'usage: licctl ', 16)];
  if (c.details) lines.push('', wrap(c.details, '', 0));
  if (c.options && Object.keys(c.options).length > 0) lines.push('', 'Options:', ...optionLines(c.options));
  if (c.json) lines.push('', wrap(c.json, '--json: ', 8));
  lines.push('', c.examples.length > 1 ? 'Examples:' : 'Example:', ...c.examples.map((e) => wrap(e, '  ', 6)));
  if (c.connects) lines.push('', 'Connection (any command that talks to licd):', ...optionLines(CONNECTION_OPTIONS));
  lines.push('', 'Every command:', ...optionLines(GLOBAL_OPTIONS));
  return lines.join('\n');
}

/** The help of a group: `licctl vendor --help`. */
export function groupHelp(group: string, commands: Command[]): string {
  return [`licctl ${group}: one of`, ...commands.flatMap((c) => [wrap(c.synopsis, '  licctl ', 10), wrap(c.summary, '      ')]), '', `licctl help ${group} SUBCOMMAND (or licctl ${group} SUBCOMMAND --help) says more`].join('\n');
}

/** `licctl --help`: every command by section, then the options and exit codes. */
export function topHelp(table: Command[], exitCodes: string): string {
  const lines = ['licctl - licd license server tool', '', 'usage: licctl COMMAND [OPTIONS] [ARGS]   (licctl help COMMAND, or licctl COMMAND --help, for one)'];
  for (const s of SECTIONS) {
    const cs = table.filter((c) => c.section === s.id);
    if (cs.length === 0) continue;
    lines.push('', `${s.title}:`);
    for (const c of cs) {
      lines.push(wrap(c.synopsis, '  licctl ', 10), wrap(c.summary, '      '));
    }
  }
  lines.push('', 'Connection (every command that talks to licd; anywhere on the line):', ...optionLines(CONNECTION_OPTIONS));
  lines.push('', 'Every command (anywhere on the line):', ...optionLines({ ...GLOBAL_OPTIONS, version: { type: 'boolean', help: "licctl's version" } }));
  lines.push('', exitCodes);
  return lines.join('\n');
}
