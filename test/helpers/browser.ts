/**
 * Debian's chromium driven by playwright-core (nothing is downloaded at run time): a fresh browser
 * and context per test, closed at teardown.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { tempDir } from './daemon.ts';
import { startDaemonProcess, type Proc } from './procs.ts';

type Teardown = { teardown(f: () => Promise<void> | void): void };

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

/** Where a test writes its screenshots: LICD_WEB_SCREENSHOTS, or a temp dir removed at teardown. */
export function screenshotDir(t: Teardown): string {
  if (process.env.LICD_WEB_SCREENSHOTS) return process.env.LICD_WEB_SCREENSHOTS;
  const dir = tempDir('licd-web-shots-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * licd as a process on its embedded broker, killed at teardown: its MQTT and web page URLs and the
 * admin password. On `dir` when given (the caller keeps it, e.g. to start licd on it again), else
 * on a temp dir removed at teardown.
 */
export async function webDaemon(t: Teardown, dir?: string): Promise<{ d: Proc; dir: string; mqttUrl: string; web: string; password: string }> {
  const data = dir ?? tempDir();
  const d = startDaemonProcess({ LICD_DATA_DIR: data, LICD_MQTT_PORT: '0' });
  t.teardown(() => {
    d.child.kill('SIGKILL');
    if (dir === undefined) rmSync(data, { recursive: true, force: true });
  });
  const mqttUrl = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const web = (await d.waitFor(/web page on (http:\/\/[\d.]+:\d+)\//, 10_000))[1]!;
  return { d, dir: data, mqttUrl, web, password: readFileSync(join(data, 'admin.password'), 'utf8').trim() };
}
