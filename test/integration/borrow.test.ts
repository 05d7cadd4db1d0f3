import test from 'ava';
import { rmSync } from 'node:fs';
import { LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';

const HOST_A = 'aa'.repeat(16);
const HOST_B = 'bb'.repeat(16);

function borrower(t: { teardown(f: () => void): void }, o: { hostId?: string; user?: string; home?: string } = {}) {
  const home = o.home ?? tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  return new BorrowClient({ home, hostId: o.hostId ?? HOST_A, user: o.user ?? 'alice', hostName: 'laptop' });
}

test('borrow reserves seats, the token works offline, early return frees the seat at once', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const b = borrower(t);
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 1 }, { feature: 'vray_interface', count: 1 }], 72, { autoRenew: true });
  t.is(r.tokens.length, 2);
  let s = await c.status();
  const render = s.features.find((f) => f.feature === 'vray_render')!;
  t.like(render, { leased: 0, borrowed: 1, free: 3 });
  t.like(render.borrows[0], { user: 'alice', hostName: 'laptop', hostId: HOST_A, autoRenew: true, state: 'active' });

  // Offline: the daemon is not needed to use the token.
  const use = b.usable('vray_render', d.vendorPublicKey);
  t.truthy(use.ok, 'reason' in use ? use.reason : '');

  await b.giveBack(c, [render.borrows[0]!.id]);
  s = await c.status();
  t.like(s.features.find((f) => f.feature === 'vray_render'), { borrowed: 0, free: 4 });
  t.false(Boolean(b.usable('vray_render', d.vendorPublicKey).ok));
});

test('borrowing is refused with the reason: disabled, too many hours, no seats', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const b = borrower(t);
  const code = async (items: Array<{ feature: string; count: number }>, hours: number) => {
    try {
      await b.borrow(c, items, hours);
      return 'ok';
    } catch (e) {
      return `${(e as LicdError).code}: ${(e as Error).message}`;
    }
  };
  t.regex(await code([{ feature: 'vray_distributed', count: 1 }], 1), /^BORROW_NOT_ALLOWED: vray_distributed: the license does not allow borrowing/);
  t.regex(await code([{ feature: 'vray_render', count: 1 }], 400), /^BORROW_HOURS: vray_render: 400 h asked for, the license allows at most 336 h/);
  t.regex(await code([{ feature: 'vray_render', count: 5 }], 1), /^NO_SEATS: vray_render: 4 of 4 seats free .*5 wanted/);
  // All or nothing: one bad item borrows nothing.
  t.regex(await code([{ feature: 'vray_render', count: 1 }, { feature: 'vray_distributed', count: 1 }], 1), /BORROW_NOT_ALLOWED/);
  const s = await c.status();
  t.is(s.features.find((f) => f.feature === 'vray_render')!.borrowed, 0);
});

test('a token moved to another machine or user, or altered, is refused with the reason', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const home = tempDir('licd-home-');
  const a = borrower(t, { home });
  await a.borrow(c, [{ feature: 'nuke_i', count: 1 }], 24);
  // Same files, another machine (its machine id gives another host id).
  const other = borrower(t, { home, hostId: HOST_B });
  const r = other.usable('nuke_i', d.vendorPublicKey);
  t.false(Boolean(r.ok));
  t.regex('reason' in r ? r.reason : '', /borrowed for another machine/);
  const otherUser = borrower(t, { home, user: 'mallory' });
  t.regex(((x) => ('reason' in x ? x.reason : ''))(otherUser.usable('nuke_i', d.vendorPublicKey)), /borrowed by user alice, not mallory/);
});

test('renew before expiry moves the expiry; re-borrow after return; a repeated request takes no second seat', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  const b = borrower(t);
  const first = await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 24);
  const id = first.borrows[0]!.id;
  const renewed = await b.renew(c, [id], 100);
  t.is(renewed.borrows[0]!.id, id);
  t.true(Date.parse(renewed.borrows[0]!.until) > Date.parse(first.borrows[0]!.until) + 70 * 3600_000);
  let s = await c.status();
  t.is(s.features.find((f) => f.feature === 'vray_render')!.borrowed, 1);
  // The same signed request sent twice (a lost answer) gives the same borrow back.
  const req = b.request([{ feature: 'vray_interface', count: 1 }], 5);
  const x = await c.request<{ borrows: Array<{ id: string }> }>('borrow', { request: req });
  const y = await c.request<{ borrows: Array<{ id: string }> }>('borrow', { request: req });
  t.is(x.borrows[0]!.id, y.borrows[0]!.id);
  s = await c.status();
  t.is(s.features.find((f) => f.feature === 'vray_interface')!.borrowed, 1);
});

test('early return works from another session of the same machine, not from another machine', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const home = tempDir('licd-home-');
  const b = borrower(t, { home });
  const c1 = await d.client();
  const r = await b.borrow(c1, [{ feature: 'nuke_i', count: 1 }], 24);
  await c1.close();
  const thief = borrower(t, { hostId: HOST_B });
  const c2 = await d.client();
  const bad = await c2.request<{ returned: string[]; unknown: string[] }>('borrow.return', { return: thief.returnNote([r.borrows[0]!.id]) });
  t.deepEqual(bad.returned, []);
  const again = borrower(t, { home });
  const ok = await again.giveBack(c2, [r.borrows[0]!.id]);
  t.deepEqual(ok.returned, [r.borrows[0]!.id]);
});
