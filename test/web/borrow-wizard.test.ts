/**
 * Issue 16: the web page's borrow wizard in headless Chromium, in V-Ray's four steps (products,
 * machines, preview by license type, summary), ending in the request file; the commands in it
 * then really borrow on "the borrowing machine" (licctl as a real process with its own home).
 */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openPage } from '../helpers/browser.ts';
import { tempDir } from '../helpers/daemon.ts';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('products, machines, preview (a count over what may be borrowed is refused), summary, request file; its commands borrow for real; a borrow limit set on the page applies at the next preview', async (t) => {
  t.timeout(150_000); // about 20 s alone; generous for a loaded machine
  const out = process.env.LICD_WEB_SCREENSHOTS ?? tempDir('licd-web-shots-');
  if (!process.env.LICD_WEB_SCREENSHOTS) t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const dev = await devDaemonProcess(t, { LICD_USER: 'carol' });
  const web = (await dev.d.waitFor(/web page on (http:\/\/[\d.]+:\d+)\//, 10_000))[1]!;
  const password = readFileSync(join(dev.dir, 'admin.password'), 'utf8').trim();
  const { page } = await openPage(t);
  await page.goto(`${web}/`);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('tab', { name: 'Borrow', exact: true }).click();

  // 1. Products.
  await page.getByRole('checkbox', { name: /V-Ray Render Node/ }).check();
  await page.getByRole('button', { name: 'Next' }).click();
  // 2. Machines: 9 render nodes when 4 seats are free.
  await page.getByLabel('V-Ray Render Node').fill('9');
  await page.getByLabel('For user').fill('carol');
  await page.getByRole('button', { name: 'Preview' }).click();
  // 3. Preview: refused where it is shown, and Next is off.
  await page.getByRole('alert').filter({ hasText: /vray_render: 9 needed, but you may borrow 4 now/ }).waitFor();
  t.true(await page.getByRole('button', { name: 'Next' }).isDisabled());
  await page.getByRole('button', { name: 'Back' }).click();
  await page.getByLabel('V-Ray Render Node').fill('2');
  await page.getByRole('button', { name: 'Preview' }).click();
  const row = page.locator('table.preview tr[data-feature="vray_render"]');
  await row.waitFor();
  t.is(await row.locator('[data-col="machines"]').textContent(), '2');
  t.is(await row.locator('td').nth(1).textContent(), 'RENDER');
  await page.getByLabel(/^Hours/).fill('48');
  await page.screenshot({ path: join(out, 'borrow-preview.png') });
  await page.getByRole('button', { name: 'Next' }).click();
  // 4. Summary and the request file.
  await page.getByText(/V-Ray Render Node x2: until/).waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download the request file' }).click()]);
  const file = join(dev.home, 'borrow-request.txt');
  await download.saveAs(file);
  const text = readFileSync(file, 'utf8');
  t.regex(text, /^licctl borrow --product vray_render_node=2 --hours 48 --yes$/m);
  const line = text.split('\n').find((l) => l.startsWith('licctl borrow request '))!;
  t.is(line, 'licctl borrow request --feature vray_render=2 --hours 48 --out req.json');

  // On the borrowing machine (its own LICD_HOME, offline), then an admin, then back.
  const req = join(dev.home, 'req.json');
  const tokens = join(dev.home, 'tokens.json');
  const args = line.split(' ').slice(1).map((a) => (a === 'req.json' ? req : a));
  const made = await run(args, dev.offline);
  t.is(made.code, 0, made.stderr);
  const answered = await run(['borrow', '--request', req, '--out', tokens, '--user', 'admin', '--password-file', join(dev.dir, 'admin.password')], dev.env);
  t.is(answered.code, 0, answered.stderr);
  const imported = await run(['borrow', 'import', tokens], dev.offline);
  t.is(imported.code, 0, imported.stderr);
  // The page shows the borrow live: 2 borrowed of vray_render.
  await page.getByRole('tab', { name: 'Overview' }).click();
  await page.locator('tr[data-feature="vray_render"] [data-col="borrowed"]').filter({ hasText: /^2$/ }).waitFor();

  // A live setting: a borrow limit for carol, in force at the next preview.
  await page.getByRole('tab', { name: 'Settings' }).click();
  await page.getByLabel('Limits (JSON)').fill('{"users":{"carol":{"maxSeats":3}}');
  await page.getByRole('button', { name: 'Save the limits' }).click();
  await page.getByRole('status').filter({ hasText: /not JSON/ }).waitFor();
  await page.getByLabel('Limits (JSON)').fill('{"users":{"carol":{"maxSeats":3}}}');
  await page.getByRole('button', { name: 'Save the limits' }).click();
  await page.getByRole('status').filter({ hasText: 'the borrow limits are saved' }).waitFor();
  await page.getByRole('tab', { name: 'Borrow', exact: true }).click();
  await page.getByRole('checkbox', { name: /V-Ray Render Node/ }).check();
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('For user').fill('carol');
  await page.getByRole('button', { name: 'Preview' }).click();
  t.regex((await page.locator('table.preview tr[data-feature="vray_render"] td').nth(3).textContent()) ?? '', /^1 .*limits\.users\.carol/);

  // The admin marks the borrow lost on the Leases and borrows tab (after a confirmation): its state says so, its button goes.
  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  const borrowRow = page.locator('table.borrows tr[data-borrow]').first();
  await borrowRow.getByRole('button', { name: /^Mark the borrow of .* lost$/ }).click();
  await borrowRow.getByRole('button', { name: 'Yes, mark lost' }).click();
  await page.getByRole('status').filter({ hasText: /^marked the borrow of .* lost$/ }).waitFor();
  await borrowRow.locator('td').nth(5).filter({ hasText: /^lost$/ }).waitFor();
  t.is(await borrowRow.getByRole('button').count(), 0);
});
