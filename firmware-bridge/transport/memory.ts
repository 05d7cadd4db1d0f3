/**
 * Two linked in-memory transports: what one writes, the other receives on a later turn of the
 * event loop (never synchronously, as with real I/O). `maxChunk` splits deliveries so tests
 * exercise reassembly of split frames.
 */
import { TransportBase } from './transport.ts';

export interface MemoryPairOptions {
  /** Deliver writes in pieces of at most this many bytes. */
  maxChunk?: number;
  /** Description prefix for both ends. */
  name?: string;
}

export class MemoryTransport extends TransportBase {
  readonly kind = 'memory' as const;
  readonly description: string;
  /** The other end of the pair. */
  peer!: MemoryTransport;
  private readonly maxChunk: number;

  constructor(description: string, maxChunk: number) {
    super();
    this.description = description;
    this.maxChunk = maxChunk;
  }

  write(bytes: Uint8Array): void {
    this.assertOpen();
    const copy = Uint8Array.from(bytes);
    for (let o = 0; o < copy.length; o += this.maxChunk) {
      const piece = copy.subarray(o, Math.min(copy.length, o + this.maxChunk));
      setImmediate(() => this.peer.deliver(piece));
    }
  }

  private deliver(chunk: Uint8Array): void {
    this.emitData(chunk);
  }

  async close(): Promise<void> {
    if (this.finish()) setImmediate(() => this.peer.remoteClosed());
  }

  private remoteClosed(): void {
    this.finish();
  }
}

/** Returns [hostSide, deviceSide]. */
export function createMemoryPair(options: MemoryPairOptions = {}): [MemoryTransport, MemoryTransport] {
  const maxChunk = options.maxChunk ?? Number.POSITIVE_INFINITY;
  if (!(maxChunk >= 1)) throw new RangeError(`maxChunk must be >= 1, got ${maxChunk}`);
  const name = options.name ?? 'memory';
  const host = new MemoryTransport(`${name} (host side)`, maxChunk);
  const device = new MemoryTransport(`${name} (device side)`, maxChunk);
  host.peer = device;
  device.peer = host;
  return [host, device];
}
