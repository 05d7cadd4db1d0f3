/** Serial transport (USB CDC-ACM, a UART bridge, or one end of a pseudo-terminal) via serialport. */
// Type only: serialport (and its native binding) is loaded when a serial port is opened, so a
// daemon on another transport does not carry it (docs/performance.md, memory).
import type { SerialPort } from 'serialport';
import { DongleError, DongleErrorCode } from '../errors.ts';
import { DEFAULT_BAUD_RATE } from '../usb-ids.ts';
import { TransportBase } from './transport.ts';

export interface SerialSpec {
  kind: 'serial';
  path: string;
  baudRate?: number;
}

export class SerialTransport extends TransportBase {
  readonly kind = 'serial' as const;
  readonly description: string;

  constructor(private readonly port: SerialPort) {
    super();
    this.description = `serial ${port.path}`;
    port.on('data', (chunk: Buffer) => this.emitData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    port.on('close', (error?: Error | null) => this.finish(error ?? undefined));
    port.on('error', (error: Error) => {
      if (this.finish(error) && port.isOpen) port.close(() => undefined);
    });
  }

  write(bytes: Uint8Array): void {
    this.assertOpen();
    this.port.write(Buffer.from(bytes));
  }

  async close(): Promise<void> {
    if (!this.port.isOpen) {
      this.finish();
      return;
    }
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
    this.finish();
  }
}

export async function openSerialTransport(spec: SerialSpec): Promise<SerialTransport> {
  const { SerialPort } = await import('serialport');
  const port = new SerialPort({ path: spec.path, baudRate: spec.baudRate ?? DEFAULT_BAUD_RATE, autoOpen: false });
  await new Promise<void>((resolve, reject) => {
    port.open((error) => {
      if (!error) resolve();
      else {
        reject(
          new DongleError(
            DongleErrorCode.TRANSPORT,
            `cannot open serial dongle ${spec.path}: ${error.message}; check that it is plugged in and that this user may open it (group dialout, or the licd udev rule)`,
            { cause: error },
          ),
        );
      }
    });
  });
  return new SerialTransport(port);
}
