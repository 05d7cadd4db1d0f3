/**
 * The web page's files on licd's HTTP server (docs/web.md): GET / is index.html (never cached),
 * GET /app-<hash>.js and .css are the built assets (cached for a year: their names change with
 * their content). Only these exact paths exist (no file system lookup per request, so no path can
 * reach outside the page), each gzipped once at start and sent gzipped to a browser that accepts it.
 *
 * Where the files come from: dist/web (written by `npm run build`); a daemon run from its sources
 * (tsx) builds them in memory with esbuild, at the first request for /. Without either, / says how to build them.
 * The builder (src/web/build.ts, esbuild: a dev dependency) is not part of the compiled daemon.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Log } from '../core/service.ts';
import type { HttpAnswer, HttpRequest, HttpServer } from '../http/server.ts';

export interface WebFile {
  name: string;
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

export function typeOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return TYPES[name.slice(dot)] ?? 'application/octet-stream';
}

/** Content-Security-Policy of the page: only its own scripts, styles and WebSocket. */
export const PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** dist/web beside the sources (src/web -> ../../dist/web) or beside the compiled daemon (dist/src/web -> ../../web). */
function builtDir(): string | null {
  for (const rel of FROM_SOURCES ? ['../../dist/web/'] : ['../../web/', '../../dist/web/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return null;
}

export async function loadPage(log: Log): Promise<{ files: WebFile[]; from: string } | { error: string }> {
  if (FROM_SOURCES) {
    // From the sources: build it, so the page matches the code (under a second).
    try {
      // Not a literal: the compiled daemon (no esbuild installed) never refers to the builder.
      const builder = './build.ts';
      const { buildPage } = (await import(builder)) as { buildPage: () => Promise<WebFile[]> };
      return { files: await buildPage(), from: 'built from src/web/app' };
    } catch (e) {
      log.warn('web: cannot build the page from its sources', { error: (e as Error).message });
    }
  }
  const dir = builtDir();
  if (dir) {
    const files = readdirSync(dir).map((name) => ({ name, type: typeOf(name), body: readFileSync(join(dir, name)) }));
    return { files, from: dir };
  }
  return { error: 'the web page is not built: run `npm run build` in the licd directory (it writes dist/web), then restart licd' };
}

function accepts(req: HttpRequest): boolean {
  const ae = req.headers['accept-encoding'];
  return typeof ae === 'string' && /\bgzip\b/.test(ae);
}

/**
 * Adds the page's routes. The page is made (built from the sources, or read from dist/web) at the
 * first request for /, not at start: a daemon nobody opens the page of (every test, a bench)
 * never pays for the build. Then / and one route per asset, each gzipped once.
 */
export function addPageRoutes(http: HttpServer, log: Log, server: string | null = null): void {
  let loading: Promise<((req: HttpRequest) => HttpAnswer) | string> | null = null;
  const load = () =>
    (loading ??= loadPage(log).then((page) => {
      if ('error' in page) {
        log.warn(`web: ${page.error}`);
        return page.error;
      }
      log.info('web: the page is ready', { from: page.from, files: page.files.length });
      let index: ((req: HttpRequest) => HttpAnswer) | null = null;
      for (const file of page.files) {
        const isIndex = file.name === 'index.html';
        // A box of a cluster has its topics under licd/v1/s/<server> (docs/scale-out.md): the page
        // reads its server id from this tag (src/web/app/link.ts). The id is [a-z0-9-] (config).
        const f = isIndex && server !== null ? { ...file, body: Buffer.from(file.body.toString('utf8').replace('<title>', `<meta name="licd-server" content="${server.replace(/[^a-z0-9-]/g, '')}">\n<title>`)) } : file;
        const gz = gzipSync(f.body, { level: 9 });
        const headers: Record<string, string> = isIndex
          ? { 'Cache-Control': 'no-store', 'Content-Security-Policy': PAGE_CSP, 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer' }
          : { 'Cache-Control': 'public, max-age=31536000, immutable' };
        const handle = (req: HttpRequest): HttpAnswer =>
          accepts(req)
            ? { status: 200, type: f.type, body: gz, headers: { ...headers, 'Content-Encoding': 'gzip', Vary: 'Accept-Encoding' } }
            : { status: 200, type: f.type, body: f.body, headers: { ...headers, Vary: 'Accept-Encoding' } };
        if (isIndex) index = handle;
        else http.route({ method: 'GET', path: `/${f.name}`, handle, unlisted: true });
      }
      return index ?? 'the web page has no index.html: run `npm run build` again';
    }).catch((e: unknown) => {
      log.error('web: the page cannot be read', { error: (e as Error).message });
      return `the web page cannot be read (${(e as Error).message}); the licd log says more`;
    }));
  http.route({
    method: 'GET',
    path: '/',
    handle: async (req) => {
      const page = await load();
      return typeof page === 'string' ? { status: 503, body: `${page}\n` } : page(req);
    },
  });
}

/** The page's size as a browser gets it: every file gzipped, in bytes (the budget is 200 KB). */
export function gzippedSize(files: WebFile[]): number {
  return files.reduce((n, f) => n + gzipSync(f.body, { level: 9 }).length, 0);
}
