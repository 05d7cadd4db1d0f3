import test from 'ava';
import nacl from 'tweetnacl';
import { DongleError, DongleSession, EmulatedDongle, dongleSignedBytes, openTransport } from '../../firmware-bridge/index.ts';
import { patternBytes } from './helpers.ts';

async function tcpRig(t: { teardown(fn: () => Promise<void>): void }) {
  const dongle = await EmulatedDongle.open({ serial: 'EMU-TCP' });
  const server = await dongle.serveTcp('127.0.0.1', 0);
  t.teardown(() => dongle.close());
  return { dongle, server };
}

test('a session over TCP, end to end', async (t) => {
  const { server } = await tcpRig(t);
  t.is(server.host, '127.0.0.1');
  t.regex(server.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const session = await DongleSession.open({ kind: 'tcp', host: '127.0.0.1', port: server.port }, { timeoutMs: 2000 });
  t.teardown(() => session.close());
  t.is(session.transport.kind, 'tcp');
  const info = await session.info();
  t.is(info.serial, 'EMU-TCP');
  const message = patternBytes(900);
  const signature = await session.sign('licd-tcp', message);
  t.true(nacl.sign.detached.verify(dongleSignedBytes('licd-tcp', message, true), signature, info.publicKey));
  const slot = patternBytes(8192, 5);
  await session.writeSlot(3, slot);
  t.deepEqual(await session.readSlot(3), slot);
  t.is((await session.counterIncrement(new Uint8Array(16))).counter, 1n);
});

test('TCP: unplug closes connections and refuses new ones; replug serves again', async (t) => {
  const { dongle, server } = await tcpRig(t);
  const spec = { kind: 'tcp', host: '127.0.0.1', port: server.port } as const;
  const session = await DongleSession.open(spec, { timeoutMs: 2000 });
  await session.ping();
  dongle.unplug();
  t.is((await session.closed).code, 'DONGLE_CLOSED');
  t.is((await t.throwsAsync(session.ping(), { instanceOf: DongleError }))?.code, 'DONGLE_CLOSED');

  // The listener stays (so the port is kept), but drops every connection at once.
  const refused = await DongleSession.open(spec, { timeoutMs: 2000, retries: 0 });
  const error = await t.throwsAsync(refused.info(), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_CLOSED');

  dongle.plug();
  const again = await DongleSession.open(spec);
  t.teardown(() => again.close());
  t.is((await again.info()).serial, 'EMU-TCP');
});

test('TCP: nothing listening gives DONGLE_TRANSPORT with the address', async (t) => {
  const { server, dongle } = await tcpRig(t);
  const port = server.port;
  await dongle.close();
  const error = await t.throwsAsync(openTransport({ kind: 'tcp', host: '127.0.0.1', port }), { instanceOf: DongleError });
  t.is(error?.code, 'DONGLE_TRANSPORT');
  t.regex(error?.message ?? '', new RegExp(`127\\.0\\.0\\.1:${port}`));
});

test('TCP: the emulator closing ends the session', async (t) => {
  const { dongle, server } = await tcpRig(t);
  const session = await DongleSession.open({ kind: 'tcp', host: '127.0.0.1', port: server.port });
  await session.ping();
  await dongle.close();
  t.is((await session.closed).code, 'DONGLE_CLOSED');
});
