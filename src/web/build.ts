/**
 * Builds the web page (src/web/app: Preact + CSS) with esbuild into a few files: index.html and
 * hashed app-<hash>.js / app-<hash>.css. `npm run build` writes them to dist/web; a daemon run
 * from its sources (tsx, no dist/web) builds them in memory at start (src/web/assets.ts).
 *
 *   tsx src/web/build.ts [outdir]      (default dist/web)
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { typeOf, type WebFile } from './assets.ts';

export type { WebFile };

const APP = fileURLToPath(new URL('./app/', import.meta.url));

/** The page's files, in memory. */
export async function buildPage(): Promise<WebFile[]> {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [join(APP, 'main.tsx')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    minify: true,
    legalComments: 'none',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    write: false,
    outdir: '/out',
    entryNames: 'app-[hash]',
    logLevel: 'silent',
  });
  const files: WebFile[] = out.outputFiles.map((f) => {
    const name = f.path.slice('/out/'.length);
    return { name, type: typeOf(name), body: Buffer.from(f.contents) };
  });
  const js = files.find((f) => f.name.endsWith('.js'))!.name;
  const css = files.find((f) => f.name.endsWith('.css'))?.name;
  const html = readFileSync(join(APP, 'index.html'), 'utf8')
    .replace('<!--css-->', css ? `<link rel="stylesheet" href="/${css}">` : '')
    .replace('<!--js-->', `<script type="module" src="/${js}"></script>`);
  files.push({ name: 'index.html', type: typeOf('index.html'), body: Buffer.from(html) });
  return files;
}

export async function writePage(dir: string): Promise<WebFile[]> {
  const files = await buildPage();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(join(dir, f.name), f.body);
  return files;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2] ?? fileURLToPath(new URL('../../dist/web/', import.meta.url));
  const files = await writePage(dir);
  process.stdout.write(`web page: ${files.map((f) => `${f.name} (${f.body.length} bytes)`).join(', ')} in ${dir}\n`);
}
