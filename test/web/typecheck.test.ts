/**
 * The page's sources (src/web/app: browser code, DOM types, Preact's JSX) have their own
 * tsconfig, outside the project's `tsc --noEmit`; esbuild does not check types. This checks them.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/procs.ts';

test('src/web/app type-checks (tsc -p src/web/app)', async (t) => {
  t.timeout(120_000);
  const r = await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', join(ROOT, 'src', 'web', 'app')], { cwd: ROOT }).then(
    () => ({ ok: true, out: '' }),
    (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
  t.true(r.ok, r.out);
});
