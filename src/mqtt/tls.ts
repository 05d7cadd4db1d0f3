/**
 * TLS for MQTT: the broker certificate a box makes for itself at first start, its fingerprint,
 * and the client side that trusts a server by a pinned fingerprint or by a CA, refusing at the
 * handshake, before any MQTT byte (and so before any password) is sent.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { LicdError } from '../core/errors.ts';

/** How a client decides that the server it reached over mqtts:// is the right one. */
export interface TlsTrust {
  /**
   * SHA-256 of the server certificate (SHA256:AB:CD:... or 64 hex digits). Wins over `ca`. Several
   * pins separated by commas (one per box of a broker list): the server must present one of them.
   */
  fingerprint?: string | undefined;
  /** PEM of the CA (or the self-signed certificate itself) to verify the server with. */
  ca?: string | Buffer | undefined;
}

/** The fingerprint as licd shows it: "SHA256:" and the 32 bytes of SHA-256(DER) in hex pairs. */
export function certFingerprint(pem: string | Buffer): string {
  return `SHA256:${new X509Certificate(pem).fingerprint256}`;
}

/** Reads a fingerprint as a user may type it: SHA256:ab:cd..., AB:CD..., or 64 hex digits. */
export function parseFingerprint(s: string, from: string): string {
  const hex = s.trim().replace(/^sha-?256:/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new LicdError('CONFIG_INVALID', `the fingerprint from ${from} must be SHA256: followed by 32 hex pairs (as licd prints it, or openssl x509 -fingerprint -sha256 -noout -in cert.pem), got ${JSON.stringify(s.slice(0, 120))}`);
  }
  return `SHA256:${hex.toUpperCase().match(/../g)!.join(':')}`;
}

/** Names and addresses this machine answers to, for the certificate's subjectAltName. */
export function localNames(): { dns: string[]; ip: string[] } {
  const h = hostname().replace(/[^A-Za-z0-9.-]/g, '') || 'licd';
  const dns = [...new Set([h, h.includes('.') ? null : `${h}.local`, 'localhost'].filter((x): x is string => Boolean(x)))];
  const ip = new Set(['127.0.0.1', '::1']);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      // Link-local IPv6 needs a zone to be used at all; no client names the box by it.
      if (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80:')) continue;
      ip.add(a.address);
    }
  }
  return { dns, ip: [...ip] };
}

/**
 * Makes a P-256 key and a self-signed certificate (10 years) with the openssl command, unless the
 * certificate is already there. Written under temporary names and renamed, the certificate last:
 * a crash leaves either nothing usable (made again next start) or both files.
 * Returns whether it made them.
 */
export function ensureSelfSignedCert(o: { certFile: string; keyFile: string; names?: { dns: string[]; ip: string[] } }): boolean {
  if (existsSync(o.certFile)) {
    if (!existsSync(o.keyFile)) {
      throw new LicdError('CONFIG_INVALID', `the TLS certificate ${o.certFile} is there but its key ${o.keyFile} is not; restore the key, or delete the certificate so that licd makes a new pair (clients that pinned the old fingerprint must pin the new one)`);
    }
    return false;
  }
  const names = o.names ?? localNames();
  // The key's directory first, private: when both files share it, the key is never readable to others.
  mkdirSync(dirname(o.keyFile), { recursive: true, mode: 0o700 });
  mkdirSync(dirname(o.certFile), { recursive: true, mode: 0o755 });
  const tmpKey = `${o.keyFile}.new`;
  const tmpCert = `${o.certFile}.new`;
  const san = [...names.dns.map((d) => `DNS:${d}`), ...names.ip.map((i) => `IP:${i}`)].join(',');
  const cn = (names.dns[0] ?? 'licd').slice(0, 64);
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', '3650',
        '-subj', `/O=licd/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-keyout', tmpKey, '-out', tmpCert],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    chmodSync(tmpKey, 0o600);
  } catch (e) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = err.code === 'ENOENT' ? 'the openssl command is not installed (Debian: apt-get install openssl)' : String(err.stderr ?? err.message).trim().split('\n').slice(-2).join(' ');
    throw new LicdError('CONFIG_INVALID', `cannot make the TLS certificate ${o.certFile}: ${why}; or give your own with broker.tls.certFile and broker.tls.keyFile`);
  }
  renameSync(tmpKey, o.keyFile);
  renameSync(tmpCert, o.certFile);
  return true;
}

/** The default place of the embedded broker's certificate and key. */
export function defaultTlsFiles(dataDir: string): { certFile: string; keyFile: string } {
  return { certFile: join(dataDir, 'tls', 'cert.pem'), keyFile: join(dataDir, 'tls', 'key.pem') };
}

/**
 * Opens the TLS connection of an mqtts:// URL and judges the server before mqtt.js's CONNECT
 * (which carries the password) leaves: node holds data written during the handshake until the
 * 'secureConnect' listeners have run, and a refused socket is destroyed in one of them.
 * A pinned fingerprint must match exactly; without a pin the chain must verify against `ca` or
 * the system's CA store, host name included.
 */
export function openTls(url: string, trust: TlsTrust): TLSSocket {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port ? Number(u.port) : 8883;
  const pins = trust.fingerprint ? trust.fingerprint.split(',').map((p) => parseFingerprint(p, 'the client options')) : null;
  const pin = pins?.join(' or ') ?? null;
  const sock = tlsConnect({
    host,
    port,
    ...(isIP(host) === 0 ? { servername: host } : {}),
    ...(trust.ca ? { ca: trust.ca } : {}),
    // Judged below, in the one place that knows about pins.
    rejectUnauthorized: false,
    // Nagle against delayed ACK costs ~40 ms per request/answer (see connect.ts).
    noDelay: true,
  } as ConnectionOptions);
  sock.once('secureConnect', () => {
    const cert = sock.getPeerCertificate();
    const seen = cert?.fingerprint256 ? `SHA256:${cert.fingerprint256}` : '(none)';
    if (pins) {
      if (!pins.includes(seen)) {
        sock.destroy(
          new LicdError(
            'TLS_MISMATCH',
            `the server at ${url} presented certificate ${seen} but ${pin} was expected; nothing was sent to it. Either someone is in between, or the box has a new certificate: compare with the fingerprint the box shows (its console, licctl status on the box, or openssl x509 -fingerprint -sha256 -noout -in /etc/licd/tls/cert.pem there) before changing the pin (--fingerprint, LICD_TLS_FINGERPRINT or "fingerprint" in the client config)`,
            { expected: pin, presented: seen },
          ),
        );
      }
      return;
    }
    if (!sock.authorized) {
      sock.destroy(
        new LicdError(
          'TLS_UNTRUSTED',
          `the server at ${url} presented certificate ${seen}, which ${trust.ca ? 'the given CA' : 'no CA of this system'} vouches for (${String(sock.authorizationError)}); nothing was sent to it. If this is your licd box, check that the box shows this same fingerprint (its console, or licctl status on the box) and pin it: --fingerprint ${seen} (or LICD_TLS_FINGERPRINT, or "fingerprint" in the client config); or give your studio's CA with --ca FILE`,
          { presented: seen, reason: String(sock.authorizationError) },
        ),
      );
    }
  });
  return sock;
}
