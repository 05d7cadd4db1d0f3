/**
 * The installed license across restarts (docs/activation.md, "Anti-downgrade"). The database
 * keeps a record of the license installed last (its id, issue time, sequence, body and the
 * envelope itself, meta key "license"), written in the same batch as the dongle counter step of
 * its install. At start the license file is judged against it.
 */
import { LicdError } from '../core/errors.ts';
import { bodyOf, describeOrder, judgeLicense, licenseOrderOf, META_LICENSE, parseLicenseRecord, type LicenseRecord } from '../core/activation.ts';
import { verifyEntitlement, type Entitlement } from '../core/entitlement.ts';
import type { Mutation } from '../core/model.ts';
import type { Ed25519 } from '../core/ports.ts';
import type { Log } from '../core/service.ts';
import { writeFileAtomic } from '../vendor.ts';

export function licenseRecordOf(e: Entitlement, now: number): LicenseRecord {
  const o = licenseOrderOf(e);
  return { ...o, body: bodyOf(e.envelope), dongleSerial: e.dongle.serial, installedAt: now, envelope: e.envelope };
}

export function recordMutation(r: LicenseRecord): Mutation {
  return { kind: 'meta.put', key: META_LICENSE, value: r };
}

/**
 * Which license licd starts with: the file's, unless it is older than the recorded one (then the
 * recorded one, and the file is rewritten with it). A demo license development mode just made
 * never replaces an installed one. Returns the record to keep and what to write at start.
 */
export function chooseStartLicense(o: {
  loaded: unknown;
  file: Entitlement;
  madeDemo: boolean;
  vendorPublicKey: Uint8Array;
  dongle: { serial: string; publicKey: Uint8Array };
  now: number;
  ed: Ed25519;
  log: Log;
  licenseFile: string;
}): { entitlement: Entitlement; record: LicenseRecord; mutations: Mutation[]; refused?: string } {
  const record = parseLicenseRecord(o.loaded);
  const fileRecord = licenseRecordOf(o.file, o.now);
  if (!record) return { entitlement: o.file, record: fileRecord, mutations: [recordMutation(fileRecord)] };
  let verdict: 'newer' | 'same' | 'older';
  try {
    // The record binds per dongle: a license for another (replacement) dongle starts afresh.
    verdict = record.dongleSerial !== '' && record.dongleSerial !== o.file.dongle.serial ? 'newer' : o.madeDemo ? 'older' : judgeLicense(fileRecord, record);
  } catch {
    verdict = 'older';
  }
  if (verdict === 'same') return { entitlement: o.file, record, mutations: [] };
  if (verdict === 'newer') {
    o.log.info('the license file is newer than the one installed before: installed it', { license: describeOrder(fileRecord), was: describeOrder(record) });
    return { entitlement: o.file, record: fileRecord, mutations: [recordMutation(fileRecord)] };
  }
  let installed: Entitlement;
  try {
    installed = verifyEntitlement(record.envelope, { vendorPublicKey: o.vendorPublicKey, dongle: o.dongle, now: o.now, ed: o.ed });
  } catch (e) {
    // Development mode made a demo because the file was unusable: if the installed license cannot
    // be used either (it expired), the demo serves.
    if (o.madeDemo) return { entitlement: o.file, record: fileRecord, mutations: [recordMutation(fileRecord)] };
    throw new LicdError(
      'LICENSE_DOWNGRADE',
      `the license file ${o.licenseFile} (${describeOrder(fileRecord)}) is older than the license installed before (${describeOrder(record)}), and that one cannot be used (${(e as Error).message}); put the newest license from the vendor in ${o.licenseFile}`,
      { reason: 'older', file: o.licenseFile },
    );
  }
  if (!o.madeDemo) {
    o.log.error('REFUSED the license file: it is older than the license installed before (anti-downgrade); serving the installed license and writing it back to the file', {
      file: o.licenseFile,
      refused: describeOrder(fileRecord),
      installed: describeOrder(record),
    });
  }
  try {
    writeFileAtomic(o.licenseFile, JSON.stringify(record.envelope, null, 2) + '\n');
  } catch (e) {
    o.log.warn('could not write the installed license back to the license file; licd serves it from its database', { file: o.licenseFile, error: String(e) });
  }
  return {
    entitlement: installed,
    record,
    mutations: [],
    ...(o.madeDemo ? {} : { refused: `the license file ${o.licenseFile} held ${describeOrder(fileRecord)}, older than the installed ${describeOrder(record)}: refused (anti-downgrade); the installed license is served and was written back to the file` }),
  };
}
