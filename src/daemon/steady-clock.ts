/**
 * The daemon's clock: wall time anchored to the monotonic clock, so a step of the system clock
 * (set by hand, a bad NTP server, a VM restored) never reaches a decision unannounced.
 * docs/threat-model.md ("Clock steps") says why and what is done with a step.
 *
 * now() is always anchor + monotonic time elapsed. Each tick the daemon asks check(): a wall
 * clock that moved apart from the monotonic one by more than the tolerance is a step; small
 * differences (NTP slewing) are followed silently. A step is reported, not applied: the daemon
 * moves every stored time by it in one batch, then calls shift(), so nothing is ever decided with
 * times in mixed terms.
 *
 * With a trusted time (a dongle with a battery-backed clock), the anchor is the dongle's time and
 * steps of the wall clock no longer move anything; they are reported only.
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from '../core/ports.ts';

export interface SteadyClockOptions {
  wall?: () => number;
  mono?: () => number;
  /** A wall clock further than this from the monotonic projection has stepped, ms. */
  toleranceMs?: number;
}

export type ClockCheck =
  /** Nothing to do (or the difference was small and is now followed). */
  | { kind: 'ok' }
  /** The wall clock stepped by stepMs; the daemon's time moves with it once shift(stepMs) is called. */
  | { kind: 'step'; stepMs: number }
  /** The wall clock stepped, but the daemon keeps a trusted time: reported only. */
  | { kind: 'wall-step'; stepMs: number };

export class SteadyClock implements Clock {
  private readonly wall: () => number;
  private readonly mono: () => number;
  readonly toleranceMs: number;
  /** The daemon's time at monoAt. */
  private base: number;
  private monoAt: number;
  /** The wall time at monoAt (differs from base only with a trusted time). */
  private wallAt: number;
  private trustedSource: string | null = null;

  constructor(o: SteadyClockOptions = {}) {
    this.wall = o.wall ?? (() => Date.now());
    this.mono = o.mono ?? (() => performance.now());
    this.toleranceMs = o.toleranceMs ?? 2000;
    this.monoAt = this.mono();
    this.wallAt = this.wall();
    this.base = this.wallAt;
  }

  now(): number {
    return Math.floor(this.base + (this.mono() - this.monoAt));
  }

  /** The name of the trusted time source in use, or null while following the wall clock. */
  get trusted(): string | null {
    return this.trustedSource;
  }

  /** How far the wall clock is from where the monotonic clock says it should be, ms. */
  wallDrift(): number {
    return this.wall() - (this.wallAt + (this.mono() - this.monoAt));
  }

  check(): ClockCheck {
    const drift = this.wallDrift();
    if (Math.abs(drift) <= this.toleranceMs) {
      if (this.trustedSource === null && drift !== 0) this.reanchor(this.wall());
      return { kind: 'ok' };
    }
    if (this.trustedSource !== null) {
      this.reanchor(this.now());
      return { kind: 'wall-step', stepMs: Math.round(drift) };
    }
    return { kind: 'step', stepMs: Math.round(drift) };
  }

  /** The daemon's time moves by deltaMs (after every stored time has moved with it). */
  shift(deltaMs: number): void {
    this.reanchor(this.now() + deltaMs);
  }

  /**
   * From now on, time is `time` (read from a trusted source) plus the monotonic time elapsed.
   * Returns how far that moves the daemon's time (shift every stored time by it first).
   */
  trust(source: string, time: number): number {
    const delta = time - this.now();
    this.trustedSource = source;
    return delta;
  }

  /** Sets the daemon's time (after trust() or when following the wall clock again). */
  set(time: number): void {
    this.reanchor(time);
  }

  /** Back to following the wall clock (the trusted source went away): returns the step to apply. */
  untrust(): number {
    this.trustedSource = null;
    return this.wall() - this.now();
  }

  private reanchor(base: number): void {
    this.monoAt = this.mono();
    this.wallAt = this.wall();
    this.base = base;
  }
}
