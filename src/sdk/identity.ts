/**
 * The client's own identity for borrowing: an Ed25519 key pair made and kept by the SDK, and a
 * stable host id. The host id comes from the OS machine id (systemd's /etc/machine-id), hashed so
 * it says nothing about the machine: it survives docking stations, new network cards and
 * re-addressing, unlike the MAC addresses other license managers bind to.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { fromHex, toHex } from '../core/bytes.ts';
import type { Ed25519 } from '../core/ports.ts';
import { nodeEd25519 } from '../crypto/ed25519.ts';
import { writeFileAtomic } from '../vendor.ts';
import { defaultIdentity } from './client.ts';

export interface ClientIdentity {
  user: string;
  hostId: string;
  hostName: string;
  publicKey: string;
  seed: Uint8Array;
  /** Where the identity, tokens and clock mark live. */
  home: string;
  /** How the host id was found: "machine-id" (stable) or "file" (weaker: kept next to the tokens). */
  hostIdSource: 'machine-id' | 'file' | 'given';
}

export function clientHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.LICD_HOME || join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'licd');
}

const MACHINE_ID_FILES = ['/etc/machine-id', '/var/lib/dbus/machine-id'];

export function machineHostId(): string | null {
  for (const f of MACHINE_ID_FILES) {
    try {
      const id = readFileSync(f, 'utf8').trim();
      if (id.length >= 16) return createHash('sha256').update('licd-host-id/1\0').update(id).digest('hex').slice(0, 32);
    } catch {
      /* try the next */
    }
  }
  return null;
}

export function loadIdentity(opts: { home?: string; user?: string; hostName?: string; hostId?: string; ed?: Ed25519 } = {}): ClientIdentity {
  const home = opts.home ?? clientHome();
  const ed = opts.ed ?? nodeEd25519();
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const file = join(home, 'identity.json');
  let seed: Uint8Array;
  if (existsSync(file)) {
    const j = JSON.parse(readFileSync(file, 'utf8')) as { seed: string };
    seed = fromHex(j.seed);
  } else {
    seed = new Uint8Array(randomBytes(32));
    writeFileAtomic(file, JSON.stringify({ kind: 'licd-client-identity', seed: toHex(seed), publicKey: toHex(ed.publicKey(seed)), created: new Date().toISOString() }, null, 2) + '\n', 0o600);
  }
  let hostId = opts.hostId ?? null;
  let source: ClientIdentity['hostIdSource'] = 'given';
  if (!hostId) {
    hostId = machineHostId();
    source = 'machine-id';
  }
  if (!hostId) {
    const hf = join(home, 'host-id');
    if (existsSync(hf)) hostId = readFileSync(hf, 'utf8').trim();
    else {
      hostId = randomBytes(16).toString('hex');
      writeFileAtomic(hf, hostId + '\n', 0o600);
    }
    source = 'file';
  }
  const who = defaultIdentity();
  return { user: opts.user ?? who.user, hostId, hostName: opts.hostName ?? process.env.LICD_HOST ?? hostname(), publicKey: toHex(ed.publicKey(seed)), seed, home, hostIdSource: source };
}
