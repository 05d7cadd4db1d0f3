/**
 * docs/monitoring.md against the code: every metric licd serves is in its table and every one in
 * the table is served; the example alerting rules pass `promtool check rules`; the example config
 * block is a valid licd config.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.ts';
import { startTestDaemon, tempDir } from '../helpers/daemon.ts';

const doc = readFileSync(new URL('../../docs/monitoring.md', import.meta.url), 'utf8');

function blocks(lang: string): string[] {
  return [...doc.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

test('every metric licd serves is documented in docs/monitoring.md, and nothing more', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const served = [...d.metrics.render().matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
  const table = [...doc.matchAll(/^\| `(licd_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
  t.deepEqual(table, served);
});

test('the example alerting rules pass promtool check rules; the example settings parse', (t) => {
  const rules = blocks('yaml').find((b) => b.startsWith('groups:'));
  t.truthy(rules);
  const dir = tempDir('licd-rules-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'rules.yml'), rules!);
  const r = spawnSync('promtool', ['check', 'rules', join(dir, 'rules.yml')], { encoding: 'utf8' });
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /SUCCESS: 7 rules found/);
  const settings = blocks('json').find((b) => b.includes('"alerts"'))!;
  const c = parseConfig(JSON.parse(settings));
  t.deepEqual(c.alerts.command, ['/usr/local/bin/page-admins', '--from', 'licd']);
  t.is(c.alerts.webhook, 'https://chat.studio.lan/hooks/licd');
  t.is(c.http.port, 9136);
  t.is(c.http.host, '127.0.0.1');
});

test('bad http and alerts settings name the field and the fix', (t) => {
  const msg = (raw: unknown, env: Record<string, string> = {}) => t.throws(() => parseConfig(raw, env))!.message;
  t.regex(msg({ alerts: { command: '/bin/mail admins' } }), /config: alerts\.command must be a list of strings: the program and its arguments, run without a shell/);
  t.regex(msg({ alerts: { command: [] } }), /alerts\.command must be a list of strings/);
  t.regex(msg({ alerts: { webhook: 'ftp://x' } }), /config: alerts\.webhook must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/);
  t.regex(msg({ alerts: { atLimitMinutes: 0 } }), /alerts\.atLimitMinutes/);
  t.regex(msg({ http: { port: 70000 } }), /http\.port/);
  t.regex(msg({ http: { listen: 1 } }), /http/);
  t.regex(msg({}, { LICD_HTTP_PORT: 'nine' }), /LICD_HTTP_PORT must be a whole number from 0 to 65535, got "nine"/);
  t.like(parseConfig({ http: { enabled: false, host: '0.0.0.0', port: 9200 } }).http, { enabled: false, host: '0.0.0.0', port: 9200 });
  t.is(parseConfig({ http: { port: 9200 } }, { LICD_HTTP_PORT: '0' }).http.port, 0);
});
