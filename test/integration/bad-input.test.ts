import test from 'ava';
import mqtt from 'mqtt';
import { startTestDaemon } from '../helpers/daemon.ts';

test('malformed, mistyped, oversized and unknown requests over a real broker get coded answers; the daemon keeps serving', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const raw = await mqtt.connectAsync(d.url, { clientId: 'raw-client-1' });
  t.teardown(() => raw.endAsync());
  const answers: Array<{ id: string | null; ok: boolean; error?: { code: string; message: string } }> = [];
  raw.on('message', (_topic, p) => answers.push(JSON.parse(p.toString())));
  await raw.subscribeAsync('licd/v1/client/raw-client-1/res');
  const req = 'licd/v1/client/raw-client-1/req';
  const sends: Array<[string | Buffer, string]> = [
    ['{"id":"1","op":', 'BAD_JSON'],
    [Buffer.from([0xc3, 0x28, 0xa0]), 'BAD_JSON'],
    ['[1,2,3]', 'BAD_REQUEST'],
    ['{"id":"4","op":"checkout","feature":["vray_render"],"user":"u","host":"h","pid":1}', 'BAD_REQUEST'],
    ['{"id":"5","op":"checkout","feature":"vray_render","user":"u","host":"h","pid":1,"count":-3}', 'BAD_REQUEST'],
    ['{"id":"6","op":"launch_missiles"}', 'UNKNOWN_OP'],
    ['{"id":"7","op":"checkout","feature":"maya_unlimited","user":"u","host":"h","pid":1,"holder":"0123456789abcdefghijkl"}', 'UNKNOWN_FEATURE'],
    [JSON.stringify({ id: '8', op: 'status', pad: 'x'.repeat(100_000) }), 'PAYLOAD_TOO_LARGE'],
    ['{"id":"9","op":"borrow","request":{"format":"licd-borrow-request/1","body":"e30","sig":"AAAA"}}', 'BAD_REQUEST'],
    ['{"id":"10","op":"borrow.lost","borrow":"x"}', 'FORBIDDEN'],
  ];
  for (const [payload] of sends) await raw.publishAsync(req, payload, { qos: 1 });
  for (let i = 0; i < 200 && answers.length < sends.length; i++) await new Promise((r) => setTimeout(r, 25));
  t.is(answers.length, sends.length, 'one answer per request');
  t.deepEqual(
    answers.map((a) => a.error?.code),
    sends.map(([, code]) => code),
  );
  t.true(answers.every((a) => !a.ok && typeof a.error?.message === 'string' && a.error.message.length > 10));
  t.is(answers[3]!.id, '4', 'the id is echoed when it could be read');
  t.is(answers[7]!.id, '8', 'even from an oversized request');
  t.regex(answers[3]!.error!.message, /feature must be a non-empty string, got a list/);
  // Still serving, nothing granted by the bad requests.
  const c = await d.client();
  const s = await c.status();
  t.is(s.features.reduce((n, f) => n + f.leased + f.borrowed, 0), 0);
  t.is((await c.checkout('vray_render')).status, 'granted');
});

test('status can be narrowed to one feature and its lists cut, saying how many were left out', async (t) => {
  const d = await startTestDaemon();
  t.teardown(() => d.dispose());
  const c = await d.client();
  for (const pid of [1, 2, 3]) await c.checkout('vray_distributed', { pid });
  const s = await c.request<{ features: Array<{ feature: string; leases: unknown[]; more?: { leases: number } }> }>('status', { feature: 'vray_distributed', limit: 1 });
  t.deepEqual(s.features.map((f) => f.feature), ['vray_distributed']);
  t.is(s.features[0]!.leases.length, 1);
  t.deepEqual(s.features[0]!.more, { leases: 2, borrows: 0 });
  const e = await t.throwsAsync(c.request('status', { feature: 'nope' }));
  t.regex(e!.message, /no feature "nope" is licensed here/);
});

test('a feature name that could not stand in a topic is refused in the license file', async (t) => {
  const { parseEntitlementBody } = await import('../../src/core/entitlement.ts');
  t.throws(() => parseEntitlementBody({ id: 'x', issuedAt: '2026-01-01T00:00:00Z', customer: 'c', dongle: { serial: 's', publicKey: '00'.repeat(32), emulated: true }, features: [{ name: 'a+b', version: '1', seats: 1, expires: null, type: 'render', borrow: { allowed: false, maxHours: 0 } }] }), { message: /name must be 1 to 64 letters, digits or \. _ -/ });
});
