/**
 * Debian's chromium driven by playwright-core (nothing is downloaded at run time): a fresh browser
 * and context per test, closed at teardown.
 */
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.LICD_CHROMIUM ?? '/usr/bin/chromium';

export async function openPage(t: { teardown(f: () => Promise<void> | void): void }, viewport = { width: 1280, height: 800 }): Promise<{ browser: Browser; context: BrowserContext; page: Page }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  return { browser, context, page };
}
