/** licctl dongle emulate | info. */
import { flag, type ParsedArgs } from '../args.ts';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { json, out, outJson } from '../context.ts';

async function info(a: ParsedArgs): Promise<number> {
  const spec = flag(a, 'dongle') ?? process.env.LICD_DONGLE;
  if (!spec) throw new UsageError('licctl dongle info needs --dongle tcp:HOST:PORT | serial:PATH | hid:VID:PID (or LICD_DONGLE)');
  const { parseConfig } = await import('../../config.ts');
  const { dongleOpener } = await import('../../dongle/open.ts');
  const cfg = parseConfig({}, { LICD_DONGLE: spec });
  const opener = await dongleOpener(cfg);
  const link = await opener.open();
  try {
    const i = await link.info();
    const view = { serial: i.serial, publicKey: Buffer.from(i.publicKey).toString('hex'), firmware: i.firmwareVersion, counter: String(i.counter), emulated: Boolean((i.flags ?? 0) & 1) };
    if (json(a)) outJson(view);
    else out(`serial: ${view.serial}\npublic key: ${view.publicKey}\nfirmware: ${view.firmware}\ncounter: ${view.counter}\nemulated: ${view.emulated}`);
  } finally {
    await link.close();
    await opener.close();
  }
  return 0;
}

export const dongleCommands: Command[] = [
  {
    path: 'dongle emulate',
    section: 'dongle',
    synopsis: 'dongle emulate (--tcp HOST:PORT | --pty PATH | --hidg PATH) [--state FILE] [--serial S] [--fault NAME[=V]] [--clock[=MS]]',
    summary: 'run an emulated dongle (development and tests); SIGUSR1 pulls it out and plugs it back',
    examples: ['licctl dongle emulate --tcp 127.0.0.1:0 --state dongle.json'],
    raw: true,
    run: async (_a, argv) => {
      const { runDongleEmulatorCli } = await import('../../../firmware-bridge/cli.ts');
      await runDongleEmulatorCli(argv);
      return 0;
    },
  },
  {
    path: 'dongle info',
    section: 'dongle',
    synopsis: 'dongle info --dongle SPEC',
    summary: "a dongle's serial, public key, firmware and counter (what a vendor needs to issue a license)",
    details: 'SPEC: tcp:HOST:PORT (an emulator), serial:PATH (a USB-serial dongle), hid:VID:PID (a HID dongle).',
    options: { dongle: { type: 'string', arg: 'SPEC', help: 'where the dongle is; or LICD_DONGLE' } },
    json: '{serial, publicKey, firmware, counter, emulated}',
    examples: ['licctl dongle info --dongle serial:/dev/ttyACM0', 'licctl dongle info --dongle tcp:127.0.0.1:7700 --json'],
    run: info,
  },
];
