/** licctl: the one command-line tool for users, admins and license issuers. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLicdError, LicdError } from '../core/errors.ts';
import type { EntitlementBody, LicenseType } from '../core/entitlement.ts';
import type { FeatureStatus, StatusResult } from '../core/protocol.ts';
import { escapeText } from '../core/validate.ts';
import { nodeEd25519, systemRandom } from '../crypto/ed25519.ts';
import { LicdClient, type Lease } from '../sdk/client.ts';
import { configuredVendorKey, devVendorPublicKey, resolveConnection, resolveVendorKey } from '../sdk/client-config.ts';
import { settleVendorKey } from '../sdk/known-vendors.ts';
import { fetchChain } from '../sdk/verify.ts';
import { createInterface } from 'node:readline';
import { BorrowClient } from '../sdk/borrow.ts';
import { borrowCommand, borrowsCommand, renewCommand, returnCommand, tokensCommand, type CmdContext } from './borrow-cmds.ts';
import { readJsonFile } from '../files.ts';
import { generateVendorKey, issueEntitlement, readVendorKey, writeFileAtomic } from '../vendor.ts';
import { flag, has, intFlag, parseArgs, UsageError, type ParsedArgs } from './args.ts';
import { activateCommand, vendorActivationCommand } from './activate-cmds.ts';
import { formatTime, timeFormatter, utcWanted } from './time.ts';
import { checkinHeld, checkinLines, EXIT_SEAT_LOST, lossLine, normaliseServer, parseDuration, recordHeld, startChild, watchLoss } from './holding.ts';
import { issueQuarantineRelease } from '../vendor.ts';
import type { QuarantineReleaseResult, RevokeResult } from '../core/protocol.ts';

const HELP = `licctl - licd license server tool

Users and render nodes:
  licctl status [FEATURE] [--json] [--limit N] seats per feature, who holds them (like lmstat)
  licctl checkout FEATURE [--version V] [--count N] [--ttl S]
                                               hold a seat, heartbeating, until interrupted
  licctl run FEATURE [--version V] [--count N] [--on-loss warn|stop] [--grace S] -- COMMAND [ARGS...]
                                               hold a seat while COMMAND runs; exits with its code.
                                               If the seat is lost: warn (default; on stderr every
                                               --warn-every S, 60) or stop COMMAND after --grace S (60)
  licctl checkin [FEATURE] [--json]            release seats held by your licctl checkout processes
                                               from this server (--broker) on this machine
  licctl watch                                 print availability as it changes

Borrowing (offline use):
  licctl borrow                                interactive wizard: products, seats here, preview, borrow
  licctl borrow --feature F[=N] ... [--hours H] [--auto-renew] --yes [--json]
  --trust-vendor-key SHA256:..                 pin the vendor key the server offers (first borrow from a
                                               server; on a terminal licctl shows the fingerprint and asks)
  licctl tokens                                borrowed licenses on this machine and whether usable
  licctl renew [FEATURE|ID ...] [--hours H] [--json]  renew before expiry (never shortens a borrow)
  licctl return FEATURE|ID ... | --all [--json]  give borrowed seats back early
  licctl borrow request --feature F[=N] --hours H --out REQ.json   (machine without network)
  licctl borrow import TOKENS.json                                 (machine without network)
  licctl return --all --out RETURN.json                            (machine without network)
  licctl run uses a valid borrowed token first, so it works with no network at all.

Admins (need an admin identity: --user/--password-file or LICD_MQTT_USER/LICD_MQTT_PASSWORD):
  licctl lease revoke LEASE_ID [--block 30m]   take a lease back (its holder is told); --block also
                                               refuses that user@host the feature for 30m, 2h, 1d
  licctl lease unblock FEATURE USER@HOST       lift such a block before its end
  licctl quarantine release RELEASE.json       lift a quarantine with a vendor-signed release
  licctl borrows [--json]                      every borrow: user, host, feature, since, until
  licctl borrow lost BORROW_ID                 mark a borrow lost (its seat stays reserved to expiry)
  licctl borrow limits [--set LIMITS.json]     per-feature, per-user and per-group borrow limits
  licctl borrow --request REQ.json --out TOKENS.json   turn an air-gapped request into tokens
  licctl return --process RETURN.json                  apply an air-gapped return
  licctl clock accept                          vouch for the server's clock after a set-back warning

License issuers (vendor):
  licctl vendor keygen --out FILE [--dev]      make an Ed25519 vendor key
  licctl vendor issue --key FILE --dongle-serial S --dongle-key HEX [--emulated]
         --customer NAME --feature SPEC [--feature SPEC ...] [--id ID] --out FILE
         SPEC: name=vray_render,version=6.2,seats=4,type=render[,expires=2027-12-31][,borrow=336][,product=TEXT]
  licctl vendor issue --key FILE --spec BODY.json --out FILE
  licctl vendor release-quarantine --key FILE --serial S --counter N [--feature F ...] [--days D] --out FILE
         a release of the quarantine set at dongle S's counter N (licctl status shows both)

Dongle:
  licctl dongle emulate [--state FILE] [--serial S] (--tcp HOST:PORT | --pty PATH) [--fault NAME[=V]]
  licctl dongle info --dongle SPEC              SPEC: tcp:HOST:PORT | serial:PATH | hid:VID:PID

Connection (every command that talks to licd):
  --broker URL         or LICD_BROKER, or "broker" in the client config file
  --config FILE        client config (default ~/.config/licd/client.json, /etc/licd/client.json)
  --user NAME --password-file FILE
                       a password goes only to this machine over mqtt://, else over mqtts://
  --fingerprint SHA256:..  trust an mqtts:// server by its certificate (as licd prints it at
                       start and licctl status shows it); or LICD_TLS_FINGERPRINT, "fingerprint"
  --ca FILE            trust an mqtts:// server whose certificate this CA signed; or
                       LICD_TLS_CA, "ca" in the client config

Times print in local time with the UTC offset (2026-11-30 08:15:02 +01:00, the zone from TZ);
  --utc (any command) or LICD_UTC=1 prints UTC (2026-11-30 07:15:02 UTC). --json keeps ISO UTC.
  Each licctl watch line starts with the time it was seen.

Exit codes: 0 ok, 2 refused (the message says why), 3 no seats, 4 server not reached,
  5 the seat was revoked, blocked or lost (run --on-loss stop), 6 TLS: the server's certificate
  is not the pinned one or not trusted (nothing was sent), 7 every borrowed seat on this machine
  is in use, 64 bad command line (README: "licctl exit codes").
`;

const CONN_FLAGS = ['broker', 'config', 'user', 'password-file', 'timeout', 'vendor-key', 'fingerprint', 'ca'];

async function connect(a: ParsedArgs, admin = false, o: { maintain?: boolean; timeoutMs?: number } = {}): Promise<LicdClient> {
  const conn = resolveConnection({ broker: flag(a, 'broker'), configFile: flag(a, 'config'), user: flag(a, 'user'), passwordFile: flag(a, 'password-file'), fingerprint: flag(a, 'fingerprint'), ca: flag(a, 'ca'), admin });
  const timeoutMs = o.timeoutMs ?? intFlag(a, 'timeout', 100, 600_000) ?? 10_000;
  // A render node that logs in speaks on its login's topics, so that licd knows its user
  // (identity.requireLogin); admin commands go on the admin topic either way.
  const login = !admin && conn.username !== undefined;
  let c: LicdClient;
  try {
    c = await LicdClient.connect({ url: conn.url, ...(conn.username ? { username: conn.username } : {}), ...(conn.password ? { password: conn.password } : {}), ...(conn.tls ? { tls: conn.tls } : {}), ...(login ? { login: true } : {}), timeoutMs });
  } catch (e) {
    // An admin command found no password anywhere: say where a development daemon keeps it.
    if (admin && conn.password === undefined && isLicdError(e) && e.code === 'FORBIDDEN') {
      const dev = join(process.cwd(), process.env.LICD_DATA_DIR ?? 'data', 'admin.password');
      throw new LicdError(
        'FORBIDDEN',
        `the broker at ${conn.url} refused user ${JSON.stringify(conn.username)}: no admin password was given, and ${dev} does not exist. licd keeps the admin password of a development daemon in DATA_DIR/admin.password, DATA_DIR being the daemon's data dir (its LICD_DATA_DIR, ./data by default); give --password-file DATA_DIR/admin.password, or set LICD_DATA_DIR=DATA_DIR in this shell (or LICD_MQTT_USER and LICD_MQTT_PASSWORD, or "passwordFile" in the client config)`,
      );
    }
    throw e;
  }
  if (o.maintain !== false && !admin) await maintainBorrows(a, c);
  return c;
}

/** Whenever licctl reaches the server: auto-renew due tokens, refresh the others (LM-X). */
async function maintainBorrows(a: ParsedArgs, c: LicdClient): Promise<void> {
  try {
    const b = new BorrowClient();
    if (!b.hasTokens()) return;
    const r = await b.maintain(c, vendorKey(a));
    for (const id of r.renewed) err(`licctl: auto-renewed borrow ${id}`);
    for (const u of r.unknownOnServer) err(`licctl: warning: ${u}`);
    for (const e of r.errors) err(`licctl: could not renew: ${e}`);
  } catch (e) {
    err(`licctl: borrowed licenses not maintained: ${(e as Error).message}`);
  }
}

/** The server licctl talks to (its broker URL), as --broker, LICD_BROKER or the client config give it. */
function serverOf(a: ParsedArgs): string {
  return resolveConnection({ broker: flag(a, 'broker'), configFile: flag(a, 'config'), user: flag(a, 'user'), passwordFile: flag(a, 'password-file'), fingerprint: flag(a, 'fingerprint'), ca: flag(a, 'ca') }).url;
}

function vendorKey(a: ParsedArgs): Uint8Array | null {
  let server: string | undefined;
  try {
    server = serverOf(a);
  } catch {
    server = undefined; // offline use needs no valid connection settings; the pin is then not found
  }
  return resolveVendorKey({ flag: flag(a, 'vendor-key'), configFile: flag(a, 'config'), server });
}

/**
 * Before borrowing: the vendor key this server's tokens will verify with must be configured or
 * pinned by the user (known-vendors.ts): --trust-vendor-key FINGERPRINT, or yes at a prompt on a
 * terminal. Otherwise the borrow would succeed and its tokens be unusable offline.
 */
async function settleVendorKeyFor(a: ParsedArgs, c: LicdClient): Promise<void> {
  const chain = await fetchChain(c);
  const tty = process.stdin.isTTY && process.stdout.isTTY;
  await settleVendorKey({
    server: serverOf(a),
    chain,
    configured: configuredVendorKey({ flag: flag(a, 'vendor-key'), configFile: flag(a, 'config') }),
    devKey: devVendorPublicKey(),
    trustFingerprint: flag(a, 'trust-vendor-key'),
    ask: tty
      ? async (q) => {
          const rl = createInterface({ input: process.stdin, output: process.stdout });
          try {
            return await new Promise<string>((res) => rl.question(q, res));
          } finally {
            rl.close();
          }
        }
      : undefined,
    say: (s) => err(`licctl: ${s}`),
  });
}

function cmdContext(a: ParsedArgs): CmdContext {
  return { connect: (admin = false) => connect(a, admin, { maintain: false }), vendorKey: () => vendorKey(a), settleVendorKey: (c) => settleVendorKeyFor(a, c), out, err, time: timeOf(a) };
}

// Everything licctl prints passes through here: a string from the server (or an old database)
// cannot move the cursor, recolour or clear the terminal. Table cells are escaped whole (cell()),
// so a newline inside a user name does not pass for a line of its own either.
function out(s: string): void {
  process.stdout.write(escapeText(s, { keepNewlines: true }) + '\n');
}

function err(s: string): void {
  process.stderr.write(escapeText(s, { keepNewlines: true }) + '\n');
}

/** A value from the network shown in a table or a line. */
const cell = (s: string): string => escapeText(s);

/** How this run prints times: local with the offset, or UTC with --utc / LICD_UTC=1 (src/cli/time.ts). */
function timeOf(a: ParsedArgs): (t: string | number | Date) => string {
  return timeFormatter({ utc: utcWanted(has(a, 'utc')) });
}

/** A feature whose license has ended: no seat of it can be checked out, whatever the counts say. */
function featureExpired(f: FeatureStatus, now: number): boolean {
  return f.expires !== null && Date.parse(f.expires) <= now;
}

export function formatStatus(s: StatusResult, only?: string, time: (t: string | number | Date) => string = (t) => formatTime(t), now = Date.now()): string {
  const lines: string[] = [];
  const srv = s.server;
  const dongle = srv.dongle.present ? `dongle ${cell(srv.dongle.serial ?? '?')} present${srv.dongle.emulated ? ' (emulated)' : ''}` : `DONGLE ABSENT (${cell(srv.dongle.reason ?? 'not answering')})`;
  lines.push(`licd ${cell(srv.version)}: ${srv.state}, ${dongle}${srv.development ? ', DEVELOPMENT MATERIAL' : ''}`);
  if (srv.entitlement) lines.push(`license ${cell(srv.entitlement.id)} for ${cell(srv.entitlement.customer)}`);
  for (const w of srv.warnings) lines.push(`warning: ${cell(w)}`);
  for (const q of s.quarantine) lines.push(`quarantine: ${cell(q.feature)} ${q.seats} seats held until ${time(q.until)}`);
  if (srv.tls) lines.push(`TLS${srv.tls.port ? ` port ${srv.tls.port}` : ''}: certificate ${cell(srv.tls.fingerprint)} (pin it: --fingerprint ${cell(srv.tls.fingerprint)})`);
  for (const b of s.blocks ?? []) lines.push(`blocked: ${cell(b.user)}@${cell(b.host)} from ${cell(b.feature)} until ${time(b.until)} (licctl lease unblock ${cell(b.feature)} ${cell(b.user)}@${cell(b.host)})`);
  if (s.quarantineBinding) lines.push(`quarantine release: the vendor needs dongle serial ${cell(s.quarantineBinding.dongleSerial)} and counter ${cell(String(s.quarantineBinding.counter))} (licctl vendor release-quarantine --serial ${cell(s.quarantineBinding.dongleSerial)} --counter ${cell(String(s.quarantineBinding.counter))})`);
  lines.push('');
  lines.push(`${'FEATURE'.padEnd(18)} ${'VERSION'.padEnd(8)} ${'TYPE'.padEnd(11)} ${'TOTAL'.padStart(5)} ${'LEASED'.padStart(6)} ${'BORROWED'.padStart(8)} ${'FREE'.padStart(5)}  EXPIRES`);
  const features: FeatureStatus[] = only ? s.features.filter((f) => f.feature === only) : s.features;
  for (const f of features) {
    const expired = featureExpired(f, now);
    lines.push(
      `${cell(f.feature).padEnd(18)} ${cell(f.version).padEnd(8)} ${cell(f.type).padEnd(11)} ${String(f.total).padStart(5)} ${String(f.leased).padStart(6)} ${String(f.borrowed).padStart(8)} ${String(expired ? 0 : f.free).padStart(5)}  ${f.expires ? `${expired ? 'expired ' : ''}${time(f.expires)}` : 'permanent'}`,
    );
    for (const l of f.leases) {
      lines.push(`    leased   ${l.count > 1 ? `${l.count}x ` : ''}${cell(l.user)}@${cell(l.host)} pid ${l.pid}  since ${time(l.since)}  until ${time(l.until)}${l.state === 'disconnected' ? '  (client gone, ending)' : ''}  [${cell(l.id)}]`);
    }
    if (f.more && f.more.leases > 0) lines.push(`    ... and ${f.more.leases} more leases (licctl status FEATURE --limit N)`);
    for (const b of f.borrows) {
      lines.push(`    borrowed ${b.count > 1 ? `${b.count}x ` : ''}${cell(b.user)}@${cell(b.hostName)} (host ${cell(b.hostId.slice(0, 12))})  since ${time(b.since)}  until ${time(b.until)}${b.state === 'lost' ? '  LOST (reserved until expiry)' : ''}${b.autoRenew ? '  auto-renew' : ''}  [${cell(b.id)}]`);
    }
  }
  for (const f of features) if (f.more && f.more.borrows > 0) lines.push(`(${cell(f.feature)}: ${f.more.borrows} more borrows not listed)`);
  if (only && features.length === 0) lines.push(`(no feature ${cell(only)}; features: ${s.features.map((f) => cell(f.feature)).join(', ')})`);
  return lines.join('\n');
}

/**
 * Holds the lease until a signal, saying when the seat is lost and why and when it is back. A
 * seat an admin revoked or blocked is not taken again: licctl then exits with EXIT_SEAT_LOST.
 */
async function holdUntilSignal(client: LicdClient, lease: Lease, server: string | null, time: (t: string) => string = (t) => formatTime(t)): Promise<number> {
  const feature = lease.view.feature;
  const held = server === null ? null : recordHeld({ server, feature, lease: lease.id, clientId: client.clientId });
  const writeRecord = () => held?.write(lease.id);
  // Recorded before it is said: a `licctl checkin` run as soon as this line shows finds it.
  writeRecord();
  out('holding; press Ctrl-C (or run licctl checkin) to give it back');
  const ended = await new Promise<'signal' | 'revoked'>((resolve) => {
    const done = () => resolve('signal');
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    process.once('SIGHUP', done);
    lease.on('lost', (e: LicdError, info: { retrying: boolean }) => {
      err(lossLine(feature, e, info.retrying));
      if (!info.retrying) resolve('revoked');
    });
    lease.on('regained', () => {
      writeRecord();
      out(`regained ${feature} (lease ${lease.id}, until ${time(lease.view.until)}); holding`);
    });
  });
  if (ended === 'revoked' || lease.state === 'revoked') {
    client.forget(lease.id);
    held?.remove();
    out(`no longer holding ${feature}: ${lease.lossReason?.code ?? 'REVOKED'}`);
    return EXIT_SEAT_LOST;
  }
  // Held, or lost for a while (the server may still keep it): give it back either way.
  try {
    // A short wait: with the server gone the check-in cannot arrive, and the lease ends by itself.
    await client.request('checkin', { leases: [lease.id] }, { timeoutMs: 3000 });
    client.forget(lease.id);
    out(`checked in ${lease.view.feature} (lease ${lease.id})`);
  } catch (e) {
    client.forget(lease.id);
    err(`licctl: could not check in ${lease.view.feature} (${(e as Error).message}); the seat returns when its lease times out or the server sees this client gone`);
  } finally {
    held?.remove();
  }
  return 0;
}

function leaseLine(lease: Lease, time: (t: string) => string = (t) => formatTime(t)): string {
  const v = lease.view;
  return `${lease.status === 'granted' ? 'granted' : 'extended'} ${v.count > 1 ? `${v.count} seats of ` : ''}${cell(v.feature)} to ${cell(v.user)}@${cell(v.host)} (lease ${cell(v.id)}, until ${time(v.until)}, renewed by heartbeats)`;
}

function parseFeatureSpec(spec: string): EntitlementBody['features'][number] {
  const kv = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--feature ${JSON.stringify(spec)}: each part must be key=value`);
    kv.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const need = (k: string) => {
    const v = kv.get(k);
    if (!v) throw new UsageError(`--feature ${JSON.stringify(spec)} needs ${k}=...`);
    return v;
  };
  const borrow = kv.get('borrow');
  const expires = kv.get('expires');
  if (expires && (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/.test(expires) || Number.isNaN(new Date(expires).getTime()))) {
    throw new UsageError(`--feature ${JSON.stringify(spec)}: expires=${JSON.stringify(expires)} is not a date; give it as YYYY-MM-DD (expires=2027-12-31) or an ISO time (2027-12-31T23:59:59Z)`);
  }
  return {
    name: need('name'),
    version: need('version'),
    seats: Number(need('seats')),
    type: need('type') as LicenseType,
    expires: expires ? new Date(expires).toISOString() : null,
    ...(kv.get('product') ? { product: kv.get('product')! } : {}),
    borrow: borrow && borrow !== '0' ? { allowed: true, maxHours: Number(borrow) } : { allowed: false, maxHours: 0 },
  };
}

async function vendor(a: ParsedArgs): Promise<number> {
  const sub = a.positional[1];
  const ed = nodeEd25519();
  if (sub === 'activate' || sub === 'serve') return vendorActivationCommand(cmdContext(a), a);
  if (sub === 'keygen') {
    const file = flag(a, 'out');
    if (!file) throw new UsageError('vendor keygen needs --out FILE');
    if (existsSync(file)) throw new UsageError(`${file} exists; refusing to overwrite a vendor key`);
    const key = generateVendorKey(ed, systemRandom, has(a, 'dev'));
    writeFileAtomic(file, JSON.stringify(key, null, 2) + '\n', 0o600);
    out(`vendor key written to ${file} (keep it secret)\npublic key: ${key.publicKey}`);
    return 0;
  }
  if (sub === 'issue') {
    const keyFile = flag(a, 'key');
    const file = flag(a, 'out');
    if (!keyFile || !file) throw new UsageError('vendor issue needs --key FILE and --out FILE');
    const key = readVendorKey(keyFile);
    let body: EntitlementBody;
    const spec = flag(a, 'spec');
    if (spec) {
      body = readJsonFile(spec, 'the entitlement spec (--spec)', { fix: 'give a JSON entitlement body with id, issuedAt, customer, dongle and features' }) as EntitlementBody;
    } else {
      const serial = flag(a, 'dongle-serial');
      const dkey = flag(a, 'dongle-key');
      const customer = flag(a, 'customer');
      const features = a.flags.get('feature') ?? [];
      if (!serial || !dkey || !customer || features.length === 0) throw new UsageError('vendor issue needs --dongle-serial, --dongle-key, --customer and at least one --feature (or --spec FILE)');
      body = {
        id: flag(a, 'id') ?? `ENT-${Date.now().toString(36).toUpperCase()}`,
        issuedAt: new Date().toISOString(),
        customer,
        ...(key.development ? { development: true } : {}),
        dongle: { serial, publicKey: dkey.toLowerCase(), emulated: has(a, 'emulated') },
        features: features.map(parseFeatureSpec),
      };
    }
    const env = issueEntitlement(body, key, ed);
    writeFileAtomic(file, JSON.stringify(env, null, 2) + '\n');
    out(`entitlement ${body.id} for ${body.customer}, dongle ${body.dongle.serial}: ${body.features.map((f) => `${f.name} x${f.seats}`).join(', ')}\nwritten to ${file}`);
    return 0;
  }
  if (sub === 'release-quarantine') {
    const keyFile = flag(a, 'key');
    const file = flag(a, 'out');
    const serial = flag(a, 'serial');
    const counter = flag(a, 'counter');
    if (!keyFile || !file || !serial || !counter) throw new UsageError('vendor release-quarantine needs --key FILE --serial S --counter N --out FILE (licctl status on the server shows S and N)');
    if (!/^(0|[1-9][0-9]{0,19})$/.test(counter)) throw new UsageError(`--counter must be the decimal counter value licctl status shows, got ${JSON.stringify(counter)}`);
    const days = intFlag(a, 'days', 1, 365) ?? 7;
    const features = a.flags.get('feature') ?? [];
    const now = Date.now();
    const body = {
      dongleSerial: serial,
      counter,
      features: features.length > 0 ? features : null,
      issuedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + days * 86400_000).toISOString(),
      nonce: Buffer.from(systemRandom.bytes(12)).toString('base64url'),
    };
    const env = issueQuarantineRelease(body, readVendorKey(keyFile), ed);
    writeFileAtomic(file, JSON.stringify(env, null, 2) + '\n');
    out(`quarantine release for dongle ${serial} at counter ${counter} (${features.length ? features.join(', ') : 'every feature'}), valid until ${timeOf(a)(body.expiresAt)}\nwritten to ${file}; the admin runs: licctl quarantine release ${file}`);
    return 0;
  }
  throw new UsageError('licctl vendor keygen | issue | release-quarantine; see licctl --help');
}

async function dongle(a: ParsedArgs, argv: string[]): Promise<number> {
  const sub = a.positional[1];
  if (sub === 'emulate') {
    const { runDongleEmulatorCli } = await import('../../firmware-bridge/cli.ts');
    await runDongleEmulatorCli(argv.slice(argv.indexOf('emulate') + 1));
    return 0;
  }
  if (sub === 'info') {
    const spec = flag(a, 'dongle') ?? process.env.LICD_DONGLE;
    if (!spec) throw new UsageError('dongle info needs --dongle tcp:HOST:PORT | serial:PATH | hid:VID:PID');
    const { parseConfig } = await import('../config.ts');
    const { dongleOpener } = await import('../dongle/open.ts');
    const cfg = parseConfig({}, { LICD_DONGLE: spec });
    const opener = await dongleOpener(cfg);
    const link = await opener.open();
    const info = await link.info();
    await link.close();
    await opener.close();
    const pk = Buffer.from(info.publicKey).toString('hex');
    out(`serial: ${info.serial}\npublic key: ${pk}\nfirmware: ${info.firmwareVersion}\ncounter: ${info.counter}\nemulated: ${Boolean((info.flags ?? 0) & 1)}`);
    return 0;
  }
  throw new UsageError('licctl dongle emulate | info; see licctl --help');
}

export async function licctl(argv: string[]): Promise<number> {
  const cmd = argv[0];
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(HELP);
    return 0;
  }
  if (cmd === 'dongle' && argv[1] === 'emulate') return dongle({ positional: ['dongle', 'emulate'], flags: new Map(), rest: [] }, argv);
  const a = parseArgs(argv, {
    boolean: ['json', 'dev', 'emulated', 'yes', 'auto-renew', 'all', 'interactive', 'online', 'utc', 'allow-emulated'],
    value: [...CONN_FLAGS, 'feature', 'version', 'count', 'ttl', 'out', 'key', 'spec', 'dongle-serial', 'dongle-key', 'customer', 'id', 'dongle', 'hours', 'request', 'process', 'set', 'limit', 'on-loss', 'grace', 'warn-every', 'block', 'serial', 'counter', 'days', 'trust-vendor-key', 'specs', 'listen', 'url'],
  });
  const time = timeOf(a);
  switch (cmd) {
    case 'status': {
      const c = await connect(a);
      try {
        const only = flag(a, 'feature') ?? a.positional[1];
        const limit = intFlag(a, 'limit', 0, 100_000);
        const s = await c.request<StatusResult>('status', { ...(only ? { feature: only } : {}), ...(limit !== undefined ? { limit } : {}) });
        out(has(a, 'json') ? JSON.stringify(s, null, 2) : formatStatus(s, only, time));
      } finally {
        await c.close();
      }
      return 0;
    }
    case 'checkout': {
      const feature = a.positional[1];
      if (!feature) throw new UsageError('checkout needs a FEATURE');
      const c = await connect(a);
      try {
        const lease = await c.checkout(feature, { ...(flag(a, 'version') ? { version: flag(a, 'version')! } : {}), count: intFlag(a, 'count', 1, 1_000_000) ?? 1, ...(intFlag(a, 'ttl', 1, 86400) ? { ttl: intFlag(a, 'ttl', 1, 86400)! } : {}) });
        out(leaseLine(lease, time));
        return await holdUntilSignal(c, lease, serverOf(a), time);
      } finally {
        await c.close({ checkin: false });
      }
    }
    case 'run': {
      const feature = a.positional[1];
      if (!feature || a.rest.length === 0) throw new UsageError('usage: licctl run FEATURE -- COMMAND [ARGS...]');
      const onLoss = flag(a, 'on-loss') ?? 'warn';
      if (onLoss !== 'warn' && onLoss !== 'stop') throw new UsageError(`--on-loss must be warn or stop, got ${JSON.stringify(onLoss)}`);
      const policy = { mode: onLoss, graceSeconds: intFlag(a, 'grace', 0, 86400) ?? 60, warnEverySeconds: intFlag(a, 'warn-every', 1, 86400) ?? 60 } as const;
      // A borrowed token for the feature is used first: it needs no network, and its seat is
      // already reserved for this machine.
      // Each offline use takes one of the token's seat slots on this host (docs/borrowing.md).
      let busy: string | null = null;
      if (!has(a, 'online')) {
        const local = new BorrowClient().acquire(feature, vendorKey(a));
        if (local.ok) {
          try {
            err(`licctl: using borrowed ${feature} (offline token, valid until ${time(local.ok.token.expiresAt)})`);
            const conn = await connect(a, false, { timeoutMs: 1500 }).catch(() => null);
            if (conn) await conn.close({ checkin: false });
            return await startChild(a.rest, { out, err }).exit;
          } finally {
            local.slot.release();
          }
        }
        if (local.inUse.length > 0) busy = local.reason;
      }
      let c: LicdClient;
      try {
        c = await connect(a);
      } catch (e) {
        if (busy) throw new LicdError('TOKEN_IN_USE', `${busy} (and the license server was not reached: ${(e as Error).message})`);
        const local = new BorrowClient().usable(feature, vendorKey(a));
        throw new LicdError('TIMEOUT', `${(e as Error).message}; no borrowed license to fall back on (${'reason' in local ? local.reason : ''})`);
      }
      let lease: Lease;
      try {
        lease = await c.checkout(feature, { ...(flag(a, 'version') ? { version: flag(a, 'version')! } : {}), count: intFlag(a, 'count', 1, 1_000_000) ?? 1 });
      } catch (e) {
        await c.close();
        throw e;
      }
      err(`licctl: ${leaseLine(lease, time)}`);
      const child = startChild(a.rest, { out, err });
      const unwatch = watchLoss(lease, feature, child, policy, { out, err });
      const code = await child.exit;
      const stopped = unwatch();
      if (lease.state !== 'revoked') {
        try {
          await c.checkin({ leases: [lease.id] });
          err(`licctl: checked in ${feature}`);
        } catch (e) {
          err(`licctl: could not check in ${feature} (${(e as Error).message}); the seat returns when its lease times out`);
        }
      } else c.forget(lease.id);
      await c.close({ checkin: false });
      return stopped ? EXIT_SEAT_LOST : code;
    }
    case 'borrow':
      return borrowCommand(cmdContext(a), a);
    case 'return':
      return returnCommand(cmdContext(a), a);
    case 'renew':
      return renewCommand(cmdContext(a), a);
    case 'tokens':
      return tokensCommand(cmdContext(a), a);
    case 'borrows':
      return borrowsCommand(cmdContext(a), a);

    case 'checkin': {
      const feature = a.positional[1];
      const server = serverOf(a);
      const o = await checkinHeld({ server, feature });
      if (has(a, 'json')) out(JSON.stringify({ server: normaliseServer(server), ...(feature ? { feature } : {}), ...o }, null, 2));
      else for (const line of checkinLines(o, server, feature)) out(line);
      return 0;
    }
    case 'watch': {
      const c = await connect(a);
      // Each line says when it was seen: a log of a night's changes is no use without the times.
      c.on('server', (s) => out(`${time(Date.now())}  server: ${s.state}${s.dongle.present ? '' : ' DONGLE ABSENT'}${s.warnings.length ? ' - ' + s.warnings.join('; ') : ''}`));
      c.on('availability', (x) => out(`${time(Date.now())}  ${x.feature}: ${x.free} of ${x.total} free (${x.leased} leased, ${x.borrowed} borrowed)`));
      await c.watch();
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
      await c.close();
      return 0;
    }
    case 'lease': {
      if (a.positional[1] === 'unblock') {
        const [feature, who] = [a.positional[2], a.positional[3]];
        const at = who?.lastIndexOf('@') ?? -1;
        if (!feature || !who || at <= 0) throw new UsageError('usage: licctl lease unblock FEATURE USER@HOST');
        const c = await connect(a, true);
        try {
          await c.request('lease.unblock', { feature, user: who.slice(0, at), host: who.slice(at + 1) }, { admin: true });
          out(`unblocked ${who} from ${feature}`);
        } finally {
          await c.close();
        }
        return 0;
      }
      if (a.positional[1] !== 'revoke' || !a.positional[2]) throw new UsageError('usage: licctl lease revoke LEASE_ID [--block 30m]');
      const blockText = flag(a, 'block');
      const block = blockText === undefined ? undefined : parseDuration(blockText, '--block');
      const c = await connect(a, true);
      try {
        const r = await c.request<RevokeResult>('lease.revoke', { lease: a.positional[2], ...(block ? { block } : {}) }, { admin: true });
        out(`revoked lease ${cell(a.positional[2])} of ${cell(r.revoked.feature)} held by ${cell(r.revoked.user)}@${cell(r.revoked.host)} (the holder is told)${r.blockedUntil ? `; ${cell(r.revoked.user)}@${cell(r.revoked.host)} is blocked from ${cell(r.revoked.feature)} until ${time(r.blockedUntil)}` : ''}`);
      } finally {
        await c.close();
      }
      return 0;
    }
    case 'clock': {
      if (a.positional[1] !== 'accept') throw new UsageError('usage: licctl clock accept');
      const c = await connect(a, true);
      try {
        const r = await c.request<{ highWater: string; was: string; released?: string[] }>('clock.accept', {}, { admin: true });
        out(`clock accepted: the high-water mark is now ${time(r.highWater)} (it was ${time(r.was)})`);
        if (r.released && r.released.length > 0) out(`${r.released.length} borrow(s) kept only for a gap in time at start have ended: ${r.released.join(', ')}`);
      } finally {
        await c.close();
      }
      return 0;
    }
    case 'quarantine': {
      const file = a.positional[2];
      if (a.positional[1] !== 'release' || !file) throw new UsageError('usage: licctl quarantine release RELEASE.json (made by licctl vendor release-quarantine)');
      const release = readJsonFile(file, 'the quarantine release', { code: 'RELEASE_INVALID', fix: 'give the file licctl vendor release-quarantine wrote' });
      const c = await connect(a, true);
      try {
        const r = await c.request<QuarantineReleaseResult>('quarantine.release', { release }, { admin: true });
        out(`quarantine released for ${r.released.map((x) => `${x.feature} (${x.seats} seats)`).join(', ')}${r.remaining.length ? `; still held: ${r.remaining.map((x) => `${x.feature} ${x.seats} until ${time(x.until)}`).join(', ')}` : '; no seats are held any more'}`);
      } finally {
        await c.close();
      }
      return 0;
    }
    case 'activate':
      return activateCommand(cmdContext(a), a);
    case 'vendor':
      return vendor(a);
    case 'dongle':
      return dongle(a, argv);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}; see licctl --help`);
  }
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  // `licctl status | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
  try {
    const code = await licctl(argv);
    process.exit(code);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`licctl: ${e.message}`);
      process.exit(64);
    }
    if (isLicdError(e)) {
      err(`licctl: ${e.code}: ${e.message}`);
      process.exit((e.details as { usage?: boolean } | undefined)?.usage ? 64 : e.code === 'NO_SEATS' ? 3 : e.code === 'TIMEOUT' ? 4 : e.code === 'BLOCKED' || e.code === 'REVOKED' ? EXIT_SEAT_LOST : e.code === 'TLS_MISMATCH' || e.code === 'TLS_UNTRUSTED' ? 6 : e.code === 'TOKEN_IN_USE' ? 7 : 2);
    }
    err(`licctl: ${(e as Error)?.message ?? String(e)}`);
    process.exit(1);
  }
}


