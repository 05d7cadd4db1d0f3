/**
 * The box's side of online activation: POSTs an activation request to the vendor's service
 * (config activation.url, LICD_ACTIVATION_URL) and returns the license it answers.
 * Every failure is ACTIVATION_FAILED naming the URL and the cause, or the service's own refusal.
 */
import { isErrorCode, LicdError } from '../core/errors.ts';
import { ACTIVATE_PATH } from './server.ts';

/** The URL to POST to: the setting as given if it names the path, else the base URL + /v1/activate. */
export function activateUrl(base: string): string {
  const u = base.replace(/\/+$/, '');
  return u.endsWith(ACTIVATE_PATH) ? u : u + ACTIVATE_PATH;
}

export async function postActivation(base: string, request: unknown, timeoutMs = 15_000): Promise<unknown> {
  const url = activateUrl(base);
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request), signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code;
    const why =
      (e as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs / 1000} s`
        : code === 'UND_ERR_SOCKET'
          ? 'the connection was closed before an answer'
          : (code ?? cause?.message ?? (e as Error).message);
    throw new LicdError('ACTIVATION_FAILED', `the activation service at ${url} cannot be reached (${why}); check the box's network and activation.url (LICD_ACTIVATION_URL), or activate by file: licctl activate request --out FILE`, {
      url,
      reason: 'unreachable',
    });
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new LicdError('ACTIVATION_FAILED', `the activation service at ${url} answered HTTP ${res.status} without JSON; is activation.url the vendor's activation service?`, { url, status: res.status });
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } }).error;
    const code = isErrorCode(err?.code) ? err.code : 'ACTIVATION_FAILED';
    throw new LicdError(code, `the activation service refused: ${typeof err?.message === 'string' ? err.message : `HTTP ${res.status}`}`, {
      url,
      status: res.status,
      ...(err?.details && typeof err.details === 'object' ? (err.details as Record<string, unknown>) : {}),
    });
  }
  return json;
}
