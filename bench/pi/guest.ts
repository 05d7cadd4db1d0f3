/**
 * The guest side of `npm run bench:pi` (bench/pi-instructions.ts): runs INSIDE the arm64 image
 * booted by qemu in icount mode, where the guest's clock advances 1 ns per guest instruction, so a
 * process's CPU time in ns (/proc/PID/task/TID/schedstat, summed over its threads) is the number
 * of instructions it executed, kernel work on its behalf included.
 *
 * The host bundles this file with esbuild (packages left external: mqtt and aedes come from the
 * image's /opt/licd/node_modules) and hands it to the guest on a disk; bench/pi/agent.sh runs it
 * with the plan as its argument and its stdout on a virtio serial port. Lines out:
 *   LOG <text>              progress
 *   RESULT <json>           the raw counts (GuestResult), once, at the end
 *   ERROR <text>            what failed
 * It starts mosquitto and the compiled daemon as the bench does (bench/lib/mosquitto.ts,
 * bench/lib/daemon.ts), one load client doing checkout+checkin round trips one at a time, then
 * the same through the bare echo responder (bench/echo.ts, bundled beside this file).
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { topics } from '../../src/core/protocol.ts';
import { waitListening } from '../lib/mosquitto.ts';
import { sleep, stopChild } from '../lib/proc.ts';
import { WireClient } from '../lib/wire.ts';
import type { Counts, GuestPlan, GuestResult, Window } from './types.ts';

const plan = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as GuestPlan;
const log = (s: string) => process.stdout.write(`LOG ${s}\n`);
const children: ChildProcess[] = [];

/** The process's CPU so far: every thread's sum_exec_runtime (ns), and utime/stime in USER_HZ ticks. */
function counts(pid: number): Counts {
  let ns = 0;
  let threads = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      threads++;
    } catch {
      /* the thread ended meanwhile */
    }
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ns, userTicks: Number(rest[11]), systemTicks: Number(rest[12]), threads };
}

function diff(a: Counts, b: Counts): Counts {
  return { ns: b.ns - a.ns, userTicks: b.userTicks - a.userTicks, systemTicks: b.systemTicks - a.systemTicks, threads: b.threads };
}

const clockNs = () => process.hrtime.bigint();

/** Measures `run` for each named process. */
async function measure(pids: Record<string, number>, run: () => Promise<number>, ops: number): Promise<Window> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, counts(p)]));
  const t0 = clockNs();
  const errors = await run();
  const t1 = clockNs();
  const procs = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, diff(before[k]!, counts(p))]));
  return { ops, wallNs: Number(t1 - t0), errors, procs };
}

/**
 * The calibration: a loop of known work in this process's main thread, counted the same way. Under
 * icount the count per iteration is the loop's instruction count, the same run to run and for any
 * length; with a real-time clock it would wander.
 */
function calibrate(n: number): { iterations: number; ns: number }[] {
  const loop = (k: number) => {
    let x = 0;
    for (let i = 0; i < k; i++) x = (x + i * 3) | 0;
    return x;
  };
  for (let j = 0; j < 3; j++) loop(2 * n); // compiled (and tiered up) by the JIT before it is counted
  // getrusage (process.cpuUsage), not schedstat: a running thread's own schedstat lags until the
  // next tick or switch, while getrusage brings the running thread's time up to date (µs: 1,000
  // instructions). (The windows read the other processes' schedstat while they wait: one vCPU.)
  const self = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) * 1000;
  };
  const out: { iterations: number; ns: number }[] = [];
  let sink = 0;
  for (const k of [n, n, n, 2 * n, 2 * n, 2 * n]) {
    const a = self();
    sink ^= loop(k);
    out.push({ iterations: k, ns: self() - a });
  }
  if (sink === 0.5) log('unreachable');
  return out;
}

function startMosquitto(): ChildProcess {
  const dir = join(plan.work, 'mosquitto');
  mkdirSync(dir, { recursive: true });
  const pw = join(dir, 'passwd');
  writeFileSync(pw, '', { mode: 0o600 });
  execFileSync('mosquitto_passwd', ['-b', pw, plan.username, plan.password], { stdio: 'ignore' });
  // As bench/lib/mosquitto.ts: the shipped tuning and ACL, a plain loopback listener, the daemon's user.
  const conf = [
    ...plan.mosquittoTuning,
    `listener ${plan.port} 127.0.0.1`,
    'allow_anonymous true',
    `password_file ${pw}`,
    `acl_file ${join(plan.root, 'mosquitto', 'licd.acl')}`,
    'set_tcp_nodelay true',
    ...(plan.mosquittoTuning.some((l) => l.startsWith('persistence ')) ? [] : ['persistence false']),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'user root',
  ];
  writeFileSync(join(dir, 'mosquitto.conf'), conf.join('\n') + '\n');
  const fd = openSync(join(dir, 'mosquitto.log'), 'a');
  const c = spawn('/usr/sbin/mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  children.push(c);
  return c;
}

function startDaemon(): ChildProcess {
  const data = join(plan.work, 'licd');
  rmSync(data, { recursive: true, force: true });
  mkdirSync(data, { recursive: true });
  const lic = join(plan.root, 'license');
  // As bench/lib/daemon.ts spawnDaemon: production mode, the emulated dongle, the external broker.
  const config = {
    dataDir: data,
    development: false,
    vendorPublicKey: readFileSync(join(lic, 'vendor.pub'), 'utf8').trim(),
    entitlementFile: join(lic, 'entitlement.json'),
    mqtt: { broker: 'external', url: `mqtt://127.0.0.1:${plan.port}`, username: plan.username, password: plan.password },
    dongle: { transport: 'emulated', stateFile: join(lic, 'dongle.json') },
  };
  writeFileSync(join(data, 'licd.json'), JSON.stringify(config, null, 2) + '\n');
  const fd = openSync(join(data, 'licd.log'), 'a');
  const c = spawn('/usr/bin/node', [...plan.nodeFlags, join(plan.root, 'dist', 'src', 'main.js'), '--config', join(data, 'licd.json')], {
    cwd: plan.root,
    env: { ...process.env, LICD_DATA_DIR: data, LICD_LOG_LEVEL: 'info' },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  children.push(c);
  return c;
}

/** Waits until the daemon says it is online (retained state) and answers a status request. */
async function waitServing(w: WireClient, c: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let online = false;
  w.mqtt.on('message', (topic, payload) => {
    if (topic !== topics.serverState || payload.length === 0) return;
    try {
      if ((JSON.parse(payload.toString('utf8')) as { state?: string }).state === 'online') online = true;
    } catch {
      /* not a state */
    }
  });
  await w.mqtt.subscribeAsync(topics.serverState, { qos: 1 });
  while (!online) {
    if (c.exitCode !== null) throw new Error(`the daemon exited (${c.exitCode}): ${tail(join(plan.work, 'licd', 'licd.log'))}`);
    if (Date.now() > deadline) throw new Error(`the daemon was not online within ${timeoutMs / 1000} s: ${tail(join(plan.work, 'licd', 'licd.log'))}`);
    await sleep(500);
  }
  for (;;) {
    const p = w.request('status', {});
    const o = await Promise.race([p, sleep(10_000).then(() => null)]);
    if (o?.ok) return;
    if (Date.now() > deadline) throw new Error('the daemon did not answer status');
    w.expire(Date.now(), 10_000);
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-8).join(' | ');
  } catch {
    return '(no log)';
  }
}

/**
 * `n` checkout+checkin round trips shared by the clients, each with one in flight (one client:
 * one at a time); returns the number of refused or lost requests.
 */
async function roundTrips(ws: WireClient[], n: number, bytes?: Record<string, number>): Promise<number> {
  let errors = 0;
  let started = 0;
  await Promise.all(
    ws.map(async (w, k) => {
      const co = { feature: plan.feature, user: 'render', host: `rn-pi-${k}`, pid: 1000 + k };
      while (started < n) {
        const first = started++ === 0;
        const a = await w.request('checkout', co);
        if (!a.ok) errors++;
        const lease = (a.answer?.result?.lease as { id?: string } | undefined)?.id ?? 'xxxxxxxxxxxx';
        const b = await w.request('checkin', { leases: [lease] });
        if (!b.ok) errors++;
        if (bytes && first) {
          bytes.checkout = a.bytes;
          bytes.checkin = b.bytes;
        }
      }
    }),
  );
  return errors;
}

async function connectClients(url: string, prefix: string): Promise<WireClient[]> {
  const ws = Array.from({ length: plan.clients }, (_, k) => new WireClient({ url, clientId: `${prefix}-${k}` }));
  await Promise.all(ws.map((w) => w.connect(60_000)));
  return ws;
}


async function main(): Promise<void> {
  const version = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0] ?? '';
    } catch (e) {
      return String((e as { stdout?: string }).stdout ?? '').trim().split('\n')[0] ?? '?';
    }
  };
  log(`calibration loop: ${plan.calibrate} and ${2 * plan.calibrate} iterations, 3 times each`);
  const calibration = calibrate(plan.calibrate);
  log(`calibration: ${calibration.map((c) => (c.ns / c.iterations).toFixed(3)).join(' ')} ns (instructions) per iteration`);

  const mosq = startMosquitto();
  await waitListening(plan.port, 60_000);
  log(`mosquitto ${mosq.pid} listening on ${plan.port}`);
  const daemon = startDaemon();
  const url = `mqtt://127.0.0.1:${plan.port}`;
  const ws = await connectClients(url, 'pi-load');
  const w = ws[0]!;
  const t0 = Date.now();
  await waitServing(w, daemon, 900_000);
  log(`licd ${daemon.pid} serving after ${((Date.now() - t0) / 1000).toFixed(1)} s (guest clock)`);

  const answerBytes: Record<string, number> = {};
  const pids = { daemon: daemon.pid!, mosquitto: mosq.pid!, client: process.pid };
  log(`licd: ${plan.warmup} warm-up round trips`);
  const warm = await measure(pids, () => roundTrips(ws, plan.warmup, answerBytes), plan.warmup);
  log(`licd warm-up: ${(warm.procs.daemon!.ns / plan.warmup).toFixed(0)} instructions per round trip, ${warm.errors} errors`);
  const licd: Window[] = [];
  for (let i = 0; i < plan.windows; i++) {
    const win = await measure(pids, () => roundTrips(ws, plan.ops), plan.ops);
    licd.push(win);
    log(`licd window ${i + 1}/${plan.windows}: daemon ${(win.procs.daemon!.ns / plan.ops).toFixed(0)}, mosquitto ${(win.procs.mosquitto!.ns / plan.ops).toFixed(0)} instructions per round trip, ${win.errors} errors`);
  }
  log(`idle: ${plan.idleSeconds} s`);
  const idle = await measure({ daemon: daemon.pid!, mosquitto: mosq.pid! }, () => sleep(plan.idleSeconds * 1000).then(() => 0), 0);
  log(`idle: daemon ${((idle.procs.daemon!.ns / idle.wallNs) * 1e9).toFixed(0)} instructions per second`);
  await Promise.all(ws.map((c) => c.end()));
  await stopChild(daemon, 30_000);

  // The bare echo responder (bench/echo.ts) through the same mosquitto, answers padded to licd's sizes.
  const echoOpts = { url, username: plan.username, password: plan.password, sizes: answerBytes, qos: 1 };
  const echo = fork(join(plan.root, 'bench', 'echo.mjs'), [JSON.stringify(echoOpts)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(echo);
  await new Promise<void>((resolve, reject) => {
    echo.once('message', () => resolve());
    echo.once('exit', (code) => reject(new Error(`the echo responder exited (${code})`)));
  });
  const es = await connectClients(url, 'pi-load-echo');
  const epids = { echo: echo.pid!, mosquitto: mosq.pid!, client: process.pid };
  await roundTrips(es, plan.warmup);
  const echoWindows: Window[] = [];
  for (let i = 0; i < plan.windows; i++) {
    const win = await measure(epids, () => roundTrips(es, plan.ops), plan.ops);
    echoWindows.push(win);
    log(`echo window ${i + 1}/${plan.windows}: responder ${(win.procs.echo!.ns / plan.ops).toFixed(0)}, mosquitto ${(win.procs.mosquitto!.ns / plan.ops).toFixed(0)} instructions per round trip`);
  }
  await Promise.all(es.map((c) => c.end()));
  await stopChild(echo, 30_000);
  await stopChild(mosq, 30_000);

  const result: GuestResult = {
    arch: process.arch,
    kernel: version('uname', ['-r']),
    node: process.version,
    mosquitto: version('/usr/sbin/mosquitto', ['-h']),
    cpus: readdirSync('/sys/devices/system/cpu').filter((d) => /^cpu\d+$/.test(d)).length,
    calibration,
    licd,
    echo: echoWindows,
    idle: { seconds: plan.idleSeconds, wallNs: idle.wallNs, procs: idle.procs },
    answerBytes,
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  async (err) => {
    process.stdout.write(`ERROR ${String((err as Error)?.message ?? err)}\n`);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
