import { randomBytes } from 'node:crypto';

/**
 * Fills a request template for client `i`: "$i" is the client index, "$pid" the process id,
 * "$key" 32 fresh random bytes in hex.
 */
export function fillParams(params: Record<string, unknown>, i: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) {
    out[k] = typeof v === 'string' ? v.replaceAll('$i', String(i)).replaceAll('$pid', String(process.pid)).replaceAll('$key', randomBytes(32).toString('hex')) : v;
  }
  return out;
}
