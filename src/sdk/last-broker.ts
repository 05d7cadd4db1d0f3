/**
 * The broker a list's last run reached, so that the next run (licctl is one process per command)
 * tries it first: the user's own state, kept beside the pinned vendor keys (LICD_HOME, or
 * ~/.config/licd) in last-broker.json, keyed by the list. Best effort: a file that cannot be
 * read or written only costs the order of the tries.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export function lastBrokerPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.LICD_HOME ? join(env.LICD_HOME, 'last-broker.json') : join(homedir(), '.config', 'licd', 'last-broker.json');
}

function readAll(path: string): Record<string, string> {
  try {
    if (!existsSync(path)) return {};
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
  } catch {
    return {};
  }
}

/** The broker of `urls` used last, if it is still in the list. */
export function lastBroker(urls: readonly string[], env: NodeJS.ProcessEnv = process.env): string | null {
  if (urls.length < 2) return null;
  const v = readAll(lastBrokerPath(env))[urls.join(',')];
  return typeof v === 'string' && urls.includes(v) ? v : null;
}

export function rememberBroker(urls: readonly string[], used: string, env: NodeJS.ProcessEnv = process.env): void {
  if (urls.length < 2) return;
  const path = lastBrokerPath(env);
  try {
    const all = readAll(path);
    const key = urls.join(',');
    if (all[key] === used) return;
    all[key] = used;
    // At most 32 lists remembered: the oldest entries go first.
    const keys = Object.keys(all);
    for (const k of keys.slice(0, Math.max(0, keys.length - 32))) delete all[k];
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, path);
  } catch {
    /* only the order of the next run's tries */
  }
}
