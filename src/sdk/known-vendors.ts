/**
 * Vendor keys pinned by the user, per server (like ssh's known_hosts).
 *
 * A server offers the vendor public key its entitlement is signed with on the retained
 * licd/v1/server/chain. A client does not take that offer on its own say: the key is trusted for a
 * server only once the user pinned it, by its fingerprint (--trust-vendor-key, or yes at a prompt).
 * After that, borrowed tokens verify offline with the pinned key, and a server that offers another
 * key is refused (VENDOR_KEY_CHANGED) until the user removes the old pin on purpose.
 *
 * The pins live in LICD_HOME/known-vendors.json (default ~/.config/licd/known-vendors.json),
 * keyed by the server's broker URL.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LicdError } from '../core/errors.ts';
import { fromHex, toHex } from '../core/bytes.ts';
import { verifyEntitlement } from '../core/entitlement.ts';
import { parseEnvelope } from '../core/signed.ts';
import { Fields } from '../core/validate.ts';
import { nodeEd25519 } from '../crypto/ed25519.ts';
import { vendorFingerprint, writeFileAtomic } from '../vendor.ts';

export interface KnownVendor {
  publicKey: string;
  fingerprint: string;
  pinnedAt: string;
}

export function knownVendorsPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.LICD_HOME ? join(env.LICD_HOME, 'known-vendors.json') : join(homedir(), '.config', 'licd', 'known-vendors.json');
}

export { vendorFingerprint };

/** Accepts SHA256:HEX or HEX, 32 (short form) or 64 hex digits, colons and case ignored. */
export function fingerprintMatches(given: string, publicKey: Uint8Array): boolean {
  const g = given.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$|^[0-9a-f]{64}$/.test(g)) {
    throw new LicdError('CONFIG_INVALID', `--trust-vendor-key ${JSON.stringify(given)} is not a fingerprint: give SHA256: and 32 hex digits, as licctl prints it`, { usage: true });
  }
  const full = createHash('sha256').update(publicKey).digest('hex');
  return full.startsWith(g);
}

function readAll(path: string): Record<string, KnownVendor> {
  if (!existsSync(path)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `the pinned vendor keys file ${path} is not readable JSON (${(e as Error).message}); fix it or move it away and pin again with --trust-vendor-key`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new LicdError('CONFIG_INVALID', `the pinned vendor keys file ${path} must hold an object keyed by server URL; fix it or move it away and pin again`);
  }
  const out: Record<string, KnownVendor> = {};
  for (const [url, v] of Object.entries(raw as Record<string, unknown>)) {
    const f = Fields.of(v, `${path}: ${JSON.stringify(url)}`, 'CONFIG_INVALID');
    const publicKey = f.string('publicKey', { max: 64, pattern: /^[0-9a-f]{64}$/, patternHelp: '64 hex digits' });
    out[url] = { publicKey, fingerprint: vendorFingerprint(fromHex(publicKey)), pinnedAt: f.optString('pinnedAt', { max: 40 }) ?? '' };
  }
  return out;
}

/** The vendor key pinned for `server` (its broker URL), or null. */
export function pinnedVendorKey(server: string, env: NodeJS.ProcessEnv = process.env): Uint8Array | null {
  const k = readAll(knownVendorsPath(env))[server];
  return k ? fromHex(k.publicKey) : null;
}

export function pinVendorKey(server: string, publicKey: Uint8Array, now = Date.now(), env: NodeJS.ProcessEnv = process.env): string {
  const path = knownVendorsPath(env);
  const all = readAll(path);
  all[server] = { publicKey: toHex(publicKey), fingerprint: vendorFingerprint(publicKey), pinnedAt: new Date(now).toISOString() };
  writeFileAtomic(path, JSON.stringify(all, null, 2) + '\n', 0o600);
  return path;
}

export interface PinView {
  server: string;
  fingerprint: string;
  publicKey: string;
  pinnedAt: string;
}

/** Every pin on this machine (licctl trust list). */
export function listPinnedVendorKeys(env: NodeJS.ProcessEnv = process.env): { file: string; pins: PinView[] } {
  const file = knownVendorsPath(env);
  return { file, pins: Object.entries(readAll(file)).map(([server, k]) => ({ server, fingerprint: k.fingerprint, publicKey: k.publicKey, pinnedAt: k.pinnedAt })) };
}

/**
 * Removes the pins of a server (its URL, compared after `normalise`: mqtt://localhost and
 * mqtt://localhost:1883 are one server) or of a fingerprint (every server pinned to that key).
 */
export function removePinnedVendorKey(which: string, normalise: (url: string) => string, env: NodeJS.ProcessEnv = process.env): { file: string; removed: PinView[] } {
  const file = knownVendorsPath(env);
  const all = readAll(file);
  const isFingerprint = /^sha256:/i.test(which.trim()) || /^[0-9a-f:]{32,}$/i.test(which.trim());
  const removed: PinView[] = [];
  for (const [server, k] of Object.entries(all)) {
    const hit = isFingerprint ? fingerprintMatches(which, fromHex(k.publicKey)) : normalise(server) === normalise(which);
    if (!hit) continue;
    removed.push({ server, fingerprint: k.fingerprint, publicKey: k.publicKey, pinnedAt: k.pinnedAt });
    delete all[server];
  }
  if (removed.length > 0) writeFileAtomic(file, JSON.stringify(all, null, 2) + '\n', 0o600);
  return { file, removed };
}

/** Whether `publicKey` signs the chain's entitlement (link 1 of the trust chain). */
export function signsEntitlement(entitlement: unknown, publicKey: Uint8Array): boolean {
  try {
    const parsed = parseEnvelope(entitlement, 'licd-entitlement/1', 'TOKEN_INVALID');
    const named = Fields.of(parsed.json, 'entitlement', 'TOKEN_INVALID').object('dongle');
    const serial = named.string('serial', { max: 64 });
    const pk = named.string('publicKey', { max: 64, pattern: /^[0-9a-fA-F]{64}$/ });
    verifyEntitlement(entitlement, { vendorPublicKey: publicKey, dongle: { serial, publicKey: fromHex(pk) }, now: Number.NEGATIVE_INFINITY, ed: nodeEd25519() });
    return true;
  } catch {
    return false;
  }
}

export interface TrustDecision {
  key: Uint8Array;
  /** How the key was settled: already configured or pinned, pinned now, or the local dev key. */
  how: 'configured' | 'pinned' | 'newly-pinned' | 'development';
  /** Where a new pin was written. */
  file?: string;
}

/**
 * Settles the vendor key a client verifies this server's tokens with, before it borrows:
 * 1. a configured key (--vendor-key, LICD_VENDOR_KEY, "vendorPublicKey") must sign the server's
 *    entitlement, else VENDOR_KEY_UNTRUSTED;
 * 2. a key pinned for this server must be the one the server offers, else VENDOR_KEY_CHANGED;
 * 3. otherwise the offered key (which must sign the entitlement) is pinned when the user vouches
 *    for its fingerprint: --trust-vendor-key FINGERPRINT, or yes at the prompt on a terminal;
 *    without either, VENDOR_KEY_UNTRUSTED names the fingerprint and the flag.
 */
export async function settleVendorKey(o: {
  server: string;
  chain: { entitlement: unknown; vendorPublicKey?: string };
  configured: { key: Uint8Array; from: string } | null;
  devKey: Uint8Array | null;
  trustFingerprint?: string | undefined;
  ask?: ((question: string) => Promise<string>) | undefined;
  say: (s: string) => void;
  env?: NodeJS.ProcessEnv;
}): Promise<TrustDecision> {
  const env = o.env ?? process.env;
  const offered = o.chain.vendorPublicKey ? fromHex(o.chain.vendorPublicKey) : null;
  if (o.configured) {
    if (!signsEntitlement(o.chain.entitlement, o.configured.key)) {
      throw new LicdError(
        'VENDOR_KEY_UNTRUSTED',
        `the license of the server at ${o.server} is not signed by the vendor key from ${o.configured.from} (${vendorFingerprint(o.configured.key)}); tokens borrowed from it could not be used. Check ${o.configured.from}${offered ? `; the server offers ${vendorFingerprint(offered)}` : ''}`,
        { server: o.server },
      );
    }
    return { key: o.configured.key, how: 'configured' };
  }
  const pinned = pinnedVendorKey(o.server, env);
  if (pinned) {
    const same = offered ? toHex(offered) === toHex(pinned) : true;
    if (!same || !signsEntitlement(o.chain.entitlement, pinned)) {
      throw new LicdError(
        'VENDOR_KEY_CHANGED',
        `WARNING: THE VENDOR KEY OF ${o.server} HAS CHANGED. You pinned ${vendorFingerprint(pinned)}; the server now ${offered ? `offers ${vendorFingerprint(offered)}` : 'has a license that key does not sign'}. Someone may be impersonating the server, or its license was reissued by another vendor key. Nothing was borrowed. If the vendor confirms the new key, run licctl trust remove ${o.server} and pin again with --trust-vendor-key`,
        { server: o.server, file: knownVendorsPath(env) },
      );
    }
    return { key: pinned, how: 'pinned' };
  }
  if (!offered) {
    throw new LicdError('VENDOR_KEY_UNTRUSTED', `the server at ${o.server} does not offer its vendor key on licd/v1/server/chain (an older licd?); give the key with --vendor-key or "vendorPublicKey" in the client config`, { server: o.server });
  }
  if (!signsEntitlement(o.chain.entitlement, offered)) {
    throw new LicdError('VENDOR_KEY_UNTRUSTED', `the server at ${o.server} offers a vendor key (${vendorFingerprint(offered)}) that does not sign its own license; refusing it. Nothing was borrowed`, { server: o.server });
  }
  if (o.devKey && toHex(o.devKey) === toHex(offered)) return { key: offered, how: 'development' };
  const fp = vendorFingerprint(offered);
  if (o.trustFingerprint !== undefined) {
    if (!fingerprintMatches(o.trustFingerprint, offered)) {
      throw new LicdError(
        'VENDOR_KEY_UNTRUSTED',
        `the server at ${o.server} offers the vendor key ${fp}, not the ${o.trustFingerprint.trim()} given by --trust-vendor-key; nothing was pinned or borrowed. Compare the fingerprint with the one your vendor or admin gave you`,
        { server: o.server, offered: fp },
      );
    }
  } else if (o.ask) {
    o.say(`The license server at ${o.server} uses the vendor key\n  ${fp}\nCompare it with the fingerprint your vendor or admin gave you.`);
    const a = (await o.ask('Trust this vendor key for this server (yes/no)? ')).trim().toLowerCase();
    if (a !== 'yes' && a !== 'y') throw new LicdError('VENDOR_KEY_UNTRUSTED', `vendor key ${fp} of ${o.server} not trusted; nothing was borrowed`, { server: o.server, offered: fp });
  } else {
    throw new LicdError(
      'VENDOR_KEY_UNTRUSTED',
      `the vendor key of the server at ${o.server} is not pinned on this machine: it offers ${fp}. If that is the fingerprint your vendor or admin gave you, run again with --trust-vendor-key ${fp} (or set "vendorPublicKey" in the client config); nothing was borrowed`,
      { server: o.server, offered: fp },
    );
  }
  const file = pinVendorKey(o.server, offered, Date.now(), env);
  o.say(`pinned vendor key ${fp} for ${o.server} in ${file}`);
  return { key: offered, how: 'newly-pinned', file };
}
