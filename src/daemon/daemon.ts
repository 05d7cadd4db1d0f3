/**
 * The composition root: the one place that wires config, dongle, entitlement, store, service,
 * broker and MQTT link together. No module-level singletons: tests build daemons in-process with
 * the parts they choose.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config.ts';
import { fromHex, toBase64url, toHex, utf8 } from '../core/bytes.ts';
import { LicdError } from '../core/errors.ts';
import { readJsonFile } from '../files.ts';
import { verifyEntitlement, type Entitlement } from '../core/entitlement.ts';
import type { Lease, Mutation } from '../core/model.ts';
import { systemClock, type Clock, type DongleIdentity, type Ed25519, type Random, type StateStore } from '../core/ports.ts';
import { META_REVOCATIONS, restoredEnd, SeatTable } from '../core/seats.ts';
import { LicenseService, type Log } from '../core/service.ts';
import { FORMATS, parseEnvelope, verifyEnvelope, type SignedEnvelope } from '../core/signed.ts';
import { GrantBatcher, sealGrants, type GrantEnvelope } from '../core/grant-batch.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../core/trust.ts';
import { TIME_DOMAIN } from '../../firmware-bridge/protocol/signing.ts';
import { Borrowing, type BorrowLimits } from '../core/borrowing.ts';
import {
  ClockGuard,
  CounterGate,
  META_CLOCK,
  META_CLOCK_GAP,
  META_COUNTER,
  bridgeGap,
  describeMs,
  parseClockGap,
  type ClockGap,
  META_COUNTER_SERIAL,
  META_QUARANTINE,
  applyRelease,
  judgeCounter,
  parseReleaseBody,
  parseQuarantine,
  quarantineFor,
  serializeQuarantine,
  type Quarantine,
} from '../core/integrity.ts';
import { reconcileMeta, reconcileRecords } from '../core/reconcile.ts';
import { EventBus } from '../core/events.ts';
import { sessionsEndedWhileStopped } from '../core/history.ts';
import { UsageHistory } from '../history/history.ts';
import { AlertMonitor } from '../alerts/monitor.ts';
import { AlertNotifier } from '../alerts/notify.ts';
import { addMonitoringRoutes, type Health } from '../http/monitoring.ts';
import { HttpServer } from '../http/server.ts';
import { startWeb } from '../web/web.ts';
import { LicdMetrics } from '../metrics/licd-metrics.ts';
import { Sharing } from '../core/sharing.ts';
import { sealToken } from '../core/tokens.ts';
import { nodeEd25519, systemRandom } from '../crypto/ed25519.ts';
import { sha256HolderHash } from '../crypto/holder.ts';
import { DongleManager, type DongleLink, type PresenceEvent } from '../dongle/manager.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { ServerLink } from '../mqtt/server-link.ts';
import { certFingerprint, ensureSelfSignedCert, type TlsTrust } from '../mqtt/tls.ts';
import { SteadyClock } from './steady-clock.ts';
import { readPasswordFile } from '../mqtt/passwd.ts';
import { LevelStore } from '../store/level-store.ts';
import { AuditLog } from '../audit/audit-log.ts';
import { sha256, sha256Bytes } from '../crypto/sha256.ts';
import { demoEntitlementBody, devVendorKey, issueEntitlement, writeFileAtomic } from '../vendor.ts';
import { ACTIVATION_DOMAIN, activationNonceOf, activationRequestBody, describeOrder, judgeLicense, META_LICENSE } from '../core/activation.ts';
import { boxIdentity } from '../activation/box.ts';
import { activateUrl, postActivation } from '../activation/client.ts';
import { chooseStartLicense, licenseRecordOf, recordMutation } from '../activation/licenses.ts';
import { announce, type Announcer } from '../discovery/mdns.ts';
import { announcementOf } from '../discovery/plan.ts';
import { FailoverPart, loadFailoverEntitlement } from './failover.ts';
import { META_FAILOVER, parseFailoverUsage } from '../core/failover.ts';
import { isoTime } from '../core/iso-time.ts';

export const LICD_VERSION = '0.1.0';

export interface DaemonDeps {
  config: Config;
  log: Log;
  /** Opens the configured dongle; main.ts builds it from config.dongle (firmware-bridge). */
  openDongle: () => Promise<DongleLink>;
  clock?: Clock;
  random?: Random;
  ed?: Ed25519;
  /** A store to use instead of LevelDB under dataDir/db. */
  store?: StateStore;
  /** Tolerance of the steady clock for steps of the system clock, ms (default 2000). */
  clockStepToleranceMs?: number;
}

export interface Daemon {
  config: Config;
  service: LicenseService;
  borrowing: Borrowing;
  dongle: DongleManager;
  entitlement: Entitlement;
  /** The vendor key the entitlement verified with (clients verify tokens with it). */
  vendorPublicKey: Uint8Array;
  /** The broker URL clients use. */
  url: string;
  broker: EmbeddedBroker | null;
  link: ServerLink;
  store: StateStore;
  /** What happens to seats, for the parts that keep records of it (src/core/events.ts): add a sink. */
  events: EventBus;
  /** Usage history and reports (docs/history.md). */
  history: UsageHistory;
  /** The tamper-evident audit log (docs/audit.md). */
  audit: AuditLog;
  /** Prometheus metrics (docs/monitoring.md). */
  metrics: LicdMetrics;
  /** Active alerts (src/alerts/monitor.ts). */
  alerts: AlertMonitor;
  /** licd's HTTP server (/metrics, /healthz), when http.enabled. */
  http: { url: string } | null;
  /** The sharing policy (docs/policy.md): reload() reads policy.file again (SIGHUP). */
  sharing: Sharing;
  /** Credentials of the embedded broker's admin user. */
  adminCredentials: { username: string; password: string } | null;
  /** The broker's TLS certificate fingerprint; url when licd runs the listener; made: at this start. */
  tls: { fingerprint: string; url: string | null; made: boolean } | null;
  chain(): { entitlement: unknown; delegation: SignedEnvelope | null };
  stop(): Promise<void>;
}

function readSecret(path: string, random: Random, create: boolean): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  if (!create) throw new LicdError('CONFIG_INVALID', `password file ${path} does not exist; create it with the daemon's broker password, or fix mqtt.passwordFile`);
  const secret = toBase64url(random.bytes(18));
  writeFileAtomic(path, secret + '\n', 0o600);
  return secret;
}

export async function startDaemon(deps: DaemonDeps): Promise<Daemon> {
  const { config, log } = deps;
  // Lease and borrow lifetimes follow the monotonic clock while running (docs/threat-model.md).
  // An injected clock (tests) is used as it is.
  const steady = deps.clock ? null : new SteadyClock({ toleranceMs: deps.clockStepToleranceMs ?? 2000 });
  const clock: Clock = deps.clock ?? steady ?? systemClock;
  const random = deps.random ?? systemRandom;
  const ed = deps.ed ?? nodeEd25519();
  mkdirSync(config.dataDir, { recursive: true });
  const cleanups: Array<() => Promise<void>> = [];
  const fail = async (e: unknown): Promise<never> => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    throw e;
  };

  try {
    // 1. The dongle: its identity binds the license file.
    let dongleView: DongleIdentity | null = null;
    const dongle = new DongleManager({ open: deps.openDongle, expected: null, presenceIntervalMs: config.dongle.presenceIntervalMs, ed, random, clock, log });
    cleanups.push(() => dongle.stop());
    dongleView = await dongle.start();

    // A trusted time: a dongle with a battery-backed clock (TIME) bounds the host's clock, at
    // start and every so often (docs/threat-model.md, "Clock steps").
    const readDongleTime = async (): Promise<number | null> => {
      const cur = dongle.current();
      if (!cur || !cur.link.time) return null;
      const nonce = random.bytes(16);
      const r = await cur.link.time(nonce);
      if (!r) return null;
      const msg = new Uint8Array(24);
      new DataView(msg.buffer).setBigUint64(0, BigInt(r.ms));
      msg.set(nonce, 8);
      if (!ed.verify(cur.identity.publicKey, dongleSignedBytes(TIME_DOMAIN, msg, cur.identity.emulated), r.signature)) {
        throw new Error(`the dongle's time ${new Date(r.ms).toISOString()} is not signed by the dongle (a dongle that lies)`);
      }
      return r.ms;
    };
    let dongleHasClock: boolean | null = null;
    const trustDongleTime = async (): Promise<number> => {
      if (!steady || dongleHasClock === false) return 0;
      let t: number | null;
      try {
        t = await readDongleTime();
      } catch (e) {
        log.warn("could not read the dongle's clock; keeping the time licd has", { error: String(e) });
        return 0;
      }
      if (t === null) {
        if (dongleHasClock === null && dongle.current()) log.info('the dongle has no clock: licd follows the system clock (steps it sees while running are absorbed)');
        if (dongle.current()) dongleHasClock = false;
        return 0;
      }
      dongleHasClock = true;
      const delta = steady.trust('dongle', t);
      const wallOff = t - Date.now();
      if (Math.abs(wallOff) > steady.toleranceMs) log.warn(`the system clock is ${describeMs(Math.abs(wallOff))} ${wallOff < 0 ? 'ahead of' : 'behind'} the dongle's clock: licd uses the dongle's time`, { dongle: new Date(t).toISOString() });
      return Math.abs(delta) > steady.toleranceMs ? delta : 0;
    };
    if (dongleView) {
      const delta = await trustDongleTime();
      if (delta !== 0 && steady) steady.shift(delta);
    }

    // 2. The entitlement, verified against the vendor key and the dongle.
    let vendorPublicKey: Uint8Array;
    let madeDemo = false;
    let envelope: unknown;
    if (config.development) {
      const key = devVendorKey(join(config.dataDir, 'dev', 'vendor.key'), ed, random);
      vendorPublicKey = fromHex(key.publicKey);
      if (!dongleView) throw new LicdError('DONGLE_ABSENT', `development mode needs the dongle at start (it checks or issues the demo license for it): ${dongle.reason}`);
      const file = config.entitlementFile ?? join(config.dataDir, 'dev', 'entitlement.json');
      envelope = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
      let usable = false;
      madeDemo = false;
      if (envelope) {
        try {
          verifyEntitlement(envelope, { vendorPublicKey, dongle: dongleView, now: clock.now(), ed });
          usable = true;
        } catch {
          usable = false;
        }
      }
      if (!usable) {
        envelope = issueEntitlement(demoEntitlementBody(dongleView, clock.now()), key, ed);
        madeDemo = true;
        writeFileAtomic(file, JSON.stringify(envelope, null, 2) + '\n');
        log.warn('DEVELOPMENT MODE: made a development vendor key and a demo entitlement (not a license)', { file });
      }
    } else {
      vendorPublicKey = fromHex(config.vendorPublicKey!);
      envelope = readJsonFile(config.entitlementFile!, 'the license file (entitlementFile)', { code: 'ENTITLEMENT_INVALID', fix: 'give the file from the vendor in entitlementFile' });
    }
    // Without the dongle at start, the license file still says which dongle to wait for.
    const named = peekDongle(envelope);
    let entitlement = verifyEntitlement(envelope, {
      vendorPublicKey,
      dongle: dongleView ?? named,
      now: clock.now(),
      ed,
    });
    const licenseFile = config.entitlementFile ?? join(config.dataDir, 'dev', 'entitlement.json');
    dongle.setExpected({ serial: entitlement.dongle.serial, publicKey: entitlement.dongle.publicKey });
    if (!dongleView) log.warn('starting without the dongle: no seats are granted until it is plugged in', { expected: entitlement.dongle.serial, reason: dongle.reason });
    // A failover box (docs/scale-out.md): the vendor-signed right to serve another box's seats, bound to this dongle.
    const failoverEntitlement = loadFailoverEntitlement(config, { vendorPublicKey, dongle: entitlement.dongle, now: clock.now(), ed });

    // 3. State.
    const store = deps.store ?? (await LevelStore.open(join(config.dataDir, 'db')));
    cleanups.push(() => store.close());
    // Lease and borrow ids go on command lines (licctl lease revoke ID): one that starts with "-"
    // would be read as an option, so such an id is drawn again (CI hit "unknown option -9").
    const idBytes = (): string => {
      for (;;) {
        const id = toBase64url(random.bytes(9));
        if (!id.startsWith('-')) return id;
      }
    };
    const stored = await store.load();
    // Leases renewed by heartbeats that wrote nothing are kept as long as their holders may have been told.
    const loadedAt = clock.now();
    const loaded = { ...stored, leases: stored.leases.map((l) => restoredEnd(l, loadedAt)) };
    // The license installed last (docs/activation.md): a license file older than it, put back
    // while licd was stopped, is refused and the installed one served from the database.
    const startLicense = chooseStartLicense({ loaded: loaded.meta.get(META_LICENSE), file: entitlement, madeDemo, vendorPublicKey, dongle: dongleView ?? named, now: clock.now(), ed, log, licenseFile });
    entitlement = startLicense.entitlement;
    let licenseRecord = startLicense.record;
    const table = new SeatTable(entitlement.features, idBytes);
    // A clock far past the last time seen (its high-water mark): a long stop, or a clock set
    // forward while stopped. Without a trusted time, what only the gap would end is kept.
    const hwmMeta = loaded.meta.get(META_CLOCK) as { hwm?: number; last?: number } | undefined;
    const lastSeen = typeof hwmMeta?.last === 'number' ? hwmMeta.last : hwmMeta?.hwm;
    let clockGap: ClockGap | null = parseClockGap(loaded.meta.get(META_CLOCK_GAP));
    let startLeases = loaded.leases;
    let startBorrows = loaded.borrows;
    const gapMutations: Mutation[] = [];
    if (typeof lastSeen === 'number' && !steady?.trusted) {
      const bridged = bridgeGap(loaded.leases, loaded.borrows, lastSeen, clock.now(), config.clock.toleranceSeconds * 1000);
      if (bridged.gap) {
        startLeases = bridged.leases;
        startBorrows = bridged.borrows;
        if (bridged.gap.borrows.length > 0) {
          // Gaps add up until an admin confirms the clock.
          clockGap = { ...bridged.gap, borrows: [...(clockGap?.borrows ?? []), ...bridged.gap.borrows] };
          for (const b of startBorrows) if (bridged.gap.borrows.some((k) => k.id === b.id)) gapMutations.push({ kind: 'borrow.put', borrow: b });
          gapMutations.push({ kind: 'meta.put', key: META_CLOCK_GAP, value: clockGap });
        }
        for (const l of startLeases) if (l.expiresAt > clock.now() && !loaded.leases.includes(l)) gapMutations.push({ kind: 'lease.put', lease: l });
        log.warn('the clock is far past the last time licd saw: kept what only the gap would end', {
          gap: describeMs(bridged.gap.gapMs),
          lastSeen: new Date(lastSeen).toISOString(),
          borrowsKept: bridged.gap.borrows.length,
          leasesGivenOneTtl: bridged.keptLeases,
        });
      }
    }
    const restored = table.restore(startLeases, startBorrows, clock.now());
    table.restoreRevocations(loaded.meta.get(META_REVOCATIONS), clock.now());
    // The history's session records of what ended while licd was stopped go in the same batch.
    const endedWhileStopped = config.history.enabled ? sessionsEndedWhileStopped(restored.result.dropped, restored.result.droppedBorrows) : [];
    await store.commit([...gapMutations, ...restored.mutations, ...startLicense.mutations, ...endedWhileStopped]);
    for (const problem of table.checkInvariants(clock.now())) {
      log.error('the stored state breaks a seat invariant (no new seats are granted for it until it is back within the count)', { problem });
    }
    log.info('state loaded', {
      leases: loaded.leases.length - restored.result.dropped.length - restored.result.orphans.length,
      borrows: loaded.borrows.length - restored.result.droppedBorrows.length,
      droppedExpired: restored.result.dropped.length,
    });

    // 4. The session key, delegated by the dongle whenever it (re)appears.
    const sessionSeed = random.bytes(32);
    const sessionKey = ed.publicKey(sessionSeed);
    let delegation: SignedEnvelope | null = null;
    // The window starts once per session key, so a delegation re-signed when the dongle comes back
    // (or before the window ends) still covers every grant and token issued under this key.
    let notBefore = clock.now() - 5 * 60_000;
    const DELEGATION_DAYS = 30;
    let delegationEnds = 0;
    const delegate = async (identity: DongleIdentity, link: DongleLink) => {
      const notAfter = clock.now() + DELEGATION_DAYS * 86400_000;
      const body = utf8(JSON.stringify(delegationBody({ sessionKey, dongleSerial: identity.serial, emulated: identity.emulated, notBefore, notAfter })));
      const sig = await link.sign(DELEGATION_DOMAIN, body);
      delegation = delegationEnvelope(body, sig, toBase64url);
      delegationEnds = notAfter;
    };

    // Clock integrity: the high-water mark of time survives restarts.
    const clockMeta = loaded.meta.get(META_CLOCK) as { hwm?: number } | undefined;
    const clockGuard = new ClockGuard(typeof clockMeta?.hwm === 'number' ? clockMeta.hwm : clock.now(), config.clock.toleranceSeconds * 1000);
    let persistedHwm = clockGuard.highWater;
    const failover = failoverEntitlement
      ? new FailoverPart(failoverEntitlement, { clock, table, clockGuard, store, log, own: () => entitlement.features }, parseFailoverUsage(loaded.meta.get(META_FAILOVER)))
      : null;

    // Anti-rollback: borrow changes step the dongle's counter; the gate is made when the dongle
    // is first present and its counter judged against the database.
    let gate: CounterGate | null = null;
    const stepCounter = async (): Promise<bigint> => {
      const cur = dongle.current();
      if (!cur) throw new Error('the dongle is absent');
      const nonce = random.bytes(16);
      const r = await cur.link.counterIncrement(nonce);
      const msg = new Uint8Array(24);
      new DataView(msg.buffer).setBigUint64(0, r.value);
      msg.set(nonce, 8);
      if (!ed.verify(cur.identity.publicKey, dongleSignedBytes('counter', msg, cur.identity.emulated), r.signature)) {
        throw new Error(`the counter step to ${r.value} is not signed by the dongle (a dongle that lies)`);
      }
      return r.value;
    };
    const readCounter = async (): Promise<bigint> => {
      const cur = dongle.current();
      if (!cur) throw new Error('the dongle is absent');
      return (await cur.link.info()).counter;
    };
    const gateProxy = {
      get active() {
        return gate?.active ?? false;
      },
      commit: (m: Parameters<CounterGate['commit']>[0], o: Parameters<CounterGate['commit']>[1] = {}) =>
        gate
          ? gate.commit(m, o)
          : o.step === false
            ? store.commit(m)
            : Promise.reject(new LicdError('DONGLE_ABSENT', 'the dongle has not been seen since licd started, so no borrow can be bound to its counter; plug it in (licctl status shows why it is absent)')),
    } as unknown as CounterGate;

    // The broker's TLS certificate: made at first start for the embedded broker (never shipped
    // in an image), read for an external one; its fingerprint goes into the server state.
    const tlsMaterial = loadTlsMaterial(config, log);
    const tlsView: { fingerprint: string; port?: number } | undefined = tlsMaterial ? { fingerprint: tlsMaterial.fingerprint } : undefined;

    let link!: ServerLink;
    const events = new EventBus((i, e) => log.error('an event sink failed; the request goes on', { sink: i, error: String((e as Error)?.stack ?? e) }));
    const service = new LicenseService({
      ...(tlsView ? { tls: tlsView } : {}),
      events,
      ...(failover ? { failover: failover.gate } : {}),
      counterGate: gateProxy,
      clockGuard,
      clock,
      store,
      table,
      entitlement,
      policy: config.leases,
      log,
      version: LICD_VERSION,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      signGrant: (lease: Lease) => grant(lease),
      holderHash: sha256HolderHash,
      requireLogin: config.identity.requireLogin,
      onDirty: () => link?.scheduleFlush(),
      notify: (clientId, notice) => link?.notify(clientId, notice),
    });
    // The audit log: a sink of the events, its head read back from the store (docs/audit.md).
    const audit = await AuditLog.open({
      store,
      service,
      clock,
      log,
      config: config.audit,
      sha256,
      sealer: () => (delegation ? { sessionKey: toHex(sessionKey), sign: (m: Uint8Array) => ed.sign(sessionSeed, m), delegation, entitlement: entitlement.envelope } : null),
    });
    cleanups.push(async () => audit.close());
    if (config.audit.enabled) events.add(audit.chain);
    // Checkouts that waited for a seat when licd stopped, back in their old order (docs/policy.md, "Durability").
    const storedWaiters: Array<[string, unknown]> = [];
    for await (const kv of store.scan('queue')) storedWaiters.push(kv);
    await service.restoreQueue(storedWaiters, clock.now());
    // The grants asked for in one event-loop turn (those of one group commit: the store resolves a
    // synced batch at once) share one signature over a Merkle tree of them (docs/tokens.md).
    const grants = new GrantBatcher({
      seal: (bodies) => sealGrants(bodies, sessionSeed, ed, sha256Bytes),
      defer: (run) => setImmediate(run),
    });
    // The body is made now, so issuedAt is when the grant is made; the signature follows this turn.
    const grant = (lease: Lease): Promise<GrantEnvelope> =>
      grants.sign({
        lease: lease.id,
        feature: lease.feature,
        count: lease.count,
        user: lease.user,
        host: lease.host,
        clientId: lease.clientId,
        issuedAt: isoTime(clock.now()),
        until: isoTime(lease.expiresAt),
        // A feature only the primary has is granted under the failover entitlement (docs/scale-out.md).
        entitlement: failover && failover.plan.covers(lease.feature) && !entitlement.features.some((f) => f.name === lease.feature) ? failover.entitlement.id : entitlement.id,
        sessionKey: toHex(sessionKey),
      });

    const borrowing = new Borrowing({
      service,
      entitlement,
      policy: config.borrow,
      limits: (loaded.meta.get('borrow-limits') as BorrowLimits | undefined) ?? config.borrow.limits ?? {},
      newId: idBytes,
      ed,
      signToken: (t) => (delegation ? sealToken(t, sessionSeed, ed) : null),
      chain: () => ({ entitlement: entitlement.envelope as SignedEnvelope, delegation }),
      sessionKeyHex: toHex(sessionKey),
      guard: (now) => {
        service.observeClock(now);
        clockGuard.refuse('borrowing');
      },
      ...(failover ? { admit: failover.gate.borrow } : {}),
    });
    // Usage history (docs/history.md): a sink of the seat events, counting from the seats restored.
    const history = new UsageHistory({
      service,
      store,
      clock,
      log,
      config: config.history,
      licensed: (f) => table.license(f)?.seats ?? 0,
      leases: () => table.allLeases(),
      borrows: () => table.allBorrows(),
      waiting: () => service.waiters.all().map((w) => ({ feature: w.req.feature, user: w.req.user, host: w.req.host, count: w.req.count, since: w.since })),
      limitGroups: () => Object.fromEntries(Object.entries(borrowing.currentLimits().groups ?? {}).map(([g, r]) => [g, r.members])),
      // Its flush timer looks every few seconds: a gap of an hour is a clock step or a suspend, not use.
      maxGapMs: 3_600_000,
    });
    if (config.history.enabled) {
      events.add(history.sink);
      await history.start(table.featureNames());
      cleanups.push(() => history.stop());
    }
    // The sharing policy (docs/policy.md): an invalid policy file stops the start (CONFIG_INVALID), naming its line.
    const sharing = new Sharing(service, {
      name: config.policy.file,
      read: () => (existsSync(config.policy.file) ? readFileSync(config.policy.file, 'utf8') : null),
      write: (text) => writeFileAtomic(config.policy.file, text, 0o644),
    });
    sharing.load();
    const gapWarning = (g: ClockGap) => {
      const until = Math.max(...g.borrows.map((k) => table.getBorrow(k.id)?.expiresAt ?? 0));
      service.setWarning(
        'clock-gap',
        `licd started ${describeMs(g.gapMs)} after the last time it saw (${new Date(g.highWater).toISOString()}): ${g.borrows.length} borrow(s) that only this gap would end are kept, their seats held until ${new Date(until).toISOString()}, in case the clock was set forward while licd was stopped. If the clock is right, an admin confirms it with licctl clock accept and those seats come free`,
      );
    };
    if (clockGap && clockGap.borrows.some((k) => table.getBorrow(k.id))) gapWarning(clockGap);
    service.register('clock.accept', true, async (ctx) => {
      const before = clockGuard.highWater;
      clockGuard.accept(ctx.now);
      // Borrows kept only for a gap at start end now, if the clock is right (the admin says so).
      const released: string[] = [];
      for (const k of clockGap?.borrows ?? []) {
        const b = table.getBorrow(k.id);
        if (b && b.tokenId === k.token && b.expiresAt > k.until && k.until <= ctx.now) {
          const change = table.returnBorrow(b.id);
          await service.commit(change, [b.feature], { events: [{ type: 'borrow.ended', at: ctx.now, borrow: change.result, reason: 'expired' }] });
          released.push(b.id);
          log.info('borrow ended: the admin confirmed the clock, and its token ended before now', { borrow: b.id, feature: b.feature, user: b.user, until: new Date(k.until).toISOString() });
        }
      }
      clockGap = null;
      await store.commit([
        { kind: 'meta.put', key: META_CLOCK, value: { hwm: ctx.now, last: ctx.now } },
        { kind: 'meta.put', key: META_CLOCK_GAP, value: { cleared: true } },
      ]);
      persistedHwm = ctx.now;
      service.observeClock(ctx.now);
      service.setWarning('clock-gap', null);
      service.setWarning('clock-step', null);
      log.warn('clock accepted by admin', { admin: ctx.clientId, highWaterWas: new Date(before).toISOString(), now: new Date(ctx.now).toISOString(), released });
      return { highWater: new Date(ctx.now).toISOString(), was: new Date(before).toISOString(), released };
    });
    if (service.observeClock() === 0) {
      persistedHwm = clockGuard.highWater;
      await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: persistedHwm, last: clock.now() } }]);
    }

    let quarantine: Quarantine | null = null;
    const applyQuarantine = (q: Quarantine) => {
      const now = clock.now();
      quarantine = q;
      const live = q.holds.filter((h) => h.until > now);
      for (const h of live) table.setHold(h.feature, h.seats, h.until);
      service.setQuarantineBinding(q.counter !== undefined ? { dongleSerial: q.dongleSerial ?? entitlement.dongle.serial, counter: q.counter, reason: q.reason } : null);
      if (live.length > 0) {
        const until = Math.max(...live.map((h) => h.until));
        const release = q.counter !== undefined ? `; the vendor can lift it with a release for dongle ${q.dongleSerial ?? entitlement.dongle.serial} counter ${q.counter} (licctl quarantine release FILE)` : '';
        service.setWarning('quarantine', `quarantine: ${q.reason}. Seats that could still be out on borrow are held until ${new Date(until).toISOString()} (${live.map((h) => `${h.feature} ${h.seats}`).join(', ')})${release}`);
      } else service.setWarning('quarantine', null);
      service.markAllDirty();
    };
    let storedQuarantine = parseQuarantine(loaded.meta.get(META_QUARANTINE));
    if (storedQuarantine) applyQuarantine(storedQuarantine);
    // A vendor-signed release, bound to the dongle serial and the counter value the quarantine was
    // set at, lifts its holds (docs/threat-model.md); a new entitlement alone does not.
    service.register('quarantine.release', true, async (ctx, f) => {
      const json = verifyEnvelope(f.raw('release'), FORMATS.quarantineRelease, vendorPublicKey, ed, 'RELEASE_INVALID', 'vendor');
      const body = parseReleaseBody(json);
      const { left, lifted } = applyRelease(body, quarantine, entitlement.dongle.serial, ctx.now);
      await store.commit([{ kind: 'meta.put', key: META_QUARANTINE, value: serializeQuarantine(left!) }]);
      for (const h of lifted) table.setHold(h.feature, 0, 0);
      service.note({ type: 'quarantine', at: ctx.now, action: 'released', reason: `a vendor release (nonce ${body.nonce}, counter ${body.counter})`, holds: lifted.map((h) => ({ ...h, until: ctx.now })), by: ctx.clientId });
      applyQuarantine(left!);
      log.warn('quarantine released by a vendor release', { admin: ctx.clientId, lifted, nonce: body.nonce, counter: body.counter });
      return { released: lifted, remaining: left!.holds.filter((h) => h.until > ctx.now).map((h) => ({ feature: h.feature, seats: h.seats, until: new Date(h.until).toISOString() })) };
    });
    if (startLicense.refused) service.setWarning('license', startLicense.refused);

    // Activation and licenses at runtime (docs/activation.md).
    const activationRequest = async (): Promise<{ request: SignedEnvelope; nonce: string; serial: string; counter: string }> => {
      const cur = dongle.current();
      if (!cur) throw new LicdError('DONGLE_ABSENT', `an activation request is signed by the dongle, and it is absent (${dongle.reason}); plug it in and try again`);
      const info = await cur.link.info();
      const nonce = toBase64url(random.bytes(16));
      const body = utf8(
        JSON.stringify(
          activationRequestBody({
            dongle: cur.identity,
            counter: info.counter,
            box: boxIdentity(),
            nonce,
            now: clock.now(),
            installed: { id: licenseRecord.id, issuedAt: licenseRecord.issuedAt, sequence: licenseRecord.sequence },
          }),
        ),
      );
      const sig = await cur.link.sign(ACTIVATION_DOMAIN, body);
      return { request: { format: FORMATS.activationRequest, body: toBase64url(body), sig: toBase64url(sig) }, nonce, serial: cur.identity.serial, counter: info.counter.toString() };
    };
    // One install at a time: each is judged against the one installed before it.
    let installs: Promise<unknown> = Promise.resolve();
    const installLicense = (value: unknown, admin: string, expectNonce?: string) => {
      const run = installs.then(() => installNow(value, admin, expectNonce));
      installs = run.catch(() => {});
      return run;
    };
    const installNow = async (value: unknown, admin: string, expectNonce?: string) => {
      const cur = dongle.current();
      const next = verifyEntitlement(value, { vendorPublicKey, dongle: cur?.identity ?? entitlement.dongle, now: clock.now(), ed });
      if (expectNonce !== undefined && activationNonceOf(next) !== expectNonce) {
        throw new LicdError('ACTIVATION_FAILED', `the activation service answered with license ${next.id}, which does not answer this box's request (another nonce); check activation.url names the vendor's service`, { reason: 'nonce' });
      }
      const order = licenseRecordOf(next, clock.now());
      const was = { id: licenseRecord.id, issuedAt: new Date(licenseRecord.issuedAt).toISOString(), sequence: licenseRecord.sequence };
      const summary = { id: next.id, issuedAt: new Date(next.issuedAt).toISOString(), sequence: order.sequence, customer: next.customer };
      if (judgeLicense(order, licenseRecord) === 'same') return { installed: summary, was, unchanged: true, added: [], removed: [], changed: [], ended: [], file: licenseFile };
      // The table, the record and a counter step in one batch: the install is bound to the counter.
      const r = await service.replaceEntitlement(next, [recordMutation(order)], admin);
      licenseRecord = order;
      entitlement = next;
      borrowing.setEntitlement(next);
      failover?.licensesChanged();
      service.setWarning('license', null);
      let fileWarning: string | undefined;
      try {
        writeFileAtomic(licenseFile, JSON.stringify(value, null, 2) + '\n');
      } catch (e) {
        fileWarning = `the license file ${licenseFile} could not be written (${(e as NodeJS.ErrnoException).code ?? e}); licd serves the new license from its database and writes it to the file at its next start`;
        log.warn(fileWarning);
      }
      link?.publishChain();
      log.warn('license installed at runtime', { admin, license: describeOrder(order), was: was.id, added: r.added, removed: r.removed, changed: r.changed, leasesEnded: r.ended.length });
      return {
        installed: summary,
        was,
        unchanged: false,
        added: r.added,
        removed: r.removed,
        changed: r.changed,
        ended: r.ended.map((x) => ({ lease: x.lease.id, feature: x.lease.feature, user: x.lease.user, host: x.lease.host })),
        file: licenseFile,
        ...(fileWarning ? { warning: fileWarning } : {}),
      };
    };
    service.register('activation.request', true, async () => {
      const r = await activationRequest();
      log.info('activation request made', { dongle: r.serial, counter: r.counter });
      return { request: r.request, dongle: r.serial, counter: r.counter };
    });
    service.register('license.install', true, async (ctx, f) => installLicense(f.raw('license'), ctx.clientId));
    service.register('activation.online', true, async (ctx, f) => {
      const url = f.optString('url', { max: 2048, pattern: /^https?:\/\/[^\s/]+/, patternHelp: 'an http:// or https:// URL' }) ?? config.activation.url;
      if (!url) {
        throw new LicdError('CONFIG_INVALID', "no activation service is set: give its URL in the config (activation.url) or LICD_ACTIVATION_URL and restart licd, or activate by file (licctl activate request --out FILE)", {
          field: 'activation.url',
        });
      }
      const r = await activationRequest();
      const license = await postActivation(url, r.request);
      return { url: activateUrl(url), ...(await installLicense(license, ctx.clientId, r.nonce)) };
    });

    const counterMeta = new Map(loaded.meta);
    const judge = async (identity: DongleIdentity) => {
      const verdict = gate ? (identity.counter > gate.value + (gate.uncertain ? 1n : 0n) ? { kind: 'restored' as const, stored: gate.value, dongle: identity.counter } : { kind: 'ok' as const }) : judgeCounter(counterMeta, identity.counter, identity.serial);
      const q = quarantineFor(verdict, entitlement.features, table.allBorrows(), clock.now(), identity.serial);
      const serialMeta = counterMeta.get(META_COUNTER_SERIAL) === identity.serial ? [] : [{ kind: 'meta.put' as const, key: META_COUNTER_SERIAL, value: identity.serial }];
      if (q) {
        log.warn('QUARANTINE: seats that could still be out on borrow are held', { reason: q.reason, holds: q.holds.map((h) => ({ ...h, until: new Date(h.until).toISOString() })) });
        await store.commit([
          { kind: 'meta.put', key: META_QUARANTINE, value: serializeQuarantine(q) },
          { kind: 'meta.put', key: META_COUNTER, value: identity.counter.toString() },
          ...serialMeta,
        ]);
        storedQuarantine = q;
        service.note({ type: 'quarantine', at: clock.now(), action: 'set', reason: q.reason, holds: q.holds });
        applyQuarantine(q);
      } else if (verdict.kind !== 'ok' || serialMeta.length > 0) {
        await store.commit([{ kind: 'meta.put', key: META_COUNTER, value: identity.counter.toString() }, ...serialMeta]);
        if (verdict.kind === 'adopt') log.info('counter adopted', { why: verdict.why, counter: identity.counter.toString() });
      }
      // A database behind the dongle's counter may also hold an older license record (docs/threat-model.md).
      if (verdict.kind === 'restored' || verdict.kind === 'wiped') {
        service.setWarning(
          'license',
          `the database is behind the dongle's counter (restored or wiped), so licd cannot tell whether license ${licenseRecord.id} is the newest one installed on this box; activate again (licctl activate online, or licctl activate request) to get the current license from the vendor`,
        );
      }
      counterMeta.set(META_COUNTER_SERIAL, identity.serial);
      if (gate) gate.adopt(identity.counter);
      else gate = new CounterGate(store, stepCounter, identity.counter, readCounter);
    };

    const onPresence = async (ev: PresenceEvent) => {
      if (ev.present) {
        try {
          await judge(ev.identity);
        } catch (e) {
          log.error('could not judge the dongle counter against the database', { error: String(e) });
        }
        const cur = dongle.current();
        try {
          if (cur) await delegate(ev.identity, cur.link);
        } catch (e) {
          log.warn('dongle would not sign the session delegation', { error: String(e) });
        }
        // The dongle may have gone again while we awaited: a late "present" must not overwrite
        // the "absent" that came in between.
        const now = dongle.current();
        if (!cur || !now || now.link !== cur.link) return;
        service.setDongle({ present: true, serial: ev.identity.serial, emulated: ev.identity.emulated });
      } else {
        service.setDongle({ present: false, serial: entitlement.dongle.serial, emulated: entitlement.dongle.emulated, reason: ev.reason });
      }
      link?.publishChain();
    };
    dongle.on('change', (ev: PresenceEvent) => void onPresence(ev));
    const cur = dongle.current();
    if (cur) await onPresence({ present: true, identity: cur.identity });
    else service.setDongle({ present: false, serial: entitlement.dongle.serial, emulated: entitlement.dongle.emulated, reason: dongle.reason });

    // 4b. After a failed write the store reopens its database and makes the disk equal to what
    // was answered: the seat table in memory, once no change is between memory and disk, and the
    // counter value the dongle last gave (docs/storage.md, "When a write fails").
    let storeBrokenAt = 0;
    store.setRecovery?.({
      reconcile: async (disk) => {
        while (service.busy > 0) await service.idle();
        // Heartbeats that needed a write were refused meanwhile: a lease that was alive when writes started failing
        // and whose client has not been seen going gets one TTL from now, so the reaper does not
        // take it from a live client before its next heartbeat.
        const now = clock.now();
        for (const l of table.allLeases()) {
          if (l.disconnectedAt === null && l.expiresAt > storeBrokenAt && l.expiresAt < now + l.ttlMs) table.apply({ kind: 'lease.put', lease: { ...l, expiresAt: now + l.ttlMs } });
        }
        const fix = reconcileRecords(disk, table.allLeases(), table.allBorrows());
        if (gate && !gate.uncertain) fix.push(...reconcileMeta(disk, META_COUNTER, gate.value.toString()));
        if (disk.meta.has('borrow-limits')) fix.push(...reconcileMeta(disk, 'borrow-limits', borrowing.currentLimits()));
        return fix;
      },
      health: (h) => {
        if (!h.ok) {
          storeBrokenAt = clock.now();
          log.error(`writes to the license database fail: ${h.error.message}. Until then requests that change seats are refused with STORE_FAILED; status works`, { dir: join(config.dataDir, 'db') });
          service.setWarning('store', `store failing: ${h.error.message}. Checkouts, check-ins, borrows and heartbeats that need a write are refused (STORE_FAILED) until then; status works`);
        } else {
          log.info('writing to the license database resumed', { brokenSeconds: Math.round(h.brokenMs / 100) / 10, recordsRewritten: h.fixed });
          service.setWarning('store', null);
        }
      },
    });

    // 4c. Metrics and alerts (docs/monitoring.md).
    const metrics = new LicdMetrics({ service, version: LICD_VERSION, startedAt: Math.floor(Date.now() / 1000), alerts: () => alerts.active() });
    events.add(metrics);
    if (store instanceof LevelStore) store.onBatch = (seconds) => metrics.observeCommit(seconds);
    const notifier = new AlertNotifier({ command: config.alerts.command, webhook: config.alerts.webhook, timeoutMs: config.alerts.timeoutSeconds * 1000, log });
    const alerts = new AlertMonitor({ service, log, atLimitMinutes: config.alerts.atLimitMinutes, dongleGraceSeconds: config.leases.dongleGraceSeconds, notifier: notifier.enabled ? notifier : null, publish: (r) => link?.publishAlerts(r) });
    events.add(alerts);

    // 5. The broker and the API.
    let broker: EmbeddedBroker | null = null;
    let url: string;
    let daemonPassword: string | null;
    let admin: Daemon["adminCredentials"] = null;
    let linkUrl: string | undefined;
    let linkTrust: TlsTrust | undefined;
    if (config.mqtt.broker === 'embedded') {
      daemonPassword = toBase64url(random.bytes(18));
      const adminPassword = readSecret(config.broker.adminPasswordFile, random, true);
      admin = { username: 'admin', password: adminPassword };
      broker = await startEmbeddedBroker({
        host: config.mqtt.host,
        port: config.mqtt.port,
        allowAnonymous: config.broker.allowAnonymous,
        log,
        plain: config.broker.plain,
        tls: tlsMaterial?.key ? { host: config.broker.tls.host, port: config.broker.tls.port, cert: tlsMaterial.cert, key: tlsMaterial.key } : null,
        clientLogins: config.identity.usersFile ? readPasswordFile(config.identity.usersFile, 'identity.usersFile') : new Map(),
        users: [
          { username: config.mqtt.username, password: daemonPassword, role: 'daemon' },
          { username: 'admin', password: adminPassword, role: 'admin' },
        ],
      }).catch((e: unknown) => {
        throw listenError(e, config) ?? e;
      });
      cleanups.push(() => broker!.close());
      url = broker.url;
      if (broker.tls && tlsView) tlsView.port = broker.tls.port;
      // Without the plain listener, the daemon reaches its own broker over TLS, pinned to its own certificate.
      if (!config.broker.plain && broker.tls) {
        linkUrl = broker.tls.url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:');
        linkTrust = { fingerprint: tlsMaterial!.fingerprint };
      }
    } else {
      url = config.mqtt.url!;
      daemonPassword = config.mqtt.password ?? (config.mqtt.passwordFile ? readSecret(config.mqtt.passwordFile, random, false) : null);
      linkTrust = { fingerprint: config.mqtt.fingerprint ?? undefined, ca: config.mqtt.caFile ? readConfigFile(config.mqtt.caFile, 'mqtt.caFile') : undefined };
    }
    link = new ServerLink({ server: config.cluster.serverId, url: linkUrl ?? url, ...(linkTrust ? { tls: linkTrust } : {}), username: config.mqtt.username, password: daemonPassword, protocolVersion: config.mqtt.protocolVersion, service, log, observe: (op, seconds) => metrics.observeRequest(op, seconds), chain: () => ({ entitlement: entitlement.envelope, delegation, vendorPublicKey: toHex(vendorPublicKey), ...(failover ? { failover: failover.entitlement.envelope } : {}) }) });
    cleanups.push(() => link.close());
    await link.ready();
    if (failover) {
      failover.attach(service, link.client);
      cleanups.push(() => failover.stop());
    }
    // Waiters kept across the restart may ask again from now on (docs/policy.md, "Durability").
    service.queueWindowFrom(clock.now());
    alerts.start();
    cleanups.push(async () => alerts.stop());

    // 5a. Discovery: render nodes with no broker configured find this box by mDNS (docs/scale-out.md).
    let announcer: Announcer | null = null;
    if (config.discovery.enabled) {
      const a = announcementOf(config, { embedded: broker ? { plain: config.broker.plain ? { host: broker.host, port: broker.port } : null, tls: broker.tls } : null, fingerprint: tlsView?.fingerprint ?? null }, LICD_VERSION);
      if ('none' in a) log.info(`discovery: not announced: ${a.none}`);
      else {
        const ann = announce({ ...a.plan, ...(config.cluster.serverId ? { name: config.cluster.serverId } : {}), onError: (e) => log.warn('discovery: mDNS (UDP 5353) is not available; render nodes must be given the broker address', { error: e.message }) });
        announcer = ann;
        cleanups.push(() => ann.close());
        log.info('discovery: announced on the LAN as _licd._tcp', { server: a.plan.name, ...(a.plan.urls ? { urls: a.plan.urls.join(',') } : { mqtt: a.plan.mqttPort ?? '-', mqtts: a.plan.mqttsPort ?? '-' }) });
      }
    }

    // 5b. licd's HTTP server: /metrics and /healthz (docs/monitoring.md).
    let stopped = false;
    const health = (): Health => {
      const reasons: string[] = [];
      const failure = store instanceof LevelStore ? store.failure : null;
      if (failure) reasons.push(`the license database cannot be written: ${failure.message}`);
      const absent = service.dongleAbsentMs();
      if (absent !== null && absent > config.leases.dongleGraceSeconds * 1000) {
        reasons.push(`the license dongle is absent (${service.dongleView().reason ?? 'not answering'}) past its grace of ${config.leases.dongleGraceSeconds} s: no seat is granted or renewed until it is plugged back in`);
      }
      if (!link.client.connected) reasons.push('licd has lost its MQTT broker: clients cannot reach it');
      if (stopped) reasons.push('licd is stopping');
      return { reasons, warnings: service.serverState().warnings, version: LICD_VERSION };
    };
    let http: HttpServer | null = null;
    let httpUrl: string | null = null;
    let web: Awaited<ReturnType<typeof startWeb>> = null;
    if (config.http.enabled) {
      // HTTPS with the broker's certificate when web.https (docs/web.md).
      const httpsMaterial = !config.web.https
        ? undefined
        : config.web.certFile && config.web.keyFile
          ? { cert: readConfigFile(config.web.certFile, 'web.certFile'), key: readConfigFile(config.web.keyFile, 'web.keyFile') }
          : tlsMaterial?.key
            ? { cert: tlsMaterial.cert, key: tlsMaterial.key }
            : undefined;
      const server = new HttpServer({ host: config.http.host, port: config.http.port, log, ...(httpsMaterial ? { tls: httpsMaterial } : {}) });
      addMonitoringRoutes(server, { metrics: () => metrics.render(), health });
      web = config.web.enabled ? await startWeb({ http: server, config, broker, secure: httpsMaterial !== undefined, log }) : null;
      httpUrl = (await server.start()).url;
      http = server;
      cleanups.push(() => server.stop());
      const page = web;
      if (page) cleanups.push(() => page.close());
    }

    // 6. Tickers.
    // A step of the system clock, seen against the monotonic clock: every stored time moves by
    // it in one batch before anything is reaped, so each lease and borrow lasts its real time.
    let unsavedShift = false;
    const absorbStep = async (stepMs: number, what: string) => {
      const change = table.shift(stepMs);
      service.shiftTimes(stepMs);
      // The usage history counts nothing for the step (docs/history.md, "Clock steps").
      history.sink.shift(stepMs, clock.now());
      clockGuard.stepped(stepMs);
      steady?.shift(stepMs);
      delegationEnds += stepMs;
      if (stepMs < 0) notBefore += stepMs;
      const meta: Mutation[] = [{ kind: 'meta.put', key: META_CLOCK, value: { hwm: clockGuard.highWater, last: clock.now() } }];
      persistedHwm = clockGuard.highWater;
      if (clockGap) {
        clockGap = { ...clockGap, highWater: clockGap.highWater + stepMs, at: clockGap.at + stepMs, borrows: clockGap.borrows.map((k) => ({ ...k, until: k.until + stepMs })) };
        meta.push({ kind: 'meta.put', key: META_CLOCK_GAP, value: clockGap });
      }
      if (storedQuarantine) {
        storedQuarantine = { ...storedQuarantine, since: storedQuarantine.since + stepMs, holds: storedQuarantine.holds.map((h) => ({ ...h, until: h.until + stepMs })) };
        meta.push({ kind: 'meta.put', key: META_QUARANTINE, value: serializeQuarantine(storedQuarantine) });
      }
      const at = new Date(clock.now()).toISOString();
      const size = describeMs(Math.abs(stepMs));
      log.warn(`${what} stepped ${stepMs > 0 ? 'forward' : 'back'} ${size}: lease and borrow ends moved with it`, { stepMs, leases: change.result.leases, borrows: change.result.borrows, now: at });
      service.setWarning(
        'clock-step',
        `${what} stepped ${stepMs > 0 ? 'forward' : 'back'} ${size} at ${at}; lease and borrow ends were moved with it, so none ended ${stepMs > 0 ? 'early' : 'late'} (licctl clock accept clears this note)`,
      );
      try {
        await service.commit({ result: null, mutations: [...change.mutations, ...meta], undo: () => {} }, table.featureNames());
        unsavedShift = false;
      } catch {
        unsavedShift = true;
      }
      if (stepMs < 0 && delegation) {
        const cur = dongle.current();
        if (cur) await delegate(cur.identity, cur.link).catch(() => {});
        link?.publishChain();
      }
    };
    const saveAll = async () => {
      const all: Mutation[] = [...table.allLeases().map((lease) => ({ kind: 'lease.put', lease }) as const), ...table.allBorrows().map((borrow) => ({ kind: 'borrow.put', borrow }) as const)];
      try {
        await service.commit({ result: null, mutations: all, undo: () => {} }, []);
        unsavedShift = false;
      } catch {
        /* the next tick tries again */
      }
    };
    let ticking = false;
    let lastTimeCheck = performance.now();
    let lastClockSave = performance.now();
    const tick = async () => {
      if (ticking) return;
      ticking = true;
      try {
        await tickOnce();
      } finally {
        ticking = false;
      }
    };
    const tickOnce = async () => {
      if (steady) {
        const c = steady.check();
        if (c.kind === 'step') await absorbStep(c.stepMs, 'the system clock');
        else if (c.kind === 'wall-step') {
          log.warn(`the system clock stepped ${c.stepMs > 0 ? 'forward' : 'back'} ${describeMs(Math.abs(c.stepMs))}; licd keeps the dongle's time`, { stepMs: c.stepMs });
          service.setWarning('clock-step', `the system clock stepped ${c.stepMs > 0 ? 'forward' : 'back'} ${describeMs(Math.abs(c.stepMs))} at ${new Date(clock.now()).toISOString()}; licd keeps the dongle's time, so no lease or borrow moved (licctl clock accept clears this note)`);
        }
      }
      if (unsavedShift) await saveAll();
      // Every 10 minutes (and once the dongle shows up), the dongle's clock bounds ours.
      if (steady && dongleHasClock !== false && dongle.current() && performance.now() - lastTimeCheck >= (steady.trusted ? 600_000 : 0)) {
        lastTimeCheck = performance.now();
        const delta = await trustDongleTime();
        if (delta !== 0) await absorbStep(delta, "licd's clock (bound by the dongle's)");
      }
      await service.reap();
      service.observeClock();
      // The mark and the last time seen, every minute (and at stop): a restart measures its gap from it.
      if (performance.now() - lastClockSave >= 60_000) {
        lastClockSave = performance.now();
        persistedHwm = clockGuard.highWater;
        await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: persistedHwm, last: clock.now() } }]).catch(() => {});
      }
      if (table.holds(clock.now()).length === 0) service.setWarning('quarantine', null);
      // Re-sign the delegation a day before its window ends, so a long uptime never leaves
      // grants and tokens without a chain that covers them.
      const cur = dongle.current();
      if (cur && delegation && delegationEnds - clock.now() < 86400_000) {
        try {
          await delegate(cur.identity, cur.link);
          link?.publishChain();
        } catch (e) {
          log.warn('could not renew the session delegation', { error: String(e) });
        }
      }
    };
    audit.start({ version: LICD_VERSION, sessionKey: toHex(sessionKey), dongle: entitlement.dongle.serial, emulated: entitlement.dongle.emulated, license: entitlement.id });
    const reaper = setInterval(() => void tick(), 1000);
    reaper.unref?.();
    cleanups.push(async () => clearInterval(reaper));

    return {
      config,
      service,
      borrowing,
      dongle,
      get entitlement() {
        return entitlement;
      },
      vendorPublicKey,
      url,
      broker,
      link,
      store,
      events,
      history,
      audit,
      metrics,
      alerts,
      http: httpUrl !== null ? { url: httpUrl } : null,
      sharing,
      adminCredentials: admin,
      tls: tlsView ? { fingerprint: tlsView.fingerprint, url: broker?.tls?.url ?? null, made: tlsMaterial!.made } : null,
      chain: () => ({ entitlement: entitlement.envelope, delegation }),
      async stop() {
        if (stopped) return;
        stopped = true;
        service.shuttingDown();
        clearInterval(reaper);
        // The minute in progress, as a partial row (a restart within it adds to it).
        await history.stop();
        alerts.stop();
        // The web page's WebSockets are closed first (going away), then the HTTP server.
        await web?.close();
        await http?.stop();
        // The last time seen, so a restart can tell how long it was stopped.
        service.observeClock();
        await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: clockGuard.highWater, last: clock.now() } }]).catch(() => {});
        await announcer?.close();
        await failover?.stop();
        await link.close();
        // No request comes any more: what waits is written and the head sealed.
        await audit.stop();
        if (broker) await broker.close();
        await dongle.stop();
        await store.close();
      },
    };
  } catch (e) {
    return fail(e);
  }
}

function readConfigFile(file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new LicdError('CONFIG_INVALID', `${field}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e}); fix the path in the config, or the file's owner and mode`, { field });
  }
}

/**
 * The TLS certificate and key of the embedded broker (made under dataDir/tls at the first start
 * with TLS on, unless the config names its own files), or just the certificate of an external
 * broker (mqtt.brokerCertFile), whose fingerprint the server state shows.
 */
function loadTlsMaterial(config: Config, log: Log): { cert: Buffer; key: Buffer | null; fingerprint: string; made: boolean } | null {
  const t = config.broker.tls;
  if (config.mqtt.broker === 'embedded' && t.enabled) {
    const made = t.selfSigned ? ensureSelfSignedCert({ certFile: t.certFile, keyFile: t.keyFile }) : false;
    const cert = readConfigFile(t.certFile, 'broker.tls.certFile');
    const key = readConfigFile(t.keyFile, 'broker.tls.keyFile');
    let fingerprint: string;
    try {
      const x = new X509Certificate(cert);
      if (!x.checkPrivateKey(createPrivateKey(key))) throw new Error(`the key in ${t.keyFile} does not belong to the certificate in ${t.certFile}`);
      fingerprint = certFingerprint(cert);
    } catch (e) {
      throw new LicdError('CONFIG_INVALID', `broker.tls: ${t.certFile} and ${t.keyFile} must be a PEM certificate and its private key: ${(e as Error).message}`, { field: 'broker.tls.certFile' });
    }
    if (made) log.warn('made a TLS certificate for the broker (first start with TLS on)', { file: t.certFile, fingerprint });
    return { cert, key, fingerprint, made };
  }
  if (config.mqtt.broker === 'external' && config.mqtt.brokerCertFile) {
    // Only shown to clients: without it licd still serves licenses, and says what is missing.
    try {
      const cert = readConfigFile(config.mqtt.brokerCertFile, 'mqtt.brokerCertFile');
      return { cert, key: null, fingerprint: certFingerprint(cert), made: false };
    } catch (e) {
      log.warn('the broker certificate named by mqtt.brokerCertFile cannot be read; its fingerprint is not shown to clients (run licd-tls-setup, or fix the path)', { file: config.mqtt.brokerCertFile, error: (e as Error).message });
    }
  }
  return null;
}

function peekDongle(envelope: unknown): { serial: string; publicKey: Uint8Array } {
  try {
    const { json } = parseEnvelope(envelope, FORMATS.entitlement, 'ENTITLEMENT_INVALID');
    const d = (json as { dongle: { serial: string; publicKey: string } }).dongle;
    return { serial: d.serial, publicKey: fromHex(d.publicKey) };
  } catch {
    // verifyEntitlement below refuses the envelope and says why.
    return { serial: '?', publicKey: new Uint8Array(32) };
  }
}

/**
 * A listener of the embedded broker that cannot bind (the port is taken by another program, or
 * needs privileges) is said in one sentence naming host:port, the setting and the fix; licd exits
 * with EXIT_PORT_UNAVAILABLE (README). Other errors: null.
 */
export function listenError(e: unknown, config: Config): LicdError | null {
  const x = e as { code?: unknown; syscall?: unknown; port?: unknown };
  if (e instanceof LicdError || x?.syscall !== 'listen' || (x.code !== 'EADDRINUSE' && x.code !== 'EACCES' && x.code !== 'EADDRNOTAVAIL')) return null;
  const tls = config.broker.tls.enabled && x.port === config.broker.tls.port && !(config.broker.plain && config.mqtt.port === config.broker.tls.port);
  const host = tls ? config.broker.tls.host : config.mqtt.host;
  const port = typeof x.port === 'number' ? x.port : tls ? config.broker.tls.port : config.mqtt.port;
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const setting = tls ? 'broker.tls.port in the config file' : 'mqtt.port in the config file or LICD_MQTT_PORT';
  const what = tls ? 'the TLS (mqtts) listener' : 'the MQTT listener';
  const cause =
    x.code === 'EADDRINUSE'
      ? `${where} is already in use by another program (another licd or MQTT broker?)`
      : x.code === 'EACCES'
        ? `licd may not listen on ${where} (ports below 1024 need privileges)`
        : `${host} is not an address of this machine`;
  const fix = x.code === 'EADDRNOTAVAIL' ? `set ${tls ? 'broker.tls.host' : 'mqtt.host (LICD_MQTT_HOST)'} to an address of this machine` : `stop that program, or give ${what} another port with ${setting}`;
  return new LicdError('CONFIG_INVALID', `${what} cannot listen: ${cause}; ${fix}`, { listen: where, errno: String(x.code) });
}
