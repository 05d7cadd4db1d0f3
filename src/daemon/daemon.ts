/**
 * The composition root: the one place that wires config, dongle, entitlement, store, service,
 * broker and MQTT link together. No module-level singletons: tests build daemons in-process with
 * the parts they choose.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { fromHex, toBase64url, toHex, utf8 } from '../core/bytes.ts';
import { LicdError } from '../core/errors.ts';
import { verifyEntitlement, type Entitlement } from '../core/entitlement.ts';
import type { Lease } from '../core/model.ts';
import { systemClock, type Clock, type DongleIdentity, type Ed25519, type Random, type StateStore } from '../core/ports.ts';
import { SeatTable } from '../core/seats.ts';
import { LicenseService, type Log } from '../core/service.ts';
import { FORMATS, parseEnvelope, sealEnvelope, type SignedEnvelope } from '../core/signed.ts';
import { DELEGATION_DOMAIN, delegationBody, delegationEnvelope, dongleSignedBytes } from '../core/trust.ts';
import { Borrowing, type BorrowLimits } from '../core/borrowing.ts';
import {
  ClockGuard,
  CounterGate,
  META_CLOCK,
  META_COUNTER,
  META_QUARANTINE,
  judgeCounter,
  parseQuarantine,
  quarantineFor,
  serializeQuarantine,
  type Quarantine,
} from '../core/integrity.ts';
import { sealToken } from '../core/tokens.ts';
import { nodeEd25519, systemRandom } from '../crypto/ed25519.ts';
import { sha256HolderHash } from '../crypto/holder.ts';
import { DongleManager, type DongleLink, type PresenceEvent } from '../dongle/manager.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { ServerLink } from '../mqtt/server-link.ts';
import { readPasswordFile } from '../mqtt/passwd.ts';
import { LevelStore } from '../store/level-store.ts';
import { demoEntitlementBody, devVendorKey, issueEntitlement, writeFileAtomic } from '../vendor.ts';

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
  /** Credentials of the embedded broker's admin user. */
  adminCredentials: { username: string; password: string } | null;
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
  const clock = deps.clock ?? systemClock;
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

    // 2. The entitlement, verified against the vendor key and the dongle.
    let vendorPublicKey: Uint8Array;
    let envelope: unknown;
    if (config.development) {
      const key = devVendorKey(join(config.dataDir, 'dev', 'vendor.key'), ed, random);
      vendorPublicKey = fromHex(key.publicKey);
      if (!dongleView) throw new LicdError('DONGLE_ABSENT', `development mode needs the dongle at start (it checks or issues the demo license for it): ${dongle.reason}`);
      const file = config.entitlementFile ?? join(config.dataDir, 'dev', 'entitlement.json');
      envelope = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
      let usable = false;
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
        writeFileAtomic(file, JSON.stringify(envelope, null, 2) + '\n');
        log.warn('DEVELOPMENT MODE: made a development vendor key and a demo entitlement (not a license)', { file });
      }
    } else {
      vendorPublicKey = fromHex(config.vendorPublicKey!);
      try {
        envelope = JSON.parse(readFileSync(config.entitlementFile!, 'utf8'));
      } catch (e) {
        throw new LicdError('ENTITLEMENT_INVALID', `cannot read the license file ${config.entitlementFile}: ${(e as Error).message}`);
      }
    }
    // Without the dongle at start, the license file still says which dongle to wait for.
    const named = peekDongle(envelope);
    const entitlement = verifyEntitlement(envelope, {
      vendorPublicKey,
      dongle: dongleView ?? named,
      now: clock.now(),
      ed,
    });
    dongle.setExpected({ serial: entitlement.dongle.serial, publicKey: entitlement.dongle.publicKey });
    if (!dongleView) log.warn('starting without the dongle: no seats are granted until it is plugged in', { expected: entitlement.dongle.serial, reason: dongle.reason });

    // 3. State.
    const store = deps.store ?? (await LevelStore.open(join(config.dataDir, 'db')));
    cleanups.push(() => store.close());
    const idBytes = () => toBase64url(random.bytes(9));
    const table = new SeatTable(entitlement.features, idBytes);
    const loaded = await store.load();
    const restored = table.restore(loaded.leases, loaded.borrows, clock.now());
    await store.commit(restored.mutations);
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
    const notBefore = clock.now() - 5 * 60_000;
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

    let link!: ServerLink;
    const service = new LicenseService({
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
    });
    const grant = (lease: Lease): SignedEnvelope =>
      sealEnvelope(
        FORMATS.grant,
        {
          lease: lease.id,
          feature: lease.feature,
          count: lease.count,
          user: lease.user,
          host: lease.host,
          clientId: lease.clientId,
          issuedAt: new Date(clock.now()).toISOString(),
          until: new Date(lease.expiresAt).toISOString(),
          entitlement: entitlement.id,
          sessionKey: toHex(sessionKey),
        },
        sessionSeed,
        ed,
      );

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
    });
    service.register('clock.accept', true, async (ctx) => {
      const before = clockGuard.highWater;
      clockGuard.accept(ctx.now);
      await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: ctx.now } }]);
      persistedHwm = ctx.now;
      service.observeClock(ctx.now);
      log.warn('clock accepted by admin', { admin: ctx.clientId, highWaterWas: new Date(before).toISOString(), now: new Date(ctx.now).toISOString() });
      return { highWater: new Date(ctx.now).toISOString(), was: new Date(before).toISOString() };
    });
    if (service.observeClock() === 0) {
      persistedHwm = clockGuard.highWater;
      await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: persistedHwm } }]);
    }

    const applyQuarantine = (q: Quarantine) => {
      const now = clock.now();
      const live = q.holds.filter((h) => h.until > now);
      for (const h of live) table.setHold(h.feature, h.seats, h.until);
      if (live.length > 0) {
        const until = Math.max(...live.map((h) => h.until));
        service.setWarning('quarantine', `quarantine: ${q.reason}. Seats that could still be out on borrow are held until ${new Date(until).toISOString()} (${live.map((h) => `${h.feature} ${h.seats}`).join(', ')})`);
        service.markAllDirty();
      }
    };
    const storedQuarantine = parseQuarantine(loaded.meta.get(META_QUARANTINE));
    if (storedQuarantine) applyQuarantine(storedQuarantine);
    const counterMeta = new Map(loaded.meta);
    const judge = async (identity: DongleIdentity) => {
      const verdict = gate ? (identity.counter > gate.value + (gate.uncertain ? 1n : 0n) ? { kind: 'restored' as const, stored: gate.value, dongle: identity.counter } : { kind: 'ok' as const }) : judgeCounter(counterMeta, identity.counter);
      const q = quarantineFor(verdict, entitlement.features, table.allBorrows(), clock.now());
      if (q) {
        log.warn('QUARANTINE: seats that could still be out on borrow are held', { reason: q.reason, holds: q.holds.map((h) => ({ ...h, until: new Date(h.until).toISOString() })) });
        await store.commit([
          { kind: 'meta.put', key: META_QUARANTINE, value: serializeQuarantine(q) },
          { kind: 'meta.put', key: META_COUNTER, value: identity.counter.toString() },
        ]);
        applyQuarantine(q);
      } else if (verdict.kind !== 'ok') {
        await store.commit([{ kind: 'meta.put', key: META_COUNTER, value: identity.counter.toString() }]);
        if (verdict.kind === 'adopt') log.info('counter adopted', { why: verdict.why, counter: identity.counter.toString() });
      }
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

    // 5. The broker and the API.
    let broker: EmbeddedBroker | null = null;
    let url: string;
    let daemonPassword: string | null;
    let admin: Daemon["adminCredentials"] = null;
    if (config.mqtt.broker === 'embedded') {
      daemonPassword = toBase64url(random.bytes(18));
      const adminPassword = readSecret(config.broker.adminPasswordFile, random, true);
      admin = { username: 'admin', password: adminPassword };
      broker = await startEmbeddedBroker({
        host: config.mqtt.host,
        port: config.mqtt.port,
        allowAnonymous: config.broker.allowAnonymous,
        log,
        clientLogins: config.identity.usersFile ? readPasswordFile(config.identity.usersFile, 'identity.usersFile') : new Map(),
        users: [
          { username: config.mqtt.username, password: daemonPassword, role: 'daemon' },
          { username: 'admin', password: adminPassword, role: 'admin' },
        ],
      });
      cleanups.push(() => broker!.close());
      url = broker.url;
    } else {
      url = config.mqtt.url!;
      daemonPassword = config.mqtt.password ?? (config.mqtt.passwordFile ? readSecret(config.mqtt.passwordFile, random, false) : null);
    }
    link = new ServerLink({ url, username: config.mqtt.username, password: daemonPassword, protocolVersion: config.mqtt.protocolVersion, service, log, chain: () => ({ entitlement: entitlement.envelope, delegation }) });
    cleanups.push(() => link.close());
    await link.ready();

    // 6. Tickers.
    const tick = async () => {
      await service.reap();
      const back = service.observeClock();
      if (back === 0 && clockGuard.highWater - persistedHwm >= 60_000) {
        persistedHwm = clockGuard.highWater;
        await store.commit([{ kind: 'meta.put', key: META_CLOCK, value: { hwm: persistedHwm } }]).catch(() => {});
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
    const reaper = setInterval(() => void tick(), 1000);
    reaper.unref?.();
    cleanups.push(async () => clearInterval(reaper));

    let stopped = false;
    return {
      config,
      service,
      borrowing,
      dongle,
      entitlement,
      vendorPublicKey,
      url,
      broker,
      link,
      store,
      adminCredentials: admin,
      chain: () => ({ entitlement: entitlement.envelope, delegation }),
      async stop() {
        if (stopped) return;
        stopped = true;
        service.shuttingDown();
        clearInterval(reaper);
        await link.close();
        if (broker) await broker.close();
        await dongle.stop();
        await store.close();
      },
    };
  } catch (e) {
    return fail(e);
  }
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

