/**
 * The emulated dongle's persistent state, one JSON file. It holds the private seed, so it is
 * created with mode 0600. Every change is written whole to a temporary file in the same
 * directory, fsynced, renamed over the old file, and the directory fsynced: a crash leaves either
 * the old or the new state, never a torn one, and a counter step is on disk before it is answered.
 * One emulator per state file: two processes sharing one would fork the counter.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fromHex, toHex } from '../protocol/bytes.ts';

export const STATE_FORMAT = 'licd-emulated-dongle-state';
export const STATE_VERSION = 1;

export interface DongleState {
  serial: string;
  seed: Uint8Array;
  counter: bigint;
  slotSize: number;
  /** Committed content of each slot. */
  slots: Uint8Array[];
  /** The battery-backed clock (TIME): host time plus this offset, ms; absent for a dongle without one. */
  clockOffsetMs?: number;
}

interface StateFileV1 {
  format: typeof STATE_FORMAT;
  version: 1;
  serial: string;
  /** 32-byte Ed25519 seed, hex. */
  seed: string;
  /** u64 as a decimal string: JSON numbers lose precision above 2^53. */
  counter: string;
  slotSize: number;
  /** base64 content of each slot. */
  slots: string[];
  /** Optional: the emulated battery-backed clock's offset from the host's time, ms. */
  clockOffsetMs?: number;
}

export function serializeState(state: DongleState): string {
  const file: StateFileV1 = {
    format: STATE_FORMAT,
    version: STATE_VERSION,
    serial: state.serial,
    seed: toHex(state.seed),
    counter: state.counter.toString(10),
    slotSize: state.slotSize,
    slots: state.slots.map((s) => Buffer.from(s).toString('base64')),
    ...(state.clockOffsetMs === undefined ? {} : { clockOffsetMs: state.clockOffsetMs }),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function parseState(text: string, where: string): DongleState {
  const fail = (why: string): never => {
    throw new Error(`emulated dongle state file ${where} is unusable: ${why}; restore it from a backup or move it away to start a new dongle (which gets a new key and counter)`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON (${(error as Error).message})`);
  }
  const f = raw as Partial<StateFileV1>;
  if (typeof f !== 'object' || f === null || f.format !== STATE_FORMAT) return fail(`"format" is not "${STATE_FORMAT}"`);
  if (f.version !== STATE_VERSION) return fail(`version ${String(f.version)} is not supported (this build reads ${STATE_VERSION})`);
  if (typeof f.serial !== 'string' || !/^[\x21-\x7e]{1,64}$/.test(f.serial)) return fail('"serial" must be 1..64 printable ASCII characters');
  if (typeof f.seed !== 'string' || !/^[0-9a-f]{64}$/.test(f.seed)) return fail('"seed" must be 64 lowercase hex digits');
  if (typeof f.counter !== 'string' || !/^[0-9]{1,20}$/.test(f.counter) || BigInt(f.counter) > 0xffff_ffff_ffff_ffffn) return fail('"counter" must be a decimal u64 string');
  if (typeof f.slotSize !== 'number' || !Number.isInteger(f.slotSize) || f.slotSize < 1 || f.slotSize > 0xffff) return fail('"slotSize" must be 1..65535');
  if (!Array.isArray(f.slots) || f.slots.length < 1 || f.slots.length > 255 || !f.slots.every((s) => typeof s === 'string')) return fail('"slots" must be 1..255 base64 strings');
  const slots = f.slots.map((s) => Uint8Array.from(Buffer.from(s, 'base64')));
  if (slots.some((s) => s.length > f.slotSize!)) return fail('a slot holds more than "slotSize" bytes');
  if (f.clockOffsetMs !== undefined && (typeof f.clockOffsetMs !== 'number' || !Number.isSafeInteger(f.clockOffsetMs))) return fail('"clockOffsetMs" must be an integer');
  return { serial: f.serial, seed: fromHex(f.seed), counter: BigInt(f.counter), slotSize: f.slotSize, slots, ...(f.clockOffsetMs === undefined ? {} : { clockOffsetMs: f.clockOffsetMs }) };
}

export async function readStateFile(file: string): Promise<DongleState | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseState(text, file);
}

export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true });
    throw error;
  }
  // The rename is durable only once the directory entry is.
  const dirHandle = await fs.open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

export async function writeStateFile(file: string, state: DongleState): Promise<void> {
  await writeFileAtomic(file, serializeState(state));
}
