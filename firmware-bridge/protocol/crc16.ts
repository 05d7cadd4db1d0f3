/**
 * CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.
 * Check value: crc16("123456789") === 0x29B1. Table-driven because the parser runs it over
 * every byte that arrives.
 */
const TABLE = buildTable();

function buildTable(): Uint16Array {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let crc = n << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[n] = crc;
  }
  return table;
}

export const CRC16_INIT = 0xffff;

/** CRC of `bytes[start, end)`, optionally continuing from a previous value. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length, init = CRC16_INIT): number {
  let crc = init;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >>> 8) ^ bytes[i]!) & 0xff]!;
  }
  return crc;
}
