/**
 * identity.requireLogin on both brokers: render nodes log in, licd takes the user of leases and
 * borrows from the login, and no login can speak for another. The embedded broker reads the
 * render-node logins from a mosquitto password file; mosquitto runs with the shipped ACL.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LicdError } from '../../src/core/errors.ts';
import { topics, type CheckoutResult } from '../../src/core/protocol.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient, type ClientOptions } from '../../src/sdk/client.ts';
import type { TlsTrust } from '../../src/mqtt/tls.ts';
import { rawConnect, rawSubscribe, publishAndWait } from '../helpers/access-rules.ts';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';
import { mosquittoBinaries, startExternalDaemon, startMosquitto } from '../helpers/mosquitto.ts';

const PASSWORDS = { alice: 'alice-password-1', bob: 'bob-password-2' };

interface LoginSite {
  name: string;
  url: string;
  /** Where render nodes log in: with mosquitto, its TLS listener (no login crosses the LAN in clear). */
  login: { url: string; tls?: TlsTrust };
  anonymous(): Promise<LicdClient>;
  client(name: 'alice' | 'bob', o?: Partial<ClientOptions>): Promise<LicdClient>;
  dispose(): Promise<void>;
}

async function embedded(t: ExecutionContext): Promise<LoginSite> {
  const dir = tempDir('licd-logins-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const usersFile = join(dir, 'render-nodes.passwd');
  writeFileSync(usersFile, Object.entries(PASSWORDS).map(([u, p]) => `${u}:${p}\n`).join(''), { mode: 0o600 });
  const r = spawnSync(mosquittoBinaries().passwd, ['-U', usersFile], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mosquitto_passwd -U failed: ${r.stderr}`);
  const d = await startTestDaemon({ config: { identity: { requireLogin: true, usersFile } } });
  return {
    name: 'embedded aedes',
    url: d.url,
    login: { url: d.url },
    anonymous: () => d.client({ user: 'anon', host: 'node-x' }),
    client: (name, o = {}) => d.client({ username: name, password: PASSWORDS[name], login: true, host: `node-${name}`, ...o }),
    dispose: () => d.dispose(),
  };
}

async function mosquitto(): Promise<LoginSite> {
  const mosq = await startMosquitto({ users: PASSWORDS });
  const x = await startExternalDaemon({ mosquitto: mosq, config: { identity: { requireLogin: true } } });
  return {
    name: 'mosquitto',
    url: x.url,
    login: { url: mosq.tlsUrl, tls: { ca: readFileSync(mosq.certFile) } },
    anonymous: () => x.client({ user: 'anon', host: 'node-x' }),
    client: (name, o = {}) => x.client({ url: mosq.tlsUrl, tls: { ca: readFileSync(mosq.certFile) }, username: name, password: PASSWORDS[name], login: true, host: `node-${name}`, ...o }),
    dispose: () => x.dispose(),
  };
}

for (const [label, make] of [
  ['embedded broker', embedded],
  ['mosquitto', mosquitto],
] as const) {
  test(`${label}: with identity.requireLogin the user is the login; anonymous clients and other logins cannot act as it`, async (t) => {
    t.timeout(50_000);
    const site = await make(t);
    t.teardown(() => site.dispose());

    // An anonymous client still reads the status, but gets no seat.
    const anon = await site.anonymous();
    const refused = await t.throwsAsync(anon.checkout('vray_render'), { instanceOf: LicdError });
    t.is(refused?.code, 'FORBIDDEN');
    t.regex(refused!.message, /takes the user from the MQTT login \(identity\.requireLogin\)/);
    t.truthy(await anon.status());

    // Alice logs in; whatever user her client claims, licd records the login.
    const alice = await site.client('alice', { user: 'mallory' });
    const lease = await alice.checkout('vray_render');
    t.is(lease.view.user, 'alice');
    const s = await alice.status();
    t.deepEqual(
      s.features.find((f) => f.feature === 'vray_render')!.leases.map((l) => [l.id, l.user]),
      [[lease.id, 'alice']],
    );

    // Borrow requests are signed with the user in them: it must be the login.
    const home = tempDir('licd-alice-home-');
    t.teardown(() => rmSync(home, { recursive: true, force: true }));
    const asBob = new BorrowClient({ home, hostId: 'ef'.repeat(16), user: 'bob', hostName: 'laptop' });
    const wrongUser = await t.throwsAsync(asBob.borrow(alice, [{ feature: 'vray_interface', count: 1 }], 2), { instanceOf: LicdError });
    t.is(wrongUser?.code, 'FORBIDDEN');
    t.regex(wrongUser!.message, /the login is "alice"/);
    const asAlice = new BorrowClient({ home, hostId: 'ef'.repeat(16), user: 'alice', hostName: 'laptop' });
    const borrowed = await asAlice.borrow(alice, [{ feature: 'vray_interface', count: 1 }], 2);
    t.is(borrowed.borrows[0]!.user, 'alice');

    // Bob, logged in, cannot use Alice's login topics, nor read her answers.
    const bob = await rawConnect({ url: site.login.url, protocolVersion: 4, ...(site.login.tls ? { tls: site.login.tls } : {}) }, { clientId: 'bob-node-1', username: 'bob', password: PASSWORDS.bob });
    t.is(bob.refused, null);
    const granted = await rawSubscribe(bob, [topics.loginResponse('alice', alice.clientId), topics.loginResponse('alice', 'bob-node-1'), topics.loginResponse('bob', 'bob-node-1')]);
    t.log(`${site.name}: bob's subscriptions: ${granted.join(', ')}`);
    // Alice gets an answer while bob listens; bob's own round trip then shows it was routed.
    await alice.status();
    const bobAnswer = new Promise<void>((resolve) => bob.mqtt!.on('message', (topic, p) => topic === topics.loginResponse('bob', 'bob-node-1') && p.toString().includes('bob-status') && resolve()));
    bob.mqtt!.publish(topics.loginRequest('bob', 'bob-node-1'), JSON.stringify({ id: 'bob-status', op: 'status' }), { qos: 1 });
    await bobAnswer;
    t.deepEqual(
      bob.received.filter((m) => m.topic.includes('/login/alice/')).map((m) => m.topic),
      [],
      "bob reads none of alice's answers",
    );
    const forged = JSON.stringify({ id: 'forged-as-alice', op: 'checkout', feature: 'vray_render', user: 'alice', host: 'evil', pid: 1, holder: 'forged-holder-0123456789' });
    const outcomes = [
      await publishAndWait(bob.mqtt!, topics.loginRequest('alice', 'bob-node-1'), forged),
      bob.mqtt?.connected ? await publishAndWait(bob.mqtt, topics.loginRequest('alice', alice.clientId), forged) : 'connection closed',
    ];
    t.log(`${site.name}: bob publishing on alice's login topics: ${outcomes.join(', ')}`);
    await bob.end();
    // Alice's own request after the forgeries: licd handled them (if they got through) before it.
    await alice.request<CheckoutResult>('checkout', { feature: 'nuke_i', user: 'alice', host: 'node-alice', pid: 2 });
    const after = await alice.status();
    t.deepEqual(
      after.features.flatMap((f) => f.leases.map((l) => `${f.feature}:${l.user}:${l.host}`)).sort(),
      ['nuke_i:alice:node-alice', 'vray_render:alice:node-alice'],
      'no seat was taken in alice\'s name by anyone else',
    );
    t.false(bob.received.some((m) => m.payload.includes('forged-as-alice')), 'bob got no answer to the forged request');
  });
}
