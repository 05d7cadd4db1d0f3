/**
 * A transport is the byte pipe under a session: serial, TCP, HID and in-memory are
 * interchangeable. It carries bytes only and knows nothing about frames.
 */
import { EventEmitter } from 'node:events';
import { DongleError, DongleErrorCode } from '../errors.ts';

export type TransportKind = 'memory' | 'tcp' | 'serial' | 'hid';

export interface Transport {
  readonly kind: TransportKind;
  /** For messages and logs, e.g. "serial /dev/ttyACM0". */
  readonly description: string;
  readonly isOpen: boolean;
  /** Queues bytes for sending. Throws DONGLE_CLOSED once closed; I/O failures close the transport. */
  write(bytes: Uint8Array): void;
  on(event: 'data', listener: (chunk: Uint8Array) => void): this;
  on(event: 'close', listener: (error?: Error) => void): this;
  once(event: 'data', listener: (chunk: Uint8Array) => void): this;
  once(event: 'close', listener: (error?: Error) => void): this;
  off(event: 'data', listener: (chunk: Uint8Array) => void): this;
  off(event: 'close', listener: (error?: Error) => void): this;
  /** Closes both directions. 'close' is emitted exactly once, whoever closes first. */
  close(): Promise<void>;
}

/** Shared bookkeeping: 'close' exactly once, writes refused after it. */
export abstract class TransportBase extends EventEmitter implements Transport {
  abstract readonly kind: TransportKind;
  abstract readonly description: string;
  private open = true;

  get isOpen(): boolean {
    return this.open;
  }

  abstract write(bytes: Uint8Array): void;
  abstract close(): Promise<void>;

  protected assertOpen(): void {
    if (!this.open) throw new DongleError(DongleErrorCode.CLOSED, `cannot write: ${this.description} is closed`);
  }

  protected emitData(chunk: Uint8Array): void {
    if (this.open && chunk.length > 0) this.emit('data', chunk);
  }

  /** Marks the transport closed and tells listeners. Returns false if it already was. */
  protected finish(error?: Error): boolean {
    if (!this.open) return false;
    this.open = false;
    this.emit('close', error);
    return true;
  }
}
