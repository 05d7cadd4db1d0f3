import test from 'ava';
import { rmSync } from 'node:fs';
import { LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { ManualClock, startTestDaemon, tempDir } from '../helpers/daemon.ts';

const H = 3600_000;

function borrowerFor(t: { teardown(f: () => Promise<void> | void): void }, clock: ManualClock) {
  return (user = 'alice', hostId = 'aa'.repeat(16)) => {
    const home = tempDir('licd-home-');
    t.teardown(() => rmSync(home, { recursive: true, force: true }));
    return new BorrowClient({ home, hostId, user, hostName: 'laptop', clock });
  };
}

async function setup(t: { teardown(f: () => Promise<void> | void): void }, config: Record<string, unknown> = {}) {
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock, config });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const borrowed = async (f: string) => (await c.status()).features.find((x) => x.feature === f)!.borrowed;
  return { d, c, clock, borrowed, borrower: borrowerFor(t, clock) };
}

test('a borrow ends by itself at expiry and its seat comes back', async (t) => {
  const { d, c, clock, borrowed, borrower } = await setup(t);
  const b = borrower();
  await b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2, {});
  t.is(await borrowed('nuke_i'), 1);
  clock.advance(2 * H - 1000);
  await d.service.reap();
  t.is(await borrowed('nuke_i'), 1);
  clock.advance(2000);
  await d.service.reap();
  t.is(await borrowed('nuke_i'), 0);
  // Offline, the token expired at the same moment.
  t.regex(((x) => ('reason' in x ? x.reason : ''))(b.usable('nuke_i', d.vendorPublicKey, clock.now())), /expired at/);
  // Re-borrow after expiry.
  const again = await b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 2, {});
  t.is(again.borrows.length, 1);
});

test('refresh on reconnect: not within the first hour, to the full period after it (LM-X)', async (t) => {
  const { c, clock, borrower } = await setup(t);
  const b = borrower();
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24, {});
  const id = r.borrows[0]!.id;
  const first = Date.parse(r.borrows[0]!.until);
  clock.advance(30 * 60_000);
  const early = await b.renew(c, [id], 24, { refresh: true });
  t.deepEqual(early.unchanged, [id]);
  t.is(Date.parse(early.borrows[0]!.until), first);
  clock.advance(11 * H);
  const later = await b.renew(c, [id], 24, { refresh: true });
  t.is(later.unchanged, undefined);
  t.is(Date.parse(later.borrows[0]!.until), clock.now() + 24 * H);
});

test('refresh can be switched off in the config', async (t) => {
  const { c, clock, borrower } = await setup(t, { borrow: { refreshOnReconnect: false } });
  const b = borrower();
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24, {});
  clock.advance(5 * H);
  const x = await b.renew(c, [r.borrows[0]!.id], 24, { refresh: true });
  t.deepEqual(x.unchanged, [r.borrows[0]!.id]);
});

test('auto-renew: a client that opted in renews near expiry when it reaches the server', async (t) => {
  const { d, c, clock, borrower } = await setup(t);
  const b = borrower();
  const r = await b.borrow(c, [{ feature: 'vray_interface', count: 1 }], 8, { autoRenew: true });
  clock.advance(3 * H);
  let m = await b.maintain(c, d.vendorPublicKey, clock.now());
  t.deepEqual(m.renewed, []); // not due yet (more than a quarter left): refreshed instead
  t.deepEqual(m.refreshed, [r.borrows[0]!.id]);
  clock.advance(7 * H);
  m = await b.maintain(c, d.vendorPublicKey, clock.now());
  t.deepEqual(m.renewed, [r.borrows[0]!.id]);
  const tok = b.list(d.vendorPublicKey, clock.now())[0]!;
  t.is(tok.token.expiresAt, clock.now() + 8 * H);
  t.truthy(tok.valid);
});

test('renewal is capped at the maximum from now; a lost borrow stays reserved and cannot be renewed', async (t) => {
  const { d, c, clock, borrowed, borrower } = await setup(t);
  const b = borrower();
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 300, {});
  const id = r.borrows[0]!.id;
  clock.advance(100 * H);
  await t.throwsAsync(b.renew(c, [id], 337), { message: /at most 336 h/ });
  const ok = await b.renew(c, [id], 336);
  t.is(Date.parse(ok.borrows[0]!.until), clock.now() + 336 * H);
  const admin = await d.admin();
  const lost = await admin.request<{ borrow: { state: string } }>('borrow.lost', { borrow: id }, { admin: true });
  t.is(lost.borrow.state, 'lost');
  t.is(await borrowed('vray_render'), 1);
  const s = await c.status();
  t.is(s.features.find((f) => f.feature === 'vray_render')!.borrows[0]!.state, 'lost');
  const e = await t.throwsAsync(b.renew(c, [id], 10), { instanceOf: LicdError });
  t.regex(e!.message, /marked lost/);
  // A plain client cannot mark borrows lost.
  const e2 = await t.throwsAsync(c.request('borrow.lost', { borrow: id }), { instanceOf: LicdError });
  t.is(e2!.code, 'FORBIDDEN');
});

test('limits per feature, per user and per group, in seats and hours', async (t) => {
  const { d, c, borrower } = await setup(t);
  const admin = await d.admin();
  await admin.request('limits.set', { limits: { features: { vray_render: { maxSeats: 2, maxHours: 48 } }, users: { alice: { maxSeats: 1 } }, groups: { interns: { members: ['eve', 'mallory'], maxSeats: 1, maxHours: 8 } } } }, { admin: true });
  const alice = borrower('alice');
  const bob = borrower('bob', 'bb'.repeat(16));
  const eve = borrower('eve', 'cc'.repeat(16));
  const mallory = borrower('mallory', 'dd'.repeat(16));
  const why = async (p: Promise<unknown>) => {
    try {
      await p;
      return 'ok';
    } catch (e) {
      return `${(e as LicdError).code}: ${(e as Error).message}`;
    }
  };
  t.regex(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 49)), /BORROW_HOURS: .*limits.features.vray_render allows at most 48 h/);
  t.is(await why(alice.borrow(c, [{ feature: 'vray_render', count: 1 }], 48)), 'ok');
  t.regex(await why(alice.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1)), /BORROW_LIMIT: nuke_i: limits.users.alice allows 1 borrowed seats and 1 are borrowed/);
  t.is(await why(bob.borrow(c, [{ feature: 'vray_render', count: 1 }], 10)), 'ok');
  t.regex(await why(eve.borrow(c, [{ feature: 'vray_render', count: 1 }], 8)), /BORROW_LIMIT: vray_render: limits.features.vray_render allows 2/);
  t.regex(await why(eve.borrow(c, [{ feature: 'vray_interface', count: 1 }], 9)), /BORROW_HOURS: .*limits.groups.interns allows at most 8 h/);
  t.is(await why(eve.borrow(c, [{ feature: 'vray_interface', count: 1 }], 8)), 'ok');
  t.regex(await why(mallory.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1)), /BORROW_LIMIT: .*limits.groups.interns allows 1/);
  // Limits persist across a restart.
  const got = await admin.request<{ limits: { users: Record<string, unknown> } }>('limits.get', {}, { admin: true });
  t.deepEqual(got.limits.users, { alice: { maxSeats: 1 } });
});

test('no borrow without the dongle; a stale or forged request is refused', async (t) => {
  const { d, c, clock, borrower } = await setup(t);
  const b = borrower();
  const stale = b.request([{ feature: 'nuke_i', count: 1 }], 1, { now: clock.now() - 60 * 60_000 });
  const e = await t.throwsAsync(c.request('borrow', { request: stale }), { instanceOf: LicdError });
  t.regex(e!.message, /more than 15 min from the server's time/);
  const forged = b.request([{ feature: 'nuke_i', count: 1 }], 1, { now: clock.now() });
  const body = JSON.parse(Buffer.from(forged.body, 'base64url').toString());
  body.items[0].count = 1;
  body.user = 'someone-else';
  const e2 = await t.throwsAsync(c.request('borrow', { request: { ...forged, body: Buffer.from(JSON.stringify(body)).toString('base64url') } }), { instanceOf: LicdError });
  t.regex(e2!.message, /does not verify with the client's key/);
  d.opener.emulator!.unplug();
  await new Promise((r) => setTimeout(r, 600));
  const e3 = await t.throwsAsync(b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 1, {}), { instanceOf: LicdError });
  t.is(e3!.code, 'DONGLE_ABSENT');
});
