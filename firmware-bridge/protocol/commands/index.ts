import type { AnyCommandCodec } from './codec.ts';
import { counterIncrementCodec } from './counter-increment.ts';
import { infoCodec } from './info.ts';
import { pingCodec } from './ping.ts';
import { signCodec } from './sign.ts';
import { slotReadCodec } from './slot-read.ts';
import { slotWriteCodec } from './slot-write.ts';
import { timeCodec } from './time.ts';

export * from './codec.ts';
export * from './counter-increment.ts';
export * from './info.ts';
export * from './ping.ts';
export * from './sign.ts';
export * from './slot-read.ts';
export * from './slot-write.ts';
export * from './time.ts';

/** Every v1 command, by command code. */
export const commandCodecs: ReadonlyMap<number, AnyCommandCodec> = new Map<number, AnyCommandCodec>(
  [pingCodec, infoCodec, signCodec, counterIncrementCodec, slotReadCodec, slotWriteCodec, timeCodec].map((c) => [c.code, c]),
);
