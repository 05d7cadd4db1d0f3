/** The benchmark's side of the load generator processes: fork, command over IPC, stop. */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ConnectCmd, ConnectResult, GenCmd, GenReply } from './gen-protocol.ts';
import { forkTracked, openFileLimits, stopChild } from './proc.ts';

const GEN_SCRIPT = fileURLToPath(new URL('../gen.ts', import.meta.url));

export class Generator {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private exited = false;

  constructor(
    readonly index: number,
    readonly child: ChildProcess,
  ) {
    child.on('message', (m: GenReply) => {
      const w = this.waiting.get(m.seq);
      if (!w) return;
      this.waiting.delete(m.seq);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(`generator ${index}: ${m.error}`));
    });
    child.on('exit', (code, sig) => {
      this.exited = true;
      for (const w of this.waiting.values()) w.reject(new Error(`generator ${index} exited (${code ?? sig})`));
      this.waiting.clear();
    });
  }

  send<T>(cmd: GenCmd, timeoutMs = 600_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`generator ${this.index} is not running`));
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Error(`generator ${this.index}: no reply to ${cmd.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(seq, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.child.send({ seq, cmd });
    });
  }
}

export class GeneratorPool {
  private constructor(
    readonly gens: Generator[],
    /** The pool that forked the processes; views only borrow them. */
    private readonly owner: boolean,
  ) {}

  /** The first `k` generators, to use for one load and release after (forking costs seconds). */
  view(k: number): GeneratorPool {
    if (k > this.gens.length) throw new Error(`asked for ${k} generators, the pool has ${this.gens.length}`);
    return new GeneratorPool(this.gens.slice(0, k), false);
  }

  /** Disconnects the clients of this view's generators; the processes stay for the next load. */
  async release(): Promise<void> {
    await Promise.allSettled(this.gens.map((g) => g.send({ cmd: 'drop' }, 30_000)));
  }

  /** Forks `n` generator processes, each to hold up to `perProcess` sockets. */
  static start(n: number, perProcess: number): GeneratorPool {
    const { hard } = openFileLimits();
    if (perProcess + 64 > hard) throw new Error(`a generator would need ${perProcess + 64} open files, over the hard limit of ${hard}; use more generator processes`);
    const gens = Array.from({ length: n }, (_, i) => {
      const child = forkTracked(GEN_SCRIPT, [], {
        execArgv: ['--import', 'tsx'],
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      return new Generator(i, child);
    });
    return new GeneratorPool(gens, true);
  }

  /** Spreads `total` connections evenly over the generators. */
  async connect(total: number, base: Omit<ConnectCmd, 'cmd' | 'count' | 'idPrefix'> & { idPrefix: string }): Promise<ConnectResult & { perGen: number[] }> {
    const counts = this.gens.map((_, i) => Math.floor(total / this.gens.length) + (i < total % this.gens.length ? 1 : 0));
    const rs = await Promise.all(
      this.gens.map((g, i) => g.send<ConnectResult>({ ...base, cmd: 'connect', count: counts[i]!, idPrefix: `${base.idPrefix}${i}` }, base.timeoutMs * (1 + counts[i]! / base.concurrency) + 30_000)),
    );
    return {
      connected: rs.reduce((s, r) => s + r.connected, 0),
      failed: rs.reduce((s, r) => s + r.failed, 0),
      firstError: rs.find((r) => r.firstError)?.firstError ?? null,
      ms: Math.max(...rs.map((r) => r.ms)),
      perGen: rs.map((r) => r.connected),
    };
  }

  all<T>(cmd: GenCmd | ((g: Generator) => GenCmd), timeoutMs?: number): Promise<T[]> {
    return Promise.all(this.gens.map((g) => g.send<T>(typeof cmd === 'function' ? cmd(g) : cmd, timeoutMs)));
  }

  async stop(): Promise<void> {
    if (!this.owner) return this.release();
    await Promise.allSettled(this.gens.map((g) => g.send({ cmd: 'close' }, 15_000)));
    await Promise.all(this.gens.map((g) => stopChild(g.child, 3000)));
  }
}
