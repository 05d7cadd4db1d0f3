import test from 'ava';
import nacl from 'tweetnacl';
import {
  DongleError,
  DongleSession,
  EmulatedDongle,
  EmulatedHidDevice,
  LICD_DONGLE_USB,
  decodeHidReport,
  dongleSignedBytes,
  encodeHidReports,
  fromHex,
  openTransport,
  toHex,
  withReportId,
} from '../../firmware-bridge/index.ts';
import { nonce, patternBytes } from './helpers.ts';

const hidSpec = (device: EmulatedHidDevice) => ({ kind: 'hid', vendorId: LICD_DONGLE_USB.vendorId, productId: LICD_DONGLE_USB.productId, device }) as const;

test('HID report layout: count byte, up to 63 stream bytes, zero padding', (t) => {
  const stream = patternBytes(130);
  const reports = encodeHidReports(stream);
  t.is(reports.length, 3); // 63 + 63 + 4
  t.true(reports.every((r) => r.length === 64));
  t.is(reports[0]![0], 63);
  t.is(reports[2]![0], 4);
  t.deepEqual(reports[2]!.subarray(5), new Uint8Array(59));
  t.deepEqual(Uint8Array.from(reports.flatMap((r) => [...decodeHidReport(r)])), stream);
  // PING "hi" frame in one report, as node-hid gets it: report id 0, then 64 bytes.
  const [report] = encodeHidReports(fromHex('a55a0101010200 02d9776869dec3'));
  t.is(toHex(withReportId(report!).subarray(0, 16)), '00' + '0e' + 'a55a010101020002d9776869dec3');
  t.is(withReportId(report!).length, 65);
  // A count that cannot be right passes the report whole, for the parser to reject.
  const broken = new Uint8Array(64).fill(0xee);
  t.is(decodeHidReport(broken).length, 64);
});

test('a session over the HID transport against a fake HID device wired to the emulator', async (t) => {
  const dongle = await EmulatedDongle.open({ serial: 'EMU-HID' });
  t.teardown(() => dongle.close());
  const device = new EmulatedHidDevice(dongle);
  const session = await DongleSession.open(hidSpec(device), { timeoutMs: 2000 });
  t.teardown(() => session.close());
  t.is(session.transport.kind, 'hid');

  const info = await session.info();
  t.is(info.serial, 'EMU-HID');
  const message = patternBytes(1000);
  const signature = await session.sign('licd-hid', message); // a 1012-byte frame: 17 reports
  t.true(nacl.sign.detached.verify(dongleSignedBytes('licd-hid', message, true), signature, info.publicKey));
  const slot = patternBytes(8192, 1);
  await session.writeSlot(1, slot);
  t.deepEqual(await session.readSlot(1), slot);
  t.is((await session.counterIncrement(nonce(4))).counter, 1n);
  t.true(device.written.length > 17);
  t.true(device.written.every((w) => w.length === 65 && w[0] === 0), 'every write is report id 0 + 64 bytes');
});

test('HID: unplugging shows up as a device error, then DONGLE_CLOSED', async (t) => {
  const dongle = await EmulatedDongle.open();
  t.teardown(() => dongle.close());
  const session = await DongleSession.open(hidSpec(new EmulatedHidDevice(dongle)));
  await session.ping();
  dongle.unplug();
  const closed = await session.closed;
  t.is(closed.code, 'DONGLE_CLOSED');
  t.regex(closed.message, /could not read from HID device/);
  t.throws(() => new EmulatedHidDevice(dongle), { instanceOf: DongleError }); // absent device cannot be opened
});

test('HID: a write that throws closes the transport', async (t) => {
  let closed = false;
  const fake = {
    write: () => {
      throw new Error('Cannot write to hid device');
    },
    on: () => fake,
    close: () => {
      closed = true;
    },
  };
  const transport = await openTransport({ kind: 'hid', vendorId: 1, productId: 2, device: fake });
  const session = new DongleSession(transport);
  const error = await t.throwsAsync(session.ping(), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_CLOSED');
  t.regex(error?.message ?? '', /Cannot write to hid device/);
  t.true(closed);
});
