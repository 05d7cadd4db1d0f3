/**
 * Issue 12 item 2: a license with fewer seats, installed at runtime, ends the newest leases at once,
 * and their holders (real licctl checkout processes) are told LICENSE_REDUCED; a feature the new
 * license lacks ends its leases the same way; the oldest lease stays.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { box, feature } from '../helpers/activation-box.ts';
import { killAll, licctl, run, type Proc } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('a lowered seat count ends the newest leases at once and their holders are told LICENSE_REDUCED; the oldest stays', async (t) => {
  t.timeout(120_000);
  const b = await box(t);
  await b.start();
  // The demo license: vray_render has 4 seats. Three holders, one after the other.
  const holders: Proc[] = [];
  for (const who of ['ann', 'bob', 'cid']) {
    const h = licctl(['checkout', 'vray_render', '--ttl', '10', '--broker', b.state.url], { LICD_USER: who, LICD_HOST: `node-${who}` });
    await h.waitFor(new RegExp(`granted vray_render to ${who}@node-${who}`));
    holders.push(h);
  }
  const nuke = licctl(['checkout', 'nuke_i', '--broker', b.state.url], { LICD_USER: 'dee', LICD_HOST: 'node-dee' });
  await nuke.waitFor(/granted nuke_i to dee@node-dee/);

  const specFile = join(b.dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify({ customer: 'ACME Studio', features: [{ name: 'vray_render', version: '6.2', seats: 1, days: 30, type: 'render', borrow: { allowed: true, maxHours: 72 } }] }));
  const req = join(b.dir, 'req.json');
  t.is((await run(['activate', 'request', '--out', req, ...b.admin()])).code, 0);
  const lic = join(b.dir, 'lic.json');
  t.is((await run(['vendor', 'activate', req, '--key', b.key, '--spec', specFile, '--out', lic])).code, 0);
  const imp = await run(['activate', 'import', lic, ...b.admin()]);
  t.is(imp.code, 0, imp.stderr);
  t.regex(imp.stdout, /3 lease\(s\) ended because the new license has fewer seats or lacks the feature/);

  // The two newest holders of vray_render, and the holder of the removed nuke_i, are told why and stop (exit 5).
  for (const h of [holders[1]!, holders[2]!]) {
    await h.waitFor(/lost the seat of vray_render: LICENSE_REDUCED: vray_render: the new license has 1 seat\(s\) where 3 were leased and 0 borrowed; the newest leases ended/);
    t.is((await h.exited).code, 5);
  }
  await nuke.waitFor(/lost the seat of nuke_i: LICENSE_REDUCED: nuke_i is no longer in the license installed on the server/);
  t.is((await nuke.exited).code, 5);

  // The oldest holder keeps its seat across heartbeats (--ttl 10: one every 3 s).
  await new Promise((r) => setTimeout(r, 4000));
  t.false(/lost the seat/.test(holders[0]!.stderr()), holders[0]!.stderr());
  const vr = feature(await b.status(), 'vray_render')!;
  t.is(vr.total, 1);
  t.deepEqual(vr.leases.map((l) => l.user), ['ann']);
  holders[0]!.child.kill('SIGINT');
});
