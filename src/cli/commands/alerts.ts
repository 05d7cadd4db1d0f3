/** licctl alerts: the active alerts with user and host names (admins; docs/monitoring.md). */
import type { AlertsResult } from '../../core/protocol.ts';
import type { ParsedArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { adminRequest, cell, json, out, outJson, timeOf } from '../context.ts';

async function list(a: ParsedArgs): Promise<number> {
  const r = await adminRequest<AlertsResult>(a, 'alerts.list', {});
  if (json(a)) {
    outJson(r);
    return 0;
  }
  const time = timeOf(a);
  if (r.alerts.length === 0) out('no active alerts');
  const order = { critical: 0, warning: 1, info: 2 } as const;
  for (const x of [...r.alerts].sort((p, q) => order[p.severity] - order[q.severity] || p.since.localeCompare(q.since))) {
    out(`${x.severity.toUpperCase().padEnd(8)} ${cell(x.kind).padEnd(13)} since ${time(x.since)}  ${cell(x.message)}`);
  }
  return 0;
}

export const alertsCommands: Command[] = [
  {
    path: 'alerts',
    section: 'admin',
    synopsis: 'alerts',
    summary: 'the active alerts: double use, seats at the limit, expiring licenses, dongle, quarantine, clock',
    details: 'Each alert names the feature, user and hosts (licctl status shows the same alerts without names). licd also logs each alert once when it is raised and when it clears, publishes them retained on licd/v1/alerts, and runs alerts.command / posts to alerts.webhook (docs/monitoring.md).',
    connects: true,
    json: '{alerts: [{id, kind, severity, since, message, summary, feature?, user?, hosts?, stage?}], updated}',
    examples: ['licctl alerts --user admin --password-file admin.password', 'licctl alerts --json --user admin --password-file admin.password'],
    run: list,
  },
];
