/**
 * Issue 14, metrics: licd as a process (npm start's defaults on free ports), real licctl clients
 * checking a seat out and being refused, GET /metrics over HTTP: the text passes
 * `promtool check metrics` (Debian's prometheus package) and shows what a user expects. And the
 * HTTP server's edges: 404, 405, a body or a header flood refused, /healthz, a port that is taken.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { connect as request, createServer } from 'node:net';
import { rmSync } from 'node:fs';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, run, startDaemonProcess } from '../helpers/procs.ts';

test.after.always(killAll);

function promtool(text: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, out }));
    p.stdin.end(text);
  });
}

/** The value of one sample line, `name{labels} value`, exactly as written. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A raw HTTP exchange, for requests fetch() will not make. */
function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = request({ host: '127.0.0.1', port });
    let out = '';
    s.on('data', (d) => (out += d));
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('error', (e) => (out ? resolve(out) : reject(e)));
    s.end(text);
  });
}

test('GET /metrics of a daemon with a seat checked out and a checkout refused passes promtool and shows them', async (t) => {
  t.timeout(90_000);
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 40_000))[1]!;
  const http = (await d.waitFor(/metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/))[1]!;
  const env = { HOME: home, LICD_BROKER: url, XDG_RUNTIME_DIR: home, LICD_USER: 'ann' };

  // Before any request: every licensed feature's counters are there, at 0.
  const before = await (await fetch(`${http}/metrics`)).text();
  t.is(sample(before, 'licd_checkouts_total{feature="nuke_i",result="granted"}'), 0);
  t.is(sample(before, 'licd_checkouts_total{feature="nuke_i",result="denied",code="NO_SEATS"}'), 0);

  const held = licctl(['checkout', 'nuke_i'], env);
  await held.waitFor(/holding/, 30_000);
  const refused = await run(['checkout', 'nuke_i'], { ...env, LICD_USER: 'bob' });
  t.is(refused.code, 3, refused.stderr);

  // A feature the license does not have is counted, without a series of its own per name asked.
  t.not((await run(['checkout', 'no_such_feature'], env)).code, 0);
  const res = await fetch(`${http}/metrics`);
  t.is(res.status, 200);
  t.is(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  const check = await promtool(text);
  t.is(check.code, 0, check.out);
  t.is(check.out.trim(), '', 'promtool has nothing to say about it');
  t.is(sample(text, 'licd_seats{feature="nuke_i",state="leased"}'), 1);
  t.is(sample(text, 'licd_seats{feature="nuke_i",state="free"}'), 0);
  t.is(sample(text, 'licd_seats_licensed{feature="nuke_i"}'), 1);
  t.is(sample(text, 'licd_checkouts_total{feature="nuke_i",result="granted"}'), 1);
  t.is(sample(text, 'licd_checkouts_total{feature="nuke_i",result="denied",code="NO_SEATS"}'), 1);
  t.is(sample(text, 'licd_dongle_present'), 1);
  t.is(sample(text, 'licd_checkouts_total{feature="_unlicensed",result="denied",code="UNKNOWN_FEATURE"}'), 1);
  t.notRegex(text, /no_such_feature/);
  t.true(sample(text, 'licd_request_duration_seconds_count{op="checkout"}')! >= 2, 'both checkouts are timed');
  t.true(sample(text, 'licd_store_commit_duration_seconds_count')! >= 1, 'the grant\'s batch is timed');
  t.regex(text, /^licd_build_info\{version="0\.1\.0",nodejs="v\d+\.\d+\.\d+"\} 1$/m);
  t.notRegex(text, /ann|bob/, 'no user names in the metrics');

  // /healthz while serving.
  const h = await fetch(`${http}/healthz`);
  t.is(h.status, 200);
  t.like(await h.json(), { status: 'ok', version: '0.1.0' });

  held.child.kill('SIGINT');
  await held.exited;
  d.child.kill('SIGTERM');
  await d.exited;
});

test('the HTTP server: unknown paths 404, other methods 405, a request body or a header flood refused, no stack traces', async (t) => {
  t.timeout(60_000);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const http = (await d.waitFor(/metrics on (http:\/\/127\.0\.0\.1:(\d+))\/metrics/, 40_000));
  const base = http[1]!;
  const port = Number(http[2]);

  const nf = await fetch(`${base}/etc/passwd`);
  t.is(nf.status, 404);
  t.regex(await nf.text(), /no such path: \/etc\/passwd \(licd serves \/metrics, \/healthz, \/\)/);
  const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'GET, HEAD');
  const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(await head.text(), '');

  const withBody = await raw(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
  t.regex(withBody, /^HTTP\/1\.1 413 /);
  t.regex(withBody, /takes no request body/);
  const flood = await raw(port, `GET /metrics HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 400 }, (_, i) => `X-Flood-${i}: ${'a'.repeat(40)}`).join('\r\n')}\r\n\r\n`);
  t.regex(flood, /^HTTP\/1\.1 431 /);
  const garbage = await raw(port, 'NOT HTTP AT ALL\r\n\r\n');
  t.regex(garbage, /^HTTP\/1\.1 400 /);
  for (const text of [withBody, flood, garbage]) t.notRegex(text, /at .*\.ts:\d+|Error:/);
  // Still serving after all that.
  t.is((await fetch(`${base}/metrics`)).status, 200);
  d.child.kill('SIGTERM');
  await d.exited;
});

test('a taken HTTP port stops licd at start with a message naming the port and the setting (exit 69)', async (t) => {
  t.timeout(60_000);
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0', LICD_HTTP_PORT: String(port) });
  const { code } = await d.exited;
  t.is(code, 69);
  t.regex(d.stderr(), new RegExp(`the HTTP server \\(metrics, health\\) cannot listen: 127\\.0\\.0\\.1:${port} is already in use by another program .*http\\.port in the config file or LICD_HTTP_PORT`));
  t.notRegex(d.stderr(), /\n\s+at /, 'no stack trace');
});
