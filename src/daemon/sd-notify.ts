import { spawn } from 'node:child_process';

/**
 * sd_notify without a native module: Node cannot send on a unix datagram socket, so the
 * notification goes through `systemd-notify` (the unit sets NotifyAccess=all so systemd accepts
 * it from the helper process). Outside systemd (no NOTIFY_SOCKET) this does nothing.
 */
export function notifySystemd(...assignments: string[]): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', [`--pid=${process.pid}`, ...assignments], { stdio: 'ignore' });
  child.on('error', () => {});
  child.unref();
}

/** WATCHDOG=1 at half the interval systemd asks for (WATCHDOG_USEC), while the event loop turns. */
export function startWatchdog(): { stop(): void } | null {
  const usec = Number(process.env.WATCHDOG_USEC);
  if (!process.env.NOTIFY_SOCKET || !Number.isFinite(usec) || usec <= 0) return null;
  const t = setInterval(() => notifySystemd('WATCHDOG=1'), Math.max(500, usec / 2000));
  t.unref();
  return { stop: () => clearInterval(t) };
}
