/** The figures of a run, their targets (issue 6), the table on stdout and the JSON file. */

export interface Target {
  cmp: '>=' | '<=';
  value: number;
}

export interface Figure {
  /** JSON key; its last part names the unit (rps, _ms, _s, _pct, _mb, _us_per_op, ratio). */
  key: string;
  label: string;
  value: number | string | boolean | null;
  unit: string;
  target?: Target;
  note?: string;
}

export function met(f: Figure): boolean | null {
  if (!f.target) return null;
  if (typeof f.value !== 'number' || !Number.isFinite(f.value)) return false;
  return f.target.cmp === '>=' ? f.value >= f.target.value : f.value <= f.target.value;
}

export class Figures {
  readonly list: Figure[] = [];
  readonly notes: string[] = [];

  add(key: string, label: string, value: Figure['value'], unit: string, target?: Target, note?: string): void {
    const f: Figure = { key, label, value: typeof value === 'number' ? round(value) : value, unit };
    if (target) f.target = target;
    if (note) f.note = note;
    const i = this.list.findIndex((x) => x.key === key);
    if (i >= 0) this.list[i] = f;
    else this.list.push(f);
  }

  get(key: string): Figure['value'] | undefined {
    return this.list.find((f) => f.key === key)?.value;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  table(): string {
    const head = ['figure', 'value', 'target', ''];
    const rows: Array<string[] | string> = [];
    let section = '';
    for (const f of this.list) {
      const s = f.key.split('.')[0]!;
      if (s !== section) rows.push((section = s));
      const value = f.value === null ? 'n/a' : typeof f.value === 'number' ? `${fmt(f.value)} ${f.unit}`.trim() : String(f.value);
      const target = f.target ? `${f.target.cmp} ${fmt(f.target.value)} ${f.unit}`.trim() : '';
      const m = met(f);
      rows.push([f.label + (f.note ? ` (${f.note})` : ''), value, target, m === null ? '' : m ? 'met' : 'MISSED']);
    }
    const cells = [head, ...rows.filter((r): r is string[] => Array.isArray(r))];
    const widths = head.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
    const line = (r: string[]) => r.map((cell, c) => (c === 1 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
    return [line(head), ...rows.map((r) => (typeof r === 'string' ? `-- ${r}` : line(r)))].join('\n');
  }

  /** The table as Markdown, for docs/performance.md. */
  markdown(): string {
    const out = ['| figure | value | target | |', '|---|---:|---|---|'];
    for (const f of this.list) {
      const value = f.value === null ? 'n/a' : typeof f.value === 'number' ? `${fmt(f.value)} ${f.unit}`.trim() : String(f.value);
      const target = f.target ? `${f.target.cmp} ${fmt(f.target.value)} ${f.unit}`.trim() : '';
      const m = met(f);
      out.push(`| \`${f.key}\` ${f.label}${f.note ? ` (${f.note})` : ''} | ${value} | ${target} | ${m === null ? '' : m ? 'met' : '**missed**'} |`);
    }
    return out.join('\n');
  }

  json(meta: Record<string, unknown>): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (const f of this.list) o[f.key] = f.value;
    o.targets = Object.fromEntries(this.list.filter((f) => f.target).map((f) => [f.key, { [f.target!.cmp]: f.target!.value, met: met(f) }]));
    o.notes = [...this.notes, ...this.list.filter((f) => f.note).map((f) => `${f.key}: ${f.note}`)];
    o.meta = meta;
    return o;
  }
}

function fmt(x: number): string {
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  if (Math.abs(x) >= 100) return Math.round(x);
  return Number(x.toPrecision(4));
}
