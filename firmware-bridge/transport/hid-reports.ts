/**
 * How the frame byte stream rides on 64-byte HID reports: byte 0 of each report is the number of
 * stream bytes it carries (1..63), then those bytes, then zero padding. A frame of up to 1036
 * bytes spans several reports; a report may carry the end of one frame and the start of the next.
 * The count byte keeps the padding out of the stream, so the parser never sees it as line noise.
 * On write the host prepends report id 0 (the dongle uses unnumbered reports), so node-hid gets
 * 65 bytes per report.
 */
import { HID_REPORT_SIZE } from '../usb-ids.ts';

export function encodeHidReports(bytes: Uint8Array, reportSize = HID_REPORT_SIZE): Uint8Array[] {
  const room = reportSize - 1;
  const reports: Uint8Array[] = [];
  for (let o = 0; o < bytes.length; o += room) {
    const piece = bytes.subarray(o, Math.min(bytes.length, o + room));
    const report = new Uint8Array(reportSize);
    report[0] = piece.length;
    report.set(piece, 1);
    reports.push(report);
  }
  return reports;
}

/**
 * Returns the stream bytes of one report. A count larger than the report can hold is a broken
 * report: its bytes are passed on whole so the frame parser reports them and resynchronises.
 */
export function decodeHidReport(report: Uint8Array, reportSize = HID_REPORT_SIZE): Uint8Array {
  if (report.length === 0) return report;
  const count = report[0]!;
  if (count > reportSize - 1 || count > report.length - 1) return report;
  return report.subarray(1, 1 + count);
}

/** The bytes node-hid's write() wants for one report: report id 0, then the report. */
export function withReportId(report: Uint8Array, reportId = 0): Buffer {
  const out = Buffer.alloc(report.length + 1);
  out[0] = reportId;
  out.set(report, 1);
  return out;
}
