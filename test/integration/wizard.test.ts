import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { devDaemonProcess } from '../helpers/dev-daemon.ts';
import { killAll, ROOT, run } from '../helpers/procs.ts';

test.after.always(() => killAll());

/**
 * licctl's wizard in a real pseudo-terminal (socat makes the pty), answers typed one at a time.
 * `expect` looks only at what came after the last thing expected, so a question asked again is seen
 * as asked again.
 */
function wizard(env: Record<string, string>) {
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

async function setup(t: { teardown(f: () => void): void }) {
  const { url, env } = await devDaemonProcess(t, { LICD_USER: 'carol', LICD_HOST: 'laptop-3' });
  return { url, env };
}

async function borrowed(url: string) {
  const s = JSON.parse((await run(['status', '--json'], { LICD_BROKER: url })).stdout) as { features: Array<{ feature: string; borrowed: number; borrows: Array<{ until: string }> }> };
  return new Map(s.features.map((f) => [f.feature, f]));
}

const STEP1 = ['V-Ray Render Node', 'V-Ray for Maya', 'Nuke Interactive'];
const prompt = (product: string) => new RegExp(`seats on this machine for ${product} \\[0\\]: `);

/** Answers step 1's remaining products (from index `from`) with '' (the default 0). */
async function restOfStep1(w: ReturnType<typeof wizard>, from: number) {
  for (const product of STEP1.slice(from)) {
    await w.expect(prompt(product));
    w.type('');
  }
}

/** Goes from the review to the borrow with the defaults, confirming `question`. */
async function borrowWithDefaults(w: ReturnType<typeof wizard>, question: RegExp) {
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(question);
  w.type('y');
  await w.expect(/Step 4\/4: summary/);
  await w.end();
}

test.serial('the wizard: a count above what is free is refused naming the limit, and a typo is asked again', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await w.expect(prompt('V-Ray Render Node'));
  w.type('9');
  let said = await w.expect(prompt('V-Ray Render Node'));
  t.regex(said, /9 seats of V-Ray Render Node asked for, but only 4 can be borrowed now/);
  w.type('2x');
  said = await w.expect(prompt('V-Ray Render Node'));
  t.regex(said, /"2x" is not a number: give a whole number of seats from 0 to 4/);
  w.type('3');
  await restOfStep1(w, 1);
  await borrowWithDefaults(w, /borrow 3 vray_render for 336 h\?/);
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 3, 'the count typed after the refusals, never a capped one');
});

test.serial('the wizard: a product left at 0 in step 1 can be added at the review, within what is free', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await w.expect(prompt('V-Ray Render Node'));
  w.type('1');
  await restOfStep1(w, 1);
  let said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray Render Node\s+render\s+1 \/ 4 free/);
  t.regex(said, /V-Ray for Maya\s+interface\s+0 \/ 2 free/);
  w.type('vray_interface=5');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /5 seats of vray_interface asked for, but only 2 can be borrowed now/);
  w.type('nosuch=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /"nosuch=1": give FEATURE=N or NUMBER=N for a product listed above/);
  w.type('vray_interface=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray for Maya\s+interface\s+1 \/ 2 free/);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 vray_render, 1 vray_interface for 336 h\?/);
  w.type('y');
  await w.expect(/V-Ray for Maya\s+1\s+0\s+0/);
  await w.end();
  const f = await borrowed(url);
  t.is(f.get('vray_render')!.borrowed, 1);
  t.is(f.get('vray_interface')!.borrowed, 1, 'the product added at the review step');
});

test.serial('the wizard: hours above the maximum are refused when typed, naming the maximum', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await w.expect(prompt('V-Ray Render Node'));
  w.type('1');
  await restOfStep1(w, 1);
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/hours to borrow \(at most 336\) \[336\]: /);
  w.type('400');
  let said = await w.expect(/hours to borrow \(at most 336\) \[336\]: /);
  t.regex(said, /400 h is more than can be borrowed: vray_render: the license allows at most 336 h; give 1 to 336/);
  w.type('0');
  said = await w.expect(/hours to borrow \(at most 336\) \[336\]: /);
  t.regex(said, /"0" is not a number of hours: give a whole number from 1 to 336/);
  w.type('12');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 vray_render for 12 h\?/);
  w.type('y');
  await w.expect(/Step 4\/4: summary/);
  await w.end();
  const b = (await borrowed(url)).get('vray_render')!;
  t.is(b.borrowed, 1);
  const left = (Date.parse(b.borrows[0]!.until) - Date.now()) / 3600_000;
  t.true(left > 11 && left <= 12, `borrowed for 12 h (${left} h left)`);
});

test.serial('the wizard: yes/no takes only y, yes, n or no; "2" is asked again, not taken as a yes', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await w.expect(prompt('V-Ray Render Node'));
  w.type('1');
  await restOfStep1(w, 1);
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  const renew = /auto-renew when this machine can reach the license server\? \(y\/n\) \[n\]: /;
  await w.expect(renew);
  w.type('2');
  let said = await w.expect(renew);
  t.regex(said, /"2": answer y, yes, n or no/);
  w.type('NO');
  const confirm = /borrow 1 vray_render for 336 h\? \(y\/n\) \[y\]: /;
  await w.expect(confirm);
  w.type('2');
  said = await w.expect(confirm);
  t.regex(said, /"2": answer y, yes, n or no/);
  w.type('n');
  await w.expect(/cancelled; nothing borrowed/);
  await w.end();
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 0, 'cancelled: nothing borrowed');
});

test.serial('the wizard: nothing chosen borrows nothing', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await restOfStep1(w, 0);
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/nothing selected; nothing borrowed/);
  await w.end();
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 0);
});
