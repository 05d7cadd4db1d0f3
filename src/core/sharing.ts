/**
 * The admin side of the sharing policy (docs/policy.md): policy.get and policy.set over the admin
 * API, and a reload of the policy file (SIGHUP). The rules themselves are in policy.ts and the seat
 * table applies them; this part only loads, validates, stores and swaps the policy. Pure: the file
 * is read and written through the injected `file`.
 */
import { LicdError, isLicdError } from './errors.ts';
import { EMPTY_POLICY, parsePolicy, type Policy } from './policy.ts';
import type { LicenseService } from './service.ts';

/** Where the policy lives: the daemon reads it at start and on reload, policy.set writes it. */
export interface PolicyFile {
  /** Shown in answers and messages (the path). */
  name: string;
  /** The file's text, or null when there is none (no policy: first come, first served). */
  read(): string | null;
  /** Replaces the file's text atomically (written and synced before the new policy applies). */
  write(text: string): void;
}

export interface PolicyInfo {
  file: string;
  /** Directive lines in force (0: no policy). */
  rules: number;
  /** Features the policy has rules for. */
  features: string[];
  text: string;
}

/** The largest policy text accepted (a 10,000-line file of long lines is far below it). */
export const MAX_POLICY_BYTES = 512 * 1024;

export class Sharing {
  constructor(
    private readonly service: LicenseService,
    private readonly file: PolicyFile,
  ) {
    service.register('policy.get', true, async () => this.info());
    service.register('policy.set', true, async (ctx, f) => {
      const raw = f.raw('text');
      const text = typeof raw === 'string' ? raw : f.fail('text', 'must be the policy file\'s text (a string; "" removes every rule): licctl policy set FILE sends it');
      if (text.length > MAX_POLICY_BYTES) f.fail('text', `is ${text.length} characters; a policy may have at most ${MAX_POLICY_BYTES}`);
      const p = parsePolicy(text);
      try {
        this.file.write(text);
      } catch (e) {
        throw new LicdError('STORE_FAILED', `the policy was not changed: ${this.file.name} could not be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check the disk and the file's owner and mode`, { file: this.file.name });
      }
      this.apply(p);
      this.service.log.warn('policy changed by admin', { admin: ctx.clientId, rules: p.rules, file: this.file.name });
      return this.info();
    });
  }

  /** Reads the policy file and applies it; at start, an invalid file stops licd (CONFIG_INVALID). */
  load(): Policy {
    const p = this.readFile();
    this.apply(p);
    return p;
  }

  /**
   * Reads the file again (SIGHUP). An invalid file leaves the policy in force as it was, and says
   * why in the log and the server's warnings until a good one is loaded.
   */
  reload(): { ok: true; rules: number } | { ok: false; message: string } {
    try {
      const p = this.readFile();
      this.apply(p);
      this.service.setWarning('policy', null);
      this.service.log.info('policy reloaded', { file: this.file.name, rules: p.rules });
      return { ok: true, rules: p.rules };
    } catch (e) {
      const message = `the policy file ${this.file.name} was not reloaded, the policy in force stays: ${(e as Error).message}`;
      this.service.log.error(message);
      this.service.setWarning('policy', message);
      return { ok: false, message };
    }
  }

  info(): PolicyInfo {
    const p = this.service.table.currentPolicy();
    return { file: this.file.name, rules: p.rules, features: [...p.features.keys()], text: p.text };
  }

  private readFile(): Policy {
    let text: string | null;
    try {
      text = this.file.read();
    } catch (e) {
      throw new LicdError('CONFIG_INVALID', `policy.file: cannot read ${this.file.name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); fix the path in the config, or the file's owner and mode`, { field: 'policy.file' });
    }
    if (text === null) return EMPTY_POLICY;
    try {
      return parsePolicy(text);
    } catch (e) {
      if (!isLicdError(e)) throw e;
      throw new LicdError('CONFIG_INVALID', `${this.file.name}: ${e.message}. Fix the file (licctl policy check FILE says what is wrong), or remove it to run without a policy`, { field: 'policy.file', ...e.details });
    }
  }

  private apply(p: Policy): void {
    this.service.table.setPolicy(p);
    this.service.markAllDirty();
    // Seats a reservation no longer keeps may go to waiters now; waiters a rule now forbids are told.
    this.service.serveQueues();
  }
}
