/**
 * Issue 17, the failover server: box B holds a vendor-signed failover entitlement for box A's
 * nuke_i. Two licd processes, each on its own mosquitto, the mosquittos bridged with the shipped
 * bridge configuration. While A is online B refuses A's seat (FAILOVER_DORMANT); A killed, B
 * still refuses until A has been offline for the delay, then serves it, and a ClusterClient that
 * held A's seat gets it on B; A restarted, B stops granting and the client moves back to A. A
 * ledger checks all along that nothing is over the sum of the counts.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { boxConfig, startBridgedBrokers } from '../helpers/bridged-boxes.ts';
import { tempDir, until } from '../helpers/daemon.ts';
import type { Mosquitto } from '../helpers/mosquitto.ts';
import { killAll, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';
import { ClusterClient } from '../../src/sdk/cluster.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { isLicdError } from '../../src/core/errors.ts';
import type { FailoverView } from '../../src/core/failover.ts';
import { fetchAndVerifyGrant } from '../../src/sdk/verify.ts';
import { openPage } from '../helpers/browser.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';

test.after.always(() => killAll());

const IDS = ['box-a', 'box-b'] as const;
/** The failover delay: long enough to see B refuse while A is offline, short for the test. */
const AFTER_SECONDS = 10;

test("a failover box serves the primary's seats only after the primary has been offline for the delay, and gives them back when it returns", async (t) => {
  t.timeout(120_000);
  const brokers: Mosquitto[] = [];
  t.teardown(async () => {
    for (const m of brokers) await m.stop().catch(() => {});
  });
  await startBridgedBrokers(IDS, (m) => brokers.push(m));

  const dir = tempDir('licd-failover-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const configOf = (i: number, extra: Record<string, unknown> = {}) => boxConfig(dir, IDS[i]!, brokers[i]!, extra);

  // B's first start makes its development vendor key, dongle and demo license (nuke_i x1); the
  // vendor (here, B's development key) then signs B a failover entitlement for A's nuke_i x1.
  let b = startDaemonProcess({ LICD_CONFIG: configOf(1) });
  await b.waitFor(/listening on/, 40_000);
  b.child.kill('SIGTERM');
  await b.exited;
  const own = JSON.parse(readFileSync(join(dir, 'box-b', 'dev', 'entitlement.json'), 'utf8')) as { body: string };
  const dongle = (JSON.parse(Buffer.from(own.body, 'base64url').toString('utf8')) as { dongle: { serial: string; publicKey: string; emulated: boolean } }).dongle;
  const spec = join(dir, 'failover-body.json');
  writeFileSync(
    spec,
    JSON.stringify({
      id: 'FO-TEST-1',
      issuedAt: new Date().toISOString(),
      customer: 'Studio test',
      development: true,
      dongle,
      primary: { server: 'box-a' },
      afterSeconds: AFTER_SECONDS,
      maxHoursPerMonth: 72,
      // nuke_i both boxes have; houdini_fx only A (B's license lacks it).
      features: [
        { name: 'nuke_i', version: '15.1', seats: 1, expires: null, type: 'interface' },
        { name: 'houdini_fx', version: '20.0', seats: 1, expires: null, type: 'interface' },
      ],
    }),
  );
  const foFile = join(dir, 'box-b-failover.lic');
  const issued = await run(['vendor', 'failover', '--key', join(dir, 'box-b', 'dev', 'vendor.key'), '--spec', spec, '--out', foFile, '--json'], { LICD_HOME: dir });
  t.is(issued.code, 0, issued.stderr);

  const configA = configOf(0);
  let a: Proc = startDaemonProcess({ LICD_CONFIG: configA });
  b = startDaemonProcess({ LICD_CONFIG: configOf(1, { failover: { entitlementFile: foFile }, web: { anonymous: true } }) });
  await a.waitFor(/listening on/, 40_000);
  await b.waitFor(/listening on/, 40_000);

  const url = (i: number) => brokers[i]!.url;
  const clients: ClusterClient[] = [];
  const direct: LicdClient[] = [];
  t.teardown(async () => {
    for (const c of clients) await c.close().catch(() => {});
    for (const c of direct) await c.close().catch(() => {});
  });
  const cluster = async (order: number[], user: string) => {
    const c = await ClusterClient.connect({ url: url(order[0]!), urls: order.map(url), user, host: `${user}-node`, timeoutMs: 5000 }, { waitMs: 20_000, expect: 2 });
    clients.push(c);
    return c;
  };
  const q = await cluster([0, 1], 'q');
  const p = await cluster([1, 0], 'p');
  const failoverOf = (): FailoverView | undefined => p.servers.get('box-b')?.state?.failover;
  // B's first state can say "unseen" (A's state not read yet): wait for "online". The server
  // state goes out at most every 100 ms, so the second state may come a little later.
  await until(() => IDS.every((id) => q.servers.get(id)?.state?.state === 'online') && failoverOf()?.state === 'dormant' && failoverOf()?.reason === 'online', 'both servers seen, failover dormant because A is online', 20_000);

  // The ledger, all along: no server over its count; the clients never hold more seats than A
  // and B have of their own (during failover A is down, so its seat is the one B serves).
  const overs: string[] = [];
  const sample = () => {
    for (const c of clients) {
      for (const v of c.servers.values()) {
        const av = v.features.get('nuke_i');
        if (av && av.leased + av.borrowed > av.total) overs.push(`${v.id}: ${av.leased + av.borrowed} of ${av.total}`);
      }
    }
    const held = clients.flatMap((c) => c.heldLeases().filter((l) => l.state === 'held'));
    if (held.length > 2) overs.push(`clients hold ${held.length} seats of 2`);
  };
  const sampler = setInterval(sample, 200);
  t.teardown(() => clearInterval(sampler));

  // q takes A's seat (ties go by server id), p takes B's own.
  const lq = await q.checkout('nuke_i');
  t.is(lq.server, 'box-a');
  await until(() => p.servers.get('box-a')?.features.get('nuke_i')?.free === 0, "A's seat seen as taken", 10_000);
  const lp = await p.checkout('nuke_i');
  t.is(lp.server, 'box-b');

  // A is online: B refuses a seat of A's feature beyond its own, saying so.
  const r = await LicdClient.connect({ url: url(1), server: 'box-b', user: 'r', host: 'r-node', timeoutMs: 5000 });
  direct.push(r);
  const refuse = async (feature = 'nuke_i') => {
    try {
      await r.checkout(feature);
    } catch (e) {
      if (isLicdError(e)) return e;
      throw e;
    }
    throw new Error('granted');
  };
  const online = await refuse();
  t.is(online.code, 'FAILOVER_DORMANT');
  t.regex(online.message, /box-a is online/);
  t.is((await refuse('houdini_fx')).code, 'FAILOVER_DORMANT', 'a feature only A has, too');

  // A dies: its will marks it offline. q's seat finds no room (B is dormant) and waits as lost;
  // B refuses until the delay has passed, naming when failover starts.
  const lost = new Promise<void>((resolve) => lq.once('lost', () => resolve()));
  a.child.kill('SIGKILL');
  await a.exited;
  await until(() => failoverOf()?.reason === 'waiting', 'B sees A offline', 20_000);
  const waiting = await refuse();
  t.is(waiting.code, 'FAILOVER_DORMANT');
  t.regex(waiting.message, /box-a is offline since .* and failover starts at /);
  t.is(waiting.details?.startsAt, failoverOf()!.startsAt);
  await lost;
  t.is(lq.state, 'lost');

  // After the delay, B grants A's seat: q gets it there.
  const regained = new Promise<string>((resolve) => lq.once('regained', (server: string) => resolve(server)));
  t.is(await regained, 'box-b');
  t.is(failoverOf()?.state, 'active');
  t.truthy(failoverOf()?.since);
  const statusB = await r.status();
  const nukeB = statusB.features.find((f) => f.feature === 'nuke_i')!;
  t.is(nukeB.total, 2);
  t.deepEqual(nukeB.leases.map((l) => l.user).sort(), ['p', 'q']);
  t.is(statusB.server.failover?.state, 'active');
  // B's web page shows it. B is a box of a cluster, its topics under licd/v1/s/box-b: the page
  // used licd/v1 alone and stayed "waiting..." with no features on any box of a cluster.
  const webB = (await b.waitFor(/web page on (http:\/\/[\d.]+:\d+)\//, 10_000))[1]!;
  const { page } = await openPage(t);
  await page.goto(`${webB}/`);
  // Admins sign in on mosquitto's TLS listener (web.brokerUrl, test/web/bridge-mosquitto.test.ts);
  // a viewer without a password sees the same overview here (web.anonymous on B).
  await page.getByRole('button', { name: 'View without signing in' }).click();
  await page.getByTestId('server-state').filter({ hasText: 'online' }).waitFor();
  await page.getByTestId('failover').filter({ hasText: /Failover for box-a[\s\S]*ACTIVE: serving box-a's seats since[\s\S]*nuke_i x1/ }).waitFor();
  await page.locator('tr[data-feature="nuke_i"] [data-col="leased"]').filter({ hasText: /^2$/ }).waitFor();
  await page.context().browser()!.close();
  // A feature only A has is granted under the failover entitlement, which B's chain carries: the
  // grant verifies offline from the vendor key.
  const vendorPublicKey = Uint8Array.from(Buffer.from((JSON.parse(readFileSync(join(dir, 'box-b', 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey, 'hex'));
  const fx = await r.checkout('houdini_fx');
  const verified = await fetchAndVerifyGrant(r, fx.grant, { vendorPublicKey, ed: nodeEd25519(), now: Date.now() });
  t.is(verified.grant.entitlement, 'FO-TEST-1');
  await fx.release();

  // A comes back: B stops granting; the failover lease (the newest) ends with FAILOVER_ENDED and
  // q moves back to A; p keeps B's own seat.
  const movedBack = new Promise<[string, string]>((resolve) => lq.once('moved', (from: string, to: string) => resolve([from, to])));
  a = startDaemonProcess({ LICD_CONFIG: configA });
  t.deepEqual(await movedBack, ['box-b', 'box-a']);
  t.is(lq.state, 'held');
  await until(() => failoverOf()?.state === 'dormant' && failoverOf()?.reason === 'online', 'failover dormant again', 20_000);
  t.is(lp.state, 'held');
  t.is(lp.server, 'box-b');
  const after = await r.status();
  const nukeAfter = after.features.find((f) => f.feature === 'nuke_i')!;
  t.is(nukeAfter.total, 1);
  t.deepEqual(nukeAfter.leases.map((l) => l.user), ['p']);
  t.true((after.server.failover?.usedHours ?? -1) >= 0);
  const again = await refuse();
  t.is(again.code, 'FAILOVER_DORMANT');

  // licctl status shows the failover state of B.
  const st = await run(['status', '--server', 'box-b', '--broker', url(1)], { LICD_HOME: dir });
  t.is(st.code, 0, st.stderr);
  t.regex(st.stdout, /failover for box-a: dormant/);

  sample();
  t.deepEqual(overs, []);
});
