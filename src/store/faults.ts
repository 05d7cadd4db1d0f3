/**
 * What a storage error means, in a sentence that names the directory and the fix. LevelDB
 * (classic-level) reports its I/O errors as text ("IO error: <file>: No space left on device",
 * "lock <dir>/LOCK: already held by process"), node:fs with errno codes; both end here.
 * docs/storage.md lists the sentences and the exit codes.
 */
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LicdError } from '../core/errors.ts';

export type StoreFault = 'no-space' | 'read-only' | 'permission' | 'locked' | 'io';

/** Exit codes of a start-up that fails on the data dir (sysexits.h). */
export const STORE_EXIT: Record<StoreFault, number> = {
  'no-space': 73, // EX_CANTCREAT
  'read-only': 73,
  permission: 73,
  io: 74, // EX_IOERR
  locked: 75, // EX_TEMPFAIL: another licd holds it; systemd may try again
};

/** The chain of messages and codes of an error and its causes. */
function chain(e: unknown): { text: string; codes: string[] } {
  const texts: string[] = [];
  const codes: string[] = [];
  for (let cur: unknown = e, depth = 0; cur && depth < 5; depth++) {
    const x = cur as { message?: unknown; code?: unknown; cause?: unknown };
    if (typeof x.message === 'string') texts.push(x.message);
    else texts.push(String(cur));
    if (typeof x.code === 'string') codes.push(x.code);
    cur = x.cause;
  }
  return { text: texts.join(' | '), codes };
}

export function classifyStoreError(e: unknown): StoreFault {
  const { text, codes } = chain(e);
  if (codes.includes('LEVEL_LOCKED') || /already held by process|LOCK: (Resource temporarily unavailable|Try again)/i.test(text)) return 'locked';
  if (codes.includes('ENOSPC') || /No space left on device|Disk quota exceeded/i.test(text) || codes.includes('EDQUOT')) return 'no-space';
  if (codes.includes('EROFS') || /Read-only file system/i.test(text)) return 'read-only';
  if (codes.includes('EACCES') || codes.includes('EPERM') || /Permission denied|Operation not permitted/i.test(text)) return 'permission';
  return 'io';
}

/** The innermost message (LevelDB's own text, without "Database failed to open"). */
function detail(e: unknown): string {
  let cur = e as { message?: string; cause?: unknown } | undefined;
  let msg = String((cur as { message?: unknown })?.message ?? e);
  for (let depth = 0; cur && depth < 5; depth++) {
    if (typeof cur.message === 'string') msg = cur.message;
    cur = cur.cause as typeof cur;
  }
  return msg;
}

/**
 * The sentence for a storage fault on `dir`. `running`: the daemon is serving and retries by
 * itself; otherwise it is start-up, which stops.
 */
export function describeStoreFault(fault: StoreFault, dir: string, e: unknown, running: boolean): string {
  const resume = running ? 'licd resumes writing by itself' : 'then start licd again';
  switch (fault) {
    case 'no-space':
      return `no space left on ${dir}: the disk holding it is full (no space left on device); free space there, ${resume}`;
    case 'read-only':
      return `permission denied on ${dir}: its file system is mounted read-only; remount it read-write (or set dataDir / LICD_DATA_DIR to a writable directory), ${resume}`;
    case 'permission':
      return `permission denied on ${dir}: licd's user cannot write there; give it ownership (chown) or set dataDir / LICD_DATA_DIR to a writable directory, ${resume}`;
    case 'locked':
      return `another licd holds ${dir} (its LOCK file is taken by a running process); stop the other licd (systemctl status licd) or give this one another dataDir`;
    case 'io':
      return `I/O error on ${dir} (${detail(e)}); check the disk (dmesg, the file system), ${resume}`;
  }
}

/** A LicdError STORE_FAILED for a storage error on `dir`; details.fault says which. */
export function storeFaultError(e: unknown, dir: string, running: boolean): LicdError {
  const fault = classifyStoreError(e);
  return new LicdError('STORE_FAILED', describeStoreFault(fault, dir, e, running), { fault, dir, cause: detail(e) });
}

/** The same fault said for start-up (which stops) instead of for a running daemon. */
export function atStartUp(e: LicdError): LicdError {
  const d = e.details as { fault?: StoreFault; dir?: string; cause?: string } | undefined;
  if (e.code !== 'STORE_FAILED' || !d?.fault || !d.dir) return e;
  return new LicdError('STORE_FAILED', describeStoreFault(d.fault, d.dir, new Error(d.cause ?? ''), false), d);
}

/** A node:fs error on a file in the data dir (errno code and path), or null for anything else. */
export function fsFaultError(e: unknown, dir: string, running = false): LicdError | null {
  const x = e as { code?: unknown; path?: unknown };
  if (typeof x?.code !== 'string' || !['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO'].includes(x.code)) return null;
  return storeFaultError(e, typeof x.path === 'string' ? x.path : dir, running);
}

/**
 * Makes the data dir if needed and checks that licd may write there, before anything writes
 * into it (the emulated dongle's state, development material, the database). A recursive mkdir
 * on a read-only file system says ENOENT; one level at a time says EROFS.
 */
export function prepareDataDir(dir: string): void {
  try {
    const missing: string[] = [];
    for (let d = dir; !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
    for (const d of missing) mkdirSync(d);
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw fsFaultError(e, dir) ?? e;
  }
}
