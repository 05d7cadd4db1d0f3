/**
 * EmulatedDongle: a software dongle that speaks protocol v1 over any transport. Each command is a
 * behaviour in a plain Map, so a test can replace one (say, make PING answer BUSY) and keep the
 * rest. Everything it signs carries class byte 'E', and INFO sets the emulated flag, so a
 * production verifier can tell it from hardware.
 */
import { HidGadgetTransport } from './hidg-transport.ts';
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { privateKeyFromSeed, publicKeyBytes, signEd25519 } from '../crypto.ts';
import { DongleError, DongleErrorCode } from '../errors.ts';
import { concatBytes, DecodeError } from '../protocol/bytes.ts';
import type { CommandCodec } from '../protocol/commands/codec.ts';
import { counterIncrementCodec } from '../protocol/commands/counter-increment.ts';
import { infoCodec } from '../protocol/commands/info.ts';
import { pingCodec } from '../protocol/commands/ping.ts';
import { signCodec } from '../protocol/commands/sign.ts';
import { slotReadCodec } from '../protocol/commands/slot-read.ts';
import { slotWriteCodec } from '../protocol/commands/slot-write.ts';
import { CommandCode, InfoFlag, MAX_PAYLOAD, PROTOCOL_VERSION, commandName } from '../protocol/constants.ts';
import { DeviceErrorCode, DeviceFailure } from '../protocol/device-errors.ts';
import { FrameParser, type Frame } from '../protocol/frame.ts';
import { encodeErrorFrame, encodeResponseFrame } from '../protocol/messages.ts';
import { COUNTER_DOMAIN, TIME_DOMAIN, checkDomain, counterSignedMessage, dongleSignedBytes, isReservedDomain, timeSignedMessage } from '../protocol/signing.ts';
import { timeCodec } from '../protocol/commands/time.ts';
import { createMemoryPair } from '../transport/memory.ts';
import { openSerialTransport } from '../transport/serial.ts';
import { SocketTransport } from '../transport/tcp.ts';
import type { Transport } from '../transport/transport.ts';
import { NO_FAULTS, type DongleFaults } from './faults.ts';
import { readStateFile, writeStateFile, type DongleState } from './state-file.ts';

export const EMULATOR_FIRMWARE_VERSION = 'licd-emulator/1.0.0';
export const DEFAULT_SLOT_COUNT = 4;
export const DEFAULT_SLOT_SIZE = 8192;

export interface EmulatedDongleOptions {
  /** JSON state file; created on first use. Without it the state lives in memory only. */
  statePath?: string;
  /** Serial for a new dongle (default EMU-<8 hex>). With an existing state file it must match. */
  serial?: string;
  /** Ed25519 seed for a new dongle (default random). */
  seed?: Uint8Array;
  slotCount?: number;
  slotSize?: number;
  firmwareVersion?: string;
  faults?: Partial<DongleFaults>;
  /** Source of randomness for probabilistic faults; inject for repeatable tests. */
  random?: () => number;
  /**
   * Give the dongle a battery-backed clock (TIME): the host's time plus `offsetMs` (kept in the
   * state file). Off by default: an emulator inside the daemon's own process reads the same
   * clock as the daemon, which proves nothing; run it as its own process (firmware-bridge/cli.ts
   * --clock) to stand for a dongle with a real clock.
   */
  clock?: { offsetMs?: number };
  /** The host time the emulated clock counts from (tests). */
  hostTime?: () => number;
}

export interface BehaviourContext {
  dongle: EmulatedDongle;
  requestId: number;
  connection: string;
}

/** Handles one request payload; returns the response payload or throws DeviceFailure. */
export type CommandBehaviour = (payload: Uint8Array, context: BehaviourContext) => Uint8Array | Promise<Uint8Array>;

/** Builds a behaviour from a codec and a handler of decoded requests. */
export function behaviour<Req, Res>(
  codec: CommandCodec<Req, Res>,
  handler: (request: Req, context: BehaviourContext) => Res | Promise<Res>,
): CommandBehaviour {
  return async (payload, context) => codec.encodeResponse(await handler(codec.decodeRequest(payload), context));
}

export interface ServeHandle {
  /** Where it serves, e.g. "tcp://127.0.0.1:40123" or "serial:/tmp/licd-dongle". */
  readonly address: string;
  close(): Promise<void>;
}

export interface TcpServeHandle extends ServeHandle {
  readonly host: string;
  readonly port: number;
}

interface Connection {
  transport: Transport;
  parser: FrameParser;
  /** Serial lines cannot be "closed" from the device side: an unplugged serial dongle goes silent. */
  closeOnUnplug: boolean;
}

export class EmulatedDongle extends EventEmitter {
  readonly statePath: string | undefined;
  readonly firmwareVersion: string;
  readonly slotCount: number;
  /** Requests received per command name (counted on arrival), for tests that count resends. */
  readonly requestCounts = new Map<string, number>();

  private state: DongleState;
  private readonly staging: Uint8Array[];
  private readonly key: KeyObject;
  private readonly wrongKey: KeyObject;
  private readonly pub: Uint8Array;
  private faults: DongleFaults;
  private corruptLeft = 0;
  private readonly random: () => number;
  private readonly behaviours = new Map<number, CommandBehaviour>();
  private readonly connections = new Set<Connection>();
  private readonly servers = new Set<ServeHandle>();
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  /** The device does one thing at a time, like the firmware's main loop. */
  private work: Promise<void> = Promise.resolve();
  private stopped = false;

  /** Loads the state file (creating it if absent), or makes an in-memory dongle. */
  static async open(options: EmulatedDongleOptions = {}): Promise<EmulatedDongle> {
    const slotCount = options.slotCount ?? DEFAULT_SLOT_COUNT;
    const slotSize = options.slotSize ?? DEFAULT_SLOT_SIZE;
    let state = options.statePath ? await readStateFile(options.statePath) : undefined;
    if (state) {
      if (options.serial !== undefined && options.serial !== state.serial) {
        throw new Error(`state file ${options.statePath} belongs to dongle ${state.serial}, not ${options.serial}; drop --serial or use another state file`);
      }
      while (state.slots.length < slotCount) state.slots.push(new Uint8Array(0));
    } else {
      state = {
        serial: options.serial ?? `EMU-${randomBytes(4).toString('hex').toUpperCase()}`,
        seed: options.seed ? Uint8Array.from(options.seed) : Uint8Array.from(randomBytes(32)),
        counter: 0n,
        slotSize,
        slots: Array.from({ length: slotCount }, () => new Uint8Array(0)),
      };
      if (checkDomain(state.serial)) throw new Error(`dongle serial ${JSON.stringify(state.serial)} must be 1..64 printable ASCII characters without spaces`);
      if (options.statePath) await writeStateFile(options.statePath, state);
    }
    return new EmulatedDongle(state, options);
  }

  private constructor(state: DongleState, options: EmulatedDongleOptions) {
    super();
    this.state = state;
    this.statePath = options.statePath;
    this.firmwareVersion = options.firmwareVersion ?? EMULATOR_FIRMWARE_VERSION;
    this.slotCount = state.slots.length;
    this.staging = state.slots.map((s) => Uint8Array.from(s));
    this.key = privateKeyFromSeed(state.seed);
    this.pub = publicKeyBytes(this.key);
    // A stable "other" key, so a wrong signature is wrong the same way every run.
    this.wrongKey = privateKeyFromSeed(createHash('sha256').update('licd-emulator-wrong-key').update(state.seed).digest());
    this.faults = { ...NO_FAULTS };
    this.random = options.random ?? Math.random;
    this.setFaults(options.faults ?? {});
    this.hostTime = options.hostTime ?? (() => Date.now());
    if (options.clock) this.state = { ...this.state, clockOffsetMs: options.clock.offsetMs ?? this.state.clockOffsetMs ?? 0 };
    this.installDefaultBehaviours();
  }

  private readonly hostTime: () => number;

  /** The emulated battery-backed clock, ms since the epoch, or null for a dongle without one. */
  clockNow(): number | null {
    return this.state.clockOffsetMs === undefined ? null : this.hostTime() + this.state.clockOffsetMs;
  }

  /** Sets the emulated clock (kept in the state file); null removes it (TIME then answers BAD_COMMAND). */
  async setClock(ms: number | null): Promise<void> {
    const next: DongleState = { ...this.state };
    if (ms === null) delete next.clockOffsetMs;
    else next.clockOffsetMs = ms - this.hostTime();
    await this.saveState(next);
    this.state = next;
  }

  // ----- identity and state ---------------------------------------------------------------

  get serial(): string {
    return this.state.serial;
  }

  get publicKey(): Uint8Array {
    return Uint8Array.from(this.pub);
  }

  get counter(): bigint {
    return this.state.counter;
  }

  get slotSize(): number {
    return this.state.slotSize;
  }

  slotContent(slot: number): Uint8Array {
    const content = this.state.slots[slot];
    if (!content) throw new RangeError(`no slot ${slot}`);
    return Uint8Array.from(content);
  }

  // ----- faults and behaviours ------------------------------------------------------------

  getFaults(): DongleFaults {
    return { ...this.faults };
  }

  /** Changes only the faults named; `unplugged` goes through plug()/unplug(). */
  setFaults(faults: Partial<DongleFaults>): void {
    const { unplugged, ...rest } = faults;
    this.faults = { ...this.faults, ...rest };
    if (rest.corruptFrames !== undefined) this.corruptLeft = typeof rest.corruptFrames === 'number' ? rest.corruptFrames : 0;
    if (unplugged === true) this.unplug();
    else if (unplugged === false) this.plug();
  }

  clearFaults(): void {
    this.setFaults({ ...NO_FAULTS });
  }

  get unplugged(): boolean {
    return this.faults.unplugged;
  }

  /** Pulls the dongle: memory and TCP connections close, serial lines go silent. */
  unplug(): void {
    if (this.faults.unplugged) return;
    this.faults.unplugged = true;
    for (const conn of [...this.connections]) {
      conn.parser.reset();
      if (conn.closeOnUnplug) void conn.transport.close();
    }
    this.emit('unplugged');
  }

  plug(): void {
    if (!this.faults.unplugged) return;
    this.faults.unplugged = false;
    // A real dongle boots fresh: RAM state such as half-staged slot writes is gone.
    for (let i = 0; i < this.staging.length; i++) this.staging[i] = Uint8Array.from(this.state.slots[i]!);
    this.emit('plugged');
  }

  toggleUnplugged(): boolean {
    if (this.faults.unplugged) this.plug();
    else this.unplug();
    return this.faults.unplugged;
  }

  /** Replaces one command's behaviour; pass undefined to restore the default. */
  setBehaviour(command: number, replacement: CommandBehaviour | undefined): void {
    if (replacement) this.behaviours.set(command, replacement);
    else this.installDefaultBehaviours(command);
  }

  getBehaviour(command: number): CommandBehaviour | undefined {
    return this.behaviours.get(command);
  }

  // ----- serving --------------------------------------------------------------------------

  /** Serves the protocol on a transport (the device side). */
  attach(transport: Transport, options: { closeOnUnplug?: boolean } = {}): void {
    if (this.stopped) throw new DongleError(DongleErrorCode.CLOSED, 'emulated dongle has been closed');
    const conn: Connection = { transport, parser: new FrameParser(), closeOnUnplug: options.closeOnUnplug ?? true };
    this.connections.add(conn);
    transport.on('data', (chunk) => {
      if (this.faults.unplugged) return;
      for (const event of conn.parser.push(chunk)) {
        if (event.type === 'frame') this.enqueue(event.frame, conn);
        else this.emit('frameError', event);
      }
    });
    transport.on('close', () => this.connections.delete(conn));
  }

  /** A new in-process connection; returns the host side. Refused while unplugged. */
  connectMemory(options: { maxChunk?: number } = {}): Transport {
    if (this.faults.unplugged) {
      throw new DongleError(DongleErrorCode.TRANSPORT, `emulated dongle ${this.serial} is unplugged; plug() it first`);
    }
    const [host, device] = createMemoryPair({ ...options, name: `memory emulator ${this.serial}` });
    this.attach(device);
    return host;
  }

  /** Serves on TCP. Use port 0 for any free port; `port` on the handle says which. */
  async serveTcp(host: string, port: number): Promise<TcpServeHandle> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ noDelay: true }, (socket) => {
      if (this.faults.unplugged || this.stopped) {
        socket.destroy();
        return;
      }
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      this.attach(new SocketTransport(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    const handle: TcpServeHandle = {
      host: address.address,
      port: address.port,
      address: `tcp://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`,
      close: async () => {
        this.servers.delete(handle);
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
    this.servers.add(handle);
    return handle;
  }

  /** Serves on a serial device, e.g. one end of a socat pty pair or a USB gadget port. */
  async serveSerial(path: string, baudRate?: number): Promise<ServeHandle> {
    const transport = await openSerialTransport(baudRate === undefined ? { kind: 'serial', path } : { kind: 'serial', path, baudRate });
    this.attach(transport, { closeOnUnplug: false });
    const handle: ServeHandle = {
      address: `serial:${path}`,
      close: async () => {
        this.servers.delete(handle);
        await transport.close();
      },
    };
    this.servers.add(handle);
    return handle;
  }

  /**
   * Serves as a USB HID device through a Linux gadget's /dev/hidgN (configfs f_hid, 64-byte
   * reports, no report id): the host sees a real HID dongle (images/boot-test.sh does this with
   * dummy_hcd inside the VM).
   */
  async serveHidGadget(path: string): Promise<ServeHandle> {
    const transport = await HidGadgetTransport.open(path);
    this.attach(transport, { closeOnUnplug: false });
    const handle: ServeHandle = {
      address: `hidg:${path}`,
      close: async () => {
        this.servers.delete(handle);
        await transport.close();
      },
    };
    this.servers.add(handle);
    return handle;
  }

  /** Stops serving, drops pending answers and waits for state writes to finish. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [...this.timers]) {
      clearTimeout(t.timer);
      t.resolve();
    }
    this.timers.clear();
    await Promise.all([...this.servers].map((s) => s.close()));
    await Promise.all([...this.connections].map((c) => c.transport.close()));
    await this.work;
  }

  // ----- request processing ---------------------------------------------------------------

  private enqueue(frame: Frame, conn: Connection): void {
    if ((frame.code & 0x80) === 0) {
      const name = commandName(frame.code);
      this.requestCounts.set(name, (this.requestCounts.get(name) ?? 0) + 1);
    }
    this.work = this.work.then(() => this.process(frame, conn)).catch((error: unknown) => {
      this.emit('internalError', error);
    });
  }

  private async process(frame: Frame, conn: Connection): Promise<void> {
    if (this.faults.unplugged || this.stopped) return;
    // Responses and errors are for the host; a dongle ignores them.
    if (frame.code & 0x80) return;
    const command = frame.code;
    let answer: Uint8Array;
    if (frame.version !== PROTOCOL_VERSION) {
      answer = encodeErrorFrame(command, frame.requestId, { code: DeviceErrorCode.BAD_VERSION, detail: `this dongle speaks protocol version ${PROTOCOL_VERSION}` });
    } else {
      const handler = this.behaviours.get(command);
      if (!handler) {
        answer = encodeErrorFrame(command, frame.requestId, { code: DeviceErrorCode.BAD_COMMAND, detail: `unknown command ${commandName(command)}` });
      } else {
        try {
          const payload = await handler(frame.payload, { dongle: this, requestId: frame.requestId, connection: conn.transport.description });
          answer = encodeResponseFrame(command, frame.requestId, payload);
        } catch (error) {
          const { code, detail } =
            error instanceof DeviceFailure
              ? { code: error.code, detail: error.message }
              : error instanceof DecodeError
                ? { code: DeviceErrorCode.BAD_LENGTH, detail: error.message }
                : { code: DeviceErrorCode.INTERNAL, detail: (error as Error).message ?? String(error) };
          answer = encodeErrorFrame(command, frame.requestId, { code, detail });
        }
      }
    }
    if (this.faults.slowMs > 0) await this.sleep(this.faults.slowMs);
    if (this.faults.unplugged || this.stopped || !conn.transport.isOpen) return;
    if (this.shouldCorrupt()) {
      // Never the sync pair, so the host sees a damaged frame rather than silence.
      const at = 2 + Math.floor(this.random() * (answer.length - 2));
      answer[at]! ^= 1 + Math.floor(this.random() * 255);
    }
    conn.transport.write(answer);
  }

  private shouldCorrupt(): boolean {
    if (this.corruptLeft > 0) {
      this.corruptLeft--;
      return true;
    }
    const c = this.faults.corruptFrames;
    return typeof c === 'object' && this.random() < c.probability;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.timers.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.timers.add(entry);
    });
  }

  private signWithDeviceKey(domain: string, message: Uint8Array): Uint8Array {
    const key = this.faults.wrongSignature ? this.wrongKey : this.key;
    return signEd25519(key, dongleSignedBytes(domain, message, true));
  }

  private async saveState(next: DongleState): Promise<void> {
    if (this.statePath) await writeStateFile(this.statePath, next);
  }

  private checkSlot(slot: number): void {
    if (slot >= this.slotCount) throw new DeviceFailure(DeviceErrorCode.BAD_SLOT, `slot ${slot} does not exist; this dongle has slots 0..${this.slotCount - 1}`);
  }

  private installDefaultBehaviours(only?: number): void {
    const defaults = new Map<number, CommandBehaviour>([
      [CommandCode.PING, behaviour(pingCodec, (req) => req)],

      [
        CommandCode.INFO,
        behaviour(infoCodec, () => ({
          protocolVersion: PROTOCOL_VERSION,
          flags: InfoFlag.EMULATED,
          publicKey: this.publicKey,
          counter: this.state.counter,
          slotCount: this.slotCount,
          slotSize: this.state.slotSize,
          maxPayload: MAX_PAYLOAD,
          serial: this.state.serial,
          firmwareVersion: this.firmwareVersion,
        })),
      ],

      [
        CommandCode.SIGN,
        behaviour(signCodec, ({ domain, message }) => {
          const problem = checkDomain(domain);
          if (problem) throw new DeviceFailure(DeviceErrorCode.BAD_DOMAIN, `domain is ${problem}`);
          if (isReservedDomain(domain)) throw new DeviceFailure(DeviceErrorCode.BAD_DOMAIN, `domain ${domain} is reserved`);
          return { signature: this.signWithDeviceKey(domain, message) };
        }),
      ],

      [
        CommandCode.COUNTER_INCREMENT,
        behaviour(counterIncrementCodec, async ({ nonce }) => {
          if (this.faults.counterFailure) throw new DeviceFailure(DeviceErrorCode.COUNTER_FAILURE, 'counter cell did not step (injected fault counterFailure)');
          if (this.state.counter === 0xffff_ffff_ffff_ffffn) throw new DeviceFailure(DeviceErrorCode.COUNTER_EXHAUSTED, 'counter is at its maximum');
          const counter = this.state.counter + 1n;
          // Durable before it is answered: an answered step must survive a power cut.
          try {
            await this.saveState({ ...this.state, counter });
          } catch (error) {
            throw new DeviceFailure(DeviceErrorCode.COUNTER_FAILURE, `state file write failed: ${(error as Error).message}`);
          }
          this.state = { ...this.state, counter };
          return { counter, signature: this.signWithDeviceKey(COUNTER_DOMAIN, counterSignedMessage(counter, nonce)) };
        }),
      ],

      [
        CommandCode.TIME,
        behaviour(timeCodec, ({ nonce }) => {
          const now = this.clockNow();
          if (now === null) throw new DeviceFailure(DeviceErrorCode.BAD_COMMAND, 'this dongle has no clock');
          const ms = BigInt(Math.max(0, Math.floor(now)));
          return { ms, signature: this.signWithDeviceKey(TIME_DOMAIN, timeSignedMessage(ms, nonce)) };
        }),
      ],

      [
        CommandCode.SLOT_READ,
        behaviour(slotReadCodec, ({ slot, offset, length }) => {
          this.checkSlot(slot);
          const content = this.state.slots[slot]!;
          if (offset > content.length) throw new DeviceFailure(DeviceErrorCode.BAD_OFFSET, `offset ${offset} is past the end of slot ${slot} (${content.length} bytes)`);
          const n = Math.min(length, content.length - offset, MAX_PAYLOAD - 2);
          return { total: content.length, data: content.slice(offset, offset + n) };
        }),
      ],

      [
        CommandCode.SLOT_WRITE,
        behaviour(slotWriteCodec, async ({ slot, offset, commit, data }) => {
          this.checkSlot(slot);
          const staged = this.staging[slot]!;
          if (offset > staged.length) throw new DeviceFailure(DeviceErrorCode.BAD_OFFSET, `offset ${offset} leaves a gap: ${staged.length} bytes are staged for slot ${slot}`);
          if (offset + data.length > this.state.slotSize) {
            throw new DeviceFailure(DeviceErrorCode.BAD_OFFSET, `write would end at ${offset + data.length}, slot ${slot} holds ${this.state.slotSize} bytes`);
          }
          const next = concatBytes(staged.subarray(0, offset), data);
          this.staging[slot] = next;
          if (commit) {
            const slots = this.state.slots.slice();
            slots[slot] = Uint8Array.from(next);
            try {
              await this.saveState({ ...this.state, slots });
            } catch (error) {
              throw new DeviceFailure(DeviceErrorCode.STORAGE_FAILURE, `state file write failed: ${(error as Error).message}`);
            }
            this.state = { ...this.state, slots };
          }
          return { staged: next.length, committed: commit };
        }),
      ],
    ]);
    for (const [code, b] of defaults) if (only === undefined || only === code) this.behaviours.set(code, b);
  }
}
