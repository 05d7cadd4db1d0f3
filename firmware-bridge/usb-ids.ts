/**
 * USB identity of the licd dongle.
 *
 * PLACEHOLDER: 0x1209 is the pid.codes vendor id and 0x0001 its shared test product id, which
 * anyone may use for private testing and no product may ship with. Before hardware ships, request
 * a product id from pid.codes (open hardware) or use a purchased vendor id, and change it here, in
 * PROTOCOL.md and in the udev rules. Because other test devices share 1209:0001, discovery also
 * matches the USB product string.
 */
export const LICD_DONGLE_USB = {
  vendorId: 0x1209,
  productId: 0x0001,
  manufacturer: 'licd',
  product: 'licd dongle',
} as const;

/** Baud rate the CDC-ACM interface is opened with; CDC ignores it, UART bridges need it. */
export const DEFAULT_BAUD_RATE = 115200;

/** HID report size on the interrupt endpoints, without the report id byte. */
export const HID_REPORT_SIZE = 64;
