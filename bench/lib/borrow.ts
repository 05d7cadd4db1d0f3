/**
 * Borrowing: tokens issued per second in a burst, and offline verification time per token.
 *
 * Each node sends what the SDK sends (src/sdk/borrow.ts): op `borrow` with a borrow request
 * signed by the node's own key. The requests are made and signed before the burst starts, so the
 * burst measures the server. A token is verified with verifyBorrowToken (src/core/tokens.ts),
 * the check a client runs offline: the chain to the vendor key (vendor -> entitlement, dongle ->
 * delegation), the session key's signature on the token, policy, binding and time.
 */
import { randomBytes } from 'node:crypto';
import { fromHex, toHex } from '../../src/core/bytes.ts';
import { peekToken, sealBorrowRequest, verifyBorrowToken, type TokenBundle } from '../../src/core/tokens.ts';
import type { Ed25519 } from '../../src/core/ports.ts';
import type { SignedEnvelope } from '../../src/core/signed.ts';
import { naclEd25519, nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { nowMs } from './proc.ts';
import { WireClient } from './wire.ts';

export const BORROW_HOURS = 24;

const ed = nodeEd25519();

/** The parameters of one `borrow` request from a node of its own: a fresh key and host id. */
export function borrowRequestParams(feature: string, hours: number, node: string): { request: SignedEnvelope } {
  const seed = new Uint8Array(randomBytes(32));
  const request = sealBorrowRequest(
    {
      requestId: randomBytes(12).toString('base64url'),
      items: [{ feature, count: 1 }],
      hours,
      user: 'render',
      hostId: randomBytes(16).toString('hex'),
      hostName: node,
      clientKey: toHex(ed.publicKey(seed)),
      autoRenew: false,
      createdAt: new Date().toISOString(),
    },
    seed,
    ed,
  );
  return { request };
}

/** The first token bundle of a borrow answer. */
export function bundleOf(result: unknown): TokenBundle | null {
  const r = result as { tokens?: TokenBundle[] } | null;
  return r?.tokens?.[0] ?? null;
}

/** Asks the daemon for one borrow: it must answer with a token, or the burst would measure refusals. */
export async function probeBorrow(url: string, feature: string): Promise<TokenBundle> {
  const w = new WireClient({ url, clientId: `bench-borrow-probe-${process.pid}` });
  await w.connect(5000);
  const timer = setInterval(() => w.expire(nowMs(), 5000), 100);
  try {
    const o = await w.request('borrow', borrowRequestParams(feature, BORROW_HOURS, 'bench-probe'));
    const bundle = o.ok ? bundleOf(o.answer?.result) : null;
    if (!bundle) throw new Error(`borrow: ${o.ok ? 'no token in the answer' : `${o.code}: ${o.answer?.error?.message ?? ''}`}`);
    return bundle;
  } finally {
    clearInterval(timer);
    w.expire(Number.POSITIVE_INFINITY, 0);
    await w.end();
  }
}

export interface VerifyFigures {
  /** Per token with a fresh verifier (no cached keys), as a client verifying one token at start. */
  coldMs: number;
  /** Per token with one verifier reused (key objects cached). */
  warmMs: number;
  /** The same with tweetnacl, the pure-JS implementation. */
  naclMs: number;
}

export function measureVerify(bundle: TokenBundle, vendorPublicKeyHex: string, rounds: number): VerifyFigures {
  const vendorPublicKey = fromHex(vendorPublicKeyHex);
  const claims = peekToken(bundle);
  const verify = (with_: Ed25519) =>
    verifyBorrowToken(bundle, { vendorPublicKey, ed: with_, now: Date.now(), hostId: claims.hostId, user: claims.user, clientKey: claims.clientKey });
  // Once for the answer: a figure for a failing verification would mean nothing.
  verify(nodeEd25519());
  let t0 = performance.now();
  for (let i = 0; i < rounds; i++) verify(nodeEd25519());
  const coldMs = (performance.now() - t0) / rounds;
  const warm = nodeEd25519();
  t0 = performance.now();
  for (let i = 0; i < rounds; i++) verify(warm);
  const warmMs = (performance.now() - t0) / rounds;
  const nacl = naclEd25519();
  const naclRounds = Math.max(3, Math.floor(rounds / 30));
  t0 = performance.now();
  for (let i = 0; i < naclRounds; i++) verify(nacl);
  const naclMs = (performance.now() - t0) / naclRounds;
  return { coldMs, warmMs, naclMs };
}
