/**
 * The firmware bridge: everything licd knows about talking to its dongle.
 *   protocol/   bytes -> frames (FrameParser) -> messages -> one codec per command
 *   transport/  openTransport(spec): memory, tcp, serial, hid; discovery helpers
 *   session/    DongleSession: request ids, timeouts, retries, queue, DongleError
 *   emulator/   EmulatedDongle with injectable faults, served in-process, on TCP or serial
 */
export { runDongleEmulatorCli, parseEmulatorArgs, EMULATOR_CLI_USAGE, EMULATOR_CLI_HELP, type EmulatorCliOptions } from './cli.ts';
export * from './crypto.ts';
export * from './emulator/emulated-dongle.ts';
export * from './emulator/faults.ts';
export * from './emulator/hid-device.ts';
export { STATE_FORMAT, STATE_VERSION, type DongleState } from './emulator/state-file.ts';
export * from './errors.ts';
export * from './protocol/index.ts';
export * from './session/session.ts';
export * from './transport/index.ts';
export * from './usb-ids.ts';
