/**
 * The one format for every time licctl prints to a person (README: "Times"):
 *   local time with its UTC offset  `2026-11-30 08:15:02 +01:00`  (the process's zone, TZ)
 *   with --utc or LICD_UTC=1        `2026-11-30 07:15:02 UTC`
 * `--json` output is not formatted here: it keeps the ISO UTC strings the server sends.
 */

export interface TimeOptions {
  /** UTC with an explicit `UTC` marker instead of local time with its offset. */
  utc?: boolean;
}

const two = (n: number): string => String(n).padStart(2, '0');

/** Whether times print in UTC: the --utc flag, or LICD_UTC=1 (or true/yes) in the environment. */
export function utcWanted(flagGiven: boolean, env: Record<string, string | undefined> = process.env): boolean {
  if (flagGiven) return true;
  const v = (env.LICD_UTC ?? '').trim().toLowerCase();
  return v === '1' || v === 'true' || v === 'yes';
}

/**
 * A time (ISO string, epoch milliseconds or Date) as a person reads it. Text that is not a time
 * (an old record, a server's odd answer) is printed as it came, so nothing is lost.
 */
export function formatTime(t: string | number | Date, o: TimeOptions = {}): string {
  const d = t instanceof Date ? t : new Date(t);
  const ms = d.getTime();
  if (!Number.isFinite(ms)) return String(t);
  if (o.utc) {
    return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} UTC`;
  }
  // getTimezoneOffset is minutes behind UTC (Berlin in winter: -60), so the sign flips.
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${sign}${two(Math.floor(abs / 60))}:${two(abs % 60)}`;
}

/** A formatter bound to the options, for code that prints many times. */
export function timeFormatter(o: TimeOptions = {}): (t: string | number | Date) => string {
  return (t) => formatTime(t, o);
}
