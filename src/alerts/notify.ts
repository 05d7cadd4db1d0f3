/**
 * Tells someone outside licd about an alert (docs/monitoring.md): a program run with the alert as
 * JSON on its stdin (alerts.command: argv, no shell, killed after alerts.timeoutSeconds), and/or an
 * HTTP POST of the same JSON (alerts.webhook). One notification at a time, in order; a queue of at
 * most MAX_QUEUE, so a storm of alerts cannot fork without bound. Failures are logged, never thrown.
 */
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Alert } from '../core/alerts.ts';
import type { Log } from '../core/service.ts';

export const MAX_QUEUE = 100;

export interface AlertNotice {
  event: 'raised' | 'changed' | 'cleared';
  alert: Alert;
  /** The license server that says it: its entitlement id and version. */
  server: { entitlement: string | null; version: string };
  at: string;
}

export interface NotifierOptions {
  command: string[] | null;
  webhook: string | null;
  timeoutMs: number;
  log: Log;
}

export class AlertNotifier {
  private readonly queue: AlertNotice[] = [];
  private running: Promise<void> | null = null;
  private dropped = 0;

  constructor(private readonly opts: NotifierOptions) {}

  get enabled(): boolean {
    return this.opts.command !== null || this.opts.webhook !== null;
  }

  send(n: AlertNotice): void {
    if (!this.enabled) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.queue.shift();
      if (this.dropped++ % 100 === 0) this.opts.log.warn('alert notifications queue up faster than alerts.command/alerts.webhook take them: dropped the oldest', { dropped: this.dropped });
    }
    this.queue.push(n);
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  }

  /** Resolves once every queued notification was tried (tests, and a clean stop). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    for (let n = this.queue.shift(); n; n = this.queue.shift()) {
      const body = JSON.stringify(n) + '\n';
      if (this.opts.command) await this.runCommand(this.opts.command, body, n);
      if (this.opts.webhook) await this.post(this.opts.webhook, body, n);
    }
  }

  private runCommand(argv: string[], body: string, n: AlertNotice): Promise<void> {
    const log = this.opts.log;
    return new Promise((resolve) => {
      let child;
      try {
        child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], shell: false });
      } catch (e) {
        log.warn('alerts.command could not be started', { command: argv[0], error: String(e) });
        return resolve();
      }
      let stderr = '';
      const timer = setTimeout(() => {
        log.warn(`alerts.command ran longer than ${this.opts.timeoutMs / 1000} s and was killed (raise alerts.timeoutSeconds, or make it return sooner)`, { command: argv[0], alert: n.alert.id });
        child.kill('SIGKILL');
      }, this.opts.timeoutMs);
      child.stderr!.on('data', (d: Buffer) => {
        if (stderr.length < 2000) stderr += d.toString();
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        log.warn(`alerts.command ${argv[0]} could not be run: ${(e as NodeJS.ErrnoException).code ?? e}; fix the path in alerts.command`, { alert: n.alert.id });
        resolve();
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (code !== 0 && signal === null) log.warn(`alerts.command ${argv[0]} exited with ${code}`, { alert: n.alert.id, stderr: stderr.trim().slice(0, 500) });
        resolve();
      });
      child.stdin!.on('error', () => {});
      child.stdin!.end(body);
    });
  }

  private post(url: string, body: string, n: AlertNotice): Promise<void> {
    const log = this.opts.log;
    return new Promise((resolve) => {
      const u = new URL(url);
      const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
        u,
        { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'User-Agent': `licd/${n.server.version}` }, timeout: this.opts.timeoutMs },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 300) log.warn(`alerts.webhook ${u.origin} answered ${res.statusCode}`, { alert: n.alert.id });
            resolve();
          });
          res.on('error', () => resolve());
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs / 1000} s`)));
      req.on('error', (e) => {
        log.warn(`alerts.webhook ${u.origin} could not be reached: ${(e as Error).message}; check alerts.webhook`, { alert: n.alert.id });
        resolve();
      });
      req.end(body);
    });
  }
}
