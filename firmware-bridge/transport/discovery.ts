/**
 * Finding a plugged-in dongle. Serial: by USB ids through SerialPort.list() (which runs udevadm)
 * and by the stable names udev makes in /dev/serial/by-id. HID: by USB ids through node-hid.
 * Every lister is injectable so tests and the daemon's composition root choose what runs.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { LICD_DONGLE_USB } from '../usb-ids.ts';
import { loadNodeHid, type HidDeviceInfo, type HidModuleLike } from './hid.ts';

/** What SerialPort.list() returns for one port (the fields used here). */
export interface SerialPortInfoLike {
  path: string;
  vendorId?: string | undefined;
  productId?: string | undefined;
  serialNumber?: string | undefined;
  manufacturer?: string | undefined;
  pnpId?: string | undefined;
}

export interface SerialCandidate {
  /** Device node to open, e.g. /dev/ttyACM0. */
  path: string;
  /** The /dev/serial/by-id link pointing at it, when there is one. */
  byIdPath?: string;
  vendorId?: number;
  productId?: number;
  serialNumber?: string;
  manufacturer?: string;
}

export interface SerialDiscoveryOptions {
  vendorId?: number;
  productId?: number;
  /** Replaces SerialPort.list(). */
  list?: () => Promise<SerialPortInfoLike[]>;
}

async function defaultSerialList(): Promise<SerialPortInfoLike[]> {
  const { SerialPort } = await import('serialport');
  return await SerialPort.list();
}

/** Serial ports whose USB vendor and product ids match (the licd dongle's by default). */
export async function listSerialCandidates(options: SerialDiscoveryOptions = {}): Promise<SerialCandidate[]> {
  const vendorId = options.vendorId ?? LICD_DONGLE_USB.vendorId;
  const productId = options.productId ?? LICD_DONGLE_USB.productId;
  const ports = await (options.list ?? defaultSerialList)();
  const out: SerialCandidate[] = [];
  for (const port of ports) {
    const vid = parseHexId(port.vendorId);
    const pid = parseHexId(port.productId);
    if (vid !== vendorId || pid !== productId) continue;
    const candidate: SerialCandidate = { path: port.path, vendorId: vid, productId: pid };
    if (port.serialNumber) candidate.serialNumber = port.serialNumber;
    if (port.manufacturer) candidate.manufacturer = port.manufacturer;
    out.push(candidate);
  }
  return out;
}

/**
 * udev names by-id links usb-<manufacturer>_<product>_<serial>-if<NN>, spaces replaced by '_'.
 * For the licd dongle that is usb-licd_licd_dongle_<serial>-if00.
 */
export const LICD_BY_ID_PATTERN = /^usb-licd_licd_dongle_(.+)-if\d\d$/;

export interface ByIdOptions {
  dir?: string;
  pattern?: RegExp;
}

/** Links in /dev/serial/by-id whose name matches; the first capture group is taken as serial. */
export async function listSerialById(options: ByIdOptions = {}): Promise<SerialCandidate[]> {
  const dir = options.dir ?? '/dev/serial/by-id';
  const pattern = options.pattern ?? LICD_BY_ID_PATTERN;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    // No serial device at all: udev removes the directory with the last one.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const out: SerialCandidate[] = [];
  for (const name of names.sort()) {
    const match = pattern.exec(name);
    if (!match) continue;
    const byIdPath = path.join(dir, name);
    let target: string;
    try {
      target = await fs.realpath(byIdPath);
    } catch {
      continue; // dangling link: the device went away while we looked
    }
    const candidate: SerialCandidate = { path: target, byIdPath };
    if (match[1]) candidate.serialNumber = match[1];
    out.push(candidate);
  }
  return out;
}

/** Both sources merged by device node; USB-id matches first. */
export async function findSerialDongles(options: SerialDiscoveryOptions & ByIdOptions = {}): Promise<SerialCandidate[]> {
  const [listed, byId] = await Promise.all([listSerialCandidates(options), listSerialById(options)]);
  const merged = new Map<string, SerialCandidate>();
  for (const c of listed) merged.set(c.path, c);
  for (const c of byId) {
    const known = merged.get(c.path);
    if (known) {
      if (c.byIdPath) known.byIdPath = c.byIdPath;
      if (!known.serialNumber && c.serialNumber) known.serialNumber = c.serialNumber;
    } else merged.set(c.path, c);
  }
  return [...merged.values()];
}

export interface HidDiscoveryOptions {
  vendorId?: number;
  productId?: number;
  /** Require this USB product string; defaults to the licd dongle's, since 1209:0001 is shared. */
  product?: string | null;
  /** Replaces the lazily loaded node-hid module. */
  hid?: HidModuleLike;
}

export async function listHidDongles(options: HidDiscoveryOptions = {}): Promise<HidDeviceInfo[]> {
  const vendorId = options.vendorId ?? LICD_DONGLE_USB.vendorId;
  const productId = options.productId ?? LICD_DONGLE_USB.productId;
  const product = options.product === undefined ? LICD_DONGLE_USB.product : options.product;
  const mod = options.hid ?? (await loadNodeHid());
  const devices = await mod.devicesAsync(vendorId, productId);
  return devices.filter((d) => d.vendorId === vendorId && d.productId === productId && (product === null || d.product === product));
}

function parseHexId(id: string | undefined): number | undefined {
  if (!id || !/^(0x)?[0-9a-fA-F]{1,4}$/.test(id)) return undefined;
  return Number.parseInt(id.replace(/^0x/, ''), 16);
}
