/** The YMODEM receiver's rules with a scripted sender: broken blocks asked again, repeats, limits, cancels. */
import test from 'ava';
import { crc16 } from '../../firmware-bridge/protocol/crc16.ts';
import type { ConsoleClock } from '../../src/console/session.ts';
import { YmodemReceiver, YmodemSender } from '../../src/console/ymodem.ts';

const manualClock = (): ConsoleClock & { advance(ms: number): void } => {
  let now = 0;
  const timers: Array<{ at: number; f: () => void; live: boolean }> = [];
  return {
    now: () => now,
    setTimeout(f, ms) {
      const t = { at: now + ms, f, live: true };
      timers.push(t);
      return { cancel: () => (t.live = false) };
    },
    advance(ms) {
      now += ms;
      for (const t of timers.filter((x) => x.live && x.at <= now)) {
        t.live = false;
        t.f();
      }
    },
  };
};

/** Waits for `p`, moving the manual clock on by 500 ms whenever everything pending has run. */
async function withClock<T>(clock: { advance(ms: number): void }, p: Promise<T>): Promise<T> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 200 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done) clock.advance(500);
  }
  return p;
}

function block(num: number, payload: Buffer, size = 128): Buffer {
  const data = Buffer.alloc(size, num === 0 ? 0 : 0x1a);
  payload.copy(data);
  const crc = Buffer.alloc(2);
  crc.writeUInt16BE(crc16(data, 0, data.length, 0));
  return Buffer.concat([Buffer.from([size === 128 ? 0x01 : 0x02, num & 0xff, 0xff - (num & 0xff)]), data, crc]);
}

function receiver(maxBytes = 4096) {
  const sent: number[] = [];
  const clock = manualClock();
  const rx = new YmodemReceiver({ send: (b) => sent.push(...b), clock, maxBytes });
  return { rx, sent, clock };
}

test('a file in two blocks, one broken on the way: NAK, resent, ACK; the size from block 0 trims the padding', async (t) => {
  const { rx, sent } = receiver();
  t.deepEqual(sent, [0x43], "the receiver asks with 'C'");
  const text = Buffer.from('x'.repeat(200));
  rx.feed(block(0, Buffer.from('license.json\x00200 0\x00')));
  t.deepEqual(sent.slice(1), [0x06, 0x43]);
  const b1 = block(1, text.subarray(0, 128));
  const broken = Buffer.from(b1);
  broken[10] = broken[10]! ^ 0xff;
  rx.feed(broken);
  t.is(sent.at(-1), 0x15, 'a CRC error is answered with NAK');
  rx.feed(b1);
  t.is(sent.at(-1), 0x06);
  rx.feed(b1);
  t.is(sent.at(-1), 0x06, 'a repeated block (a lost ACK) is acknowledged and dropped');
  // Split across reads, as a serial line delivers it.
  const b2 = block(2, text.subarray(128));
  rx.feed(b2.subarray(0, 50));
  rx.feed(b2.subarray(50));
  rx.feed(Buffer.from([0x04]));
  t.is(sent.at(-1), 0x15, 'the first EOT is answered with NAK');
  rx.feed(Buffer.from([0x04]));
  t.deepEqual(sent.slice(-2), [0x06, 0x43]);
  rx.feed(block(0, Buffer.alloc(0)));
  const r = await rx.result;
  t.is(r.name, 'license.json');
  t.is(r.data.toString(), text.toString());
});

test('a file over the limit, a sender that cancels, and one that never starts end the transfer with the reason', async (t) => {
  const big = receiver(100);
  big.rx.feed(block(0, Buffer.from('huge.bin\x00999999 0\x00')));
  await t.throwsAsync(big.rx.result, { message: 'huge.bin is 999999 bytes; at most 100 are taken' });
  t.deepEqual(big.sent.slice(-2), [0x18, 0x18], 'the sender is told with CAN');

  const can = receiver();
  can.rx.feed(block(0, Buffer.from('a.json\x0010 0\x00')));
  can.rx.feed(Buffer.from([0x18, 0x18]));
  await t.throwsAsync(can.rx.result, { message: 'the sender cancelled the transfer' });

  const idle = receiver();
  for (let i = 0; i < 25; i++) idle.clock.advance(3000);
  await t.throwsAsync(idle.rx.result, { message: 'no YMODEM sender started within 60 s' });
  t.true(idle.sent.filter((b) => b === 0x43).length >= 19, "it kept asking with 'C' every 3 s");
});

test('the sender and the receiver move a file of 3000 bytes, a corrupted block resent on NAK', async (t) => {
  const clock = manualClock();
  const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 251));
  let corrupt = true;
  // eslint-disable-next-line prefer-const
  let rx: YmodemReceiver;
  const tx = new YmodemSender({
    name: 'audit.jsonl',
    data,
    clock,
    send: (b) => {
      const copy = Buffer.from(b);
      // The first data block is damaged on the line once: the receiver NAKs, the sender resends it.
      if (corrupt && copy[0] === 0x02 && copy[1] === 1) {
        corrupt = false;
        copy[100] = copy[100]! ^ 0x55;
      }
      queueMicrotask(() => rx.feed(copy));
    },
  });
  rx = new YmodemReceiver({ send: (b) => queueMicrotask(() => tx.feed(b)), clock, maxBytes: 10_000 });
  const got = await withClock(clock, rx.result);
  await withClock(clock, tx.result);
  t.is(got.name, 'audit.jsonl');
  t.deepEqual(got.data, data);
  t.false(corrupt, 'the damaged block was sent again');
});

test('the sender sends the block that ends the batch again when it is lost, and ends only on its ACK', async (t) => {
  // rz empties its input right after asking for the next file; on a busy machine the empty block 0
  // can arrive before that and be thrown away. rz then asks again with 'C' 10 s later.
  const clock = manualClock();
  const data = Buffer.from('one line\n');
  let endBlocks = 0;
  let ended = false;
  // eslint-disable-next-line prefer-const
  let rx: YmodemReceiver;
  const tx = new YmodemSender({
    name: 'a.jsonl',
    data,
    clock,
    send: (b) => {
      const copy = Buffer.from(b);
      if (copy[0] === 0x01 && copy[1] === 0 && copy[3] === 0 && ++endBlocks === 1) {
        // Lost: the receiver asks again after its timeout.
        queueMicrotask(() => tx.feed(Buffer.from([0x43])));
        return;
      }
      queueMicrotask(() => rx.feed(copy));
    },
  });
  void tx.result.then(() => (ended = true));
  rx = new YmodemReceiver({ send: (b) => queueMicrotask(() => tx.feed(b)), clock, maxBytes: 10_000 });
  const got = await withClock(clock, rx.result);
  await withClock(clock, tx.result);
  t.deepEqual(got.data, data);
  t.is(endBlocks, 2, 'the end of the batch was sent twice');
  t.true(ended);
  // Without an ACK for it (rz's last ACK is often lost as it exits), the sender waits 5 s after it
  // and ends as done: the file was complete when EOT was acknowledged.
  const quiet = new YmodemSender({ name: 'b', data, clock, send: () => {} });
  let quietEnded = false;
  void quiet.result.then(() => (quietEnded = true));
  quiet.feed(Buffer.from([0x43])); // block 0, 1 s later
  clock.advance(1000);
  quiet.feed(Buffer.from([0x06, 0x43])); // its ACK, then 'C' for the data: the data block, 1 s later
  clock.advance(1000);
  quiet.feed(Buffer.from([0x06])); // the data block's ACK: EOT goes out
  quiet.feed(Buffer.from([0x06, 0x43])); // EOT's ACK, then 'C': the empty block 0, 1 s later
  clock.advance(1000);
  clock.advance(4000);
  await Promise.resolve();
  t.false(quietEnded, 'not done before the end block is acknowledged');
  clock.advance(1000);
  await quiet.result;
  t.true(quietEnded);
});

test('a block lost before the receiver asks again (with C for the first data block, NAK after) is sent again 1 s after the request', async (t) => {
  // rz empties its input after every 'C', NAK and ACK it sends. The first data block, sent at once
  // in answer to the 'C' after block 0, was thrown away; rz asked again with 'C' 13 s later, and
  // the console ignored that 'C' until it gave up and cancelled ("Sender Cancelled" in rz).
  const clock = manualClock();
  const data = Buffer.alloc(2000, 0x61);
  const sent: Buffer[] = [];
  const tx = new YmodemSender({ name: 'a.jsonl', data, clock, send: (b) => sent.push(Buffer.from(b)) });
  const last = () => sent.at(-1)!;
  tx.feed(Buffer.from([0x43]));
  clock.advance(1000);
  t.is(last()[1], 0, 'block 0');
  tx.feed(Buffer.from([0x06, 0x43]));
  clock.advance(999);
  t.is(sent.length, 1, 'nothing in the moment the receiver empties its input');
  clock.advance(1);
  t.deepEqual([last()[0], last()[1]], [0x02, 1], 'block 1, 1 s after the C');
  tx.feed(Buffer.from([0x43])); // lost: the receiver asks again with C
  clock.advance(1000);
  t.deepEqual([sent.length, last()[1]], [3, 1], 'block 1 again');
  tx.feed(Buffer.from([0x06])); // its ACK: block 2 at once
  t.deepEqual([sent.length, last()[1]], [4, 2]);
  tx.feed(Buffer.from([0x15])); // lost: NAK
  t.is(sent.length, 4);
  clock.advance(1000);
  t.deepEqual([sent.length, last()[1]], [5, 2], 'block 2 again, 1 s after the NAK');
  tx.feed(Buffer.from([0x06]));
  t.deepEqual([...last()], [0x04], 'EOT');
  tx.feed(Buffer.from([0x06, 0x43]));
  clock.advance(1000);
  tx.feed(Buffer.from([0x06]));
  await tx.result;
  t.pass();
});

test('the sender gives up when nobody receives, and stops on CAN CAN', async (t) => {
  const clock = manualClock();
  const sent: number[] = [];
  const tx = new YmodemSender({ name: 'a', data: Buffer.from('x'), clock, send: (b) => sent.push(...b), startSeconds: 30 });
  clock.advance(31_000);
  await t.throwsAsync(tx.result, { message: /no YMODEM receiver started within 30 s/ });
  const tx2 = new YmodemSender({ name: 'a', data: Buffer.from('x'), clock, send: () => {} });
  tx2.feed(Buffer.from([0x43, 0x18, 0x18]));
  await t.throwsAsync(tx2.result, { message: /receiver cancelled/ });
});
