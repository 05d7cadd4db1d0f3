/**
 * Several licd boxes for tests (docs/scale-out.md): one mosquitto per box, bridged to every other
 * with the shipped bridge configuration (a full mesh), and one licd process per box with its own
 * emulated dongle, data dir and cluster.serverId.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto, type Mosquitto } from './mosquitto.ts';
import { startDaemonProcess, type Proc } from './procs.ts';

const BRIDGE = fileURLToPath(new URL('../../systemd/mosquitto/licd-bridge.conf.example', import.meta.url));

function bridgeConfig(self: string, other: string, to: Mosquitto, password: string): string {
  const text = readFileSync(BRIDGE, 'utf8')
    .replaceAll('@SELF@', self)
    .replaceAll('@OTHER@', other)
    .replaceAll('@OTHER_ADDRESS@', `127.0.0.1:${to.tlsPort}`)
    .replaceAll('@OTHER_CAFILE@', to.certFile)
    .replaceAll('@PASSWORD@', password);
  return `\n${text}\n`;
}

/** Starts one mosquitto per id and bridges each to all the others (each restarts with its bridges). */
export async function startBridgedBrokers(ids: readonly string[], onStop: (m: Mosquitto) => void): Promise<Mosquitto[]> {
  const password = 'cluster-test-password';
  const brokers: Mosquitto[] = [];
  for (let i = 0; i < ids.length; i++) {
    const m = await startMosquitto({ users: { cluster: password } });
    onStop(m);
    brokers.push(m);
  }
  for (let i = 0; i < ids.length; i++) {
    for (let j = 0; j < ids.length; j++) if (i !== j) appendFileSync(join(brokers[i]!.dir, 'licd.conf'), bridgeConfig(ids[i]!, ids[j]!, brokers[j]!, password));
    await brokers[i]!.kill('SIGTERM');
    await brokers[i]!.relaunch();
  }
  return brokers;
}

/** Writes box `id`'s config (its broker, its server id, short leases, `extra` on top) into dir; returns its path. */
export function boxConfig(dir: string, id: string, broker: Mosquitto, extra: Record<string, unknown> = {}): string {
  const config = join(dir, `${id}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      dataDir: join(dir, id),
      development: true,
      mqtt: { broker: 'external', url: broker.url, username: 'licd', password: broker.passwords.licd },
      cluster: { serverId: id },
      // Short leases: a seat on a box cut off from the client is known lost within seconds.
      leases: { minTtlSeconds: 3, ttlSeconds: 9 },
      ...extra,
    }),
  );
  return config;
}

/** Starts each box's licd on its config and waits until every one listens. */
export async function startBoxes(configs: readonly string[]): Promise<Proc[]> {
  const daemons = configs.map((config) => startDaemonProcess({ LICD_CONFIG: config }));
  for (const d of daemons) await d.waitFor(/listening on/, 40_000);
  return daemons;
}
