/**
 * One maintenance-console session on a serial line: login (the admin password or the first-boot
 * setup code, nothing echoed), a growing delay after wrong tries that survives a dropped line, an
 * idle logout, an audit line for every login and command, and the command loop (help, tab
 * completion, history, Ctrl-C cancels, Ctrl-D logs out). No I/O of its own: bytes come in through
 * feed(), text goes out through `write`, time through `clock`, and everything the commands touch
 * through the backends (src/console/commands.ts).
 */
import { escapeText } from '../core/validate.ts';
import { LineEditor } from './line-editor.ts';
import { YmodemReceiver, YmodemSender, type YmodemResult } from './ymodem.ts';

export interface ConsoleClock {
  now(): number;
  setTimeout(f: () => void, ms: number): { cancel(): void };
}

export const systemClock: ConsoleClock = {
  now: () => Date.now(),
  setTimeout(f, ms) {
    const t = setTimeout(f, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Who may log in: the admin password or the one-time setup code (first boot). */
export interface Credentials {
  check(password: string): 'admin' | 'setup' | null;
}

/** The wrong-try counter, kept where a dropped line (a restarted console) cannot reset it. */
export interface LockoutStore {
  load(): { failures: number; until: number };
  save(s: { failures: number; until: number }): void;
}

export interface AuditSink {
  (entry: { event: string; ok: boolean; detail?: string }): void;
}

/** What a command gets: output, questions, paste, cancellation. */
export interface CommandIO {
  /** Prints lines (\n becomes \r\n); the text is escaped: nothing in it can drive the terminal. */
  print(s: string): void;
  /** Asks y/n; only y or yes goes on. */
  confirm(question: string): Promise<boolean>;
  /** Asks for a line (masked: nothing echoed). */
  ask(question: string, o?: { masked?: boolean }): Promise<string>;
  /** Takes pasted text until a line with a single "." (or Ctrl-D); at most `maxBytes`. */
  paste(what: string, maxBytes?: number): Promise<string>;
  /** Receives one file by YMODEM (the terminal program sends it); Ctrl-C before it starts cancels. */
  ymodem(maxBytes?: number): Promise<YmodemResult>;
  /** Sends one file by YMODEM (the terminal program receives it); Ctrl-C before it starts cancels. */
  ymodemSend(name: string, data: Buffer): Promise<void>;
  /** Aborted by Ctrl-C. */
  signal: AbortSignal;
  /** Who logged in. */
  role: 'admin' | 'setup';
  columns: number;
}

export interface ConsoleCommand {
  /** Words: 'status', 'clock accept'. */
  name: string;
  /** Arguments for help: 'LEASE_ID [BLOCK]'. */
  args?: string;
  summary: string;
  /** Completions for the argument words (e.g. feature names). */
  complete?(): string[];
  run(io: CommandIO, args: string[]): Promise<void>;
}

export class CancelledError extends Error {
  constructor() {
    super('cancelled');
  }
}

export interface SessionOptions {
  write(s: string): void;
  credentials: Credentials;
  commands: ConsoleCommand[];
  lockout: LockoutStore;
  audit: AuditSink;
  clock?: ConsoleClock;
  banner?: () => string;
  idleSeconds?: number;
  columns?: number;
  hostName?: string;
}

type Pending = { kind: 'line'; resolve: (s: string | null) => void } | null;

/** The delay after the n-th wrong try in a row: 1, 2, 4 ... seconds, at most 5 minutes. */
export function lockoutDelaySeconds(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(300, 2 ** Math.min(failures - 1, 9));
}

export class ConsoleSession {
  private readonly ed: LineEditor;
  private readonly clock: ConsoleClock;
  private role: 'admin' | 'setup' | null = null;
  private pending: Pending = null;
  private running: AbortController | null = null;
  private idleTimer: { cancel(): void } | null = null;
  private waitTimer: { cancel(): void } | null = null;
  private closed = false;
  /** While a file transfer runs, the line's bytes go to it, not to the line editor. */
  private raw: ((data: Uint8Array) => void) | null = null;

  constructor(private readonly o: SessionOptions) {
    this.clock = o.clock ?? systemClock;
    this.ed = new LineEditor({ write: (s) => o.write(s), complete: (before) => this.complete(before), columns: o.columns ?? 80 });
  }

  /** Starts the session: the banner and the login prompt. */
  start(): void {
    this.loginPrompt();
  }

  /** Bytes from the line. Never throws: garbage is dropped by the line editor. */
  feed(data: Uint8Array | string): void {
    if (this.closed) return;
    this.touch();
    if (this.raw) {
      this.raw(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
      return;
    }
    for (const ev of this.ed.feed(data)) {
      if (ev.kind === 'cancel') {
        if (this.running) this.running.abort();
        else if (this.pending) this.settle(null);
        else if (this.role) this.prompt();
        else this.loginPrompt();
      } else if (ev.kind === 'eof') {
        if (this.pending) this.settle(null);
        else if (this.role) this.logout('logged out');
        else this.loginPrompt();
      } else if (this.pending) this.settle(ev.text);
      else if (this.role) void this.command(ev.text);
      else this.login(ev.text);
    }
  }

  /** The line dropped: end whatever runs, log out. */
  close(): void {
    if (this.closed) return;
    this.running?.abort();
    if (this.role) this.o.audit({ event: 'logout', ok: true, detail: 'line dropped' });
    this.role = null;
    this.closed = true;
    this.idleTimer?.cancel();
    this.waitTimer?.cancel();
  }

  get loggedIn(): boolean {
    return this.role !== null;
  }

  private out(s: string): void {
    this.o.write(escapeText(s, { keepNewlines: true }).replace(/\n/g, '\r\n'));
  }

  private touch(): void {
    this.idleTimer?.cancel();
    if (!this.role) return;
    const secs = this.o.idleSeconds ?? 600;
    this.idleTimer = this.clock.setTimeout(() => {
      if (!this.role) return;
      this.running?.abort();
      if (this.pending) this.settle(null);
      this.o.write('\r\n');
      this.logout(`logged out after ${Math.round(secs / 60) || secs} ${secs >= 60 ? 'minutes' : 'seconds'} without input`);
    }, secs * 1000);
  }

  private loginPrompt(quiet = false): void {
    const s = this.o.lockout.load();
    const wait = s.until - this.clock.now();
    if (wait > 0) {
      this.ed.pause();
      if (!quiet) this.out(`too many wrong passwords: the next try is possible in ${Math.ceil(wait / 1000)} s\n`);
      this.waitTimer?.cancel();
      this.waitTimer = this.clock.setTimeout(() => this.loginPrompt(), wait);
      return;
    }
    if (this.o.banner) this.out(this.o.banner() + '\n');
    this.ed.start(`${this.o.hostName ?? 'licd'} console password: `, { masked: true });
    this.readAhead();
  }

  private login(password: string): void {
    const role = password === '' ? null : this.o.credentials.check(password);
    if (!role) {
      if (password === '') return this.loginPrompt();
      const s = this.o.lockout.load();
      const failures = s.failures + 1;
      const delay = lockoutDelaySeconds(failures);
      this.o.lockout.save({ failures, until: this.clock.now() + delay * 1000 });
      this.o.audit({ event: 'login', ok: false, detail: `wrong password (${failures} in a row)` });
      this.out(`wrong password; wait ${delay} s before the next try\n`);
      this.ed.flushAhead();
      return this.loginPrompt(true);
    }
    this.o.lockout.save({ failures: 0, until: 0 });
    this.role = role;
    this.o.audit({ event: 'login', ok: true, detail: role === 'setup' ? 'with the setup code' : 'admin' });
    this.out(role === 'setup' ? 'logged in with the setup code: set the admin password now (command: password)\n' : 'logged in; "help" lists the commands, Ctrl-D logs out\n');
    this.touch();
    this.prompt();
  }

  private logout(why: string): void {
    this.ed.flushAhead();
    this.o.audit({ event: 'logout', ok: true, detail: why });
    this.role = null;
    this.idleTimer?.cancel();
    this.out(`${why}\n`);
    this.loginPrompt();
  }

  private prompt(): void {
    this.ed.start(`${this.o.hostName ?? 'licd'}> `);
    this.readAhead();
  }

  /** A line started: what was typed ahead is read now (after the caller's own work, in order). */
  private readAhead(): void {
    if (!this.ed.hasAhead || this.aheadScheduled) return;
    this.aheadScheduled = true;
    queueMicrotask(() => {
      this.aheadScheduled = false;
      if (!this.closed && this.ed.editing && !this.raw) this.feed(new Uint8Array(0));
    });
  }

  private aheadScheduled = false;

  private settle(v: string | null): void {
    const p = this.pending;
    this.pending = null;
    p?.resolve(v);
  }

  private find(words: string[]): { c: ConsoleCommand; args: string[] } | null {
    for (const n of [2, 1]) {
      const name = words.slice(0, n).join(' ');
      const c = this.o.commands.find((x) => x.name === name);
      if (c) return { c, args: words.slice(n) };
    }
    return null;
  }

  private complete(before: string): string[] {
    const words = before.split(/\s+/);
    const last = words.pop() ?? '';
    const head = words.filter((w) => w !== '').join(' ');
    if (head === '') return [...new Set(this.o.commands.map((c) => c.name.split(' ')[0]!))].filter((w) => w.startsWith(last)).sort();
    const subs = this.o.commands.filter((c) => c.name.startsWith(`${head} `)).map((c) => c.name.slice(head.length + 1));
    if (subs.length > 0) return subs.filter((w) => w.startsWith(last)).sort();
    const found = this.find(words.filter((w) => w !== ''));
    return (found?.c.complete?.() ?? []).filter((w) => w.startsWith(last)).sort();
  }

  private async command(line: string): Promise<void> {
    const words = line.trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return this.prompt();
    const found = this.find(words);
    if (!found) {
      const group = this.o.commands.filter((c) => c.name.startsWith(`${words[0]} `));
      this.out(group.length > 0 ? `${words[0]}: one of ${group.map((c) => c.name).join(', ')}\n` : `unknown command ${JSON.stringify(words[0])}; "help" lists the commands\n`);
      this.o.audit({ event: 'command', ok: false, detail: line });
      return this.prompt();
    }
    const ac = new AbortController();
    this.running = ac;
    this.ed.pause();
    const io: CommandIO = {
      print: (s) => this.out(s.endsWith('\n') ? s : s + '\n'),
      confirm: async (q) => {
        const a = await this.readLine(`${q} (y/n) `, false, ac.signal);
        return /^(y|yes)$/i.test(a.trim());
      },
      ask: (q, o) => this.readLine(q, o?.masked ?? false, ac.signal),
      paste: async (what, maxBytes = 256 * 1024) => {
        this.out(`paste ${what}, then a line with a single "." (Ctrl-C cancels)\n`);
        const lines: string[] = [];
        let size = 0;
        for (;;) {
          const l = await this.readLine('', true, ac.signal, true);
          if (l === '.') break;
          size += l.length + 1;
          if (size > maxBytes) throw new Error(`more than ${maxBytes} bytes pasted; nothing was used`);
          lines.push(l);
        }
        this.out(`(${lines.length} lines, ${size} bytes received)\n`);
        return lines.join('\n');
      },
      ymodem: async (maxBytes = 256 * 1024) => {
        this.out('start the YMODEM send in your terminal program now (minicom: Ctrl-A S, ymodem; sz --ymodem FILE); Ctrl-C cancels\n');
        const rx = new YmodemReceiver({ send: (b) => this.o.write(b.toString('latin1')), clock: this.clock, maxBytes });
        const onAbort = () => rx.cancel('cancelled');
        ac.signal.addEventListener('abort', onAbort, { once: true });
        this.raw = (d) => {
          if (!rx.started && d.includes(0x03)) rx.cancel('cancelled');
          else rx.feed(d);
        };
        try {
          const r = await rx.result;
          // The sender (sz under minicom) still holds the line for a moment after the last ACK:
          // text sent now would go to it, not to the screen.
          await new Promise<void>((res) => this.clock.setTimeout(res, 1500));
          this.out(`\nreceived ${r.name} (${r.data.length} bytes)\n`);
          return r;
        } finally {
          this.raw = null;
          ac.signal.removeEventListener('abort', onAbort);
        }
      },
      ymodemSend: async (name, data) => {
        this.out(`start the YMODEM receive in your terminal program now (minicom: Ctrl-A R, ymodem; rz --ymodem); ${name}, ${data.length} bytes; Ctrl-C cancels\n`);
        const tx = new YmodemSender({ send: (b) => this.o.write(b.toString('latin1')), clock: this.clock, name, data });
        const onAbort = () => tx.cancel('cancelled');
        ac.signal.addEventListener('abort', onAbort, { once: true });
        this.raw = (d) => {
          if (!tx.started && d.includes(0x03)) tx.cancel('cancelled');
          else tx.feed(d);
        };
        try {
          await tx.result;
          // The receiver (rz under minicom) still holds the line for a moment after its last ACK.
          await new Promise<void>((res) => this.clock.setTimeout(res, 1500));
          this.out(`\nsent ${name} (${data.length} bytes)\n`);
        } finally {
          this.raw = null;
          ac.signal.removeEventListener('abort', onAbort);
        }
      },
      signal: ac.signal,
      role: this.role!,
      columns: this.o.columns ?? 80,
    };
    let ok = true;
    let detail = line;
    try {
      await found.c.run(io, found.args);
    } catch (e) {
      ok = false;
      if (e instanceof CancelledError || ac.signal.aborted) this.out('cancelled\n');
      else {
        detail = `${line}: ${(e as Error).message}`;
        this.out(`error: ${(e as Error).message}\n`);
      }
    } finally {
      this.running = null;
      if (this.pending) this.settle(null);
    }
    this.o.audit({ event: 'command', ok, detail });
    if (this.role && !this.closed) this.prompt();
  }

  private readLine(prompt: string, masked: boolean, signal: AbortSignal, paste = false): Promise<string> {
    // A pasted line (a license file on one line) may be long; a typed one stays short.
    const maxLength = paste ? 256 * 1024 : 512;
    if (signal.aborted) return Promise.reject(new CancelledError());
    return new Promise<string>((resolve, reject) => {
      const onAbort = () => {
        this.ed.pause();
        this.settle(null);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending = {
        kind: 'line',
        resolve: (v) => {
          signal.removeEventListener('abort', onAbort);
          if (v === null) {
            // Ctrl-D ends a paste; anything else that settles with nothing is a cancel.
            if (paste && !signal.aborted) resolve('.');
            else reject(new CancelledError());
          } else resolve(v);
        },
      };
      this.ed.start(prompt, { masked, maxLength });
      this.readAhead();
    });
  }
}
