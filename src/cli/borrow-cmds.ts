/** licctl borrow, return, renew, tokens, borrows: offline licenses from the command line. */
import { readJsonFile } from '../files.ts';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { LicenseType } from '../core/entitlement.ts';
import { LicdError } from '../core/errors.ts';
import type { BorrowView, StatusResult } from '../core/protocol.ts';
import { BorrowClient, fulfilRequestFile, processReturnFile, PRUNE_AFTER_MS, unknownOnServerText, type BorrowResultView, type LocalToken } from '../sdk/borrow.ts';
import type { LicdClient } from '../sdk/client.ts';
import { flag, has, intFlag, UsageError, type ParsedArgs } from './args.ts';
import { escapeText as cell } from '../core/validate.ts';
import { formatTime } from './time.ts';

export interface CmdContext {
  connect(admin?: boolean): Promise<LicdClient>;
  vendorKey(): Uint8Array | null;
  /** Before an online borrow: make sure this server's vendor key is configured or pinned (refuses otherwise). */
  settleVendorKey?(c: LicdClient): Promise<void>;
  out(s: string): void;
  err(s: string): void;
  /** Formats a time for a person (src/cli/time.ts); absent: local time with the offset. */
  time?: (t: string | number | Date) => string;
}

const localTime = (t: string | number | Date): string => formatTime(t);

/**
 * An --out file's directory must exist: a typo in a path must not make a tree of directories
 * somewhere (the air-gapped files are carried by hand, so a file written elsewhere is lost).
 */
export function checkOutFile(path: string, option = '--out'): void {
  const dir = dirname(resolve(path));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UsageError(`${option} ${path}: the directory ${dir} does not exist; create it first (mkdir -p ${dir}) or write the file elsewhere`);
  }
  if (!isDir) throw new UsageError(`${option} ${path}: ${dir} is not a directory; write the file elsewhere`);
}

/** One line per local borrow, as a refusal lists them. */
function borrowedLines(local: LocalToken[], time = localTime): string {
  return local.map((t) => `  ${t.token.feature} x${t.token.count} until ${time(t.token.expiresAt)}  [${t.borrowId}]`).join('\n');
}

function parseItems(a: ParsedArgs): Array<{ feature: string; count: number }> {
  return (a.flags.get('feature') ?? []).map((spec) => {
    const [feature, n] = spec.split('=');
    const count = n === undefined ? 1 : Number(n);
    if (!feature || !Number.isInteger(count) || count < 1) throw new UsageError(`--feature ${JSON.stringify(spec)}: use FEATURE or FEATURE=COUNT`);
    return { feature, count };
  });
}

export function summary(borrows: BorrowView[], status: StatusResult | null, time = localTime): string {
  const until = borrows.map((b) => b.until).sort()[0];
  const byProduct = new Map<string, Record<LicenseType, number>>();
  for (const b of borrows) {
    const f = status?.features.find((x) => x.feature === b.feature);
    const product = f?.product ?? b.feature;
    const type = (f?.type ?? 'render') as LicenseType;
    const row = byProduct.get(product) ?? { interface: 0, render: 0, distributed: 0 };
    row[type] += b.count;
    byProduct.set(product, row);
  }
  const lines = [`Licenses available offline until ${until ? time(until) : '-'}`, '', `${'PRODUCT'.padEnd(30)} ${'INTERFACE'.padStart(9)} ${'RENDER'.padStart(7)} ${'DISTRIBUTED'.padStart(11)}`];
  for (const [p, r] of byProduct) lines.push(`${p.padEnd(30)} ${String(r.interface).padStart(9)} ${String(r.render).padStart(7)} ${String(r.distributed).padStart(11)}`);
  return lines.join('\n');
}

/**
 * Answers typed ahead (or piped) are queued, not lost: readline drops lines that arrive while no
 * question is pending, which breaks scripted and fast typists alike.
 */
class Prompter {
  private readonly lines: string[] = [];
  private waiting: ((l: string | null) => void) | null = null;
  private ended = false;
  private readonly rl = createInterface({ input: process.stdin, terminal: false });
  constructor() {
    this.rl.on('line', (l) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(l);
      } else this.lines.push(l);
    });
    this.rl.on('close', () => {
      this.ended = true;
      this.waiting?.(null);
    });
  }
  async question(q: string): Promise<string> {
    process.stdout.write(q);
    const next = this.lines.shift();
    if (next !== undefined) return next;
    if (this.ended) throw new UsageError('input ended before the wizard was done');
    const l = await new Promise<string | null>((resolve) => (this.waiting = resolve));
    if (l === null) throw new UsageError('input ended before the wizard was done');
    return l;
  }
  close(): void {
    this.rl.close();
  }
}

async function ask(rl: Prompter, q: string, def: string): Promise<string> {
  const a = (await rl.question(`${q} [${def}]: `)).trim();
  return a === '' ? def : a;
}

/**
 * Asks until the answer is valid: `check` returns the value, or a string saying what was wrong and
 * what to give (the limit included), which is printed before the question is asked again. An
 * answer is never changed behind the user's back (a count above the limit is refused, not capped).
 */
async function askUntil<T>(ctx: CmdContext, rl: Prompter, q: string, def: string, check: (answer: string) => { ok: T } | string): Promise<T> {
  for (;;) {
    const answer = await ask(rl, q, def);
    const r = check(answer);
    if (typeof r !== 'string') return r.ok;
    ctx.out(`  ${r}`);
  }
}

/** A whole number from 0 to `max`, or why not (naming the limit). */
function checkCount(answer: string, max: number, what: string): { ok: number } | string {
  if (!/^\d+$/.test(answer)) return `${JSON.stringify(answer)} is not a number: give a whole number of seats from 0 to ${max}`;
  const n = Number(answer);
  if (n > max) return `${n} seats of ${what} asked for, but only ${max} can be borrowed now (free seats); give 0 to ${max}`;
  return { ok: n };
}

/** Only y, yes, n or no (any case): anything else is asked again. */
function checkYesNo(answer: string): { ok: boolean } | string {
  const a = answer.toLowerCase();
  if (a === 'y' || a === 'yes') return { ok: true };
  if (a === 'n' || a === 'no') return { ok: false };
  return `${JSON.stringify(answer)}: answer y, yes, n or no`;
}

/** Hours a feature can be borrowed for now: its license's maximum, and never past the license's end. */
function hoursAllowed(f: { borrow: { maxHours: number }; expires?: string | null }, now: number, time = localTime): { max: number; why: string } {
  let max = f.borrow.maxHours;
  let why = `the license allows at most ${max} h`;
  if (f.expires) {
    const left = Math.floor((Date.parse(f.expires) - now) / 3600_000);
    if (left < max) {
      max = left;
      why = `the license ends at ${time(f.expires)}`;
    }
  }
  return { max, why };
}

/** The V-Ray-style wizard: products and seats, preview by type, adjust, borrow, summary. Each answer is checked where it is typed and asked again if wrong. */
async function wizard(ctx: CmdContext, c: LicdClient, b: BorrowClient, a: ParsedArgs): Promise<{ items: Array<{ feature: string; count: number }>; hours: number; autoRenew: boolean } | null> {
  const rl = new Prompter();
  try {
    const s = await c.status();
    const borrowable = s.features.filter((f) => f.borrow.allowed);
    if (borrowable.length === 0) {
      ctx.out('no license on this server allows borrowing; nothing borrowed');
      return null;
    }
    ctx.out(`Borrow licenses for offline use (${cell(b.identity.user)}@${cell(b.identity.hostName)})\n`);
    // One token is bound to this host: the count is how many seats run here at once (licctl run
    // enforces it), not a number of machines (docs/borrowing.md).
    ctx.out('Step 1/4: select products and the number of seats to use at once on this machine');
    borrowable.forEach((f, i) => ctx.out(`  ${i + 1}. ${f.product.padEnd(30)} ${f.type.padEnd(11)} ${f.free} of ${f.total} free, up to ${f.borrow.maxHours} h`));
    const machines: Array<{ feature: string; machines: number }> = [];
    for (const f of borrowable) {
      const n = await askUntil(ctx, rl, `  seats on this machine for ${f.product}`, '0', (x) => checkCount(x, f.free, f.product));
      // Every product goes to the preview, those left at 0 too: they can still be added there.
      machines.push({ feature: f.feature, machines: n });
    }
    const preview = await c.request<{ items: Array<{ feature: string; product: string; type: string; machines: number; count: number; free: number; total: number; borrow: { maxHours: number } }> }>('borrow.preview', { products: machines });
    // The counts are the user's answers, never the preview's capped ones: a count above what is
    // free now (seats taken since step 1) is shown and must be changed before going on.
    const counts = new Map(preview.items.map((i) => [i.feature, i.machines]));
    for (;;) {
      ctx.out('\nStep 2/4: preview and adjust the licenses to borrow');
      ctx.out(`  ${'PRODUCT'.padEnd(30)} ${'TYPE'.padEnd(11)} LICENSES`);
      preview.items.forEach((i, k) => ctx.out(`  ${k + 1}. ${i.product.padEnd(27)} ${i.type.padEnd(11)} ${counts.get(i.feature)} / ${i.free} free  (${i.feature})`));
      const over = preview.items.filter((i) => counts.get(i.feature)! > i.free);
      for (const i of over) ctx.out(`  ${i.feature}: ${counts.get(i.feature)} asked for, but only ${i.free} free now; change it with ${i.feature}=N (0 to ${i.free})`);
      const adj = (await rl.question('  change or add a product with FEATURE=N (or its number=N), or press Enter to go on: ')).trim();
      if (adj === '') {
        if (over.length === 0) break;
        continue;
      }
      const eq = adj.indexOf('=');
      const key = eq < 0 ? adj : adj.slice(0, eq).trim();
      const item = /^\d+$/.test(key) ? preview.items[Number(key) - 1] : preview.items.find((i) => i.feature === key);
      if (eq < 0 || !item) {
        ctx.out(`  ${JSON.stringify(adj)}: give FEATURE=N or NUMBER=N for a product listed above, e.g. ${preview.items[0]!.feature}=1`);
        continue;
      }
      const r = checkCount(adj.slice(eq + 1).trim(), item.free, item.feature);
      if (typeof r === 'string') ctx.out(`  ${r}`);
      else counts.set(item.feature, r.ok);
    }
    const items = [...counts].filter(([, n]) => n > 0).map(([feature, count]) => ({ feature, count }));
    if (items.length === 0) {
      ctx.out('nothing selected; nothing borrowed');
      return null;
    }
    const now = Date.now();
    const limits = items.map((i) => ({ feature: i.feature, ...hoursAllowed(s.features.find((f) => f.feature === i.feature) ?? preview.items.find((p) => p.feature === i.feature)!, now, ctx.time ?? localTime) }));
    const tightest = limits.reduce((m, l) => (l.max < m.max ? l : m));
    const maxHours = tightest.max;
    if (maxHours < 1) {
      ctx.out(`${tightest.feature}: ${tightest.why}, so it cannot be borrowed now; nothing borrowed`);
      return null;
    }
    const hours = await askUntil(ctx, rl, `\nStep 3/4: hours to borrow (at most ${maxHours})`, String(intFlag(a, 'hours', 1, 8760) ?? Math.min(maxHours, 336)), (x) => {
      if (!/^\d+$/.test(x) || Number(x) < 1) return `${JSON.stringify(x)} is not a number of hours: give a whole number from 1 to ${maxHours}`;
      const h = Number(x);
      if (h > maxHours) return `${h} h is more than can be borrowed: ${tightest.feature}: ${tightest.why}; give 1 to ${maxHours}`;
      return { ok: h };
    });
    const autoRenew = await askUntil(ctx, rl, '  auto-renew when this machine can reach the license server? (y/n)', has(a, 'auto-renew') ? 'y' : 'n', checkYesNo);
    const go = await askUntil(ctx, rl, `  borrow ${items.map((i) => `${i.count} ${i.feature}`).join(', ')} for ${hours} h? (y/n)`, 'y', checkYesNo);
    if (!go) {
      ctx.out('cancelled; nothing borrowed');
      return null;
    }
    return { items, hours, autoRenew };
  } finally {
    rl.close();
  }
}

export async function borrowCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const sub = a.positional[1];
  const b = () => new BorrowClient();
  // Air-gapped, on the offline machine: write a signed request file.
  if (sub === 'request') {
    const outFile = flag(a, 'out');
    const items = parseItems(a);
    const hours = intFlag(a, 'hours', 1, 8760);
    if (!outFile || items.length === 0 || !hours) throw new UsageError('usage: licctl borrow request --feature F[=N] ... --hours H --out FILE [--auto-renew]');
    checkOutFile(outFile);
    b().writeRequestFile(outFile, items, hours, { autoRenew: has(a, 'auto-renew') });
    if (has(a, 'json')) {
      ctx.out(JSON.stringify({ request: outFile, features: items, hours, autoRenew: has(a, 'auto-renew') }, null, 2));
      return 0;
    }
    ctx.out(`borrow request written to ${outFile}; take it to a machine that reaches the license server and run: licctl borrow --request ${outFile} --out TOKENS.json`);
    return 0;
  }
  // Air-gapped, on the offline machine: import the token file an admin made.
  if (sub === 'import') {
    const file = a.positional[2];
    if (!file) throw new UsageError('usage: licctl borrow import TOKENS.json');
    const r = b().importTokens(file);
    if (has(a, 'json')) {
      ctx.out(JSON.stringify({ imported: r.imported.map((t) => ({ borrowId: t.borrowId, feature: t.feature, count: t.count, until: new Date(t.expiresAt).toISOString() })), refused: r.refused.map((e) => ({ code: e.code, message: e.message })) }, null, 2));
      return r.refused.length > 0 ? 2 : 0;
    }
    for (const t of r.imported) ctx.out(`imported ${t.count} ${t.feature} until ${(ctx.time ?? localTime)(t.expiresAt)} (borrow ${t.borrowId})`);
    for (const e of r.refused) ctx.err(`licctl: ${e.code}: ${e.message}`);
    return r.refused.length > 0 ? 2 : 0;
  }
  if (sub === 'lost') {
    const id = a.positional[2];
    if (!id) throw new UsageError('usage: licctl borrow lost BORROW_ID');
    const c = await ctx.connect(true);
    try {
      const r = await c.request<{ borrow: BorrowView }>('borrow.lost', { borrow: id }, { admin: true });
      if (has(a, 'json')) ctx.out(JSON.stringify(r, null, 2));
      else ctx.out(`borrow ${cell(id)} (${cell(r.borrow.feature)}, ${cell(r.borrow.user)}@${cell(r.borrow.hostName)}) marked lost; its seat stays reserved until ${(ctx.time ?? localTime)(r.borrow.until)}, when the token expires`);
    } finally {
      await c.close();
    }
    return 0;
  }
  if (sub === 'limits') {
    const c = await ctx.connect(true);
    try {
      const set = flag(a, 'set');
      const r = set
        ? await c.request<{ limits: unknown }>('limits.set', { limits: readJsonFile(set, 'the borrow limits file', { code: 'BAD_REQUEST', fix: 'give a JSON file like docs/borrowing.md shows' }) }, { admin: true })
        : await c.request<{ limits: unknown }>('limits.get', {}, { admin: true });
      ctx.out(JSON.stringify(r.limits, null, 2));
    } finally {
      await c.close();
    }
    return 0;
  }
  if (sub !== undefined) throw new UsageError(`unknown borrow subcommand ${JSON.stringify(sub)}; see licctl --help`);

  // Air-gapped, on the admin's connected machine: request file in, token file out.
  const reqFile = flag(a, 'request');
  if (reqFile) {
    const outFile = flag(a, 'out');
    if (!outFile) throw new UsageError('usage: licctl borrow --request REQUEST.json --out TOKENS.json');
    checkOutFile(outFile);
    const c = await ctx.connect(true);
    try {
      const r = await fulfilRequestFile(c, reqFile, outFile);
      if (has(a, 'json')) ctx.out(JSON.stringify({ request: reqFile, out: outFile, borrows: r.borrows }, null, 2));
      else ctx.out(`token file written to ${outFile} for ${r.borrows.map((x) => `${x.count} ${x.feature}`).join(', ')} (${cell(r.borrows[0]?.user ?? '')}@${cell(r.borrows[0]?.hostName ?? '')}); import it with: licctl borrow import ${outFile}`);
    } finally {
      await c.close();
    }
    return 0;
  }

  const client = b();
  const c = await ctx.connect();
  try {
    await ctx.settleVendorKey?.(c);
    let plan: { items: Array<{ feature: string; count: number }>; hours: number; autoRenew: boolean } | null;
    const items = parseItems(a);
    if (items.length > 0) {
      const s = await c.status();
      const hours = intFlag(a, 'hours', 1, 8760) ?? Math.min(336, ...items.map((i) => s.features.find((f) => f.feature === i.feature)?.borrow.maxHours ?? 336));
      plan = { items, hours, autoRenew: has(a, 'auto-renew') };
      if (!has(a, 'yes') && !has(a, 'json')) {
        ctx.out(`would borrow ${items.map((i) => `${i.count} ${i.feature}`).join(', ')} for ${hours} h; add --yes to borrow`);
        return 1;
      }
    } else {
      if (!process.stdin.isTTY && !has(a, 'interactive')) throw new UsageError('not a terminal: give --feature F[=N] (repeatable), --hours H and --yes');
      plan = await wizard(ctx, c, client, a);
      if (!plan) return 1;
    }
    const r: BorrowResultView = await client.borrow(c, plan.items, plan.hours, { autoRenew: plan.autoRenew });
    const s = await c.status().catch(() => null);
    if (has(a, 'json')) ctx.out(JSON.stringify({ borrows: r.borrows, tokens: r.tokens.length, store: client.tokenDir }, null, 2));
    else {
      if (items.length === 0) ctx.out('\nStep 4/4: summary');
      ctx.out(summary(r.borrows, s, ctx.time));
      ctx.out(`\ntokens stored in ${client.tokenDir}${plan.autoRenew ? '; they renew when this machine reaches the server near expiry' : ''}`);
    }
  } finally {
    await c.close();
  }
  return 0;
}

export async function returnCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const processFile = flag(a, 'process');
  if (processFile) {
    const c = await ctx.connect(true);
    try {
      const r = await processReturnFile(c, processFile);
      if (has(a, 'json')) ctx.out(JSON.stringify({ processed: processFile, returned: r.returned, unknown: r.unknown }, null, 2));
      else ctx.out(`returned ${r.returned.length} borrow(s)${r.unknown.length ? `; not known (already returned or expired): ${r.unknown.join(', ')}` : ''}`);
    } finally {
      await c.close();
    }
    return 0;
  }
  const b = new BorrowClient();
  const local = b.list(ctx.vendorKey());
  const wanted = a.positional.slice(1);
  const json = has(a, 'json');
  // Returning is destructive (the tokens are deleted and the seats go back): it needs a name or --all.
  if (!has(a, 'all') && wanted.length === 0) {
    throw new UsageError(
      local.length === 0
        ? 'licctl return needs FEATURE, BORROW_ID or --all; nothing is borrowed on this machine'
        : `licctl return needs FEATURE, BORROW_ID or --all; nothing was returned. Borrowed on this machine:\n${borrowedLines(local, ctx.time)}\nlicctl return FEATURE|ID ... returns those, licctl return --all returns every one`,
    );
  }
  const chosen = has(a, 'all') ? local : local.filter((t) => wanted.includes(t.token.feature) || wanted.includes(t.borrowId));
  if (chosen.length === 0) {
    ctx.out(wanted.length ? `no borrowed ${wanted.join(', ')} on this machine` : 'nothing is borrowed on this machine');
    return 1;
  }
  const ids = chosen.map((t) => t.borrowId);
  const entry = (t: LocalToken) => ({ borrowId: t.borrowId, feature: t.token.feature, count: t.token.count });
  const outFile = flag(a, 'out');
  if (outFile) {
    checkOutFile(outFile);
    b.writeReturnFile(outFile, ids);
    if (json) ctx.out(JSON.stringify({ returned: chosen.map(entry), unknownOnServer: [], returnFile: outFile }, null, 2));
    else ctx.out(`return file written to ${outFile} (the local tokens are deleted); an admin runs: licctl return --process ${outFile}`);
    return 0;
  }
  const c = await ctx.connect();
  try {
    const r = await b.giveBack(c, ids);
    if (json) {
      ctx.out(JSON.stringify({ returned: chosen.filter((t) => r.returned.includes(t.borrowId)).map(entry), unknownOnServer: chosen.filter((t) => !r.returned.includes(t.borrowId)).map(entry), returnFile: null }, null, 2));
    } else for (const t of chosen) ctx.out(`${r.returned.includes(t.borrowId) ? 'returned' : 'already gone on the server:'} ${t.token.count} ${t.token.feature} (borrow ${t.borrowId})`);
  } finally {
    await c.close();
  }
  return 0;
}

export async function renewCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const b = new BorrowClient();
  const wanted = a.positional.slice(1);
  const local = b.list(ctx.vendorKey()).filter((t) => wanted.length === 0 || wanted.includes(t.token.feature) || wanted.includes(t.borrowId));
  if (local.length === 0) {
    ctx.out('nothing borrowed to renew; borrow with licctl borrow');
    return 1;
  }
  const json = has(a, 'json');
  const renewed: Array<{ borrowId: string; feature: string; count: number; until: string; hours: number }> = [];
  const unknownOnServer: Array<{ borrowId: string; feature: string; count: number; message: string }> = [];
  const c = await ctx.connect();
  try {
    for (const t of local) {
      // The default is the longest period this borrow had (the server keeps the later end anyway).
      const hours = intFlag(a, 'hours', 1, 8760) ?? t.stored.hours;
      try {
        const r = await b.renew(c, [t.borrowId], hours);
        const v = r.borrows[0]!;
        renewed.push({ borrowId: t.borrowId, feature: t.token.feature, count: t.token.count, until: v.until, hours: b.stored(t.borrowId)?.hours ?? hours });
        if (!json) ctx.out(`renewed ${t.token.feature} until ${(ctx.time ?? localTime)(v.until)}`);
      } catch (e) {
        if (e instanceof LicdError && e.code === 'UNKNOWN_BORROW') {
          // Kept: the server not knowing a borrow is no proof that it ended (docs/borrowing.md).
          const message = unknownOnServerText(t.token, e);
          unknownOnServer.push({ borrowId: t.borrowId, feature: t.token.feature, count: t.token.count, message });
          ctx.err(`licctl: warning: ${message}`);
        } else throw e;
      }
    }
  } finally {
    await c.close();
  }
  if (json) ctx.out(JSON.stringify({ renewed, unknownOnServer }, null, 2));
  return 0;
}

export function tokensCommand(ctx: CmdContext, a: ParsedArgs): number {
  const b = new BorrowClient();
  const now = Date.now();
  const list = b.list(ctx.vendorKey(), now);
  const expired = (t: LocalToken) => now >= t.token.expiresAt;
  const removedAt = (t: LocalToken) => new Date(t.token.expiresAt + PRUNE_AFTER_MS).toISOString();
  if (has(a, 'json')) {
    ctx.out(
      JSON.stringify(
        list.map((t) => ({
          borrowId: t.borrowId,
          feature: t.token.feature,
          count: t.token.count,
          until: new Date(t.token.expiresAt).toISOString(),
          autoRenew: t.stored.autoRenew,
          valid: Boolean(t.valid),
          expired: expired(t),
          removeAfter: expired(t) ? removedAt(t) : null,
          problem: t.problem?.message ?? null,
        })),
        null,
        2,
      ),
    );
    return 0;
  }
  ctx.out(`borrowed licenses on this machine (${cell(b.identity.user)}@${cell(b.identity.hostName)}, host id ${b.identity.hostId.slice(0, 12)}…, store ${b.tokenDir})`);
  if (list.length === 0) ctx.out('  none');
  const time = ctx.time ?? localTime;
  for (const t of list) {
    const state = t.valid ? 'valid' : expired(t) ? `EXPIRED (removed after ${time(t.token.expiresAt + PRUNE_AFTER_MS)})` : `NOT USABLE: ${cell(t.problem?.message ?? '')}`;
    ctx.out(`  ${t.token.feature.padEnd(18)} ${String(t.token.count).padStart(3)}  until ${time(t.token.expiresAt)}  ${state}${t.stored.autoRenew ? '  auto-renew' : ''}  [${t.borrowId}]`);
  }
  return 0;
}

export async function borrowsCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const c = await ctx.connect(true);
  try {
    const r = await c.request<{ borrows: BorrowView[] }>('borrows', {}, { admin: true });
    if (has(a, 'json')) ctx.out(JSON.stringify(r.borrows, null, 2));
    else {
      const time = ctx.time ?? localTime;
      ctx.out(`${'FEATURE'.padEnd(18)} ${'N'.padStart(3)} ${'USER'.padEnd(12)} ${'HOST'.padEnd(16)} ${'SINCE'.padEnd(26)} ${'UNTIL'.padEnd(26)} STATE   ID`);
      for (const x of r.borrows) {
        ctx.out(`${cell(x.feature).padEnd(18)} ${String(x.count).padStart(3)} ${cell(x.user).padEnd(12)} ${cell(x.hostName).padEnd(16)} ${time(x.since).padEnd(26)} ${time(x.until).padEnd(26)} ${x.state.padEnd(7)} ${cell(x.id)}${x.via === 'file' ? ' (by file)' : ''}`);
      }
      if (r.borrows.length === 0) ctx.out('(no borrows)');
    }
  } finally {
    await c.close();
  }
  return 0;
}

