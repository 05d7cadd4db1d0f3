/**
 * licd's own HTTP server (node:http): /metrics and /healthz today, the web page and its WebSocket
 * bridge later (issue 16). A small route table: a path and method map to a handler that returns
 * the answer; anything else is 404 (no such path) or 405 (the path exists, not with that method).
 *
 * Limits, because the listener may face the LAN: headers above MAX_HEADER_BYTES are refused by
 * node (431), a request body is refused unless the route takes one (413 above its limit), a
 * request must arrive whole within REQUEST_TIMEOUT_MS, and at most MAX_CONNECTIONS sockets are
 * open at once. No stack trace leaves the server: a handler that throws answers 500 with a plain
 * sentence, and the cause goes to the log.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { LicdError } from '../core/errors.ts';
import type { Log } from '../core/service.ts';

export const MAX_HEADER_BYTES = 8 * 1024;
export const REQUEST_TIMEOUT_MS = 10_000;
export const MAX_CONNECTIONS = 64;

export interface HttpAnswer {
  status: number;
  /** Content-Type; default text/plain; charset=utf-8. */
  type?: string;
  body: string | Uint8Array;
  headers?: Record<string, string>;
}

export interface HttpRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** The request body (empty unless the route sets maxBodyBytes). */
  body: Buffer;
  remote: string;
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** A body is accepted up to this many bytes (default 0: a request with a body is refused). */
  maxBodyBytes?: number;
  /** Left out of the list a 404 gives (the web page's hashed assets). */
  unlisted?: boolean;
  handle(req: HttpRequest): HttpAnswer | Promise<HttpAnswer>;
}

/** Takes over a request before routing (the WebSocket bridge's upgrade will hang here too). */
export type UpgradeHandler = (req: IncomingMessage, socket: Socket, head: Buffer) => void;

export interface HttpOptions {
  host: string;
  port: number;
  log: Log;
  /** Says where the setting lives, for a listen error: 'http.port in the config file or LICD_HTTP_PORT'. */
  setting?: string;
  /** HTTPS with this certificate and key (PEM), e.g. the box's broker certificate (issue 16). */
  tls?: { cert: Buffer; key: Buffer };
}

export class HttpServer {
  private readonly routes = new Map<string, Map<string, Route>>();
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private upgrade: UpgradeHandler | null = null;

  constructor(private readonly opts: HttpOptions) {}

  /** Adds a route; a HEAD of a GET route is answered without its body. */
  route(r: Route): this {
    let byMethod = this.routes.get(r.path);
    if (!byMethod) this.routes.set(r.path, (byMethod = new Map()));
    byMethod.set(r.method, r);
    return this;
  }

  onUpgrade(h: UpgradeHandler): void {
    this.upgrade = h;
  }

  /** Listens; a port that cannot be had is a CONFIG_INVALID naming host:port and the setting. */
  async start(): Promise<{ host: string; port: number; url: string }> {
    // Timeouts are checked every 2 s (node's default is 30 s), so a slow sender is cut near REQUEST_TIMEOUT_MS.
    const options = { maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 2_000 };
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.serve(req, res);
    const server: Server = this.opts.tls ? createTlsServer({ ...options, cert: this.opts.tls.cert, key: this.opts.tls.key }, handler) : createServer(options, handler);
    server.maxConnections = MAX_CONNECTIONS;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('clientError', (e: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable) return socket.destroy();
      const status = e.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (this.upgrade) this.upgrade(req, socket, head);
      else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: unknown) => reject(this.listenError(e) ?? e);
      server.once('error', onError);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (e) => this.opts.log.error('the HTTP server failed', { error: String(e) }));
    this.server = server;
    const a = server.address() as AddressInfo;
    const host = a.address.includes(':') ? `[${a.address}]` : a.address;
    return { host: a.address, port: a.port, url: `${this.opts.tls ? 'https' : 'http'}://${host}:${a.port}` };
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      for (const sock of this.sockets) sock.destroy();
    });
  }

  private listenError(e: unknown): LicdError | null {
    const x = e as NodeJS.ErrnoException;
    if (x?.syscall !== 'listen') return null;
    const { host, port } = this.opts;
    const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const setting = this.opts.setting ?? 'http.port in the config file or LICD_HTTP_PORT';
    const cause =
      x.code === 'EADDRINUSE'
        ? `${where} is already in use by another program (another licd, or an exporter?)`
        : x.code === 'EACCES'
          ? `licd may not listen on ${where} (ports below 1024 need privileges)`
          : x.code === 'EADDRNOTAVAIL'
            ? `${host} is not an address of this machine`
            : `${where}: ${x.code ?? x.message}`;
    const fix = x.code === 'EADDRNOTAVAIL' ? 'set http.host (LICD_HTTP_HOST) to an address of this machine' : `stop that program, or give licd's HTTP server another port with ${setting} (or http.enabled false)`;
    return new LicdError('CONFIG_INVALID', `the HTTP server (metrics, health) cannot listen: ${cause}; ${fix}`, { listen: where, errno: String(x.code), field: 'http.port' });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let path: string;
    let query: URLSearchParams;
    try {
      const u = new URL(req.url ?? '/', 'http://licd');
      path = u.pathname;
      query = u.searchParams;
    } catch {
      return this.send(res, req, { status: 400, body: 'bad request target\n' });
    }
    const byMethod = this.routes.get(path);
    const method = req.method ?? 'GET';
    const route = byMethod?.get(method) ?? (method === 'HEAD' ? byMethod?.get('GET') : undefined);
    if (!byMethod) {
      const listed = [...this.routes].filter(([, m]) => [...m.values()].some((r) => !r.unlisted)).map(([p]) => p);
      return this.send(res, req, { status: 404, body: `no such path: ${path.slice(0, 200)} (licd serves ${listed.join(', ')})\n` });
    }
    if (!route) {
      const allow = [...byMethod.keys(), ...(byMethod.has('GET') ? ['HEAD'] : [])].join(', ');
      return this.send(res, req, { status: 405, body: `${method} is not allowed on ${path}; use ${allow}\n`, headers: { Allow: allow } });
    }
    let body: Buffer;
    try {
      body = await readBody(req, route.maxBodyBytes ?? 0);
    } catch (e) {
      return this.send(res, req, { status: 413, body: `${(e as Error).message}\n`, headers: { Connection: 'close' } });
    }
    let answer: HttpAnswer;
    try {
      answer = await route.handle({ method, path, query, headers: req.headers, body, remote: req.socket.remoteAddress ?? '' });
    } catch (e) {
      this.opts.log.error('an HTTP request failed', { path, error: String((e as Error)?.stack ?? e) });
      answer = { status: 500, body: 'internal error; the licd log says why\n' };
    }
    this.send(res, req, answer);
  }

  private send(res: ServerResponse, req: IncomingMessage, a: HttpAnswer): void {
    const body = typeof a.body === 'string' ? Buffer.from(a.body) : a.body;
    res.writeHead(a.status, {
      'Content-Type': a.type ?? 'text/plain; charset=utf-8',
      'Content-Length': String(body.length),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...a.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** Reads a request body of at most `max` bytes; refuses a larger one without reading it all. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (max === 0 && (declared > 0 || chunked)) return Promise.reject(new Error(`${req.method} ${req.url ?? ''} takes no request body`));
  if (declared > max) return Promise.reject(new Error(`the request body of ${declared} bytes is over the limit of ${max} bytes`));
  if (max === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > max) {
        req.destroy();
        reject(new Error(`the request body is over the limit of ${max} bytes`));
      } else parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}
