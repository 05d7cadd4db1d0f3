/**
 * The device side of a USB HID gadget (Linux configfs f_hid: /dev/hidgN) as a transport, so the
 * emulated dongle can be a real USB HID device: inside a VM with dummy_hcd, or on a board with a
 * device-mode USB port. Each read of /dev/hidgN returns one OUT report the host wrote (64 bytes,
 * no report id); each 64-byte write sends one IN report. The reports carry the frame stream as
 * hid-reports.ts describes, exactly as the host side (transport/hid.ts) expects.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { decodeHidReport, encodeHidReports } from '../transport/hid-reports.ts';
import { TransportBase } from '../transport/transport.ts';
import { HID_REPORT_SIZE } from '../usb-ids.ts';

export class HidGadgetTransport extends TransportBase {
  readonly kind = 'hid' as const;
  readonly description: string;
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: FileHandle,
    path: string,
    private readonly reportSize: number,
  ) {
    super();
    this.description = `HID gadget ${path}`;
    void this.readLoop();
  }

  static async open(path: string, reportSize = HID_REPORT_SIZE): Promise<HidGadgetTransport> {
    return new HidGadgetTransport(await open(path, 'r+'), path, reportSize);
  }

  private async readLoop(): Promise<void> {
    const buf = Buffer.alloc(this.reportSize);
    try {
      while (this.isOpen) {
        // Blocks (in libuv's thread pool) until the host sends a report.
        const { bytesRead } = await this.file.read(buf, 0, this.reportSize, null);
        if (bytesRead === 0) continue;
        this.emitData(Uint8Array.from(decodeHidReport(buf.subarray(0, bytesRead), this.reportSize)));
      }
    } catch (e) {
      // ESHUTDOWN: the gadget was unbound (unplugged); anything else ends the transport too.
      this.finish(e as Error);
    }
  }

  write(bytes: Uint8Array): void {
    this.assertOpen();
    for (const report of encodeHidReports(bytes, this.reportSize)) {
      this.writing = this.writing.then(async () => {
        if (!this.isOpen) return;
        try {
          await this.file.write(report, 0, report.length, null);
        } catch (e) {
          this.finish(e as Error);
        }
      });
    }
  }

  async close(): Promise<void> {
    this.finish();
    await this.writing;
    // A read blocked in the thread pool ends when the gadget goes; closing the handle is enough.
    await this.file.close().catch(() => {});
  }
}
