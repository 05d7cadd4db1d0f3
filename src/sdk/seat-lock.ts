/**
 * Offline uses of a borrowed token on this host, at most its count at once: one lock file per seat
 * slot under LICD_HOME/locks/<borrowId>/, made with O_EXCL, holding the pid and the process start
 * time (/proc/<pid>/stat field 22). A slot whose pid is gone, or whose pid now belongs to another
 * process (another start time: the pid was reused), is stale and taken over, so a crash (even a
 * SIGKILL) never keeps a seat busy. Takeovers are serialised by a short-lived guard file.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface SlotOwner {
  pid: number;
  start: string;
  feature: string;
  at: string;
}

export interface HeldSlot {
  borrowId: string;
  slot: number;
  file: string;
  release(): void;
}

/** The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or null if there is none. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces or ')': count after the last one.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[22 - 3] ?? null;
  } catch {
    return null;
  }
}

function readOwner(file: string): SlotOwner | null | 'absent' {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SlotOwner;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    return null; // torn or foreign content: treated as stale once its guard is held
  }
}

/** Whether a recorded owner is still the live process it recorded. */
export function ownerAlive(o: SlotOwner | null): boolean {
  if (!o || !Number.isInteger(o.pid) || o.pid <= 0) return false;
  const start = processStart(o.pid);
  return start !== null && start === o.start;
}

const GUARD_STALE_MS = 10_000;

export class SeatLocks {
  constructor(private readonly dir: string) {}

  private slotFile(borrowId: string, slot: number): string {
    return join(this.dir, borrowId, `seat-${slot}.lock`);
  }

  /** Live owners of a borrow's slots (for the refusal message). */
  owners(borrowId: string, count: number): SlotOwner[] {
    const out: SlotOwner[] = [];
    for (let i = 0; i < count; i++) {
      const o = readOwner(this.slotFile(borrowId, i));
      if (o !== 'absent' && o && ownerAlive(o)) out.push(o);
    }
    return out;
  }

  /** Takes a free (or stale) slot of the borrow for this process, or returns null when all `count` are in use. */
  acquire(borrowId: string, count: number, feature: string, pid = process.pid): HeldSlot | null {
    mkdirSync(join(this.dir, borrowId), { recursive: true, mode: 0o700 });
    const start = processStart(pid);
    if (start === null) throw new Error(`cannot read /proc/${pid}/stat to lock a borrowed seat`);
    const me: SlotOwner = { pid, start, feature, at: new Date().toISOString() };
    for (let i = 0; i < count; i++) {
      const file = this.slotFile(borrowId, i);
      if (this.create(file, me)) return this.held(borrowId, i, file, me);
      if (this.takeOver(borrowId, file, me)) return this.held(borrowId, i, file, me);
    }
    return null;
  }

  private create(file: string, me: SlotOwner): boolean {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    try {
      writeSync(fd, JSON.stringify(me) + '\n');
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** Replaces a stale slot file, under the borrow's guard so that two takers cannot both win. */
  private takeOver(borrowId: string, file: string, me: SlotOwner): boolean {
    const o = readOwner(file);
    if (o === 'absent') return this.create(file, me);
    if (o && ownerAlive(o)) return false;
    // A slot file is written in one small write right after its O_EXCL create: unreadable content
    // that is not brand new is a torn write of a crashed process.
    if (o === null && Date.now() - mtime(file) < 2000) return false;
    const guard = join(this.dir, borrowId, 'takeover.guard');
    // Another process is taking over a slot of this borrow: it holds the guard for milliseconds.
    let got = this.create(guard, me);
    for (let i = 0; !got && i < 50 && Date.now() - mtime(guard) < GUARD_STALE_MS; i++) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      got = this.create(guard, me);
    }
    if (!got) {
      // A guard older than a takeover could ever take is left by a crash: clear it, try once more.
      // (Two processes doing this at the same instant could both get it; that needs a crash inside
      // a takeover and two new uses within the same milliseconds 10 s later.)
      if (Date.now() - mtime(guard) < GUARD_STALE_MS) return false;
      rmSync(guard, { force: true });
      if (!this.create(guard, me)) return false;
    }
    try {
      const again = readOwner(file);
      if (again !== 'absent' && again && ownerAlive(again)) return false;
      if (again === null && Date.now() - mtime(file) < 2000) return false;
      rmSync(file, { force: true });
      return this.create(file, me);
    } finally {
      rmSync(guard, { force: true });
    }
  }

  private held(borrowId: string, slot: number, file: string, me: SlotOwner): HeldSlot {
    let released = false;
    return {
      borrowId,
      slot,
      file,
      release: () => {
        if (released) return;
        released = true;
        // Only our own file: a slot taken over after we were judged dead is not ours to remove.
        const o = readOwner(file);
        if (o !== 'absent' && o && o.pid === me.pid && o.start === me.start) rmSync(file, { force: true });
      },
    };
  }
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
