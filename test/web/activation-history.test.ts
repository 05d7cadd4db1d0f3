/**
 * Issue 16: activation from the web page in headless Chromium, against licd as a real process:
 * download the activation request the dongle signs, have the vendor answer it (licctl vendor
 * activate), upload the license file, and see the new features on the overview without a
 * restart; then read the usage chart (report.usage) after a real client's checkout.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { box, spec } from '../helpers/activation-box.ts';
import { openPage } from '../helpers/browser.ts';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, run } from '../helpers/procs.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { readFileSync } from 'node:fs';

test.after.always(() => killAll());

test('activation request download, license upload, new features live; the usage chart shows the peak against the licensed seats', async (t) => {
  t.timeout(150_000); // about 20 s alone; generous for a loaded machine
  const out = process.env.LICD_WEB_SCREENSHOTS ?? tempDir('licd-web-shots-');
  if (!process.env.LICD_WEB_SCREENSHOTS) t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const b = await box(t);
  await b.start();
  const web = (await b.state.d!.waitFor(/web page on (http:\/\/[\d.]+:\d+)\//, 10_000))[1]!;
  const password = readFileSync(join(b.dir, 'admin.password'), 'utf8').trim();
  const { page } = await openPage(t);
  await page.goto(`${web}/`);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('tr[data-feature="vray_render"]').waitFor();

  await page.getByRole('tab', { name: 'Activation' }).click();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download an activation request' }).click()]);
  t.regex(download.suggestedFilename(), /^activation-request-EMU-[0-9A-F]+\.json$/);
  const req = join(b.dir, 'req.json');
  await download.saveAs(req);
  const specFile = join(b.dir, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec([{ name: 'houdini_engine', seats: 3 }, { name: 'vray_render', seats: 6, borrow: true }])));
  const lic = join(b.dir, 'license.json');
  const v = await run(['vendor', 'activate', req, '--key', b.key, '--spec', specFile, '--out', lic]);
  t.is(v.code, 0, v.stderr);
  await page.getByLabel('Upload a license file').setInputFiles(lic);
  await page.getByRole('status').filter({ hasText: /installed license .*added houdini_engine/ }).waitFor();
  await page.screenshot({ path: join(out, 'activation.png') });
  await page.getByRole('tab', { name: 'Overview' }).click();
  const houdini = page.locator('tr[data-feature="houdini_engine"]');
  await houdini.waitFor();
  t.is(await houdini.locator('td').nth(1).textContent(), '3', 'three seats of the new feature');
  await page.locator('tr[data-feature="nuke_i"]').waitFor({ state: 'detached' });
  // A file that is not a license is refused with the reason.
  const junk = join(b.dir, 'junk.json');
  writeFileSync(junk, 'not json');
  await page.getByRole('tab', { name: 'Activation' }).click();
  await page.getByLabel('Upload a license file').setInputFiles(junk);
  await page.getByRole('status').filter({ hasText: /ENTITLEMENT_INVALID: junk.json is not a license file/ }).waitFor();

  // Two seats of vray_render in use: the chart's bar says 2 of 6.
  const clients = await Promise.all(['ann', 'bob'].map((user) => LicdClient.connect({ url: b.state.url, user, host: `ws-${user}`, timeoutMs: 10_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close({ checkin: false }))).then(() => undefined));
  for (const c of clients) await c.checkout('vray_render');
  await page.getByRole('tab', { name: 'History' }).click();
  const bar = page.locator('svg.chart g[data-feature="vray_render"] text').nth(1);
  await bar.waitFor();
  t.is(await bar.textContent(), '2 / 6');
  t.is(await page.getByRole('img', { name: 'Peak seats in use and seats licensed per feature' }).count(), 1);
  await page.screenshot({ path: join(out, 'history.png') });
});
