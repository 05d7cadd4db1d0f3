/**
 * Issue 11, finding 8: the wizard picks PRODUCTS (an entitlement groups features into products
 * with license types, as V-Ray's wizard does), shows the licenses by type and what this user may
 * borrow, and borrows what the chosen products need; `licctl borrow --product` does the same
 * without questions; an entitlement without products keeps one product per feature.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EntitlementBody } from '../../src/core/entitlement.ts';
import type { StatusResult } from '../../src/core/protocol.ts';
import { FORMATS, parseEnvelope } from '../../src/core/signed.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { issueEntitlement, readVendorKey } from '../../src/vendor.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess } from '../helpers/procs.ts';
import { borrowed, prompt, setup, step1, wizard } from '../helpers/wizard-pty.ts';

test.after.always(() => killAll());

test.serial('the wizard picks products: step 2 shows the licenses by type each needs, the borrow sums them per feature, the summary is per product', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  let said = await w.expect(prompt('V-Ray for Maya'));
  t.regex(said, /1\. V-Ray for Maya\s+1 interface \+ 1 render each\s+up to 2 now/);
  t.regex(said, /2\. V-Ray Render Node\s+1 render each\s+up to 4 now/);
  t.notRegex(said, /Distributed/, 'a product whose license may not be borrowed is not offered');
  w.type('1');
  await step1(w, 1, ['2']);
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /PRODUCT\s+AT ONCE\s+INTERFACE\s+RENDER\s+DISTRIBUTED/);
  t.regex(said, /1\. V-Ray for Maya\s+1\s+1\s+1\s+0/);
  t.regex(said, /2\. V-Ray Render Node\s+2\s+0\s+2\s+0/);
  t.regex(said, /3\. Nuke Interactive\s+0\s+0\s+0\s+0/);
  t.regex(said, /vray_interface\s+interface\s+1\s+2 \(2 free\), up to 336 h/);
  t.regex(said, /vray_render\s+render\s+3\s+4 \(4 free\), up to 336 h/);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 V-Ray for Maya, 2 V-Ray Render Node \(1 vray_interface, 3 vray_render\) for 336 h\?/);
  w.type('y');
  said = await w.expect(/V-Ray Render Node\s+0\s+2\s+0/);
  t.regex(said, /Step 4\/4: summary[\s\S]*PRODUCT\s+INTERFACE\s+RENDER\s+DISTRIBUTED\s+V-Ray for Maya\s+1\s+1\s+0/);
  await w.end();
  const f = await borrowed(url);
  t.is(f.get('vray_interface')!.borrowed, 1);
  t.is(f.get('vray_render')!.borrowed, 3, 'one for V-Ray for Maya, two for the render nodes');
});

test.serial("the wizard shows this user's borrow limits, not just free seats, and refuses counts and hours above them when typed", async (t) => {
  const { url, env, dir } = await setup(t);
  const limits = join(dir, 'limits.json');
  writeFileSync(limits, JSON.stringify({ features: { vray_render: { maxHours: 48 } }, users: { carol: { maxSeats: 3 } } }));
  const set = await run(['borrow', 'limits', '--set', limits], { LICD_BROKER: url, LICD_DATA_DIR: dir, LICD_HOME: tempDir('licd-admin-') });
  t.is(set.code, 0, set.stderr);
  const w = wizard(env);
  let said = await w.expect(prompt('V-Ray for Maya'));
  t.regex(said, /V-Ray for Maya\s+1 interface \+ 1 render each\s+up to 1 now/, 'two would need 4 seats; carol may borrow 3');
  t.regex(said, /V-Ray Render Node\s+1 render each\s+up to 3 now/);
  w.type('2');
  said = await w.expect(prompt('V-Ray for Maya'));
  t.regex(said, /2 of V-Ray for Maya \(1 interface \+ 1 render each\) is more than you may borrow now: limits\.users\.carol allows 3 borrowed seats and 0 are borrowed; these products need 4 \(vray_interface, vray_render\); give 0 to 1/);
  w.type('1');
  await w.expect(prompt('V-Ray Render Node'));
  w.type('2');
  said = await w.expect(prompt('V-Ray Render Node'));
  t.regex(said, /give 0 to 1/, 'the render nodes share the limit with the product chosen before');
  w.type('1');
  await step1(w, 2);
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /vray_render\s+render\s+2\s+3 \(limits\.users\.carol allows 3 borrowed seats and 0 are borrowed\), up to 48 h/);
  t.regex(said, /together: limits\.users\.carol allows 3 borrowed seats and 0 are borrowed; these products need 3/);
  w.type('');
  said = await w.expect(/hours to borrow \(at most 48\) \[48\]: /);
  w.type('100');
  said = await w.expect(/hours to borrow \(at most 48\) \[48\]: /);
  t.regex(said, /100 h is more than can be borrowed: vray_render: limits\.features\.vray_render allows at most 48 h; give 1 to 48/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 V-Ray for Maya, 1 V-Ray Render Node \(1 vray_interface, 2 vray_render\) for 48 h\?/);
  w.type('y');
  await w.expect(/Step 4\/4: summary/);
  await w.end();
  const f = await borrowed(url);
  t.is(f.get('vray_render')!.borrowed, 2, 'borrowed: the limit was never reached after the confirmation');
  t.is(f.get('vray_interface')!.borrowed, 1);
});

test.serial('licctl borrow --product ID[=N] borrows what the products need, summed with --feature, and the summary is per product', async (t) => {
  const { url, env } = await setup(t);
  const dry = await run(['borrow', '--product', 'vray_maya', '--product', 'vray_render_node=2'], env);
  t.is(dry.code, 1);
  t.regex(dry.stdout, /would borrow 1 V-Ray for Maya, 2 V-Ray Render Node \(1 vray_interface, 3 vray_render\) for 336 h; add --yes to borrow/);
  const b = await run(['borrow', '--product', 'vray_maya', '--product', 'vray_render_node=2', '--feature', 'nuke_i', '--hours', '24', '--yes'], env);
  t.is(b.code, 0, b.stderr);
  t.regex(b.stdout, /V-Ray for Maya\s+1\s+1\s+0/);
  t.regex(b.stdout, /V-Ray Render Node\s+0\s+2\s+0/);
  t.regex(b.stdout, /Nuke Interactive\s+1\s+0\s+0/, 'a --feature beside the products is shown under its own product name');
  const f = await borrowed(url);
  t.deepEqual([f.get('vray_interface')!.borrowed, f.get('vray_render')!.borrowed, f.get('nuke_i')!.borrowed], [1, 3, 1]);
  const unknown = await run(['borrow', '--product', 'vray_modo', '--yes'], env);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /UNKNOWN_PRODUCT: --product vray_modo: no such product on this server; products: vray_maya, vray_render_node, vray_dr, nuke/);
  const bad = await run(['borrow', '--product', 'vray_maya=0', '--yes'], env);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /--product "vray_maya=0": use PRODUCT or PRODUCT=COUNT/);
});

test.serial('an entitlement without products still works: each feature is its own product in status, the wizard and --product', async (t) => {
  const dev = await setup(t);
  dev.d.child.kill('SIGTERM');
  await dev.d.exited;
  // The license file as issued before products existed: the same features, no products list.
  const file = join(dev.dir, 'dev', 'entitlement.json');
  const { json } = parseEnvelope(JSON.parse(readFileSync(file, 'utf8')), FORMATS.entitlement, 'ENTITLEMENT_INVALID');
  // Issued after the installed one (licd refuses a license file that is not newer: docs/activation.md).
  const body = { ...(json as EntitlementBody), id: `${(json as EntitlementBody).id}-NOPRODUCTS`, issuedAt: new Date(Date.now() + 1000).toISOString() };
  delete body.products;
  writeFileSync(file, JSON.stringify(issueEntitlement(body, readVendorKey(join(dev.dir, 'dev', 'vendor.key')), nodeEd25519())));
  const d = startDaemonProcess({ LICD_DATA_DIR: dev.dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const env = { ...dev.env, LICD_BROKER: url };
  const s = JSON.parse((await run(['status', '--json'], env)).stdout) as StatusResult;
  t.deepEqual(
    s.products.map((p) => [p.id, p.name, p.licenses.map((l) => `${l.count} ${l.feature} ${l.type}`)]),
    [
      ['vray_render', 'V-Ray Render Node', ['1 vray_render render']],
      ['vray_interface', 'V-Ray for Maya', ['1 vray_interface interface']],
      ['vray_distributed', 'V-Ray Distributed Rendering', ['1 vray_distributed distributed']],
      ['nuke_i', 'Nuke Interactive', ['1 nuke_i interface']],
    ],
  );
  const w = wizard(env);
  await w.expect(/how many of V-Ray Render Node at once \[0\]: /);
  w.type('');
  await w.expect(/how many of V-Ray for Maya at once \[0\]: /);
  w.type('1');
  await w.expect(/how many of Nuke Interactive at once \[0\]: /);
  w.type('');
  const said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray for Maya\s+1\s+1\s+0\s+0/, 'one interface license: the old mapping');
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 V-Ray for Maya \(1 vray_interface\) for 336 h\?/);
  w.type('y');
  await w.expect(/Step 4\/4: summary/);
  await w.end();
  const b = await run(['borrow', '--product', 'vray_render', '--yes'], env);
  t.is(b.code, 0, b.stderr);
  const f = await borrowed(url);
  t.deepEqual([f.get('vray_interface')!.borrowed, f.get('vray_render')!.borrowed], [1, 1]);
});
