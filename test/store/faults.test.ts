import test from 'ava';
import { reconcileMeta, reconcileRecords } from '../../src/core/reconcile.ts';
import type { Lease } from '../../src/core/model.ts';
import { atStartUp, classifyStoreError, storeFaultError, STORE_EXIT } from '../../src/store/faults.ts';

const level = (msg: string, code = 'LEVEL_IO_ERROR') => Object.assign(new Error('Database failed to open'), { code: 'LEVEL_DATABASE_NOT_OPEN', cause: Object.assign(new Error(msg), { code }) });

test("LevelDB's and node's storage errors are told apart", (t) => {
  t.is(classifyStoreError(level('IO error: /d/db/000005.ldb: No space left on device')), 'no-space');
  t.is(classifyStoreError(new Error('IO error: /d/db/000003.log: No space left on device')), 'no-space');
  t.is(classifyStoreError(level('IO error: /d/db/LOCK: Read-only file system')), 'read-only');
  t.is(classifyStoreError(level('IO error: lock /d/db/LOCK: already held by process', 'LEVEL_LOCKED')), 'locked');
  t.is(classifyStoreError(level('IO error: /d/db/LOCK: Permission denied')), 'permission');
  t.is(classifyStoreError(Object.assign(new Error('EACCES: permission denied, open'), { code: 'EACCES' })), 'permission');
  t.is(classifyStoreError(level('IO error: /d/db/000005.ldb: Input/output error')), 'io');
  t.is(STORE_EXIT.locked, 75);
  t.is(STORE_EXIT['no-space'], 73);
});

test('the sentence names the dir and the fix, for a running daemon and at start-up', (t) => {
  const e = storeFaultError(new Error('IO error: /d/db/000003.log: No space left on device'), '/d/db', true);
  t.is(e.code, 'STORE_FAILED');
  t.is(e.message, 'no space left on /d/db: the disk holding it is full (no space left on device); free space there, licd resumes writing by itself');
  t.regex(atStartUp(e).message, /^no space left on \/d\/db: .*free space there, then start licd again$/);
  t.regex(storeFaultError(level('IO error: lock /d/db/LOCK: already held by process', 'LEVEL_LOCKED'), '/d/db', false).message, /^another licd holds \/d\/db /);
});

const lease = (id: string, expiresAt = 2): Lease => ({ id, feature: 'f', count: 1, clientId: 'c', pid: 1, user: 'u', host: 'h', since: 1, expiresAt, ttlMs: 1, disconnectedAt: null });

test('reconciling writes only the difference between the disk and what was answered', (t) => {
  const disk = { leases: [lease('same'), lease('old', 5), lease('refused')], borrows: [], meta: new Map<string, unknown>([['dongle-counter', '4']]) };
  const memory = [{ ...lease('same') }, lease('old', 9), lease('lost')];
  const fix = reconcileRecords(disk, memory, []);
  t.deepEqual(
    fix.map((m) => (m.kind === 'lease.put' ? `put ${m.lease.id}` : m.kind === 'lease.del' ? `del ${m.id}` : m.kind)),
    ['put old', 'put lost', 'del refused'],
  );
  t.deepEqual(reconcileMeta(disk, 'dongle-counter', '4'), []);
  t.deepEqual(reconcileMeta(disk, 'dongle-counter', '5'), [{ kind: 'meta.put', key: 'dongle-counter', value: '5' }]);
});
