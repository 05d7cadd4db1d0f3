/** Faults the emulated dongle can be told to show, at construction or at run time. */

export interface DongleFaults {
  /** Answers nothing; memory and TCP connections are closed and new ones refused. */
  unplugged: boolean;
  /** Delay every answer by this many milliseconds (the work itself is done at once). */
  slowMs: number;
  /**
   * Flip a byte after the sync pair of answers: a number corrupts that many of the next answers;
   * { probability } corrupts each answer with that probability.
   */
  corruptFrames: number | { probability: number };
  /** Sign with a key other than the one INFO reports. */
  wrongSignature: boolean;
  /** COUNTER_INCREMENT answers COUNTER_FAILURE and does not step. */
  counterFailure: boolean;
}

export const NO_FAULTS: Readonly<DongleFaults> = Object.freeze({
  unplugged: false,
  slowMs: 0,
  corruptFrames: 0,
  wrongSignature: false,
  counterFailure: false,
});

export type FaultName = keyof DongleFaults;

/**
 * Parses a CLI fault, NAME or NAME=VALUE (kebab-case names accepted):
 * unplugged, slowMs=250, corruptFrames=3, corruptFrames=25% or corruptFrames=0.25,
 * wrongSignature, counterFailure. A boolean fault takes =true/=false or nothing (true).
 */
export function parseFault(text: string): Partial<DongleFaults> {
  const eq = text.indexOf('=');
  const rawName = eq < 0 ? text : text.slice(0, eq);
  const value = eq < 0 ? undefined : text.slice(eq + 1);
  const name = rawName.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const bool = (): boolean => {
    if (value === undefined || value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new Error(`fault ${rawName} takes true or false, got ${JSON.stringify(value)}`);
  };
  switch (name) {
    case 'unplugged':
    case 'wrongSignature':
    case 'counterFailure':
      return { [name]: bool() };
    case 'slowMs': {
      const ms = Number(value);
      if (value === undefined || !Number.isFinite(ms) || ms < 0) throw new Error(`fault slowMs needs a number of milliseconds, e.g. slowMs=250`);
      return { slowMs: ms };
    }
    case 'corruptFrames': {
      if (value === undefined) return { corruptFrames: 1 };
      if (value.endsWith('%')) {
        const p = Number(value.slice(0, -1)) / 100;
        if (!(p >= 0 && p <= 1)) throw new Error(`fault corruptFrames percentage must be 0%..100%, got ${value}`);
        return { corruptFrames: { probability: p } };
      }
      const n = Number(value);
      if (Number.isInteger(n) && n >= 0) return { corruptFrames: n };
      if (n > 0 && n < 1) return { corruptFrames: { probability: n } };
      throw new Error(`fault corruptFrames takes a count (3), a probability (0.25) or a percentage (25%), got ${value}`);
    }
    default:
      throw new Error(`unknown fault ${JSON.stringify(rawName)}; known: unplugged, slowMs=MS, corruptFrames=N|P%, wrongSignature, counterFailure`);
  }
}
