/**
 * The monitoring routes of licd's HTTP server: GET /metrics (Prometheus text 0.0.4) and
 * GET /healthz (200 while licd serves licenses, 503 with the reasons when it cannot).
 */
import { CONTENT_TYPE } from '../metrics/exposition.ts';
import type { HttpServer } from './server.ts';

export interface Health {
  /** Reasons licd cannot serve licenses now; empty: it can. */
  reasons: string[];
  /** What limits it without stopping it (the server state's warnings). */
  warnings: string[];
  version: string;
}

export function addMonitoringRoutes(http: HttpServer, o: { metrics: () => string; health: () => Health }): void {
  http.route({ method: 'GET', path: '/metrics', handle: () => ({ status: 200, type: CONTENT_TYPE, body: o.metrics() }) });
  http.route({
    method: 'GET',
    path: '/healthz',
    handle: () => {
      const h = o.health();
      const ok = h.reasons.length === 0;
      const body = { status: ok ? 'ok' : 'unavailable', version: h.version, ...(ok ? {} : { reasons: h.reasons }), warnings: h.warnings };
      return { status: ok ? 200 : 503, type: 'application/json', body: JSON.stringify(body) + '\n' };
    },
  });
}
