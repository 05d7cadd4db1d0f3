/**
 * licd-console: the maintenance console on a serial line (the USB gadget port /dev/ttyGS0, a
 * USB-serial adapter, the Pi's pins, or any tty). It reopens the line when it drops, and works
 * without licd or the broker for everything that does not need them (docs/console.md).
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SerialPort } from 'serialport';
import { dryRunOps, fileAudit, fileCredentials, fileLockout, mqttAdmin, readAuditTail, systemdOps } from './backends.ts';
import { consoleCommands } from './commands.ts';
import { ConsoleSession } from './session.ts';

export const CONSOLE_HELP = `licd-console: the maintenance console on a serial line

usage: licd-console --tty PATH [options]

  --tty PATH                  the serial line (/dev/ttyGS0, /dev/ttyUSB0, /dev/serial0, a pty)
  --baud N                    line speed (default 115200; 8N1, no flow control)
  --broker URL                licd's broker (default mqtt://127.0.0.1:1883); on the appliance
                              mqtts://127.0.0.1:8883, where mosquitto takes the admin login
  --broker-cert FILE          for mqtts://: trust the broker whose certificate is this file (the
                              box's own, /etc/licd/tls/cert.pem), pinned by its fingerprint
  --admin-password-file FILE  the admin password (default /etc/licd/admin.password)
  --setup-code-file FILE      a one-time setup code that also logs in (until a password is set)
  --mosquitto-password-file FILE  where "password" sets the admin password for mosquitto
                              (default /etc/mosquitto/licd.passwd)
  --state-dir DIR             lock-out state and the audit log (default /var/lib/licd-console)
  --idle S                    log out after S seconds without input (default 600)
  --network-dir DIR           where the LAN port's networkd file is written (default /etc/systemd/network)
  --dry-run                   service, reboot, network and password changes only say what they would do
                              (the network file is still written when --network-dir is given)
  --utc                       times in UTC
`;

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: argv,
      options: {
        tty: { type: 'string' },
        baud: { type: 'string' },
        broker: { type: 'string' },
        'broker-cert': { type: 'string' },
        'admin-password-file': { type: 'string' },
        'setup-code-file': { type: 'string' },
        'mosquitto-password-file': { type: 'string' },
        'state-dir': { type: 'string' },
        'network-dir': { type: 'string' },
        idle: { type: 'string' },
        'dry-run': { type: 'boolean' },
        utc: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    process.stderr.write(`licd-console: ${(e as Error).message}; licd-console --help lists the options\n`);
    process.exit(64);
  }
  if (v.help) {
    process.stdout.write(CONSOLE_HELP);
    return;
  }
  const tty = v.tty as string | undefined;
  if (!tty) {
    process.stderr.write('licd-console: --tty PATH is needed (e.g. --tty /dev/ttyGS0)\n');
    process.exit(64);
  }
  const baudRate = Number(v.baud ?? 115200);
  const idle = Number(v.idle ?? 600);
  if (!Number.isInteger(baudRate) || baudRate < 300 || !Number.isInteger(idle) || idle < 5) {
    process.stderr.write('licd-console: --baud must be a line speed (e.g. 115200) and --idle at least 5 seconds\n');
    process.exit(64);
  }
  const adminPasswordFile = (v['admin-password-file'] as string | undefined) ?? '/etc/licd/admin.password';
  const setupCodeFile = v['setup-code-file'] as string | undefined;
  const stateDir = (v['state-dir'] as string | undefined) ?? '/var/lib/licd-console';
  const line = tty.replace(/^\/dev\//, '');
  const networkDir = v['network-dir'] as string | undefined;
  const system = v['dry-run']
    ? dryRunOps({ adminPasswordFile, ...(networkDir ? { networkDir } : {}) })
    : systemdOps({ adminPasswordFile, setupCodeFile, mosquittoPasswordFile: (v['mosquitto-password-file'] as string | undefined) ?? '/etc/mosquitto/licd.passwd', ...(networkDir ? { networkDir } : {}) });
  const brokerCert = v['broker-cert'] as string | undefined;
  const api = mqttAdmin({ url: (v.broker as string | undefined) ?? 'mqtt://127.0.0.1:1883', adminPasswordFile, ...(brokerCert ? { brokerCert } : {}) });
  const auditFile = join(stateDir, 'audit.log');
  const audit = fileAudit(auditFile, line);
  const lockout = fileLockout(join(stateDir, 'lockout.json'));
  const credentials = fileCredentials({ adminPasswordFile, setupCodeFile });
  const host = hostname();
  let stopping = false;
  let reported = false;

  const openOnce = () =>
    new Promise<void>((resolve) => {
      const port = new SerialPort({ path: tty, baudRate, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: false, xoff: false, autoOpen: false });
      port.open((e) => {
        if (e) {
          if (!reported) process.stderr.write(`licd-console: cannot open ${tty} (${e.message}); retrying every 2 s\n`);
          reported = true;
          setTimeout(resolve, 2000);
          return;
        }
        reported = false;
        process.stderr.write(`licd-console: serving ${tty} at ${baudRate} 8N1\n`);
        const session = new ConsoleSession({
          write: (s) => {
            if (port.isOpen) port.write(s, 'latin1');
          },
          credentials,
          lockout,
          audit,
          commands: consoleCommands({ api, system, utc: Boolean(v.utc), auditLog: (n) => readAuditTail(auditFile, n) }),
          idleSeconds: idle,
          hostName: host,
          banner: () => `\nlicd maintenance console on ${host} (${line})`,
        });
        port.on('data', (d: Buffer) => session.feed(d));
        port.on('error', () => undefined);
        port.on('close', () => {
          session.close();
          process.stderr.write(`licd-console: ${tty} closed; reopening\n`);
          setTimeout(resolve, 1000);
        });
        session.start();
      });
    });
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    process.once(sig, () => {
      stopping = true;
      process.exit(0);
    });
  while (!stopping) await openOnce();
}
