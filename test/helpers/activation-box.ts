/** A licd box on its development defaults for the activation tests (docs/activation.md). */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './daemon.ts';
import { run, startDaemonProcess, type Proc } from './procs.ts';

export interface Status {
  server: { entitlement: { id: string } | null; warnings: string[] };
  features: Array<{ feature: string; total: number; leased: number; free: number; leases: Array<{ id: string; user: string }> }>;
}

export const feature = (s: Status, name: string) => s.features.find((f) => f.feature === name);

export function spec(features: Array<{ name: string; seats: number; borrow?: boolean }>): unknown {
  return {
    customer: 'ACME Studio',
    features: features.map((f) => ({
      name: f.name,
      version: '20.5',
      seats: f.seats,
      days: 30,
      type: 'render',
      borrow: f.borrow ? { allowed: true, maxHours: 72 } : { allowed: false, maxHours: 0 },
    })),
  };
}

/** A box on its development defaults, with the vendor key made first so the vendor's service can sign with it. */
export async function box(t: { teardown(f: () => void): void }) {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'dev', 'vendor.key');
  mkdirSync(join(dir, 'dev'), { recursive: true });
  const kg = await run(['vendor', 'keygen', '--dev', '--out', key]);
  if (kg.code !== 0) throw new Error(kg.stderr);
  const state = { d: null as Proc | null, url: '' };
  const start = async (env: Record<string, string> = {}) => {
    state.d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', ...env });
    state.url = (await state.d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  };
  t.teardown(() => state.d?.child.kill('SIGKILL'));
  return {
    dir,
    key,
    state,
    start,
    async stop() {
      state.d!.child.kill('SIGTERM');
      await state.d!.exited;
    },
    admin: () => ['--broker', state.url, '--user', 'admin', '--password-file', join(dir, 'admin.password')],
    async status(): Promise<Status> {
      const r = await run(['status', '--json', '--broker', state.url]);
      if (r.code !== 0) throw new Error(r.stderr);
      return JSON.parse(r.stdout) as Status;
    },
  };
}

