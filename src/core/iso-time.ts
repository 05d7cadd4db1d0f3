/**
 * `isoTime(ms)`: the same text as `new Date(ms).toISOString()`, made cheaply. Every checkout and
 * check-in writes several times (the audit records, the grant, the lease's since and until, the
 * log line); V8 formats a Date through a C printf, a tenth of an audit record's cost. The text of
 * a whole second ("2026-12-01T05:10:51.") is kept for the last few seconds asked for, and only the
 * milliseconds are added. Times outside the years 1970 to 9999 (and NaN, which throws RangeError
 * as Date does) go through Date.
 */
const SLOTS = 8;
const secs = new Float64Array(SLOTS).fill(-1);
const prefixes: string[] = new Array<string>(SLOTS).fill('');
/** 10000-01-01T00:00:00Z: from here on toISOString writes a six-digit year. */
const YEAR_10000 = 253_402_300_800_000;

export function isoTime(ms: number): string {
  const t = Math.trunc(ms);
  if (!(t >= 0 && t < YEAR_10000)) return new Date(ms).toISOString();
  const sec = Math.floor(t / 1000);
  const slot = sec & (SLOTS - 1);
  let prefix = prefixes[slot]!;
  if (secs[slot] !== sec) {
    prefix = new Date(sec * 1000).toISOString().slice(0, 20);
    prefixes[slot] = prefix;
    secs[slot] = sec;
  }
  const milli = t - sec * 1000;
  return prefix + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z';
}
