import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import test from 'ava';
import {
  LICD_DONGLE_USB,
  findSerialDongles,
  listHidDongles,
  listSerialById,
  listSerialCandidates,
  openTransport,
  type HidModuleLike,
} from '../../firmware-bridge/index.ts';
import { tempDir } from './helpers.ts';

// Must run before anything here opens a HID transport: the whole bridge loads without node-hid
// (node-hid loads libusb when loaded, and most appliances use the serial dongle).
test.serial('importing the bridge and using other transports does not load node-hid', async (t) => {
  const transport = await openTransport({ kind: 'memory' });
  await transport.close();
  const cache = createRequire(import.meta.url).cache;
  t.false(Object.keys(cache).some((p) => p.includes(`${path.sep}node-hid${path.sep}`)));
});

test('the licd dongle USB id is the documented placeholder', (t) => {
  t.deepEqual({ ...LICD_DONGLE_USB }, { vendorId: 0x1209, productId: 0x0001, manufacturer: 'licd', product: 'licd dongle' });
});

const listing = async () => [
  { path: '/dev/ttyACM0', vendorId: '1209', productId: '0001', serialNumber: 'D-00042', manufacturer: 'licd' },
  { path: '/dev/ttyACM1', vendorId: '2341', productId: '0043', manufacturer: 'Arduino' },
  { path: '/dev/ttyS0' },
  { path: '/dev/ttyUSB0', vendorId: '1209', productId: '0002' },
];

test('serial candidates by USB vendor and product id', async (t) => {
  t.deepEqual(await listSerialCandidates({ list: listing }), [
    { path: '/dev/ttyACM0', vendorId: 0x1209, productId: 0x0001, serialNumber: 'D-00042', manufacturer: 'licd' },
  ]);
  t.deepEqual((await listSerialCandidates({ list: listing, vendorId: 0x2341, productId: 0x43 })).map((c) => c.path), ['/dev/ttyACM1']);
});

test('serial candidates by /dev/serial/by-id name, merged with the USB listing', async (t) => {
  const dir = await tempDir(t);
  const byId = path.join(dir, 'by-id');
  await fs.mkdir(byId);
  const tty0 = path.join(dir, 'ttyACM0');
  const tty7 = path.join(dir, 'ttyACM7');
  await fs.writeFile(tty0, '');
  await fs.writeFile(tty7, '');
  await fs.symlink(tty0, path.join(byId, 'usb-licd_licd_dongle_D-00042-if00'));
  await fs.symlink(tty7, path.join(byId, 'usb-licd_licd_dongle_D-00077-if00'));
  await fs.symlink(path.join(dir, 'gone'), path.join(byId, 'usb-licd_licd_dongle_D-00099-if00'));
  await fs.symlink(tty0, path.join(byId, 'usb-Arduino_Uno_123-if00'));

  const found = await listSerialById({ dir: byId });
  t.deepEqual(found, [
    { path: tty0, byIdPath: path.join(byId, 'usb-licd_licd_dongle_D-00042-if00'), serialNumber: 'D-00042' },
    { path: tty7, byIdPath: path.join(byId, 'usb-licd_licd_dongle_D-00077-if00'), serialNumber: 'D-00077' },
  ]);
  t.deepEqual(await listSerialById({ dir: path.join(dir, 'absent') }), []);

  const merged = await findSerialDongles({ dir: byId, list: async () => [{ path: tty0, vendorId: '1209', productId: '0001' }] });
  t.deepEqual(merged, [
    { path: tty0, vendorId: 0x1209, productId: 1, byIdPath: path.join(byId, 'usb-licd_licd_dongle_D-00042-if00'), serialNumber: 'D-00042' },
    { path: tty7, byIdPath: path.join(byId, 'usb-licd_licd_dongle_D-00077-if00'), serialNumber: 'D-00077' },
  ]);
});

test('HID dongles by vendor/product id and product string, through an injected node-hid', async (t) => {
  const asked: Array<[number, number]> = [];
  const hid: HidModuleLike = {
    HID: class {
      constructor() {
        throw new Error('not used');
      }
    } as unknown as HidModuleLike['HID'],
    devicesAsync: async (vid, pid) => {
      asked.push([vid, pid]);
      return [
        { vendorId: 0x1209, productId: 1, path: '/dev/hidraw3', product: 'licd dongle', serialNumber: 'D-1' },
        { vendorId: 0x1209, productId: 1, path: '/dev/hidraw4', product: 'someone else test board' },
      ];
    },
  };
  t.deepEqual((await listHidDongles({ hid })).map((d) => d.path), ['/dev/hidraw3']);
  t.deepEqual((await listHidDongles({ hid, product: null })).map((d) => d.path), ['/dev/hidraw3', '/dev/hidraw4']);
  t.deepEqual(asked[0], [0x1209, 0x0001]);
});
