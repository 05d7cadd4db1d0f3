/**
 * licctl: the one command-line tool for users, admins and license issuers. Each command lives in
 * src/cli/commands/ with its options, help and examples (src/cli/command.ts parses strictly
 * against them); this file is the table, the dispatcher and the exit codes.
 */
import { readFileSync } from 'node:fs';
import { isLicdError } from '../core/errors.ts';
import { UsageError } from './args.ts';
import { commandHelp, groupHelp, parseCommandLine, resolveCommand, topHelp, wantsHelp, type Command } from './command.ts';
import { activateCommands } from './commands/activate.ts';
import { adminCommands } from './commands/admin.ts';
import { auditCommands } from './commands/audit.ts';
import { alertsCommands } from './commands/alerts.ts';
import { borrowCommands } from './commands/borrow.ts';
import { dongleCommands } from './commands/dongle.ts';
import { trustCommands } from './commands/trust.ts';
import { useCommands } from './commands/use.ts';
import { policyCommands } from './commands/policy.ts';
import { vendorCommands } from './commands/vendor.ts';
import { reportCommands } from './commands/report.ts';
import { serversCommands } from './commands/servers.ts';
import { failoverCommands } from './commands/failover.ts';
import { err, out } from './context.ts';
import { EXIT_SEAT_LOST } from './holding.ts';

export { formatStatus } from './commands/use.ts';

export const COMMANDS: Command[] = [...useCommands, ...borrowCommands, ...adminCommands, ...policyCommands, ...alertsCommands, ...auditCommands, ...reportCommands, ...activateCommands, ...vendorCommands, ...dongleCommands, ...trustCommands, ...serversCommands, ...failoverCommands];

/** The exit codes (README "licctl exit codes" has the same table). */
export const EXIT = { ok: 0, unexpected: 1, refused: 2, noSeats: 3, unreachable: 4, seatLost: EXIT_SEAT_LOST, tls: 6, tokenInUse: 7, usage: 64 } as const;

const EXIT_CODES = `Exit codes: 0 ok, 1 unexpected error, 2 refused (the message says why), 3 no seats, 4 server not
  reached, 5 the seat was revoked, blocked or lost (run --on-loss stop), 6 TLS: the server's
  certificate is not the pinned one or not trusted (nothing was sent), 7 every borrowed seat on
  this machine is in use, 64 bad command line (README: "licctl exit codes").
Times print in local time with the UTC offset (TZ sets the zone); --utc or LICD_UTC=1 prints UTC.`;

/** licd's version, from package.json: two levels up in a checkout (src/cli), three in the compiled build (dist/src/cli). */
export function version(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'licd' && pkg.version) return pkg.version;
    } catch {
      // not there: the other layout
    }
  }
  return 'unknown';
}

/** Runs one licctl command line; returns the exit code (throws UsageError or LicdError). */
export async function licctl(argv: string[]): Promise<number> {
  const r = resolveCommand(COMMANDS, argv);
  const head = argv.indexOf('--') < 0 ? argv : argv.slice(0, argv.indexOf('--'));
  if (r.kind === 'none') {
    if (head.includes('--version')) {
      out(`licctl ${version()}`);
      return 0;
    }
    if (head.length === 0 || wantsHelp(argv)) {
      out(topHelp(COMMANDS, EXIT_CODES));
      return 0;
    }
    throw new UsageError(`no command given (${head.join(' ')}); licctl --help lists the commands`);
  }
  if (r.kind === 'unknown') {
    if (r.word === 'help') return help(argv.slice(argv.indexOf('help') + 1).filter((w) => !w.startsWith('-')));
    if (r.word === 'version') {
      out(`licctl ${version()}`);
      return 0;
    }
    throw new UsageError(`unknown command ${JSON.stringify(r.word)}; licctl --help lists the commands`);
  }
  if (r.kind === 'group') {
    if (r.unknown === undefined && wantsHelp(argv)) {
      out(groupHelp(r.group, r.commands));
      return 0;
    }
    throw new UsageError(
      `${r.unknown === undefined ? `${r.group} needs a subcommand` : `unknown subcommand ${JSON.stringify(`${r.group} ${r.unknown}`)}`}: ${r.commands.map((c) => c.path).join(', ')}; licctl ${r.group} --help says more`,
    );
  }
  const c = r.command;
  if (c.raw) return c.run({ positional: c.path.split(' '), flags: new Map(), rest: [] }, argv.slice(Math.max(...r.words) + 1));
  if (wantsHelp(argv)) {
    out(commandHelp(c));
    return 0;
  }
  if (head.includes('--version')) {
    out(`licctl ${version()}`);
    return 0;
  }
  return c.run(parseCommandLine(c, argv, r.words, COMMANDS), argv);
}

function help(words: string[]): number {
  if (words.length === 0) {
    out(topHelp(COMMANDS, EXIT_CODES));
    return 0;
  }
  const path = words.slice(0, 2).join(' ');
  const c = COMMANDS.find((x) => x.path === path) ?? COMMANDS.find((x) => x.path === words[0]);
  if (c) {
    out(commandHelp(c));
    return 0;
  }
  const group = COMMANDS.filter((x) => x.path.startsWith(`${words[0]} `));
  if (group.length > 0) {
    out(groupHelp(words[0]!, group));
    return 0;
  }
  throw new UsageError(`no command ${JSON.stringify(words.join(' '))}; licctl --help lists the commands`);
}

/** The exit code of an error (README "licctl exit codes"). */
export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.usage;
  if (!isLicdError(e)) return EXIT.unexpected;
  if ((e.details as { usage?: boolean } | undefined)?.usage) return EXIT.usage;
  switch (e.code) {
    case 'NO_SEATS':
      return EXIT.noSeats;
    case 'TIMEOUT':
      return EXIT.unreachable;
    case 'BLOCKED':
    case 'REVOKED':
      return EXIT.seatLost;
    case 'TLS_MISMATCH':
    case 'TLS_UNTRUSTED':
      return EXIT.tls;
    case 'TOKEN_IN_USE':
      return EXIT.tokenInUse;
    default:
      return EXIT.refused;
  }
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  // `licctl status | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
  const dd = argv.indexOf('--');
  const head = dd < 0 ? argv : argv.slice(0, dd);
  const asJson = head.includes('--json');
  try {
    process.exit(await licctl(argv));
  } catch (e) {
    const exit = exitCodeOf(e);
    const code = e instanceof UsageError ? 'USAGE' : isLicdError(e) ? e.code : 'UNEXPECTED';
    const message = (e as Error)?.message ?? String(e);
    if (asJson) process.stderr.write(JSON.stringify({ error: { code, message, exit } }) + '\n');
    else if (e instanceof UsageError) err(`licctl: ${message}`);
    else if (isLicdError(e)) err(`licctl: ${e.code}: ${message}`);
    else err(`licctl: ${message}${head.includes('--debug') ? '' : ' (--debug shows where)'}`);
    if (exit === EXIT.unexpected && head.includes('--debug') && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    process.exit(exit);
  }
}
