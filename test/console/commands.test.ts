/** The console's commands over a scripted admin API: what a failover box's status shows. */
import test from 'ava';
import type { StatusResult } from '../../src/core/protocol.ts';
import { dryRunOps } from '../../src/console/backends.ts';
import { consoleCommands } from '../../src/console/commands.ts';
import type { CommandIO } from '../../src/console/session.ts';

function statusWith(failover: NonNullable<StatusResult['server']['failover']>): StatusResult {
  return {
    server: {
      state: 'online',
      version: '1.0.0',
      since: '2026-12-01T00:00:00.000Z',
      development: false,
      dongle: { present: true, serial: 'LD-B', emulated: false },
      entitlement: { id: 'ENT-B', customer: 'ACME Studio' },
      features: ['nuke_i'],
      warnings: [],
      alerts: [],
      failover,
    },
    features: [],
    quarantine: [],
  } as unknown as StatusResult;
}

async function statusText(s: StatusResult): Promise<string> {
  const printed: string[] = [];
  const io = { print: (x: string) => printed.push(x), columns: 80, role: 'admin', signal: new AbortController().signal } as unknown as CommandIO;
  const cmd = consoleCommands({ api: { request: async <T>() => s as T }, system: dryRunOps(), utc: true }).find((c) => c.name === 'status')!;
  await cmd.run(io, []);
  return printed.join('\n');
}

test("status on a failover box says whose seats it mirrors and whether it serves them, within 80 columns", async (t) => {
  const base = { entitlement: 'FO-1', primary: 'box-a', afterSeconds: 300, usedHours: 2, maxHoursPerMonth: 72, features: [{ feature: 'nuke_i', seats: 1 }] };
  const active = await statusText(statusWith({ ...base, state: 'active', since: '2026-12-01T00:10:00.000Z', offlineSince: '2026-12-01T00:05:00.000Z' }));
  t.regex(active.replace(/\s+/g, ' '), /failover for box-a: ACTIVE since 2026-12-01 00:10:00.*\(box-a offline since 2026-12-01 00:05:00.*nuke_i x1; used 2 of 72 h this month \(FO-1\)/);
  t.true(active.split('\n').every((l) => l.length <= 80), active);
  const dormant = await statusText(statusWith({ ...base, state: 'dormant', reason: 'online' }));
  t.regex(dormant.replace(/\s+/g, ' '), /failover for box-a: dormant \(box-a is online\)/);
});
