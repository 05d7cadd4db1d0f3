/**
 * After a failed write, the disk may hold a change that was refused (the write landed, its sync
 * failed) or miss one (a torn record dropped at reopen). The seat table in memory is exactly what
 * was answered ok (refused changes were undone), so the disk is made equal to it.
 */
import type { Borrow, Lease, Mutation } from './model.ts';
import type { StoredState } from './ports.ts';

/** The mutations that make the stored leases and borrows equal to `leases` and `borrows`. */
export function reconcileRecords(disk: StoredState, leases: readonly Lease[], borrows: readonly Borrow[]): Mutation[] {
  const out: Mutation[] = [];
  const storedLeases = new Map(disk.leases.map((l) => [l.id, l]));
  for (const l of leases) {
    const s = storedLeases.get(l.id);
    if (!s || !same(s, l)) out.push({ kind: 'lease.put', lease: l });
    storedLeases.delete(l.id);
  }
  for (const id of storedLeases.keys()) out.push({ kind: 'lease.del', id });
  const storedBorrows = new Map(disk.borrows.map((b) => [b.id, b]));
  for (const b of borrows) {
    const s = storedBorrows.get(b.id);
    if (!s || !same(s, b)) out.push({ kind: 'borrow.put', borrow: b });
    storedBorrows.delete(b.id);
  }
  for (const id of storedBorrows.keys()) out.push({ kind: 'borrow.del', id });
  return out;
}

/** A meta key written back only if the disk holds another value. */
export function reconcileMeta(disk: StoredState, key: string, value: unknown): Mutation[] {
  return same(disk.meta.get(key), value) ? [] : [{ kind: 'meta.put', key, value }];
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

/** Key order does not matter (records are rebuilt with spread and may list fields in any order). */
function canon(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v as Record<string, unknown>)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
