/**
 * Issue 16: the History tab's charts over time (report.series) in headless Chromium, against licd
 * as a real process after real use: render nodes take every seat of vray_render and two more are
 * refused (NO_SEATS, VERSION_NOT_LICENSED); the usage chart's bar for the hour says 4 of 4
 * licensed, the denials chart counts the refusals by reason; the numbers' table agrees; on a
 * phone-sized screen the charts fit. The leases table sorts by a column. Screenshots go to the test's temp dir (LICD_WEB_SCREENSHOTS
 * keeps them).
 */
import test from 'ava';
import { join } from 'node:path';
import { openPage, screenshotDir, webDaemon } from '../helpers/browser.ts';
import { killAll } from '../helpers/procs.ts';
import { LicdClient } from '../../src/sdk/client.ts';

test.after.always(() => killAll());

test('the usage and denials charts over time show real checkouts and refusals, readable in numbers and on a phone', async (t) => {
  t.timeout(150_000); // about 15 s alone; generous for a loaded machine
  const out = screenshotDir(t);
  const { mqttUrl, web, password } = await webDaemon(t);

  // Four render nodes take the four seats of vray_render; a fifth is refused, and one asks for a version not licensed.
  const nodes = await Promise.all([1, 2, 3, 4, 5].map((i) => LicdClient.connect({ url: mqttUrl, user: `artist${i}`, host: `node-${i}`, timeoutMs: 10_000 })));
  t.teardown(() => Promise.all(nodes.map((c) => c.close({ checkin: false }))).then(() => undefined));
  for (const c of nodes.slice(0, 4)) await c.checkout('vray_render');
  const refused = async (p: Promise<unknown>) => p.then(() => 'granted', (e: { code?: string }) => e.code);
  t.is(await refused(nodes[4]!.checkout('vray_render')), 'NO_SEATS');
  t.is(await refused(nodes[4]!.checkout('vray_render', { version: '9.0' })), 'VERSION_NOT_LICENSED');

  const { page } = await openPage(t);
  await page.goto(`${web}/`);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('signed in as admin').waitFor();
  await page.getByRole('tab', { name: 'History' }).click();
  await page.getByRole('combobox', { name: 'Period' }).selectOption('1');

  // The usage chart of vray_render: the newest bar (this hour, or the one before if the test
  // crossed an hour) says 4 of 4; the chart is an image with a title and a description.
  const usage = page.getByRole('img', { name: /^vray_render: seats in use per hour against the seats licensed/ });
  await usage.waitFor();
  const bar = usage.locator('g.bar').last();
  await bar.waitFor();
  t.regex((await bar.locator('title').textContent())!, /^\d{4}-\d\d-\d\d \d\d:00 UTC: peak seats in use 4, licensed 4 seats$/);
  t.is(await bar.getAttribute('data-total'), '4');
  t.is(await usage.locator('path.line').count(), 1, 'the licensed count is a line');
  // Every refusal is in the denials chart, by reason (summed over its bars: the hour may have turned).
  const denials = page.getByRole('img', { name: 'Refused checkouts and borrows per hour, by reason' });
  await denials.waitFor();
  const titles = await denials.locator('g.bar title').allTextContents();
  const count = (code: string) => titles.reduce((n, s) => n + Number(new RegExp(`${code} (\\d+)`).exec(s)?.[1] ?? 0), 0);
  t.is(count('NO_SEATS'), 1, titles.join(' | '));
  t.is(count('VERSION_NOT_LICENSED'), 1, titles.join(' | '));
  t.deepEqual(await page.locator('p.legend').last().locator('span').allTextContents(), [' NO_SEATS ', ' VERSION_NOT_LICENSED ']);
  // The numbers, in a table.
  await page.getByText('The numbers, per hour').click();
  const last = page.locator('table.series tr').filter({ hasText: 'vray_render' }).last();
  t.deepEqual((await last.locator('td').allTextContents()).slice(1, 4), ['vray_render', '4', '4']);
  await page.screenshot({ path: join(out, 'history-charts.png'), fullPage: true });
  await page.locator('section[data-series="vray_render"]').screenshot({ path: join(out, 'history-usage.png') });

  // The leases table sorts by a column (the shared table of leases and borrows): by user, then the other way.
  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  const users = () => page.locator('table.leases tbody tr td:nth-child(2)').allTextContents();
  await page.locator('table.leases tbody tr').nth(3).waitFor();
  await page.locator('table.leases').getByRole('button', { name: 'User' }).click();
  t.deepEqual(await users(), ['artist1', 'artist2', 'artist3', 'artist4']);
  await page.locator('table.leases').getByRole('button', { name: /User/ }).click();
  t.deepEqual(await users(), ['artist4', 'artist3', 'artist2', 'artist1']);
  t.is(await page.locator('table.leases th[aria-sort]').getAttribute('aria-sort'), 'descending');
  await page.getByRole('tab', { name: 'History' }).click();
  await page.getByRole('combobox', { name: 'Period' }).selectOption('1');
  await usage.waitFor();

  // On a phone: nothing wider than the screen, the chart drawn at its width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction('document.documentElement.scrollWidth <= document.documentElement.clientWidth');
  // The chart is redrawn at its box's new width when its ResizeObserver fires, which can be a
  // frame after the page stopped scrolling sideways: look again for up to 10 s.
  let w = Number(await usage.getAttribute('width'));
  for (const until = Date.now() + 10_000; !(w <= 390) && Date.now() < until; w = Number(await usage.getAttribute('width'))) await new Promise((r) => setTimeout(r, 100));
  t.true(w > 200 && w <= 390, `the chart is ${w} px wide`);
  await page.screenshot({ path: join(out, 'history-phone.png'), fullPage: true });
});
