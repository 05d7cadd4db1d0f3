/** The reconnect backoff figures docs/protocol.md gives ("Reconnects and broker restarts"). */
import test from 'ava';
import { CLIENT_BACKOFF, DAEMON_BACKOFF, backoffDelay } from '../../src/mqtt/connect.ts';

const at = (b: typeof CLIENT_BACKOFF, r: number) => ({ ...b, random: () => r });

test('the SDK retries first after 0.5-1.5 s, doubling, never after more than 6 s', (t) => {
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0), 0), 500);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0.999999), 0), 1500);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0.5), 1), 2000);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0.5), 2), 4000);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0.5), 3), 4000);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0.999999), 50), 6000);
  t.is(backoffDelay(at(CLIENT_BACKOFF, 0), 50), 2000);
});

test("licd's own link retries first after 0.5-1.5 s and never after more than 4.5 s", (t) => {
  t.is(backoffDelay(at(DAEMON_BACKOFF, 0), 0), 500);
  t.is(backoffDelay(at(DAEMON_BACKOFF, 0.999999), 0), 1500);
  t.is(backoffDelay(at(DAEMON_BACKOFF, 0.999999), 9), 4500);
});

test('delays spread: 5,000 first retries do not land in the same second', (t) => {
  const seconds = new Map<number, number>();
  for (let i = 0; i < 5000; i++) {
    const s = Math.floor(backoffDelay(CLIENT_BACKOFF, 0) / 1000);
    seconds.set(s, (seconds.get(s) ?? 0) + 1);
  }
  t.true(Math.max(...seconds.values()) < 5000);
});
