/**
 * The transport limit: a bare MQTT request/echo responder. It subscribes to the daemon's request
 * topics, parses each request just enough to read its id and op (as the daemon must), and answers
 * on the client's answer topic with QoS 1 (requests come at licd's REQUEST_QOS) and a payload of the size the daemon's answer to that op
 * has. No seat table, no LevelDB, no signing.
 *
 * Forked by bench/run.ts with one JSON argument (EchoOptions). With `embedded`, it also runs the
 * project's embedded broker (src/mqtt/embedded-broker.ts, aedes with the ACL hooks) in this
 * process and connects to it over loopback, the way the daemon does.
 */
import { randomBytes } from 'node:crypto';
import { parseTopic, topics } from '../src/core/protocol.ts';
import { silentLog } from '../src/core/service.ts';
import { connectMqtt, waitConnected } from '../src/mqtt/connect.ts';
import { DAEMON_CLIENT_PREFIX, startEmbeddedBroker } from '../src/mqtt/embedded-broker.ts';
import { REQUEST_QOS } from '../src/mqtt/server-link.ts';

export interface EchoOptions {
  /** An external broker to connect to; or `embedded` to run one here on `port`. */
  url?: string;
  embedded?: { port: number };
  username: string;
  password: string;
  /** Answer size in bytes per op; `default` for others. */
  sizes: Record<string, number>;
  /** QoS of the answers (1, as the daemon, by default) and, at 0, of the subscription too: the reference. */
  qos?: 0 | 1;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as EchoOptions;

async function main(): Promise<void> {
  let url = opts.url ?? '';
  let close: () => Promise<void> = async () => {};
  if (opts.embedded) {
    const broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: opts.embedded.port,
      allowAnonymous: true,
      log: silentLog,
      users: [{ username: opts.username, password: opts.password, role: 'daemon' }],
    });
    url = broker.url;
    close = () => broker.close();
  }
  const client = connectMqtt(url, { clientId: `${DAEMON_CLIENT_PREFIX}-echo-${randomBytes(3).toString('hex')}`, username: opts.username, password: opts.password, protocolVersion: 4, clean: true });
  await waitConnected(client, 10_000);
  const qos = opts.qos ?? 1;
  // Requests come as the daemon takes them (REQUEST_QOS); the qos-0 reference takes everything at 0.
  await client.subscribeAsync({ [topics.clientRequestWildcard]: { qos: qos === 0 ? 0 : REQUEST_QOS } });

  const pads = new Map<string, string>();
  const padFor = (op: string, id: string): string => {
    const want = opts.sizes[op] ?? opts.sizes.default ?? 64;
    const key = `${op}:${id.length}`;
    let pad = pads.get(key);
    if (pad === undefined) {
      const bare = JSON.stringify({ id, ok: true, op, result: { pad: '' } }).length;
      pad = 'x'.repeat(Math.max(0, want - bare));
      pads.set(key, pad);
    }
    return pad;
  };
  client.on('message', (topic, payload) => {
    const t = parseTopic(topic);
    if (!t || t.kind !== 'request') return;
    let req: { id?: unknown; op?: unknown };
    try {
      req = JSON.parse(payload.toString('utf8')) as { id?: unknown; op?: unknown };
    } catch {
      return;
    }
    const id = typeof req.id === 'string' ? req.id : '';
    const op = typeof req.op === 'string' ? req.op : 'unknown';
    client.publish(topics.clientResponse(t.clientId), JSON.stringify({ id, ok: true, op, result: { pad: padFor(op, id) } }), { qos });
  });

  const stop = async () => {
    await new Promise<void>((r) => client.end(false, {}, () => r()));
    await close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('disconnect', () => void stop());
  process.send?.({ ready: true, url });
}

main().catch((e) => {
  process.stderr.write(`echo responder: ${String((e as Error)?.stack ?? e)}\n`);
  process.exit(1);
});
