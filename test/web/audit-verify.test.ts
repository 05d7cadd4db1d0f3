/**
 * Issue 16: the page verifies the audit log in the browser (WebCrypto's SHA-256 and Ed25519 under
 * the core's verifyAudit), against licd as a real process after real use: the log verifies, up to
 * the record licctl audit verify names; an export with one record edited is reported broken at
 * that record; a wrong vendor key breaks the first seal; a record edited in licd's database while
 * it was stopped is named by the page's check of the log.
 */
import test from 'ava';
import { ClassicLevel } from 'classic-level';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { openPage, screenshotDir, webDaemon } from '../helpers/browser.ts';
import { killAll, run } from '../helpers/procs.ts';
import { LicdClient } from '../../src/sdk/client.ts';

test.after.always(() => killAll());

test('the page verifies the audit log with WebCrypto, as licctl does; an edited record and a wrong vendor key are reported', async (t) => {
  t.timeout(150_000); // about 15 s alone; generous for a loaded machine
  const out = screenshotDir(t);
  const { dir, mqttUrl, web, password } = await webDaemon(t);

  // Real use: a checkout and a check-in, a denial, a revoke by the admin (which seals).
  const alice = await LicdClient.connect({ url: mqttUrl, user: 'alice', host: 'node-1', timeoutMs: 10_000 });
  t.teardown(() => alice.close({ checkin: false }));
  const l1 = await alice.checkout('vray_render');
  await l1.release();
  await alice.checkout('no_such_feature').catch(() => undefined);
  const l2 = await alice.checkout('vray_render');

  const { page } = await openPage(t);
  await page.goto(`${web}/`);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('signed in as admin').waitFor();
  await page.getByRole('tab', { name: 'Leases and borrows' }).click();
  const row = page.locator(`tr[data-lease="${l2.id}"]`);
  await row.getByRole('button', { name: /Revoke/ }).click();
  await row.getByRole('button', { name: 'Yes, revoke' }).click();
  await row.waitFor({ state: 'detached' });

  // The vendor key, from its file (the page keeps only the public key).
  await page.getByRole('tab', { name: 'Audit' }).click();
  const vendorFile = join(dir, 'dev', 'vendor.key');
  const publicKey = (JSON.parse(readFileSync(vendorFile, 'utf8')) as { publicKey: string }).publicKey;
  await page.getByLabel('or its file').setInputFiles(vendorFile);
  await page.waitForFunction(`document.querySelector('input[name=vendorKey]')?.value === ${JSON.stringify(publicKey)}`);
  t.is(await page.evaluate("localStorage.getItem('licd.vendorKey')"), publicKey);

  // The revoke's seal lands ~50 ms after it: the download and the page's check both see it then.
  const verdict = page.getByTestId('audit-verdict');
  let sealed = 0;
  let exported = '';
  for (let i = 0; i < 20 && sealed === 0; i++) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download the export' }).click()]);
    exported = join(dir, 'audit.jsonl');
    await download.saveAs(exported);
    const lines = readFileSync(exported, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const revoke = lines.find((r) => r.kind === 'admin' && r.op === 'lease.revoke');
    if (revoke && lines.some((r) => r.kind === 'seal' && (r.seq as number) > (revoke.seq as number))) sealed = 1;
    else await new Promise((r) => setTimeout(r, 250));
  }
  t.is(sealed, 1, 'the export holds the seal after the revoke');
  const cli = await run(['audit', 'verify', exported, '--vendor-key', vendorFile, '--json']);
  t.is(cli.code, 0, cli.stderr);
  const expected = JSON.parse(cli.stdout) as { sealedThrough: number; last: number };
  const cliHex = await run(['audit', 'verify', exported, '--vendor-key', publicKey, '--json']);
  t.is((JSON.parse(cliHex.stdout) as { sealedThrough: number }).sealedThrough, expected.sealedThrough, 'the key as 64 hex digits, as from its file');

  await page.getByRole('button', { name: 'Verify the log' }).click();
  await verdict.filter({ hasText: /verified up to record \d+/ }).waitFor();
  t.true((await verdict.textContent())!.endsWith(`(against vendor key ${publicKey.slice(0, 16)}…)`), 'the verdict names the key');
  const text = (await verdict.textContent())!;
  const upTo = Number(/verified up to record (\d+), sealed at (\d{4}-\d\d-\d\d \d\d:\d\d UTC) by dongle EMU-[0-9A-F]+ \(EMULATED/.exec(text)?.[1]);
  t.true(upTo >= expected.sealedThrough, text);
  await page.screenshot({ path: join(out, 'audit-verify.png'), fullPage: true });

  // The same export, verified as a file: the same answer as licctl's.
  await page.getByLabel('Verify an export file').setInputFiles(exported);
  await verdict.filter({ hasText: `audit.jsonl verified up to record ${expected.sealedThrough},` }).waitFor();

  // One record edited (the user of the first grant): broken at that record, as licctl says.
  const lines = readFileSync(exported, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('"kind":"lease.granted"') && l.includes('"user":"alice"'));
  t.true(i > 0);
  const seq = (JSON.parse(lines[i]!) as { seq: number }).seq;
  lines[i] = lines[i]!.replace('"user":"alice"', '"user":"mallory"');
  const edited = join(dir, 'edited.jsonl');
  writeFileSync(edited, lines.join('\n'));
  const cliEdited = await run(['audit', 'verify', edited, '--vendor-key', vendorFile]);
  t.is(cliEdited.code, 2);
  await page.getByLabel('Verify an export file').setInputFiles(edited);
  await verdict.filter({ hasText: `edited.jsonl is BROKEN at record ${seq}: edited: record ${seq} (lease.granted) was edited` }).waitFor();
  t.regex(await verdict.getAttribute('class') ?? '', /error/);
  t.regex(cliEdited.stderr, new RegExp(`BROKEN at record ${seq}: edited`));
  await page.screenshot({ path: join(out, 'audit-broken.png'), fullPage: true });

  // Another vendor key: the first seal does not chain to it.
  await page.getByLabel('Vendor public key').fill('ab'.repeat(32));
  await page.getByRole('button', { name: 'Verify the log' }).click();
  await verdict.filter({ hasText: /the audit log is BROKEN at record \d+: bad-seal: .*chain link 1 \(vendor -> entitlement\)/ }).waitFor();
  t.pass();
});

test("a record edited in licd's own database while it was stopped: the page's check of the log names it", async (t) => {
  t.timeout(150_000); // about 15 s alone; generous for a loaded machine
  const dir = tempDir();
  const start = () => webDaemon(t, dir);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await start();
  const bob = await LicdClient.connect({ url: first.mqttUrl, user: 'bob', host: 'node-2', timeoutMs: 10_000 });
  await (await bob.checkout('nuke_i')).release();
  await bob.close();
  first.d.child.kill('SIGTERM'); // a clean stop: sealed
  await first.d.exited;

  // Root edits the grant's user in the database, then licd starts again on it.
  const db = new ClassicLevel<string, Record<string, unknown>>(join(dir, 'db'), { valueEncoding: 'json' });
  await db.open();
  let seq = 0;
  for await (const [k, v] of db.iterator({ gte: 'rec!audit!0', lt: 'rec!audit!:' })) {
    if (v.kind === 'lease.granted' && v.user === 'bob') {
      seq = v.seq as number;
      await db.put(k, { ...v, user: 'carol' });
    }
  }
  await db.close();
  t.true(seq > 0, 'the grant was in the log');
  const second = await start();

  const { page } = await openPage(t);
  await page.goto(`${second.web}/`);
  await page.getByLabel('Password').fill(readFileSync(join(dir, 'admin.password'), 'utf8').trim());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('tab', { name: 'Audit' }).click();
  await page.locator(`table.audit tr[data-seq="${seq}"]`).filter({ hasText: 'user=carol' }).waitFor();
  const publicKey = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  await page.getByLabel('Vendor public key').fill(publicKey);
  await page.getByRole('button', { name: 'Verify the log' }).click();
  await page.getByTestId('audit-verdict').filter({ hasText: `the audit log is BROKEN at record ${seq}: edited: record ${seq} (lease.granted) was edited` }).waitFor();
  t.pass();
});
