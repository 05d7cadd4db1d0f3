/**
 * What docs/asyncapi.yaml says a payload looks like is what a real daemon sends and takes: a raw
 * MQTT client (no SDK) talks to a daemon (embedded broker, LevelDB in a temp dir) on the topics
 * the document names (anonymous, admin and render-node login topics), every request and will it
 * sends fits the document's schema, and every message it gets (retained state, answers, refusals,
 * the lease.lost notice) fits the schema of the document's message for that channel, with no
 * field the document does not list.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NOTICE_OPS, topics } from '../../src/core/protocol.ts';
import { naclEd25519 } from '../../src/crypto/ed25519.ts';
import { sealBorrowRequest, sealReturn, type BorrowRequestBody } from '../../src/core/tokens.ts';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';
import { issueActivationLicense, readVendorKey } from '../../src/vendor.ts';
import { parseActivationSpec } from '../../src/core/activation.ts';
import { mosquittoBinaries } from '../helpers/mosquitto.ts';
import { check, deref, doc, obj, type Node } from './asyncapi-doc.ts';

const channels = obj(doc.channels, 'channels');

/** The channel whose address is this concrete topic. */
function channelOf(topic: string): string {
  for (const [key, c] of Object.entries(channels)) {
    const re = new RegExp(`^${(obj(c, key).address as string).replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (re.test(topic)) return key;
  }
  throw new Error(`no channel in docs/asyncapi.yaml for ${topic}`);
}

/** The message of a channel that this payload is (by op, ok and a null id), and its name. */
function messageFor(channel: string, payload: Node): [string, Node] {
  const all = Object.entries(obj(obj(channels[channel], channel).messages, 'messages')).map(([k, m]) => [k, deref(m, k)] as [string, Node]);
  if (all.length === 1) return all[0]!;
  const hit = all.find(([, m]) => {
    const p = deref(deref(m.payload, 'payload').properties, 'properties');
    const op = (p.op as Node | undefined)?.const;
    const ok = (p.ok as Node | undefined)?.const;
    if (payload.ok === undefined) return op === payload.op;
    if (payload.ok === true) return ok === true && op === payload.op;
    if (payload.id === null && NOTICE_OPS.includes(payload.op as never)) return ok === false && op === payload.op;
    return ok === false && op === undefined;
  });
  if (!hit) throw new Error(`no message in channel ${channel} for ${JSON.stringify(payload).slice(0, 200)}`);
  return hit;
}

test('a real daemon sends and takes what docs/asyncapi.yaml says', async (t) => {
  t.timeout(60_000);
  // One render-node login, so the login topics are spoken too (anonymous clients stay allowed).
  const usersFile = join(tempDir('licd-asyncapi-'), 'render-nodes.passwd');
  writeFileSync(usersFile, 'render17:render17-secret\n', { mode: 0o600 });
  const hashed = spawnSync(mosquittoBinaries().passwd, ['-U', usersFile], { encoding: 'utf8' });
  if (hashed.status !== 0) throw new Error(`mosquitto_passwd -U failed: ${hashed.stderr}`);
  const d = await startTestDaemon({ config: { identity: { usersFile } } });
  t.teardown(() => d.dispose());
  const seen = new Set<string>();
  const problems: string[] = [];
  const fits = (topic: string, payload: Node): void => {
    const channel = channelOf(topic);
    const [name, message] = messageFor(channel, payload);
    seen.add(`${channel}/${name}`);
    for (const e of check(message.payload, payload, `${name}`)) problems.push(`${topic}: ${e}`);
  };

  const connect = (clientId: string, opts: mqtt.IClientOptions = {}) => mqtt.connectAsync(d.url, { clientId, reconnectPeriod: 0, ...opts });
  const answers = new Map<string, (p: Node) => void>();
  const notices: Node[] = [];
  const listen = (c: mqtt.MqttClient): void => {
    c.on('message', (topic, buf) => {
      const payload = JSON.parse(buf.toString('utf8')) as Node;
      fits(topic, payload);
      if (typeof payload.id === 'string') answers.get(payload.id)?.(payload);
      else if (payload.id === null) notices.push(payload);
    });
  };
  const client = await connect('asyncapi-client');
  const admin = await connect('asyncapi-admin', { username: 'admin', password: d.adminCredentials!.password });
  const node = await connect('asyncapi-login', { username: 'render17', password: 'render17-secret' });
  for (const c of [client, admin, node]) {
    t.teardown(() => void c.endAsync());
    listen(c);
  }
  await node.subscribeAsync(topics.loginResponse('render17', 'asyncapi-login'), { qos: 1 });
  await client.subscribeAsync([topics.clientResponse('asyncapi-client'), topics.serverState, topics.serverChain, topics.featureWildcard], { qos: 1 });
  await admin.subscribeAsync(topics.clientResponse('asyncapi-admin'), { qos: 1 });

  let n = 0;
  const ask = async (c: mqtt.MqttClient, topic: string, request: Node, documented = true): Promise<Node> => {
    const id = `q${++n}`;
    const payload = { id, ...request };
    if (documented) fits(topic, payload); // the request, too, must fit the document
    const answer = new Promise<Node>((resolve) => answers.set(id, resolve));
    await c.publishAsync(topic, JSON.stringify(payload), { qos: 1 });
    return answer;
  };
  const req = topics.clientRequest('asyncapi-client');
  const adm = topics.adminRequest('asyncapi-admin');
  const ok = (a: Node): Node => {
    if (a.ok !== true) throw new Error(`refused: ${JSON.stringify(a)}`);
    return a.result as Node;
  };

  // Client ops.
  const holder = randomBytes(16).toString('base64url');
  ok(await ask(client, req, { op: 'status' }));
  const lease = (ok(await ask(client, req, { op: 'checkout', feature: 'vray_render', version: '6.0', user: 'alice', host: 'node-17', pid: 4242, holder, ttl: 60 })).lease as Node).id as string;
  ok(await ask(client, req, { op: 'heartbeat', holder }));
  const cut = ok(await ask(client, req, { op: 'status', feature: 'vray_render', limit: 0 }));
  t.deepEqual((cut.features as Node[])[0]!.more, { leases: 1, borrows: 0 }, 'a status cut by its limit says how much it left out');
  ok(await ask(client, req, { op: 'borrow.preview', products: [{ feature: 'vray_render', machines: 2 }] }));
  const byProduct = ok(await ask(client, req, { op: 'borrow.preview', user: 'alice', products: [{ product: 'vray_maya', machines: 1 }, { feature: 'nuke_i', machines: 1 }] }));
  t.deepEqual((byProduct.items as Node[]).map((i) => i.feature), ['vray_interface', 'vray_render', 'nuke_i'], 'a preview by product lists the licenses it needs');

  const ed = naclEd25519();
  const seed = new Uint8Array(randomBytes(32));
  const clientKey = Buffer.from(ed.publicKey(seed)).toString('hex');
  const hostId = randomBytes(16).toString('hex');
  const body = (more: Partial<BorrowRequestBody>): BorrowRequestBody => ({
    requestId: randomBytes(8).toString('hex'),
    items: [{ feature: 'vray_render', count: 1 }],
    hours: 24,
    user: 'alice',
    hostId,
    hostName: 'laptop-9',
    clientKey,
    autoRenew: false,
    createdAt: new Date().toISOString(),
    ...more,
  });
  const borrowed = ok(await ask(client, req, { op: 'borrow', request: sealBorrowRequest(body({}), seed, ed) }));
  const borrowId = ((borrowed.borrows as Node[])[0]!).id as string;
  ok(await ask(client, req, { op: 'borrow.list', clientKey }));
  ok(await ask(client, req, { op: 'borrow.renew', request: sealBorrowRequest(body({ items: [], renew: [borrowId], hours: 48 }), seed, ed) }));
  const ret = (ids: string[]) => sealReturn({ borrowIds: ids, hostId, user: 'alice', clientKey, createdAt: new Date().toISOString() }, seed, ed);
  ok(await ask(client, req, { op: 'borrow.return', return: ret([borrowId]) }));

  // Admin ops.
  ok(await ask(admin, adm, { op: 'limits.get' }));
  ok(await ask(admin, adm, { op: 'limits.set', limits: { features: { vray_render: { maxSeats: 3 } }, groups: { night: { maxHours: 48, members: ['alice'] } } } }));
  const fileBorrow = ok(await ask(admin, adm, { op: 'borrow.file', request: sealBorrowRequest(body({}), seed, ed) }));
  ok(await ask(admin, adm, { op: 'borrows' }));
  const lostId = ((ok(await ask(client, req, { op: 'borrow', request: sealBorrowRequest(body({ items: [{ feature: 'vray_interface', count: 1 }] }), seed, ed) })).borrows as Node[])[0]!).id as string;
  ok(await ask(admin, adm, { op: 'borrow.lost', borrow: lostId }));
  ok(await ask(admin, adm, { op: 'return.file', return: ret([((fileBorrow.borrows as Node[])[0]!).id as string]) }));
  ok(await ask(admin, adm, { op: 'lease.revoke', lease, block: 600 }));
  t.is((ok(await ask(client, req, { op: 'status' })).blocks as Node[]).length, 1, 'status lists the block in force');
  ok(await ask(admin, adm, { op: 'lease.unblock', feature: 'vray_render', user: 'alice', host: 'node-17' }));
  ok(await ask(admin, adm, { op: 'clock.accept' }));
  // Activation (docs/activation.md): a request signed by the dongle, the vendor's answer installed.
  const activation = ok(await ask(admin, adm, { op: 'activation.request' }));
  // Every feature kept (a removed one's retained topic is cleared with an empty payload), one with more seats.
  const spec = {
    customer: 'Live',
    features: ['vray_render', 'vray_interface', 'vray_distributed', 'nuke_i'].map((name) => ({ name, version: '16.0', seats: name === 'vray_render' ? 6 : 4, days: 30, type: 'render', borrow: { allowed: true, maxHours: 72 } })),
  };
  const issued = issueActivationLicense(activation.request, { bySerial: new Map(), fallback: parseActivationSpec(spec, 'spec') }, readVendorKey(join(d.config.dataDir, 'dev', 'vendor.key')), ed, { now: Date.now() });
  ok(await ask(admin, adm, { op: 'license.install', license: issued.license }));
  t.is(((await ask(admin, adm, { op: 'activation.online', url: 'http://127.0.0.1:1' })).error as Node | undefined)?.code, 'ACTIVATION_FAILED');
  // The audit log (docs/audit.md).
  ok(await ask(admin, adm, { op: 'audit.head' }));
  ok(await ask(admin, adm, { op: 'audit.export', from: 1, limit: 50 }));

  // Refusals: an unknown op, no seats, a release that does not verify, an admin op on a client topic.
  const refusals = [
    await ask(client, req, { op: 'no.such.op' }, false),
    await ask(client, req, { op: 'checkout', feature: 'nuke_i', count: 999, user: 'alice', host: 'node-17', pid: 1, holder }),
    await ask(admin, adm, { op: 'quarantine.release', release: { format: 'licd-quarantine-release/1', body: 'e30', sig: 'AAAA' } }),
  ];
  t.deepEqual(
    refusals.map((a) => (a.error as Node | undefined)?.code),
    ['UNKNOWN_OP', 'NO_SEATS', 'RELEASE_INVALID'],
  );
  ok(await ask(client, req, { op: 'checkin', holder }));

  // A logged-in client on the login topics, and its last will (checked as sent; licd answers none).
  const lreq = topics.loginRequest('render17', 'asyncapi-login');
  const nodeHolder = randomBytes(16).toString('base64url');
  ok(await ask(node, lreq, { op: 'status', feature: 'nuke_i', limit: 10 }));
  ok(await ask(node, lreq, { op: 'checkout', feature: 'nuke_i', user: 'render17', host: 'node-17', pid: 7, holder: nodeHolder }));
  ok(await ask(node, lreq, { op: 'heartbeat', holder: nodeHolder }));
  const refusedOnLogin = await ask(node, lreq, { op: 'borrow.preview', products: [{ feature: 'no_such_feature', machines: 1 }] });
  t.is((refusedOnLogin.error as Node | undefined)?.code, 'UNKNOWN_FEATURE');
  ok(await ask(node, lreq, { op: 'checkin', holder: nodeHolder }));
  fits(topics.loginWill('render17', 'asyncapi-login'), { gone: true, conn: 0, holder: nodeHolder });
  fits(topics.clientWill('asyncapi-client'), { gone: true, conn: 0, holder });

  // The revoke's notice reached the holder; every retained topic was heard.
  const deadline = Date.now() + 20_000;
  while ((notices.length === 0 || !seen.has('feature/feature')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(notices.map((x) => x.op), ['lease.lost']);

  t.deepEqual(problems, [], 'every payload fits docs/asyncapi.yaml');
  const expected = [
    'serverState/serverState',
    'serverChain/serverChain',
    'feature/feature',
    'clientResponse/answer.refused',
    'clientResponse/notice.lease.lost',
    ...['status', 'checkout', 'heartbeat', 'checkin', 'borrow', 'borrow.renew', 'borrow.return', 'borrow.list', 'borrow.preview'].flatMap((op) => [`clientRequest/request.${op}`, `clientResponse/answer.${op}`]),
    ...['lease.revoke', 'borrows', 'borrow.lost', 'borrow.file', 'return.file', 'limits.get', 'limits.set', 'clock.accept', 'lease.unblock'].flatMap((op) => [`adminRequest/request.${op}`, `clientResponse/answer.${op}`]),
    'adminRequest/request.quarantine.release',
    ...['activation.request', 'license.install'].flatMap((op) => [`adminRequest/request.${op}`, `clientResponse/answer.${op}`]),
    'adminRequest/request.activation.online',
    ...['audit.head', 'audit.export'].flatMap((op) => [`adminRequest/request.${op}`, `clientResponse/answer.${op}`]),
    ...['status', 'checkout', 'heartbeat', 'borrow.preview', 'checkin'].map((op) => `loginRequest/request.${op}`),
    ...['status', 'checkout', 'heartbeat', 'checkin', 'refused'].map((op) => `loginResponse/answer.${op}`),
    'loginWill/will',
    'clientWill/will',
  ];
  for (const e of expected) t.true(seen.has(e), `checked live: ${e}`);
});
