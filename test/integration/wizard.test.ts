import test from 'ava';
import { killAll } from '../helpers/procs.ts';
import { borrowed, prompt, setup, step1, wizard } from '../helpers/wizard-pty.ts';

test.after.always(() => killAll());

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

test.serial('the wizard: a count above what may be borrowed is refused naming the limit, and a typo is asked again', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await w.expect(prompt('V-Ray for Maya'));
  w.type('');
  await w.expect(prompt('V-Ray Render Node'));
  w.type('9');
  let said = await w.expect(prompt('V-Ray Render Node'));
  t.regex(said, /9 of V-Ray Render Node \(1 render each\) is more than you may borrow now: vray_render: 9 needed, but you may borrow 4 now \(4 free\); give 0 to 4/);
  w.type('2x');
  said = await w.expect(prompt('V-Ray Render Node'));
  t.regex(said, /"2x" is not a number: give a whole number from 0 to 4/);
  w.type('3');
  await step1(w, 2);
  await borrowWithDefaults(w, /borrow 3 V-Ray Render Node \(3 vray_render\) for 336 h\?/);
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 3, 'the count typed after the refusals, never a capped one');
});

test.serial('the wizard: a product left at 0 in step 1 can be added at the review, within what may be borrowed', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await step1(w, 0, ['', '1']);
  let said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray for Maya\s+0\s+0\s+0\s+0/);
  t.regex(said, /V-Ray Render Node\s+1\s+0\s+1\s+0/);
  w.type('vray_maya=5');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /5 of V-Ray for Maya \(1 interface \+ 1 render each\) is more than you may borrow now: vray_interface: 5 needed, but you may borrow 2 now \(2 free\); vray_render: 6 needed, but you may borrow 4 now \(4 free\); give 0 to 2/);
  w.type('nosuch=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /"nosuch=1": give NUMBER=N or PRODUCT=N for a product listed above, e.g. vray_maya=1/);
  w.type('vray_interface=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /"vray_interface" is a license, not a product: V-Ray for Maya \(vray_maya\) needs it; give NUMBER=N or PRODUCT=N, e.g. vray_maya=1/);
  w.type('1=1');
  said = await w.expect(/press Enter to go on: /);
  t.regex(said, /V-Ray for Maya\s+1\s+1\s+1\s+0/);
  w.type('');
  await w.expect(/hours to borrow/);
  w.type('');
  await w.expect(/auto-renew/);
  w.type('');
  await w.expect(/borrow 1 V-Ray for Maya, 1 V-Ray Render Node \(1 vray_interface, 2 vray_render\) for 336 h\?/);
  w.type('y');
  await w.expect(/V-Ray for Maya\s+1\s+1\s+0/);
  await w.end();
  const f = await borrowed(url);
  t.is(f.get('vray_render')!.borrowed, 2);
  t.is(f.get('vray_interface')!.borrowed, 1, 'the product added at the review step');
});

test.serial('the wizard: hours above the maximum are refused when typed, naming the maximum', async (t) => {
  const { url, env } = await setup(t);
  const w = wizard(env);
  await step1(w, 0, ['', '1']);
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
  await w.expect(/borrow 1 V-Ray Render Node \(1 vray_render\) for 12 h\?/);
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
  await step1(w, 0, ['', '1']);
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
  const confirm = /borrow 1 V-Ray Render Node \(1 vray_render\) for 336 h\? \(y\/n\) \[y\]: /;
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
  await step1(w, 0);
  await w.expect(/press Enter to go on: /);
  w.type('');
  await w.expect(/nothing selected; nothing borrowed/);
  await w.end();
  t.is((await borrowed(url)).get('vray_render')!.borrowed, 0);
});
