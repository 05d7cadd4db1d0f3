/**
 * Layer 4: DongleSession turns method calls into requests and answers into results.
 *
 * - One request in flight; the rest wait in a FIFO queue (a dongle is a single-threaded device).
 * - Request ids are u16, 1..65535, wrapping; 0 is never used.
 * - Each attempt has its own timeout. Idempotent commands (INFO, SIGN, PING, SLOT_READ,
 *   SLOT_WRITE) are resent after a timeout or a corrupt answer; an answer to any attempt of the
 *   current request is accepted, so a slow dongle wins the race against its own retry.
 * - COUNTER_INCREMENT is never resent after it may have reached the dongle: a resend could step the
 *   counter twice. A lost answer, or the link closing while it waits, surfaces as
 *   DONGLE_COUNTER_UNCERTAIN (the daemon must then resync from INFO). BUSY answers are the one
 *   exception: BUSY means "not executed", so every command, the counter too, is resent after one.
 */
import { EventEmitter } from 'node:events';
import { DongleError, DongleErrorCode } from '../errors.ts';
import { concatBytes } from '../protocol/bytes.ts';
import { counterIncrementCodec, type CounterIncrementResponse } from '../protocol/commands/counter-increment.ts';
import { timeCodec, type TimeResponse } from '../protocol/commands/time.ts';
import type { CommandCodec } from '../protocol/commands/codec.ts';
import { infoCodec, type DongleInfo } from '../protocol/commands/info.ts';
import { pingCodec } from '../protocol/commands/ping.ts';
import { signCodec } from '../protocol/commands/sign.ts';
import { slotReadCodec } from '../protocol/commands/slot-read.ts';
import { slotWriteCodec } from '../protocol/commands/slot-write.ts';
import { MAX_PAYLOAD, NONCE_SIZE, PROTOCOL_VERSION, commandName } from '../protocol/constants.ts';
import { DeviceErrorCode, deviceErrorName } from '../protocol/device-errors.ts';
import { FrameParser, type ParserEvent } from '../protocol/frame.ts';
import { encodeRequestFrame, frameToMessage, type Message } from '../protocol/messages.ts';
import { checkDomain, isReservedDomain } from '../protocol/signing.ts';
import { openTransport, type TransportDeps, type TransportSpec } from '../transport/index.ts';
import type { Transport } from '../transport/transport.ts';

export interface DongleSessionOptions {
  /** Per attempt. Default 2000 ms. */
  timeoutMs?: number;
  /**
   * For COUNTER_INCREMENT, which is never resent and writes the dongle's non-volatile memory
   * (a flash or EEPROM write; for the emulator an fsync): a longer wait, so a slow write is not
   * mistaken for a lost answer. Default: four times timeoutMs, at least 2000 ms.
   */
  counterTimeoutMs?: number;
  /** Extra attempts for idempotent commands after a timeout, corrupt answer or BUSY. Default 2. */
  retries?: number;
  /** Pause before resending after BUSY. Default 20 ms. */
  busyDelayMs?: number;
  /** Data bytes per SLOT_READ / SLOT_WRITE. Default 512; at most 1020. */
  chunkSize?: number;
}

export interface SessionStats {
  requests: number;
  resends: number;
  framesReceived: number;
  badCrc: number;
  badHeader: number;
  oversized: number;
  garbageBytes: number;
  /** Answers to requests no longer waited for (late answers after a timeout, or duplicates). */
  staleAnswers: number;
}

type Outcome =
  | { type: 'answer'; message: Message }
  | { type: 'timeout'; sawCorrupt: boolean }
  | { type: 'corrupt' }
  | { type: 'closed' };

interface Waiter {
  ids: Set<number>;
  idempotent: boolean;
  sawCorrupt: boolean;
  settle(outcome: Outcome): void;
}

interface Job {
  run(): Promise<void>;
  fail(error: DongleError): void;
}

const MAX_CHUNK = MAX_PAYLOAD - 4;

export class DongleSession extends EventEmitter {
  readonly transport: Transport;
  /** Resolves when the transport closes, with the error pending and later calls get. */
  readonly closed: Promise<DongleError>;
  readonly stats: SessionStats = {
    requests: 0,
    resends: 0,
    framesReceived: 0,
    badCrc: 0,
    badHeader: 0,
    oversized: 0,
    garbageBytes: 0,
    staleAnswers: 0,
  };

  private readonly timeoutMs: number;
  private readonly counterTimeoutMs: number;
  private readonly retries: number;
  private readonly busyDelayMs: number;
  private readonly chunkSize: number;
  private readonly parser = new FrameParser();
  private readonly queue: Job[] = [];
  private running = false;
  private waiter: Waiter | undefined;
  private lastId = 0;
  private closeError: DongleError | undefined;
  private resolveClosed!: (error: DongleError) => void;

  /** Opens the transport described by `spec` and starts a session on it. */
  static async open(spec: TransportSpec, options: DongleSessionOptions = {}, deps: TransportDeps = {}): Promise<DongleSession> {
    return new DongleSession(await openTransport(spec, deps), options);
  }

  constructor(transport: Transport, options: DongleSessionOptions = {}) {
    super();
    this.transport = transport;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.counterTimeoutMs = options.counterTimeoutMs ?? Math.max(2000, 4 * this.timeoutMs);
    this.retries = options.retries ?? 2;
    this.busyDelayMs = options.busyDelayMs ?? 20;
    this.chunkSize = options.chunkSize ?? 512;
    if (!(this.chunkSize >= 1 && this.chunkSize <= MAX_CHUNK)) throw new RangeError(`chunkSize must be 1..${MAX_CHUNK}`);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.onData = this.onData.bind(this);
    this.onClose = this.onClose.bind(this);
    transport.on('data', this.onData);
    transport.on('close', this.onClose);
    if (!transport.isOpen) this.onClose();
  }

  get isOpen(): boolean {
    return this.closeError === undefined;
  }

  // ----- commands -------------------------------------------------------------------------

  async info(): Promise<DongleInfo> {
    return await this.request(infoCodec, {});
  }

  async ping(data: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    if (data.length > MAX_PAYLOAD) throw badArgument(`PING data of ${data.length} bytes exceeds ${MAX_PAYLOAD}`);
    return (await this.request(pingCodec, { data })).data;
  }

  /** Returns the 64-byte Ed25519 signature over dongleSignedBytes(domain, message, class). */
  async sign(domain: string, message: Uint8Array): Promise<Uint8Array> {
    const problem = checkDomain(domain);
    if (problem) throw badArgument(`signing domain ${JSON.stringify(domain)} is ${problem}; use 1..64 printable ASCII characters without spaces`);
    if (isReservedDomain(domain)) throw badArgument(`signing domain ${JSON.stringify(domain)} is reserved for signatures the dongle makes itself`);
    const room = MAX_PAYLOAD - 1 - domain.length;
    if (message.length > room) throw badArgument(`message of ${message.length} bytes is too long to sign under domain ${JSON.stringify(domain)}; at most ${room} bytes fit, so sign a hash instead`);
    return (await this.request(signCodec, { domain, message })).signature;
  }

  /**
   * Steps the monotonic counter once. Never resent: if the answer is lost the call fails with
   * DONGLE_COUNTER_UNCERTAIN and the caller decides (read INFO, then increment with a new nonce).
   */
  async counterIncrement(nonce: Uint8Array): Promise<CounterIncrementResponse> {
    if (nonce.length !== NONCE_SIZE) throw badArgument(`counter nonce must be ${NONCE_SIZE} bytes, got ${nonce.length}`);
    return await this.request(counterIncrementCodec, { nonce });
  }

  /**
   * Reads the dongle's battery-backed clock, signed under "dongle:time" over (u64 ms || nonce).
   * A dongle without a clock answers BAD_COMMAND (a DongleError the caller reads as "no time").
   */
  async time(nonce: Uint8Array): Promise<TimeResponse> {
    if (nonce.length !== NONCE_SIZE) throw badArgument(`time nonce must be ${NONCE_SIZE} bytes, got ${nonce.length}`);
    return await this.request(timeCodec, { nonce });
  }

  /** Reads a slot's whole content in chunks. */
  async readSlot(slot: number): Promise<Uint8Array> {
    checkSlot(slot);
    // One host talks to the dongle, so the content cannot change under us unless something is
    // wrong; start over a couple of times before calling it an error.
    for (let pass = 0; pass < 3; pass++) {
      const parts: Uint8Array[] = [];
      let offset = 0;
      let total: number | undefined;
      let changed = false;
      for (;;) {
        const res = await this.request(slotReadCodec, { slot, offset, length: this.chunkSize });
        if (total === undefined) total = res.total;
        else if (res.total !== total) {
          changed = true;
          break;
        }
        if (res.data.length > this.chunkSize || offset + res.data.length > total) {
          throw new DongleError(DongleErrorCode.PROTOCOL, `SLOT_READ of slot ${slot} at ${offset} returned ${res.data.length} bytes, more than asked or than the slot holds (${total})`, { command: 'SLOT_READ' });
        }
        parts.push(res.data);
        offset += res.data.length;
        if (offset === total) return concatBytes(...parts);
        if (res.data.length === 0) {
          throw new DongleError(DongleErrorCode.PROTOCOL, `SLOT_READ of slot ${slot} at ${offset} returned no data before the end (${total} bytes)`, { command: 'SLOT_READ' });
        }
      }
      if (!changed) break;
    }
    throw new DongleError(DongleErrorCode.PROTOCOL, `slot ${slot} kept changing while it was read; is another program writing to the dongle?`, { command: 'SLOT_READ' });
  }

  /** Replaces a slot's content; the dongle commits it atomically with the last chunk. */
  async writeSlot(slot: number, data: Uint8Array): Promise<void> {
    checkSlot(slot);
    if (data.length > 0xffff) throw badArgument(`slot data of ${data.length} bytes cannot be addressed with 16-bit offsets`);
    let offset = 0;
    do {
      const end = Math.min(data.length, offset + this.chunkSize);
      const commit = end === data.length;
      const res = await this.request(slotWriteCodec, { slot, offset, commit, data: data.subarray(offset, end) });
      if (res.staged !== end || res.committed !== commit) {
        throw new DongleError(DongleErrorCode.PROTOCOL, `SLOT_WRITE of slot ${slot} at ${offset}: dongle reports ${res.staged} bytes staged (committed: ${res.committed}), expected ${end} (committed: ${commit})`, { command: 'SLOT_WRITE' });
      }
      offset = end;
    } while (offset < data.length);
  }

  /** Fails pending and queued requests with DONGLE_CLOSED and closes the transport. */
  async close(): Promise<void> {
    this.shutdown(new DongleError(DongleErrorCode.CLOSED, `session on ${this.transport.description} was closed`));
    await this.transport.close();
  }

  /**
   * Sends one request through the queue, with the retry rules above. Public so a caller can send
   * a request as-is (no host-side argument checks), e.g. to test how a dongle refuses it.
   */
  async request<Req, Res>(codec: CommandCodec<Req, Res>, request: Req): Promise<Res> {
    const payload = codec.encodeRequest(request);
    if (payload.length > MAX_PAYLOAD) throw badArgument(`${codec.name} request of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
    return await new Promise<Res>((resolve, reject) => {
      if (this.closeError) {
        reject(this.closeError);
        return;
      }
      this.queue.push({
        run: async () => {
          try {
            resolve(await this.execute(codec, payload));
          } catch (error) {
            reject(error);
          }
        },
        fail: reject,
      });
      void this.pump();
    });
  }

  // ----- machinery ------------------------------------------------------------------------

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.queue.shift(); job; job = this.queue.shift()) await job.run();
    } finally {
      this.running = false;
    }
  }

  private async execute<Req, Res>(codec: CommandCodec<Req, Res>, payload: Uint8Array): Promise<Res> {
    this.stats.requests++;
    const name = codec.name;
    const maxAttempts = 1 + Math.max(0, this.retries);
    const ids = new Set<number>();
    let sawCorrupt = false;
    for (let attempt = 1; ; attempt++) {
      if (this.closeError) throw this.closeError;
      const id = this.nextId();
      ids.add(id);
      if (attempt > 1) this.stats.resends++;
      const outcome = await this.attempt(codec.idempotent, ids, encodeRequestFrame(codec.code, id, payload));

      if (outcome.type === 'closed') {
        const closed = this.closeError ?? closedError(this.transport.description);
        // Sent but unanswered: the dongle may have stepped. A queued request never reached it
        // and fails with plain DONGLE_CLOSED instead.
        if (!codec.idempotent) {
          throw new DongleError(
            DongleErrorCode.COUNTER_UNCERTAIN,
            `the link closed while ${name} was waiting for its answer; the dongle may or may not have stepped its counter. Reconnect, read INFO to see the counter, then increment again with a new nonce`,
            { command: name, cause: closed, attempts: attempt },
          );
        }
        throw closed;
      }
      if (outcome.type === 'answer') {
        const message = outcome.message;
        if (message.command !== codec.code) {
          throw new DongleError(DongleErrorCode.PROTOCOL, `dongle answered ${name} request ${id} with a ${commandName(message.command)} answer`, { command: name, attempts: attempt });
        }
        if (message.kind === 'error') {
          const { code, detail } = message.error;
          if (code === DeviceErrorCode.BUSY && attempt < maxAttempts) {
            await delay(this.busyDelayMs);
            continue;
          }
          throw new DongleError(
            DongleErrorCode.DEVICE_ERROR,
            `dongle refused ${name}: ${deviceErrorName(code)} (0x${code.toString(16).padStart(2, '0')})${detail ? `: ${detail}` : ''}`,
            { command: name, deviceCode: code, attempts: attempt },
          );
        }
        try {
          return codec.decodeResponse(message.payload);
        } catch (error) {
          throw new DongleError(DongleErrorCode.PROTOCOL, `dongle's ${name} answer is malformed: ${(error as Error).message}`, { command: name, cause: error, attempts: attempt });
        }
      }

      sawCorrupt ||= outcome.type === 'corrupt' || outcome.sawCorrupt;
      const lastCause = sawCorrupt
        ? new DongleError(DongleErrorCode.CRC, `dongle's answer to ${name} arrived corrupted (CRC mismatch)`, { command: name })
        : new DongleError(DongleErrorCode.TIMEOUT, `dongle did not answer ${name} within ${this.timeoutMs} ms`, { command: name });
      if (!codec.idempotent) {
        throw new DongleError(
          DongleErrorCode.COUNTER_UNCERTAIN,
          `${name} got no valid answer (${sawCorrupt ? 'corrupted answer' : `no answer within ${this.counterTimeoutMs} ms`}); the dongle may or may not have stepped its counter. It was not resent, because a resend could step it twice: read INFO to see the counter, then increment again with a new nonce`,
          { command: name, cause: lastCause, attempts: attempt },
        );
      }
      if (attempt >= maxAttempts) {
        const what = sawCorrupt
          ? `${name}: every answer in ${attempt} attempts arrived corrupted or not at all; check the cable or USB port`
          : `${name}: no answer from the dongle on ${this.transport.description} in ${attempt} attempts of ${this.timeoutMs} ms; is it plugged in and is the emulator running?`;
        throw new DongleError(lastCause.code, what, { command: name, cause: lastCause, attempts: attempt });
      }
    }
  }

  private attempt(idempotent: boolean, ids: Set<number>, frame: Uint8Array): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        ids,
        idempotent,
        sawCorrupt: false,
        settle: (outcome) => {
          if (this.waiter !== waiter) return;
          this.waiter = undefined;
          clearTimeout(timer);
          resolve(outcome);
        },
      };
      this.waiter = waiter;
      timer = setTimeout(() => waiter.settle({ type: 'timeout', sawCorrupt: waiter.sawCorrupt }), idempotent ? this.timeoutMs : this.counterTimeoutMs);
      try {
        this.transport.write(frame);
      } catch (error) {
        this.onClose(error instanceof Error ? error : undefined);
      }
    });
  }

  private nextId(): number {
    this.lastId = this.lastId >= 0xffff ? 1 : this.lastId + 1;
    return this.lastId;
  }

  private onData(chunk: Uint8Array): void {
    for (const event of this.parser.push(chunk)) this.onParserEvent(event);
  }

  private onParserEvent(event: ParserEvent): void {
    switch (event.type) {
      case 'frame': {
        this.stats.framesReceived++;
        let message: Message;
        try {
          if (event.frame.version !== PROTOCOL_VERSION) throw new Error(`protocol version ${event.frame.version}`);
          message = frameToMessage(event.frame);
        } catch (error) {
          this.emit('frameError', { type: 'undecodable', reason: (error as Error).message });
          this.noteCorrupt();
          return;
        }
        const waiter = this.waiter;
        if (message.kind === 'request' || !waiter || !waiter.ids.has(message.requestId)) {
          this.stats.staleAnswers++;
          return;
        }
        waiter.settle({ type: 'answer', message });
        return;
      }
      case 'garbage':
        this.stats.garbageBytes += event.bytes;
        return;
      case 'bad-crc':
        this.stats.badCrc++;
        break;
      case 'bad-header':
        this.stats.badHeader++;
        break;
      case 'oversized':
        this.stats.oversized++;
        break;
    }
    this.emit('frameError', event);
    this.noteCorrupt();
  }

  /** A damaged frame arrived: resend an idempotent request now instead of waiting out the timeout. */
  private noteCorrupt(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    waiter.sawCorrupt = true;
    if (waiter.idempotent) waiter.settle({ type: 'corrupt' });
  }

  private onClose(error?: Error): void {
    const reason = error ? `: ${error.message}` : '';
    this.shutdown(
      new DongleError(DongleErrorCode.CLOSED, `connection to the dongle on ${this.transport.description} closed${reason}; check that it is plugged in (or the emulator running), then open a new session`, error ? { cause: error } : {}),
    );
  }

  private shutdown(error: DongleError): void {
    if (this.closeError) return;
    this.closeError = error;
    this.transport.off('data', this.onData);
    this.transport.off('close', this.onClose);
    this.waiter?.settle({ type: 'closed' });
    for (let job = this.queue.shift(); job; job = this.queue.shift()) job.fail(error);
    this.resolveClosed(error);
    this.emit('close', error);
  }
}

function badArgument(message: string): DongleError {
  return new DongleError(DongleErrorCode.BAD_ARGUMENT, message);
}

function closedError(description: string): DongleError {
  return new DongleError(DongleErrorCode.CLOSED, `connection to the dongle on ${description} closed`);
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot > 0xff) throw badArgument(`slot must be an integer 0..255, got ${slot}`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
