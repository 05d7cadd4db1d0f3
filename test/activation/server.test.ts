/**
 * The vendor's activation service over real HTTP on loopback (src/activation/server.ts): a good
 * request gets a license; every refusal is JSON with a stable code and a message naming the fix.
 */
import test from 'ava';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toBase64url, utf8 } from '../../src/core/bytes.ts';
import { ACTIVATION_DOMAIN, activationRequestBody } from '../../src/core/activation.ts';
import { verifyEntitlement } from '../../src/core/entitlement.ts';
import { FORMATS } from '../../src/core/signed.ts';
import { dongleSignedBytes } from '../../src/core/trust.ts';
import { nodeEd25519, systemRandom } from '../../src/crypto/ed25519.ts';
import { startActivationService } from '../../src/activation/server.ts';
import { postActivation } from '../../src/activation/client.ts';
import { generateVendorKey } from '../../src/vendor.ts';
import { tempDir } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const seed = new Uint8Array(32).fill(3);
const publicKey = ed.publicKey(seed);

function request(serial: string, emulated = false) {
  const body = utf8(JSON.stringify(activationRequestBody({ dongle: { serial, publicKey, emulated }, counter: 5n, box: { hostId: 'h', hostName: 'box' }, nonce: 'BBBBBBBBBBBBBBBBBBBBBB', now: Date.now(), installed: null })));
  return { format: FORMATS.activationRequest, body: toBase64url(body), sig: toBase64url(ed.sign(seed, dongleSignedBytes(ACTIVATION_DOMAIN, body, emulated))) };
}

test('POST /v1/activate answers a license for the dongle by its own spec; refusals are JSON with codes', async (t) => {
  const dir = tempDir('licd-specs-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'specs'));
  writeFileSync(join(dir, 'specs', 'HW-7.json'), JSON.stringify({ customer: 'Seven', features: [{ name: 'render', version: '1.0', seats: 7, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }] }));
  const key = generateVendorKey(ed, systemRandom, false);
  const lines: string[] = [];
  const svc = await startActivationService({ key, specs: join(dir, 'specs'), ed, host: '127.0.0.1', port: 0, log: (l) => lines.push(l) });
  t.teardown(() => svc.close());

  const license = await postActivation(svc.url, request('HW-7'));
  const e = verifyEntitlement(license, { vendorPublicKey: Buffer.from(key.publicKey, 'hex'), dongle: { serial: 'HW-7', publicKey }, now: Date.now(), ed });
  t.is(e.customer, 'Seven');
  t.is(e.features[0]!.seats, 7);
  t.regex(lines[0]!, /^issued ACT-HW-7-\d+ to dongle HW-7 \(box box, counter 5\): render x7$/);

  // No spec for this dongle and no default: the service's refusal keeps its code.
  const unknown = await t.throwsAsync(postActivation(svc.url, request('HW-8')));
  t.is((unknown as { code?: string }).code, 'ACTIVATION_INVALID');
  t.regex(unknown!.message, /the activation service refused: no license is on record for dongle HW-8/);
  // An emulated dongle, with a production key.
  const emu = await t.throwsAsync(postActivation(svc.url, request('HW-7', true)));
  t.regex(emu!.message, /emulated dongle/);

  // Raw HTTP: bad JSON, wrong path, wrong method.
  const post = (path: string, body: string, method = 'POST') => fetch(svc.url + path, { method, ...(method === 'GET' ? {} : { body }) });
  const bad = await post('/v1/activate', 'not json');
  t.is(bad.status, 400);
  t.is(((await bad.json()) as { error: { code: string } }).error.code, 'BAD_JSON');
  const nf = await post('/v2/x', '{}');
  t.is(nf.status, 404);
  t.regex(((await nf.json()) as { error: { message: string } }).error.message, /POST the activation request to \/v1\/activate/);
  t.is((await post('/v1/activate', '', 'GET')).status, 405);

  // Nothing listening: ACTIVATION_FAILED naming the URL and the setting.
  await svc.close();
  const down = await t.throwsAsync(postActivation(svc.url, request('HW-7'), 3000));
  t.is((down as { code?: string }).code, 'ACTIVATION_FAILED');
  t.regex(down!.message, /the activation service at http:\/\/127\.0\.0\.1:\d+\/v1\/activate cannot be reached \(ECONNREFUSED\); check the box's network and activation\.url \(LICD_ACTIVATION_URL\)/);
});
