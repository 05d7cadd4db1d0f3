/**
 * Issue 12 items 1 and 2: a box is activated online (licctl vendor serve on loopback, the URL a
 * setting of the box) and by files, and each new license takes effect without a restart; an older
 * license is refused. Real processes: licd, the vendor's service and every licctl.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { box, feature, spec } from '../helpers/activation-box.ts';
import { killAll, licctl, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('online: the box asks licctl vendor serve on loopback and serves the new features at once; then by files; an older license is refused', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const specs = tempDir('licd-specs-');
  t.teardown(() => rmSync(specs, { recursive: true, force: true }));
  writeFileSync(join(specs, 'default.json'), JSON.stringify(spec([{ name: 'houdini_engine', seats: 3 }, { name: 'vray_render', seats: 6, borrow: true }])));

  // The vendor's service signs with the key the box's development mode trusts (made first).
  const withUrl = await box(t);
  const svc = licctl(['vendor', 'serve', '--key', withUrl.key, '--specs', specs, '--listen', '127.0.0.1:0']);
  const svcUrl = (await svc.waitFor(/activation service listening on (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
  // The service URL is a setting of the box (LICD_ACTIVATION_URL).
  await withUrl.start({ LICD_ACTIVATION_URL: svcUrl });

  const before = await withUrl.status();
  t.is(feature(before, 'houdini_engine'), undefined);
  const online = await run(['activate', 'online', ...withUrl.admin()]);
  t.is(online.code, 0, online.stderr);
  t.regex(online.stdout, /activated online with http:\/\/127\.0\.0\.1:\d+\/v1\/activate/);
  t.regex(online.stdout, /new features: houdini_engine/);
  t.regex(svc.stdout(), /issued ACT-\S+ to dongle \S+ \(box \S+, counter \d+\): houdini_engine x3, vray_render x6/);

  // No restart: status shows the new features and the new counts, and a checkout works.
  const after = await withUrl.status();
  t.regex(after.server.entitlement!.id, /^ACT-/);
  t.is(feature(after, 'houdini_engine')!.total, 3);
  t.is(feature(after, 'vray_render')!.total, 6);
  t.is(feature(after, 'nuke_i'), undefined, 'a feature the new license lacks is gone');
  const holder = licctl(['checkout', 'houdini_engine', '--broker', withUrl.state.url], { LICD_USER: 'ann', LICD_HOST: 'node-1' });
  await holder.waitFor(/granted houdini_engine to ann@node-1/);
  t.is(feature(await withUrl.status(), 'houdini_engine')!.leased, 1);

  // By files: request on the box, the vendor answers it offline, the box imports the answer.
  const req = join(withUrl.dir, 'request.json');
  const r1 = await run(['activate', 'request', '--out', req, ...withUrl.admin()]);
  t.is(r1.code, 0, r1.stderr);
  t.regex(r1.stdout, /activation request for dongle \S+ written to/);
  const specFile = join(specs, 'bigger.json');
  writeFileSync(specFile, JSON.stringify(spec([{ name: 'houdini_engine', seats: 5 }, { name: 'nuke_x', seats: 2 }])));
  const lic = join(withUrl.dir, 'license.json');
  const v = await run(['vendor', 'activate', req, '--key', withUrl.key, '--spec', specFile, '--out', lic]);
  t.is(v.code, 0, v.stderr);
  t.regex(v.stdout, /license ACT-\S+ for dongle \S+ .*houdini_engine x5, nuke_x x2/);
  const imp = await run(['activate', 'import', lic, ...withUrl.admin()]);
  t.is(imp.code, 0, imp.stderr);
  t.regex(imp.stdout, /installed; it replaces ACT-/);
  const third = await withUrl.status();
  t.is(feature(third, 'houdini_engine')!.total, 5);
  t.is(feature(third, 'houdini_engine')!.leased, 1, 'the live lease of a feature still licensed stays');
  t.is(feature(third, 'nuke_x')!.total, 2);
  t.is(feature(third, 'vray_render'), undefined);
  const nuke = licctl(['checkout', 'nuke_x', '--broker', withUrl.state.url], { LICD_USER: 'bob', LICD_HOST: 'node-2' });
  await nuke.waitFor(/granted nuke_x to bob@node-2/);
  nuke.child.kill('SIGINT');
  t.false(/lost the seat/.test(holder.stderr()), holder.stderr());

  // Online again (a renewal), then the file license, now older than the installed one: refused.
  t.is((await run(['activate', 'online', ...withUrl.admin()])).code, 0);
  const down = await run(['activate', 'import', lic, ...withUrl.admin()]);
  t.is(down.code, 2);
  t.regex(down.stderr, /LICENSE_DOWNGRADE: license ACT-\S+ issued \S+, sequence \d+ is not newer than the one installed \(ACT-/);
  holder.child.kill('SIGINT');
  svc.child.kill('SIGINT');
  await svc.exited;
});

