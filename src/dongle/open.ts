import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config.ts';
import { DongleSession } from '../../firmware-bridge/session/session.ts';
import { EmulatedDongle } from '../../firmware-bridge/emulator/emulated-dongle.ts';
import { openTransport } from '../../firmware-bridge/transport/index.ts';
import type { DongleLink } from './manager.ts';

/** Adapts firmware-bridge's session to what the daemon needs. */
export function linkOf(session: DongleSession): DongleLink {
  return {
    info: () => session.info(),
    sign: (domain, message) => session.sign(domain, message),
    counterIncrement: async (nonce) => {
      const r = await session.counterIncrement(nonce);
      return { value: r.counter, signature: r.signature };
    },
    close: () => session.close(),
    closed: session.closed,
  };
}

export interface DongleOpener {
  open: () => Promise<DongleLink>;
  /** The in-process emulator, when config says "emulated" (for tests and licctl). */
  emulator: EmulatedDongle | null;
  close(): Promise<void>;
}

/**
 * Builds the dongle opener from config. "emulated" runs the emulator in-process and talks to it
 * through a memory transport with the same framing, session and checks as hardware.
 */
export async function dongleOpener(config: Config): Promise<DongleOpener> {
  const d = config.dongle;
  // A counter step writes the dongle's non-volatile memory: it gets longer than a signature.
  const sessionOptions = { timeoutMs: d.timeoutMs, retries: 1, counterTimeoutMs: Math.max(5000, 4 * d.timeoutMs) };
  if (d.transport === 'emulated') {
    const statePath = d.stateFile ?? join(config.dataDir, 'dev', 'dongle.json');
    mkdirSync(dirname(statePath), { recursive: true });
    const emulator = await EmulatedDongle.open({
      statePath,
      ...(d.serial ? { serial: d.serial } : {}),
    });
    return {
      emulator,
      open: async () => linkOf(new DongleSession(emulator.connectMemory(), sessionOptions)),
      close: () => emulator.close(),
    };
  }
  const spec =
    d.transport === 'tcp'
      ? ({ kind: 'tcp', host: d.host, port: d.port } as const)
      : d.transport === 'serial'
        ? ({ kind: 'serial', path: d.path, baudRate: d.baudRate } as const)
        : ({ kind: 'hid', vendorId: d.vendorId, productId: d.productId, ...(d.path ? { path: d.path } : {}) } as const);
  return {
    emulator: null,
    open: async () => linkOf(new DongleSession(await openTransport(spec as never), sessionOptions)),
    close: async () => {},
  };
}
