/**
 * Issue 12: licenses a box must refuse, with reasons: one for another dongle, an altered one, an
 * altered activation request (at the vendor), and an older license file put back while licd was
 * stopped (refused at start: the installed one is served and written back). Real processes.
 */
import test from 'ava';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { box, spec } from '../helpers/activation-box.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('an older license file put back while licd is stopped is refused at start; a license for another dongle and an altered one are refused with reasons', async (t) => {
  t.timeout(120_000);
  const b = await box(t);
  await b.start();
  const specFile = join(b.dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec([{ name: 'houdini_engine', seats: 3 }])));
  const issue = async (name: string) => {
    const req = join(b.dir, `${name}.req.json`);
    const out = join(b.dir, `${name}.json`);
    const r = await run(['activate', 'request', '--out', req, ...b.admin()]);
    if (r.code !== 0) throw new Error(r.stderr);
    const v = await run(['vendor', 'activate', req, '--key', b.key, '--spec', specFile, '--out', out]);
    if (v.code !== 0) throw new Error(v.stderr);
    return out;
  };
  const first = await issue('first');
  t.is((await run(['activate', 'import', first, ...b.admin()])).code, 0);
  const second = await issue('second');
  t.is((await run(['activate', 'import', second, ...b.admin()])).code, 0);
  const installedId = (await b.status()).server.entitlement!.id;

  // A license for another dongle, signed by the right vendor key.
  const other = join(b.dir, 'other.json');
  const o = await run(['vendor', 'issue', '--key', b.key, '--out', other, '--dongle-serial', 'HW-OTHER-1', '--dongle-key', 'ab'.repeat(32), '--customer', 'Someone else', '--feature', 'name=houdini_engine,version=20.5,seats=9,type=render']);
  t.is(o.code, 0, o.stderr);
  const r1 = await run(['activate', 'import', other, ...b.admin()]);
  t.is(r1.code, 2);
  t.regex(r1.stderr, /ENTITLEMENT_INVALID: entitlement \S+ is for another dongle \(serial HW-OTHER-1\); the dongle here is \S+\. Ask the vendor for a license file issued to this dongle/);

  // An altered license: seats raised in the body, signature kept.
  const env = JSON.parse(readFileSync(second, 'utf8')) as { body: string };
  const body = JSON.parse(Buffer.from(env.body, 'base64url').toString('utf8')) as { features: Array<{ seats: number }>; issuedAt: string };
  body.features[0]!.seats = 999;
  body.issuedAt = new Date(Date.now() + 60_000).toISOString();
  const altered = join(b.dir, 'altered.json');
  writeFileSync(altered, JSON.stringify({ ...env, body: Buffer.from(JSON.stringify(body)).toString('base64url') }));
  const r2 = await run(['activate', 'import', altered, ...b.admin()]);
  t.is(r2.code, 2);
  t.regex(r2.stderr, /ENTITLEMENT_INVALID: licd-entitlement\/1: the signature does not verify with the vendor key/);

  // The vendor refuses an altered activation request too.
  const req = JSON.parse(readFileSync(join(b.dir, 'second.req.json'), 'utf8')) as { body: string };
  const rb = JSON.parse(Buffer.from(req.body, 'base64url').toString('utf8')) as { dongle: { serial: string } };
  rb.dongle.serial = 'HW-STOLEN-7';
  const badReq = join(b.dir, 'bad.req.json');
  writeFileSync(badReq, JSON.stringify({ ...req, body: Buffer.from(JSON.stringify(rb)).toString('base64url') }));
  const r3 = await run(['vendor', 'activate', badReq, '--key', b.key, '--spec', specFile, '--out', join(b.dir, 'x.json')]);
  t.is(r3.code, 2);
  t.regex(r3.stderr, /ACTIVATION_INVALID: the activation request is not signed by the dongle it names \(serial HW-STOLEN-7\)/);

  // Stopped, the older license file is put back in place of the installed one: refused at start.
  await b.stop();
  copyFileSync(first, join(b.dir, 'dev', 'entitlement.json'));
  await b.start();
  await b.state.d!.waitFor(/REFUSED the license file: it is older than the license installed before/);
  const s = await b.status();
  t.is(s.server.entitlement!.id, installedId);
  t.true(s.server.warnings.some((w) => /older than the installed .* refused \(anti-downgrade\)/.test(w)), s.server.warnings.join('\n'));
  t.is((JSON.parse(readFileSync(join(b.dir, 'dev', 'entitlement.json'), 'utf8')) as { body: string }).body, (JSON.parse(readFileSync(second, 'utf8')) as { body: string }).body, 'the installed license is written back');
});

