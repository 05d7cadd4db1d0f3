/**
 * docs/asyncapi.yaml (AsyncAPI 3.0.0, written by hand) against the protocol map, as
 * test/docs.test.ts checks docs/protocol.md: every topic of src/core/protocol.ts has a channel,
 * every client and admin op a request and an answer message, every notice a message, every error
 * code of src/core/errors.ts is in the error enum; every topic has its twin under
 * licd/v1/s/{server}/ (a box of a cluster, docs/scale-out.md); and the document has nothing more. A new op,
 * topic or error code in the map fails this test until the document has it too.
 */
import test from 'ava';
import { ErrorCodes } from '../../src/core/errors.ts';
import { ADMIN_OPS, CLIENT_OPS, NOTICE_OPS, parseTopic, serverPrefix, topics, topicsOf } from '../../src/core/protocol.ts';
import { deref, doc, obj, resolve, type Node } from './asyncapi-doc.ts';

const channels = obj(doc.channels, 'channels');
const operations = obj(doc.operations, 'operations');

/** The payload of a message: its properties (op, ok, id) after following $refs. */
function payloadOf(message: unknown, where: string): Node {
  const m = deref(message, where);
  const p = deref(m.payload, `${where}.payload`);
  return deref(p.properties, `${where}.payload.properties`);
}

/** The messages of one channel, sorted into requests, answers, refusals and notices by their payload. */
function kinds(channel: string): { requests: string[]; answers: string[]; notices: string[]; refused: number; other: string[] } {
  const out = { requests: [] as string[], answers: [] as string[], notices: [] as string[], refused: 0, other: [] as string[] };
  const messages = obj(obj(channels[channel], channel).messages, `${channel}.messages`);
  for (const [key, m] of Object.entries(messages)) {
    const props = payloadOf(m, `${channel}.messages.${key}`);
    const op = (props.op as Node | undefined)?.const;
    const ok = (props.ok as Node | undefined)?.const;
    const nullId = (props.id as Node | undefined)?.type === 'null';
    if (typeof op === 'string' && ok === undefined && props.id !== undefined) out.requests.push(op);
    // Queue notices (docs/policy.md) are ok: true, with a null id: notices, not answers.
    else if (typeof op === 'string' && ok === true && nullId && (NOTICE_OPS as readonly string[]).includes(op)) out.notices.push(op);
    else if (typeof op === 'string' && ok === true) out.answers.push(op);
    else if (typeof op === 'string' && ok === false && nullId) out.notices.push(op);
    else if (op === undefined && ok === false) out.refused++;
    else out.other.push(key);
  }
  for (const list of [out.requests, out.answers, out.notices]) list.sort();
  return out;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();
const normal = (address: string): string => address.replace(/\{[^}]*\}/g, '{}');

test('docs/asyncapi.yaml is an AsyncAPI 3.0.0 document with an mqtt and an mqtts server', (t) => {
  t.is(doc.asyncapi, '3.0.0');
  const servers = obj(doc.servers, 'servers');
  t.deepEqual(Object.keys(servers).sort(), ['mqtt', 'mqtts']);
  t.is(obj(servers.mqtt, 'servers.mqtt').protocol, 'mqtt');
  t.is(obj(servers.mqtts, 'servers.mqtts').protocol, 'secure-mqtt');
  t.is(doc.defaultContentType, 'application/json');
});

test('every $ref in the document points at something', (t) => {
  const refs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string') refs.push(x);
        else walk(x);
      }
    }
  };
  walk(doc);
  t.true(refs.length > 100);
  for (const ref of refs) t.notThrows(() => resolve(ref), ref);
});

test('every topic of the protocol map has a channel, with parameters where the map has them, and there is no other channel', (t) => {
  const addresses: string[] = [];
  const filters: string[] = [];
  for (const v of Object.values(topics)) {
    if (typeof v === 'function') addresses.push(normal((v as (...a: string[]) => string)(...Array.from({ length: v.length }, (_, i) => `{${i}}`))));
    else if (v.includes('+')) filters.push(v);
    else addresses.push(v);
  }
  const all = Object.entries(channels).map(([k, c]) => obj(c, `channels.${k}`).address as string);
  // A box of a cluster (docs/scale-out.md) has every topic under licd/v1/s/{server}/: each has its twin.
  const CLUSTER = 'licd/v1/s/{server}/';
  const documented = all.filter((a) => !a.startsWith(CLUSTER));
  t.deepEqual(documented.map(normal).sort(), addresses.sort(), 'channel addresses = the topics of src/core/protocol.ts');
  const cluster = all.filter((a) => a.startsWith(CLUSTER)).map((a) => 'licd/v1/' + a.slice(CLUSTER.length));
  t.deepEqual(cluster.map(normal).sort(), addresses.sort(), 'every topic has its cluster channel under licd/v1/s/{server}/, and no other');
  for (const f of filters) t.true(documented.map(normal).includes(f.replace(/\+/g, '{}')), `the subscription ${f} matches a channel`);

  // Parameter names: declared, known, and where the map puts them.
  for (const [key, c] of Object.entries(channels)) {
    const ch = obj(c, `channels.${key}`);
    const address = ch.address as string;
    const names = [...address.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
    const declared = ch.parameters === undefined ? [] : Object.keys(obj(ch.parameters, `channels.${key}.parameters`));
    t.deepEqual(declared.sort(), [...names].sort(), `${key}: parameters declared = those in ${address}`);
    for (const n of names) t.true(['clientId', 'login', 'feature', 'server'].includes(n), `${key}: parameter ${n}`);
    const onBox = names.includes('server') ? 'SRV' : null;
    if (onBox) t.true(address.startsWith('licd/v1/s/{server}/'), `${key}: {server} where the cluster's topics put it`);
    const concrete = address.replace('{server}', 'SRV').replace('{clientId}', 'CID').replace('{login}', 'LOGIN').replace('{feature}', 'FEAT');
    if (names.includes('feature')) t.is(concrete, topicsOf(onBox).feature('FEAT'), `${key}: {feature} where the map puts the feature`);
    const parsed = onBox ? parseTopic(concrete, serverPrefix(onBox)) : parseTopic(concrete);
    if (parsed) {
      t.is(parsed.clientId, 'CID', `${key}: {clientId} where the daemon reads the client id`);
      t.is(parsed.login, names.includes('login') ? 'LOGIN' : undefined, `${key}: {login} where the daemon reads the login`);
    }
  }
});

const channelAt = (topic: string): string => {
  const hit = Object.entries(channels).find(([k, c]) => normal(obj(c, k).address as string) === normal(topic));
  if (!hit) throw new Error(`no channel for ${topic}`);
  return hit[0];
};
const clientReq = channelAt(topics.clientRequest('{clientId}'));
const clientRes = channelAt(topics.clientResponse('{clientId}'));
const adminReq = channelAt(topics.adminRequest('{clientId}'));
const loginReq = channelAt(topics.loginRequest('{login}', '{clientId}'));
const loginRes = channelAt(topics.loginResponse('{login}', '{clientId}'));

test('every client op has a request message on the client and login request channels, every admin op on the admin channel, and no other', (t) => {
  for (const ch of [clientReq, loginReq]) {
    const k = kinds(ch);
    t.deepEqual(k.requests, sorted(CLIENT_OPS), `${ch}: request messages = CLIENT_OPS`);
    t.deepEqual([k.answers, k.notices, k.refused, k.other], [[], [], 0, []], `${ch}: only requests`);
  }
  const k = kinds(adminReq);
  t.deepEqual(k.requests, sorted(ADMIN_OPS), `${adminReq}: request messages = ADMIN_OPS`);
  t.deepEqual([k.answers, k.notices, k.refused, k.other], [[], [], 0, []], `${adminReq}: only requests`);
});

test('every op has an answer message, every notice a message, and there is one refused answer, on the response channels', (t) => {
  const c = kinds(clientRes);
  t.deepEqual(c.answers, sorted([...CLIENT_OPS, ...ADMIN_OPS]), `${clientRes}: answers = CLIENT_OPS + ADMIN_OPS (admins read answers here)`);
  t.deepEqual(c.notices, sorted(NOTICE_OPS), `${clientRes}: notices = NOTICE_OPS`);
  t.is(c.refused, 1);
  t.deepEqual([c.requests, c.other], [[], []]);
  const l = kinds(loginRes);
  t.deepEqual(l.answers, sorted(CLIENT_OPS), `${loginRes}: answers = CLIENT_OPS`);
  t.deepEqual(l.notices, sorted(NOTICE_OPS));
  t.is(l.refused, 1);
  t.deepEqual([l.requests, l.other], [[], []]);
});

test('the error code enum is exactly the codes of src/core/errors.ts', (t) => {
  const schemas = obj(obj(doc.components, 'components').schemas, 'components.schemas');
  const code = deref(schemas.ErrorCode, 'ErrorCode');
  t.deepEqual(sorted(code.enum as string[]), sorted(ErrorCodes));
  // A refusal's code is that enum; a notice's code is one of its values.
  for (const [key, m] of Object.entries(obj(obj(channels[clientRes], clientRes).messages, 'messages'))) {
    const p = payloadOf(m, key);
    if ((p.ok as Node).const !== false) continue;
    const errorCode = deref(deref(deref(p.error, `${key}.error`).properties, `${key}.error.properties`).code, `${key}.error.code`);
    if (errorCode.const === undefined) t.is(errorCode, code, `${key}: error.code is the ErrorCode enum`);
    else t.true((ErrorCodes as readonly string[]).includes(errorCode.const as string), `${key}: error.code ${String(errorCode.const)} is a code`);
  }
});

test('operations: every channel is used, each request op is served with its answer as the reply, and refs stay in their channel', (t) => {
  const used = new Set<string>();
  const ref = (v: unknown, where: string): string => obj(v, where).$ref as string;
  const served = { client: [] as string[], login: [] as string[], admin: [] as string[] };
  for (const [name, o] of Object.entries(operations)) {
    const op = obj(o, `operations.${name}`);
    t.true(op.action === 'send' || op.action === 'receive', `${name}: action`);
    const chRef = ref(op.channel, `${name}.channel`);
    const ch = chRef.replace('#/channels/', '');
    used.add(ch);
    // Without messages, an operation takes every message of its channel (the cluster's operations).
    const msgs = ((op.messages as unknown[] | undefined) ?? []).map((m, i) => ref(m, `${name}.messages[${i}]`));
    for (const m of msgs) t.true(m.startsWith(`#/channels/${ch}/messages/`), `${name}: ${m} is a message of its channel ${ch}`);
    if (op.reply !== undefined) {
      const reply = obj(op.reply, `${name}.reply`);
      const rch = ref(reply.channel, `${name}.reply.channel`).replace('#/channels/', '');
      used.add(rch);
      const rmsgs = (reply.messages as unknown[]).map((m, i) => ref(m, `${name}.reply.messages[${i}]`));
      for (const m of rmsgs) t.true(m.startsWith(`#/channels/${rch}/messages/`), `${name}: reply ${m} is a message of ${rch}`);
      const asked = msgs.map((m) => (payloadOf(resolve(m), m).op as Node).const as string).sort();
      const answered = rmsgs.map((m) => payloadOf(resolve(m), m)).filter((p) => (p.ok as Node).const === true).map((p) => (p.op as Node).const as string).sort();
      t.deepEqual(answered, asked, `${name}: the reply has an answer for each request it serves`);
      t.true(rmsgs.some((m) => (payloadOf(resolve(m), m).op as Node).const === undefined), `${name}: the reply may be a refusal`);
      if (ch === clientReq) served.client.push(...asked);
      if (ch === loginReq) served.login.push(...asked);
      if (ch === adminReq) served.admin.push(...asked);
    }
  }
  t.deepEqual([...used].sort(), Object.keys(channels).sort(), 'every channel is used by an operation');
  t.deepEqual(served.client.sort(), sorted(CLIENT_OPS), 'every client op is served on the client topic');
  t.deepEqual(served.login.sort(), sorted(CLIENT_OPS), 'every client op is served on the login topic');
  t.deepEqual(served.admin.sort(), sorted(ADMIN_OPS), 'every admin op is served on the admin topic');
});
