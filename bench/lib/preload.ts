/**
 * Fills a daemon's database before it starts: live leases and borrows written with the project's
 * own store (src/store/level-store.ts, key schema lease!<id> and borrow!<id>), with long lives so
 * none expires during the measurement.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Borrow, Lease, Mutation } from '../../src/core/model.ts';
import { META_COUNTER } from '../../src/core/integrity.ts';
import { LevelStore } from '../../src/store/level-store.ts';

const id = () => randomBytes(9).toString('base64url');

export async function preload(dataDir: string, o: { feature: string; leases: number; borrows: number; leaseTtlMs: number; borrowMs: number }): Promise<{ ms: number }> {
  const t0 = performance.now();
  // The store makes only the last level of its path (a recursive mkdir hides why it failed).
  mkdirSync(dataDir, { recursive: true });
  const store = await LevelStore.open(join(dataDir, 'db'));
  const now = Date.now();
  const chunk = 10_000;
  try {
    for (let i = 0; i < o.leases; i += chunk) {
      const muts: Mutation[] = [];
      for (let j = i; j < Math.min(o.leases, i + chunk); j++) {
        const lease: Lease = {
          id: id(),
          feature: o.feature,
          count: 1,
          clientId: `pre-${j}`,
          pid: 1,
          user: 'render',
          host: `pre-${j}`,
          since: now,
          expiresAt: now + o.leaseTtlMs,
          ttlMs: o.leaseTtlMs,
          disconnectedAt: null,
        };
        muts.push({ kind: 'lease.put', lease });
      }
      await store.commit(muts);
    }
    for (let i = 0; i < o.borrows; i += chunk) {
      const muts: Mutation[] = [];
      for (let j = i; j < Math.min(o.borrows, i + chunk); j++) {
        const borrow: Borrow = {
          id: id(),
          feature: o.feature,
          count: 1,
          user: 'render',
          hostId: `prehost-${j}`,
          hostName: `pre-${j}`,
          clientKey: randomBytes(32).toString('hex'),
          clientId: null,
          since: now,
          expiresAt: now + o.borrowMs,
          lost: false,
          autoRenew: false,
          via: 'online',
          requestId: id(),
          tokenId: id(),
          tokenIssuedAt: now,
          hours: Math.round(o.borrowMs / 3600_000),
        };
        muts.push({ kind: 'borrow.put', borrow });
      }
      await store.commit(muts);
    }
    // The dongle of a new license starts at 0 and the bench has not stepped it: say so, as a
    // database that has lived with this dongle would.
    await store.commit([{ kind: 'meta.put', key: META_COUNTER, value: '0' }]);
  } finally {
    await store.close();
  }
  return { ms: performance.now() - t0 };
}
