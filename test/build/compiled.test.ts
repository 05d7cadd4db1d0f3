/**
 * The production form (issue 12, item 6): what `npm run build` makes runs with node alone.
 *
 * Once per file, tsc compiles the project with tsconfig.build.json (the build script's config)
 * into a temp directory laid out like an install: dist/, a package.json of type "module", and a
 * node_modules holding ONLY the packages `npm ci --omit=dev` installs (those package-lock.json
 * does not mark "dev"), linked from the checkout's. So the compiled code cannot reach tsx, esbuild
 * or typescript even by accident; then, as real processes with no --import and no NODE_OPTIONS:
 * the compiled licctl runs an emulated dongle over TCP, reads it (`dongle info`: the lazily
 * imported modules), makes a vendor key and an entitlement for it; the compiled daemon starts on
 * that license with its embedded broker on loopback; the compiled licctl gets status and holds a
 * seat. A checkout's bin/licd.mjs without tsx says what to run instead.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from '../helpers/procs.ts';

const DEV_ONLY = ['tsx', 'esbuild', 'typescript'];
const run = promisify(execFile);

interface Pkg {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  scripts?: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Pkg;
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };

let top = '';
let dist = '';
const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const children = new Set<ChildProcess>();

test.before(async (t) => {
  t.timeout(120_000);
  top = mkdtempSync(join(tmpdir(), 'licd-build-'));
  dist = join(top, 'dist');
  // The build script's own config, into the temp tree (the checkout's dist/ is left alone).
  await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dist], { cwd: ROOT });
  writeFileSync(join(top, 'package.json'), JSON.stringify({ name: 'licd', version: PKG_VERSION, type: 'module', private: true }) + '\n');
  // node_modules as `npm ci --omit=dev` leaves it: every top-level package the lock does not mark dev.
  for (const [path, meta] of Object.entries(lock.packages)) {
    if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) || meta.dev) continue;
    const real = join(ROOT, path);
    if (!existsSync(real)) continue; // an optional package for another platform
    mkdirSync(dirname(join(top, path)), { recursive: true });
    symlinkSync(realpathSync(real), join(top, path), 'dir');
  }
});

test.after.always(() => {
  for (const c of children) c.kill('SIGKILL');
  if (top) rmSync(top, { recursive: true, force: true });
});

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every module specifier in a compiled file: static imports and re-exports, and import('literal'). */
function specifiers(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/gms)) out.push(m[1]!);
  for (const m of code.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) out.push(m[1]!);
  for (const m of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1]!);
  return out;
}

const packageOf = (spec: string) => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);

test('the compiled tree imports only node built-ins, its own .js files and runtime dependencies', (t) => {
  const files = jsFiles(dist);
  t.true(files.some((f) => f.endsWith(join('src', 'main.js'))), 'dist/src/main.js is built');
  t.true(files.some((f) => f.endsWith(join('src', 'cli', 'licctl-main.js'))), 'dist/src/cli/licctl-main.js is built');
  t.true(files.some((f) => f.endsWith(join('firmware-bridge', 'cli.js'))), 'dist/firmware-bridge/cli.js is built');
  t.false(files.some((f) => /(^|\/)(test|bench)\//.test(relative(dist, f))), 'no tests or bench in the build');
  const deps = new Set(Object.keys(pkg.dependencies ?? {}));
  const problems: string[] = [];
  let relativeImports = 0;
  for (const f of files) {
    const code = readFileSync(f, 'utf8');
    for (const s of specifiers(code)) {
      const where = `${relative(dist, f)} imports ${JSON.stringify(s)}`;
      if (s.startsWith('.')) {
        relativeImports++;
        if (!s.endsWith('.js') && !s.endsWith('.json')) problems.push(`${where}: not a .js path`);
        else if (!existsSync(join(dirname(f), s))) problems.push(`${where}: no such file in the build`);
      } else if (s.startsWith('node:') || builtinModules.includes(s)) {
        continue;
      } else if (DEV_ONLY.includes(packageOf(s))) {
        problems.push(`${where}: a development tool`);
      } else if (!deps.has(packageOf(s))) {
        problems.push(`${where}: not in package.json dependencies`);
      }
    }
  }
  t.true(relativeImports > 100, `the scan found the compiled imports (${relativeImports})`);
  t.deepEqual(problems, []);
  // What `npm ci --omit=dev` installs: no compiler or transpiler among the runtime dependencies.
  for (const p of DEV_ONLY) {
    t.false(p in (pkg.dependencies ?? {}), `${p} is not a runtime dependency`);
    if (p !== 'esbuild') t.true(p in (pkg.devDependencies ?? {}), `${p} is a development dependency`);
    const entry = lock.packages[`node_modules/${p}`];
    t.truthy(entry, `${p} is in package-lock.json`);
    t.true(entry?.dev, `package-lock.json marks ${p} dev, so npm ci --omit=dev leaves it out`);
  }
  t.false(existsSync(join(top, 'node_modules', 'tsx')), 'the test install has no tsx');
  t.regex(pkg.scripts?.build ?? '', /\btsc -p tsconfig\.build\.json\b/, 'npm run build compiles with tsconfig.build.json');
});

interface Child {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
}

/** The node options licd.service puts before the entry point (V8 heap flags), as the appliance runs licd. */
function unitNodeFlags(): string[] {
  const unit = readFileSync(join(ROOT, 'systemd', 'licd.service'), 'utf8');
  const words = unit.match(/^ExecStart=(.*)$/m)?.[1]?.trim().split(/\s+/) ?? [];
  const main = words.indexOf('/opt/licd/dist/src/main.js');
  return main > 0 ? words.slice(1, main) : [];
}

/** node [NODE FLAGS] FILE ARGS, and nothing else: no --import, no NODE_OPTIONS (so no tsx). */
function node(file: string, args: string[], env: Record<string, string>, flags: string[] = []): Child {
  const child = spawn(process.execPath, [...flags, file, ...args], { cwd: top, env: { ...process.env, NODE_OPTIONS: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let text = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    text += d.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      children.delete(child);
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  return {
    child,
    out: () => text,
    exited,
    waitFor(re, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${re} in:\n${text}`)), ms);
        const check = () => {
          const m = text.match(re);
          if (m) done(null, m);
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`exited (${child.exitCode ?? child.signalCode}) before ${re}:\n${text}`));
        };
        const done = (e: Error | null, m?: RegExpMatchArray) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (e) reject(e);
          else resolve(m!);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

test('the compiled daemon and licctl serve a license with node alone', async (t) => {
  t.timeout(90_000);
  const work = join(top, 'work');
  const home = join(work, 'home');
  mkdirSync(home, { recursive: true });
  const licctlJs = join(dist, 'src', 'cli', 'licctl-main.js');
  const env = { LICD_HOME: home };
  const licctl = async (args: string[], extra: Record<string, string> = {}) => {
    const p = node(licctlJs, args, { ...env, ...extra });
    const code = await p.exited;
    return { code, out: p.out() };
  };

  // licctl --version finds package.json from dist/src/cli (one level deeper than in a checkout).
  const ver = await licctl(['--version']);
  t.is(ver.code, 0, ver.out);
  t.is(ver.out.trim(), `licctl ${PKG_VERSION}`);

  // The dongle: the compiled emulator (licctl dongle emulate loads firmware-bridge/cli.js lazily).
  const emu = node(licctlJs, ['dongle', 'emulate', '--tcp', '127.0.0.1:0', '--state', join(work, 'dongle.json')], env);
  const [, address, serial, dongleKey] = (await emu.waitFor(/serving tcp:\/\/(\S+) serial (\S+) public-key ([0-9a-f]{64})/))!;
  const port = Number(address!.split(':')[1]);
  // licctl dongle info loads config.js and dongle/open.js lazily.
  const info = await licctl(['dongle', 'info', '--dongle', `tcp:127.0.0.1:${port}`]);
  t.is(info.code, 0, info.out);
  t.regex(info.out, new RegExp(`serial: ${serial}`));

  // The vendor side: a key and an entitlement for this dongle.
  const keyFile = join(work, 'vendor.key');
  const entFile = join(work, 'entitlement.json');
  const kg = await licctl(['vendor', 'keygen', '--out', keyFile]);
  t.is(kg.code, 0, kg.out);
  const vendorPublicKey = (JSON.parse(readFileSync(keyFile, 'utf8')) as { publicKey: string }).publicKey;
  const is = await licctl(['vendor', 'issue', '--key', keyFile, '--dongle-serial', serial!, '--dongle-key', dongleKey!, '--emulated', '--customer', 'Build test', '--feature', 'name=nuke_i,version=15.0,seats=1,type=interface', '--out', entFile]);
  t.is(is.code, 0, is.out);

  // The daemon, as the appliance runs it (non-development config, the unit's node flags), on the embedded broker.
  const configFile = join(work, 'licd.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(work, 'data'),
      development: false,
      entitlementFile: entFile,
      vendorPublicKey,
      mqtt: { broker: 'embedded', host: '127.0.0.1', port: 0 },
      http: { port: 0 },
      dongle: { transport: 'tcp', host: '127.0.0.1', port },
    }),
  );
  const licd = node(join(dist, 'src', 'main.js'), ['--config', configFile], {}, unitNodeFlags());
  const url = (await licd.waitFor(/listening on (mqtt:\/\/127\.0\.0\.1:\d+)/))[1]!;
  const client = { LICD_BROKER: url, LICD_VENDOR_KEY: vendorPublicKey, LICD_USER: 'builder' };

  const status = await licctl(['status', '--json'], client);
  t.is(status.code, 0, status.out);
  const s = JSON.parse(status.out) as { server: { state: string }; features: Array<{ feature: string; total: number; free: number }> };
  t.is(s.server.state, 'online');
  t.like(s.features.find((f) => f.feature === 'nuke_i'), { total: 1, free: 1 });

  // A seat held by the compiled licctl checkout, seen taken, then given back.
  const holder = node(licctlJs, ['checkout', 'nuke_i'], { ...env, ...client });
  await holder.waitFor(/granted nuke_i/);
  const held = await licctl(['status', 'nuke_i', '--json'], client);
  t.is(held.code, 0, held.out);
  t.like((JSON.parse(held.out) as typeof s).features.find((f) => f.feature === 'nuke_i'), { total: 1, free: 0 });
  const ci = await licctl(['checkin', 'nuke_i'], client);
  t.is(ci.code, 0, ci.out);
  await holder.exited;
  const freed = await licctl(['status', 'nuke_i', '--json'], client);
  t.like((JSON.parse(freed.out) as typeof s).features.find((f) => f.feature === 'nuke_i'), { total: 1, free: 1 });

  licd.child.kill('SIGTERM');
  t.is(await licd.exited, 0, licd.out());
  emu.child.kill('SIGTERM');
  await emu.exited;
});

test('bin/licd.mjs in an install without tsx says to run the compiled build', async (t) => {
  const bin = join(top, 'bin');
  mkdirSync(bin, { recursive: true });
  cpSync(join(ROOT, 'bin', 'licd.mjs'), join(bin, 'licd.mjs'));
  cpSync(join(ROOT, 'bin', 'licctl.mjs'), join(bin, 'licctl.mjs'));
  cpSync(join(ROOT, 'bin', 'source.mjs'), join(bin, 'source.mjs'));
  for (const [name, entry] of [
    ['licd', 'node dist/src/main.js'],
    ['licctl', 'node dist/src/cli/licctl-main.js'],
  ] as const) {
    const p = node(join(bin, `${name}.mjs`), ['--help'], {});
    t.is(await p.exited, 1);
    t.regex(p.out(), /needs tsx, a development dependency/);
    t.true(p.out().includes(entry), p.out());
    t.notRegex(p.out(), /\n\s+at /, 'no stack trace');
  }
});
