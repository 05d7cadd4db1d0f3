/**
 * licd as a child process on its development defaults (a temp data dir, a free port), and the
 * environment a licctl client on the same machine uses with it: its own LICD_HOME, the broker, the
 * daemon's development vendor key, and a user. `offline` is the same client with no server (the
 * broker port refuses at once).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './daemon.ts';
import { startDaemonProcess, type Proc } from './procs.ts';

export type ClientEnv = { LICD_HOME: string; LICD_BROKER: string; LICD_VENDOR_KEY: string } & Record<string, string>;

export interface DevDaemon {
  d: Proc;
  dir: string;
  home: string;
  url: string;
  vendor: string;
  env: ClientEnv;
  offline: ClientEnv;
}

export async function devDaemonProcess(t: { teardown(f: () => void): void }, client: Record<string, string>): Promise<DevDaemon> {
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  const env = { LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, ...client };
  return { d, dir, home, url, vendor, env, offline: { ...env, LICD_BROKER: 'mqtt://127.0.0.1:1' } };
}
