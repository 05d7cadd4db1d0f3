import { spawn, type ChildProcess } from 'node:child_process';
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

export interface PtyPair {
  device: string;
  host: string;
  socat: ChildProcess;
}

/** Starts socat and waits until both links exist. socat missing is a failure, not a skip. */
export async function ptyPair(t: { teardown(fn: () => Promise<void>): void }, dir: string): Promise<PtyPair> {
  const device = path.join(dir, 'dongle-side');
  const host = path.join(dir, 'host-side');
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${host}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  socat.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => socat.once('exit', () => resolve()));
  t.teardown(async () => {
    if (socat.exitCode === null && socat.signalCode === null) {
      socat.kill('SIGTERM');
      await exited;
    }
  });
  await new Promise<void>((resolve, reject) => {
    socat.once('error', (e) => reject(new Error(`cannot run socat (Debian package socat): ${e.message}`)));
    const started = Date.now();
    const poll = async (): Promise<void> => {
      if (/starting data transfer loop/.test(stderr)) {
        try {
          await fs.access(device);
          await fs.access(host);
          resolve();
          return;
        } catch {
          // links not there yet
        }
      }
      if (socat.exitCode !== null) return reject(new Error(`socat exited: ${stderr}`));
      if (Date.now() - started > 10_000) return reject(new Error(`socat did not start: ${stderr}`));
      setTimeout(() => void poll(), 20);
    };
    void poll();
  });
  return { device, host, socat };
}

