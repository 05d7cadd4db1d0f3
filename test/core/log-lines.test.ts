import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createLog, lineBuffer } from '../../src/log.ts';

test("the daemon's log lines of one event-loop turn go out in one write, in order", async (t) => {
  const writes: string[] = [];
  const lines = lineBuffer({ write: (text: string) => writes.push(text) });
  const log = createLog({ write: lines.write });
  for (let i = 0; i < 50; i++) log.info('lease granted', { lease: `L${i}` });
  t.is(writes.length, 0, 'nothing is written within the turn');
  await new Promise((r) => setImmediate(r));
  t.is(writes.length, 1, `50 lines took ${writes.length} writes`);
  const out = writes[0]!.split('\n');
  t.is(out.length, 51);
  t.is(out[0], 'info  lease granted lease=L0');
  t.is(out[49], 'info  lease granted lease=L49');
  t.is(out[50], '', 'the text ends with a newline');
});

test('a full buffer and flush() write at once; nothing is written twice', async (t) => {
  const writes: string[] = [];
  const lines = lineBuffer({ write: (text: string) => writes.push(text) }, 10);
  for (let i = 0; i < 25; i++) lines.write(`line ${i}`);
  t.is(writes.length, 2, 'two full buffers of 10 went at once');
  lines.flush();
  t.is(writes.length, 3);
  await new Promise((r) => setImmediate(r));
  t.is(writes.length, 3, 'the turn found nothing left');
  t.deepEqual(writes.join('').trimEnd().split('\n'), Array.from({ length: 25 }, (_, i) => `line ${i}`));
});

test("lines still waiting when the process exits are written (process.exit as licd's stop does)", (t) => {
  const script = `
    import { lineBuffer } from ${JSON.stringify(new URL('../../src/log.ts', import.meta.url).pathname)};
    const lines = lineBuffer(process.stderr);
    lines.write('stopping signal=SIGTERM');
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, 'stopping signal=SIGTERM\n');
});
