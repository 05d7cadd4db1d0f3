import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/daemon.ts';
import { killAll, ROOT, run, startDaemonProcess } from '../helpers/procs.ts';

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
  const dir = tempDir();
  const home = tempDir('licd-home-');
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });
  const d = startDaemonProcess({ LICD_DATA_DIR: dir, LICD_MQTT_PORT: '0' });
  const url = (await d.waitFor(/listening on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
  const vendor = (JSON.parse(readFileSync(join(dir, 'dev', 'vendor.key'), 'utf8')) as { publicKey: string }).publicKey;
  return { url, env: { LICD_HOME: home, LICD_BROKER: url, LICD_VENDOR_KEY: vendor, LICD_USER: 'carol', LICD_HOST: 'laptop-3' } };
}

async function borrowed(url: string) {
  const s = JSON.parse((await run(['status', '--json'], { LICD_BROKER: url })).stdout) as { features: Array<{ feature: string; borrowed: number; borrows: Array<{ until: string }> }> };
  return new Map(s.features.map((f) => [f.feature, f]));
}

test('the wizard checks each answer where it is typed and asks again; a product left at 0 can be added at the review', async (t) => {
  t.timeout(60_000);
  const { url, env } = await setup(t);
  const w = wizard(env);

  // Step 1: more than is free is refused, naming the limit, and asked again (never capped).
  await w.expect(/seats on this machine for V-Ray Render Node \[0\]: /);
  w.type('9');
  let said = await w.expect(/seats on this machine for V-Ray Render Node \[0\]: /);
  t.regex(said, /9 seats of V-Ray Render Node asked for, but only 4 can be borrowed now/);
  // A typo in a count is asked again, not the end of the wizard.
  w.type('2x');
  said = await w.expect(/seats on this machine for V-Ray Render Node \[0\]: /);
  t.regex(said, /"2x" is not a number: give a whole number of seats from 0 to 4/);
  w.type('1');
  await w.expect(/seats on this machine for V-Ray for Maya \[0\]: /);
  w.type('0');
  await w.expect(/seats on this machine for Nuke Interactive \[0\]: /);
  w.type('');

  // Step 2: the product left at 0 is listed and can be added; too many is refused with the limit.
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray Render Node\s+render\s+1 \/ 4 free/);
  t.regex(said, /V-Ray for Maya\s+interface\s+0 \/ 2 free/);
  w.type('vray_interface=5');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /5 seats of vray_interface asked for, but only 2 can be borrowed now/);
  t.regex(said, /V-Ray for Maya\s+interface\s+0 \/ 2 free/);
  w.type('nosuch=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /"nosuch=1": give FEATURE=N or NUMBER=N for a product listed above/);
  w.type('vray_interface=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray for Maya\s+interface\s+1 \/ 2 free/);
  w.type('');

  // Step 3: hours above the maximum are refused when typed, naming the maximum.
  await w.expect(/hours to borrow \(at most 336\) \[336\]: /);
  w.type('400');
  said = await w.expect(/hours to borrow \(at most 336\) \[336\]: /);
  t.regex(said, /400 h is more than can be borrowed: .*the license allows at most 336 h; give 1 to 336/);
  w.type('12');
  // Only y/yes/n/no count as an answer: "2" is asked again, not taken as a yes.
  await w.expect(/auto-renew when this machine can reach the license server\? \(y\/n\) \[n\]: /);
  w.type('2');
  said = await w.expect(/auto-renew when this machine can reach the license server\? \(y\/n\) \[n\]: /);
  t.regex(said, /"2": answer y, yes, n or no/);
  w.type('no');
  await w.expect(/borrow 1 vray_render, 1 vray_interface for 12 h\? \(y\/n\) \[y\]: /);
  w.type('yep');
  said = await w.expect(/borrow 1 vray_render, 1 vray_interface for 12 h\? \(y\/n\) \[y\]: /);
  t.regex(said, /"yep": answer y, yes, n or no/);
  w.type('YES');
  await w.expect(/Step 4\/4: summary/);
  await w.expect(/V-Ray for Maya\s+1\s+0\s+0/);
  await w.end();

  const f = await borrowed(url);
  t.is(f.get('vray_render')!.borrowed, 1, 'the count typed after the refusals, not a capped 4');
  t.is(f.get('vray_interface')!.borrowed, 1, 'the product added at the review step');
  const hoursLeft = (Date.parse(f.get('vray_render')!.borrows[0]!.until) - Date.now()) / 3600_000;
  t.true(hoursLeft > 11 && hoursLeft <= 12, `borrowed for 12 h (${hoursLeft} h left)`);
});

test('the wizard: nothing chosen borrows nothing, and "n" at the confirmation cancels', async (t) => {
  t.timeout(60_000);
  const { url, env } = await setup(t);
  let w = wizard(env);
  for (const product of ['V-Ray Render Node', 'V-Ray for Maya', 'Nuke Interactive']) {
    await w.expect(new RegExp(`seats on this machine for ${product} \\[0\\]: `));
    w.type('');
  }
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/nothing selected; nothing borrowed/);
  await w.end();

  w = wizard(env);
  await w.expect(/seats on this machine for V-Ray Render Node \[0\]: /);
  w.type('2');
  for (const product of ['V-Ray for Maya', 'Nuke Interactive']) {
    await w.expect(new RegExp(`seats on this machine for ${product} \\[0\\]: `));
    w.type('');
  }
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 2 vray_render for 336 h\?/);
  w.type('n');
  await w.expect(/cancelled; nothing borrowed/);
  await w.end();
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 0);
});
