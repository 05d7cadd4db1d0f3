/**
 * The service and the batching grant signer (src/core/grant-batch.ts, wired as in the daemon):
 * checkouts written in one group commit are answered with grants of one signature; a grant is
 * made after its lease is written, with the time it is made; a signer that fails is an error
 * answer (checkout) or an error notice (a waiter's grant), never a silent loss.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { fromBase64url, fromUtf8 } from '../../src/core/bytes.ts';
import type { FeatureLicense } from '../../src/core/entitlement.ts';
import { GrantBatcher, sealGrants, verifyGrantEnvelope, type GrantEnvelope } from '../../src/core/grant-batch.ts';
import type { Lease } from '../../src/core/model.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import type { CheckoutResult, Notice } from '../../src/core/protocol.ts';
import { SeatTable } from '../../src/core/seats.ts';
import { LicenseService, defaultLeasePolicy, silentLog } from '../../src/core/service.ts';
import { sha256HolderHash } from '../../src/crypto/holder.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { ManualClock } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const sha256 = (d: Uint8Array): Uint8Array => createHash('sha256').update(d).digest();
const SEED = new Uint8Array(32).fill(0x21);
const HOLDER = 'holder-secret-of-the-test-client';
const features: FeatureLicense[] = [{ name: 'f', product: 'F', version: '1', seats: 8, expires: null, type: 'render', borrow: { allowed: true, maxHours: 10 } }];

/** A store whose commits resolve together when the test says (one group commit). */
class HeldStore extends MemoryStore {
  held: Array<() => void> | null = null;
  override async commit(mutations: Parameters<MemoryStore['commit']>[0]): Promise<void> {
    if (this.held) await new Promise<void>((r) => this.held!.push(r));
    return super.commit(mutations);
  }
  release(): void {
    const h = this.held ?? [];
    this.held = null;
    for (const r of h) r();
  }
}

function setup(o: { fail?: () => boolean; seats?: number } = {}) {
  const clock = new ManualClock();
  const store = new HeldStore();
  let n = 0;
  const table = new SeatTable([{ ...features[0]!, seats: o.seats ?? 8 }], () => `L${++n}`);
  const notices: Notice[] = [];
  const batches: number[] = [];
  const signer = new GrantBatcher({
    seal: (bodies) => {
      if (o.fail?.()) throw new Error('the session key is gone');
      return sealGrants(bodies, SEED, ed, sha256);
    },
    defer: (run) => setImmediate(run),
    onBatch: (size) => batches.push(size),
  });
  const asked: Array<{ lease: string; storedWhenAsked: boolean }> = [];
  const svc = new LicenseService({
    clock,
    store,
    table,
    entitlement: null,
    policy: defaultLeasePolicy,
    log: silentLog,
    version: 'test',
    holderHash: sha256HolderHash,
    notify: (_client, notice) => notices.push(notice),
    signGrant: (lease: Lease) => {
      asked.push({ lease: lease.id, storedWhenAsked: store.leases.has(lease.id) });
      return signer.sign({ lease: lease.id, user: lease.user, issuedAt: new Date(clock.now()).toISOString() });
    },
  });
  let id = 0;
  const checkout = (user: string, extra: Record<string, unknown> = {}) =>
    svc.handle(user, false, new TextEncoder().encode(JSON.stringify({ id: String(++id), op: 'checkout', holder: HOLDER, feature: 'f', user, host: `ws-${user}`, pid: 1, ...extra })));
  return { clock, store, svc, notices, batches, asked, checkout };
}

const verify = (g: unknown) => verifyGrantEnvelope(g, ed.publicKey(SEED), ed, sha256, 'TOKEN_INVALID', 'session') as { lease: string; issuedAt: string };
const bodyOf = (g: GrantEnvelope) => JSON.parse(fromUtf8(fromBase64url(g.body))) as { lease: string; issuedAt: string };

test('checkouts of one group commit are answered with grants of one signature, each made after its lease is written', async (t) => {
  const s = setup();
  s.store.held = [];
  const answers = Promise.all(['a', 'b', 'c', 'd'].map((u) => s.checkout(u)));
  await new Promise((r) => setImmediate(r));
  s.clock.advance(5000);
  s.store.release();
  const grants = (await answers).map((a) => {
    if (!a.ok) throw new Error(a.error.message);
    return (a.result as CheckoutResult).grant!;
  });
  t.deepEqual(s.batches, [4]);
  t.is(new Set(grants.map((g) => g.sig)).size, 1);
  t.deepEqual(grants.map((g) => g.batch?.index), [0, 1, 2, 3]);
  for (const g of grants) {
    t.is(verify(g).lease, bodyOf(g).lease);
    t.is(bodyOf(g).issuedAt, new Date(s.clock.now()).toISOString(), 'issued when the grant is made, after the write');
  }
  t.true(s.asked.every((x) => x.storedWhenAsked), 'no grant is asked for before its lease is in the store');
  // Alone, a checkout gets the plain envelope.
  const lone = await s.checkout('e');
  t.true(lone.ok);
  t.false('batch' in (lone.ok ? (lone.result as CheckoutResult).grant! : {}));
  t.deepEqual(s.batches, [4, 1]);
});

test('a signer that fails answers the checkout with the error (INTERNAL), as a signer that threw at once did', async (t) => {
  let fail = true;
  const s = setup({ fail: () => fail });
  const answers = await Promise.all(['a', 'b'].map((u) => s.checkout(u)));
  for (const a of answers) {
    t.false(a.ok);
    if (!a.ok) {
      t.is(a.error.code, 'INTERNAL');
      t.regex(a.error.message, /the session key is gone/);
    }
  }
  fail = false;
  // The lease was written before the grant was asked for; asking again finds it (extended) and signs.
  const again = await s.checkout('a');
  t.true(again.ok);
  t.like(again.ok ? again.result : {}, { status: 'extended' });
  t.truthy(again.ok && (again.result as CheckoutResult).grant);
});

test("a waiter whose grant cannot be signed is told so (queue.failed), not left waiting in silence", async (t) => {
  let fail = false;
  const s = setup({ fail: () => fail, seats: 1 });
  const held = await s.checkout('h');
  t.true(held.ok);
  const queued = await s.checkout('w', { wait: true });
  t.like(queued.ok ? queued.result : {}, { status: 'queued' });
  fail = true;
  await s.svc.handle('h', false, new TextEncoder().encode(JSON.stringify({ id: 'x', op: 'checkin', holder: HOLDER, feature: 'f' })));
  for (let i = 0; i < 10 && !s.notices.some((n) => n.op === 'queue.failed' || n.op === 'queue.granted'); i++) await new Promise((r) => setImmediate(r));
  const failed = s.notices.find((n) => n.op === 'queue.failed');
  t.truthy(failed, `notices: ${s.notices.map((n) => n.op).join(', ')}`);
  t.false(s.notices.some((n) => n.op === 'queue.granted'));
  t.like(failed, { ok: false, error: { code: 'INTERNAL' } });
  t.regex((failed as { error: { message: string } }).error.message, /signing the grant failed: the session key is gone/);
});
