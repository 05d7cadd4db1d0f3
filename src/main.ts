/** licd: the license daemon. `npm start` runs it on its embedded defaults. */
import { loadConfig } from './config.ts';
import { isLicdError } from './core/errors.ts';
import { startDaemon } from './daemon/daemon.ts';
import { dongleOpener } from './dongle/open.ts';
import { createLog, lineBuffer } from './log.ts';
import { notifySystemd, startWatchdog } from './daemon/sd-notify.ts';
import { atStartUp, fsFaultError, prepareDataDir, STORE_EXIT, type StoreFault } from './store/faults.ts';
import { vendorFingerprint } from './vendor.ts';

/** licd could not listen on its MQTT or TLS port (in use, or privileged): EX_UNAVAILABLE. */
const EXIT_PORT_UNAVAILABLE = 69;

function usage(): never {
  process.stdout.write(`licd - license daemon

usage: licd [--config FILE]

Without a config file licd runs in development mode: an emulated dongle, a development vendor
key and a demo license under ./data, and the embedded MQTT broker on 127.0.0.1:1883.
TLS (mqtts, 8883): broker.tls.enabled in the config; the certificate is made at first start.
Metrics and health (docs/monitoring.md): http://127.0.0.1:9136/metrics and /healthz.
Environment: LICD_CONFIG, LICD_DATA_DIR, LICD_MQTT_HOST, LICD_MQTT_PORT, LICD_MQTT_URL,
LICD_HTTP_HOST, LICD_HTTP_PORT, LICD_DONGLE (emulated | tcp:HOST:PORT | serial:PATH | hid:VID:PID),
LICD_LOG_LEVEL.
`);
  process.exit(0);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let configFile: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') usage();
    else if (a === '--config' || a === '-c') configFile = argv[++i] ?? null;
    else if (a?.startsWith('--config=')) configFile = a.slice('--config='.length);
    else {
      process.stderr.write(`licd: unknown argument ${a}; see licd --help\n`);
      process.exit(64);
    }
  }
  let config;
  try {
    config = loadConfig({ file: configFile });
  } catch (e) {
    process.stderr.write(`licd: ${(e as Error).message}\n`);
    process.exit(78);
  }
  // Lines go out once per event-loop turn (src/log.ts, lineBuffer); flushed before licd writes to stderr itself.
  const lines = lineBuffer(process.stderr);
  const log = createLog({ level: config.log.level, format: config.log.format, write: lines.write });
  let daemon;
  let opener: Awaited<ReturnType<typeof dongleOpener>> | null = null;
  try {
    prepareDataDir(config.dataDir);
    opener = await dongleOpener(config);
    daemon = await startDaemon({ config, log, openDongle: opener.open });
  } catch (e) {
    await opener?.close().catch(() => {});
    // A file in the data dir that cannot be written (no space, read-only, permission) is said
    // plainly, with the exit code docs/storage.md lists; no stack trace reaches the user.
    const err = isLicdError(e) ? atStartUp(e) : (fsFaultError(e, config.dataDir) ?? null);
    const fault = (err?.details as { fault?: StoreFault } | undefined)?.fault;
    const msg = err ? `${err.code}: ${err.message}` : config.log.level === 'debug' ? String((e as Error)?.stack ?? e) : `${(e as Error)?.message ?? String(e)} (run with LICD_LOG_LEVEL=debug for details)`;
    lines.flush();
    process.stderr.write(`licd: cannot start: ${msg}\n`);
    const listen = (err?.details as { listen?: string } | undefined)?.listen;
    process.exit(fault ? STORE_EXIT[fault] : listen ? EXIT_PORT_UNAVAILABLE : err && (err.code === 'CONFIG_INVALID' || err.code === 'ENTITLEMENT_INVALID') ? 78 : 1);
  }
  const s = daemon.service.status(Date.now());
  const banner = [
    `licd ${daemon.service.serverState().version} listening on ${daemon.url}${daemon.broker ? ' (embedded broker)' : ''}`,
    `dongle: ${daemon.service.dongleView().present ? 'present' : 'ABSENT'} ${daemon.entitlement.dongle.serial}${daemon.entitlement.dongle.emulated ? ' (emulated)' : ''}`,
    `entitlement: ${daemon.entitlement.id} for ${daemon.entitlement.customer}`,
    ...s.features.map((f) => `  ${f.feature.padEnd(18)} ${String(f.total).padStart(4)} seats  ${f.type.padEnd(11)} v${f.version}  ${f.free} free  ${f.borrow.allowed ? `borrow up to ${f.borrow.maxHours} h` : 'no borrowing'}`),
  ];
  // Clients pin the vendor key by this fingerprint before their first borrow (docs/borrowing.md).
  banner.push(`vendor key: ${vendorFingerprint(daemon.vendorPublicKey)} (a client pins it with: licctl borrow --trust-vendor-key ${vendorFingerprint(daemon.vendorPublicKey)})`);
  if (daemon.entitlement.development) banner.push('DEVELOPMENT MODE: dev vendor key, emulated dongle and demo entitlement under ' + config.dataDir);
  if (daemon.http) banner.push(`metrics on ${daemon.http.url}/metrics, health on ${daemon.http.url}/healthz`);
  if (daemon.http && config.web.enabled) banner.push(`web page on ${daemon.http.url}/ (docs/web.md)`);
  if (daemon.adminCredentials) banner.push(`admin user "admin", password in ${config.broker.adminPasswordFile}`);
  if (daemon.tls) {
    banner.push(`TLS${daemon.tls.url ? ` on ${daemon.tls.url}` : ''}: certificate ${daemon.tls.fingerprint}${daemon.tls.made ? ' (made now, first start with TLS)' : ''}`);
    banner.push(`  licctl trusts it with: --fingerprint ${daemon.tls.fingerprint}`);
  }
  process.stdout.write(banner.join('\n') + '\n');
  notifySystemd('READY=1', `STATUS=serving ${s.features.length} features on ${daemon.url}`);
  const watchdog = startWatchdog();

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal: sig });
    notifySystemd('STOPPING=1');
    watchdog?.stop();
    const t = setTimeout(() => process.exit(1), 10_000);
    await daemon.stop();
    await opener?.close();
    clearTimeout(t);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // SIGHUP (systemctl reload): the policy file is read again (docs/policy.md).
  process.on('SIGHUP', () => void daemon.sharing.reload());
}

void main();
