/**
 * libfaketime for real child processes: the wall clock of a licd process is stepped by writing
 * an offset ("+2d", "-1d") to its timestamp file, while its monotonic clock stays true
 * (FAKETIME_DONT_FAKE_MONOTONIC), as with a clock set by hand or a bad NTP server.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LicdClient } from '../../src/sdk/client.ts';
import { startDaemonProcess, type Proc } from './procs.ts';

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

export function faketimeAvailable(): boolean {
  return existsSync(LIBFAKETIME);
}

export class FakeClockFile {
  constructor(readonly path: string) {
    this.set('+0');
  }

  /** An offset from the true time as libfaketime reads it: "+2d", "-1d", "+120", "+0". */
  set(offset: string): void {
    writeFileSync(this.path, offset + '\n');
  }

  env(): Record<string, string> {
    return {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: this.path,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    };
  }
}

export interface FakedDaemon {
  proc: Proc;
  url: string;
  clockFile: FakeClockFile;
  /** How many times the log has said `re` so far. */
  count(re: RegExp): number;
  client(): Promise<LicdClient>;
  admin(): Promise<LicdClient>;
  stop(): Promise<void>;
}

/** licd (development mode, emulated dongle unless LICD_DONGLE says otherwise) under libfaketime. */
export async function startFakedDaemon(dir: string, clockFile: FakeClockFile, env: Record<string, string> = {}): Promise<FakedDaemon> {
  const proc = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', ...clockFile.env(), ...env });
  const url = (await proc.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const clients: LicdClient[] = [];
  return {
    proc,
    url,
    clockFile,
    count: (re) => (proc.stdout() + proc.stderr()).split('\n').filter((l) => re.test(l)).length,
    async client() {
      const c = await LicdClient.connect({ url, timeoutMs: 10_000 });
      clients.push(c);
      return c;
    },
    async admin() {
      const password = readFileSync(join(dir, 'admin.password'), 'utf8').trim();
      const c = await LicdClient.connect({ url, timeoutMs: 10_000, username: 'admin', password });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) await c.close({ checkin: false }).catch(() => {});
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    },
  };
}
