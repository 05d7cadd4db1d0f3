/**
 * issue 11, finding 6: licd started with its MQTT port (or its TLS port) taken by another program
 * says so in one sentence naming host:port and the fix, exits 69 (README), and shows no stack.
 */
import test from 'ava';
import { createServer, type Server } from 'node:net';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function occupy(t: import('ava').ExecutionContext): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.teardown(() => s.close());
  return (s.address() as { port: number }).port;
}

function noStack(t: import('ava').ExecutionContext, text: string): void {
  t.notRegex(text, /^\s+at \S/m, 'no stack trace');
  t.notRegex(text, /Error: listen/);
}

test('the MQTT port in use: one sentence with host:port and the fix, exit 69', async (t) => {
  const port = await occupy(t);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: String(port) });
  const { code } = await d.exited;
  t.is(code, 69, d.stderr());
  const line = d.stderr().split('\n').find((l) => l.startsWith('licd: cannot start'));
  t.truthy(line, d.stderr());
  t.regex(line!, new RegExp(`127\\.0\\.0\\.1:${port} is already in use by another program`));
  t.regex(line!, /stop that program, or give the MQTT listener another port with mqtt\.port in the config file or LICD_MQTT_PORT/);
  noStack(t, d.stderr());
});

test('the TLS port in use: names the TLS listener and broker.tls.port, exit 69', async (t) => {
  const port = await occupy(t);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'licd.json');
  writeFileSync(config, JSON.stringify({ broker: { tls: { enabled: true, host: '127.0.0.1', port } } }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' }, ['--config', config]);
  const { code } = await d.exited;
  t.is(code, 69, d.stderr());
  t.regex(d.stderr(), new RegExp(`the TLS \\(mqtts\\) listener cannot listen: 127\\.0\\.0\\.1:${port} is already in use by another program.*broker\\.tls\\.port in the config file`));
  noStack(t, d.stderr());
});
