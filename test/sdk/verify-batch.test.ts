/**
 * Grants signed in batches, through a real daemon (emulated dongle in-process, LevelDB, the
 * embedded broker): concurrent checkouts of several clients share a group commit, so their grants
 * share one signature and carry a proof. Every grant verifies with verifyGrant, and with a verifier
 * written here from docs/tokens.md alone (node:crypto SHA-256 and Ed25519); an altered body, path
 * or index is TOKEN_INVALID. A checkout alone gets the plain envelope.
 */
import { createHash, createPublicKey, verify as edVerify } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { EmulatedDongle } from '../../firmware-bridge/index.ts';
import { fromBase64url, toBase64url, toHex } from '../../src/core/bytes.ts';
import { LicdError } from '../../src/core/errors.ts';
import type { GrantEnvelope } from '../../src/core/grant-batch.ts';
import { naclEd25519, nodeEd25519, systemRandom } from '../../src/crypto/ed25519.ts';
import { fetchChain, verifyGrant, type GrantBundle, type PublishedChain } from '../../src/sdk/verify.ts';
import { devVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { check } from '../docs/asyncapi-doc.ts';
import { startTestDaemon, tempDir, until, type TestDaemon } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const CLIENTS = 4;
const EACH = 25;
const SEATS = 400;

interface Rig {
  daemon: TestDaemon;
  grants: GrantEnvelope[];
  chain: PublishedChain;
  vendorPublicKey: Uint8Array;
}

/** A daemon licensed for enough seats that a burst of checkouts is all granted; one burst for the file. */
let rigPromise: Promise<Rig> | null = null;
function rig(): Promise<Rig> {
  rigPromise ??= (async () => {
    const dataDir = tempDir('licd-batch-');
    mkdirSync(join(dataDir, 'dev'), { recursive: true });
    const dongle = await EmulatedDongle.open({ statePath: join(dataDir, 'dev', 'dongle.json'), serial: 'EMU-BATCH001' });
    const donglePublicKey = toHex(dongle.publicKey);
    await dongle.close();
    // The development vendor key made first, so the license the daemon finds can have many seats.
    const key = devVendorKey(join(dataDir, 'dev', 'vendor.key'), ed, systemRandom);
    const now = Date.now();
    const license = issueEntitlement(
      {
        id: 'ENT-BATCH-1',
        issuedAt: new Date(now - 60_000).toISOString(),
        customer: 'Batch Studio',
        development: true,
        dongle: { serial: 'EMU-BATCH001', publicKey: donglePublicKey, emulated: true },
        features: [
          { name: 'farm_render', version: '1.0', seats: SEATS, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } },
          { name: 'solo_tool', version: '1.0', seats: 2, expires: null, type: 'interface', borrow: { allowed: false, maxHours: 0 } },
          { name: 'queued_tool', version: '1.0', seats: 2, expires: null, type: 'interface', borrow: { allowed: false, maxHours: 0 } },
        ],
      },
      key,
      ed,
    );
    writeFileSync(join(dataDir, 'dev', 'entitlement.json'), JSON.stringify(license));
    const daemon = await startTestDaemon({ dataDir });
    if (daemon.entitlement.id !== 'ENT-BATCH-1') throw new Error(`the daemon runs under ${daemon.entitlement.id}, not the test's license`);
    const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, c) => daemon.client({ user: `user${c}`, host: `node-${c}` })));
    // Every client asks at once: the checkouts that arrive while one fsync runs are written in the
    // next group commit together, and their grants are asked for in the same turn.
    const leases = await Promise.all(clients.flatMap((c) => Array.from({ length: EACH }, (_, i) => c.checkout('farm_render', { pid: 1000 + i }))));
    const grants = leases.map((l) => {
      if (!l.grant) throw new Error('a checkout answer carries no grant');
      return l.grant;
    });
    const chain = await fetchChain(clients[0]!);
    return { daemon, grants, chain, vendorPublicKey: daemon.vendorPublicKey };
  })();
  return rigPromise;
}

test.after.always(async () => {
  if (!rigPromise) return;
  const r = await rigPromise.catch(() => null);
  if (r) {
    await r.daemon.halt();
    rmSync(r.daemon.dataDir, { recursive: true, force: true });
  }
});

// ---- an independent verifier of link 3, from the bytes docs/tokens.md gives -----------------------
const sha = (...parts: Buffer[]): Buffer => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();
const LARGEST_POW2_BELOW = (n: number): number => 2 ** Math.floor(Math.log2(n - 1));

/** The root a proof leads to, top-down along the tree's definition (RFC 9162 2.1.1): the last path entry is the root's other child. */
function rootOf(index: number, size: number, leaf: Buffer, path: Buffer[]): Buffer | null {
  if (size === 1) return path.length === 0 ? leaf : null;
  if (path.length === 0) return null;
  const k = LARGEST_POW2_BELOW(size);
  const sibling = path[path.length - 1]!;
  const rest = path.slice(0, -1);
  if (index < k) {
    const left = rootOf(index, k, leaf, rest);
    return left && sha(Buffer.of(1), left, sibling);
  }
  const right = rootOf(index - k, size - k, leaf, rest);
  return right && sha(Buffer.of(1), sibling, right);
}

function independentlyVerified(grant: GrantEnvelope, sessionKeyHex: string): boolean {
  const key = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(sessionKeyHex, 'hex')]), format: 'der', type: 'spki' });
  const signed = Buffer.concat([Buffer.from('licd-grant/1', 'ascii'), Buffer.of(0), Buffer.from(grant.body, 'base64url')]);
  const sig = Buffer.from(grant.sig, 'base64url');
  if (grant.batch === undefined) return edVerify(null, signed, key, sig);
  const { index, size, path } = grant.batch;
  const root = rootOf(index, size, sha(Buffer.of(0), signed), path.map((p) => Buffer.from(p, 'base64url')));
  if (root === null || index >= size) return false;
  const n = Buffer.alloc(4);
  n.writeUInt32BE(size);
  return edVerify(null, Buffer.concat([Buffer.from('licd-grant-batch/1', 'ascii'), Buffer.of(0), n, root]), key, sig);
}

const sessionKeyOf = (chain: PublishedChain): string => (JSON.parse(Buffer.from(chain.delegation.body, 'base64url').toString('utf8')) as { sessionKey: string }).sessionKey;
const bundleOf = (r: Rig, grant: unknown): GrantBundle => ({ grant, ...r.chain });

function refused(t: ExecutionContext, r: Rig, grant: unknown, what: string): LicdError {
  const e = t.throws(() => verifyGrant(bundleOf(r, grant), { vendorPublicKey: r.vendorPublicKey, ed }), { instanceOf: LicdError }, what);
  t.is(e?.code, 'TOKEN_INVALID', what);
  t.is(e?.details?.link, 'grant', `${what}: ${e?.message}`);
  t.truthy(e?.details?.reason, what);
  return e!;
}

test('concurrent checkouts of several clients get grants that share signatures, each with its proof', async (t) => {
  const { grants } = await rig();
  t.is(grants.length, CLIENTS * EACH);
  const bySig = new Map<string, GrantEnvelope[]>();
  for (const g of grants) bySig.set(g.sig, [...(bySig.get(g.sig) ?? []), g]);
  const shared = [...bySig.values()].filter((gs) => gs.length >= 2);
  t.true(shared.length >= 1, `some grants share a signature (${bySig.size} signatures for ${grants.length} grants)`);
  t.log(`${grants.length} grants, ${bySig.size} signatures; batch sizes ${[...bySig.values()].map((gs) => gs.length).join(' ')}`);
  for (const gs of bySig.values()) {
    if (gs.length === 1 && gs[0]!.batch === undefined) continue;
    // Every grant of a batch says the batch's size and its own place in it.
    const size = gs[0]!.batch!.size;
    t.true(gs.every((g) => g.batch?.size === size && g.format === 'licd-grant/1'));
    t.deepEqual(new Set(gs.map((g) => g.batch!.index)).size, gs.length, 'distinct indexes');
    t.true(gs.length <= size);
  }
  t.true(grants.filter((g) => g.batch).every((g) => g.batch!.path.every((p) => fromBase64url(p).length === 32)));
  // The shape docs/asyncapi.yaml gives a checkout answer's grant (a closed schema: nothing unlisted).
  const schema = { $ref: '#/components/schemas/GrantEnvelope' };
  for (const g of grants) t.deepEqual(check(schema, JSON.parse(JSON.stringify(g))), []);
  t.notDeepEqual(check(schema, { ...shared[0]![0]!, batch: { ...shared[0]![0]!.batch!, root: 'x' } }), []);
});

test('every grant verifies with verifyGrant, and with a verifier written from the documented bytes', async (t) => {
  const r = await rig();
  const nacl = naclEd25519();
  const sessionKey = sessionKeyOf(r.chain);
  const leases = new Set<string>();
  for (const [i, g] of r.grants.entries()) {
    const v = verifyGrant(bundleOf(r, JSON.parse(JSON.stringify(g))), { vendorPublicKey: r.vendorPublicKey, ed, now: Date.now() });
    t.is(v.grant.feature, 'farm_render');
    t.is(v.grant.entitlement, 'ENT-BATCH-1');
    leases.add(v.grant.lease);
    t.true(independentlyVerified(g, sessionKey), `grant ${i} verifies independently`);
    // tweetnacl for a few (it is slow, and shares the event loop with the daemon).
    if (i % 20 === 0) t.is(verifyGrant(bundleOf(r, g), { vendorPublicKey: r.vendorPublicKey, ed: nacl }).grant.lease, v.grant.lease);
  }
  t.is(leases.size, r.grants.length, 'one lease per grant');
  // The independent verifier refuses what it should (so its yes means something).
  const g = r.grants.find((x) => x.batch)!;
  t.false(independentlyVerified({ ...g, batch: { ...g.batch!, index: (g.batch!.index + 1) % g.batch!.size } }, sessionKey));
  t.false(independentlyVerified({ ...g, batch: undefined }, sessionKey));
});

test('an altered body, path or index of a batched grant is TOKEN_INVALID', async (t) => {
  const r = await rig();
  const g = r.grants.find((x) => x.batch && x.batch.path.length >= 1)!;
  const b = g.batch!;
  const body = JSON.parse(Buffer.from(g.body, 'base64url').toString('utf8')) as Record<string, unknown>;
  const altered = (over: Record<string, unknown>) => ({ ...g, body: toBase64url(Buffer.from(JSON.stringify({ ...body, ...over }))) });
  t.regex(refused(t, r, altered({ count: 2 }), 'count').message, /chain link 3 .*batch signature does not verify with the license server session key/);
  refused(t, r, altered({ until: '2099-01-01T00:00:00.000Z' }), 'until');
  refused(t, r, altered({ user: 'mallory' }), 'user');
  const other = r.grants.find((x) => x.sig === g.sig && x !== g);
  if (other) refused(t, r, { ...g, body: other.body }, 'a neighbour in the batch: its body with this proof');
  for (let k = 0; k < b.path.length; k++) {
    const h = fromBase64url(b.path[k]!);
    h[31]! ^= 1;
    refused(t, r, { ...g, batch: { ...b, path: b.path.map((p, i) => (i === k ? toBase64url(h) : p)) } }, `path entry ${k}`);
  }
  refused(t, r, { ...g, batch: { ...b, path: [...b.path].reverse() } }, 'path reversed');
  for (let i = 0; i < b.size; i++) if (i !== b.index) refused(t, r, { ...g, batch: { ...b, index: i } }, `index ${b.index} -> ${i}`);
  refused(t, r, { ...g, batch: { ...b, index: b.size } }, 'index = size');
  refused(t, r, { ...g, batch: { ...b, size: b.size + 1 } }, 'size + 1');
  refused(t, r, { ...g, batch: { ...b, path: b.path.slice(1) } }, 'path one short');
  const malformed = refused(t, r, { ...g, batch: { ...b, index: '0' } }, 'index a string');
  t.is(malformed.details?.reason, 'malformed');
  refused(t, r, { ...g, batch: undefined }, 'the proof dropped');
  // Untouched, it still verifies (each refusal above is about the change).
  t.notThrows(() => verifyGrant(bundleOf(r, g), { vendorPublicKey: r.vendorPublicKey, ed }));
});

// Serial (ava runs these before the others, one at a time): nothing else asks for a grant meanwhile.
test.serial('a checkout alone gets the plain envelope, which verifies from the bytes alone', async (t) => {
  const r = await rig();
  const c = await r.daemon.client({ user: 'solo', host: 'ws-1' });
  const lease = await c.checkout('solo_tool');
  const g = lease.grant!;
  t.deepEqual(Object.keys(g).sort(), ['body', 'format', 'sig']);
  t.true(independentlyVerified(g, sessionKeyOf(r.chain)));
  t.is(verifyGrant(bundleOf(r, g), { vendorPublicKey: r.vendorPublicKey, ed, now: Date.now() }).grant.feature, 'solo_tool');
});

test.serial('grants to checkouts that waited for a seat (queue.granted) verify too', async (t) => {
  const r = await rig();
  const holders = await Promise.all([1, 2].map((i) => r.daemon.client({ user: `holder${i}`, host: `ws-${i}` })));
  const held = await Promise.all(holders.map((h) => h.checkout('queued_tool')));
  const waiters = await Promise.all([3, 4].map((i) => r.daemon.client({ user: `waiter${i}`, host: `ws-${i}` })));
  const queued: Promise<unknown>[] = [];
  const waiting = waiters.map((w) => w.checkout('queued_tool', { wait: true, maxWait: 60, onQueue: () => queued.push(Promise.resolve()) }));
  await until(() => queued.length >= 2, 'both waiters to be queued');
  // Both seats come free at once: the two waiters are granted in the same turn.
  await Promise.all(holders.map((h, i) => h.checkin({ leases: [held[i]!.id] })));
  const leases = await Promise.all(waiting);
  for (const [i, lease] of leases.entries()) {
    t.truthy(lease.grant);
    t.true(independentlyVerified(lease.grant!, sessionKeyOf(r.chain)));
    t.is(verifyGrant(bundleOf(r, lease.grant), { vendorPublicKey: r.vendorPublicKey, ed, now: Date.now() }).grant.user, `waiter${i + 3}`);
  }
});
