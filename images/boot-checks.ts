/**
 * The boot test's checks that need the inside of the VM (images/boot-test.sh runs this after its
 * MQTT checks, with the VM still up). Two channels reach the guest:
 *  - the agent (images/boot-agent.sh, on the virtio port "licd-agent"): systemd-analyze security,
 *    the root's size, a HID dongle plugged in through dummy_hcd, the dev vendor key;
 *  - the maintenance console (virtio port "licd-console"), bridged in the guest to the host side of
 *    the box's own USB gadget serial port (licd-console@ttyGS0 on dummy_hcd), as a laptop on the
 *    USB cable would see it.
 *
 *   node --import tsx images/boot-checks.ts RUN_DIR BROKER_URL ADMIN_PASSWORD_FILE [--console] [--root-min-mib N]
 *
 * Prints one line per check; exits 1 at the first that fails (the message says what was seen).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';

const [run, broker, adminPasswordFile, ...flags] = process.argv.slice(2);
if (!run || !broker || !adminPasswordFile) {
  console.error('usage: boot-checks.ts RUN_DIR BROKER_URL ADMIN_PASSWORD_FILE [--console] [--root-min-mib N]');
  process.exit(64);
}
const REPO = new URL('..', import.meta.url).pathname;
const withConsole = flags.includes('--console');
const rootMin = flags.includes('--root-min-mib') ? Number(flags[flags.indexOf('--root-min-mib') + 1]) : 0;
const T0 = Date.now();
const secs = () => Math.round((Date.now() - T0) / 1000);

function fail(msg: string): never {
  console.error(`BOOT CHECK FAILED after ${secs()} s: ${msg}`);
  process.exit(1);
}

/** A stream socket to a qemu chardev, reconnecting until it opens. */
async function open(path: string, timeoutMs = 60_000): Promise<Socket> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((res, rej) => {
        const s = connect(path, () => res(s));
        s.once('error', rej);
      });
    } catch (e) {
      if (Date.now() > end) fail(`cannot connect to ${path}: ${(e as Error).message}`);
      await sleep(500);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends one command to the agent; resolves with its lines (without the "AGENT cmd " prefix). */
async function agent(cmd: string, timeoutMs = 300_000): Promise<string[]> {
  const s = await open(join(run!, 'agent.sock'), 600_000);
  let buf = '';
  s.on('data', (d: Buffer) => (buf += d.toString('utf8')));
  s.write(`${cmd}\n`);
  const end = Date.now() + timeoutMs;
  const done = new RegExp(`^AGENT ${cmd} END$`, 'm');
  while (!done.test(buf)) {
    if (Date.now() > end) fail(`the agent did not finish "${cmd}" within ${timeoutMs / 1000} s; it said: ${JSON.stringify(buf)}`);
    await sleep(200);
  }
  s.destroy();
  return buf
    .split('\n')
    .filter((l) => l.startsWith(`AGENT ${cmd} `) && !l.endsWith(' END'))
    .map((l) => l.slice(`AGENT ${cmd} `.length));
}

function licctl(args: string[]): string {
  return execFileSync(process.execPath, [join(REPO, 'bin', 'licctl.mjs'), ...args, '--broker', broker!], { encoding: 'utf8', timeout: 60_000 });
}

async function licdAnswers(timeoutMs: number): Promise<Record<string, any>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(licctl(['status', '--json'])) as Record<string, any>;
    } catch {
      if (Date.now() > end) fail(`licd did not answer over MQTT within ${timeoutMs / 1000} s`);
      await sleep(2000);
    }
  }
}

/** The admin's terminal on the console line: types, and reads the screen from what it last expected. */
async function terminal(path: string) {
  const s = await open(path);
  let screen = '';
  let seen = 0;
  s.on('data', (d: Buffer) => (screen += d.toString('latin1')));
  s.on('error', () => {});
  return {
    line(text: string) {
      s.write(Buffer.from(text + '\r', 'latin1'));
    },
    /** Waits until the screen has been still for quietMs (what was on the way has arrived). */
    async quiet(quietMs: number, timeoutMs = 60_000): Promise<void> {
      const end = Date.now() + timeoutMs;
      let last = screen.length;
      let since = Date.now();
      while (Date.now() - since < quietMs) {
        if (Date.now() > end) return;
        await sleep(100);
        if (screen.length !== last) {
          last = screen.length;
          since = Date.now();
        }
      }
    },
    /** Forgets what is on the screen up to now. */
    skip() {
      seen = screen.length;
    },
    async expect(re: RegExp, timeoutMs = 60_000): Promise<string> {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(screen.slice(seen));
        if (m) {
          const between = screen.slice(seen, seen + m.index + m[0].length);
          seen += m.index + m[0].length;
          return between;
        }
        if (Date.now() > end) fail(`the console never showed ${re}; after the last match it showed ${JSON.stringify(screen.slice(seen).slice(-2000))}`);
        await sleep(50);
      }
    },
    close: () => s.destroy(),
  };
}

// --- systemd-analyze security, inside the box ------------------------------------------------------
const ready = await agent('security');
const rating = (unit: string) => {
  const l = ready.find((x) => x.startsWith(`${unit} `));
  const m = l ? /(\d+(?:\.\d+)?) ([A-Z]+)/.exec(l) : null;
  if (!m) fail(`systemd-analyze security gave nothing for ${unit}: ${JSON.stringify(ready)}`);
  return { score: Number(m[1]), word: m[2]! };
};
const licdSec = rating('licd.service');
const mosqSec = rating('mosquitto.service');
if (licdSec.score >= 5) fail(`systemd-analyze security rates licd.service ${licdSec.score} ${licdSec.word}, not OK (< 5.0)`);
if (mosqSec.score > 3) fail(`systemd-analyze security rates mosquitto.service ${mosqSec.score} ${mosqSec.word}, over 3.0`);
console.log(`security (in the box): licd.service ${licdSec.score} ${licdSec.word}, mosquitto.service ${mosqSec.score} ${mosqSec.word}`);

// --- the root grown to the card ---------------------------------------------------------------------
if (rootMin > 0) {
  const [line] = await agent('root');
  const m = /fs (\d+) MiB part (\d+) MiB disk (\d+) MiB growroot (\S+)/.exec(line ?? '');
  if (!m) fail(`the agent's root line is not understood: ${line}`);
  const fs = Number(m[1]);
  if (fs < rootMin) fail(`the root file system is ${fs} MiB, not grown to the card (at least ${rootMin} MiB expected): ${line}`);
  console.log(`root: grown to the card at first boot: ${line}`);
}

// --- the maintenance console over the USB gadget serial port ----------------------------------------
if (withConsole) {
  const said = await agent('console');
  if (said.some((l) => l.startsWith('FAIL'))) fail(`console: ${said.join('; ')}`);
  console.log(`console: ${said.join('; ')}`);
  const tty = await terminal(join(run, 'console.sock'));
  const password = readFileSync(adminPasswordFile, 'utf8').trim();
  // The console greeted the line when it opened (that may still sit in the USB serial port's
  // buffers); Enter brings a fresh prompt. Type only once the screen is still: a password typed
  // ahead of a new prompt is thrown away by the console.
  tty.line('');
  await tty.expect(/console password: $/);
  await tty.quiet(5000);
  tty.skip();
  tty.line('');
  await tty.expect(/console password: $/);
  await tty.quiet(3000);
  tty.line(password);
  const login = await tty.expect(/> $/);
  if (login.includes(password)) fail('the console echoed the password');
  tty.line('status');
  const status = await tty.expect(/> $/);
  if (!/nuke_i/.test(status)) fail(`the console's status does not list nuke_i: ${JSON.stringify(status)}`);
  if (status.split(/\r?\n/).some((l) => l.length > 80)) fail('the console status is wider than 80 columns');
  console.log('console: logged in with the first-boot admin password (not echoed); status lists the features in 80 columns');

  // The network commands on the box itself (ip, resolvectl, networkd): qemu's DHCP gave 10.0.2.15
  // (with restrict=on it names no router and no DNS server, so there is no default route here).
  tty.line('network show');
  const net = await tty.expect(/> $/);
  if (!/10\.0\.2\.15\/24/.test(net) || !/10\.0\.2\.0\/24 dev \S+ proto kernel/.test(net)) fail(`network show does not show the DHCP address and its route: ${JSON.stringify(net)}`);
  tty.line('network dhcp');
  await tty.expect(/apply them now\?.*\(y\/n\) $/);
  tty.line('y');
  const applied = await tty.expect(/> $/);
  if (!/network set: DHCP/i.test(applied)) fail(`network dhcp did not apply: ${JSON.stringify(applied)}`);
  await licdAnswers(120_000);
  console.log('console: network show on the box (the DHCP address and its route), network dhcp written and applied; licd still answers');

  // Offline activation through the console: the request printed, the vendor's license pasted back.
  tty.line('license request');
  const req = (await tty.expect(/-----\r?\n([\s\S]*?)-----\r?\n/)).split(/-----\r?\n/)[1]!.trim();
  await tty.expect(/> $/);
  writeFileSync(join(run, 'activation-request.json'), req + '\n');
  const [keyB64] = await agent('vendor-key');
  writeFileSync(join(run, 'vendor.key'), Buffer.from(keyB64 ?? '', 'base64'), { mode: 0o600 });
  writeFileSync(
    join(run, 'spec.json'),
    JSON.stringify({
      customer: 'Boot Test Studio',
      features: ['vray_render', 'vray_interface', 'vray_distributed'].map((name) => ({ name, version: '6.0', seats: 2, days: 30, type: 'render', borrow: { allowed: true, maxHours: 72 } }))
        .concat([{ name: 'nuke_i', version: '15.0', seats: 3, days: 30, type: 'render', borrow: { allowed: false, maxHours: 0 } }]),
    }),
  );
  execFileSync(process.execPath, [join(REPO, 'bin', 'licctl.mjs'), 'vendor', 'activate', join(run, 'activation-request.json'), '--key', join(run, 'vendor.key'), '--spec', join(run, 'spec.json'), '--out', join(run, 'license.json')], { encoding: 'utf8' });
  tty.line('license import');
  await tty.expect(/a line with a single "\."/);
  // The whole file on one line, as a terminal's paste of a compact JSON file sends it.
  tty.line(JSON.stringify(JSON.parse(readFileSync(join(run, 'license.json'), 'utf8'))));
  tty.line('.');
  await tty.expect(/install this license\? \(y\/n\) $/);
  tty.line('y');
  const installed = await tty.expect(/> $/);
  if (!/installed/.test(installed)) fail(`the console did not install the license: ${JSON.stringify(installed)}`);
  const after = await licdAnswers(60_000);
  const nuke = (after.features as Array<{ feature: string; total: number }>).find((f) => f.feature === 'nuke_i');
  if (nuke?.total !== 3) fail(`after the import licd serves nuke_i with ${nuke?.total} seats, not 3`);
  console.log('console: license request printed, licensed by the vendor (licctl vendor activate), pasted back and installed: licd serves nuke_i x3 without a restart');

  // Reboot from the console; the box comes back with the new license.
  tty.line('reboot');
  await tty.expect(/reboot the box\?.*\(y\/n\) $/);
  tty.line('y');
  tty.close();
  const t1 = Date.now();
  await sleep(20_000);
  const back = await licdAnswers(900_000);
  const nuke2 = (back.features as Array<{ feature: string; total: number }>).find((f) => f.feature === 'nuke_i');
  if (nuke2?.total !== 3) fail(`after the reboot licd serves nuke_i with ${nuke2?.total} seats, not 3`);
  if (back.server.since === after.server.since) fail('licd was not restarted by the console\'s reboot');
  console.log(`console: reboot confirmed; licd answered again ${Math.round((Date.now() - t1) / 1000)} s later with the imported license`);
}

// --- a HID dongle plugged in after licd started ------------------------------------------------------
const prep = await agent('hid-prepare', 600_000);
console.log(`hid: ${prep.join('; ')}`);
if (!prep.some((l) => / dongle absent/.test(l))) fail(`licd on the HID transport should start without its dongle: ${prep.join('; ')}`);
const plug = await agent('hid-plug', 600_000);
console.log(`hid: ${plug.join('; ')}`);
const m = /present (yes|no) after (\d+) s; licd pid (\d+) -> (\d+), restarts (\d+) -> (\d+)/.exec(plug.join('\n'));
if (!m) fail(`the agent's hid-plug answer is not understood: ${plug.join('; ')}`);
if (m[1] !== 'yes') fail('licd did not open the HID dongle plugged in after it started');
if (m[3] !== m[4] || m[5] !== m[6]) fail(`licd restarted to open the HID dongle (pid ${m[3]} -> ${m[4]}, restarts ${m[5]} -> ${m[6]})`);
if (!plug.some((l) => /checkout through the HID dongle ok/.test(l))) fail(`a checkout through the HID dongle failed: ${plug.join('; ')}`);
console.log(`hid: a HID dongle plugged in after start (dummy_hcd gadget) was opened by licd without a restart in ${m[2]} s, and a checkout was signed through it`);
await agent('quit');
