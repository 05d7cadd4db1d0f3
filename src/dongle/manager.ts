import { EventEmitter } from 'node:events';
import { equalBytes, toHex } from '../core/bytes.ts';
import type { Clock, DongleIdentity, Ed25519, Random } from '../core/ports.ts';
import type { Log } from '../core/service.ts';
import { CHALLENGE_DOMAIN, dongleSignedBytes } from '../core/trust.ts';

/** An open connection to a dongle (firmware-bridge's DongleSession fits). */
export interface DongleLink {
  info(): Promise<{ serial: string; publicKey: Uint8Array; counter: bigint; flags?: number; emulated?: boolean; firmwareVersion: string }>;
  sign(domain: string, message: Uint8Array): Promise<Uint8Array>;
  counterIncrement(nonce: Uint8Array): Promise<{ value: bigint; signature: Uint8Array }>;
  /** The dongle's battery-backed clock, signed; null when the dongle has none (older firmware). */
  time?(nonce: Uint8Array): Promise<{ ms: number; signature: Uint8Array } | null>;
  close(): Promise<void>;
  readonly closed: Promise<unknown>;
}

export interface DongleManagerOptions {
  open: () => Promise<DongleLink>;
  /** The dongle the entitlement names; another one plugged in is treated as absent. */
  expected: { serial: string; publicKey: Uint8Array } | null;
  presenceIntervalMs: number;
  ed: Ed25519;
  random: Random;
  clock: Clock;
  log: Log;
}

export type PresenceEvent = { present: true; identity: DongleIdentity } | { present: false; reason: string };

/**
 * Keeps the dongle honest and present: challenges it with a fresh nonce every presence interval
 * and checks the signature against the key the entitlement names. A removal, a failed or wrong
 * answer, or another dongle makes it absent at once; it is reopened on the same period, so a
 * dongle plugged back in is serving again within an interval or two, without a restart.
 * Events: 'change' (PresenceEvent).
 */
export class DongleManager extends EventEmitter {
  private link: DongleLink | null = null;
  private identity: DongleIdentity | null = null;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private stopped = false;
  private absentReason = 'not opened yet';
  /** What listeners were last told, so a loss is announced even when its reason repeats. */
  private announcedPresent = false;
  private expected: DongleManagerOptions['expected'];

  constructor(private readonly opts: DongleManagerOptions) {
    super();
    this.expected = opts.expected;
  }

  get present(): boolean {
    return this.link !== null && this.identity !== null;
  }

  get reason(): string {
    return this.absentReason;
  }

  current(): { link: DongleLink; identity: DongleIdentity } | null {
    return this.link && this.identity ? { link: this.link, identity: this.identity } : null;
  }

  setExpected(e: DongleManagerOptions['expected']): void {
    this.expected = e;
  }

  /** Opens the dongle once; resolves with its identity or null (then it keeps trying). */
  async start(): Promise<DongleIdentity | null> {
    await this.tryOpen();
    this.timer = setInterval(() => void this.tick(), this.opts.presenceIntervalMs);
    this.timer.unref?.();
    return this.identity;
  }

  private async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      if (this.link) await this.challenge();
      else await this.tryOpen();
    } finally {
      this.busy = false;
    }
  }

  private async tryOpen(): Promise<void> {
    let link: DongleLink;
    try {
      link = await this.opts.open();
    } catch (e) {
      this.markAbsent(`cannot open it: ${(e as Error).message}`);
      return;
    }
    try {
      const info = await link.info();
      const emulated = info.emulated ?? Boolean((info.flags ?? 0) & 1);
      const identity: DongleIdentity = { serial: info.serial, publicKey: info.publicKey, counter: info.counter, emulated, firmwareVersion: info.firmwareVersion };
      if (this.expected && (identity.serial !== this.expected.serial || !equalBytes(identity.publicKey, this.expected.publicKey))) {
        await link.close().catch(() => {});
        this.markAbsent(`another dongle is plugged in (serial ${identity.serial}); the license file names ${this.expected.serial}`);
        return;
      }
      this.link = link;
      this.identity = identity;
      if (!(await this.challenge())) return;
      void link.closed.then(() => {
        if (this.link === link) this.lost(link, 'it was unplugged (its connection closed)');
      });
      this.opts.log.info('dongle present', { serial: identity.serial, emulated, firmware: identity.firmwareVersion, publicKey: toHex(identity.publicKey) });
      this.announcedPresent = true;
      this.emit('change', { present: true, identity } satisfies PresenceEvent);
    } catch (e) {
      await link.close().catch(() => {});
      this.link = null;
      this.identity = null;
      this.markAbsent(`it does not answer: ${(e as Error).message}`);
    }
  }

  /** Signs a fresh nonce; a wrong signature is as bad as no answer. */
  private async challenge(): Promise<boolean> {
    const link = this.link;
    const identity = this.identity;
    if (!link || !identity) return false;
    const nonce = this.opts.random.bytes(16);
    try {
      const sig = await link.sign(CHALLENGE_DOMAIN, nonce);
      if (!this.opts.ed.verify(identity.publicKey, dongleSignedBytes(CHALLENGE_DOMAIN, nonce, identity.emulated), sig)) {
        this.lost(link, 'it failed a challenge: the signature does not match its public key');
        return false;
      }
      return true;
    } catch (e) {
      this.lost(link, `it failed a challenge: ${(e as Error).message}`);
      return false;
    }
  }

  private lost(link: DongleLink, reason: string): void {
    if (this.link !== link) return;
    this.link = null;
    this.identity = null;
    void link.close().catch(() => {});
    this.markAbsent(reason);
  }

  private markAbsent(reason: string): void {
    // lost() has already dropped the link, so `present` cannot tell whether listeners still
    // believe the dongle is there; announcedPresent does.
    const changed = reason !== this.absentReason || this.announcedPresent;
    this.absentReason = reason;
    if (changed) {
      this.announcedPresent = false;
      this.opts.log.warn('dongle absent', { reason });
      this.emit('change', { present: false, reason } satisfies PresenceEvent);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
    const link = this.link;
    this.link = null;
    this.identity = null;
    if (link) await link.close().catch(() => {});
  }
}
