/** Which license licd starts with, against the record of the one installed last (src/activation/licenses.ts). */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../../src/core/bytes.ts';
import { verifyEntitlement, type Entitlement } from '../../src/core/entitlement.ts';
import { silentLog } from '../../src/core/service.ts';
import { nodeEd25519, systemRandom } from '../../src/crypto/ed25519.ts';
import { chooseStartLicense, licenseRecordOf } from '../../src/activation/licenses.ts';
import { generateVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { tempDir } from '../helpers/daemon.ts';

const ed = nodeEd25519();
const key = generateVendorKey(ed, systemRandom, false);
const vendorPublicKey = Buffer.from(key.publicKey, 'hex');
const T0 = Date.parse('2026-06-01T12:00:00Z');
const dongleKey = ed.publicKey(new Uint8Array(32).fill(1));

function license(id: string, issuedAt: number, o: { sequence?: number; serial?: string; expires?: number } = {}): Entitlement {
  const serial = o.serial ?? 'HW-1';
  const env = issueEntitlement(
    {
      id,
      issuedAt: new Date(issuedAt).toISOString(),
      customer: 'C',
      dongle: { serial, publicKey: toHex(dongleKey), emulated: false },
      features: [{ name: 'render', version: '1.0', seats: 2, expires: new Date(o.expires ?? T0 + 86400_000 * 365).toISOString(), type: 'render', borrow: { allowed: false, maxHours: 0 } }],
      ...(o.sequence !== undefined ? { sequence: o.sequence } : {}),
    } as Parameters<typeof issueEntitlement>[0],
    key,
    ed,
  );
  return verifyEntitlement(env, { vendorPublicKey, dongle: { serial, publicKey: dongleKey }, now: Math.min(T0, issuedAt), ed });
}

test('the start license: recorded when none is; an older file refused and the installed one served and written back; a newer file installed', (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const licenseFile = join(dir, 'license.json');
  const base = { vendorPublicKey, dongle: { serial: 'HW-1', publicKey: dongleKey }, now: T0, ed, log: silentLog, licenseFile, madeDemo: false };
  const old = license('L-1', T0 - 2000, { sequence: 1 });
  const cur = license('L-2', T0 - 1000, { sequence: 2 });

  const first = chooseStartLicense({ ...base, loaded: undefined, file: old });
  t.is(first.entitlement.id, 'L-1');
  t.is(first.mutations.length, 1, 'the first license is recorded');

  const record = licenseRecordOf(cur, T0);
  const back = chooseStartLicense({ ...base, loaded: record, file: old });
  t.is(back.entitlement.id, 'L-2');
  t.regex(back.refused!, /held L-1 issued .*, older than the installed L-2 .*refused \(anti-downgrade\)/);
  t.is((JSON.parse(readFileSync(licenseFile, 'utf8')) as { body: string }).body, record.body, 'written back');

  t.deepEqual(chooseStartLicense({ ...base, loaded: record, file: cur }).mutations, [], 'the same: nothing to write');
  const next = license('L-3', T0 - 500, { sequence: 3 });
  const newer = chooseStartLicense({ ...base, loaded: record, file: next });
  t.is(newer.entitlement.id, 'L-3');
  t.is(newer.record.id, 'L-3');

  // A license for a replacement dongle is not judged against the old dongle's record.
  const other = license('M-1', T0 - 5000, { serial: 'HW-2' });
  t.is(chooseStartLicense({ ...base, dongle: { serial: 'HW-2', publicKey: dongleKey }, loaded: record, file: other }).entitlement.id, 'M-1');

  // Development mode's demo never replaces an installed license, unless that one cannot be used.
  const demo = license('DEV-DEMO', T0, { sequence: 9 });
  t.is(chooseStartLicense({ ...base, madeDemo: true, loaded: record, file: demo }).entitlement.id, 'L-2');
  const expired = licenseRecordOf(license('L-X', T0 - 9000, { expires: T0 - 1 }), T0);
  t.is(chooseStartLicense({ ...base, madeDemo: true, loaded: expired, file: demo }).entitlement.id, 'DEV-DEMO');
  // Outside development, an older file with an unusable record is a start error that names the file.
  const e = t.throws(() => chooseStartLicense({ ...base, loaded: { ...expired, issuedAt: T0 + 1 }, file: old }));
  t.regex(e!.message, /is older than the license installed before .* and that one cannot be used .*put the newest license from the vendor in/);
});
