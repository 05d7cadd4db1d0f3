/**
 * The vendor's activation service (`licctl vendor serve`, docs/activation.md): one node:http
 * server. POST /v1/activate with an activation request (JSON) answers 200 with the license (a
 * signed entitlement envelope); a refusal answers 4xx with {"error": {code, message}}. The specs
 * are read again for every request, so the vendor edits them without a restart.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLicdError, LicdError } from '../core/errors.ts';
import type { Ed25519 } from '../core/ports.ts';
import { issueActivationLicense, type VendorKeyFile } from '../vendor.ts';
import { loadSpecs } from './specs.ts';

export const ACTIVATE_PATH = '/v1/activate';
const MAX_REQUEST_BYTES = 64 * 1024;

export interface ActivationServiceOptions {
  key: VendorKeyFile;
  specs: string;
  ed: Ed25519;
  host: string;
  port: number;
  allowEmulated?: boolean;
  now?: () => number;
  /** One line per answer (the CLI prints it). */
  log?: (line: string) => void;
}

export interface ActivationService {
  url: string;
  server: Server;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', connection: 'close' });
  res.end(text);
}

function refuse(res: ServerResponse, status: number, e: LicdError): void {
  send(res, status, { error: e.toJSON() });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw new LicdError('PAYLOAD_TOO_LARGE', `the request is over ${MAX_REQUEST_BYTES} bytes; send the activation request file as it is`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function startActivationService(o: ActivationServiceOptions): Promise<ActivationService> {
  const now = o.now ?? Date.now;
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== ACTIVATE_PATH) return refuse(res, 404, new LicdError('BAD_REQUEST', `no such path ${JSON.stringify(path)}; POST the activation request to ${ACTIVATE_PATH}`));
      if (req.method !== 'POST') return refuse(res, 405, new LicdError('BAD_REQUEST', `${req.method} is not allowed here; POST the activation request to ${ACTIVATE_PATH}`));
      let json: unknown;
      try {
        const body = await readBody(req);
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          throw new LicdError('BAD_JSON', 'the request body is not JSON; POST the activation request file (licctl activate request --out FILE) as it is');
        }
        const { license, request, body: issued } = issueActivationLicense(json, loadSpecs(o.specs), o.key, o.ed, { now: now(), allowEmulated: o.allowEmulated ?? false });
        o.log?.(`issued ${issued.id} to dongle ${request.dongle.serial} (box ${request.box.hostName}, counter ${request.counter}): ${issued.features.map((f) => `${f.name} x${f.seats}`).join(', ')}`);
        send(res, 200, license);
      } catch (e) {
        const err = isLicdError(e) ? e : new LicdError('INTERNAL', `internal error: ${(e as Error)?.message ?? String(e)}`);
        // A spec the vendor has to fix is the service's fault (500); the rest is the request's.
        const status = err.code === 'CONFIG_INVALID' || err.code === 'INTERNAL' ? 500 : err.code === 'PAYLOAD_TOO_LARGE' ? 413 : 400;
        o.log?.(`refused (${err.code}): ${err.message}`);
        refuse(res, status, err);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
