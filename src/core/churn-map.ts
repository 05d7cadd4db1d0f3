/**
 * A Map for keys that are deleted and set again and again (a client's id, its process's owner
 * key: each checkout and check-in of a closed loop). V8 keeps a deleted entry in its bucket's
 * chain until the table is rehashed, which in a table of 100,000 entries may be 100,000 changes
 * away; a key deleted and set again N times in between makes its bucket's chain N entries long,
 * and every lookup of it walks them all (26 µs per get, set and delete of one of 20 such keys
 * beside 100,000 others, against 0.3 µs: docs/performance.md, "Figures of 2 December 2026,
 * sixth session"). Here a delete leaves the entry in place with no value, and a later set of the
 * key reuses it; such entries are swept out once they are more than the live ones and more than
 * SWEEP_AT. Pure: no I/O.
 */

/** The value of an entry deleted but not yet swept. */
const GONE: unique symbol = Symbol('gone');

/** Entries deleted but not swept that are always tolerated (a sweep walks the whole table). */
export const SWEEP_AT = 1024;

export class ChurnMap<K, V> {
  private readonly m = new Map<K, V | typeof GONE>();
  private gone = 0;

  /** Live entries. */
  get size(): number {
    return this.m.size - this.gone;
  }

  get(key: K): V | undefined {
    const v = this.m.get(key);
    return v === GONE ? undefined : v;
  }

  has(key: K): boolean {
    const v = this.m.get(key);
    return v !== undefined ? v !== GONE : this.m.has(key);
  }

  set(key: K, value: V): this {
    if (this.m.get(key) === GONE) this.gone--;
    this.m.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.m.set(key, GONE);
    this.gone++;
    if (this.gone > SWEEP_AT && this.gone > this.m.size - this.gone) this.sweep();
    return true;
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.m) if (v !== GONE) yield [k, v];
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** Deletes the entries left by deletes, each once: their keys' chains then hold them no more. */
  private sweep(): void {
    for (const [k, v] of this.m) if (v === GONE) this.m.delete(k);
    this.gone = 0;
  }
}
