/** licctl borrow, return, renew, tokens, borrows: offline licenses from the command line. */
import { readJsonFile } from '../files.ts';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { LICENSE_TYPES, type LicenseType } from '../core/entitlement.ts';
import type { BorrowPreview } from '../core/borrowing.ts';
import { LicdError } from '../core/errors.ts';
import type { BorrowView, ProductView, StatusResult } from '../core/protocol.ts';
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

/**
 * Step 4: licenses available offline until when, and one row per product with its licenses by
 * type. The products chosen (wizard, --product) are rows of their own; seats borrowed beyond what
 * they need (--feature) are shown under their feature's product name.
 */
export function summary(borrows: BorrowView[], status: StatusResult | null, time = localTime, products: Array<ProductNeed & { machines: number }> = []): string {
  const until = borrows.map((b) => b.until).sort()[0];
  const rows = new Map<string, Record<LicenseType, number>>();
  const add = (name: string, r: Record<LicenseType, number>) => {
    const row = rows.get(name) ?? { interface: 0, render: 0, distributed: 0 };
    for (const k of LICENSE_TYPES) row[k] += r[k];
    rows.set(name, row);
  };
  const left = new Map<string, number>();
  for (const b of borrows) left.set(b.feature, (left.get(b.feature) ?? 0) + b.count);
  for (const p of products) {
    add(p.name, byType(p, p.machines));
    for (const l of p.licenses) left.set(l.feature, (left.get(l.feature) ?? 0) - l.count * p.machines);
  }
  for (const [feature, n] of left) {
    if (n <= 0) continue;
    const f = status?.features.find((x) => x.feature === feature);
    add(f?.product ?? feature, byType({ licenses: [{ type: f?.type ?? 'render', count: n }] }, 1));
  }
  const lines = [`Licenses available offline until ${until ? time(until) : '-'}`, '', `${'PRODUCT'.padEnd(30)} ${'INTERFACE'.padStart(9)} ${'RENDER'.padStart(7)} ${'DISTRIBUTED'.padStart(11)}`];
  for (const [p, r] of rows) lines.push(`${cell(p).padEnd(30)} ${typeColumns(r)}`);
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

/** A product as licctl borrows it: its licenses per machine, by feature and type. */
interface ProductNeed {
  id: string;
  name: string;
  licenses: Array<{ feature: string; type: string; count: number }>;
}

/** The products a server offers: as its status lists them, or (an older server) one per feature. */
function productsOf(s: StatusResult): ProductNeed[] {
  return (s.products as ProductView[] | undefined) ?? s.features.map((f) => ({ id: f.feature, name: f.product, licenses: [{ feature: f.feature, type: f.type, count: 1 }] }));
}

/** What `machines` of these products need, summed per feature (in the order first needed). */
function featureTotals(chosen: Array<{ product: ProductNeed; machines: number }>): Map<string, number> {
  const totals = new Map<string, number>();
  for (const { product, machines } of chosen) for (const l of product.licenses) totals.set(l.feature, (totals.get(l.feature) ?? 0) + l.count * machines);
  return totals;
}

/** "1 interface + 1 render" per machine. */
function needText(p: ProductNeed): string {
  return p.licenses.map((l) => `${l.count} ${l.type}`).join(' + ');
}

/** Per type, the licenses of one product row (machines x per machine), for the INTERFACE/RENDER/DISTRIBUTED columns. */
function byType(p: { licenses: Array<{ type: string; count: number }> }, machines: number): Record<LicenseType, number> {
  const row: Record<LicenseType, number> = { interface: 0, render: 0, distributed: 0 };
  for (const l of p.licenses) if (l.type in row) row[l.type as LicenseType] += l.count * machines;
  return row;
}

const typeColumns = (r: Record<LicenseType, number>): string => `${String(r.interface).padStart(9)} ${String(r.render).padStart(7)} ${String(r.distributed).padStart(11)}`;

type PreviewItem = BorrowPreview['items'][number];

/**
 * Why these counts cannot be borrowed now, one line each (empty: they can): a feature needing more
 * than this user may borrow of it, or a per-user or per-group limit the features together exceed.
 */
function overLimits(totals: Map<string, number>, preview: BorrowPreview): Array<{ features: string[]; text: string }> {
  const out: Array<{ features: string[]; text: string }> = [];
  for (const [feature, n] of totals) {
    const i = preview.items.find((x) => x.feature === feature);
    if (i && n > i.maxSeats) out.push({ features: [feature], text: `${feature}: ${n} needed, but you may borrow ${i.maxSeats} now (${i.seatsWhy})` });
  }
  for (const l of preview.limits) {
    const used = l.features.filter((f) => (totals.get(f) ?? 0) > 0);
    const n = used.reduce((sum, f) => sum + totals.get(f)!, 0);
    if (n > l.maxSeats - l.borrowed) out.push({ features: used, text: `${l.limit} allows ${l.maxSeats} borrowed seats and ${l.borrowed} are borrowed; these products need ${n} (${used.join(', ')})` });
  }
  return out;
}

/**
 * The V-Ray-style wizard: products and how many of each run here at once, a preview of the
 * licenses by type with what this user may borrow, adjust, hours, borrow, and the summary per
 * product. Each answer is checked where it is typed and asked again if wrong.
 */
async function wizard(ctx: CmdContext, c: LicdClient, b: BorrowClient, a: ParsedArgs): Promise<BorrowPlan | null> {
  const rl = new Prompter();
  try {
    const s = await c.status();
    const feature = (name: string) => s.features.find((f) => f.feature === name);
    const user = b.identity.user;
    // A server from before products lists none and previews features only, without the limits:
    // its products are its features, and what may be borrowed is what is free.
    const older = (s.products as ProductView[] | undefined) === undefined;
    const ask = async (counts: Map<ProductNeed, number>): Promise<BorrowPreview> => {
      const p = await c.request<BorrowPreview>('borrow.preview', { user, products: [...counts].map(([x, machines]) => (older ? { feature: x.id, machines } : { product: x.id, machines })) });
      return {
        ...p,
        items: p.items.map((i) => ({ ...i, maxSeats: i.maxSeats ?? i.free, seatsWhy: i.seatsWhy ?? `${i.free} free`, maxHours: i.maxHours ?? i.borrow.maxHours, hoursWhy: i.hoursWhy ?? `the license allows at most ${i.borrow.maxHours} h` })),
        limits: p.limits ?? [],
      };
    };
    // A product is offered when every license it needs may be borrowed.
    const offered = productsOf(s).filter((p) => p.licenses.every((l) => feature(l.feature)?.borrow.allowed));
    if (offered.length === 0) {
      ctx.out('no product on this server may be borrowed (their licenses do not allow it); nothing borrowed');
      return null;
    }
    const counts = new Map<ProductNeed, number>(offered.map((p) => [p, 0]));
    // What this user may borrow of each feature (free seats and the admin's limits), before any choice.
    let preview = await ask(counts);
    const item = (f: string): PreviewItem | undefined => preview.items.find((i) => i.feature === f);
    const chosen = () => [...counts].map(([product, machines]) => ({ product, machines }));
    /** A product's count, or why not: over what the user may borrow, given the other products' counts. */
    const checkProduct = (p: ProductNeed, answer: string): { ok: number } | string => {
      if (!/^\d+$/.test(answer)) return `${JSON.stringify(answer)} is not a number: give a whole number from 0 to ${mostOf(p)}`;
      const n = Number(answer);
      const totals = featureTotals(chosen().map((x) => (x.product === p ? { product: p, machines: n } : x)));
      const over = overLimits(totals, preview).filter((o) => p.licenses.some((l) => o.features.includes(l.feature)));
      if (over.length > 0) return `${n} of ${p.name} (${needText(p)} each) is more than you may borrow now: ${over.map((o) => o.text).join('; ')}; give 0 to ${mostOf(p)}`;
      return { ok: n };
    };
    /** The most of a product that fits beside the other products' counts. */
    const mostOf = (p: ProductNeed): number => {
      let n = 0;
      while (n < 10_000) {
        const totals = featureTotals(chosen().map((x) => (x.product === p ? { product: p, machines: n + 1 } : x)));
        if (overLimits(totals, preview).some((o) => p.licenses.some((l) => o.features.includes(l.feature)))) break;
        n++;
      }
      return n;
    };

    ctx.out(`Borrow licenses for offline use (${cell(user)}@${cell(b.identity.hostName)})\n`);
    // One token is bound to this host: a count is how many run here at once (licctl run enforces
    // it), not a number of machines (docs/borrowing.md).
    ctx.out('Step 1/4: select products and how many of each to run at once on this machine');
    offered.forEach((p, k) => ctx.out(`  ${`${k + 1}. ${cell(p.name)}`.padEnd(30)} ${`${needText(p)} each`.padEnd(28)} up to ${mostOf(p)} now`));
    for (const p of offered) {
      const n = await askUntil(ctx, rl, `  how many of ${cell(p.name)} at once`, '0', (x) => checkProduct(p, x));
      // Every product goes to the preview, those left at 0 too: they can still be added there.
      counts.set(p, n);
    }

    for (;;) {
      preview = await ask(counts);
      const totals = featureTotals(chosen());
      ctx.out('\nStep 2/4: preview and adjust the licenses to borrow');
      ctx.out(`  ${'PRODUCT'.padEnd(30)} ${'AT ONCE'.padStart(7)} ${'INTERFACE'.padStart(9)} ${'RENDER'.padStart(7)} ${'DISTRIBUTED'.padStart(11)}`);
      offered.forEach((p, k) => ctx.out(`  ${`${k + 1}. ${cell(p.name)}`.padEnd(30)} ${String(counts.get(p)).padStart(7)} ${typeColumns(byType(p, counts.get(p)!))}  (${cell(p.id)})`));
      ctx.out(`  ${'LICENSE'.padEnd(18)} ${'TYPE'.padEnd(11)} ${'BORROW'.padStart(6)}  YOU MAY BORROW NOW`);
      for (const i of preview.items) {
        ctx.out(`  ${cell(i.feature).padEnd(18)} ${i.type.padEnd(11)} ${String(totals.get(i.feature) ?? 0).padStart(6)}  ${i.maxSeats} (${cell(i.seatsWhy)}), up to ${i.maxHours} h`);
      }
      for (const l of preview.limits) {
        const n = l.features.reduce((sum, f) => sum + (totals.get(f) ?? 0), 0);
        ctx.out(`  together: ${cell(l.limit)} allows ${l.maxSeats} borrowed seats and ${l.borrowed} are borrowed; these products need ${n}`);
      }
      const over = overLimits(totals, preview);
      for (const o of over) ctx.out(`  ${cell(o.text)}; lower a product with NUMBER=N or PRODUCT=N`);
      const adj = (await rl.question('  change or add a product with NUMBER=N or PRODUCT=N, or press Enter to go on: ')).trim();
      if (adj === '') {
        if (over.length === 0) break;
        continue;
      }
      const eq = adj.indexOf('=');
      const key = eq < 0 ? adj : adj.slice(0, eq).trim();
      const p = /^\d+$/.test(key) ? offered[Number(key) - 1] : offered.find((x) => x.id === key);
      if (eq < 0 || !p) {
        const needs = offered.filter((x) => x.licenses.some((l) => l.feature === key));
        if (needs.length > 0 && !offered.some((x) => x.id === key)) ctx.out(`  ${JSON.stringify(key)} is a license, not a product: ${needs.map((x) => `${cell(x.name)} (${cell(x.id)})`).join(', ')} ${needs.length > 1 ? 'need' : 'needs'} it; give NUMBER=N or PRODUCT=N, e.g. ${cell(needs[0]!.id)}=1`);
        else ctx.out(`  ${JSON.stringify(adj)}: give NUMBER=N or PRODUCT=N for a product listed above, e.g. ${cell(offered[0]!.id)}=1`);
        continue;
      }
      const r = checkProduct(p, adj.slice(eq + 1).trim());
      if (typeof r === 'string') ctx.out(`  ${cell(r)}`);
      else counts.set(p, r.ok);
    }
    const totals = featureTotals(chosen());
    const items = [...totals].filter(([, n]) => n > 0).map(([f, count]) => ({ feature: f, count }));
    if (items.length === 0) {
      ctx.out('nothing selected; nothing borrowed');
      return null;
    }
    const now = Date.now();
    const time = ctx.time ?? localTime;
    // The hours each feature allows this user (the server's answer, with the license's own end
    // said in local time when it is what sets them).
    const limits = items.map((i) => {
      const p = item(i.feature)!;
      const f = feature(i.feature);
      const local = f ? hoursAllowed(f, now, time) : null;
      return local && local.max <= p.maxHours ? { feature: i.feature, ...local } : { feature: i.feature, max: p.maxHours, why: p.hoursWhy };
    });
    const tightest = limits.reduce((m, l) => (l.max < m.max ? l : m));
    const maxHours = tightest.max;
    if (maxHours < 1) {
      ctx.out(`${tightest.feature}: ${tightest.why}, so it cannot be borrowed now; nothing borrowed`);
      return null;
    }
    const hours = await askUntil(ctx, rl, `\nStep 3/4: hours to borrow (at most ${maxHours})`, String(Math.min(intFlag(a, 'hours', 1, 8760) ?? 336, maxHours)), (x) => {
      if (!/^\d+$/.test(x) || Number(x) < 1) return `${JSON.stringify(x)} is not a number of hours: give a whole number from 1 to ${maxHours}`;
      const h = Number(x);
      if (h > maxHours) return `${h} h is more than can be borrowed: ${tightest.feature}: ${tightest.why}; give 1 to ${maxHours}`;
      return { ok: h };
    });
    const autoRenew = await askUntil(ctx, rl, '  auto-renew when this machine can reach the license server? (y/n)', has(a, 'auto-renew') ? 'y' : 'n', checkYesNo);
    const products = chosen().filter((x) => x.machines > 0);
    const go = await askUntil(ctx, rl, `  borrow ${products.map((x) => `${x.machines} ${cell(x.product.name)}`).join(', ')} (${items.map((i) => `${i.count} ${i.feature}`).join(', ')}) for ${hours} h? (y/n)`, 'y', checkYesNo);
    if (!go) {
      ctx.out('cancelled; nothing borrowed');
      return null;
    }
    return { items, hours, autoRenew, products: products.map((x) => ({ ...x.product, machines: x.machines })) };
  } finally {
    rl.close();
  }
}

/** What a borrow takes: the features (summed), and the products they were chosen as, for the summary. */
interface BorrowPlan {
  items: Array<{ feature: string; count: number }>;
  hours: number;
  autoRenew: boolean;
  products: Array<ProductNeed & { machines: number }>;
}

/** --product ID[=N] (repeatable): N of that product (default 1), resolved against the server's products. */
function parseProducts(a: ParsedArgs, s: StatusResult | null): Array<ProductNeed & { machines: number }> {
  const specs = a.flags.get('product') ?? [];
  if (specs.length === 0) return [];
  const known = s ? productsOf(s) : [];
  const out: Array<ProductNeed & { machines: number }> = [];
  for (const spec of specs) {
    const [id, n] = spec.split('=');
    const machines = n === undefined ? 1 : Number(n);
    if (!id || !Number.isInteger(machines) || machines < 1 || machines > 10_000) throw new UsageError(`--product ${JSON.stringify(spec)}: use PRODUCT or PRODUCT=COUNT (a whole number from 1 to 10000)`);
    const p = known.find((x) => x.id === id);
    if (!p) throw new LicdError('UNKNOWN_PRODUCT', `--product ${id}: no such product on this server; products: ${known.map((x) => x.id).join(', ')} (licctl status lists them)`, { product: id });
    const same = out.find((x) => x.id === id);
    if (same) same.machines += machines;
    else out.push({ ...p, machines });
  }
  return out;
}

export async function borrowCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const sub = a.positional[1];
  const b = () => new BorrowClient();
  // Air-gapped, on the offline machine: write a signed request file.
  if (sub === 'request') {
    const outFile = flag(a, 'out');
    const items = parseItems(a);
    const hours = intFlag(a, 'hours', 1, 8760);
    // The request is made offline: which licenses a product needs is the server's to say.
    if (has(a, 'product')) throw new UsageError('licctl borrow request takes --feature F[=N], not --product: a product\'s licenses are known to the license server, which this machine does not reach. licctl status on a machine that does lists each product\'s licenses');
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
    let plan: BorrowPlan | null;
    const given = parseItems(a);
    if (given.length > 0 || has(a, 'product')) {
      const s = await c.status();
      // --product adds the licenses each product needs; with --feature they are summed per feature.
      const products = parseProducts(a, s);
      const totals = featureTotals(products.map((p) => ({ product: p, machines: p.machines })));
      for (const i of given) totals.set(i.feature, (totals.get(i.feature) ?? 0) + i.count);
      const items = [...totals].map(([feature, count]) => ({ feature, count }));
      // Without --hours: the most this user may borrow these for (the preview applies the admin's
      // limits too), at most 14 days; an older server's preview lacks maxHours: the license's then.
      let hours = intFlag(a, 'hours', 1, 8760);
      if (hours === undefined) {
        const p = await c.request<BorrowPreview>('borrow.preview', { user: client.identity.user, products: items.map((i) => ({ feature: i.feature, machines: i.count })) });
        hours = Math.max(1, Math.min(336, ...p.items.map((i) => i.maxHours ?? s.features.find((f) => f.feature === i.feature)?.borrow.maxHours ?? 336)));
      }
      plan = { items, hours, autoRenew: has(a, 'auto-renew'), products };
      if (!has(a, 'yes') && !has(a, 'json')) {
        const licenses = items.map((i) => `${i.count} ${i.feature}`).join(', ');
        ctx.out(`would borrow ${products.length > 0 ? `${products.map((p) => `${p.machines} ${cell(p.name)}`).join(', ')} (${licenses})` : licenses} for ${hours} h; add --yes to borrow`);
        return 1;
      }
    } else {
      if (!process.stdin.isTTY && !has(a, 'interactive')) throw new UsageError('not a terminal: give --product P[=N] or --feature F[=N] (both repeatable), --hours H and --yes');
      plan = await wizard(ctx, c, client, a);
      if (!plan) return 1;
    }
    const r: BorrowResultView = await client.borrow(c, plan.items, plan.hours, { autoRenew: plan.autoRenew });
    const s = await c.status().catch(() => null);
    if (has(a, 'json')) ctx.out(JSON.stringify({ borrows: r.borrows, tokens: r.tokens.length, store: client.tokenDir, products: plan.products.map((p) => ({ product: p.id, name: p.name, machines: p.machines })) }, null, 2));
    else {
      if (given.length === 0 && !has(a, 'product')) ctx.out('\nStep 4/4: summary');
      ctx.out(summary(r.borrows, s, ctx.time, plan.products));
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

