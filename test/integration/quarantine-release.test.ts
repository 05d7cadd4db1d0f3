/**
 * Issue 9, findings 8 and 9: after a wipe of the server's database (a quarantine), the client keeps
 * its valid borrowed token and says why; a quarantine is lifted by a vendor release bound to the
 * dongle serial and counter (licctl vendor release-quarantine + licctl quarantine release), not by
 * a new entitlement, and a release for another serial or an old counter is refused. licctl runs as
 * real child processes; the daemon is real (LevelDB in a temp dir, embedded broker, emulated dongle).
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEnvelope, FORMATS } from '../../src/core/signed.ts';
import { nodeEd25519 } from '../../src/crypto/ed25519.ts';
import { issueEntitlement, issueQuarantineRelease, readVendorKey } from '../../src/vendor.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import type { LicdError } from '../../src/core/errors.ts';
import type { EntitlementBody } from '../../src/core/entitlement.ts';
import type { StatusResult } from '../../src/core/protocol.ts';
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/daemon.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

async function wiped(t: { teardown(f: () => void | Promise<void>): void }, o: { borrowWithLicctl?: string } = {}) {
  const dataDir = tempDir();
  const home = tempDir('licd-home-');
  const box: { d: TestDaemon | null } = { d: await startTestDaemon({ dataDir }) };
  t.teardown(async () => {
    await box.d?.halt();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const vendorKey = join(dataDir, 'dev', 'vendor.key');
  const vendor = readVendorKey(vendorKey).publicKey;
  let borrowId: string;
  if (o.borrowWithLicctl) {
    const b = await run(['borrow', '--feature', 'nuke_i', '--hours', '8760', '--yes', '--json'], { LICD_HOME: home, LICD_BROKER: box.d!.url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice' });
    if (b.code !== 0) throw new Error(b.stderr);
    borrowId = (JSON.parse(b.stdout) as { borrows: Array<{ id: string }> }).borrows[0]!.id;
  } else {
    const c = await box.d!.client();
    borrowId = (await new BorrowClient({ home, hostId: 'ab'.repeat(16), user: 'alice', hostName: 'laptop' }).borrow(c, [{ feature: 'nuke_i', count: 1 }], 8760)).borrows[0]!.id;
  }
  // The server's database is wiped: it no longer knows the borrow, and quarantines.
  await box.d!.halt();
  rmSync(join(dataDir, 'db'), { recursive: true });
  box.d = await startTestDaemon({ dataDir });
  return { box, dataDir, home, vendorKey, vendor, borrowId };
}

test('a wiped server: licctl status, renew and tokens keep the one-year borrowed token and say why', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { box, home, vendor, borrowId } = await wiped(t, { borrowWithLicctl: 'yes' });
  const u = { LICD_HOME: home, LICD_BROKER: box.d!.url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice' };
  const st = await run(['status'], u);
  t.is(st.code, 0, st.stderr);
  t.regex(st.stderr, new RegExp(`the license server has no record of borrow ${borrowId} \\(1 nuke_i\\) \\(the server is in quarantine: its database was restored or wiped\\); the local token is kept and stays valid offline until \\d{4}-`));
  t.notRegex(st.stderr, /local token was removed/);
  const rn = await run(['renew'], u);
  t.is(rn.code, 0, rn.stderr);
  t.regex(rn.stderr, /no record of borrow .*the local token is kept/);
  const tk = await run(['tokens'], u);
  t.regex(tk.stdout, new RegExp(`nuke_i\\s+1\\s+until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\S+\\s+valid.*\\[${borrowId}\\]`));
  const offline = await run(['run', 'nuke_i', '--', 'sh', '-c', 'echo licensed'], u);
  t.is(offline.code, 0, offline.stderr);
  t.regex(offline.stderr, /using borrowed nuke_i/);
});

test('a vendor release bound to the dongle serial and counter lifts the quarantine; another serial, an old counter, another key or a new entitlement do not', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const { box, dataDir, vendorKey } = await wiped(t);
  const admin = () => ['--broker', box.d!.url, '--user', 'admin', '--password-file', join(dataDir, 'admin.password')];
  const status = async () => (await box.d!.client()).status();

  // The quarantine names what a vendor release must be bound to, in licctl status too.
  const s = await status();
  t.true(s.quarantine.some((q) => q.feature === 'nuke_i'));
  const binding = s.quarantineBinding!;
  t.truthy(binding, 'status shows the serial and counter');
  t.is(binding.counter, '1');
  t.regex(binding.reason, /no record of this dongle's counter 1: a new or wiped database, or the dongle was used on another box/);
  const human = await run(['status', '--broker', box.d!.url]);
  t.regex(human.stdout, new RegExp(`quarantine release: the vendor needs dongle serial ${binding.dongleSerial} and counter 1`));

  // The vendor's command makes the release.
  const right = join(dataDir, 'right.json');
  const made = await run(['vendor', 'release-quarantine', '--key', vendorKey, '--serial', binding.dongleSerial, '--counter', '1', '--out', right]);
  t.is(made.code, 0, made.stderr);

  // Another dongle's serial (through licctl: exit code 2 and the reason), an old counter, another key.
  const vendorFile = readVendorKey(vendorKey);
  const ed = nodeEd25519();
  const doc = (o: Record<string, unknown>, key = vendorFile) =>
    issueQuarantineRelease({ dongleSerial: binding.dongleSerial, counter: '1', features: null, issuedAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 86400_000).toISOString(), nonce: 'test-nonce-1', ...o }, key, ed);
  const otherFile = join(dataDir, 'other.json');
  writeFileSync(otherFile, JSON.stringify(doc({ dongleSerial: 'EMU-OTHER' })));
  const other = await run(['quarantine', 'release', otherFile, ...admin()]);
  t.is(other.code, 2);
  t.regex(other.stderr, new RegExp(`RELEASE_INVALID: the release is for dongle EMU-OTHER, but this server's dongle is ${binding.dongleSerial}`));
  const adminClient = await box.d!.admin();
  const refused = async (release: unknown) => {
    try {
      await adminClient.request('quarantine.release', { release }, { admin: true });
      return 'accepted';
    } catch (e) {
      return `${(e as LicdError).code}: ${(e as Error).message}`;
    }
  };
  t.regex(await refused(doc({ counter: '0' })), /RELEASE_INVALID: the release is for the quarantine set at counter 0, but the current quarantine was set at counter 1/);
  const otherKey = { ...vendorFile, seed: '11'.repeat(32) };
  t.regex(await refused(doc({}, otherKey)), /RELEASE_INVALID: licd-quarantine-release\/1: the signature does not verify with the vendor key/);
  const c = await box.d!.client();
  t.regex(await c.request('quarantine.release', { release: doc({}) }).then(() => 'accepted', (e: LicdError) => e.code), /FORBIDDEN/);

  // A new entitlement alone does not lift it (the holds are stored by feature).
  await box.d!.halt();
  const entFile = join(dataDir, 'dev', 'entitlement.json');
  const { json } = parseEnvelope(JSON.parse(readFileSync(entFile, 'utf8')), FORMATS.entitlement, 'ENTITLEMENT_INVALID');
  const body = { ...(json as EntitlementBody), id: 'DEV-REISSUED-1', issuedAt: new Date().toISOString() };
  writeFileSync(entFile, JSON.stringify(issueEntitlement(body, vendorFile, ed)));
  box.d = await startTestDaemon({ dataDir });
  let s2: StatusResult = await status();
  t.is(s2.server.entitlement?.id, 'DEV-REISSUED-1');
  t.true(s2.quarantine.some((q) => q.feature === 'nuke_i'), 'still quarantined under the new entitlement');

  // The right release lifts it, durably; applied twice it is refused.
  const ok = await run(['quarantine', 'release', right, ...admin()]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /quarantine released for .*nuke_i \(1 seats\).*; no seats are held any more/);
  s2 = await status();
  t.deepEqual(s2.quarantine, []);
  t.false(s2.server.warnings.some((w) => /quarantine/.test(w)));
  await box.d!.halt();
  box.d = await startTestDaemon({ dataDir });
  t.deepEqual((await status()).quarantine, [], 'the release survives a restart');
  const again = await run(['quarantine', 'release', right, ...admin()]);
  t.is(again.code, 2);
  t.regex(again.stderr, /RELEASE_INVALID: there is no quarantine to release/);
});
