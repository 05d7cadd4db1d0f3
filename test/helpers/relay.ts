/**
 * A TCP relay to a broker that a test can cut, restore or freeze: one client loses its link (or
 * stops hearing the broker) while licd keeps its own connection.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface Relay {
  /** mqtt://127.0.0.1:<port> of the relay. */
  url: string;
  /** Closes every relayed connection and refuses new ones until restore(). */
  cut(): void;
  restore(): void;
  /** Stops (true) or resumes passing the broker's bytes to the client; the client's still go through. */
  freeze(frozen: boolean): void;
}

export async function tcpRelay(t: { teardown(f: () => void): void }, to: URL): Promise<Relay> {
  const sockets = new Set<Socket>();
  let open = true;
  let frozen = false;
  const server = createServer((client) => {
    if (!open) return client.destroy();
    const up = connect(Number(to.port), to.hostname);
    for (const s of [client, up]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        up.destroy();
        sockets.delete(s);
      });
    }
    client.on('data', (b) => up.write(b));
    up.on('data', (b) => {
      if (!frozen) client.write(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    freeze(f) {
      frozen = f;
    },
  };
}
