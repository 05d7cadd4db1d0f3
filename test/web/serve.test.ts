/**
 * Issue 16: licd serves its web page from its own HTTP server (the one with /metrics): the right
 * types, gzip when asked, hashed assets cached and the page not, nothing outside the page, under
 * 200 KB gzipped with its MQTT client; HTTPS with the broker's certificate when TLS is on.
 */
import test from 'ava';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { startTestDaemon } from '../helpers/daemon.ts';

/** A raw HTTP/1.1 request (no client-side path normalisation), the status line back. */
function raw(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let out = '';
    s.on('data', (d) => (out += d));
    s.on('end', () => resolve(out.split('\r\n')[0]!));
    s.on('error', reject);
  });
}

test('the page and its assets: types, gzip, caching, CSP; no path outside them; under 200 KB gzipped', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const base = d.http!.url;
  const page = await fetch(`${base}/`, { headers: { 'accept-encoding': 'identity' } });
  t.is(page.status, 200);
  t.is(page.headers.get('content-type'), 'text/html; charset=utf-8');
  t.is(page.headers.get('cache-control'), 'no-store');
  t.regex(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  const html = await page.text();
  const assets = [...html.matchAll(/(?:src|href)="\/(app-[A-Za-z0-9]+\.(js|css))"/g)].map((m) => ({ name: m[1]!, ext: m[2]! }));
  t.deepEqual(assets.map((a) => a.ext).sort(), ['css', 'js']);
  let gzipped = 0;
  // node's fetch would unzip by itself: count the bytes on the wire with a raw request.
  for (const a of [{ name: '', ext: 'html' }, ...assets]) {
    const r = await fetch(`${base}/${a.name}`, { headers: { 'accept-encoding': 'gzip' } });
    t.is(r.headers.get('content-encoding'), 'gzip', a.name);
    gzipped += Number(r.headers.get('content-length'));
    await r.arrayBuffer();
  }
  t.true(gzipped < 200 * 1024, `the page is ${gzipped} bytes gzipped (budget 200 KB)`);
  t.log(`page: ${gzipped} bytes gzipped`);
  const js = assets.find((a) => a.ext === 'js')!.name;
  const plain = await fetch(`${base}/${js}`, { headers: { 'accept-encoding': 'identity' } });
  t.is(plain.headers.get('content-type'), 'text/javascript; charset=utf-8');
  t.is(plain.headers.get('content-encoding'), null);
  t.regex(plain.headers.get('cache-control') ?? '', /immutable/);
  const body = Buffer.from(await plain.arrayBuffer());
  t.true(body.includes('licd/v1'), 'the bundle carries the page code');
  // The gzipped form is the same file.
  const port = Number(new URL(base).port);
  const gz = await new Promise<Buffer>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET /${js} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`));
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => {
      const all = Buffer.concat(parts);
      resolve(all.subarray(all.indexOf('\r\n\r\n') + 4));
    });
    s.on('error', reject);
  });
  t.deepEqual(gunzipSync(gz), body);
  for (const target of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/src/web/app/main.tsx', '/index.html/../../package.json', '//etc/passwd', '/dist/web/index.html']) {
    t.regex(await raw(port, target), /^HTTP\/1\.1 404 /, target);
  }
  // The monitoring routes are still there.
  t.is((await fetch(`${base}/healthz`)).status, 200);
});

test('with broker.tls on the HTTP server speaks HTTPS with the broker certificate (page and /metrics)', async (t) => {
  const d = await startTestDaemon({ config: { broker: { tls: { enabled: true, port: 0, host: '127.0.0.1' } } } });
  t.teardown(() => d.dispose());
  const url = new URL(d.http!.url);
  t.is(url.protocol, 'https:');
  for (const path of ['/', '/metrics']) {
    const { status, fingerprint } = await new Promise<{ status: number; fingerprint: string }>((resolve, reject) => {
      const req = httpsRequest({ host: url.hostname, port: url.port, path, rejectUnauthorized: false }, (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        res.resume();
        resolve({ status: res.statusCode ?? 0, fingerprint: `SHA256:${cert.fingerprint256}` });
      });
      req.on('error', reject);
      req.end();
    });
    t.is(status, 200, path);
    t.is(fingerprint, d.tls!.fingerprint, 'the same certificate as the broker');
  }
});
