/** The one time format licctl prints (src/cli/time.ts). */
import test from 'ava';
import { formatTime, utcWanted } from '../../src/cli/time.ts';

// Node follows a change of TZ at once; this test file runs in its own worker.
function inZone<T>(tz: string, f: () => T): T {
  const was = process.env.TZ;
  process.env.TZ = tz;
  try {
    return f();
  } finally {
    if (was === undefined) delete process.env.TZ;
    else process.env.TZ = was;
  }
}

const winter = '2026-11-30T07:15:02.123Z';
const summer = '2026-07-01T22:30:00Z';

test('local time carries its offset, in winter and summer and west of UTC', (t) => {
  t.is(inZone('Europe/Berlin', () => formatTime(winter)), '2026-11-30 08:15:02 +01:00');
  t.is(inZone('Europe/Berlin', () => formatTime(summer)), '2026-07-02 00:30:00 +02:00', 'the date moves with the zone');
  t.is(inZone('America/New_York', () => formatTime(winter)), '2026-11-30 02:15:02 -05:00');
  t.is(inZone('Asia/Kolkata', () => formatTime(winter)), '2026-11-30 12:45:02 +05:30');
  t.is(inZone('UTC', () => formatTime(winter)), '2026-11-30 07:15:02 +00:00');
});

test('--utc prints UTC with an explicit marker, whatever the zone', (t) => {
  t.is(inZone('Europe/Berlin', () => formatTime(winter, { utc: true })), '2026-11-30 07:15:02 UTC');
  t.is(inZone('America/New_York', () => formatTime(Date.parse(summer), { utc: true })), '2026-07-01 22:30:00 UTC');
});

test('milliseconds, Dates and ISO strings give the same text; what is not a time is kept as it came', (t) => {
  const ms = Date.parse(winter);
  t.is(formatTime(ms, { utc: true }), formatTime(new Date(ms), { utc: true }));
  t.is(formatTime(ms, { utc: true }), formatTime(winter, { utc: true }));
  t.is(formatTime('not a time'), 'not a time');
});

test('LICD_UTC=1 or the flag asks for UTC', (t) => {
  t.true(utcWanted(true, {}));
  t.true(utcWanted(false, { LICD_UTC: '1' }));
  t.true(utcWanted(false, { LICD_UTC: 'yes' }));
  t.false(utcWanted(false, { LICD_UTC: '0' }));
  t.false(utcWanted(false, {}));
});
