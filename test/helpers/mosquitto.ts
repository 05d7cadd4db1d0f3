/**
 * Runs a real mosquitto for tests, from the config and ACL the appliance ships
 * (systemd/mosquitto/). Only what cannot run here is rewritten: the listener (a free loopback
 * port), the password and ACL file paths, and the log destination, pid file, persistence location
 * and user (an unprivileged, throwaway run). The password file is made by mosquitto_passwd.
 *
 * A missing mosquitto is an error, not a reason to skip: the appliance depends on it
 * (apt-get install -y mosquitto mosquitto-clients).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { startTestDaemon, tempDir, type TestDaemon } from './daemon.ts';
import { LicdClient, type ClientOptions } from '../../src/sdk/client.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The files the appliance ships. */
export const SHIPPED = {
  config: join(REPO, 'systemd/mosquitto/licd.conf'),
  acl: join(REPO, 'systemd/mosquitto/licd.acl'),
  /** The first-boot script that makes the box's TLS key and certificate. */
  tlsSetup: join(REPO, 'systemd/licd-tls-setup'),
};
/** Debian's main config, which includes conf.d/ (where licd.conf goes on the appliance). */
export const DEBIAN_MAIN_CONFIG = '/etc/mosquitto/mosquitto.conf';

const INSTALL_HINT = 'install it (Debian: apt-get install -y mosquitto mosquitto-clients) or set MOSQUITTO / MOSQUITTO_PASSWD to the binaries';

function findBinary(name: string, envVar: string, extraDirs: string[]): string {
  const fromEnv = process.env[envVar];
  if (fromEnv) {
    accessSync(fromEnv, constants.X_OK);
    return fromEnv;
  }
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error(`${name} was not found (looked in PATH and ${extraDirs.join(', ')}): ${INSTALL_HINT}`);
}

/** The mosquitto and mosquitto_passwd binaries; throws a clear error when they are missing. */
export function mosquittoBinaries(): { mosquitto: string; passwd: string } {
  return {
    mosquitto: findBinary('mosquitto', 'MOSQUITTO', ['/usr/sbin', '/usr/local/sbin']),
    passwd: findBinary('mosquitto_passwd', 'MOSQUITTO_PASSWD', ['/usr/bin', '/usr/local/bin']),
  };
}

export interface RenderOptions {
  host: string;
  port: number;
  passwordFile: string;
  aclFile: string;
  /** The TLS listener (shipped as 8883): its port, certificate and key, and the plain listener's password file. */
  tlsPort?: number;
  certFile?: string;
  keyFile?: string;
  plainPasswordFile?: string;
  /** For persistence_location, pid_file and include_dir. */
  dir: string;
  /** Whether this file must carry the listener, password_file and acl_file (the licd drop-in). */
  isLicdConfig: boolean;
}

/**
 * Rewrites a shipped mosquitto config for a test run. Everything else is kept as shipped; a
 * config that lacks what the appliance needs (one listener, password_file, acl_file) is refused.
 */
export function renderConfig(text: string, o: RenderOptions): string {
  const out: string[] = [];
  const seen = { listener: 0, password_file: 0, acl_file: 0 };
  let tlsListener = false;
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const key = words[0];
    switch (key) {
      case 'listener':
        seen.listener++;
        // The shipped TLS listener is 8883; every other listener is the plain one.
        tlsListener = words[1] === '8883';
        if (tlsListener && o.tlsPort === undefined) throw new Error('the config has a TLS listener (8883): give tlsPort, certFile and keyFile');
        out.push(`listener ${tlsListener ? o.tlsPort : o.port} ${o.host}`);
        break;
      case 'certfile':
      case 'keyfile':
        if (!o.certFile || !o.keyFile) throw new Error(`the config has "${key}": give certFile and keyFile`);
        out.push(`${key} ${key === 'certfile' ? o.certFile : o.keyFile}`);
        break;
      case 'password_file':
        seen.password_file++;
        out.push(`password_file ${!tlsListener && seen.listener > 0 && o.plainPasswordFile && words[1]?.endsWith('licd-plain.passwd') ? o.plainPasswordFile : o.passwordFile}`);
        break;
      case 'acl_file':
        seen.acl_file++;
        out.push(`acl_file ${o.aclFile}`);
        break;
      case 'persistence_location':
        out.push(`persistence_location ${o.dir}/`);
        break;
      case 'pid_file':
        out.push(`pid_file ${join(o.dir, 'mosquitto.pid')}`);
        break;
      case 'include_dir':
        out.push(`include_dir ${join(o.dir, 'conf.d')}`);
        break;
      case 'log_dest':
      case 'user':
        out.push(`# (test run) ${line}`);
        break;
      default:
        if (key === 'bind_address' || key === 'port') throw new Error(`mosquitto config uses "${key}"; use a listener line (the tests rewrite listener lines only): ${line}`);
        out.push(line);
    }
  }
  if (o.isLicdConfig && (seen.listener < 1 || seen.password_file !== seen.listener || seen.acl_file !== seen.listener)) {
    throw new Error(`the licd mosquitto config must have a listener and, per listener, one password_file and acl_file line; found ${JSON.stringify(seen)}`);
  }
  return out.join('\n');
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface Mosquitto {
  host: string;
  port: number;
  url: string;
  /** The TLS listener: mqtts:// URL, and the certificate made by the shipped first-boot script. */
  tlsPort: number;
  tlsUrl: string;
  certFile: string;
  /** What licd-tls-setup printed (it ends with the fingerprint). */
  tlsSetupOutput: string;
  /** Passwords of the users in the password file. */
  passwords: { licd: string; admin: string };
  dir: string;
  /** What mosquitto has logged so far (stdout and stderr). */
  output(): string;
  /** Stops mosquitto and removes its directory. */
  stop(): Promise<void>;
  /**
   * Ends the running mosquitto with a signal (SIGTERM: a clean stop, which publishes every
   * client's last will; SIGKILL: none) and waits for it to exit. `relaunch` starts it again.
   */
  kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts mosquitto again on the same port with the same files (after kill). */
  relaunch(): Promise<void>;
}

export interface MosquittoOptions {
  /**
   * Layer the shipped drop-in under Debian's main config (its include_dir), as on the appliance,
   * instead of running the drop-in alone. The main config must exist.
   */
  debianMain?: boolean;
  /** More users for the password file (render-node logins): name -> password. */
  users?: Record<string, string>;
}

/** Starts mosquitto on a free loopback port and waits until it takes connections. */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const bin = mosquittoBinaries();
  const host = '127.0.0.1';
  const dir = tempDir('licd-mosquitto-');
  try {
    const passwords = { licd: randomBytes(18).toString('base64url'), admin: randomBytes(18).toString('base64url') };
    const passwordFile = join(dir, 'licd.passwd');
    const aclFile = join(dir, 'licd.acl');
    copyFileSync(SHIPPED.acl, aclFile);
    // As systemd/README.md says: a plain "user:password" file, hashed in place with -U.
    const more = Object.entries(opts.users ?? {}).map(([name, pw]) => `${name}:${pw}\n`).join('');
    writeFileSync(passwordFile, `licd:${passwords.licd}\nadmin:${passwords.admin}\n${more}`, { mode: 0o600 });
    const hashed = spawnSync(bin.passwd, ['-U', passwordFile], { encoding: 'utf8' });
    if (hashed.status !== 0) throw new Error(`mosquitto_passwd -U failed (${hashed.status}): ${hashed.stderr || hashed.stdout || hashed.error}`);
    if (readFileSync(passwordFile, 'utf8').includes(passwords.licd)) throw new Error('mosquitto_passwd -U left the password in clear');
    // The plain listener's file: licd only (as systemd/README.md derives it), so admins cannot log in there.
    const plainPasswordFile = join(dir, 'licd-plain.passwd');
    writeFileSync(plainPasswordFile, readFileSync(passwordFile, 'utf8').split('\n').filter((l) => l.startsWith('licd:')).join('\n') + '\n', { mode: 0o600 });
    // The box's certificate, made by the shipped first-boot script as on the appliance.
    const tlsDir = join(dir, 'tls');
    const setup = spawnSync(SHIPPED.tlsSetup, [tlsDir], { encoding: 'utf8', env: { ...process.env, LICD_TLS_GROUP: 'no-such-group-here' } });
    if (setup.status !== 0) throw new Error(`licd-tls-setup failed (${setup.status}): ${setup.stderr || setup.stdout || setup.error}`);
    const certFile = join(tlsDir, 'cert.pem');
    const keyFile = join(tlsDir, 'key.pem');

    let lastError: Error | null = null;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort(host);
      let tlsPort = await freePort(host);
      while (tlsPort === port) tlsPort = await freePort(host);
      const render = (text: string, isLicdConfig: boolean) =>
        renderConfig(text, { host, port, tlsPort, passwordFile, plainPasswordFile, aclFile, certFile, keyFile, dir, isLicdConfig });
      let configFile: string;
      const dropIn = render(readFileSync(SHIPPED.config, 'utf8'), true);
      const runAs = `\n# (test run)\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nuser ${userInfo().username}\n`;
      if (opts.debianMain) {
        if (!existsSync(DEBIAN_MAIN_CONFIG)) throw new Error(`${DEBIAN_MAIN_CONFIG} does not exist: ${INSTALL_HINT}`);
        mkdirSync(join(dir, 'conf.d'), { recursive: true });
        writeFileSync(join(dir, 'conf.d', 'licd.conf'), dropIn);
        configFile = join(dir, 'mosquitto.conf');
        writeFileSync(configFile, render(readFileSync(DEBIAN_MAIN_CONFIG, 'utf8'), false) + runAs);
      } else {
        configFile = join(dir, 'licd.conf');
        writeFileSync(configFile, dropIn + runAs);
      }
      const started = await launch(bin.mosquitto, configFile, host, port, passwords.licd);
      if ('error' in started) {
        lastError = started.error;
        if (/address already in use/i.test(started.error.message)) continue;
        break;
      }
      let { child, output } = started;
      let stopped = false;
      return {
        host,
        port,
        url: `mqtt://${host}:${port}`,
        tlsPort,
        tlsUrl: `mqtts://${host}:${tlsPort}`,
        certFile,
        tlsSetupOutput: setup.stdout,
        passwords,
        dir,
        output: () => output(),
        async stop() {
          if (stopped) return;
          stopped = true;
          await terminate(child);
          rmSync(dir, { recursive: true, force: true });
        },
        async kill(signal) {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          child.kill(signal);
          await gone;
        },
        async relaunch() {
          // The port was ours a moment ago; a just-closed listener may need a few tries.
          for (let i = 0; ; i++) {
            const again = await launch(bin.mosquitto, configFile, host, port, passwords.licd);
            if (!('error' in again)) {
              const before = output();
              child = again.child;
              output = () => before + again.output();
              return;
            }
            if (i >= 20) throw again.error;
            await new Promise((r) => setTimeout(r, 250));
          }
        },
      };
    }
    throw lastError ?? new Error('mosquitto did not start');
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function launch(
  binary: string,
  configFile: string,
  host: string,
  port: number,
  licdPassword: string,
): Promise<{ child: ChildProcess; output: () => string } | { error: Error }> {
  const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
  child.once('error', (e) => (exited = `could not run: ${e.message}`));
  const deadline = Date.now() + 10_000;
  // Ready means: it takes an MQTT connection and knows the licd user (the password file loaded).
  for (;;) {
    if (exited) return { error: new Error(`mosquitto ${exited} before it took connections (${configFile}):\n${log}`) };
    try {
      const c = await mqtt.connectAsync(`mqtt://${host}:${port}`, {
        clientId: `probe-${randomBytes(4).toString('hex')}`,
        username: 'licd',
        password: licdPassword,
        reconnectPeriod: 0,
        connectTimeout: 1000,
      });
      await c.endAsync();
      return { child, output: () => log };
    } catch (e) {
      if (Date.now() > deadline) {
        await terminate(child);
        return { error: new Error(`mosquitto did not take connections on ${host}:${port} within 10 s (${(e as Error).message}):\n${log}`) };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

/** A licd in external-broker mode on a test mosquitto, plus admin clients with the admin password. */
export interface ExternalDaemon {
  mosquitto: Mosquitto;
  daemon: TestDaemon;
  url: string;
  client(o?: Partial<ClientOptions>): Promise<LicdClient>;
  admin(o?: Partial<ClientOptions>): Promise<LicdClient>;
  /** Stops licd (closing its clients), then mosquitto. */
  dispose(): Promise<void>;
}

export async function startExternalDaemon(
  opts: { config?: Record<string, unknown>; protocolVersion?: 4 | 5; mosquitto?: Mosquitto } = {},
): Promise<ExternalDaemon> {
  const mosq = opts.mosquitto ?? (await startMosquitto());
  let daemon: TestDaemon;
  try {
    daemon = await startTestDaemon({
      config: {
        mqtt: { broker: 'external', url: mosq.url, username: 'licd', password: mosq.passwords.licd, protocolVersion: opts.protocolVersion ?? 4 },
        ...opts.config,
      },
    });
  } catch (e) {
    const output = mosq.output();
    // A mosquitto the caller gave stays up: the caller may try again.
    if (!opts.mosquitto) await mosq.stop();
    throw new Error(`licd did not start against mosquitto: ${(e as Error).message}\nmosquitto log:\n${output}`);
  }
  const admins: LicdClient[] = [];
  return {
    mosquitto: mosq,
    daemon,
    url: mosq.url,
    client: (o = {}) => daemon.client(o),
    async admin(o = {}) {
      // Admins log in on the TLS listener only (the plain one's password file has no admin).
      const c = await LicdClient.connect({ url: mosq.tlsUrl, tls: { ca: readFileSync(mosq.certFile) }, timeoutMs: 5000, username: 'admin', password: mosq.passwords.admin, ...o });
      admins.push(c);
      return c;
    },
    async dispose() {
      for (const c of admins) await c.close({ checkin: false }).catch(() => {});
      await daemon.dispose();
      await mosq.stop();
    },
  };
}
