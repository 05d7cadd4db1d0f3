/** The renew rule and the return record, with an injected clock (the in-process daemon). */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LicdError } from '../../src/core/errors.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { ManualClock, startTestDaemon, tempDir } from '../helpers/daemon.ts';

const H = 3600_000;

async function setup(t: { teardown(f: () => Promise<void> | void): void }) {
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const b = new BorrowClient({ home, hostId: 'cd'.repeat(16), user: 'erin', hostName: 'laptop', clock });
  return { d, c, clock, b };
}

test('a renewal keeps the later of the current and the asked end, and refreshes to the longest period', async (t) => {
  const { c, clock, b } = await setup(t);
  const r = await b.borrow(c, [{ feature: 'vray_render', count: 1 }], 10, {});
  const id = r.borrows[0]!.id;
  const long = await b.renew(c, [id], 48);
  const end = clock.now() + 48 * H;
  t.is(Date.parse(long.borrows[0]!.until), end);
  t.is(b.stored(id)!.hours, 48, 'the default renew period is the longer one');
  clock.advance(H);
  const short = await b.renew(c, [id], 10);
  t.is(Date.parse(short.borrows[0]!.until), end, 'renew --hours 10 does not cut the 48 h');
  clock.advance(2 * H);
  const refreshed = await b.renew(c, [id], 10, { refresh: true });
  t.is(Date.parse(refreshed.borrows[0]!.until), clock.now() + 48 * H, 'a refresh goes to the longest period asked');
  // A longer ask still extends.
  const longer = await b.renew(c, [id], 100);
  t.is(Date.parse(longer.borrows[0]!.until), clock.now() + 100 * H);
});

test('a token of a returned borrow is refused when saved or listed again', async (t) => {
  const { d, c, b } = await setup(t);
  const r = await b.borrow(c, [{ feature: 'nuke_i', count: 1 }], 24, {});
  const id = r.borrows[0]!.id;
  const stored = b.stored(id)!;
  const bundle = stored.bundle;
  t.deepEqual((await b.giveBack(c, [id])).returned, [id]);
  const e = t.throws(() => b.save(bundle, false, 24), { instanceOf: LicdError });
  t.is(e!.code, 'TOKEN_RETURNED');
  t.regex(e!.message, new RegExp(`borrow ${id} \\(1 nuke_i\\) was returned from this machine`));
  // The token file put back by hand (or by a backup tool): listed as returned, never used.
  writeFileSync(join(b.tokenDir, `${id}.json`), JSON.stringify(stored));
  const use = b.usable('nuke_i', d.vendorPublicKey);
  t.false(Boolean(use.ok));
  t.regex('reason' in use ? use.reason : '', /was returned from this machine/);
  t.is(b.list(d.vendorPublicKey)[0]!.problem?.code, 'TOKEN_RETURNED');
});
