/**
 * HID transport via node-hid. node-hid loads libusb when it is loaded, so it is imported only
 * here, lazily, when a HID transport is actually opened without an injected device.
 */
import { DongleError, DongleErrorCode } from '../errors.ts';
import { HID_REPORT_SIZE } from '../usb-ids.ts';
import { decodeHidReport, encodeHidReports, withReportId } from './hid-reports.ts';
import { TransportBase } from './transport.ts';

/** The part of node-hid's HID class this transport uses; a fake can implement it for tests. */
export interface HidDeviceLike {
  write(data: number[] | Buffer): number | Promise<number>;
  on(event: 'data', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  removeAllListeners?(event?: string): unknown;
  close(): void | Promise<void>;
}

export interface HidSpec {
  kind: 'hid';
  vendorId: number;
  productId: number;
  /** hidraw path (from listHidDongles); without it the first device with the ids is opened. */
  path?: string;
  /** An already opened device, or a fake one; node-hid is then never loaded. */
  device?: HidDeviceLike;
  /** Report size without the report id; 64 for full-speed USB. */
  reportSize?: number;
}

export class HidTransport extends TransportBase {
  readonly kind = 'hid' as const;
  readonly description: string;

  constructor(private readonly device: HidDeviceLike, description: string, private readonly reportSize = HID_REPORT_SIZE) {
    super();
    this.description = description;
    device.on('data', (report: Buffer) => {
      this.emitData(decodeHidReport(new Uint8Array(report.buffer, report.byteOffset, report.byteLength), this.reportSize));
    });
    device.on('error', (error: unknown) => {
      // node-hid reports an unplugged device as a read error.
      if (this.finish(error instanceof Error ? error : new Error(String(error)))) void this.release();
    });
  }

  write(bytes: Uint8Array): void {
    this.assertOpen();
    for (const report of encodeHidReports(bytes, this.reportSize)) {
      try {
        const written = this.device.write(withReportId(report));
        if (written instanceof Promise) written.catch((error: unknown) => this.failWrite(error));
      } catch (error) {
        this.failWrite(error);
        return;
      }
    }
  }

  private failWrite(error: unknown): void {
    if (this.finish(error instanceof Error ? error : new Error(String(error)))) void this.release();
  }

  private async release(): Promise<void> {
    try {
      this.device.removeAllListeners?.('data');
      await this.device.close();
    } catch {
      // Already gone: closing an unplugged device may throw, and there is nothing left to free.
    }
  }

  async close(): Promise<void> {
    if (this.finish()) await this.release();
  }
}

/** The part of the node-hid module used here (injectable for tests). */
export interface HidModuleLike {
  HID: new (...args: [string] | [number, number]) => HidDeviceLike;
  devicesAsync(vendorId: number, productId: number): Promise<HidDeviceInfo[]>;
}

export interface HidDeviceInfo {
  vendorId: number;
  productId: number;
  path?: string | undefined;
  serialNumber?: string | undefined;
  manufacturer?: string | undefined;
  product?: string | undefined;
  interface?: number;
}

export async function loadNodeHid(): Promise<HidModuleLike> {
  try {
    const mod = (await import('node-hid')) as unknown as HidModuleLike & { default?: HidModuleLike };
    return mod.default ?? mod;
  } catch (error) {
    throw new DongleError(
      DongleErrorCode.TRANSPORT,
      `cannot load node-hid for the HID dongle: ${(error as Error).message}; install libusb-1.0 (Debian: libusb-1.0-0) or use the serial transport`,
      { cause: error },
    );
  }
}

export async function openHidTransport(spec: HidSpec, hid?: HidModuleLike): Promise<HidTransport> {
  const ids = `${hex4(spec.vendorId)}:${hex4(spec.productId)}`;
  if (spec.device) return new HidTransport(spec.device, `hid ${spec.path ?? ids}`, spec.reportSize);
  const mod = hid ?? (await loadNodeHid());
  try {
    const device = spec.path ? new mod.HID(spec.path) : new mod.HID(spec.vendorId, spec.productId);
    return new HidTransport(device, `hid ${spec.path ?? ids}`, spec.reportSize);
  } catch (error) {
    throw new DongleError(
      DongleErrorCode.TRANSPORT,
      `cannot open HID dongle ${spec.path ?? ids}: ${(error as Error).message}; check that it is plugged in and that the licd udev rule gives this user access to its hidraw node`,
      { cause: error },
    );
  }
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
