/**
 * Builds real daemons for tests: LevelDB in a temp dir, the embedded broker on a free loopback
 * port, and the emulated dongle in-process over the memory transport (the same framing and
 * session code as hardware). Only what cannot exist here is emulated: the USB device.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/config.ts';
import type { Clock } from '../../src/core/ports.ts';
import { silentLog, type Log } from '../../src/core/service.ts';
import { startDaemon, type Daemon } from '../../src/daemon/daemon.ts';
import { dongleOpener, type DongleOpener } from '../../src/dongle/open.ts';
import { createLog } from '../../src/log.ts';
import { LicdClient, type ClientOptions } from '../../src/sdk/client.ts';

export interface TestDaemon extends Daemon {
  dataDir: string;
  opener: DongleOpener;
  /** Stops the daemon (keeps its data dir) */
  halt(): Promise<void>;
  /** Stops it and removes the data dir. */
  dispose(): Promise<void>;
  client(opts?: Partial<ClientOptions>): Promise<LicdClient>;
  admin(opts?: Partial<ClientOptions>): Promise<LicdClient>;
}

export function tempDir(prefix = 'licd-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function testLog(): Log {
  return process.env.LICD_TEST_LOG ? createLog({ level: 'debug' }) : silentLog;
}

export async function startTestDaemon(opts: { dataDir?: string; config?: Record<string, unknown>; clock?: Clock; env?: Record<string, string>; log?: Log } = {}): Promise<TestDaemon> {
  const dataDir = opts.dataDir ?? tempDir();
  const config: Config = parseConfig(
    {
      dataDir,
      mqtt: { port: 0, host: '127.0.0.1' },
      dongle: { presenceIntervalMs: 100, timeoutMs: 2000 },
      http: { port: 0 },
      ...opts.config,
    },
    opts.env ?? {},
    dataDir,
  );
  const opener = await dongleOpener(config);
  const daemon = await startDaemon({ config, log: opts.log ?? testLog(), openDongle: opener.open, ...(opts.clock ? { clock: opts.clock } : {}) });
  const clients: LicdClient[] = [];
  const t: TestDaemon = Object.assign(daemon, {
    dataDir,
    opener,
    async halt() {
      for (const c of clients) await c.close({ checkin: false }).catch(() => {});
      await daemon.stop();
      await opener.close();
    },
    async dispose() {
      await t.halt();
      rmSync(dataDir, { recursive: true, force: true });
    },
    async client(o: Partial<ClientOptions> = {}) {
      const c = await LicdClient.connect({ url: daemon.url, timeoutMs: 5000, ...o });
      clients.push(c);
      return c;
    },
    async admin(o: Partial<ClientOptions> = {}) {
      const c = await LicdClient.connect({ url: daemon.url, timeoutMs: 5000, username: 'admin', password: daemon.adminCredentials!.password, ...o });
      clients.push(c);
      return c;
    },
  });
  return t;
}

/** Waits until `check` returns a truthy value, polling; fails with `what` after the deadline. */
export async function until<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(public t = Date.parse('2026-06-01T12:00:00Z')) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** The code of the error a promise rejects with, or 'ok' (tests compare outcomes as strings). */
export async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
