/** Activation on the box and at the vendor; the commands themselves are in ../activate-cmds.ts (docs/activation.md). */
import { activateCommand, vendorActivationCommand } from '../activate-cmds.ts';
import type { Command } from '../command.ts';
import { cmdContext } from '../context.ts';

const ADMIN = '--user admin --password-file /etc/licd/admin.password';
const ALLOW_EMULATED = { type: 'boolean', help: 'license an emulated dongle with a production key (development)' } as const;

export const activateCommands: Command[] = [
  {
    path: 'activate request',
    section: 'admin',
    synopsis: 'activate request --out REQUEST.json',
    summary: 'write an activation request signed by the dongle, for the vendor (offline activation)',
    connects: true,
    options: { out: { type: 'string', arg: 'FILE', help: 'the request file to write (its directory must exist)' } },
    json: '{file, dongle, counter}',
    examples: [`licctl activate request --out /media/usb/req.json ${ADMIN}`],
    run: (a) => activateCommand(cmdContext(a), a),
  },
  {
    path: 'activate import',
    section: 'admin',
    synopsis: 'activate import LICENSE.json',
    summary: 'install a license now, without a restart (an older one than installed is refused)',
    details: 'Live leases of features still licensed stay; with fewer seats than leased the newest leases end (LICENSE_REDUCED); borrows stay until their tokens end.',
    connects: true,
    args: { min: 1, max: 1, names: 'the LICENSE.json file' },
    json: 'the install result: the license, features added, changed and removed, leases ended',
    examples: [`licctl activate import /media/usb/license.json ${ADMIN}`],
    run: (a) => activateCommand(cmdContext(a), a),
  },
  {
    path: 'activate online',
    section: 'admin',
    synopsis: 'activate online [--url URL]',
    summary: "the box asks the vendor's activation service (activation.url) and installs the answer",
    connects: true,
    options: { url: { type: 'string', arg: 'URL', help: 'the activation service for this call (default: the box\'s activation.url / LICD_ACTIVATION_URL)' } },
    json: '{url, ...the install result}',
    examples: [`licctl activate online ${ADMIN}`],
    run: (a) => activateCommand(cmdContext(a), a),
  },
  {
    path: 'vendor activate',
    section: 'vendor',
    synopsis: 'vendor activate REQUEST.json --key VENDOR.key --spec SPEC --out LICENSE.json [--allow-emulated]',
    summary: "verify a box's activation request and issue a license bound to its dongle",
    details: 'SPEC: a file with one entitlement spec, a file {default, dongles: {SERIAL: spec}}, or a directory of SERIAL.json and default.json (docs/activation.md).',
    args: { min: 1, max: 1, names: 'the REQUEST.json file' },
    options: {
      key: { type: 'string', arg: 'VENDOR.key', help: 'the vendor key file' },
      spec: { type: 'string', arg: 'FILE|DIR', help: 'what to license (see above)' },
      out: { type: 'string', arg: 'FILE', help: 'the license file to write' },
      'allow-emulated': ALLOW_EMULATED,
    },
    json: '{file, id, dongle, features}',
    examples: ['licctl vendor activate req.json --key vendor.key --spec specs/ --out license.json'],
    run: (a) => vendorActivationCommand(cmdContext(a), a),
  },
  {
    path: 'vendor serve',
    section: 'vendor',
    synopsis: 'vendor serve --key VENDOR.key --specs FILE|DIR [--listen HOST:PORT] [--allow-emulated]',
    summary: 'the online activation service: POST /v1/activate answers a request with a license; until Ctrl-C',
    options: {
      key: { type: 'string', arg: 'VENDOR.key', help: 'the vendor key file' },
      specs: { type: 'string', arg: 'FILE|DIR', help: 'what to license, as for vendor activate --spec; re-read at each request' },
      listen: { type: 'string', arg: 'HOST:PORT', help: 'where to listen (default 127.0.0.1:8470; port 0 picks a free one)' },
      'allow-emulated': ALLOW_EMULATED,
    },
    examples: ['licctl vendor serve --key vendor.key --specs /srv/licd/specs --listen 0.0.0.0:8470'],
    run: (a) => vendorActivationCommand(cmdContext(a), a),
  },
];
