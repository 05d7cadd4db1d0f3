export * from './bytes.ts';
export * from './commands/index.ts';
export * from './constants.ts';
export * from './crc16.ts';
export * from './device-errors.ts';
export * from './frame.ts';
export * from './messages.ts';
export * from './signing.ts';
