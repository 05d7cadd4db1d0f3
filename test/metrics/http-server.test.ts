/**
 * licd's HTTP server on its own (src/http/server.ts), over real sockets: the route table the web
 * page will add to (a route that takes a body up to its limit), a failing handler, HTTPS with a
 * certificate licd makes, and stop() with a client still connected.
 */
import test from 'ava';
import { request } from 'node:https';
import { connect } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { silentLog } from '../../src/core/service.ts';
import { HttpServer } from '../../src/http/server.ts';
import { ensureSelfSignedCert } from '../../src/mqtt/tls.ts';
import { readFileSync } from 'node:fs';
import { tempDir } from '../helpers/daemon.ts';

test('routes: a body up to the route\'s limit, 413 above it; a handler that throws is a 500 without a stack', async (t) => {
  const logged: string[] = [];
  const log = { ...silentLog, error: (m: string, f?: Record<string, unknown>) => logged.push(`${m} ${JSON.stringify(f)}`) };
  const s = new HttpServer({ host: '127.0.0.1', port: 0, log });
  s.route({ method: 'POST', path: '/echo', maxBodyBytes: 16, handle: (r) => ({ status: 200, body: r.body.toString().toUpperCase() }) });
  s.route({ method: 'GET', path: '/boom', handle: () => { throw new Error('secret internals at /srv/licd/x.ts:12'); } });
  const { url } = await s.start();
  t.teardown(() => s.stop());
  const ok = await fetch(`${url}/echo`, { method: 'POST', body: 'hello' });
  t.is(ok.status, 200);
  t.is(await ok.text(), 'HELLO');
  const big = await fetch(`${url}/echo`, { method: 'POST', body: 'x'.repeat(17) });
  t.is(big.status, 413);
  t.regex(await big.text(), /the request body of 17 bytes is over the limit of 16 bytes/);
  const boom = await fetch(`${url}/boom`);
  t.is(boom.status, 500);
  const text = await boom.text();
  t.is(text, 'internal error; the licd log says why\n');
  t.regex(logged.join('\n'), /secret internals/, 'the cause goes to the log');
  const upgrade = await fetch(`${url}/ws`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket' } }).catch((e: Error) => e);
  t.true(upgrade instanceof Error || upgrade.status === 404, 'no upgrade handler: refused');
});

test('HTTPS with a certificate; stop() ends an idle keep-alive connection and closes the port', async (t) => {
  const dir = tempDir('licd-https-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  ensureSelfSignedCert({ certFile, keyFile, names: { dns: ['localhost'], ip: ['127.0.0.1'] } });
  const s = new HttpServer({ host: '127.0.0.1', port: 0, log: silentLog, tls: { cert: readFileSync(certFile), key: readFileSync(keyFile) } });
  s.route({ method: 'GET', path: '/healthz', handle: () => ({ status: 200, type: 'application/json', body: '{"status":"ok"}' }) });
  const { url } = await s.start();
  t.regex(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(`${url}/healthz`, { ca: readFileSync(certFile), agent: false, headers: { Connection: 'keep-alive' } }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(body, '{"status":"ok"}');
  // Resolves (the test's timeout would say otherwise) and the port is closed.
  await s.stop();
  const after = await fetch(url.replace('https', 'http')).catch((e: Error) => e);
  t.true(after instanceof Error, 'nothing listens any more');
});

test('a client that sends its request slowly (slowloris) is cut off with 408 instead of holding a connection', async (t) => {
  t.timeout(60_000);
  const s = new HttpServer({ host: '127.0.0.1', port: 0, log: silentLog });
  s.route({ method: 'GET', path: '/metrics', handle: () => ({ status: 200, body: 'x' }) });
  const { port } = await s.start();
  t.teardown(() => s.stop());
  const sock = connect({ host: '127.0.0.1', port });
  let got = '';
  sock.on('data', (d) => (got += d));
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  // A header line now and then, never the end of the headers.
  const drip = setInterval(() => sock.writable && sock.write('X-A: b\r\n'), 1000);
  await closed;
  clearInterval(drip);
  t.regex(got, /^HTTP\/1\.1 408 /);
});
