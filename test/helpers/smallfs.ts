/**
 * A real small filesystem for disk faults: a tmpfs of a few MiB mounted on a temp dir (needs
 * root), filled to the last byte with one file and freed by deleting it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallFs {
  dir: string;
  /** Writes a file until the filesystem says ENOSPC; returns the bytes written. */
  fill(): number;
  /** Deletes the fill file. */
  free(): void;
  remount(opts: string): void;
  unmount(): void;
}

export function canMount(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function mountSmallFs(sizeMiB = 6): SmallFs {
  if (!canMount()) throw new Error(`this test mounts a ${sizeMiB} MiB tmpfs for a real full disk and needs root (CI runs as root; locally: sudo npx ava FILE)`);
  const dir = mkdtempSync(join(tmpdir(), 'licd-smallfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  const fillFile = join(dir, 'fill');
  let mounted = true;
  return {
    dir,
    fill() {
      const fd = openSync(fillFile, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      let n = 0;
      try {
        for (;;) {
          // Smaller and smaller pieces, so not even a byte is left.
          let size = chunk.length;
          for (;;) {
            try {
              n += writeSync(fd, chunk, 0, size);
              break;
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
              if (size === 1) return n;
              size = Math.max(1, size >> 1);
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      try {
        unlinkSync(fillFile);
      } catch {
        /* already gone */
      }
    },
    remount(opts: string) {
      execFileSync('mount', ['-o', `remount,${opts}`, dir]);
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync('umount', ['-l', dir]);
      } catch {
        /* best effort in teardown */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
