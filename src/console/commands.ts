/**
 * The console's commands. License operations go through licd's admin API over MQTT, the same
 * requests licctl sends (one implementation of each operation, in the daemon); the box's own
 * operations (logs, services, power, network, the admin password) go through SystemOps, which has
 * a real systemd backend and a dry-run one. Nothing here runs a shell or reads a file a command
 * does not name in its help.
 */
import { isLicdError } from '../core/errors.ts';
import type { ActivationRequestResult, AlertsResult, BorrowView, LicenseInstallResult, QuarantineReleaseResult, RevokeResult, StatusResult } from '../core/protocol.ts';
import { wrap } from '../cli/command.ts';
import { failoverLine, featureExpired } from '../cli/commands/use.ts';
import { REPORTS, toCsv } from '../cli/commands/report.ts';
import { parseDuration } from '../cli/holding.ts';
import { formatTime } from '../cli/time.ts';
import { describeNetwork, NetworkUsage, parseStatic, type NetworkConfig } from './network.ts';
import type { CommandIO, ConsoleCommand } from './session.ts';

/** licd's admin API (src/console/backends.ts connects it as the admin user). */
export interface AdminApi {
  request<T>(type: string, body?: Record<string, unknown>): Promise<T>;
}

/** What the box does outside licd. */
export interface SystemOps {
  logs(o: { lines: number; level?: string | undefined; unit?: string | undefined }): Promise<string>;
  restart(service: 'licd' | 'mosquitto'): Promise<string>;
  power(action: 'reboot' | 'poweroff'): Promise<string>;
  setAdminPassword(password: string): Promise<string>;
  network(): Promise<string>;
  /** Writes the LAN port's settings and applies them. */
  setNetwork(c: NetworkConfig): Promise<string>;
}

export class ConsoleUsage extends Error {}

const LEVELS = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];

async function admin<T>(api: AdminApi, type: string, body: Record<string, unknown> = {}): Promise<T> {
  try {
    return await api.request<T>(type, body);
  } catch (e) {
    if (isLicdError(e)) throw new Error(`${e.code}: ${e.message}`);
    throw e;
  }
}

function needArgs(args: string[], min: number, max: number, usage: string): void {
  if (args.length < min || args.length > max) throw new ConsoleUsage(`usage: ${usage}`);
}

/** `[N] [ymodem]`, as the export commands take them: a count from 1 to max (dflt when absent), and whether to send by YMODEM. */
function countAndYmodem(args: string[], cmd: string, name: string, dflt: number, max: number): { n: number; ymodem: boolean } {
  const usage = `${cmd} [${name}] [ymodem]`;
  needArgs(args, 0, 2, usage);
  const ymodem = args.at(-1) === 'ymodem';
  const rest = ymodem ? args.slice(0, -1) : args;
  if (rest.length > 1) throw new ConsoleUsage(usage);
  const n = rest[0] === undefined ? dflt : Number(rest[0]);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new ConsoleUsage(`${cmd}: ${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(rest[0])}`);
  return { n, ymodem };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`the pasted ${what} is not valid JSON (${(e as Error).message}); paste the whole file, then a line with a single "."`);
  }
}

/** Status in 80 columns (the console's terminal): the server, then per feature its counts and holders. */
function compactStatus(s: StatusResult, time: (t: string | number | Date) => string): string {
  const srv = s.server;
  const lines = [`licd ${srv.version}: ${srv.state}, ${srv.dongle.present ? `dongle ${srv.dongle.serial ?? '?'}${srv.dongle.emulated ? ' (emulated)' : ''}` : `DONGLE ABSENT (${srv.dongle.reason ?? 'not answering'})`}${srv.development ? ', DEVELOPMENT' : ''}`];
  if (srv.entitlement) lines.push(wrap(`${srv.entitlement.id} for ${srv.entitlement.customer}`, 'license ', 2));
  for (const w of srv.warnings) lines.push(wrap(w, 'warning: ', 2));
  if (srv.failover) lines.push(wrap(failoverLine(srv.failover, time), '', 2));
  for (const x of srv.alerts ?? []) lines.push(wrap(x.summary, `alert (${x.severity}): `, 2));
  for (const q of s.quarantine) lines.push(`quarantine: ${q.feature} ${q.seats} seats until ${time(q.until)}`);
  lines.push('', `${'FEATURE'.padEnd(20)} ${'TOTAL'.padStart(5)} ${'LEASED'.padStart(6)} ${'BORROWED'.padStart(8)} ${'FREE'.padStart(5)}  EXPIRES`);
  const now = Date.now();
  for (const f of s.features) {
    const expired = featureExpired(f, now);
    lines.push(`${f.feature.slice(0, 20).padEnd(20)} ${String(f.total).padStart(5)} ${String(f.leased).padStart(6)} ${String(f.borrowed).padStart(8)} ${String(expired ? 0 : f.free).padStart(5)}  ${f.expires ? `${expired ? 'expired ' : ''}${time(f.expires).slice(0, 10)}` : 'permanent'}`);
    for (const l of f.leases) lines.push(`  leased   ${`${l.count > 1 ? `${l.count}x ` : ''}${l.user}@${l.host}`.slice(0, 34).padEnd(34)} until ${time(l.until).slice(11, 19)} ${l.id}`);
    for (const b of f.borrows) lines.push(`  borrowed ${`${b.count > 1 ? `${b.count}x ` : ''}${b.user}@${b.hostName}`.slice(0, 34).padEnd(34)} until ${time(b.until).slice(0, 10)} ${b.id}`);
  }
  return lines.join('\n');
}

async function applyNetwork(io: CommandIO, system: SystemOps, c: NetworkConfig): Promise<void> {
  io.print(`new network settings: ${describeNetwork(c)}`);
  if (!(await io.confirm('apply them now? A wrong address cuts the box off the LAN until it is fixed here'))) return io.print('nothing changed');
  io.print(await system.setNetwork(c));
}

function installed(r: LicenseInstallResult): string {
  if (r.unchanged) return `license ${r.installed.id} is installed already; nothing changed`;
  const parts = [`license ${r.installed.id} for ${r.installed.customer} installed (was ${r.was.id})`];
  if (r.added.length) parts.push(`added: ${r.added.join(', ')}`);
  if (r.changed.length) parts.push(`changed: ${r.changed.join(', ')}`);
  if (r.removed.length) parts.push(`removed: ${r.removed.join(', ')}`);
  if (r.ended.length) parts.push(`${r.ended.length} lease(s) ended (fewer seats): ${r.ended.map((e) => `${e.feature} ${e.user}@${e.host}`).join(', ')}`);
  if (r.warning) parts.push(`warning: ${r.warning}`);
  return parts.join('\n');
}

export function consoleCommands(o: { api: AdminApi; system: SystemOps; utc?: boolean; features?: () => string[]; auditLog?: (lines: number) => string[] }): ConsoleCommand[] {
  const time = (t: string | number | Date) => formatTime(t, { utc: o.utc ?? false });
  const features = o.features ?? (() => []);
  const status = () => admin<StatusResult>(o.api, 'status', {});
  const commands: ConsoleCommand[] = [
    {
      name: 'help',
      args: '[COMMAND]',
      summary: 'the commands, or one command',
      complete: () => commands.map((c) => c.name.split(' ')[0]!),
      run: async (io, args) => {
        const which = args.join(' ');
        const list = which ? commands.filter((c) => c.name === which || c.name.startsWith(`${which} `)) : commands;
        if (list.length === 0) throw new ConsoleUsage(`no command ${JSON.stringify(which)}`);
        const w = Math.min(30, Math.max(...list.map((c) => `${c.name} ${c.args ?? ''}`.length)));
        for (const c of list) {
          const head = `${c.name} ${c.args ?? ''}`.trimEnd();
          io.print(head.length > w ? `  ${head}\n${wrap(c.summary, ''.padEnd(w + 4))}` : wrap(c.summary, `  ${head.padEnd(w)}  `));
        }
        if (!which) io.print('Tab completes, Up/Down recall, Ctrl-C cancels a command, Ctrl-D logs out.');
      },
    },
    {
      name: 'status',
      summary: 'server state, dongle, features and who holds them',
      run: async (io) => io.print(compactStatus(await status(), time)),
    },
    {
      name: 'leases',
      args: '[FEATURE]',
      summary: 'the leases, with their ids (for revoke)',
      complete: features,
      run: async (io, args) => {
        needArgs(args, 0, 1, 'leases [FEATURE]');
        const s = await status();
        let n = 0;
        for (const f of s.features.filter((x) => !args[0] || x.feature === args[0])) {
          for (const l of f.leases) {
            n++;
            io.print(`${l.id}  ${f.feature} x${l.count}  ${l.user}@${l.host}  pid ${l.pid}  until ${time(l.until).slice(11, 19)}`);
          }
        }
        if (n === 0) io.print('no leases');
      },
    },
    {
      name: 'borrows',
      summary: 'every borrow: user, host, feature, until, state',
      run: async (io) => {
        const r = await admin<{ borrows: BorrowView[] }>(o.api, 'borrows');
        for (const b of r.borrows) io.print(`${b.id}  ${b.feature} x${b.count}  ${b.user}@${b.hostName}  until ${time(b.until).slice(0, 16)}  ${b.state}`);
        if (r.borrows.length === 0) io.print('no borrows');
      },
    },
    {
      name: 'alerts',
      summary: 'the active alerts, with the user and hosts of a double use',
      run: async (io) => {
        const r = await admin<AlertsResult>(o.api, 'alerts.list');
        for (const x of r.alerts) io.print(wrap(x.message, `${x.severity.toUpperCase()} since ${time(x.since).slice(0, 16)}: `, 2));
        if (r.alerts.length === 0) io.print('no active alerts');
      },
    },
    {
      name: 'revoke',
      args: 'LEASE_ID [BLOCK]',
      summary: 'take a lease back (BLOCK: also refuse its user@host for 30m, 2h, 1d)',
      run: async (io, args) => {
        needArgs(args, 1, 2, 'revoke LEASE_ID [BLOCK]');
        const block = args[1] === undefined ? undefined : parseDuration(args[1], 'BLOCK');
        if (!(await io.confirm(`revoke lease ${args[0]}${args[1] ? ` and block its holder for ${args[1]}` : ''}?`))) return io.print('nothing done');
        const r = await admin<RevokeResult>(o.api, 'lease.revoke', { lease: args[0], ...(block ? { block } : {}) });
        io.print(`revoked ${r.revoked.feature} held by ${r.revoked.user}@${r.revoked.host}${r.blockedUntil ? `; blocked until ${time(r.blockedUntil)}` : ''}`);
      },
    },
    {
      name: 'lost',
      args: 'BORROW_ID',
      summary: 'mark a borrow lost (its seat stays reserved until the token expires)',
      run: async (io, args) => {
        needArgs(args, 1, 1, 'lost BORROW_ID');
        if (!(await io.confirm(`mark borrow ${args[0]} lost? This cannot be undone`))) return io.print('nothing done');
        const r = await admin<{ borrow: BorrowView }>(o.api, 'borrow.lost', { borrow: args[0] });
        io.print(`borrow ${r.borrow.id} marked lost; its seat is reserved until ${time(r.borrow.until)}`);
      },
    },
    {
      name: 'clock show',
      summary: "the box's time and licd's clock warnings",
      run: async (io) => {
        const s = await status();
        io.print(`box time: ${time(Date.now())}`);
        const w = s.server.warnings.filter((x) => /clock|time/i.test(x));
        io.print(w.length ? w.map((x) => `warning: ${x}`).join('\n') : 'no clock warnings');
      },
    },
    {
      name: 'clock accept',
      summary: "vouch for the box's clock after a set-back warning",
      run: async (io) => {
        if (!(await io.confirm('accept the current time as correct?'))) return io.print('nothing done');
        const r = await admin<{ highWater: string; was: string }>(o.api, 'clock.accept');
        io.print(`clock accepted: high-water mark ${time(r.highWater)} (was ${time(r.was)})`);
      },
    },
    {
      name: 'license show',
      summary: 'the installed license: id, customer, features, seats, expiry',
      run: async (io) => {
        const s = await status();
        io.print(s.server.entitlement ? `license ${s.server.entitlement.id} for ${s.server.entitlement.customer}` : 'no license installed');
        for (const f of s.features) io.print(`  ${f.feature.padEnd(18)} ${String(f.total).padStart(4)} seats  ${f.type.padEnd(11)} ${f.expires ? `until ${time(f.expires)}` : 'permanent'}`);
      },
    },
    {
      name: 'license import',
      args: '[ymodem]',
      summary: 'install a license file, pasted or sent by YMODEM (takes effect at once)',
      complete: () => ['ymodem'],
      run: async (io, args) => {
        needArgs(args, 0, 1, 'license import [ymodem]');
        if (args[0] !== undefined && args[0] !== 'ymodem') throw new ConsoleUsage('license import [ymodem]: paste the file, or send it by YMODEM');
        const text = args[0] === 'ymodem' ? (await io.ymodem()).data.toString('utf8') : await io.paste('the license file (JSON)');
        const license = parseJson(text, 'license');
        if (!(await io.confirm('install this license?'))) return io.print('nothing done');
        io.print(installed(await admin<LicenseInstallResult>(o.api, 'license.install', { license })));
      },
    },
    {
      name: 'license request',
      summary: 'an activation request signed by the dongle, printed to copy to the vendor (offline activation)',
      run: async (io) => {
        const r = await admin<ActivationRequestResult>(o.api, 'activation.request');
        io.print(`activation request for dongle ${r.dongle} (counter ${r.counter}); copy everything between the lines into a file for the vendor:`);
        io.print('-----');
        io.print(JSON.stringify(r.request));
        io.print('-----');
      },
    },
    {
      name: 'license online',
      summary: "activate online: the box asks the vendor's activation service (activation.url) and installs the answer",
      run: async (io) => {
        if (!(await io.confirm('ask the vendor for this box\'s license now and install it?'))) return io.print('nothing done');
        io.print(installed(await admin<LicenseInstallResult>(o.api, 'activation.online')));
      },
    },
    {
      name: 'quarantine release',
      summary: 'lift a quarantine with a vendor-signed release, by pasting it',
      run: async (io) => {
        const release = parseJson(await io.paste('the release file (JSON)'), 'release');
        const r = await admin<QuarantineReleaseResult>(o.api, 'quarantine.release', { release });
        io.print(`released: ${r.released.map((x) => `${x.feature} (${x.seats})`).join(', ') || 'nothing'}${r.remaining.length ? `; still held: ${r.remaining.map((x) => x.feature).join(', ')}` : ''}`);
      },
    },
    {
      name: 'tls',
      summary: "the box's TLS certificate fingerprint (what clients pin)",
      run: async (io) => {
        const s = await status();
        io.print(s.server.tls ? `TLS${s.server.tls.port ? ` on port ${s.server.tls.port}` : ''}: ${s.server.tls.fingerprint}` : 'TLS is off');
      },
    },
    {
      name: 'logs',
      args: '[LINES] [LEVEL]',
      summary: `the last log lines of licd and mosquitto (LEVEL: ${LEVELS.join(', ')})`,
      complete: () => LEVELS,
      run: async (io, args) => {
        needArgs(args, 0, 2, 'logs [LINES] [LEVEL]');
        let lines = 30;
        let level: string | undefined;
        for (const a of args) {
          if (/^\d+$/.test(a) && Number(a) >= 1 && Number(a) <= 2000) lines = Number(a);
          else if (LEVELS.includes(a)) level = a;
          else throw new ConsoleUsage(`logs: ${JSON.stringify(a)} is neither a number of lines (1 to 2000) nor a level (${LEVELS.join(', ')})`);
        }
        io.print(await o.system.logs({ lines, level }));
      },
    },
    {
      name: 'service restart',
      args: 'licd|mosquitto',
      summary: 'restart licd or the broker (clients reconnect; leases survive)',
      complete: () => ['licd', 'mosquitto'],
      run: async (io, args) => {
        needArgs(args, 1, 1, 'service restart licd|mosquitto');
        const s = args[0];
        if (s !== 'licd' && s !== 'mosquitto') throw new ConsoleUsage('service restart licd|mosquitto');
        if (!(await io.confirm(`restart ${s}?`))) return io.print('nothing done');
        io.print(await o.system.restart(s));
      },
    },
    {
      name: 'network show',
      summary: 'addresses, routes and DNS servers',
      run: async (io) => io.print(await o.system.network()),
    },
    {
      name: 'network dhcp',
      summary: 'take the address, DNS and NTP servers from DHCP (the default)',
      run: async (io, args) => {
        needArgs(args, 0, 0, 'network dhcp');
        await applyNetwork(io, o.system, { mode: 'dhcp' });
      },
    },
    {
      name: 'network static',
      args: 'ADDR/PREFIX GATEWAY [dns IP...] [ntp HOST...]',
      summary: 'a fixed address, e.g. network static 192.168.10.2/24 192.168.10.1 dns 192.168.10.1',
      run: async (io, args) => {
        let c: NetworkConfig;
        try {
          c = parseStatic(args);
        } catch (e) {
          if (e instanceof NetworkUsage) throw new ConsoleUsage(`${e.message}; nothing changed`);
          throw e;
        }
        await applyNetwork(io, o.system, c);
      },
    },
    {
      name: 'password',
      summary: 'set the admin password (for licctl, the web page and this console)',
      run: async (io) => {
        const a = await io.ask('new admin password: ', { masked: true });
        if (a.length < 10) throw new ConsoleUsage('the admin password needs at least 10 characters; nothing changed');
        const b = await io.ask('again: ', { masked: true });
        if (a !== b) throw new ConsoleUsage('the two passwords differ; nothing changed');
        io.print(await o.system.setAdminPassword(a));
      },
    },
    {
      name: 'export usage',
      args: '[DAYS] [ymodem]',
      summary: 'hours used per user over the last DAYS (30 by default), for chargeback, as CSV: printed between two lines of dashes to copy, or sent by YMODEM',
      run: async (io, args) => {
        const { n: days, ymodem } = countAndYmodem(args, 'export usage', 'DAYS', 30, 3660);
        const to = new Date();
        const from = new Date(to.getTime() - days * 86_400_000);
        // The same admin operation and columns as licctl report users --format csv.
        const spec = REPORTS.users!;
        const r = await admin<{ rows: Array<Record<string, unknown>>; more: number; by: string }>(o.api, spec.op, { from: from.toISOString(), to: to.toISOString(), by: 'user', limit: 100_000 });
        const csv = toCsv(spec.columns(r.by ?? 'user'), r.rows);
        const name = `licd-usage-${from.toISOString().slice(0, 10)}-${to.toISOString().slice(0, 10)}.csv`;
        if (ymodem) return io.ymodemSend(name, Buffer.from(csv, 'utf8'));
        io.print(`${name}: hours used per user, ${r.rows.length} row(s), CSV; copy everything between the lines:`);
        io.print(['-----', csv.replace(/\r\n$/, '').replace(/\r\n/g, '\n'), '-----'].join('\n'));
      },
    },
    {
      name: 'export audit',
      args: '[LINES] [ymodem]',
      summary: "the console's audit log (the last LINES, 200 by default): printed between two lines of dashes to copy, or sent by YMODEM",
      run: async (io, args) => {
        const { n, ymodem } = countAndYmodem(args, 'export audit', 'LINES', 200, 100_000);
        const lines = o.auditLog?.(n) ?? [];
        if (ymodem) return io.ymodemSend('licd-console-audit.jsonl', Buffer.from(lines.map((l) => l + '\n').join(''), 'utf8'));
        io.print(`audit log: ${lines.length} line(s), one JSON object each; copy everything between the lines:`);
        io.print(['-----', ...lines, '-----'].join('\n'));
      },
    },
    {
      name: 'reboot',
      summary: 'restart the box',
      run: async (io) => {
        if (!(await io.confirm('reboot the box? Clients lose the server until it is back'))) return io.print('nothing done');
        io.print(await o.system.power('reboot'));
      },
    },
    {
      name: 'shutdown',
      summary: 'power the box off (it needs a power cycle to come back)',
      run: async (io) => {
        if (!(await io.confirm('power the box off? It needs a power cycle to come back'))) return io.print('nothing done');
        io.print(await o.system.power('poweroff'));
      },
    },
  ];
  return commands;
}

export type { CommandIO };
