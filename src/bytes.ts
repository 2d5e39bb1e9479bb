/**
 * The byte codec every layer shares: unsigned 64-bit integers (as safe JavaScript numbers) and
 * UTF-8. LevelDB keys and values are big-endian, so that byte order is numeric order; WAL
 * headers are little-endian, like the LevelDB log format they follow. The names say which.
 */

const TWO_TO_32 = 2 ** 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function writeU64BE(target: Uint8Array, offset: number, value: number): void {
  const high = Math.floor(value / TWO_TO_32);
  const low = value % TWO_TO_32;
  target[offset] = high >>> 24;
  target[offset + 1] = (high >>> 16) & 0xff;
  target[offset + 2] = (high >>> 8) & 0xff;
  target[offset + 3] = high & 0xff;
  target[offset + 4] = low >>> 24;
  target[offset + 5] = (low >>> 16) & 0xff;
  target[offset + 6] = (low >>> 8) & 0xff;
  target[offset + 7] = low & 0xff;
}

export function readU64BE(source: Uint8Array, offset: number): number {
  const high = ((source[offset]! << 24) >>> 0) + (source[offset + 1]! << 16) + (source[offset + 2]! << 8) + source[offset + 3]!;
  const low = ((source[offset + 4]! << 24) >>> 0) + (source[offset + 5]! << 16) + (source[offset + 6]! << 8) + source[offset + 7]!;
  return high * TWO_TO_32 + low;
}

export function writeU64LE(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO_TO_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_TO_32), true);
}

export function readU64LE(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * TWO_TO_32;
}

/** Strings up to this length take the ASCII loop in utf8(). */
const ASCII_LOOP_CHARS_MAX = 256;

/** UTF-8 bytes of `text`. Key parts are mostly short ASCII, where a loop costs a third of TextEncoder's call. */
export function utf8(text: string): Uint8Array {
  const length = text.length;
  if (length > ASCII_LOOP_CHARS_MAX) return encoder.encode(text);
  const bytes = new Uint8Array(length);
  for (let index = 0; index < length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) return encoder.encode(text);
    bytes[index] = code;
  }
  return bytes;
}

export function utf8Decode(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
