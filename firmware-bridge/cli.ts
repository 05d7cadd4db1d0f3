/**
 * `licctl dongle emulate`: runs an emulated dongle until SIGINT/SIGTERM. SIGUSR1 pulls it out and
 * plugs it back in, so a test or a person can see what the daemon does without its dongle.
 *
 *   --state FILE          state file (seed, serial, counter, slots); created if absent. Without
 *                         it the dongle lives in memory and forgets everything on exit.
 *   --serial S            serial for a new state file (must match an existing one)
 *   --tcp HOST:PORT       serve on TCP (port 0 picks a free one)
 *   --pty PATH            serve on a serial device, e.g. one end of a socat pty pair
 *   --hidg PATH           serve as a USB HID device through a Linux gadget's /dev/hidgN
 *   --fault NAME[=VALUE]  unplugged, slowMs=MS, corruptFrames=N|P%, wrongSignature, counterFailure
 *   --clock[=OFFSET_MS]   give it a battery-backed clock (TIME): the host's time plus the offset
 *                         (default: the offset in the state file, else 0)
 *
 * It prints one line when ready:
 *   licd dongle emulator serving tcp://127.0.0.1:40123 serial EMU-1A2B3C4D public-key <64 hex> state /var/lib/...
 */
import { pathToFileURL } from 'node:url';
import { EmulatedDongle, type ServeHandle } from './emulator/emulated-dongle.ts';
import { parseFault, type DongleFaults } from './emulator/faults.ts';
import { toHex } from './protocol/bytes.ts';

export interface EmulatorCliOptions {
  statePath?: string;
  serial?: string;
  tcp?: { host: string; port: number };
  pty?: string;
  hidg?: string;
  faults: Partial<DongleFaults>;
  clock?: { offsetMs?: number };
  /** --help / -h: print EMULATOR_CLI_HELP and exit 0 without serving. */
  help?: true;
}

export const EMULATOR_CLI_USAGE =
  'usage: licctl dongle emulate (--tcp HOST:PORT | --pty PATH | --hidg PATH) [--state FILE] [--serial S] [--fault NAME[=VALUE]]... [--clock[=OFFSET_MS]]\n(licctl dongle emulate --help says more)';

/** What `licctl dongle emulate --help` prints (stdout, exit 0). */
export const EMULATOR_CLI_HELP = `licctl dongle emulate: run an emulated licd dongle in this process (development and tests only)

usage: licctl dongle emulate (--tcp HOST:PORT | --pty PATH | --hidg PATH) [--state FILE] [--serial S]
                             [--fault NAME[=VALUE]]... [--clock[=OFFSET_MS]]

  --tcp HOST:PORT       serve on TCP; port 0 picks a free one (printed in the ready line)
  --pty PATH            serve on a serial device, e.g. one end of a socat pty pair:
                          socat -d -d pty,raw,echo=0,link=/tmp/dongle pty,raw,echo=0,link=/tmp/host
  --hidg PATH           serve as a USB HID device through a Linux USB gadget's /dev/hidgN (configfs
                        f_hid, 64-byte reports; images/boot-test.sh makes one with dummy_hcd)
  --state FILE          state file (key seed, serial, counter, slots), created if absent; the same
                        file is the same dongle. Without it the dongle forgets everything on exit
  --serial S            serial for a new state file (must match an existing one)
  --fault NAME[=VALUE]  repeatable: unplugged | slowMs=MS | corruptFrames=N|P% | wrongSignature |
                        counterFailure (docs/dongle.md, "Injectable faults")
  --clock[=OFFSET_MS]   a battery-backed clock: the host's time plus the offset in milliseconds
  -h, --help            this text

When ready it prints one line:
  licd dongle emulator serving tcp://127.0.0.1:40123 serial EMU-1A2B3C4D public-key <64 hex> state FILE

Signals:
  SIGUSR1               pull the dongle out; the next SIGUSR1 plugs it back in (each prints
                        "licd dongle emulator <serial> unplugged" or "... plugged in")
  SIGINT, SIGTERM       stop (the dongle is pulled out); start again with the same --state to
                        plug the same dongle back

Example:
  licctl dongle emulate --tcp 127.0.0.1:7321 --state /tmp/dongle.json &
  LICD_DONGLE=tcp:127.0.0.1:7321 npm start
  kill -USR1 %1      # pull the dongle: licctl status shows DONGLE ABSENT; again to plug it back`;

export function parseEmulatorArgs(argv: string[]): EmulatorCliOptions {
  const options: EmulatorCliOptions = { faults: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${flag} needs a value\n${EMULATOR_CLI_USAGE}`);
      return v;
    };
    switch (flag) {
      case '--state':
        options.statePath = value();
        break;
      case '--serial':
        options.serial = value();
        break;
      case '--tcp': {
        const v = value();
        const m = /^(.*):(\d{1,5})$/.exec(v);
        const port = m ? Number(m[2]) : NaN;
        if (!m || !m[1] || port > 65535) throw new Error(`--tcp wants HOST:PORT, e.g. 127.0.0.1:7321, got ${JSON.stringify(v)}`);
        options.tcp = { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
        break;
      }
      case '--pty':
        options.pty = value();
        break;
      case '--hidg':
        options.hidg = value();
        break;
      case '--clock': {
        const off = inline === undefined ? undefined : Number(inline);
        if (off !== undefined && !Number.isSafeInteger(off)) throw new Error(`--clock wants an offset in whole milliseconds, e.g. --clock=-60000, got ${JSON.stringify(inline)}`);
        options.clock = off === undefined ? {} : { offsetMs: off };
        break;
      }
      case '--fault':
        Object.assign(options.faults, parseFault(value()));
        break;
      case '-h':
      case '--help':
        return { faults: {}, help: true };
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}\n${EMULATOR_CLI_USAGE}`);
    }
  }
  if ([options.tcp, options.pty, options.hidg].filter((x) => x !== undefined).length !== 1) throw new Error(`give exactly one of --tcp, --pty and --hidg\n${EMULATOR_CLI_USAGE}`);
  return options;
}

export interface EmulatorCliIo {
  /** Where the ready line and status lines go. */
  out: (line: string) => void;
  /** Signals are taken from this process. */
  process: NodeJS.Process;
}

/** Runs until SIGINT or SIGTERM; resolves after everything is closed. */
export async function runDongleEmulatorCli(argv: string[], io: EmulatorCliIo = { out: (l) => process.stdout.write(`${l}\n`), process }): Promise<void> {
  const options = parseEmulatorArgs(argv);
  if (options.help) {
    io.out(EMULATOR_CLI_HELP);
    return;
  }
  const dongle = await EmulatedDongle.open({
    ...(options.statePath === undefined ? {} : { statePath: options.statePath }),
    ...(options.serial === undefined ? {} : { serial: options.serial }),
    faults: options.faults,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  let handle: ServeHandle;
  try {
    handle = options.tcp ? await dongle.serveTcp(options.tcp.host, options.tcp.port) : options.hidg ? await dongle.serveHidGadget(options.hidg) : await dongle.serveSerial(options.pty!);
  } catch (error) {
    await dongle.close();
    throw error;
  }
  const proc = io.process;
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      proc.off('SIGINT', stop);
      proc.off('SIGTERM', stop);
      proc.off('SIGUSR1', toggle);
      resolve();
    };
    const toggle = (): void => {
      const unplugged = dongle.toggleUnplugged();
      io.out(`licd dongle emulator ${dongle.serial} ${unplugged ? 'unplugged' : 'plugged in'}`);
    };
    proc.on('SIGINT', stop);
    proc.on('SIGTERM', stop);
    proc.on('SIGUSR1', toggle);
    io.out(
      `licd dongle emulator serving ${handle.address} serial ${dongle.serial} public-key ${toHex(dongle.publicKey)} state ${options.statePath ?? '(memory)'}${dongle.unplugged ? ' (unplugged)' : ''}${dongle.clockNow() === null ? '' : ` clock ${new Date(dongle.clockNow()!).toISOString()}`}`,
    );
  });
  await dongle.close();
}

// Direct use: `tsx firmware-bridge/cli.ts --tcp 127.0.0.1:0 ...` (tests and development).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDongleEmulatorCli(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 2;
  });
}
