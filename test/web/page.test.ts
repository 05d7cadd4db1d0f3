/**
 * Issue 16: the web page in headless Chromium against licd as a real process: sign in, see a
 * checkout made by a real SDK client appear without a reload, revoke it (the client hears it),
 * and on a second page width the same overview. Screenshots go to the test's temp dir
 * (LICD_WEB_SCREENSHOTS=dir keeps them elsewhere; docs/web-overview.png was made so).
 */
import test from 'ava';
import { join } from 'node:path';
import { openPage, screenshotDir as shots, webDaemon as daemon } from '../helpers/browser.ts';
import { killAll, run } from '../helpers/procs.ts';
import { LicdClient } from '../../src/sdk/client.ts';

test.after.always(() => killAll());

test('sign in, a checkout by a real client appears without a reload, the admin revokes it, the client hears it; the audit log shows it and its export verifies with licctl', async (t) => {
  t.timeout(150_000); // about 20 s alone; generous for a loaded machine
  const out = shots(t);
  const { mqttUrl, web, password, dir } = await daemon(t);
  const { page } = await openPage(t);
  await page.goto(`${web}/`);
  await page.getByLabel('Password').fill('wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: /refused the sign-in/ }).waitFor();
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('signed in as admin').waitFor();
  const row = page.locator('tr[data-feature="vray_render"]');
  await row.locator('[data-col="free"]').filter({ hasText: /^4$/ }).waitFor();

  // A render node checks out a seat: the overview changes by itself (no reload, no polling).
  const client = await LicdClient.connect({ url: mqttUrl, user: 'alice', host: 'node-17', timeoutMs: 10_000 });
  t.teardown(() => client.close({ checkin: false }));
  const lease = await client.checkout('vray_render');
  await row.locator('[data-col="leased"]').filter({ hasText: /^1$/ }).waitFor();
  await row.locator('[data-col="free"]').filter({ hasText: /^3$/ }).waitFor();
  await page.locator('.page').screenshot({ path: join(out, 'overview.png') });

  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  const leaseRow = page.locator(`tr[data-lease="${lease.id}"]`);
  await leaseRow.waitFor();
  t.deepEqual(await leaseRow.locator('td').allTextContents().then((c) => c.slice(0, 3)), ['vray_render', 'alice', 'node-17']);
  // The filter hides what does not match. It matches lease ids too, so the text has a '.', which
  // no id has (an id is base64url: 'bob' alone matched the lease mu2iV1RQBBoB in a CI run).
  await page.getByLabel('Filter').fill('bob.example');
  await leaseRow.waitFor({ state: 'detached' });
  await page.getByLabel('Filter').fill('alice');
  await leaseRow.waitFor();
  await page.screenshot({ path: join(out, 'leases.png') });

  const lost = new Promise<string>((resolve) => lease.once('lost', (e: { code: string }) => resolve(e.code)));
  await leaseRow.getByRole('button', { name: /Revoke the lease of alice/ }).click();
  // A confirmation first; Cancel keeps the lease.
  await leaseRow.getByRole('button', { name: 'Cancel' }).click();
  await leaseRow.getByRole('button', { name: /Revoke the lease of alice/ }).click();
  await leaseRow.getByRole('button', { name: 'Yes, revoke' }).click();
  await page.getByRole('status').filter({ hasText: 'revoked the lease of alice@node-17' }).waitFor();
  await leaseRow.waitFor({ state: 'detached' });
  t.is(await lost, 'REVOKED');
  await page.getByRole('tab', { name: 'Overview' }).click();
  await row.locator('[data-col="free"]').filter({ hasText: /^4$/ }).waitFor();

  // The audit log names the revoke; its export verifies offline with licctl.
  await page.getByRole('tab', { name: 'Audit' }).click();
  await page.locator('table.audit tr[data-seq]').filter({ hasText: 'lease.revoke' }).first().waitFor();
  await page.screenshot({ path: join(out, 'audit.png') });
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download the export' }).click()]);
  const exported = join(out, 'audit.jsonl');
  await download.saveAs(exported);
  const verified = await run(['audit', 'verify', exported, '--vendor-key', join(dir, 'dev', 'vendor.key')]);
  t.is(verified.code, 0, verified.stdout + verified.stderr);

  // Signing out forgets the connection and shows the sign-in form again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  t.pass();
});

test('on a phone-sized screen the overview is usable and keyboard sign-in works; HTML in a user name is shown as text', async (t) => {
  t.timeout(150_000); // about 20 s alone; generous for a loaded machine
  const out = shots(t);
  const { web, password, mqttUrl } = await daemon(t);
  const { page } = await openPage(t, { width: 390, height: 844 });
  await page.goto(`${web}/`);
  // Keyboard only: the user field, the password field, Enter.
  await page.getByLabel('User').focus();
  await page.keyboard.press('Tab');
  await page.keyboard.type(password);
  await page.keyboard.press('Enter');
  await page.getByText('signed in as admin').waitFor();
  await page.locator('tr[data-feature="nuke_i"]').waitFor();
  // Nothing wider than the screen but the tables' own scroll boxes.
  const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth'));
  t.true(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
  await page.screenshot({ path: join(out, 'phone.png'), fullPage: true });

  // Network strings are text: a user name that is HTML shows as itself and runs nothing.
  const evil = '<img src=x onerror="window.__pwned=1">';
  const client = await LicdClient.connect({ url: mqttUrl, clientId: 'evil-node-9', user: evil, host: 'node-<b>9</b>', timeoutMs: 10_000 });
  t.teardown(() => client.close({ checkin: false }));
  const lease = await client.checkout('vray_render');
  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  const cells = page.locator(`tr[data-lease="${lease.id}"] td`);
  await cells.first().waitFor();
  t.is(await cells.nth(1).textContent(), evil);
  t.is(await cells.nth(2).textContent(), 'node-<b>9</b>');
  t.is(await page.locator('table.leases img, table.leases b').count(), 0);
  t.is(await page.evaluate('typeof window.__pwned'), 'undefined');
});
