import test from 'ava';
import { readFileSync } from 'node:fs';
import { ErrorCodes } from '../src/core/errors.ts';
import { ADMIN_OPS, CLIENT_OPS, topics } from '../src/core/protocol.ts';
import { startTestDaemon } from './helpers/daemon.ts';

const protocol = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');

test('docs/protocol.md describes every operation, topic and error code of the protocol map', (t) => {
  for (const op of [...CLIENT_OPS, ...ADMIN_OPS]) t.true(protocol.includes(`\`${op}\``) || protocol.includes(`### ${op}`), `operation ${op}`);
  for (const code of ErrorCodes) t.true(protocol.includes(`\`${code}\``), `error code ${code}`);
  const shown = [topics.serverState, topics.serverChain, 'licd/v1/feature/<feature>', topics.clientRequest('<clientId>'), topics.clientResponse('<clientId>'), topics.clientWill('<clientId>'), topics.adminRequest('<clientId>')];
  for (const topic of shown) t.true(protocol.includes(topic), `topic ${topic}`);
});

test('every operation the daemon serves is in the protocol map, and every one in the map is served', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const e = await t.throwsAsync(c.request('no-such-op'));
  const listed = e!.message.replace(/.*operations: /, '').split(', ').sort();
  t.deepEqual(listed, [...CLIENT_OPS, ...ADMIN_OPS].sort());
});
