/**
 * Counts in alert messages ("and 59,994 more") are written without ICU (src/core/alerts.ts,
 * `thousands`): the same text as toLocaleString('en-US') for whole numbers.
 */
import test from 'ava';
import { thousands } from '../../src/core/alerts.ts';

test("an alert's counts have thousands separators as toLocaleString('en-US') writes them (without loading ICU)", (t) => {
  const values = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 9999, 10_000, 59_994, 99_999, 100_000, 999_999, 1_000_000, 123_456_789, 2 ** 31, Number.MAX_SAFE_INTEGER];
  // Every length from 1 to 16 digits, each with several leading digits (the same numbers every run).
  for (let digits = 1; digits <= 16; digits++) for (let lead = 1; lead <= 9; lead += 2) values.push(Math.min(Number.MAX_SAFE_INTEGER, Number(String(lead).repeat(digits))));
  for (const v of values) t.is(thousands(v), v.toLocaleString('en-US'), String(v));
});
