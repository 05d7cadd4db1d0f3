/**
 * The dongle as the daemon meets it, with real parts: the daemon (in-process, or `src/main.ts` as
 * a child process), LevelDB, the embedded broker, and the emulated dongle run as its own process
 * (`licctl dongle emulate`) over TCP or a socat pseudo-terminal pair, exactly as the daemon would
 * reach hardware. Faults that need changing at run time use an in-process emulator served on TCP,
 * still reached by the daemon through its TCP transport.
 *
 * Everything is observed as a user would: checkout answers (code and message), the retained
 * server state, `licctl status`. Waits are bounded and say what they waited for; no test passes
 * or fails on how fast something happened (bench/hotplug.ts measures that).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { CommandCode, EmulatedDongle } from '../../firmware-bridge/index.ts';
import { toHex } from '../../src/core/bytes.ts';
import { LicdError } from '../../src/core/errors.ts';
import { systemRandom, nodeEd25519 } from '../../src/crypto/ed25519.ts';
import type { CheckoutResult, HeartbeatResult, ServerState } from '../../src/core/protocol.ts';
import type { PresenceEvent } from '../../src/dongle/manager.ts';
import { LicdClient } from '../../src/sdk/client.ts';
import { fetchChain, verifyGrant } from '../../src/sdk/verify.ts';
import { generateVendorKey, issueEntitlement } from '../../src/vendor.ts';
import { ManualClock, startTestDaemon, tempDir, until, type TestDaemon } from '../helpers/daemon.ts';
import { freePort, killAll, licctl, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

const ed = nodeEd25519();
test.after.always(() => killAll());

// ---- the emulator as its own process -------------------------------------------------------------

interface EmulatorProc {
  proc: Proc;
  serial: string;
  publicKey: string;
  /** "tcp://127.0.0.1:40123" or "serial:/path". */
  address: string;
  port: number;
  /** SIGUSR1: pulls the dongle or plugs it back; resolves once the emulator says it did. */
  toggle(): Promise<'unplugged' | 'plugged in'>;
  stop(): Promise<void>;
}

async function startEmulator(t: ExecutionContext, where: { tcp: string } | { pty: string }, state: string, faults: string[] = []): Promise<EmulatorProc> {
  const args = ['dongle', 'emulate', ...('tcp' in where ? ['--tcp', where.tcp] : ['--pty', where.pty]), '--state', state, ...faults.flatMap((f) => ['--fault', f])];
  const proc = licctl(args);
  const stop = async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  };
  t.teardown(stop);
  const m = await proc.waitFor(/licd dongle emulator serving (\S+) serial (\S+) public-key ([0-9a-f]{64})/, 30_000);
  const address = m[1]!;
  const toggles = () => (proc.stdout().match(/licd dongle emulator \S+ (unplugged|plugged in)\n/g) ?? []).length;
  return {
    proc,
    address,
    serial: m[2]!,
    publicKey: m[3]!,
    port: address.startsWith('tcp://') ? Number(address.slice(address.lastIndexOf(':') + 1)) : 0,
    async toggle() {
      const before = toggles();
      proc.child.kill('SIGUSR1');
      await until(() => toggles() > before, 'the emulator to report the SIGUSR1 toggle', 10_000);
      return /plugged in\n$/.test(proc.stdout()) ? 'plugged in' : 'unplugged';
    },
    stop,
  };
}

/** A socat pseudo-terminal pair: the emulator opens `device`, the daemon `host`. */
async function ptyPair(t: ExecutionContext, dir: string): Promise<{ device: string; host: string }> {
  const device = join(dir, 'dongle-side');
  const host = join(dir, 'host-side');
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${host}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  socat.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => socat.once('exit', () => resolve()));
  socat.once('error', (e) => (stderr += `cannot run socat (Debian package socat): ${e.message}`));
  t.teardown(async () => {
    if (socat.exitCode === null && socat.signalCode === null) {
      socat.kill('SIGTERM');
      await exited;
    }
  });
  await until(
    async () => {
      if (socat.exitCode !== null) throw new Error(`socat exited: ${stderr}`);
      if (!/starting data transfer loop/.test(stderr)) return false;
      return access(device).then(() => access(host)).then(() => true, () => false);
    },
    `socat to make the pty pair (${stderr})`,
    10_000,
  );
  return { device, host };
}


// ---- what a client sees --------------------------------------------------------------------------

type Outcome = { ok: true; result: CheckoutResult } | { ok: false; code: string; message: string };

let pidSeq = 1000;
async function tryCheckout(c: LicdClient, feature = 'vray_render', pid = 1): Promise<Outcome> {
  try {
    return { ok: true, result: await c.request<CheckoutResult>('checkout', { feature, user: c.user, host: c.host, pid }) };
  } catch (e) {
    if (e instanceof LicdError && e.code !== 'TIMEOUT') return { ok: false, code: e.code, message: e.message };
    throw e;
  }
}

/** Keeps trying checkouts until one is refused; returns the refusal. */
async function untilRefused(c: LicdClient, what: string, timeoutMs = 15_000): Promise<{ code: string; message: string }> {
  const r = await until(async () => {
    const o = await tryCheckout(c);
    return o.ok ? null : o;
  }, `checkouts to be refused (${what})`, timeoutMs, 25);
  return r!;
}

/** Keeps trying checkouts until one is granted; returns it. */
async function untilGranted(c: LicdClient, what: string, timeoutMs = 15_000): Promise<CheckoutResult> {
  let last: Outcome | null = null;
  try {
    const r = await until(async () => {
      last = await tryCheckout(c);
      return last.ok ? last.result : null;
    }, `a checkout to be granted (${what})`, timeoutMs, 25);
    return r!;
  } catch (e) {
    throw new Error(`${(e as Error).message}; the last answer was ${JSON.stringify(last)}`);
  }
}

async function watcher(d: { client(): Promise<LicdClient> }): Promise<LicdClient> {
  const w = await d.client();
  await w.watch();
  return w;
}

async function untilServer(w: LicdClient, check: (s: ServerState) => boolean, what: string): Promise<ServerState> {
  try {
    const s = await until(() => (w.server && check(w.server) ? w.server : null), `the retained server state to show ${what}`, 15_000);
    return s!;
  } catch (e) {
    throw new Error(`${(e as Error).message}; it is ${JSON.stringify(w.server)}`);
  }
}

/** Waits for the daemon's absence reason to match; says what it was when it did not. */
async function untilReason(d: TestDaemon, re: RegExp, what: string): Promise<void> {
  try {
    await until(() => !d.dongle.present && re.test(d.dongle.reason), what, 15_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}; the dongle is ${d.dongle.present ? 'present' : `absent: ${d.dongle.reason}`}`);
  }
}

function tcpDaemon(port: number, extra: Record<string, unknown> = {}, dongle: Record<string, unknown> = {}): Promise<TestDaemon> {
  return startTestDaemon({ config: { dongle: { transport: 'tcp', host: '127.0.0.1', port, presenceIntervalMs: 100, timeoutMs: 500, ...dongle }, ...extra } });
}

// ---- over TCP, the emulator as its own process ---------------------------------------------------

test.serial('tcp: pulling the dongle refuses new checkouts with DONGLE_ABSENT, the retained state says so, leases heartbeat in the grace; plugging it back resumes granting', async (t) => {
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const emu = await startEmulator(t, { tcp: '127.0.0.1:0' }, join(dir, 'dongle.json'));
  t.regex(emu.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const d = await tcpDaemon(emu.port);
  t.teardown(() => d.dispose());

  // Development mode issued the demo license for the dongle it found at the other end of TCP.
  t.is(d.entitlement.dongle.serial, emu.serial);
  t.is(toHex(d.entitlement.dongle.publicKey), emu.publicKey);
  t.true(d.entitlement.dongle.emulated);

  const holder = await d.client({ user: 'alice', host: 'node-1' });
  const asker = await d.client({ user: 'bob', host: 'node-2' });
  const w = await watcher(d);
  await untilServer(w, (s) => s.dongle.present && s.dongle.serial === emu.serial, 'the dongle present');
  const lease = await tryCheckout(holder, 'vray_interface');
  if (!lease.ok) return t.fail(`first checkout refused: ${lease.message}`);
  const chain = await fetchChain(holder);
  t.notThrows(() => verifyGrant({ grant: lease.result.grant, ...chain }, { vendorPublicKey: d.vendorPublicKey, ed }));

  const absentEvents: string[] = [];
  d.dongle.on('change', (ev: PresenceEvent) => {
    if (!ev.present) absentEvents.push(ev.reason);
  });

  t.is(await emu.toggle(), 'unplugged');
  const refusal = await untilRefused(asker, 'after SIGUSR1 pulled the dongle');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.regex(refusal.message, /^the license dongle is absent \(.+\); no new seats can be granted until it is plugged back in$/);
  t.regex(absentEvents[0] ?? '', /unplugged \(its connection closed\)|closed/);
  const absent = await untilServer(w, (s) => !s.dongle.present, 'the dongle absent');
  t.is(absent.state, 'online');
  t.true(absent.warnings.some((x) => /^dongle absent \(.+\): new checkouts and borrows are refused; live leases continue for 300 s$/.test(x)), absent.warnings.join('\n'));
  // What `licctl status` prints.
  const st = await run(['status', '--broker', d.url], { LICD_HOME: join(dir, 'client') });
  t.is(st.code, 0, st.stderr);
  t.regex(st.stdout, /DONGLE ABSENT \(/);
  t.regex(st.stdout, /warning: dongle absent/);

  // The lease granted before keeps heartbeating during the grace (300 s by default).
  const hb = await holder.request<HeartbeatResult>('heartbeat', { leases: [lease.result.lease.id] });
  t.deepEqual(hb.renewed.map((r) => r.id), [lease.result.lease.id]);
  t.deepEqual(hb.unknown, []);

  t.is(await emu.toggle(), 'plugged in');
  const again = await untilGranted(asker, 'after SIGUSR1 plugged the dongle back in');
  t.is(again.lease.feature, 'vray_render');
  const back = await untilServer(w, (s) => s.dongle.present, 'the dongle present again');
  t.deepEqual(back.warnings, []);
  // Same daemon, no restart; its re-delegated chain verifies the new grant.
  const chain2 = await fetchChain(asker);
  t.notThrows(() => verifyGrant({ grant: again.grant, ...chain2 }, { vendorPublicKey: d.vendorPublicKey, ed }));
  const st2 = await run(['status', '--broker', d.url], { LICD_HOME: join(dir, 'client') });
  t.regex(st2.stdout, new RegExp(`dongle ${emu.serial} present \\(emulated\\)`));
});

test.serial('tcp: the emulator process killed, restarted with a fault, replaced by another dongle, and restarted clean', async (t) => {
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'dongle.json');
  let emu = await startEmulator(t, { tcp: '127.0.0.1:0' }, state);
  const port = emu.port;
  const d = await tcpDaemon(port);
  t.teardown(() => d.dispose());
  const c = await d.client();
  await untilGranted(c, 'with the first emulator');

  // Killed: its socket closes, the daemon sees the dongle go.
  await emu.stop();
  const gone = await untilRefused(c, 'after the emulator process was killed');
  t.is(gone.code, 'DONGLE_ABSENT');

  // Back with the same state file but signing with a wrong key (`--fault wrongSignature`).
  emu = await startEmulator(t, { tcp: `127.0.0.1:${port}` }, state, ['wrongSignature']);
  await untilReason(d, /failed a challenge/, 'the daemon to find the restarted dongle signing with a wrong key');
  const wrong = await tryCheckout(c);
  t.false(wrong.ok);
  if (!wrong.ok) {
    t.is(wrong.code, 'DONGLE_ABSENT');
    t.regex(wrong.message, /dongle is absent \(it failed a challenge: the signature does not match its public key\)/);
  }
  await emu.stop();

  // Another dongle (another state file, so another serial and key) on the same address.
  const other = await startEmulator(t, { tcp: `127.0.0.1:${port}` }, join(dir, 'other.json'));
  t.not(other.serial, emu.serial);
  await untilReason(d, /another dongle/, 'the daemon to see the other dongle');
  const refused = await tryCheckout(c);
  t.false(refused.ok);
  if (!refused.ok) {
    t.is(refused.code, 'DONGLE_ABSENT');
    t.true(refused.message.includes(`another dongle is plugged in (serial ${other.serial}); the license file names ${emu.serial}`), refused.message);
  }
  const w = await watcher(d);
  const st = await untilServer(w, (s) => !s.dongle.present, 'the other dongle refused');
  t.true(st.dongle.reason?.includes(other.serial) && st.dongle.reason.includes(emu.serial), st.dongle.reason);
  await other.stop();

  // The right dongle, restarted clean with its state file: granting resumes, no daemon restart.
  emu = await startEmulator(t, { tcp: `127.0.0.1:${port}` }, state);
  await untilGranted(c, 'after the right emulator came back');
  await untilServer(w, (s) => s.dongle.present && s.warnings.length === 0, 'the dongle present again');
  t.pass();
});

// ---- over a real pseudo-terminal pair --------------------------------------------------------------

test.serial('serial: the daemon on one end of a socat pty pair, the emulator process on the other; a silent (unplugged) dongle fails its challenge', async (t) => {
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pty = await ptyPair(t, dir);
  const emu = await startEmulator(t, { pty: pty.device }, join(dir, 'dongle.json'));
  t.is(emu.address, `serial:${pty.device}`);
  const d = await startTestDaemon({ config: { dongle: { transport: 'serial', path: pty.host, presenceIntervalMs: 100, timeoutMs: 500 } } });
  t.teardown(() => d.dispose());
  t.is(d.entitlement.dongle.serial, emu.serial);
  const c = await d.client();
  const first = await untilGranted(c, 'over the pty');
  const chain = await fetchChain(c);
  t.notThrows(() => verifyGrant({ grant: first.grant, ...chain }, { vendorPublicKey: d.vendorPublicKey, ed }));

  // A serial line cannot be closed by the device: an unplugged emulator goes silent, so the
  // daemon learns it from an unanswered challenge.
  t.is(await emu.toggle(), 'unplugged');
  const refusal = await untilRefused(c, 'after the pty dongle went silent');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.regex(refusal.message, /dongle is absent \(it (failed a challenge|does not answer): .*no answer from the dongle on serial/);
  const w = await watcher(d);
  await untilServer(w, (s) => !s.dongle.present && s.warnings.some((x) => x.startsWith('dongle absent')), 'the dongle absent');

  t.is(await emu.toggle(), 'plugged in');
  await untilGranted(c, 'after the pty dongle was plugged back in');
  await untilServer(w, (s) => s.dongle.present, 'the dongle present again');
  t.pass();
});

// ---- startup without the dongle, the daemon as a child process ---------------------------------------

test.serial('startup without the dongle (licensed, not development): the daemon starts, refuses checkouts, then grants once the dongle appears', async (t) => {
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The vendor's side: a key, and a license file for this particular (emulated) dongle.
  const state = join(dir, 'dongle.json');
  const made = await EmulatedDongle.open({ statePath: state, serial: 'EMU-LATE0001' });
  const dongleKey = toHex(made.publicKey);
  await made.close();
  const vendor = generateVendorKey(ed, systemRandom, false);
  const now = Date.now();
  const entitlement = issueEntitlement(
    {
      id: 'ENT-LATE-1',
      issuedAt: new Date(now).toISOString(),
      customer: 'Test Studio',
      dongle: { serial: 'EMU-LATE0001', publicKey: dongleKey, emulated: true },
      features: [{ name: 'vray_render', version: '6.2', seats: 2, expires: new Date(now + 30 * 86400_000).toISOString(), type: 'render', borrow: { allowed: false, maxHours: 0 } }],
    },
    vendor,
    ed,
  );
  const entitlementFile = join(dir, 'license.json');
  writeFileSync(entitlementFile, JSON.stringify(entitlement));
  const dongleAt = await freePort();
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const configFile = join(dir, 'licd.json');
  writeFileSync(
    configFile,
    JSON.stringify({ dataDir, development: false, vendorPublicKey: vendor.publicKey, entitlementFile, mqtt: { host: '127.0.0.1', port: 0 }, dongle: { presenceIntervalMs: 100, timeoutMs: 500 } }),
  );
  // The dongle from the environment, as an operator would set it.
  const licd = startDaemonProcess({ LICD_CONFIG: configFile, LICD_DONGLE: `tcp:127.0.0.1:${dongleAt}`, LICD_LOG_LEVEL: 'warn' });
  t.teardown(async () => {
    if (licd.child.exitCode === null) {
      licd.child.kill('SIGTERM');
      await licd.exited;
    }
  });
  const url = (await licd.waitFor(/listening on (mqtt:\/\/\S+)/, 30_000))[1]!;
  await licd.waitFor(/dongle: ABSENT EMU-LATE0001/);
  t.regex(licd.stdout() + licd.stderr(), /starting without the dongle/);

  const c = await LicdClient.connect({ url, timeoutMs: 5000 });
  t.teardown(() => c.close({ checkin: false }));
  await c.watch();
  const before = await tryCheckout(c);
  t.false(before.ok);
  if (!before.ok) {
    t.is(before.code, 'DONGLE_ABSENT');
    t.regex(before.message, /the license dongle is absent \(cannot open it: .*cannot connect to dongle at tcp 127\.0\.0\.1:\d+/);
  }
  await untilServer(c, (s) => !s.dongle.present && s.dongle.serial === 'EMU-LATE0001' && s.warnings.length > 0, 'the dongle absent at start');
  await t.throwsAsync(fetchChain(c, { timeoutMs: 300 }), { message: /no trust chain/ }, 'no chain is published before the dongle delegates a session key');

  // The dongle appears where the daemon looks for it.
  await startEmulator(t, { tcp: `127.0.0.1:${dongleAt}` }, state);
  const granted = await untilGranted(c, 'once the dongle appeared');
  await untilServer(c, (s) => s.dongle.present && s.warnings.length === 0, 'the dongle present');
  const chain = await fetchChain(c);
  const v = verifyGrant({ grant: granted.grant, ...chain }, { vendorPublicKey: Buffer.from(vendor.publicKey, 'hex'), ed, now: Date.now() });
  t.is(v.chain.entitlement.id, 'ENT-LATE-1');
  // A production verifier refuses it: the dongle is emulated.
  t.throws(() => verifyGrant({ grant: granted.grant, ...chain }, { vendorPublicKey: Buffer.from(vendor.publicKey, 'hex'), ed, refuseEmulated: true }), { message: /emulated dongle/ });

  licd.child.kill('SIGTERM');
  t.is((await licd.exited).code, 0);
});

// ---- the dongle grace, under a clock the test moves ---------------------------------------------------

test.serial('leases heartbeat through the dongle grace and are refused after it; new checkouts are refused all along', async (t) => {
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock, config: { leases: { dongleGraceSeconds: 120, ttlSeconds: 600, maxTtlSeconds: 3600 } } });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const lease = await untilGranted(c, 'with the in-process dongle');
  const emulator = d.opener.emulator!;

  emulator.unplug();
  await untilRefused(c, 'after unplug()');
  clock.advance(100_000);
  const hb = await c.request<HeartbeatResult>('heartbeat', { leases: [lease.lease.id] });
  t.deepEqual(hb.renewed.map((r) => r.id), [lease.lease.id], 'inside the grace the lease is renewed');
  t.false((await tryCheckout(c, 'vray_render', ++pidSeq)).ok, 'still no new checkouts');
  clock.advance(30_000);
  const late = await t.throwsAsync(c.request<HeartbeatResult>('heartbeat', { leases: [lease.lease.id] }), { instanceOf: LicdError });
  t.is(late?.code, 'DONGLE_ABSENT');
  t.regex(late?.message ?? '', /the license dongle is absent/);

  emulator.plug();
  await untilGranted(c, 'after plug()');
  const hb2 = await c.request<HeartbeatResult>('heartbeat', { leases: [lease.lease.id] });
  t.deepEqual(hb2.renewed.map((r) => r.id), [lease.lease.id], 'with the dongle back the lease heartbeats again');
});

// ---- injected faults, seen from the client ------------------------------------------------------------

interface FaultRig {
  d: TestDaemon;
  dongle: EmulatedDongle;
  c: LicdClient;
  absent: string[];
  /** Resolves after the daemon has sent `n` more presence challenges. */
  challenges(n: number): Promise<void>;
}

async function faultRig(t: ExecutionContext, dongleTimings: { timeoutMs: number }): Promise<FaultRig> {
  const dongle = await EmulatedDongle.open({ serial: 'EMU-FAULTS' });
  t.teardown(() => dongle.close());
  const served = await dongle.serveTcp('127.0.0.1', 0);
  const d = await tcpDaemon(served.port, {}, dongleTimings);
  t.teardown(() => d.dispose());
  const c = await d.client();
  await untilGranted(c, 'before any fault');
  const absent: string[] = [];
  d.dongle.on('change', (ev: PresenceEvent) => {
    if (!ev.present) absent.push(ev.reason);
  });
  const signs = () => dongle.requestCounts.get('SIGN') ?? 0;
  return {
    d,
    dongle,
    c,
    absent,
    async challenges(n) {
      const target = signs() + n;
      await until(() => signs() >= target, `${n} more presence challenges`, 20_000);
    },
  };
}

test.serial('fault slowMs below the timeout: answers are late, the dongle stays present and checkouts are granted', async (t) => {
  const r = await faultRig(t, { timeoutMs: 2000 });
  r.dongle.setFaults({ slowMs: 250 });
  await r.challenges(4);
  const o = await tryCheckout(r.c, 'vray_render', ++pidSeq);
  t.true(o.ok, JSON.stringify(o));
  t.deepEqual(r.absent, [], 'never absent');
  t.true(r.d.dongle.present);
});

test.serial('fault slowMs far above the timeout: the challenge times out, the dongle is absent; without the fault it is back', async (t) => {
  const r = await faultRig(t, { timeoutMs: 300 });
  r.dongle.setFaults({ slowMs: 1500 });
  const refusal = await untilRefused(r.c, 'with answers 1.5 s late');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.regex(refusal.message, /dongle is absent \(it (failed a challenge|does not answer): .*no answer from the dongle/);
  r.dongle.clearFaults();
  await untilGranted(r.c, 'after the slowness ended', 30_000);
  t.pass();
});

test.serial('fault corruptFrames: a damaged answer is resent and the dongle stays present; every answer damaged makes it absent', async (t) => {
  const r = await faultRig(t, { timeoutMs: 1000 });
  // Record each SIGN request the dongle receives: a resend carries the same nonce again.
  const sign = r.dongle.getBehaviour(CommandCode.SIGN)!;
  const nonces: string[] = [];
  r.dongle.setBehaviour(CommandCode.SIGN, (payload, ctx) => {
    nonces.push(toHex(payload));
    return sign(payload, ctx);
  });
  for (let i = 0; i < 3; i++) {
    r.dongle.setFaults({ corruptFrames: 1 });
    await r.challenges(3);
  }
  t.deepEqual(r.absent, [], 'one damaged answer at a time is absorbed by the session retry');
  t.true(nonces.length > new Set(nonces).size, 'the challenges whose answers were damaged were sent again');
  const o = await tryCheckout(r.c, 'vray_render', ++pidSeq);
  t.true(o.ok, JSON.stringify(o));

  r.dongle.setFaults({ corruptFrames: { probability: 1 } });
  const refusal = await untilRefused(r.c, 'with every answer damaged');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.regex(refusal.message, /dongle is absent \(it (failed a challenge|does not answer): /);
  r.dongle.clearFaults();
  await untilGranted(r.c, 'after the damage ended');
  t.pass();
});

test.serial('fault wrongSignature: the challenge fails, the dongle is absent with "failed a challenge"; without the fault it is back', async (t) => {
  const r = await faultRig(t, { timeoutMs: 1000 });
  r.dongle.setFaults({ wrongSignature: true });
  const refusal = await untilRefused(r.c, 'with a wrong signature');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.is(refusal.message, 'the license dongle is absent (it failed a challenge: the signature does not match its public key); no new seats can be granted until it is plugged back in');
  t.deepEqual(r.absent, ['it failed a challenge: the signature does not match its public key']);
  const w = await watcher(r.d);
  const st = await untilServer(w, (s) => !s.dongle.present, 'the dongle absent');
  t.is(st.dongle.reason, 'it failed a challenge: the signature does not match its public key');
  r.dongle.setFaults({ wrongSignature: false });
  await untilGranted(r.c, 'after the signatures were right again');

  // The same failure a second time is reported again (the reason repeats word for word).
  r.dongle.setFaults({ wrongSignature: true });
  const second = await untilRefused(r.c, 'with a wrong signature, the second time');
  t.is(second.code, 'DONGLE_ABSENT');
  t.regex(second.message, /it failed a challenge: the signature does not match its public key/);
  t.deepEqual(r.absent, ['it failed a challenge: the signature does not match its public key', 'it failed a challenge: the signature does not match its public key']);
  r.dongle.setFaults({ wrongSignature: false });
  await untilGranted(r.c, 'after the signatures were right again, the second time');
});

test.serial('serial: the dongle going silent twice is reported both times (same reason each time)', async (t) => {
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pty = await ptyPair(t, dir);
  const emu = await startEmulator(t, { pty: pty.device }, join(dir, 'dongle.json'));
  const d = await startTestDaemon({ config: { dongle: { transport: 'serial', path: pty.host, presenceIntervalMs: 100, timeoutMs: 300 } } });
  t.teardown(() => d.dispose());
  const c = await d.client();
  const reasons: string[] = [];
  d.dongle.on('change', (ev: PresenceEvent) => reasons.push(ev.present ? 'present' : ev.reason));
  for (let round = 1; round <= 2; round++) {
    await untilGranted(c, `before pull ${round}`);
    // Pull while the daemon holds the link: the challenge goes unanswered.
    await until(() => d.dongle.present, 'the manager to hold the link', 15_000);
    t.is(await emu.toggle(), 'unplugged');
    const refusal = await untilRefused(c, `after pull ${round}`);
    t.is(refusal.code, 'DONGLE_ABSENT');
    t.is(await emu.toggle(), 'plugged in');
  }
  await untilGranted(c, 'after the last plug');
  const failed = reasons.filter((r) => r.startsWith('it failed a challenge'));
  t.true(failed.length >= 2, `each silent pull is announced: ${JSON.stringify(reasons)}`);
});

test.serial('fault unplugged (in-process): connections close, the dongle is absent; plugged, it is back', async (t) => {
  const r = await faultRig(t, { timeoutMs: 1000 });
  r.dongle.setFaults({ unplugged: true });
  const refusal = await untilRefused(r.c, 'with the dongle unplugged');
  t.is(refusal.code, 'DONGLE_ABSENT');
  t.regex(r.absent[0] ?? '', /unplugged \(its connection closed\)|closed/);
  r.dongle.setFaults({ unplugged: false });
  await untilGranted(r.c, 'after plugging it back');
  t.pass();
});

test.serial('serial:auto finds the dongle by its /dev/serial/by-id link and says so when there is none', async (t) => {
  const { symlinkSync } = await import("node:fs");
  const { parseConfig } = await import('../../src/config.ts');
  const { dongleOpener } = await import('../../src/dongle/open.ts');
  const dir = tempDir('licd-dongle-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const byId = join(dir, 'by-id');
  mkdirSync(byId);
  const config = parseConfig({}, { LICD_DONGLE: 'serial:auto' }, dir);
  t.like(config.dongle, { transport: 'serial', path: 'auto' });
  // Nothing plugged in: the error says what was looked for.
  const none = await dongleOpener(config, { list: async () => [], dir: byId });
  await t.throwsAsync(none.open(), { message: /no licd dongle found on USB serial \(looked for USB id 1209:0001 and \/dev\/serial\/by-id\/usb-licd_licd_dongle_\*\)/ });
  // A dongle appears: udev's by-id link points at its tty (here one end of a pty pair).
  const pty = await ptyPair(t, dir);
  const emu = await startEmulator(t, { pty: pty.device }, join(dir, 'dongle.json'));
  symlinkSync(pty.host, join(byId, `usb-licd_licd_dongle_${emu.serial}-if00`));
  const opener = await dongleOpener(config, { list: async () => [], dir: byId });
  const link = await opener.open();
  t.is((await link.info()).serial, emu.serial);
  await link.close();
});
