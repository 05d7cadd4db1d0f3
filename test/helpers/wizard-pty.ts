/** licctl's borrow wizard in a real pseudo-terminal (socat), against licd on its development defaults. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { devDaemonProcess } from './dev-daemon.ts';
import { ROOT, run } from './procs.ts';

/**
 * licctl's wizard in a real pseudo-terminal (socat makes the pty), answers typed one at a time.
 * `expect` looks only at what came after the last thing expected, so a question asked again is seen
 * as asked again.
 */
export function wizard(env: Record<string, string>) {
  const p = spawn('socat', ['-', `EXEC:${process.execPath} ${join(ROOT, 'bin', 'licctl.mjs')} borrow,pty,setsid,ctty,stderr,echo=0`], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let seen = 0;
  p.stdout.on('data', (x) => (out += x));
  p.stderr.on('data', (x) => (out += x));
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  return {
    get out() {
      return out;
    },
    /** Waits for `re` after the last match and returns the text between. */
    async expect(re: RegExp): Promise<string> {
      for (let i = 0; i < 600; i++) {
        const m = re.exec(out.slice(seen));
        if (m) {
          const between = out.slice(seen, seen + m.index + m[0].length);
          seen += m.index + m[0].length;
          return between;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the wizard never showed ${re} after:\n${out.slice(seen)}\n--- all output:\n${out}`);
    },
    type(s: string) {
      p.stdin.write(s + '\n');
    },
    async end() {
      p.stdin.end();
      await exited;
    },
  };
}

export async function setup(t: { teardown(f: () => void): void }) {
  return devDaemonProcess(t, { LICD_USER: 'carol', LICD_HOST: 'laptop-3' });
}

export async function borrowed(url: string) {
  const s = JSON.parse((await run(['status', '--json'], { LICD_BROKER: url })).stdout) as { features: Array<{ feature: string; borrowed: number; borrows: Array<{ until: string }> }> };
  return new Map(s.features.map((f) => [f.feature, f]));
}

/** The demo entitlement's products (src/vendor.ts), in order; V-Ray Distributed Rendering may not be borrowed. */
export const STEP1 = ['V-Ray for Maya', 'V-Ray Render Node', 'Nuke Interactive'];
export const prompt = (product: string) => new RegExp(`how many of ${product} at once \\[0\\]: `);

/** Answers step 1's products from index `from` on with `answers` (missing ones: '' for the default 0). */
export async function step1(w: ReturnType<typeof wizard>, from: number, answers: string[] = []) {
  for (const [k, product] of STEP1.slice(from).entries()) {
    await w.expect(prompt(product));
    w.type(answers[k] ?? '');
  }
}

