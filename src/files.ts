/**
 * Reading the files a user hands licd and licctl (config, license file, vendor key, spec files,
 * release, token, request, return and limits files): every error names the file and what is wrong
 * with it in one line, never a raw errno text or a JSON parser's quote of the content.
 */
import { readFileSync } from 'node:fs';
import { LicdError, type ErrorCode } from './core/errors.ts';

/** "no such file: PATH", "permission denied: PATH", ... for a node:fs error on PATH. */
export function fsErrorText(e: unknown, path: string): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return `no such file: ${path}`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied: ${path}`;
    case 'EISDIR':
      return `${path} is a directory, not a file`;
    case 'ENOTDIR':
      return `a part of ${path} is not a directory`;
    default:
      return `cannot read ${path} (${code ?? (e as Error)?.message ?? String(e)})`;
  }
}

/** A JSON parse error in one line, with the line and column when the parser gives a position. */
export function jsonErrorText(e: unknown, text: string): string {
  let msg = String((e as Error)?.message ?? e);
  // Node quotes the start of the text ("Unexpected token 'o', "not json..." is not valid JSON"):
  // drop the quote, the file may hold a secret and the quote spans lines.
  msg = msg.replace(/, ".*" is not valid JSON$/s, '').replace(/ in JSON at position \d+.*$/s, '').replace(/^JSON\.parse: /, '');
  const pos = /at position (\d+)/.exec(String((e as Error)?.message ?? ''));
  let where = '';
  if (pos) {
    const before = text.slice(0, Number(pos[1]));
    const line = before.split('\n').length;
    where = `line ${line}, column ${Number(pos[1]) - before.lastIndexOf('\n')}: `;
  }
  return `${where}${msg.charAt(0).toLowerCase()}${msg.slice(1)}`;
}

export interface FileErrorOptions {
  /** The error code to throw with (default CONFIG_INVALID). */
  code?: ErrorCode;
  /** Appended after "; ": how to fix it (a flag, a setting). */
  fix?: string;
}

function fail(what: string, detail: string, o: FileErrorOptions, path: string): LicdError {
  return new LicdError(o.code ?? 'CONFIG_INVALID', `${what}: ${detail}${o.fix ? `; ${o.fix}` : ''}`, { file: path });
}

/** The text of a file, or an error "WHAT: no such file: PATH; FIX". */
export function readTextFile(path: string, what: string, o: FileErrorOptions = {}): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fail(what, fsErrorText(e, path), o, path);
  }
}

/** Parses text read from PATH as JSON, or throws "WHAT: PATH is not valid JSON (line L, column C: ...)". */
export function parseJsonFile(text: string, path: string, what: string, o: FileErrorOptions = {}): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail(what, `${path} is not valid JSON (${jsonErrorText(e, text)})`, o, path);
  }
}

/** Reads and parses a JSON file; errors name WHAT, the file, and what is wrong. */
export function readJsonFile(path: string, what: string, o: FileErrorOptions = {}): unknown {
  return parseJsonFile(readTextFile(path, what, o), path, what, o);
}
