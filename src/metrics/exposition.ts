/**
 * A small writer of the Prometheus text exposition format 0.0.4: counters, gauges and histograms
 * with labels, rendered on each scrape. licd's own instead of prom-client (docs/monitoring.md): the
 * few metric kinds licd needs fit in this file, licd's metrics are mostly read from its state at
 * scrape time rather than kept in a global registry, and prom-client's default registry is a module
 * singleton (DESIGN.md: none) that also pulls in process and GC collectors licd does not need.
 */

export type Labels = Record<string, string>;

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as the format wants it: backslash, double quote and line feed escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/**
 * The series key of a label set: each name and value with its length in front, so no two label
 * sets share a key. Called on every observation (each request, each commit): no arrays, no JSON.
 */
function keyOf(labels: Labels): string {
  let key = '';
  for (const k in labels) {
    const v = labels[k]!;
    key += `${k.length}:${k}${v.length}:${v}`;
  }
  return key;
}

abstract class Family {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {
    if (!NAME.test(name)) throw new Error(`metric name ${name} is not valid`);
  }
  protected checkLabels(labels: Labels): void {
    for (const k of Object.keys(labels)) if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`label name ${k} of ${this.name} is not valid`);
  }
  header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }
  abstract samples(): string;
}

/** A counter kept in memory: only goes up; `inc` makes the series if it is new. */
export class Counter extends Family {
  private readonly series = new Map<string, { labels: Labels; value: number }>();
  constructor(name: string, help: string) {
    if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    super(name, help, 'counter');
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = keyOf(labels);
    const s = this.series.get(k);
    if (s) s.value += by;
    else {
      this.checkLabels(labels);
      this.series.set(k, { labels, value: by });
    }
  }
  /** Makes the series at 0 if it does not exist (so rate() works from the first scrape). */
  touch(labels: Labels): void {
    this.inc(labels, 0);
  }
  get(labels: Labels = {}): number {
    return this.series.get(keyOf(labels))?.value ?? 0;
  }
  samples(): string {
    let out = '';
    for (const s of this.series.values()) out += `${this.name}${labelText(s.labels)} ${formatValue(s.value)}\n`;
    return out;
  }
}

/** A gauge whose samples are read at scrape time by `read`. */
export class Gauge extends Family {
  constructor(
    name: string,
    help: string,
    private readonly read: () => Array<{ labels?: Labels; value: number }>,
  ) {
    super(name, help, 'gauge');
  }
  samples(): string {
    let out = '';
    for (const s of this.read()) {
      const labels = s.labels ?? {};
      this.checkLabels(labels);
      out += `${this.name}${labelText(labels)} ${formatValue(s.value)}\n`;
    }
    return out;
  }
}

/** A histogram with fixed buckets (upper bounds, seconds for durations). `observe` is a few additions. */
export class Histogram extends Family {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
  ) {
    super(name, help, 'histogram');
    for (let i = 1; i < buckets.length; i++) if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`buckets of ${name} must increase`);
  }
  observe(value: number, labels: Labels = {}): void {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) {
      this.checkLabels(labels);
      s = { labels, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    // Counts per bucket (not cumulative); rendered cumulative.
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]!) i++;
    if (i < this.buckets.length) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  touch(labels: Labels): void {
    const k = keyOf(labels);
    if (!this.series.has(k)) {
      this.checkLabels(labels);
      this.series.set(k, { labels, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 });
    }
  }
  count(labels: Labels = {}): number {
    return this.series.get(keyOf(labels))?.count ?? 0;
  }
  samples(): string {
    let out = '';
    for (const s of this.series.values()) {
      let cum = 0;
      this.buckets.forEach((b, i) => {
        cum += s.counts[i]!;
        out += `${this.name}_bucket${labelText(s.labels, ['le', formatValue(b)])} ${cum}\n`;
      });
      out += `${this.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}\n`;
      out += `${this.name}_sum${labelText(s.labels)} ${formatValue(s.sum)}\n`;
      out += `${this.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

/** The metric families of one daemon (no module-level registry: the composition root makes it). */
export class Registry {
  private readonly families: Family[] = [];
  add<T extends Family>(f: T): T {
    if (this.families.some((x) => x.name === f.name)) throw new Error(`metric ${f.name} registered twice`);
    this.families.push(f);
    return f;
  }
  render(): string {
    let out = '';
    for (const f of this.families) out += f.header() + f.samples();
    return out;
  }
}
