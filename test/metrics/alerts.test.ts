/**
 * Issue 14, alerts, through real parts: a daemon (embedded aedes, LevelDB in a temp dir, the
 * emulated dongle over its wire protocol), real SDK clients as a user on two machines, an admin
 * reading the retained alerts topic, a real local HTTP server as the webhook, a real child process
 * as alerts.command, and /healthz over HTTP.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { createServer } from 'node:http';
import { readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Alert } from '../../src/core/alerts.ts';
import { topics, type AlertsResult, type ServerState } from '../../src/core/protocol.ts';
import { BorrowClient } from '../../src/sdk/borrow.ts';
import { ManualClock, startTestDaemon, tempDir, until, type TestDaemon } from '../helpers/daemon.ts';
import { killAll, run } from '../helpers/procs.ts';

test.after.always(killAll);

/** An MQTT subscriber that keeps the last payload of each topic. */
async function watch(url: string, o: { username?: string; password?: string }, subs: string[]) {
  const c = await mqtt.connectAsync(url, { ...o, clientId: `watch-${Math.random().toString(16).slice(2, 10)}`, reconnectPeriod: 0 });
  const last = new Map<string, { at: number; text: string }>();
  c.on('message', (topic, payload) => last.set(topic, { at: Date.now(), text: payload.toString() }));
  // A refused subscription comes back as granted 128 (MQTT 3.1.1: "failure").
  const granted = await c.subscribeAsync(Object.fromEntries(subs.map((topic) => [topic, { qos: 1 as const }]))).then(
    (g) => g.map((x) => x.qos as number),
    (e: { packet?: { granted?: number[] } }) => e.packet?.granted ?? [128],
  );
  return { c, last, granted };
}

function borrower(t: { teardown(f: () => void): void }, user: string, hostName: string) {
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  return new BorrowClient({ home, hostId: 'ab'.repeat(16), user, hostName });
}

async function doubleUse(t: { teardown(f: () => void): void }, d: TestDaemon) {
  const laptop = await d.client({ user: 'ann', host: 'laptop-ann' });
  await borrower(t, 'ann', 'laptop-ann').borrow(laptop, [{ feature: 'vray_render', count: 1 }], 24);
  const ws = await d.client({ user: 'ann', host: 'ws-12' });
  const lease = await ws.checkout('vray_render', { ttl: 30 });
  return { ws, lease, at: Date.now() };
}

test('a double use made through two real clients raises the alert within one heartbeat; it clears at check-in', async (t) => {
  t.timeout(60_000);
  const lines: string[] = [];
  const log = { debug() {}, info: (m: string) => lines.push(`info ${m}`), warn: (m: string) => lines.push(`warn ${m}`), error: (m: string) => lines.push(`error ${m}`) };
  const d = await startTestDaemon({ log });
  t.teardown(() => d.dispose());
  const admin = await watch(d.url, { username: 'admin', password: d.adminCredentials!.password }, [topics.alerts, topics.serverState]);
  t.teardown(() => admin.c.endAsync());
  t.not(admin.granted[0], 128, 'an admin may read the alerts');
  const anon = await watch(d.url, {}, [topics.alerts]);
  t.teardown(() => anon.c.endAsync());
  t.is(anon.granted[0], 128, 'a render node may not read the alerts (they name users and hosts)');

  // Floating on many render nodes is normal use: no alert for bob.
  const n1 = await d.client({ user: 'bob', host: 'node1' });
  const n2 = await d.client({ user: 'bob', host: 'node2' });
  await n1.checkout('vray_render');
  await n2.checkout('vray_render');

  const { ws, at } = await doubleUse(t, d);
  const heartbeatMs = 10_000; // ttl 30 s: the SDK beats every 10 s
  const alerts = await until(
    () => {
      const m = admin.last.get(topics.alerts);
      const r = m ? (JSON.parse(m.text) as AlertsResult) : null;
      return r && r.alerts.some((a) => a.kind === 'double-use') ? { r, at: m!.at } : null;
    },
    'the double-use alert on licd/v1/alerts',
    heartbeatMs,
  ).then((x) => x!);
  t.log(`alert on licd/v1/alerts ${alerts.at - at} ms after the floating checkout was answered`);
  t.true(alerts.at - at < heartbeatMs, 'before the next heartbeat');
  const a = alerts.r.alerts.find((x) => x.kind === 'double-use')!;
  t.like(a, { id: 'double-use:vray_render:ann', severity: 'warning', feature: 'vray_render', user: 'ann' });
  t.deepEqual(a.hosts, ['laptop-ann', 'ws-12']);
  t.regex(a.message, /double use of vray_render: user ann holds it borrowed on laptop-ann and floating on ws-12/);
  t.deepEqual(alerts.r.alerts.filter((x) => x.kind === 'double-use').map((x) => x.user), ['ann'], 'bob on two render nodes is no double use');

  // The retained server state carries it too, without the user's or hosts' names.
  const state = await until(() => {
    const s = admin.last.get(topics.serverState);
    const v = s ? (JSON.parse(s.text) as ServerState) : null;
    return v?.alerts?.some((x) => x.kind === 'double-use') ? v : null;
  }, 'the alert in the server state').then((x) => x!);
  const summary = state.alerts!.find((x) => x.kind === 'double-use')!;
  t.like(summary, { severity: 'warning', feature: 'vray_render' });
  t.notRegex(JSON.stringify(state.alerts), /ann|laptop|ws-12/);
  // And the admin op.
  const ad = await d.admin();
  const listed = await ad.request<AlertsResult>('alerts.list', {}, { admin: true });
  t.true(listed.alerts.some((x) => x.id === 'double-use:vray_render:ann'));

  // licctl: status shows it without names, licctl alerts (admins) with them.
  const home = tempDir('licd-home-');
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const env = { HOME: home, XDG_RUNTIME_DIR: home };
  const st = await run(['status', '--broker', d.url], env);
  t.is(st.code, 0, st.stderr);
  t.regex(st.stdout, /^alert \(warning, since .*\): double use of vray_render: one user holds it borrowed and floating on 2 hosts$/m);
  const al = await run(['alerts', '--broker', d.url, '--user', 'admin', '--password-file', d.config.broker.adminPasswordFile], env);
  t.is(al.code, 0, al.stderr);
  t.regex(al.stdout, /^WARNING +double-use +since .* double use of vray_render: user ann holds it borrowed on laptop-ann and floating on ws-12/m);
  const refused = await run(['alerts', '--broker', d.url], env);
  t.not(refused.code, 0, 'not without an admin identity');

  // Check the floating seat in: the alert clears.
  await ws.checkin();
  await until(() => {
    const m = admin.last.get(topics.alerts);
    return m && !(JSON.parse(m.text) as AlertsResult).alerts.some((x) => x.kind === 'double-use');
  }, 'the alert cleared');
  t.false((await ad.request<AlertsResult>('alerts.list', {}, { admin: true })).alerts.some((x) => x.kind === 'double-use'));
  // Logged once when raised, once when cleared.
  t.deepEqual(
    lines.filter((l) => /double use/.test(l)),
    [
      'warn ALERT raised: double use of vray_render: user ann holds it borrowed on laptop-ann and floating on ws-12; one person takes 2 seats (return the borrowed seat, or check in the floating one)',
      'info alert cleared: double use of vray_render: user ann holds it borrowed on laptop-ann and floating on ws-12; one person takes 2 seats (return the borrowed seat, or check in the floating one)',
    ],
  );
});

test('alerts.webhook gets each alert as JSON (a real HTTP server), alerts.command gets it on stdin (a real child process)', async (t) => {
  t.timeout(60_000);
  const got: Array<{ event: string; alert: Alert; ua: string | undefined }> = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (x) => (body += x));
    req.on('end', () => {
      got.push({ ...(JSON.parse(body) as { event: string; alert: Alert }), ua: req.headers['user-agent'] });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => hook.close());
  const out = tempDir('licd-cmd-');
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  // A program, not a shell line: it appends its stdin to a file named by its argument.
  const script = "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>require('fs').appendFileSync(process.argv[1],s))";
  const file = join(out, 'alerts.jsonl');
  const d = await startTestDaemon({
    config: { alerts: { webhook: `http://127.0.0.1:${(hook.address() as { port: number }).port}/licd`, command: [process.execPath, '-e', script, file], timeoutSeconds: 20 } },
  });
  t.teardown(() => d.dispose());
  const { ws } = await doubleUse(t, d);
  await until(() => got.some((g) => g.event === 'raised' && g.alert.kind === 'double-use'), 'the webhook got the alert', 20_000);
  const raised = got.find((g) => g.event === 'raised' && g.alert.kind === 'double-use')!;
  t.like(raised.alert, { id: 'double-use:vray_render:ann', user: 'ann' });
  t.regex(raised.ua ?? '', /^licd\//);
  await until(() => existsSync(file) && readFileSync(file, 'utf8').includes('double-use:vray_render:ann'), 'the command got the alert', 20_000);
  const line = JSON.parse(readFileSync(file, 'utf8').trim().split('\n').find((l) => l.includes('double-use'))!) as { event: string; alert: Alert; server: { version: string } };
  t.is(line.event, 'raised');
  t.is(line.server.version, '0.1.0');
  await ws.checkin();
  await until(() => got.some((g) => g.event === 'cleared' && g.alert.kind === 'double-use'), 'the webhook heard it cleared', 20_000);
  await until(() => readFileSync(file, 'utf8').includes('"event":"cleared"'), 'the command heard it cleared', 20_000);
});

test('/healthz: 200 while serving, 503 naming the dongle once it is absent past its grace, 200 again when it is back', async (t) => {
  t.timeout(60_000);
  const d = await startTestDaemon({ config: { leases: { dongleGraceSeconds: 0 } } });
  t.teardown(() => d.dispose());
  const health = async () => {
    const r = await fetch(`${d.http!.url}/healthz`);
    return { status: r.status, body: (await r.json()) as { status: string; reasons?: string[] } };
  };
  t.like(await health(), { status: 200, body: { status: 'ok' } });
  d.opener.emulator!.unplug();
  const down = await until(async () => {
    const h = await health();
    return h.status === 503 ? h : null;
  }, '/healthz 503').then((x) => x!);
  t.is(down.body.status, 'unavailable');
  t.regex(down.body.reasons!.join('\n'), /the license dongle is absent .* past its grace of 0 s/);
  // The alert says the same.
  await until(() => d.alerts.active().some((a) => a.kind === 'dongle-absent' && a.severity === 'critical'), 'the dongle-absent alert');
  const m = await (await fetch(`${d.http!.url}/metrics`)).text();
  t.regex(m, /^licd_dongle_present 0$/m);
  t.regex(m, /^licd_alerts\{kind="dongle-absent",severity="critical"\} 1$/m);
  d.opener.emulator!.plug();
  await until(async () => (await health()).status === 200, '/healthz 200 again');
  await until(() => !d.alerts.active().some((a) => a.kind === 'dongle-absent'), 'the alert cleared');
});

test('a daemon on an injected clock: a feature at its limit for alerts.atLimitMinutes, then the license ending within 30 and 7 days', async (t) => {
  t.timeout(60_000);
  const clock = new ManualClock(Date.now());
  const d = await startTestDaemon({ clock, config: { alerts: { atLimitMinutes: 1 } } });
  t.teardown(() => d.dispose());
  const c = await d.client({ user: 'ann', host: 'ws-1' });
  await c.checkout('nuke_i', { ttl: 3600 });
  // The evaluation the checkout causes may run up to 200 ms later; run one now, before the clock moves.
  d.alerts.evaluate();
  t.false(d.alerts.active().some((a) => a.kind === 'at-limit'), 'not at once');
  clock.advance(61_000);
  const atLimit = await until(() => d.alerts.active().find((a) => a.id === 'at-limit:nuke_i'), 'the at-limit alert (time rules run every 5 s)');
  t.regex(atLimit!.message, /nuke_i has had no free seat since .* \(1 of 1 in use: 1 leased, 0 borrowed\)/);

  const ends = d.entitlement.features.find((f) => f.name === 'vray_render')!.expires!;
  clock.t = ends - 29 * 86_400_000;
  const soon = await until(() => d.alerts.active().find((a) => a.id === 'expiry:vray_render'), 'the 30-day expiry alert');
  t.like(soon, { severity: 'info', stage: 30 });
  clock.t = ends - 6 * 86_400_000;
  await until(() => d.alerts.active().find((a) => a.id === 'expiry:vray_render' && a.severity === 'warning'), 'the 7-day stage');
  const m = await (await fetch(`${d.http!.url}/metrics`)).text();
  t.regex(m, /^licd_alerts\{kind="expiry",severity="warning"\} 3$/m, 'the three features of the demo license that end');
  t.regex(m, new RegExp(`^licd_feature_expiry_timestamp_seconds\\{feature="vray_render"\\} ${Math.floor(ends / 1000)}$`, 'm'));
});
