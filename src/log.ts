import { isoTime } from './core/iso-time.ts';
import type { Log } from './core/service.ts';
import { escapeText } from './core/validate.ts';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof LEVELS;

/** A line logger: text for people (the default; journald adds the time) or JSON lines. */
export function createLog(opts: { level?: Level; format?: 'text' | 'json'; write?: (line: string) => void; name?: string } = {}): Log {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < min) return;
    if (opts.format === 'json') {
      // escapeText keeps the JSON valid (its escapes are JSON's) and leaves no bidi or C1 raw.
      write(escapeText(JSON.stringify({ time: isoTime(Date.now()), level, msg, ...(opts.name ? { name: opts.name } : {}), ...fields })));
    } else {
      const extra = fields && Object.keys(fields).length > 0 ? ' ' + Object.entries(fields).map(([k, v]) => `${escapeText(k)}=${textValue(v)}`).join(' ') : '';
      write(`${level.padEnd(5)} ${escapeText(msg)}${extra}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/**
 * Log lines to a stream, written together once per event-loop turn: the daemon logs every grant
 * and check-in, and each line written on its own was a write(2) of its own (6 % of the daemon's
 * CPU in a closed loop of checkouts and check-ins; half a second of a burst of 10,000). At most
 * `maxLines` wait; `flush` writes them at once (before anything else goes to the same stream), and
 * the process's exit flushes what is left. A kill -9 loses at most the lines of the turn it hits;
 * what must survive a crash is in the database and its audit log, not in these lines.
 */
export function lineBuffer(stream: { write(text: string): unknown }, maxLines = 256): { write: (line: string) => void; flush: () => void } {
  let pending: string[] = [];
  let scheduled = false;
  const flush = () => {
    if (pending.length === 0) return;
    const text = pending.join('\n') + '\n';
    pending = [];
    stream.write(text);
  };
  const onTurn = () => {
    scheduled = false;
    flush();
  };
  process.on('exit', flush);
  return {
    write: (line) => {
      pending.push(line);
      if (pending.length >= maxLines) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(onTurn);
      }
    },
    flush,
  };
}

/**
 * A field value for the text format. Values come from the network and from old databases, so a
 * value can neither break the line nor pass for other fields: anything with a space, quote, equals
 * sign or backslash is quoted as JSON, and whatever JSON leaves raw (bidi controls, C1) is escaped.
 */
function textValue(v: unknown): string {
  const s = typeof v === 'string' ? (v === '' || /[\s"=\\]/.test(v) ? JSON.stringify(v) : v) : (JSON.stringify(v) ?? String(v));
  return escapeText(s);
}
