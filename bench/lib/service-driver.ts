// The service in-process for the in-process benches (bench/service-loop.ts, bench/alloc-profile.ts):
// a real daemon from test/helpers (LevelDB in a temp dir, the emulated dongle, no broker), with
// the usage history and the audit log on or off, driven through service.handle as a broker would.
import { startTestDaemon, type TestDaemon } from '../../test/helpers/daemon.ts';

const off = { enabled: false };
/** Which of the usage history and the audit log run. */
export const HISTORY_MODES = { on: {}, off: { history: off, audit: off }, noaudit: { audit: off }, nohist: { history: off } } as const;
export type HistoryMode = keyof typeof HISTORY_MODES;

export function isHistoryMode(mode: string): mode is HistoryMode {
  return Object.hasOwn(HISTORY_MODES, mode);
}

export type Answer = { ok?: boolean; result?: Record<string, unknown> };

/** The answer if it is not a refusal; a refusal throws, naming it. */
export function expectOk(a: Answer, op: string): Answer {
  if (!a.ok) throw new Error(`${op} refused: ${JSON.stringify(a).slice(0, 300)}`);
  return a;
}

export interface ServiceDriver {
  d: TestDaemon;
  /** Sends one request as client `id` (no wrapper of its own: bench/alloc-profile.ts counts what it allocates). */
  send(id: string, body: Record<string, unknown>): Promise<Answer>;
  /** `trips` checkout+checkin round trips, spread over `clients` clients, each waiting for its answers. */
  round(trips: number, clients: number): Promise<void>;
}

export async function serviceDriver(mode: HistoryMode): Promise<ServiceDriver> {
  const d = await startTestDaemon({ config: { ...HISTORY_MODES[mode], leases: { ttlSeconds: 600 } } });
  const enc = new TextEncoder();
  let seq = 0;
  // `body` is the caller's own literal: its request id is set on it, not copied.
  const send = (id: string, body: Record<string, unknown>): Promise<Answer> => {
    body.id = String(++seq);
    return d.service.handle(id, false, enc.encode(JSON.stringify(body))) as Promise<Answer>;
  };
  async function client(w: number, trips: number): Promise<void> {
    const id = `bench-w${w}-aaaaaa`;
    const holder = `holderSecretForBenchmark${w}xxxxxxxxxx`;
    for (let i = 0; i < trips; i++) {
      const a = expectOk(await send(id, { op: 'checkout', feature: 'vray_distributed', user: `u${w}`, host: `h${w}`, pid: 100 + w, holder }), 'checkout');
      expectOk(await send(id, { op: 'checkin', leases: [(a.result!.lease as { id: string }).id], holder }), 'checkin');
    }
  }
  const round = async (trips: number, clients: number): Promise<void> => {
    await Promise.all(Array.from({ length: clients }, (_, w) => client(w, Math.ceil(trips / clients))));
  };
  return { d, send, round };
}
