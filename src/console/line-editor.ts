/**
 * The console's line discipline, on raw bytes from a serial line (115200 8N1, no flow control):
 * printable ASCII is inserted, the usual editing keys work (Backspace, Ctrl-A/E/B/F, Ctrl-U/K/W,
 * arrows, Home/End, Delete, history with Up/Down), Tab asks for completions, Enter ends the line,
 * Ctrl-C cancels it, Ctrl-D on an empty line ends the session. Everything else (noise, binary
 * garbage, unknown escape sequences, bytes >= 0x80) is dropped, so nothing from the line reaches
 * the screen unescaped. No I/O: bytes in through feed(), text out through `write`.
 */

export type EditorEvent = { kind: 'line'; text: string } | { kind: 'cancel' } | { kind: 'eof' };

export interface LineEditorOptions {
  write(s: string): void;
  /** Completions for the text before the cursor: candidates that replace its last word. */
  complete?(before: string): string[];
  /** Terminal width; the line scrolls sideways within it (80 by default). */
  columns?: number;
  maxLength?: number;
  historySize?: number;
}

const BEL = '\x07';
/** The most typed-ahead bytes kept: a pasted file of the largest size a paste takes, and some. */
const MAX_AHEAD = 300 * 1024;

export class LineEditor {
  private buf = '';
  private cur = 0;
  private prompt = '';
  private masked = false;
  private active = false;
  private esc: string | null = null;
  private lastWasCR = false;
  private readonly history: string[] = [];
  private histPos = 0;
  private stash = '';
  private readonly columns: number;
  private readonly maxLength: number;
  private limit = 512;
  /**
   * Bytes that came while no line was being read: typed ahead while a command ran, or the rest of
   * a block pasted at once (a license file's lines and the "." after them arrive in one read). The
   * next line reads them first; a Ctrl-C among them still cancels at once and drops what came
   * before it, as a terminal's interrupt flushes its input.
   */
  private ahead: Uint8Array = new Uint8Array(0);

  constructor(private readonly o: LineEditorOptions) {
    this.columns = o.columns ?? 80;
    this.maxLength = o.maxLength ?? 512;
  }

  /** Shows `prompt` and starts a line; `masked` echoes nothing (passwords). */
  start(prompt: string, o: { masked?: boolean; maxLength?: number } = {}): void {
    this.prompt = prompt;
    this.masked = o.masked ?? false;
    this.limit = o.maxLength ?? this.maxLength;
    this.buf = '';
    this.cur = 0;
    this.active = true;
    this.histPos = this.history.length;
    this.o.write(prompt);
  }

  /** Stops taking input (a command runs); bytes still pass through feed() for Ctrl-C. */
  pause(): void {
    this.active = false;
  }

  get editing(): boolean {
    return this.active;
  }

  get text(): string {
    return this.buf;
  }

  /** Feeds raw bytes; returns what they completed (lines, cancels, an end). */
  feed(data: Uint8Array | string): EditorEvent[] {
    const events: EditorEvent[] = [];
    const fresh = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    const bytes = this.ahead.length === 0 ? fresh : Buffer.concat([this.ahead, fresh]);
    this.ahead = new Uint8Array(0);
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (!this.active && this.esc === null && b !== 0x03) {
        // The LF of the CRLF that ended the last line is not a line of its own.
        if (b === 0x0a && this.lastWasCR) {
          this.lastWasCR = false;
          continue;
        }
        this.lastWasCR = false;
        const cancel = bytes.indexOf(0x03, i);
        if (cancel === -1) {
          this.ahead = bytes.slice(i, i + MAX_AHEAD);
          break;
        }
        i = cancel - 1;
        continue;
      }
      const ev = this.byte(b);
      if (ev) events.push(ev);
    }
    return events;
  }

  /** Whether bytes wait for the next line (the caller feeds an empty chunk after start() to read them). */
  get hasAhead(): boolean {
    return this.ahead.length > 0;
  }

  /** Drops what was typed ahead (after a wrong password, at a logout). */
  flushAhead(): void {
    this.ahead = new Uint8Array(0);
  }

  private byte(b: number): EditorEvent | null {
    const wasCR = this.lastWasCR;
    this.lastWasCR = false;
    if (this.esc !== null) return this.escape(b);
    if (b === 0x03) {
      // Ctrl-C: cancels the line being typed, or the command running.
      if (this.active) {
        this.o.write('^C\r\n');
        this.active = false;
      }
      return { kind: 'cancel' };
    }
    if (!this.active) return null;
    switch (b) {
      case 0x0d:
        this.lastWasCR = true;
        return this.enter();
      case 0x0a:
        return wasCR ? null : this.enter();
      case 0x04:
        if (this.buf === '') {
          this.o.write('\r\n');
          this.active = false;
          return { kind: 'eof' };
        }
        return this.deleteAt();
      case 0x7f:
      case 0x08:
        if (this.cur === 0) return this.bell();
        this.buf = this.buf.slice(0, this.cur - 1) + this.buf.slice(this.cur);
        this.cur--;
        return this.redraw();
      case 0x01:
        this.cur = 0;
        return this.redraw();
      case 0x05:
        this.cur = this.buf.length;
        return this.redraw();
      case 0x02:
        return this.move(-1);
      case 0x06:
        return this.move(1);
      case 0x15:
        this.buf = this.buf.slice(this.cur);
        this.cur = 0;
        return this.redraw();
      case 0x0b:
        this.buf = this.buf.slice(0, this.cur);
        return this.redraw();
      case 0x17: {
        const before = this.buf.slice(0, this.cur).replace(/\S+\s*$/, '');
        this.buf = before + this.buf.slice(this.cur);
        this.cur = before.length;
        return this.redraw();
      }
      case 0x0c:
        this.o.write('\x1b[2J\x1b[H');
        return this.redraw(true);
      case 0x09:
        return this.tab();
      case 0x1b:
        this.esc = '';
        return null;
      default:
        if (b >= 0x20 && b < 0x7f) return this.insert(String.fromCharCode(b));
        return null; // other control bytes and bytes >= 0x80: noise
    }
  }

  /** ESC [ ... final, or ESC O x: arrows, Home, End, Delete; anything else is dropped whole. */
  private escape(b: number): EditorEvent | null {
    const seq = this.esc! + String.fromCharCode(b);
    if (seq === '[' || seq === 'O') {
      this.esc = seq;
      return null;
    }
    if (seq.startsWith('[') && b >= 0x20 && b <= 0x3f && seq.length < 8) {
      this.esc = seq;
      return null;
    }
    this.esc = null;
    if (!this.active) return null;
    switch (seq) {
      case '[D':
      case 'OD':
        return this.move(-1);
      case '[C':
      case 'OC':
        return this.move(1);
      case '[A':
      case 'OA':
        return this.historyStep(-1);
      case '[B':
      case 'OB':
        return this.historyStep(1);
      case '[H':
      case 'OH':
      case '[1~':
        this.cur = 0;
        return this.redraw();
      case '[F':
      case 'OF':
      case '[4~':
        this.cur = this.buf.length;
        return this.redraw();
      case '[3~':
        return this.deleteAt();
      default:
        return null;
    }
  }

  private enter(): EditorEvent {
    const text = this.buf;
    this.o.write('\r\n');
    this.active = false;
    if (!this.masked && text.trim() !== '' && this.history.at(-1) !== text) {
      this.history.push(text);
      if (this.history.length > (this.o.historySize ?? 100)) this.history.shift();
    }
    return { kind: 'line', text };
  }

  private insert(s: string): null {
    if (this.buf.length + s.length > this.limit) return this.bell();
    this.buf = this.buf.slice(0, this.cur) + s + this.buf.slice(this.cur);
    this.cur += s.length;
    if (this.masked) return null;
    // Typing at the end of a line that fits needs no redraw.
    if (this.cur === this.buf.length && this.prompt.length + this.buf.length < this.columns - 1) {
      this.o.write(s);
      return null;
    }
    return this.redraw();
  }

  private deleteAt(): null {
    if (this.cur >= this.buf.length) return this.bell();
    this.buf = this.buf.slice(0, this.cur) + this.buf.slice(this.cur + 1);
    return this.redraw();
  }

  private move(d: number): null {
    const to = this.cur + d;
    if (to < 0 || to > this.buf.length) return this.bell();
    this.cur = to;
    return this.redraw();
  }

  private historyStep(d: number): null {
    if (this.masked) return this.bell();
    const to = this.histPos + d;
    if (to < 0 || to > this.history.length) return this.bell();
    if (this.histPos === this.history.length) this.stash = this.buf;
    this.histPos = to;
    this.buf = to === this.history.length ? this.stash : this.history[to]!;
    this.cur = this.buf.length;
    return this.redraw();
  }

  private tab(): null {
    if (this.masked || !this.o.complete) return this.bell();
    const before = this.buf.slice(0, this.cur);
    const word = /\S*$/.exec(before)![0];
    const options = this.o.complete(before);
    if (options.length === 0) return this.bell();
    if (options.length === 1) {
      const add = options[0]!.slice(word.length) + ' ';
      this.buf = before + add + this.buf.slice(this.cur);
      this.cur += add.length;
      return this.redraw();
    }
    // The common prefix, then the list.
    let common = options[0]!;
    for (const o of options) while (!o.startsWith(common)) common = common.slice(0, -1);
    if (common.length > word.length) {
      const add = common.slice(word.length);
      this.buf = before + add + this.buf.slice(this.cur);
      this.cur += add.length;
      return this.redraw();
    }
    this.o.write('\r\n' + columnsOf(options, this.columns) + '\r\n');
    return this.redraw(true);
  }

  private bell(): null {
    this.o.write(BEL);
    return null;
  }

  /** Rewrites the prompt and the visible part of the line, scrolled so that the cursor shows. */
  private redraw(full = false): null {
    if (this.masked) return null;
    const room = Math.max(10, this.columns - 1 - this.prompt.length);
    let start = 0;
    if (this.cur > room - 1) start = this.cur - (room - 1);
    const visible = this.buf.slice(start, start + room);
    const back = start + visible.length - this.cur;
    this.o.write(`${full ? '' : '\r'}${this.prompt}${visible}\x1b[K${back > 0 ? `\x1b[${back}D` : ''}`);
    return null;
  }
}

/** Words in columns within `width` (tab completion's list). */
export function columnsOf(words: string[], width: number): string {
  const w = Math.max(...words.map((x) => x.length)) + 2;
  const per = Math.max(1, Math.floor(width / w));
  const rows: string[] = [];
  for (let i = 0; i < words.length; i += per) rows.push(words.slice(i, i + per).map((x) => x.padEnd(w)).join('').trimEnd());
  return rows.join('\r\n');
}
