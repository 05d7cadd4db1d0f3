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
import { issueEntitlement, readVendorKey } from '../../src/vendor.ts';
import type { EntitlementBody } from '../../src/core/entitlement.ts';
import type { StatusResult } from '../../src/core/protocol.ts';
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/daemon.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

test('a wiped server: the borrowed token is kept and said so; a vendor release bound to serial and counter lifts the quarantine, nothing else does', async (t) => {
  t.timeout(120_000); // a generous deadline: the machine is shared
  const dataDir = tempDir();
  const home = tempDir('licd-home-');
  let d: TestDaemon | null = await startTestDaemon({ dataDir });
  t.teardown(async () => {
    await d?.halt();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const vendorKey = join(dataDir, 'dev', 'vendor.key');
  const vendor = readVendorKey(vendorKey).publicKey;
  const user = (url: string) => ({ LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'alice' });
  const admin = (url: string) => ['--broker', url, '--user', 'admin', '--password-file', join(dataDir, 'admin.password')];

  // A one-year borrow of nuke_i (its license allows 8760 h).
  const b = await run(['borrow', '--feature', 'nuke_i', '--hours', '8760', '--yes', '--json'], user(d.url));
  t.is(b.code, 0, b.stderr);
  const borrowId = (JSON.parse(b.stdout) as { borrows: Array<{ id: string }> }).borrows[0]!.id;

  // The server's database is wiped: it no longer knows the borrow, and quarantines.
  await d.halt();
  rmSync(join(dataDir, 'db'), { recursive: true });
  d = await startTestDaemon({ dataDir });
  let u = user(d.url);

  // status, renew, tokens: the token is kept, with the reason.
  const st = await run(['status', '--json'], u);
  t.is(st.code, 0, st.stderr);
  t.regex(st.stderr, new RegExp(`the license server has no record of borrow ${borrowId} \\(1 nuke_i\\) \\(the server is in quarantine: its database was restored or wiped\\); the local token is kept and stays valid offline until \\d{4}-`));
  t.notRegex(st.stderr, /local token was removed/);
  const rn = await run(['renew'], u);
  t.is(rn.code, 0, rn.stderr);
  t.regex(rn.stderr, /no record of borrow .*the local token is kept/);
  const tk = await run(['tokens'], u);
  t.regex(tk.stdout, new RegExp(`nuke_i\\s+1\\s+until \\S+\\s+valid.*\\[${borrowId}\\]`));
  const offline = await run(['run', 'nuke_i', '--', 'sh', '-c', 'echo licensed'], u);
  t.is(offline.code, 0, offline.stderr);
  t.regex(offline.stderr, /using borrowed nuke_i/);

  // The quarantine names what a vendor release must be bound to.
  const s = JSON.parse(st.stdout) as StatusResult;
  t.true(s.quarantine.some((q) => q.feature === 'nuke_i'));
  const binding = s.quarantineBinding!;
  t.truthy(binding, 'status shows the serial and counter');
  t.is(binding.counter, '1');
  t.regex(binding.reason, /no record of this dongle's counter 1: a new or wiped database, or the dongle was used on another box/);
  const human = await run(['status'], u);
  t.regex(human.stdout, new RegExp(`quarantine release: the vendor needs dongle serial ${binding.dongleSerial} and counter 1`));

  const release = async (name: string, serial: string, counter: string, key = vendorKey) => {
    const file = join(dataDir, name);
    const r = await run(['vendor', 'release-quarantine', '--key', key, '--serial', serial, '--counter', counter, '--out', file]);
    t.is(r.code, 0, r.stderr);
    return file;
  };
  // Another dongle's serial, an old counter, another key: refused with the reason.
  const other = await run(['quarantine', 'release', await release('other.json', 'EMU-OTHER', '1'), ...admin(d.url)]);
  t.is(other.code, 2);
  t.regex(other.stderr, new RegExp(`RELEASE_INVALID: the release is for dongle EMU-OTHER, but this server's dongle is ${binding.dongleSerial}`));
  const old = await run(['quarantine', 'release', await release('old.json', binding.dongleSerial, '0'), ...admin(d.url)]);
  t.is(old.code, 2);
  t.regex(old.stderr, /RELEASE_INVALID: the release is for the quarantine set at counter 0, but the current quarantine was set at counter 1/);
  const otherKey = join(dataDir, 'other.key');
  t.is((await run(['vendor', 'keygen', '--dev', '--out', otherKey])).code, 0);
  const forged = await run(['quarantine', 'release', await release('forged.json', binding.dongleSerial, '1', otherKey), ...admin(d.url)]);
  t.is(forged.code, 2);
  t.regex(forged.stderr, /RELEASE_INVALID: licd-quarantine-release\/1: the signature does not verify with the vendor key/);
  const notAdmin = await run(['quarantine', 'release', await release('right.json', binding.dongleSerial, '1'), '--broker', d.url]);
  t.not(notAdmin.code, 0);

  // A new entitlement alone does not lift it (the holds are stored by feature).
  await d.halt();
  const entFile = join(dataDir, 'dev', 'entitlement.json');
  const { json } = parseEnvelope(JSON.parse(readFileSync(entFile, 'utf8')), FORMATS.entitlement, 'ENTITLEMENT_INVALID');
  const body = { ...(json as EntitlementBody), id: 'DEV-REISSUED-1', issuedAt: new Date().toISOString() };
  writeFileSync(entFile, JSON.stringify(issueEntitlement(body, readVendorKey(vendorKey), nodeEd25519())));
  d = await startTestDaemon({ dataDir });
  u = user(d.url);
  let s2 = JSON.parse((await run(['status', '--json'], u)).stdout) as StatusResult;
  t.is(s2.server.entitlement?.id, 'DEV-REISSUED-1');
  t.true(s2.quarantine.some((q) => q.feature === 'nuke_i'), 'still quarantined under the new entitlement');

  // The right release lifts it, durably; applied twice it is refused.
  const ok = await run(['quarantine', 'release', join(dataDir, 'right.json'), ...admin(d.url)]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /quarantine released for .*nuke_i \(1 seats\).*; no seats are held any more/);
  s2 = JSON.parse((await run(['status', '--json'], u)).stdout) as StatusResult;
  t.deepEqual(s2.quarantine, []);
  t.false(s2.server.warnings.some((w) => /quarantine/.test(w)));
  await d.halt();
  d = await startTestDaemon({ dataDir });
  s2 = JSON.parse((await run(['status', '--json'], user(d.url))).stdout) as StatusResult;
  t.deepEqual(s2.quarantine, [], 'the release survives a restart');
  const again = await run(['quarantine', 'release', join(dataDir, 'right.json'), ...admin(d.url)]);
  t.is(again.code, 2);
  t.regex(again.stderr, /RELEASE_INVALID: there is no quarantine to release/);
});
