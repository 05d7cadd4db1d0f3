/**
 * The embedded broker refuses a connection that would take over a live client id, unless it is
 * the same client: the same holder secret in its last will (an SDK reconnecting while the broker
 * still holds its old connection), or the same login with its password.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { LicdError } from '../../src/core/errors.ts';
import { topics } from '../../src/core/protocol.ts';
import { rawConnect } from '../helpers/access-rules.ts';
import { startTestDaemon, until } from '../helpers/daemon.ts';

test('embedded broker: the same client (same holder secret, or same login) may take its id back; no one else may', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const holder = randomBytes(16).toString('base64url');
  const a = await d.client({ clientId: 'render-node-7', holder, user: 'alice', host: 'node-7' });
  const lease = await a.checkout('vray_render');

  // Someone else: refused, with or without a will, and the live client keeps its connection.
  for (const will of [undefined, { topic: topics.clientWill('render-node-7'), payload: Buffer.from('{"gone":true}'), qos: 1 as const, retain: false }]) {
    const other = await rawConnect({ url: d.url, protocolVersion: 4 }, { clientId: 'render-node-7', ...(will ? { will } : {}) });
    t.truthy(other.refused, 'another client is refused');
    t.regex(other.refused!.message, /Identifier rejected/);
  }
  t.true(a.mqtt.connected);

  // The same client (what a reconnect through a half-open connection looks like): accepted.
  const again = await d.client({ clientId: 'render-node-7', holder, user: 'alice', host: 'node-7' });
  t.true(again.mqtt.connected, 'a connection with the same holder secret takes the id over');
  // It holds the same leases: it can renew and check in what the first connection checked out.
  const hb = await again.request<{ renewed: Array<{ id: string }> }>('heartbeat', { leases: [lease.id] });
  t.deepEqual(hb.renewed.map((r) => r.id), [lease.id]);
  a.mqtt.options.reconnectPeriod = 0;
  a.mqtt.end(true);
  const r = await again.checkin({ leases: [lease.id] });
  t.deepEqual(r.released, [lease.id]);

  // A login may take back its own id (its password is the proof); a different login may not.
  const admin1 = await d.admin({ clientId: 'admin-console' });
  const admin2 = await d.admin({ clientId: 'admin-console' });
  t.true(admin2.mqtt.connected, 'the same login takes its id over');
  admin1.mqtt.options.reconnectPeriod = 0;
  admin1.mqtt.end(true);
  await until(() => admin2.mqtt.connected, 'the admin connection to stay');
  const anon = await t.throwsAsync(d.client({ clientId: 'admin-console', timeoutMs: 3000 }));
  t.true(anon instanceof LicdError || anon instanceof Error);
  t.true(admin2.mqtt.connected, 'an anonymous client cannot take over a login\'s id');
});
