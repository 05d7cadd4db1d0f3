/** Latency summaries. Samples are round-trip times in ms. */
export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(samples: ArrayLike<number>): Summary {
  const a = Float64Array.from(samples as ArrayLike<number>).sort();
  const n = a.length;
  if (n === 0) return { n: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const q = (p: number) => a[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i]!;
  return { n, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: a[n - 1]!, mean: sum / n };
}

export function concatSamples(parts: ReadonlyArray<ArrayLike<number>>): Float64Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Float64Array(n);
  let i = 0;
  for (const p of parts) {
    out.set(p as ArrayLike<number>, i);
    i += p.length;
  }
  return out;
}

export const round = (x: number, digits = 2) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);
