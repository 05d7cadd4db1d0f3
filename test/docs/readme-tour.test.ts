/**
 * Issue 11: the README's quick tour, run as written by a new user, against a daemon on a
 * non-default port and data dir, set up only as the README says ("Another port or data dir"):
 * LICD_BROKER in the client shell and the daemon's admin password file. The client starts with an
 * empty home (nothing pinned, nothing borrowed). Each line of the tour block is run through the real
 * licctl; what a line's comment promises is what the test expects (a held seat, exit code 3, the
 * wizard on a terminal).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, licctl, ROOT, run, startDaemonProcess, type Proc } from '../helpers/procs.ts';

test.after.always(killAll);

/** Splits a shell line into words: whitespace, '...' and "..." (what the tour uses). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "'" || ch === '"') {
      const end = line.indexOf(ch, i + 1);
      if (end < 0) throw new Error(`unclosed quote in ${line}`);
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (/\s/.test(ch)) {
      if (cur !== null) words.push(cur);
      cur = null;
    } else cur = (cur ?? '') + ch;
  }
  if (cur !== null) words.push(cur);
  return words;
}

function tourLines(): Array<{ argv: string[]; comment: string; text: string }> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('<!-- tour');
  const block = readme.slice(readme.indexOf('```sh\n', at) + 6, readme.indexOf('```', readme.indexOf('```sh\n', at) + 6));
  return block
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((text) => {
      const hash = text.search(/\s#\s/);
      const cmd = hash < 0 ? text : text.slice(0, hash);
      const comment = hash < 0 ? '' : text.slice(hash).replace(/^\s*#\s*/, '');
      const words = shellWords(cmd);
      if (words.slice(0, 4).join(' ') !== 'npm run licctl --') throw new Error(`a tour line that is not "npm run licctl -- ...": ${text}`);
      return { argv: words.slice(4), comment, text };
    });
}

/** The wizard on a real terminal (socat's pty): trusts the key when asked, takes 1 seat of the first product, defaults after. */
async function wizardOnTerminal(argv: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const p = spawn('socat', ['-', `EXEC:${process.execPath} ${join(ROOT, 'bin', 'licctl.mjs')} ${argv.join(' ')},pty,setsid,ctty,stderr,echo=0`], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let answered = 0;
  let gaveCount = false;
  const answer = () => {
    // Without the terminal's cursor codes (readline's prompt ends with some).
    const clean = out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
    const prompt = /([^\n]*[:?] ?)$/.exec(clean)?.[1];
    if (!prompt || out.length === answered) return;
    answered = out.length;
    let reply = '';
    if (/trust/i.test(prompt) && /yes\/no/.test(prompt)) reply = 'yes';
    else if (!gaveCount && /\[0\]: $/.test(prompt)) {
      reply = '1';
      gaveCount = true;
    }
    p.stdin.write(reply + '\n');
  };
  let timer: NodeJS.Timeout | undefined;
  const onData = (x: Buffer) => {
    out += x.toString();
    clearTimeout(timer);
    // Answer once the output has settled on a prompt.
    timer = setTimeout(answer, 300);
  };
  p.stdout.on('data', onData);
  p.stderr.on('data', onData);
  const code = await new Promise<number | null>((r) => p.on('close', (c) => r(c)));
  clearTimeout(timer);
  return { code, out };
}

test('the README quick tour works as written on a non-default port and data dir', async (t) => {
  t.timeout(240_000);
  const dataDir = tempDir('licd-tour-data-');
  const home = tempDir('licd-tour-home-');
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  // "LICD_MQTT_PORT=1884 LICD_DATA_DIR=/tmp/licd-data npm start" (a free port instead of 1884).
  const d = startDaemonProcess({ LICD_DATA_DIR: dataDir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/, 60_000))[1]!;
  t.not(url, 'mqtt://127.0.0.1:1883');
  // A new user's shell: an empty home, "export LICD_BROKER=..." as the README says, nothing else.
  const env: Record<string, string> = { HOME: home, LICD_BROKER: url, XDG_RUNTIME_DIR: join(home, 'run') };
  const held: Proc[] = [];
  const lines = tourLines();
  t.true(lines.length >= 5, 'the tour has its lines');
  for (const line of lines) {
    // "--password-file /tmp/licd-data/admin.password" for the daemon on the other data dir.
    const argv = line.argv.map((w) => (w === 'data/admin.password' ? join(dataDir, 'admin.password') : w));
    if (/until Ctrl-C/.test(line.comment)) {
      const p = licctl(argv, env);
      await p.waitFor(/holding/, 30_000);
      held.push(p);
      continue;
    }
    if (/on a terminal/.test(line.comment)) {
      const w = await wizardOnTerminal(argv, env);
      t.is(w.code, 0, `${line.text}\n${w.out}`);
      t.regex(w.out, /available offline until/i, line.text);
      continue;
    }
    const r = await run(argv, env);
    const want = Number(/exit code (\d+)/.exec(line.comment)?.[1] ?? 0);
    t.is(r.code, want, `${line.text}\n${r.stdout}\n${r.stderr}`);
    if (want === 3) t.regex(r.stderr, /NO_SEATS: .*0 of 1 seats free/);
    if (argv[0] === 'run') t.regex(r.stdout, /rendering/);
    if (argv[0] === 'tokens') t.regex(r.stdout, /valid/);
    if (argv[0] === 'return') t.regex(r.stdout, /^returned /m);
    if (argv[0] === 'borrows') t.regex(r.stdout, /returned|FEATURE/);
  }
  // Ctrl-C on the held checkout gives the seat back.
  for (const p of held) {
    p.child.kill('SIGINT');
    t.is((await p.exited).code, 0);
    t.regex(p.stdout(), /checked in nuke_i/);
  }
  d.child.kill('SIGTERM');
  await d.exited;
});
