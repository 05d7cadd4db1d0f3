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
