import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EmulatedDongle, DongleSession, type DongleSessionOptions, type EmulatedDongleOptions } from '../../firmware-bridge/index.ts';

export async function tempDir(t: { teardown(fn: () => Promise<void> | void): void }): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'licd-fb-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An in-memory emulator and a session on it, both closed when the test ends. */
export async function memoryRig(
  t: { teardown(fn: () => Promise<void> | void): void },
  dongleOptions: EmulatedDongleOptions = {},
  sessionOptions: DongleSessionOptions = {},
  maxChunk?: number,
): Promise<{ dongle: EmulatedDongle; session: DongleSession }> {
  const dongle = await EmulatedDongle.open(dongleOptions);
  const session = new DongleSession(dongle.connectMemory(maxChunk === undefined ? {} : { maxChunk }), { timeoutMs: 1000, ...sessionOptions });
  t.teardown(async () => {
    await session.close();
    await dongle.close();
  });
  return { dongle, session };
}

export const nonce = (fill: number): Uint8Array => new Uint8Array(16).fill(fill);

export function patternBytes(n: number, salt = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 131 + salt + (i >> 8)) & 0xff);
}
