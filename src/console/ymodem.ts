/**
 * A YMODEM (batch, CRC-16, 128- and 1024-byte blocks) receiver for one file, as terminal programs
 * send it (minicom Ctrl-A S, PuTTY/ExtraPuTTY, Tera Term, `sz --ymodem`). No I/O: bytes in through
 * feed(), bytes out through `send`, time through `clock`. The receiver asks with 'C', takes block 0
 * (name and size), the data blocks (a bad CRC or a broken block is asked again), EOT, and the empty
 * block 0 that ends the batch; CAN CAN from the sender, too many errors, too long a silence or a
 * file over the limit end it with a reason (and CAN CAN to the sender).
 */
import { crc16 } from '../../firmware-bridge/protocol/crc16.ts';
import type { ConsoleClock } from './session.ts';

const SOH = 0x01;
const STX = 0x02;
const EOT = 0x04;
const ACK = 0x06;
const NAK = 0x15;
const CAN = 0x18;
const C = 0x43;

export interface YmodemResult {
  name: string;
  data: Buffer;
}

export class YmodemError extends Error {}

export class YmodemReceiver {
  private buf = Buffer.alloc(0);
  private state: 'wait0' | 'data' | 'eot' | 'end' | 'done' = 'wait0';
  private expected = 1;
  private name = '';
  private size: number | null = null;
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private errors = 0;
  private cans = 0;
  private timer: { cancel(): void } | null = null;
  private pokes = 0;
  private resolve!: (r: YmodemResult) => void;
  private reject!: (e: Error) => void;
  readonly result: Promise<YmodemResult>;

  constructor(
    private readonly o: {
      send(bytes: Buffer): void;
      clock: ConsoleClock;
      maxBytes: number;
      /** How long to wait for the sender to start, in seconds (it is poked with 'C' every 3 s). */
      startSeconds?: number;
    },
  ) {
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => undefined);
    this.poke();
  }

  /** Whether the sender has begun (block 0 arrived). */
  get started(): boolean {
    return this.state !== 'wait0';
  }

  /** Stops the transfer from this side (Ctrl-C before it started, or the session ending). */
  cancel(why: string): void {
    if (this.state === 'done') return;
    this.o.send(Buffer.from([CAN, CAN, CAN, CAN, CAN]));
    this.fail(why);
  }

  feed(data: Uint8Array): void {
    if (this.state === 'done') return;
    this.buf = Buffer.concat([this.buf, Buffer.from(data)]);
    this.parse();
  }

  private poke(): void {
    this.timer?.cancel();
    const waiting = this.state === 'wait0' || this.state === 'end';
    const every = waiting ? 3000 : 10_000;
    this.timer = this.o.clock.setTimeout(() => {
      if (this.state === 'done') return;
      this.pokes++;
      if (waiting && this.pokes * 3 < (this.o.startSeconds ?? 60)) {
        this.o.send(Buffer.from([C]));
        this.poke();
      } else if (!waiting && this.pokes < 4) {
        this.o.send(Buffer.from([NAK]));
        this.poke();
      } else this.cancel(waiting ? `no YMODEM sender started within ${this.o.startSeconds ?? 60} s` : 'the sender went silent');
    }, every);
    if (waiting && this.pokes === 0) this.o.send(Buffer.from([C]));
  }

  private parse(): void {
    while (this.buf.length > 0 && this.state !== 'done') {
      const b = this.buf[0]!;
      if (b === CAN) {
        this.buf = this.buf.subarray(1);
        if (++this.cans >= 2) return this.fail('the sender cancelled the transfer');
        continue;
      }
      this.cans = 0;
      if (b === EOT) {
        this.buf = this.buf.subarray(1);
        this.onEot();
        continue;
      }
      if (b !== SOH && b !== STX) {
        // Noise between blocks (or a terminal's own chatter): skipped.
        this.buf = this.buf.subarray(1);
        continue;
      }
      const len = b === SOH ? 128 : 1024;
      if (this.buf.length < 3 + len + 2) return; // the rest of the block is still coming
      const block = this.buf.subarray(0, 3 + len + 2);
      this.buf = this.buf.subarray(3 + len + 2);
      this.onBlock(block, len);
    }
  }

  private bad(why: string): void {
    this.buf = Buffer.alloc(0);
    if (++this.errors > 10) return this.cancel(`too many broken blocks (last: ${why})`);
    this.o.send(Buffer.from([NAK]));
  }

  private onBlock(block: Buffer, len: number): void {
    const num = block[1]!;
    if ((num ^ block[2]!) !== 0xff) return this.bad('block number and its complement disagree');
    const data = block.subarray(3, 3 + len);
    if (crc16(data, 0, data.length, 0) !== block.readUInt16BE(3 + len)) return this.bad(`CRC error in block ${num}`);
    this.pokes = 0;
    if (this.state === 'wait0' || this.state === 'end') {
      if (num !== 0) return this.bad(`block ${num} where block 0 (the file's name) was expected`);
      const nul = data.indexOf(0);
      const name = data.subarray(0, nul < 0 ? data.length : nul).toString('latin1');
      if (this.state === 'end' || name === '') {
        // The empty block 0 ends the batch.
        this.o.send(Buffer.from([ACK]));
        if (this.state === 'wait0') return this.fail('the sender sent no file');
        return this.finish();
      }
      const meta = data.subarray(nul + 1).toString('latin1').split('\0')[0]!.trim();
      const size = meta ? Number(meta.split(' ')[0]) : NaN;
      this.name = name;
      this.size = Number.isInteger(size) && size >= 0 ? size : null;
      if (this.size !== null && this.size > this.o.maxBytes) return this.cancel(`${name} is ${this.size} bytes; at most ${this.o.maxBytes} are taken`);
      this.state = 'data';
      this.o.send(Buffer.from([ACK, C]));
      return this.poke();
    }
    if (this.state !== 'data') return;
    if (num === ((this.expected - 1) & 0xff)) {
      // The sender did not see the ACK: the same block again.
      this.o.send(Buffer.from([ACK]));
      return;
    }
    if (num !== (this.expected & 0xff)) return this.cancel(`block ${num} arrived where block ${this.expected & 0xff} was expected`);
    this.expected++;
    this.received += len;
    if (this.received > this.o.maxBytes + 1024) return this.cancel(`more than ${this.o.maxBytes} bytes sent`);
    this.chunks.push(Buffer.from(data));
    this.o.send(Buffer.from([ACK]));
    this.poke();
  }

  private onEot(): void {
    if (this.state === 'data') {
      // The first EOT is answered with NAK; the sender repeats it (guards against a stray EOT).
      this.state = 'eot';
      this.o.send(Buffer.from([NAK]));
      return;
    }
    if (this.state === 'eot') {
      this.state = 'end';
      this.pokes = 0;
      this.o.send(Buffer.from([ACK]));
      this.poke(); // 'C': the next file's block 0 (an empty one ends the batch)
    }
  }

  private finish(): void {
    let data = Buffer.concat(this.chunks);
    if (this.size !== null) data = data.subarray(0, this.size);
    else {
      // No size given: the last block is padded with SUB (0x1a).
      let end = data.length;
      while (end > 0 && data[end - 1] === 0x1a) end--;
      data = data.subarray(0, end);
    }
    this.state = 'done';
    this.timer?.cancel();
    this.resolve({ name: this.name, data });
  }

  private fail(why: string): void {
    this.state = 'done';
    this.timer?.cancel();
    this.reject(new YmodemError(why));
  }
}

/**
 * A YMODEM sender of one file, for the console's exports (a terminal program receives it: minicom
 * Ctrl-A R, Tera Term, `rz --ymodem`). No I/O, like the receiver. It waits for the receiver's 'C',
 * sends block 0 (name and size), 1024-byte blocks, EOT until it is acknowledged, and after the
 * next 'C' the empty block 0 that ends the batch, done at its ACK or 5 s after it. A block that
 * answers an ACK goes at once; one that answers a 'C' or a NAK (a first request or a request to
 * send it again, up to 10 times) goes 1 s later, after the receiver has emptied its input. CAN CAN from the receiver, too many NAKs or
 * too long a silence end it with a reason.
 */
export class YmodemSender {
  private buf = Buffer.alloc(0);
  private state: 'wait' | 'block0' | 'data' | 'eot' | 'end' | 'done' = 'wait';
  private block = 0;
  private readonly blocks: Buffer[] = [];
  private tries = 0;
  private cans = 0;
  private timer: { cancel(): void } | null = null;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  readonly result: Promise<void>;

  constructor(
    private readonly o: {
      send(bytes: Buffer): void;
      clock: ConsoleClock;
      name: string;
      data: Buffer;
      /** How long to wait for the receiver to start, in seconds. */
      startSeconds?: number;
    },
  ) {
    for (let at = 0; at < o.data.length; at += 1024) {
      const b = Buffer.alloc(1024, 0x1a);
      o.data.copy(b, 0, at, Math.min(o.data.length, at + 1024));
      this.blocks.push(b);
    }
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => undefined);
    this.wait((o.startSeconds ?? 60) * 1000, `no YMODEM receiver started within ${o.startSeconds ?? 60} s`);
  }

  /** Whether the receiver has asked for the file. */
  get started(): boolean {
    return this.state !== 'wait';
  }

  private get finished(): boolean {
    return this.state === 'done';
  }

  cancel(why: string): void {
    if (this.state === 'done') return;
    this.o.send(Buffer.from([CAN, CAN, CAN, CAN, CAN]));
    this.fail(why);
  }

  feed(data: Uint8Array): void {
    if (this.state === 'done') return;
    this.buf = Buffer.concat([this.buf, Buffer.from(data)]);
    while (this.buf.length > 0 && !this.finished) {
      const b = this.buf[0]!;
      this.buf = this.buf.subarray(1);
      if (b === CAN) {
        if (++this.cans >= 2) return this.fail('the receiver cancelled the transfer');
        continue;
      }
      this.cans = 0;
      this.onByte(b);
    }
  }

  private wait(ms: number, why: string): void {
    this.timer?.cancel();
    this.timer = this.o.clock.setTimeout(() => this.cancel(why), ms);
  }

  private frame(num: number, payload: Buffer): Buffer {
    const head = Buffer.from([payload.length === 128 ? SOH : STX, num & 0xff, 0xff - (num & 0xff)]);
    const crc = Buffer.alloc(2);
    crc.writeUInt16BE(crc16(payload, 0, payload.length, 0));
    return Buffer.concat([head, payload, crc]);
  }

  private block0(): Buffer {
    const b = Buffer.alloc(128);
    // Name, then size, modification time (octal seconds) and mode (octal), as sz sends them.
    b.write(`${this.o.name}\0${this.o.data.length} ${Math.floor(this.o.clock.now() / 1000).toString(8)} 100600`, 'latin1');
    return this.frame(0, b);
  }

  /**
   * Sends the block the receiver waits for. `asked` is the byte that asked for it: a block that
   * answers a 'C' or a NAK goes 1 s later, one that answers an ACK at once. rz empties its input
   * right after each 'C' and NAK it sends (and after each ACK): a block that arrives before that is
   * thrown away. On a busy machine the console's answers did, and rz waited for them until the
   * console gave up. After an ACK, speed matters and a lost block is asked for again by NAK.
   */
  private sendCurrent(asked: number): void {
    if (this.pending) return; // asked again while the answer waits its 1 s: that answer will do
    if (++this.tries > 10) return this.cancel('the receiver refused a block 10 times');
    if (asked === ACK) return this.sendNow();
    this.timer?.cancel();
    this.pending = true;
    this.timer = this.o.clock.setTimeout(() => {
      this.pending = false;
      if (!this.finished) this.sendNow();
    }, 1000);
  }

  private sendNow(): void {
    if (this.state === 'block0') this.o.send(this.block0());
    else if (this.state === 'data') this.o.send(this.frame(this.block + 1, this.blocks[this.block]!));
    else if (this.state === 'eot') this.o.send(Buffer.from([EOT]));
    else if (this.state === 'end') {
      this.o.send(this.frame(0, Buffer.alloc(128)));
      // rz ACKs it, but that last ACK is often lost as it exits (it flushes the line): the file
      // was complete when EOT was acknowledged, so 5 s without an answer is success too.
      this.timer?.cancel();
      this.timer = this.o.clock.setTimeout(() => this.finish(), 5000);
      return;
    }
    this.wait(15_000, 'the receiver went silent');
  }

  private next(state: YmodemSender['state']): void {
    this.state = state;
    this.tries = 0;
  }

  /** After block 0's ACK the receiver asks again with 'C' before the data starts. */
  private armed = false;
  /** Block 0 or the end of the batch is due in a moment (sendCurrent). */
  private pending = false;

  private onByte(b: number): void {
    const st = this.state as YmodemSender['state'];
    if (this.pending && b === ACK) return; // nothing it could acknowledge has gone out yet
    // 'C' and NAK both ask for the current block again: rz asks with 'C' until the first data
    // block has arrived, and with NAK after.
    const again = b === C || b === NAK;
    if (st === 'wait') {
      if (b === C) {
        this.next('block0');
        this.sendCurrent(b);
      }
    } else if (st === 'block0') {
      if (b === ACK) {
        this.next(this.blocks.length > 0 ? 'data' : 'eot');
        this.block = 0;
        this.armed = true;
        this.wait(15_000, 'the receiver did not ask for the data');
      } else if (again) this.sendCurrent(b);
    } else if (st === 'data' || st === 'eot') {
      if (this.armed) {
        // After block 0's ACK the data starts at the receiver's 'C'.
        if (again) {
          this.armed = false;
          this.sendCurrent(b);
        }
        return;
      }
      if (again) return this.sendCurrent(b);
      if (b !== ACK) return;
      if (st === 'eot') {
        this.next('end');
        this.armed = true;
        this.wait(15_000, 'the receiver did not ask for the end of the batch');
        return;
      }
      this.block++;
      this.next(this.block < this.blocks.length ? 'data' : 'eot');
      this.sendCurrent(b);
    } else if (st === 'end') {
      if (b === ACK && !this.armed) this.finish();
      else if (again) {
        this.armed = false;
        this.sendCurrent(b);
      }
    }
  }

  private finish(): void {
    this.state = 'done';
    this.timer?.cancel();
    this.resolve();
  }

  private fail(why: string): void {
    this.state = 'done';
    this.timer?.cancel();
    this.reject(new YmodemError(why));
  }
}
