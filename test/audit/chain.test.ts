/**
 * The audit chain, pure: records chain by hash, seals sign the head with a session key the dongle
 * delegated; verify catches an edit, a deletion, a swap, a forged seal and a seal by a key the
 * delegation does not certify, each with its sequence number and reason. A failed batch leaves no
 * hole verify would call a deletion.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { AuditChain, certRef, readChainHead, recordHash, verifyAudit, type AuditRecord, type Sealer } from '../../src/core/audit.ts';
import { toBase64url, toHex, utf8 } from '../../src/core/bytes.ts';
import type { SeatEvent } from '../../src/core/events.ts';
import type { Lease } from '../../src/core/model.ts';
import { MemoryStore } from '../../src/core/ports.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../../src/core/trust.ts';
import { nodeEd25519, systemRandom } from '../../src/crypto/ed25519.ts';
import { demoEntitlementBody, generateVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { ManualClock } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash('sha256').update(b).digest());

/** A vendor, a dongle, an entitlement naming it, and a session key the dongle delegated. */
function trust(now: number) {
  const vendor = generateVendorKey(ed, systemRandom, true);
  const dongleSeed = systemRandom.bytes(32);
  const dongle = { serial: 'EMU-AUDIT1', publicKey: ed.publicKey(dongleSeed), counter: 0n, emulated: true, firmwareVersion: 'test' };
  const entitlement = issueEntitlement(demoEntitlementBody(dongle, now), vendor, ed);
  const delegate = (sessionSeed: Uint8Array) => {
    const body = utf8(JSON.stringify(delegationBody({ sessionKey: ed.publicKey(sessionSeed), dongleSerial: dongle.serial, emulated: true, notBefore: now - 300_000, notAfter: now + 30 * 86400_000 })));
    return delegationEnvelope(body, ed.sign(dongleSeed, dongleSignedBytes(DELEGATION_DOMAIN, body, true)), toBase64url);
  };
  const sealer = (sessionSeed = systemRandom.bytes(32), delegation = delegate(sessionSeed)): Sealer => ({
    sessionKey: toHex(ed.publicKey(sessionSeed)),
    sign: (m) => ed.sign(sessionSeed, m),
    delegation,
    entitlement,
  });
  return { vendorPublicKey: Buffer.from(vendor.publicKey, 'hex'), sealer, delegate };
}

function lease(n: number): Lease {
  return { id: `L${n}`, feature: 'render', count: 1, clientId: `c${n}`, pid: n, user: `u${n}`, host: `h${n}`, since: 0, expiresAt: 60_000, ttlMs: 60_000, disconnectedAt: null };
}

/** A chain written to a MemoryStore, with what a daemon would write: grants, a denial, an admin revoke, seals. */
async function written(opts: { failBatch?: number } = {}) {
  const clock = new ManualClock();
  const t = trust(clock.now());
  const store = new MemoryStore();
  const chain = new AuditChain({ sha256, clock });
  chain.resume(null);
  const sealer = t.sealer();
  let batch = 0;
  const commitEvents = async (events: SeatEvent[]) => {
    const m = chain.prepare(events);
    batch++;
    if (opts.failBatch === batch) store.failNext = 1;
    try {
      await store.commit(m);
      chain.settle(events, true);
    } catch {
      chain.settle(events, false);
    }
  };
  const flush = async (interval = false) => {
    const f = chain.takeFlush(sealer, clock.now(), { seal: interval });
    if (!f) return;
    batch++;
    if (opts.failBatch === batch) store.failNext = 1;
    try {
      await store.commit(f.mutations);
      chain.settleFlush(f.token, true);
    } catch {
      chain.settleFlush(f.token, false);
    }
  };
  chain.started({ version: 'test', sessionKey: sealer.sessionKey }, clock.now());
  await flush();
  for (let i = 1; i <= 3; i++) {
    clock.advance(1000);
    await commitEvents([{ type: 'lease.granted', at: clock.now(), lease: lease(i) }]);
  }
  chain.note({ type: 'checkout.denied', at: clock.now(), feature: 'render', user: 'u9', host: 'h9', client: 'c9', count: 1, code: 'NO_SEATS', message: 'no seats' });
  clock.advance(1000);
  await commitEvents([{ type: 'lease.ended', at: clock.now(), lease: lease(1), reason: 'revoked', by: 'admin-1' }]);
  chain.note({ type: 'admin', at: clock.now(), op: 'lease.revoke', client: 'admin-1', ok: true, subject: 'L1' });
  await flush();
  await commitEvents([{ type: 'lease.ended', at: clock.now(), lease: lease(2), reason: 'checkin' }]);
  await flush();
  // The interval's seal (something was appended since the last one).
  await flush(true);
  await flush(true);
  return { store, chain, t, clock, sealer };
}

async function exported(store: MemoryStore): Promise<{ records: AuditRecord[]; certs: Map<string, unknown> }> {
  const records: AuditRecord[] = [];
  const certs = new Map<string, unknown>();
  for await (const [k, v] of store.scan('audit')) {
    if (k.startsWith('k!')) certs.set(k.slice(2), v);
    else records.push(v as AuditRecord);
  }
  return { records, certs };
}

const verify = (records: unknown[], certs: Map<string, unknown>, key: Uint8Array) => verifyAudit(records, certs, { vendorPublicKey: key, ed, sha256 });

test('a chain of grants, a denial, an admin revoke and seals verifies; the tail after the last seal is "not yet sealed"', async (t) => {
  const { store, t: tr } = await written();
  const { records, certs } = await exported(store);
  t.deepEqual(
    records.map((r) => r.kind),
    ['start', 'seal', 'lease.granted', 'lease.granted', 'lease.granted', 'checkout.denied', 'lease.ended', 'admin', 'seal', 'lease.ended', 'seal'],
  );
  t.deepEqual(records.map((r) => r.seq), records.map((_, i) => i + 1));
  const v = verify(records, certs, tr.vendorPublicKey);
  t.true(v.ok, JSON.stringify(v.problem));
  t.is(v.seals, 3);
  t.is(v.sealedThrough, 11);
  t.is(v.unsealed, null);
  t.is(v.keys.length, 1);
  t.is(v.keys[0]!.dongle, 'EMU-AUDIT1');
  // Cut after record 10: the last grant's end is not yet sealed, and not called valid.
  const cut = verify(records.slice(0, 10), certs, tr.vendorPublicKey);
  t.true(cut.ok);
  t.deepEqual(cut.unsealed, { from: 10, to: 10 });
  t.is(cut.sealedThrough, 9);
  // The denial and the revoke's admin record say who and what.
  t.like(records[5], { kind: 'checkout.denied', user: 'u9', code: 'NO_SEATS' });
  t.like(records[7], { kind: 'admin', op: 'lease.revoke', client: 'admin-1', subject: 'L1', ok: true });
});

test('editing a field, deleting a record, swapping two: each caught with its seq and reason', async (t) => {
  const { store, t: tr } = await written();
  const { records, certs } = await exported(store);
  const k = tr.vendorPublicKey;

  const edited = structuredClone(records);
  edited[3]!.user = 'mallory';
  t.like(verify(edited, certs, k).problem, { seq: 4, reason: 'edited' });

  // Edited and its hash recomputed: the next record's link says so.
  const rehashed = structuredClone(records);
  rehashed[3]!.user = 'mallory';
  rehashed[3]!.hash = recordHash(rehashed[3]!, sha256);
  t.like(verify(rehashed, certs, k).problem, { seq: 4, reason: 'edited' });

  const deleted = records.filter((r) => r.seq !== 6);
  t.like(verify(deleted, certs, k).problem, { seq: 6, reason: 'deleted' });

  const swapped = structuredClone(records);
  [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
  t.like(verify(swapped, certs, k).problem, { seq: 4, reason: 'reordered' });

  // Rewritten from record 4 on with every hash recomputed (numbers and links consistent): the seal catches it.
  const forged = structuredClone(records);
  forged[3]!.user = 'mallory';
  for (let i = 3; i < forged.length; i++) {
    forged[i]!.prev = forged[i - 1]!.hash;
    forged[i]!.hash = recordHash(forged[i]!, sha256);
  }
  t.like(verify(forged, certs, k).problem, { seq: 9, reason: 'bad-seal' });
  t.regex(verify(forged, certs, k).problem!.message, /signature does not verify/);
});

test('a forged seal, and a seal by a key the delegation does not certify, are bad seals', async (t) => {
  const { store, t: tr } = await written();
  const { records, certs } = await exported(store);

  // A seal signed by some other key, re-hashed so only its signature is wrong.
  const forged = structuredClone(records);
  const seal = forged[8]!;
  seal.sig = toHex(ed.sign(systemRandom.bytes(32), utf8('anything')));
  seal.hash = recordHash(seal, sha256);
  for (let i = 9; i < forged.length; i++) {
    forged[i]!.prev = forged[i - 1]!.hash;
    forged[i]!.hash = recordHash(forged[i]!, sha256);
  }
  t.like(verify(forged, certs, tr.vendorPublicKey).problem, { seq: 9, reason: 'bad-seal' });

  // A seal by a session key of its own, pointing at the real delegation of another key.
  const other = systemRandom.bytes(32);
  const mine = tr.sealer(other, tr.sealer().delegation);
  const rogue = structuredClone(records);
  const s = rogue[8]!;
  s.sessionKey = mine.sessionKey;
  s.delegation = certRef(mine.delegation, sha256);
  const { sealSignedBytes } = await import('../../src/core/audit.ts');
  s.sig = toHex(mine.sign(sealSignedBytes({ seq: s.seq, at: s.at, head: s.prev, sessionKey: s.sessionKey as string })));
  s.hash = recordHash(s, sha256);
  for (let i = 9; i < rogue.length; i++) {
    rogue[i]!.prev = rogue[i - 1]!.hash;
    rogue[i]!.hash = recordHash(rogue[i]!, sha256);
  }
  const withCert = new Map(certs);
  withCert.set(certRef(mine.delegation, sha256), mine.delegation);
  const p = verify(rogue, withCert, tr.vendorPublicKey).problem;
  t.like(p, { seq: 9, reason: 'bad-seal' });
  t.regex(p!.message, /delegation does not certify/);

  // With another vendor's key nothing is certified.
  const otherVendor = trust(Date.now()).vendorPublicKey;
  t.like(verify(records, certs, otherVendor).problem, { seq: 2, reason: 'bad-seal' });
});

test('a failed batch leaves no hole: the next batch voids its numbers, and the denials in it are recorded again', async (t) => {
  for (const failBatch of [2, 4, 5, 6]) {
    const { store, t: tr, chain } = await written({ failBatch });
    const { records, certs } = await exported(store);
    const v = verify(records, certs, tr.vendorPublicKey);
    t.true(v.ok, `batch ${failBatch}: ${JSON.stringify(v.problem)}`);
    t.is(v.voided.length, 1, `batch ${failBatch}`);
    t.true(records.some((r) => r.kind === 'void'));
    // The denial and the admin request happened whatever the write did: recorded once each.
    t.is(records.filter((r) => r.kind === 'checkout.denied').length, 1, `batch ${failBatch}`);
    t.is(records.filter((r) => r.kind === 'admin').length, 1, `batch ${failBatch}`);
    const head = await readChainHead(store);
    t.deepEqual(head.last, { seq: chain.headState.seq, hash: chain.headState.hash });
  }
});

test('the head is read back from the store: a restarted chain goes on where the disk ends', async (t) => {
  const { store, t: tr, clock, sealer } = await written();
  const head = await readChainHead(store);
  t.is(head.last!.seq, 11);
  t.is(head.lastSeal!.seq, 11);
  const again = new AuditChain({ sha256, clock });
  again.resume(head.last, head.lastSeal, head.sinceSeal);
  const events: SeatEvent[] = [{ type: 'lease.granted', at: clock.now(), lease: lease(7) }];
  await store.commit(again.prepare(events));
  again.settle(events, true);
  const f = again.takeFlush(sealer, clock.now(), { seal: true })!;
  await store.commit(f.mutations);
  again.settleFlush(f.token, true);
  const { records, certs } = await exported(store);
  const v = verify(records, certs, tr.vendorPublicKey);
  t.true(v.ok, JSON.stringify(v.problem));
  t.is(v.sealedThrough, 13);
});

test('no signature on the request path: grants chain without signing; a seal per admin action and per interval', async (t) => {
  const clock = new ManualClock();
  const tr = trust(clock.now());
  let signatures = 0;
  const base = tr.sealer();
  const sealer: Sealer = { ...base, sign: (m) => (signatures++, base.sign(m)) };
  const store = new MemoryStore();
  const chain = new AuditChain({ sha256, clock });
  chain.resume(null);
  for (let i = 1; i <= 200; i++) {
    const events: SeatEvent[] = [{ type: 'lease.granted', at: clock.now(), lease: lease(i) }];
    await store.commit(chain.prepare(events));
    chain.settle(events, true);
  }
  t.is(signatures, 0, 'prepare never signs');
  // The timer's flush with nothing urgent and no interval due: nothing to write, no signature.
  t.is(chain.takeFlush(sealer, clock.now()), null);
  // The interval: one seal over all 200.
  let f = chain.takeFlush(sealer, clock.now(), { seal: true })!;
  await store.commit(f.mutations);
  chain.settleFlush(f.token, true);
  t.is(signatures, 1);
  // An admin action: one more.
  chain.note({ type: 'admin', at: clock.now(), op: 'lease.revoke', client: 'a', ok: true });
  f = chain.takeFlush(sealer, clock.now())!;
  await store.commit(f.mutations);
  chain.settleFlush(f.token, true);
  t.is(signatures, 2);
  const { records, certs } = await exported(store);
  t.true(verify(records, certs, tr.vendorPublicKey).ok);
  t.is(verify(records, certs, tr.vendorPublicKey).sealedThrough, 203);
});

test('verify --from: a part of the log checks from its first record; without it the missing start is a deletion', async (t) => {
  const { store, t: tr } = await written();
  const { records, certs } = await exported(store);
  const part = records.slice(5);
  t.like(verify(part, certs, tr.vendorPublicKey).problem, { seq: 1, reason: 'deleted' });
  const v = verifyAudit(part, certs, { vendorPublicKey: tr.vendorPublicKey, ed, sha256, from: 6 });
  t.true(v.ok, JSON.stringify(v.problem));
  t.is(v.first, 6);
  t.is(v.sealedThrough, 11);
  // A damaged line in the middle is malformed, named by the number it should have had.
  const damaged = [...records.slice(0, 3), { line: 4, damaged: '{"seq":4,' }, ...records.slice(4)];
  t.like(verify(damaged, certs, tr.vendorPublicKey).problem, { seq: 4, reason: 'malformed' });
});

test('events beyond audit.maxPending are counted in a dropped record, not kept in memory', async (t) => {
  const clock = new ManualClock();
  const tr = trust(clock.now());
  const store = new MemoryStore();
  const chain = new AuditChain({ sha256, clock, maxPending: 100 });
  chain.resume(null);
  for (let i = 0; i < 150; i++) chain.note({ type: 'checkout.denied', at: clock.now(), feature: 'render', user: 'u', host: 'h', client: 'c', count: 1, code: 'NO_SEATS', message: '' });
  const f = chain.takeFlush(tr.sealer(), clock.now(), { seal: true })!;
  await store.commit(f.mutations);
  chain.settleFlush(f.token, true);
  const { records, certs } = await exported(store);
  t.is(records.filter((r) => r.kind === 'checkout.denied').length, 100);
  t.like(records.find((r) => r.kind === 'dropped'), { count: 50 });
  t.true(verify(records, certs, tr.vendorPublicKey).ok);
});

test('numbers missing after the last seal are voided at start; a gap before a seal stays a deletion', async (t) => {
  const { store, t: tr, clock, sealer } = await written();
  // Records after the last seal (11): 12 and 13, then 12 goes missing (a refused batch, a later one written, a crash).
  const tail = new AuditChain({ sha256, clock });
  const h0 = await readChainHead(store);
  tail.resume(h0.last, h0.lastSeal, h0.sinceSeal, h0.gaps);
  for (const n of [8, 9]) {
    const events: SeatEvent[] = [{ type: 'lease.granted', at: clock.now(), lease: lease(n) }];
    await store.commit(tail.prepare(events));
    tail.settle(events, true);
  }
  store.records.delete('audit!000000000012');
  const h = await readChainHead(store);
  t.deepEqual(h.gaps.map((g) => [g.from, g.to, g.why]), [[12, 12, 'missing at start']]);
  const again = new AuditChain({ sha256, clock });
  again.resume(h.last, h.lastSeal, h.sinceSeal, h.gaps);
  const f = again.takeFlush(sealer, clock.now(), { seal: true })!;
  await store.commit(f.mutations);
  again.settleFlush(f.token, true);
  const { records, certs } = await exported(store);
  const v = verify(records, certs, tr.vendorPublicKey);
  t.true(v.ok, JSON.stringify(v.problem));
  t.deepEqual(v.voided, [{ from: 12, to: 12 }]);

  // A record before the last seal deleted: not voided at start, and verify names it.
  store.records.delete('audit!000000000005');
  const h2 = await readChainHead(store);
  t.deepEqual(h2.gaps, []);
  const { records: r2 } = await exported(store);
  t.like(verify(r2, certs, tr.vendorPublicKey).problem, { seq: 5, reason: 'deleted' });
});
