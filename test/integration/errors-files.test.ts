/**
 * issue 11, finding 6: every file licctl and licd read errs naming the file and what is wrong
 * (no parser quote of the content, no raw errno text, no stack); a `--feature` field that is not a
 * date names the field and the format; a malformed broker address (--broker, LICD_BROKER, the
 * client config) is refused naming the value and an example, exit 64, with no Node warning.
 */
import test from 'ava';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

function setup(t: import('ava').ExecutionContext): string {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'bad.json'), 'not json\n');
  writeFileSync(join(dir, 'bad2.json'), '{\n  "id": "E-1",\n  customer: "x"\n}\n');
  return dir;
}

function clean(t: import('ava').ExecutionContext, stderr: string): void {
  t.notRegex(stderr, /^\s+at \S/m, 'no stack trace');
  t.notRegex(stderr, /ENOENT: no such file or directory/, 'no raw errno text');
  t.notRegex(stderr, /"not json/, 'no quote of the file');
  t.notRegex(stderr, /Invalid time value|DeprecationWarning/);
  t.is(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
}

test('licctl vendor issue: key, spec and --feature errors name the file or the field', async (t) => {
  const dir = setup(t);
  const key = join(dir, 'vendor.key');
  t.is((await run(['vendor', 'keygen', '--dev', '--out', key])).code, 0);
  const out = join(dir, 'ent.json');

  let r = await run(['vendor', 'issue', '--key', join(dir, 'missing.key'), '--spec', join(dir, 'bad.json'), '--out', out]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`the vendor key: no such file: ${join(dir, 'missing.key')}`));
  clean(t, r.stderr);

  r = await run(['vendor', 'issue', '--key', join(dir, 'bad.json'), '--spec', join(dir, 'bad.json'), '--out', out]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`the vendor key: ${join(dir, 'bad.json')} is not valid JSON`));
  clean(t, r.stderr);

  r = await run(['vendor', 'issue', '--key', key, '--spec', join(dir, 'bad2.json'), '--out', out]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`the entitlement spec \\(--spec\\): ${join(dir, 'bad2.json')} is not valid JSON \\(line 3, column 3: `));
  clean(t, r.stderr);

  r = await run(['vendor', 'issue', '--key', key, '--spec', join(dir, 'nope.json'), '--out', out]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`no such file: ${join(dir, 'nope.json')}`));
  clean(t, r.stderr);

  const dkey = 'ab'.repeat(32);
  r = await run(['vendor', 'issue', '--key', key, '--dongle-serial', 'S1', '--dongle-key', dkey, '--customer', 'C', '--feature', 'name=vray_render,version=6.2,seats=2,type=render,expires=notadate', '--out', out]);
  t.is(r.code, 64);
  t.regex(r.stderr, /expires="notadate" is not a date; give it as YYYY-MM-DD \(expires=2027-12-31\)/);
  clean(t, r.stderr);
});

test('licctl: client config and quarantine release files are named', async (t) => {
  const dir = setup(t);
  let r = await run(['status', '--config', join(dir, 'bad.json')]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`client config: ${join(dir, 'bad.json')} is not valid JSON`));
  clean(t, r.stderr);

  r = await run(['quarantine', 'release', join(dir, 'gone.json')]);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`RELEASE_INVALID: the quarantine release: no such file: ${join(dir, 'gone.json')}`));
  clean(t, r.stderr);
});

test('a malformed broker address is refused naming it and an example, exit 64, no Node warning', async (t) => {
  const dir = setup(t);
  const cases: Array<[string[], Record<string, string>, string, RegExp]> = [
    [['status', '--broker', 'mqtt://127.0.0.1:notaport', '--timeout', '2000'], {}, '--broker', /has the port "notaport", which is not a number from 1 to 65535/],
    [['status', '--broker', 'mqtt://127.0.0.1:99999', '--timeout', '2000'], {}, '--broker', /has the port "99999"/],
    [['status', '--broker', 'mqtt://[bad', '--timeout', '2000'], {}, '--broker', /is not HOST or HOST:PORT/],
    [['status', '--timeout', '2000'], { LICD_BROKER: 'tcp://127.0.0.1:1883' }, 'LICD_BROKER', /must start with mqtt:\/\/ or mqtts:\/\//],
  ];
  mkdirSync(join(dir, 'cfg'));
  const cfg = join(dir, 'cfg', 'client.json');
  writeFileSync(cfg, JSON.stringify({ broker: 'mqtt://127.0.0.1:18x3' }));
  cases.push([['status', '--config', cfg, '--timeout', '2000'], {}, `"broker" in ${cfg}`, /has the port "18x3"/]);
  for (const [args, env, source, why] of cases) {
    const r = await run(args, env);
    t.is(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, why);
    t.true(r.stderr.includes(`(from ${source})`), r.stderr);
    t.regex(r.stderr, /give one like mqtt:\/\/licd\.local:1883/);
    clean(t, r.stderr);
  }
});

test('licd: a missing config file and a broken license file are named, exit 78', async (t) => {
  const dir = setup(t);
  let d = startDaemonProcess({ LICD_DATA_DIR: join(dir, 'data') }, ['--config', join(dir, 'nope.json')]);
  t.is((await d.exited).code, 78);
  t.regex(d.stderr(), new RegExp(`licd: config: no such file: ${join(dir, 'nope.json')}; check the path given by --config`));
  clean(t, d.stderr());

  const config = join(dir, 'licd.json');
  writeFileSync(config, JSON.stringify({ entitlementFile: join(dir, 'bad.json'), vendorPublicKey: 'ab'.repeat(32), dataDir: join(dir, 'data'), mqtt: { port: 0 } }));
  d = startDaemonProcess({ LICD_LOG_LEVEL: 'error' }, ['--config', config]);
  t.is((await d.exited).code, 78, d.stderr());
  t.regex(d.stderr(), new RegExp(`ENTITLEMENT_INVALID: the license file \\(entitlementFile\\): ${join(dir, 'bad.json')} is not valid JSON`));
  t.notRegex(d.stderr(), /^\s+at \S/m);
  t.notRegex(d.stderr(), /"not json/);
});

test('licctl borrow import: a token file that is missing or not JSON is named, with what to give instead', async (t) => {
  const dir = setup(t);
  const env = { LICD_HOME: join(dir, 'home') };
  let r = await run(['borrow', 'import', join(dir, 'missing.json')], env);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`the token file: no such file: ${join(dir, 'missing.json')}`));
  t.regex(r.stderr, /licctl borrow --request FILE --out FILE/);
  clean(t, r.stderr);
  r = await run(['borrow', 'import', join(dir, 'bad.json')], env);
  t.is(r.code, 2);
  t.regex(r.stderr, new RegExp(`the token file: ${join(dir, 'bad.json')} is not valid JSON \\(`));
  clean(t, r.stderr);
});
