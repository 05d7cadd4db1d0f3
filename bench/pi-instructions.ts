/**
 * npm run bench:pi [-- --ops N] [--clients N] [--json FILE] [--image DIR] [--windows N] [--idle S] [--keep] [--markdown]
 *
 * Issue 18's Pi figure: the daemon's cost per checkout+checkin round trip on arm64, counted in
 * instructions, so that a Raspberry Pi's throughput can be estimated from its clock and IPC
 * (docs/performance.md, "A Pi figure: instructions per operation on arm64").
 *
 * It boots the arm64 Raspberry Pi development image (images/build.sh --board rpi --dev) under
 * qemu-system-aarch64 in icount mode (`-icount shift=0`: the guest's clock advances exactly 1 ns
 * per guest instruction, one vCPU), hands the guest the CURRENT compiled licd (dist/, from `npm
 * run build`) with the image's arm64 node_modules, and inside it runs mosquitto, the daemon with
 * an emulated dongle and a load client (bench/pi/guest.ts) doing N round trips one at a time, in
 * several windows, then the same through the bare echo responder (bench/echo.ts). A process's CPU
 * time in ns (its threads' schedstat) is then its instruction count, the kernel's work on its
 * behalf included. Slow (10 to 20 minutes here); not in CI, not part of npm test.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { FEATURE, makeLicense, makeVendorKey, REPO, staleBuild, unitNodeFlags } from './lib/daemon.ts';
import { Figures } from './lib/figures.ts';
import { shippedTuning, SHIPPED_ACL } from './lib/mosquitto.ts';
import { sleep } from './lib/proc.ts';
import type { GuestPlan, GuestResult, Window } from './pi/types.ts';

const QEMU = 'qemu-system-aarch64';

/**
 * Instructions per cycle assumed for the estimate: a range, not a measurement (TCG counts
 * instructions, not cycles). Sources and reasoning in docs/performance.md ("The estimate").
 */
const CORES = [
  { key: 'pi4_1500', name: 'Pi 4 (Cortex-A72, 1.5 GHz)', hz: 1.5e9, ipc: [0.6, 1.0] },
  { key: 'pi4_1800', name: 'Pi 4 (Cortex-A72, 1.8 GHz)', hz: 1.8e9, ipc: [0.6, 1.0] },
  { key: 'zero2w_1000', name: 'Pi Zero 2 W (Cortex-A53, 1.0 GHz)', hz: 1.0e9, ipc: [0.4, 0.7] },
  { key: 'pi3_1200', name: 'Pi 3 B (Cortex-A53, 1.2 GHz)', hz: 1.2e9, ipc: [0.4, 0.7] },
] as const;

interface Args {
  ops: number;
  clients: number;
  json: string | null;
  image: string;
  windows: number;
  idle: number;
  warmup: number | null;
  timeout: number;
  keep: boolean;
  /** Also print the table as Markdown (for docs/performance.md). */
  markdown: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`bench:pi: ${msg}\nusage: npx tsx bench/pi-instructions.ts [--ops N] [--clients N] [--json FILE] [--image DIR] [--windows N] [--idle SECONDS] [--warmup N] [--timeout SECONDS] [--keep] [--markdown]\n`);
  process.exit(64);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { ops: 1000, clients: 1, json: null, image: join(REPO, 'images', 'build', 'rpi-dev'), windows: 3, idle: 30, warmup: null, timeout: 2400, keep: false, markdown: false };
  const num = (v: string | undefined, name: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`${name} needs a whole number >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const o = argv[i]!;
    const v = () => argv[++i];
    if (o === '--ops') a.ops = num(v(), o, 10);
    else if (o === '--clients') a.clients = num(v(), o, 1);
    else if (o === '--json') a.json = v() ?? usage('--json needs a file');
    else if (o === '--image') a.image = resolve(v() ?? usage('--image needs a directory'));
    else if (o === '--windows') a.windows = num(v(), o, 1);
    else if (o === '--idle') a.idle = num(v(), o, 1);
    else if (o === '--warmup') a.warmup = num(v(), o, 0);
    else if (o === '--timeout') a.timeout = num(v(), o, 60);
    else if (o === '--keep') a.keep = true;
    else if (o === '--markdown') a.markdown = true;
    else if (o === '-h' || o === '--help') {
      process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 15).map((l) => l.replace(/^ \*\/? ?/, '')).join('\n') + '\n');
      process.exit(0);
    } else usage(`unknown option ${o}`);
  }
  return a;
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, cmd)));
}

/** What is missing to run, with how to get it; null when everything is there. */
function missing(a: Args): string | null {
  if (!onPath(QEMU)) return `${QEMU} is not installed: apt-get install qemu-system-arm (Debian's package of it)`;
  const build = 'build the image with: sudo images/build.sh --board rpi --dev (about 30 minutes; it lands in images/build/rpi-dev/), or name an existing one with --image DIR';
  for (const f of ['vmlinuz', 'initrd.img', 'cmdline', 'image.txt']) {
    if (!existsSync(join(a.image, f))) return `${join(a.image, f)} is missing: ${build}`;
  }
  if (!existsSync(join(a.image, 'sdcard.img')) && !existsSync(join(a.image, 'root.img'))) return `${a.image} has neither sdcard.img nor root.img: ${build}`;
  const info = readFileSync(join(a.image, 'image.txt'), 'utf8');
  if (!/^debian: \S+ arm64,/m.test(info)) return `${a.image} is not an arm64 image (image.txt: ${info.split('\n').find((l) => l.startsWith('debian:')) ?? '?'}): ${build}`;
  if (!/^mode: development/m.test(info)) return `${a.image} is not a development image (its licd needs no dongle only with --dev): ${build}`;
  const stale = staleBuild();
  // (staleBuild's advice names npm run bench and --daemon tsx; the guest runs only the compiled build.)
  if (stale) return `${stale.slice(0, stale.indexOf(': run npm run build'))}: run npm run build (npm run bench:pi builds before it runs)`;
  return null;
}

/** The payload disk: dist/, package.json, the license, the ACL, the bundled guest program and echo responder, plan.json. */
async function payload(work: string, a: Args): Promise<{ tar: string; plan: GuestPlan }> {
  const stage = join(work, 'stage');
  mkdirSync(join(stage, 'bench'), { recursive: true });
  cpSync(join(REPO, 'dist'), join(stage, 'dist'), { recursive: true });
  copyFileSync(join(REPO, 'package.json'), join(stage, 'package.json'));
  let rev = 'unknown';
  try {
    rev = execFileSync('git', ['-C', REPO, 'describe', '--always', '--dirty'], { encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
  writeFileSync(join(stage, 'REVISION'), rev + '\n');
  // The license as the bench makes it: its own vendor key, an emulated dongle, a feature with many seats.
  const lic = await makeLicense(join(stage, 'license'), 10_000, makeVendorKey());
  writeFileSync(join(stage, 'license', 'vendor.pub'), lic.vendorPublicKey + '\n');
  // The guest reads these from where it unpacks them, not from the host's paths makeLicense used.
  mkdirSync(join(stage, 'mosquitto'));
  copyFileSync(SHIPPED_ACL, join(stage, 'mosquitto', 'licd.acl'));
  const common = { bundle: true, platform: 'node' as const, format: 'esm' as const, target: 'node20', packages: 'external' as const, logLevel: 'error' as const };
  await build({ ...common, entryPoints: [join(REPO, 'bench', 'pi', 'guest.ts')], outfile: join(stage, 'bench', 'guest.mjs') });
  await build({ ...common, entryPoints: [join(REPO, 'bench', 'echo.ts')], outfile: join(stage, 'bench', 'echo.mjs') });
  const root = '/opt/licd-pi';
  const plan: GuestPlan = {
    ops: a.ops,
    clients: a.clients,
    warmup: a.warmup ?? 2 * a.ops,
    windows: a.windows,
    idleSeconds: a.idle,
    calibrate: 1_000_000,
    nodeFlags: unitNodeFlags(),
    root,
    work: '/var/lib/licd-pi',
    port: 18830,
    username: 'licd',
    password: 'pi-bench-password',
    mosquittoTuning: shippedTuning(),
    feature: FEATURE,
  };
  writeFileSync(join(stage, 'plan.json'), JSON.stringify(plan, null, 2) + '\n');
  const tar = join(work, 'payload.tar');
  execFileSync('tar', ['-cf', tar, '--owner=0', '--group=0', '-C', stage, '.']);
  return { tar, plan };
}

/** The image's dependencies must be the checkout's (the guest reuses the image's node_modules). */
function checkDependencies(image: string): string | null {
  const img = join(image, 'rootfs', 'opt', 'licd', 'package.json');
  if (!existsSync(img)) return null; // no rootfs/ kept: the guest's own load will tell
  const deps = (f: string) => JSON.stringify((JSON.parse(readFileSync(f, 'utf8')) as { dependencies?: unknown }).dependencies ?? {});
  return deps(img) === deps(join(REPO, 'package.json'))
    ? null
    : `the image's dependencies (${img}) differ from package.json's: the guest reuses the image's node_modules, so rebuild the image (sudo images/build.sh --board rpi --dev)`;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const why = missing(a) ?? checkDependencies(a.image);
  if (why) {
    process.stderr.write(`bench:pi: ${why}\n`);
    process.exit(2);
  }
  const work = mkdtempSync(join(tmpdir(), 'licd-pi-'));
  const log = (s: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  log(`work dir ${work}; image ${a.image}`);
  const { tar, plan } = await payload(work, a);
  const agent = join(work, 'agent.img');
  copyFileSync(join(REPO, 'bench', 'pi', 'agent.sh'), agent);
  truncateSync(agent, 64 * 1024);
  const disk = existsSync(join(a.image, 'sdcard.img')) ? join(a.image, 'sdcard.img') : join(a.image, 'root.img');
  const out = join(work, 'guest.out');
  const consoleLog = join(work, 'console.log');
  // The image's own licd, mosquitto and first-boot secrets are not needed (the guest runs its own
  // mosquitto and daemon); systemd.run starts the agent; the guest powers off when it ends.
  const extra = [
    'systemd.unit=multi-user.target',
    'systemd.wants=kernel-command-line.service',
    'systemd.run="/bin/sh /dev/vdb"',
    'systemd.run_success_action=poweroff',
    'systemd.run_failure_action=poweroff',
    'systemd.mask=licd.service',
    'systemd.mask=mosquitto.service',
    'systemd.mask=licd-firstboot.service',
  ].join(' ');
  const args = [
    '-machine', 'virt', '-cpu', 'cortex-a72',
    // icount: 1 ns of guest time per guest instruction; it needs single-threaded TCG, and one vCPU
    // keeps each process's counted time its own instructions.
    '-accel', 'tcg,thread=single', '-icount', 'shift=0',
    '-smp', '1', '-m', '1024', '-nographic', '-no-reboot',
    '-kernel', join(a.image, 'vmlinuz'), '-initrd', join(a.image, 'initrd.img'),
    '-append', `${readFileSync(join(a.image, 'cmdline'), 'utf8').trim()} ${extra}`,
    // -snapshot: the guest's writes go to a temporary file; the image stays as built.
    '-snapshot',
    '-drive', `file=${disk},format=raw,if=virtio`,
    '-drive', `file=${agent},format=raw,if=virtio,readonly=on`,
    '-drive', `file=${tar},format=raw,if=virtio,readonly=on`,
    '-device', 'virtio-serial-pci',
    '-chardev', `file,id=out,path=${out}`, '-device', 'virtserialport,chardev=out,name=licd-pi-out',
    '-nic', 'none',
  ];
  log(`booting ${QEMU} -icount shift=0 (1 vCPU, TCG) with licd ${readFileSync(join(work, 'stage', 'REVISION'), 'utf8').trim()}; ${plan.warmup} warm-up + ${plan.windows} x ${plan.ops} round trips for licd and for the echo responder, ${plan.idleSeconds} s idle`);
  const t0 = Date.now();
  const qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const con = createWriteStream(consoleLog);
  qemu.stdout.pipe(con);
  qemu.stderr.pipe(con);
  const state: { exited: number | null } = { exited: null };
  const gone = new Promise<void>((r) => qemu.once('exit', (code, sig) => ((state.exited = code ?? (sig ? 128 : 1)), r())));
  const kill = () => {
    if (state.exited === null) qemu.kill('SIGKILL');
  };
  process.on('SIGINT', () => (kill(), process.exit(130)));
  process.on('SIGTERM', () => (kill(), process.exit(143)));
  let shown = 0;
  const show = () => {
    if (!existsSync(out)) return;
    const text = readFileSync(out, 'utf8');
    const lines = text.slice(shown).split('\n');
    const done = lines.pop() ?? '';
    for (const l of lines) if (!l.startsWith('RESULT ')) log(`guest: ${l.replace(/^LOG /, '')}`);
    shown = text.length - done.length;
  };
  while (state.exited === null) {
    if (Date.now() - t0 > a.timeout * 1000) {
      show();
      kill();
      await gone;
      fail(`the guest did not finish within ${a.timeout} s (--timeout)`, consoleLog, work);
    }
    show();
    await Promise.race([gone, sleep(2000)]);
  }
  show();
  const minutes = (Date.now() - t0) / 60_000;
  const text = existsSync(out) ? readFileSync(out, 'utf8') : '';
  const line = text.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) fail(`the guest gave no result (qemu exit ${state.exited}); ${text.split('\n').filter((l) => l.startsWith('ERROR')).join('; ') || 'see its output'}`, consoleLog, work);
  const r = JSON.parse(line.slice('RESULT '.length)) as GuestResult;
  const figs = report(r, plan);
  log(`guest: ${r.arch}, kernel ${r.kernel}, node ${r.node}, ${r.mosquitto}; ${minutes.toFixed(1)} min in all`);
  process.stdout.write('\n' + figs.table() + '\n');
  for (const n of figs.notes) process.stdout.write(`note: ${n}\n`);
  if (a.markdown) process.stdout.write('\n' + figs.markdown() + '\n');
  if (a.json) {
    const meta = { date: new Date().toISOString(), method: 'qemu-system-aarch64 -icount shift=0, -smp 1, cortex-a72; schedstat ns = instructions', qemu: execFileSync(QEMU, ['--version'], { encoding: 'utf8' }).split('\n')[0], image: a.image, revision: readFileSync(join(work, 'stage', 'REVISION'), 'utf8').trim(), guest: { kernel: r.kernel, node: r.node, mosquitto: r.mosquitto, cpus: r.cpus }, plan: { ops: plan.ops, warmup: plan.warmup, windows: plan.windows, idleSeconds: plan.idleSeconds }, raw: r, minutes };
    writeFileSync(a.json, JSON.stringify(figs.json(meta), null, 2) + '\n');
    log(`wrote ${a.json}`);
  }
  if (a.keep) log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

function fail(msg: string, consoleLog: string, work: string): never {
  process.stderr.write(`bench:pi: ${msg}\n---- last 30 lines of the guest console (${consoleLog}; the work dir ${work} is kept)\n`);
  try {
    process.stderr.write(readFileSync(consoleLog, 'utf8').split('\n').slice(-30).join('\n') + '\n');
  } catch {
    /* no console */
  }
  process.exit(1);
}

/** Per round trip over the windows: mean, and the spread (max - min) / mean. */
function perOp(ws: Window[], proc: string): { mean: number; min: number; max: number; spread: number; each: number[] } {
  const each = ws.map((w) => w.procs[proc]!.ns / w.ops);
  const mean = each.reduce((s, x) => s + x, 0) / each.length;
  const min = Math.min(...each);
  const max = Math.max(...each);
  return { mean, min, max, spread: (max - min) / mean, each };
}

function report(r: GuestResult, plan: GuestPlan): Figures {
  const f = new Figures();
  const kilo = (x: number) => `${(x / 1000).toFixed(0)}k`;
  const d = perOp(r.licd, 'daemon');
  f.add('pi.n', `round trips per window (checkout+checkin, ${plan.clients === 1 ? 'one at a time' : `${plan.clients} clients with one in flight each`})`, plan.ops, '');
  f.add('pi.windows', 'measured windows', r.licd.length, '');
  f.add('pi.daemon.instructions_per_op', 'licd: instructions per checkout+checkin (mean of the windows)', d.mean, '', undefined, `windows ${d.each.map(kilo).join(' / ')}, spread ${(d.spread * 100).toFixed(1)} %`);
  f.add('pi.daemon.spread_pct', 'licd: spread of the windows (max - min) / mean', d.spread * 100, '%');
  const userTicks = r.licd.reduce((s, w) => s + w.procs.daemon!.userTicks, 0);
  const sysTicks = r.licd.reduce((s, w) => s + w.procs.daemon!.systemTicks, 0);
  if (userTicks + sysTicks > 0) f.add('pi.daemon.kernel_pct', "licd: share in the kernel (utime/stime ticks)", (100 * sysTicks) / (userTicks + sysTicks), '%');
  const m = perOp(r.licd, 'mosquitto');
  f.add('pi.mosquitto.instructions_per_op', 'mosquitto: instructions per round trip (licd run)', m.mean, '', undefined, `spread ${(m.spread * 100).toFixed(1)} %`);
  const c = perOp(r.licd, 'client');
  f.add('pi.client.instructions_per_op', 'load client: instructions per round trip (licd run)', c.mean, '');
  const e = perOp(r.echo, 'echo');
  f.add('pi.echo.instructions_per_op', 'bare echo responder: instructions per round trip', e.mean, '', undefined, `spread ${(e.spread * 100).toFixed(1)} %`);
  const em = perOp(r.echo, 'mosquitto');
  f.add('pi.echo.mosquitto_instructions_per_op', 'mosquitto: instructions per round trip (echo run)', em.mean, '');
  f.add('pi.daemon.over_echo', 'licd / echo responder, instructions per round trip', d.mean / e.mean, '');
  const idleRate = (p: string) => (r.idle.procs[p]!.ns / r.idle.wallNs) * 1e9;
  f.add('pi.daemon.idle_instructions_per_s', `licd idle: instructions per second (${r.idle.seconds} s, no lease held)`, idleRate('daemon'), '');
  f.add('pi.mosquitto.idle_instructions_per_s', 'mosquitto idle: instructions per second', idleRate('mosquitto'), '');
  const cal = r.calibration.map((x) => x.ns / x.iterations);
  const calSpread = (Math.max(...cal) - Math.min(...cal)) / Math.min(...cal);
  f.add('pi.calibration.instructions_per_iteration', `calibration loop: instructions per iteration (${r.calibration.map((x) => x.iterations / 1e6 + 'M').join(', ')})`, cal.reduce((s, x) => s + x, 0) / cal.length, '', undefined, `each ${cal.map((x) => x.toFixed(3)).join(' / ')}, spread ${(calSpread * 100).toFixed(2)} %`);
  const errors = [...r.licd, ...r.echo].reduce((s, w) => s + w.errors, 0);
  if (errors > 0) f.add('pi.errors', 'refused or lost requests in the measured windows', errors, '');
  // The estimate: one core's round trips per second = clock * IPC / (licd's instructions per round trip).
  // The daemon alone; mosquitto and the nodes' own work are extra (on the Pi's other cores).
  for (const k of CORES) {
    const lo = (k.hz * k.ipc[0]) / d.mean;
    const hi = (k.hz * k.ipc[1]) / d.mean;
    f.add(`pi.estimate.${k.key}_rps`, `estimate ${k.name}, IPC ${k.ipc[0]}-${k.ipc[1]}: licd round trips/s on one core`, `${lo.toFixed(0)}-${hi.toFixed(0)}`, 'rt/s');
    f.add(`pi.estimate.${k.key}_us_per_op`, `estimate ${k.name}: licd CPU per round trip`, `${((1e6 / hi)).toFixed(0)}-${(1e6 / lo).toFixed(0)}`, 'µs');
  }
  f.note('instructions counted under qemu icount (1 ns per guest instruction), per process over all its threads, kernel work on its behalf included; estimates assume the IPC range in bench/pi-instructions.ts (CORES), not measured');
  return f;
}

main().catch((e) => {
  process.stderr.write(`bench:pi: ${String((e as Error)?.message ?? e)}\n`);
  process.exit(1);
});
