/**
 * Issue 12: the license install is bound to the dongle's counter. An older database put back with
 * the older license file (both while licd was stopped) is behind the counter: licd quarantines the
 * borrowable seats and warns that the license in force may not be the newest; a new activation
 * clears the warning. Real processes.
 */
import test from 'ava';
import { copyFileSync, cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { box, feature, spec } from '../helpers/activation-box.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('an older database put back with the older license file: the counter says so, the status warns that the license may not be the newest, and a new activation clears it', async (t) => {
  t.timeout(120_000);
  const b = await box(t);
  await b.start();
  const specFile = join(b.dir, 'spec.json');
  const issue = async (name: string, seats: number) => {
    writeFileSync(specFile, JSON.stringify(spec([{ name: 'houdini_engine', seats, borrow: true }])));
    const req = join(b.dir, `${name}.req.json`);
    const out = join(b.dir, `${name}.json`);
    if ((await run(['activate', 'request', '--out', req, ...b.admin()])).code !== 0) throw new Error('request');
    const v = await run(['vendor', 'activate', req, '--key', b.key, '--spec', specFile, '--out', out]);
    if (v.code !== 0) throw new Error(v.stderr);
    return out;
  };
  const big = await issue('big', 9);
  t.is((await run(['activate', 'import', big, ...b.admin()])).code, 0);
  // A backup of the database and the license file, taken while licd is stopped.
  await b.stop();
  cpSync(join(b.dir, 'db'), join(b.dir, 'db.bak'), { recursive: true });
  copyFileSync(join(b.dir, 'dev', 'entitlement.json'), join(b.dir, 'big.bak.json'));
  await b.start();
  const small = await issue('small', 2);
  t.is((await run(['activate', 'import', small, ...b.admin()])).code, 0);
  t.is(feature(await b.status(), 'houdini_engine')!.total, 2);

  // Both put back while stopped: the install had stepped the dongle's counter, so the database is behind it.
  await b.stop();
  rmSync(join(b.dir, 'db'), { recursive: true, force: true });
  cpSync(join(b.dir, 'db.bak'), join(b.dir, 'db'), { recursive: true });
  copyFileSync(join(b.dir, 'big.bak.json'), join(b.dir, 'dev', 'entitlement.json'));
  await b.start();
  const s = await b.status();
  t.true(s.server.warnings.some((w) => /the database is behind the dongle's counter \(restored or wiped\), so licd cannot tell whether license ACT-\S+ is the newest one installed on this box; activate again/.test(w)), s.server.warnings.join('\n'));
  t.true(s.server.warnings.some((w) => /quarantine/.test(w)), 'and the restore is quarantined as for borrows');

  // A new activation installs the vendor's current license and clears the license warning.
  const current = await issue('current', 2);
  t.is((await run(['activate', 'import', current, ...b.admin()])).code, 0);
  const after = await b.status();
  t.is(feature(after, 'houdini_engine')!.total, 2);
  t.false(after.server.warnings.some((w) => /cannot tell whether license/.test(w)), after.server.warnings.join('\n'));
});
