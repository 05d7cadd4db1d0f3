/**
 * A stand-in for node-hid's HID object, wired to an emulated dongle: what the host writes
 * (report id 0 + 64-byte report) is unpacked into the byte stream the dongle reads, and the
 * dongle's answers come back as 64-byte input reports without report id, as hidraw delivers them
 * on Linux. Unplugging the dongle makes it emit 'error', as node-hid does when a device goes away.
 */
import { EventEmitter } from 'node:events';
import { decodeHidReport, encodeHidReports } from '../transport/hid-reports.ts';
import type { HidDeviceLike } from '../transport/hid.ts';
import { HID_REPORT_SIZE } from '../usb-ids.ts';
import type { EmulatedDongle } from './emulated-dongle.ts';

export class EmulatedHidDevice extends EventEmitter implements HidDeviceLike {
  /** Every buffer passed to write(), for tests that check the report layout. */
  readonly written: Buffer[] = [];
  private open = true;
  private readonly host;

  constructor(dongle: EmulatedDongle, private readonly reportSize = HID_REPORT_SIZE) {
    super();
    // Refused while unplugged, like opening an absent device.
    this.host = dongle.connectMemory();
    this.host.on('data', (chunk) => {
      for (const report of encodeHidReports(chunk, this.reportSize)) this.emit('data', Buffer.from(report));
    });
    this.host.on('close', () => {
      if (!this.open) return;
      this.open = false;
      this.emit('error', new Error('could not read from HID device'));
    });
  }

  write(data: number[] | Buffer): number {
    if (!this.open) throw new Error('Cannot write to hid device');
    const buf = Buffer.from(data);
    this.written.push(buf);
    if (buf.length !== this.reportSize + 1 || buf[0] !== 0) {
      throw new Error(`fake HID device expects report id 0 + ${this.reportSize} bytes, got ${buf.length} bytes starting 0x${(buf[0] ?? 0).toString(16)}`);
    }
    const stream = decodeHidReport(new Uint8Array(buf.subarray(1)), this.reportSize);
    if (stream.length > 0) this.host.write(stream);
    return buf.length;
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    void this.host.close();
  }
}
