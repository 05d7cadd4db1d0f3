/** openTransport: one factory for every kind of dongle connection. */
import { openHidTransport, type HidModuleLike, type HidSpec } from './hid.ts';
import { createMemoryPair, type MemoryTransport } from './memory.ts';
import { openSerialTransport, type SerialSpec } from './serial.ts';
import { openTcpTransport, type TcpSpec } from './tcp.ts';
import type { Transport } from './transport.ts';

export interface MemorySpec {
  kind: 'memory';
  /** Receives the device side of the pair (e.g. an emulator's attach). Without it, use `.peer`. */
  attach?: (deviceSide: Transport) => void;
  /** Deliver in pieces of at most this many bytes. */
  maxChunk?: number;
}

export type TransportSpec = MemorySpec | TcpSpec | SerialSpec | HidSpec;

export interface TransportDeps {
  /** node-hid replacement for HID specs. */
  hid?: HidModuleLike;
}

export async function openTransport(spec: MemorySpec, deps?: TransportDeps): Promise<MemoryTransport>;
export async function openTransport(spec: TransportSpec, deps?: TransportDeps): Promise<Transport>;
export async function openTransport(spec: TransportSpec, deps: TransportDeps = {}): Promise<Transport> {
  switch (spec.kind) {
    case 'memory': {
      const pairOptions = spec.maxChunk === undefined ? {} : { maxChunk: spec.maxChunk };
      const [host, device] = createMemoryPair(pairOptions);
      spec.attach?.(device);
      return host;
    }
    case 'tcp':
      return await openTcpTransport(spec);
    case 'serial':
      return await openSerialTransport(spec);
    case 'hid':
      return await openHidTransport(spec, deps.hid);
    default: {
      const never: never = spec;
      throw new TypeError(`unknown transport kind in ${JSON.stringify(never)}`);
    }
  }
}

export * from './discovery.ts';
export * from './hid-reports.ts';
export * from './hid.ts';
export * from './memory.ts';
export * from './serial.ts';
export * from './tcp.ts';
export * from './transport.ts';
