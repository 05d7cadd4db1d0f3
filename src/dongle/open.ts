import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config.ts';
import { DongleSession } from '../../firmware-bridge/session/session.ts';
import { isDeviceError } from '../../firmware-bridge/errors.ts';
import { EmulatedDongle } from '../../firmware-bridge/emulator/emulated-dongle.ts';
import { findSerialDongles, openTransport, type SerialDiscoveryOptions, type ByIdOptions } from '../../firmware-bridge/transport/index.ts';
import { LICD_DONGLE_USB } from '../../firmware-bridge/usb-ids.ts';
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
    time: async (nonce) => {
      try {
        const r = await session.time(nonce);
        return { ms: Number(r.ms), signature: r.signature };
      } catch (e) {
        // A dongle without a clock (or firmware older than TIME) does not know the command.
        if (isDeviceError(e, 'BAD_COMMAND')) return null;
        throw e;
      }
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
export async function dongleOpener(config: Config, discovery: SerialDiscoveryOptions & ByIdOptions = {}): Promise<DongleOpener> {
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
  if (d.transport === 'serial' && d.path === 'auto') {
    // Discovery: the licd dongle's USB ids (SerialPort.list, which runs udevadm) and the
    // /dev/serial/by-id links, looked up again at every open so a replug on another port is found.
    return {
      emulator: null,
      open: async () => {
        const found = await findSerialDongles(discovery);
        const pick = found.find((c) => c.byIdPath) ?? found[0];
        if (!pick) {
          const ids = `${LICD_DONGLE_USB.vendorId.toString(16).padStart(4, '0')}:${LICD_DONGLE_USB.productId.toString(16).padStart(4, '0')}`;
          throw new Error(`no licd dongle found on USB serial (looked for USB id ${ids} and /dev/serial/by-id/usb-licd_licd_dongle_*); is it plugged in?`);
        }
        return linkOf(new DongleSession(await openTransport({ kind: 'serial', path: pick.byIdPath ?? pick.path, baudRate: d.baudRate }), sessionOptions));
      },
      close: async () => {},
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
