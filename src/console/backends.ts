/** The console's adapters: credentials and lock-out in files, the audit log, licd's admin API over MQTT, systemd. */
import { spawn } from 'node:child_process';
import { createHash, timingSafeEqual } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LicdError } from '../core/errors.ts';
import { escapeText } from '../core/validate.ts';
import { LicdClient } from '../sdk/client.ts';
import { certFingerprint } from '../mqtt/tls.ts';
import { writeFileAtomic } from '../vendor.ts';
import type { AdminApi, SystemOps } from './commands.ts';
import { describeNetwork, networkFile } from './network.ts';
import type { AuditSink, Credentials, LockoutStore } from './session.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function readSecret(file: string | undefined): string | null {
  if (!file || !existsSync(file)) return null;
  const s = readFileSync(file, 'utf8').trim();
  return s === '' ? null : s;
}

/** The admin password file (as licd and licctl use it) and an optional one-time setup code file; read at each try. */
export function fileCredentials(o: { adminPasswordFile: string; setupCodeFile?: string | undefined }): Credentials {
  const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));
  return {
    check(password) {
      const admin = readSecret(o.adminPasswordFile);
      if (admin && same(password, admin)) return 'admin';
      const setup = readSecret(o.setupCodeFile);
      if (setup && same(password, setup)) return 'setup';
      return null;
    },
  };
}

export function fileLockout(file: string): LockoutStore {
  return {
    load() {
      try {
        const j = JSON.parse(readFileSync(file, 'utf8')) as { failures?: unknown; until?: unknown };
        return { failures: Number.isInteger(j.failures) ? (j.failures as number) : 0, until: typeof j.until === 'number' ? j.until : 0 };
      } catch {
        return { failures: 0, until: 0 };
      }
    },
    save(s) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileAtomic(file, JSON.stringify(s) + '\n', 0o600);
    },
  };
}

/** One JSON line per login and command in `file`, and one escaped line on stderr (the journal). */
export function fileAudit(file: string, line: string): AuditSink {
  return (e) => {
    const entry = { time: new Date().toISOString(), line, ...e };
    try {
      mkdirSync(dirname(file), { recursive: true });
      appendFileSync(file, JSON.stringify(entry) + '\n', { mode: 0o600 });
    } catch (err) {
      process.stderr.write(`licd-console: cannot write the audit log ${file}: ${(err as Error).message}\n`);
    }
    process.stderr.write(`licd-console: ${line}: ${e.event} ${e.ok ? 'ok' : 'FAILED'}${e.detail ? ` ${escapeText(e.detail)}` : ''}\n`);
  };
}

/** The last `n` lines of the audit log (what `export audit` prints). */
export function readAuditTail(file: string, n: number): string[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  return lines.slice(-n);
}

/** licd's admin API through the broker, connecting for each request (licd may be down; the console still works). */
export function mqttAdmin(o: { url: string; adminPasswordFile: string; timeoutMs?: number; brokerCert?: string }): AdminApi {
  return {
    async request<T>(type: string, body: Record<string, unknown> = {}): Promise<T> {
      const password = readSecret(o.adminPasswordFile);
      if (!password) throw new LicdError('FORBIDDEN', `no admin password in ${o.adminPasswordFile}`);
      let c: LicdClient;
      try {
        // The box's own certificate, read at each request (first boot makes it; it may be renewed).
        const tls = o.brokerCert ? { fingerprint: certFingerprint(readFileSync(o.brokerCert)) } : undefined;
        c = await LicdClient.connect({ url: o.url, username: 'admin', password, timeoutMs: o.timeoutMs ?? 5000, ...(tls ? { tls } : {}) });
      } catch (e) {
        throw new Error(`licd is not answering at ${o.url} (${(e as Error).message}); logs, service, network and reboot still work`);
      }
      try {
        return await c.request<T>(type, body, { admin: true, timeoutMs: o.timeoutMs ?? 5000 });
      } finally {
        await c.close();
      }
    },
  };
}

function exec(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', (e) => reject(new Error(`cannot run ${cmd}: ${e.message}`)));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}): ${out.trim().slice(-300)}`))));
    p.stdin.end(input ?? '');
  });
}

/** The appliance: journalctl, systemctl, ip, resolvectl, mosquitto_passwd; fixed argument lists, no shell. */
export function systemdOps(o: { adminPasswordFile: string; mosquittoPasswordFile: string; setupCodeFile?: string | undefined; networkDir?: string }): SystemOps {
  return {
    setNetwork: async (c) => {
      writeFileAtomic(join(o.networkDir ?? '/etc/systemd/network', '50-wired.network'), networkFile(c), 0o644);
      await exec('networkctl', ['reload']);
      await exec('networkctl', ['reconfigure', '--', ...(await lanPorts())]).catch(() => undefined);
      return `network set: ${describeNetwork(c)}`;
    },
    logs: ({ lines, level }) => exec('journalctl', ['-u', 'licd', '-u', 'mosquitto', '-n', String(lines), '--no-pager', '-o', 'short-iso', ...(level ? ['-p', level] : [])]),
    restart: async (s) => {
      await exec('systemctl', ['restart', `${s}.service`]);
      return `${s} restarted`;
    },
    power: async (a) => {
      await exec('systemctl', [a]);
      return a === 'reboot' ? 'rebooting' : 'powering off';
    },
    network: async () => `${await exec('ip', ['-brief', 'address'])}\n${await exec('ip', ['route']).catch((e: Error) => e.message)}\n${await exec('resolvectl', ['dns']).catch((e: Error) => e.message)}`,
    setAdminPassword: async (pw) => {
      await exec('mosquitto_passwd', ['-b', o.mosquittoPasswordFile, 'admin', pw]);
      writeFileAtomic(o.adminPasswordFile, pw + '\n', 0o600);
      await exec('systemctl', ['reload-or-restart', 'mosquitto.service']);
      if (o.setupCodeFile && existsSync(o.setupCodeFile)) writeFileAtomic(o.setupCodeFile, '', 0o600);
      return 'admin password changed (mosquitto reloaded); licctl and the web page use the new one now';
    },
  };
}

/** The wired ports networkd manages (en*, eth*), as `networkctl list` names them. */
async function lanPorts(): Promise<string[]> {
  const out = await exec('networkctl', ['list', '--no-legend', '--no-pager']);
  return out.split('\n').map((l) => l.trim().split(/\s+/)[1] ?? '').filter((n) => /^(en|eth)/.test(n));
}

/** Does nothing but say what it would do, and remember it (tests, and a console on a development machine). */
export function dryRunOps(o: { adminPasswordFile?: string; networkDir?: string } = {}): SystemOps & { calls: string[] } {
  const calls: string[] = [];
  const note = (s: string) => {
    calls.push(s);
    return `(dry run) ${s}`;
  };
  return {
    calls,
    logs: async ({ lines, level }) => note(`journalctl -u licd -u mosquitto -n ${lines}${level ? ` -p ${level}` : ''}`),
    restart: async (s) => note(`systemctl restart ${s}.service`),
    power: async (a) => note(`systemctl ${a}`),
    network: async () => note('ip -brief address; ip route; resolvectl dns'),
    setNetwork: async (c) => {
      // The file is written (into --network-dir) so that what would be applied can be read back.
      if (o.networkDir) writeFileAtomic(join(o.networkDir, '50-wired.network'), networkFile(c), 0o644);
      return note(`networkctl reload (network: ${describeNetwork(c)})`);
    },
    setAdminPassword: async (pw) => {
      if (o.adminPasswordFile) writeFileAtomic(o.adminPasswordFile, pw + '\n', 0o600);
      return note('mosquitto_passwd -b ... admin ***; systemctl reload-or-restart mosquitto.service');
    },
  };
}
