/**
 * npm run bench:web [-- --leases N] [--daemon compiled|tsx]      (default 10000 leases, compiled)
 *
 * The web page's figure (issue 16; docs/web.md): with N live leases in the database, how long
 * headless Chromium takes to show the page, to show the overview after signing in (retained
 * topics through the WebSocket), to list the leases (a `status` answer of up to 500 per feature),
 * and for the first live update: a real client's checkout until the page shows the new count.
 * A figure, not a test: no threshold. The compiled daemon needs `npm run build` (dist/web).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { LicdClient } from '../src/sdk/client.ts';
import { FEATURE, makeLicense, makeVendorKey, spawnDaemon, waitServing, type DaemonBuild } from './lib/daemon.ts';
import { preload } from './lib/preload.ts';
import { freePort } from './lib/proc.ts';

const { values } = parseArgs({ options: { leases: { type: 'string', default: '10000' }, daemon: { type: 'string', default: 'compiled' } } });
const N = Number(values.leases);
const build = values.daemon as DaemonBuild;

const dir = mkdtempSync(join(tmpdir(), 'licd-bench-web-'));
const dataDir = join(dir, 'data');
const license = await makeLicense(join(dir, 'license'), N + 10, makeVendorKey());
await preload(dataDir, { feature: FEATURE, leases: N, borrows: 0, leaseTtlMs: 3_600_000, borrowMs: 86_400_000 });
const httpPort = await freePort();
process.env.LICD_HTTP_PORT = String(httpPort);
const d = spawnDaemon({ license, dataDir, broker: { kind: 'embedded', port: await freePort() }, build });
const browser = await chromium.launch({ executablePath: process.env.LICD_CHROMIUM ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
let client: LicdClient | null = null;
try {
  await waitServing(d, 120_000);
  const password = readFileSync(join(dataDir, 'admin.password'), 'utf8').trim();
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const row = page.locator(`tr[data-feature="${FEATURE}"]`);
  const rows: Array<[string, number]> = [];
  let t0 = performance.now();
  await page.goto(`http://127.0.0.1:${httpPort}/`);
  await page.getByLabel('Password').waitFor();
  rows.push(['page load (HTML, JS, CSS) to the sign-in form', performance.now() - t0]);
  await page.getByLabel('Password').fill(password);
  t0 = performance.now();
  await page.getByRole('button', { name: 'Sign in' }).click();
  await row.locator('[data-col="leased"]').filter({ hasText: new RegExp(`^${N}$`) }).waitFor({ timeout: 60_000 });
  rows.push([`sign-in to the overview showing ${N} leased`, performance.now() - t0]);
  t0 = performance.now();
  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  await page.locator('tr[data-lease]').first().waitFor({ timeout: 60_000 });
  rows.push(['leases tab to the first 500 listed', performance.now() - t0]);
  await page.getByRole('tab', { name: 'Overview' }).click();
  client = await LicdClient.connect({ url: d.url, user: 'bench', host: 'web-bench', timeoutMs: 20_000 });
  t0 = performance.now();
  await client.checkout(FEATURE, { ttl: 600 });
  const answered = performance.now() - t0;
  await row.locator('[data-col="leased"]').filter({ hasText: new RegExp(`^${N + 1}$`) }).waitFor({ timeout: 60_000 });
  rows.push([`first live update: a checkout until the page shows ${N + 1} (answer in ${answered.toFixed(0)} ms)`, performance.now() - t0]);
  process.stdout.write(`web page with ${N} leases (${build} daemon)\n${rows.map(([k, ms]) => `  ${k.padEnd(78)} ${ms.toFixed(0).padStart(6)} ms`).join('\n')}\n`);
} finally {
  await client?.close({ checkin: false }).catch(() => {});
  await browser.close();
  await d.stop();
  rmSync(dir, { recursive: true, force: true });
}
