/**
 * Text from the network is shown to people: in licctl tables, in the daemon's log. Every string
 * field refuses control characters, ESC sequences, bidi overrides and unpaired surrogates with
 * BAD_REQUEST naming the field; strings that got in before (an old database) are printed escaped.
 */
import test from 'ava';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { LicdError } from '../../src/core/errors.ts';
import type { Lease } from '../../src/core/model.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';
import { killAll, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(() => killAll());

const BAD: Array<[string, string]> = [
  ['a newline', 'a\ninfo  lease granted user=mallory'],
  ['a carriage return', 'ok\rFORGED'],
  ['NUL', 'nul\0byte'],
  ['an ESC sequence', '\x1b[2J\x1b[31mOWNED'],
  ['DEL', 'del\x7f'],
  ['a C1 control', 'c1\u009b2J'],
  ['a right-to-left override', 'evil\u202Egnp.exe'],
  ['a bidi isolate', 'iso\u2066late'],
  ['a line separator', 'line\u2028sep'],
  ['a lone high surrogate', 'half\ud800'],
  ['a lone low surrogate', '\udc00half'],
];

test('every text field refuses control characters, ESC sequences, bidi controls and lone surrogates, naming the field', async (t) => {
  t.timeout(50_000);
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client({ user: 'alice', host: 'node-a' });
  const admin = await d.admin();
  const home = tempDir('licd-text-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const lease = await c.checkout('vray_render');

  const co = { feature: 'vray_interface', user: 'alice', host: 'node-a', pid: 1 };
  // [field the answer must name, how to send a request with `bad` in it]
  const cases: Array<[string, (bad: string) => Promise<unknown>]> = [
    ['id', (bad) => rawRequest(c, { id: bad, op: 'status' })],
    ['user', (bad) => c.request('checkout', { ...co, user: bad })],
    ['host', (bad) => c.request('checkout', { ...co, host: bad })],
    ['feature', (bad) => c.request('checkout', { ...co, feature: bad })],
    ['version', (bad) => c.request('checkout', { ...co, version: bad })],
    ['feature', (bad) => c.request('status', { feature: bad })],
    ['feature', (bad) => c.request('checkin', { feature: bad })],
    ['leases[0]', (bad) => c.request('heartbeat', { leases: [bad] })],
    ['leases[0]', (bad) => c.request('checkin', { leases: [bad] })],
    ['request.user', (bad) => new BorrowClient({ home, hostId: 'cd'.repeat(16), user: bad, hostName: 'laptop' }).borrow(c, [{ feature: 'vray_render', count: 1 }], 2)],
    ['request.hostName', (bad) => new BorrowClient({ home, hostId: 'cd'.repeat(16), user: 'alice', hostName: bad }).borrow(c, [{ feature: 'vray_render', count: 1 }], 2)],
    ['clientKey', (bad) => c.request('borrow.list', { clientKey: bad })],
    ['lease', (bad) => admin.request('lease.revoke', { lease: bad }, { admin: true })],
    ['borrow', (bad) => admin.request('borrow.lost', { borrow: bad }, { admin: true })],
    ['limits.groups.artists.members[0]', (bad) => admin.request('limits.set', { limits: { groups: { artists: { maxSeats: 1, members: [bad] } } } }, { admin: true })],
  ];
  const wrong: string[] = [];
  for (const [field, send] of cases) {
    for (const [what, bad] of BAD) {
      let code = 'accepted';
      let message = '';
      try {
        await send(bad);
      } catch (e) {
        code = (e as LicdError).code ?? String(e);
        message = (e as Error).message;
      }
      if (code !== 'BAD_REQUEST' || !message.includes(field)) wrong.push(`${field} with ${what}: ${code} ${message}`);
    }
  }
  t.deepEqual(wrong, [], 'every field with every kind of unsafe text is refused with BAD_REQUEST naming the field');

  const s = await c.status();
  t.deepEqual(
    s.features.flatMap((f) => [...f.leases.map((l) => l.id), ...f.borrows.map((b) => b.id)]),
    [lease.id],
    'nothing was granted or borrowed by the refused requests',
  );
  // Ordinary non-ASCII text is fine.
  const ok = await c.request<{ lease: { user: string; host: string } }>('checkout', { ...co, user: 'José Müller 日本', host: 'ноутбук-1' });
  t.like(ok.lease, { user: 'José Müller 日本', host: 'ноутбук-1' });
});

/** Sends a raw request whose id the SDK would not choose; resolves or throws like request(). */
async function rawRequest(c: LicdClient, body: Record<string, unknown>): Promise<unknown> {
  const topic = `licd/v1/client/${c.clientId}/res`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer')), 5000);
    const onMessage = (tp: string, payload: Buffer) => {
      if (tp !== topic) return;
      const a = JSON.parse(payload.toString('utf8')) as { id: unknown; ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (a.id !== body.id) return;
      clearTimeout(timer);
      c.mqtt.off('message', onMessage);
      if (a.ok) resolve(a.result);
      else reject(new LicdError(a.error!.code as never, a.error!.message));
    };
    c.mqtt.on('message', onMessage);
    c.mqtt.publish(`licd/v1/client/${c.clientId}/req`, JSON.stringify(body), { qos: 1 });
  });
}

test('strings stored before the rule (an old database) are printed escaped by licctl status and in the daemon log', async (t) => {
  t.timeout(55_000);
  const dir = tempDir();
  const config = join(dir, 'licd.json');
  writeFileSync(config, JSON.stringify({}));
  const env = { LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', LICD_HOST: 'node-a', LICD_LOG_LEVEL: 'info' };
  // A first start writes the development material and the database; then a stored lease from an
  // older licd, with a forged log line for a user and terminal escapes for a host, is put in.
  let d = startDaemonProcess(env, ['--config', config]);
  t.teardown(() => {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await d.waitFor(/listening on mqtt:/);
  d.child.kill('SIGTERM');
  await d.exited;
  const now = Date.now();
  const old: Lease = {
    id: 'oldlease0001',
    feature: 'vray_render',
    count: 1,
    clientId: 'old-client',
    pid: 4242,
    user: 'a\ninfo  lease granted user=mallory',
    host: '\x1b[2J\x1b[31mOWNED\u202Egnp.exe',
    since: now,
    expiresAt: now + 600_000,
    ttlMs: 60_000,
    disconnectedAt: null,
  };
  const db = new Level<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' });
  await db.put(`lease!${old.id}`, old, { sync: true });
  await db.close();

  d = startDaemonProcess(env, ['--config', config]);
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  const st = await run(['status', '--broker', url], { LICD_HOST: 'node-a' });
  t.is(st.code, 0, st.stderr);
  const line = st.stdout.split('\n').find((l) => l.includes('oldlease0001'));
  t.truthy(line, `the old lease is listed:\n${st.stdout}`);
  t.true(line!.includes('a\\u000ainfo  lease granted user=mallory@\\u001b[2J\\u001b[31mOWNED\\u202egnp.exe'), line);
  t.false(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.test(st.stdout), 'no control character or bidi override reaches the terminal');
  t.false(st.stdout.split('\n').some((l) => l.startsWith('info  lease granted')), 'no forged line in the output');

  // An admin revokes it (the development admin password is in the data dir): licctl prints it
  // and the daemon logs it, both escaped.
  const rv = await run(['lease', 'revoke', 'oldlease0001', '--broker', url], { LICD_DATA_DIR: dir });
  t.is(rv.code, 0, rv.stderr);
  t.is(rv.stdout.trim().split('\n').length, 1, `licctl lease revoke prints one line: ${rv.stdout}`);
  t.false(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.test(rv.stdout + rv.stderr), `licctl lease revoke prints no control character: ${rv.stdout}`);
  await d.waitFor(/lease revoked by admin[^\n]*oldlease0001/, 20_000);
  const log = d.stderr() + d.stdout();
  const logLine = log.split('\n').find((l) => l.includes('lease revoked by admin') && l.includes('oldlease0001'))!;
  t.log(logLine);
  t.true(logLine.includes('user="a\\ninfo  lease granted user=mallory"'), logLine);
  t.true(logLine.includes('\\u001b[2J'), logLine);
  t.false(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.test(log), 'no control character or bidi override in the daemon log');
  t.false(log.split('\n').some((l) => /^info\s+lease granted user=mallory/.test(l)), 'no forged line in the daemon log');
});
