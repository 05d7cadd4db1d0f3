/** TCP transport: a dongle (usually the emulator) served on a socket. Nagle is off both ways. */
import net from 'node:net';
import { DongleError, DongleErrorCode } from '../errors.ts';
import { TransportBase } from './transport.ts';

export class SocketTransport extends TransportBase {
  readonly kind = 'tcp' as const;
  readonly description: string;

  constructor(private readonly socket: net.Socket, description?: string) {
    super();
    this.description = description ?? `tcp ${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.emitData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    socket.on('error', (error) => {
      this.finish(error);
      socket.destroy();
    });
    socket.on('close', () => this.finish());
  }

  write(bytes: Uint8Array): void {
    this.assertOpen();
    this.socket.write(bytes);
  }

  async close(): Promise<void> {
    if (this.socket.destroyed) {
      this.finish();
      return;
    }
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
    this.finish();
  }
}

export interface TcpSpec {
  kind: 'tcp';
  host: string;
  port: number;
  /** Give up connecting after this long; default 5000 ms. */
  connectTimeoutMs?: number;
}

export async function openTcpTransport(spec: TcpSpec): Promise<SocketTransport> {
  const where = `${spec.host}:${spec.port}`;
  const timeoutMs = spec.connectTimeoutMs ?? 5000;
  return await new Promise<SocketTransport>((resolve, reject) => {
    const socket = net.connect({ host: spec.host, port: spec.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DongleError(DongleErrorCode.TRANSPORT, `no TCP connection to dongle at ${where} within ${timeoutMs} ms; is the emulator running there?`));
    }, timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(
        new DongleError(DongleErrorCode.TRANSPORT, `cannot connect to dongle at tcp ${where}: ${error.message}; start it with "licctl dongle emulate --tcp ${where}" or fix the address`, { cause: error }),
      );
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new SocketTransport(socket, `tcp ${where}`));
    });
  });
}
