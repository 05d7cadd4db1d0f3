/**
 * licctl activate (the box: request, import, online) and licctl vendor activate|serve (the
 * vendor's side): putting a license on a box by file or online (docs/activation.md).
 */
import { writeFileAtomic, readVendorKey, issueActivationLicense } from '../vendor.ts';
import { readJsonFile } from '../files.ts';
import { LicdError } from '../core/errors.ts';
import type { ActivationRequestResult, LicenseInstallResult } from '../core/protocol.ts';
import { nodeEd25519 } from '../crypto/ed25519.ts';
import { loadSpecs } from '../activation/specs.ts';
import { startActivationService } from '../activation/server.ts';
import { checkOutFile, type CmdContext } from './borrow-cmds.ts';
import { flag, has, UsageError, type ParsedArgs } from './args.ts';

/** An online activation waits for the vendor's service too: longer than a plain request. */
const ONLINE_TIMEOUT_MS = 45_000;

function installedText(ctx: CmdContext, r: LicenseInstallResult): string {
  const time = ctx.time ?? ((t: string | number | Date) => new Date(t).toISOString());
  if (r.unchanged) return `license ${r.installed.id} is installed already; nothing changed`;
  const lines = [`license ${r.installed.id} for ${r.installed.customer} (issued ${time(r.installed.issuedAt)}) installed; it replaces ${r.was.id}. In effect now, no restart needed`];
  if (r.added.length) lines.push(`  new features: ${r.added.join(', ')}`);
  if (r.changed.length) lines.push(`  changed: ${r.changed.join(', ')}`);
  if (r.removed.length) lines.push(`  no longer licensed: ${r.removed.join(', ')} (borrows of them stay until their tokens end)`);
  if (r.ended.length) {
    lines.push(`  ${r.ended.length} lease(s) ended because the new license has fewer seats or lacks the feature (their clients are told: LICENSE_REDUCED):`);
    for (const e of r.ended) lines.push(`    ${e.feature} ${e.user}@${e.host} [${e.lease}]`);
  }
  lines.push(`  license file: ${r.file}`);
  if (r.warning) lines.push(`warning: ${r.warning}`);
  return lines.join('\n');
}

/** licctl activate request --out FILE | import FILE | online [--url URL] (admin). */
export async function activateCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const sub = a.positional[1];
  if (sub === 'request') {
    const out = flag(a, 'out');
    if (!out) throw new UsageError('usage: licctl activate request --out REQUEST.json');
    checkOutFile(out);
    const c = await ctx.connect(true);
    try {
      const r = await c.request<ActivationRequestResult>('activation.request', {}, { admin: true });
      writeFileAtomic(out, JSON.stringify(r.request, null, 2) + '\n');
      if (has(a, 'json')) ctx.out(JSON.stringify({ file: out, dongle: r.dongle, counter: r.counter }, null, 2));
      else {
        ctx.out(
          `activation request for dongle ${r.dongle} written to ${out}; take it to a machine with internet access and have the vendor answer it ` +
            `(licctl vendor activate ${out} --key VENDOR.key --spec SPEC.json --out LICENSE.json, or the vendor's activation page), then bring the license back: licctl activate import LICENSE.json`,
        );
      }
    } finally {
      await c.close();
    }
    return 0;
  }
  if (sub === 'import') {
    const file = a.positional[2];
    if (!file) throw new UsageError('usage: licctl activate import LICENSE.json');
    const license = readJsonFile(file, 'the license file', { code: 'ENTITLEMENT_INVALID', fix: 'give the license file the vendor answered the activation request with' });
    const c = await ctx.connect(true);
    try {
      const r = await c.request<LicenseInstallResult>('license.install', { license }, { admin: true });
      ctx.out(has(a, 'json') ? JSON.stringify(r, null, 2) : installedText(ctx, r));
    } finally {
      await c.close();
    }
    return 0;
  }
  if (sub === 'online') {
    const url = flag(a, 'url');
    const c = await ctx.connect(true);
    try {
      const r = await c.request<LicenseInstallResult>('activation.online', url ? { url } : {}, { admin: true, timeoutMs: ONLINE_TIMEOUT_MS });
      ctx.out(has(a, 'json') ? JSON.stringify(r, null, 2) : `activated online with ${r.url}\n${installedText(ctx, r)}`);
    } finally {
      await c.close();
    }
    return 0;
  }
  throw new UsageError('usage: licctl activate request --out REQUEST.json | activate import LICENSE.json | activate online [--url URL]');
}

/** licctl vendor activate REQUEST --key KEY --spec SPEC --out LICENSE | vendor serve --key KEY --specs DIR|FILE --listen HOST:PORT. */
export async function vendorActivationCommand(ctx: CmdContext, a: ParsedArgs): Promise<number> {
  const sub = a.positional[1];
  const ed = nodeEd25519();
  const keyFile = flag(a, 'key');
  if (sub === 'activate') {
    const reqFile = a.positional[2];
    const spec = flag(a, 'spec');
    const out = flag(a, 'out');
    if (!reqFile || !keyFile || !spec || !out) throw new UsageError('usage: licctl vendor activate REQUEST.json --key VENDOR.key --spec SPEC.json --out LICENSE.json');
    checkOutFile(out);
    const key = readVendorKey(keyFile);
    const request = readJsonFile(reqFile, 'the activation request', { code: 'ACTIVATION_INVALID', fix: 'give the file licctl activate request wrote on the box' });
    const r = issueActivationLicense(request, loadSpecs(spec), key, ed, { now: Date.now(), allowEmulated: has(a, 'allow-emulated') });
    writeFileAtomic(out, JSON.stringify(r.license, null, 2) + '\n');
    if (has(a, 'json')) ctx.out(JSON.stringify({ file: out, id: r.body.id, dongle: r.request.dongle.serial, features: r.body.features }, null, 2));
    else {
      ctx.out(
        `license ${r.body.id} for dongle ${r.request.dongle.serial} (box ${r.request.box.hostName}) written to ${out}: ${r.body.features.map((f) => `${f.name} x${f.seats}`).join(', ')}; ` +
          `on the box: licctl activate import ${out}`,
      );
    }
    return 0;
  }
  if (sub === 'serve') {
    const specs = flag(a, 'specs');
    const listen = flag(a, 'listen') ?? '127.0.0.1:8470';
    if (!keyFile || !specs) throw new UsageError('usage: licctl vendor serve --key VENDOR.key --specs DIR|FILE [--listen HOST:PORT]');
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
    if (!m || Number(m[2]) > 65535) throw new UsageError(`--listen ${JSON.stringify(listen)}: use HOST:PORT, e.g. 127.0.0.1:8470 (port 0: any free port)`);
    const key = readVendorKey(keyFile);
    loadSpecs(specs); // a bad spec is said now, not at the first request
    const svc = await startActivationService({ key, specs, ed, host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]), allowEmulated: has(a, 'allow-emulated'), log: (l) => ctx.out(l) }).catch((e: NodeJS.ErrnoException) => {
      throw new LicdError('CONFIG_INVALID', `the activation service cannot listen on ${listen} (${e.code ?? e.message}); give another --listen HOST:PORT`, { listen });
    });
    ctx.out(`activation service listening on ${svc.url} (POST ${svc.url}/v1/activate); specs from ${specs}. Ctrl-C stops it`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await svc.close();
    return 0;
  }
  throw new UsageError('licctl vendor activate | serve; see licctl --help');
}
