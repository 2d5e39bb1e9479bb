/**
 * The canonical CBOR form values are compared by (docs/storage-format.md, "Canonical form"):
 * data-field index keys, query values and idempotent-retry comparisons use it.
 */
import { Tag } from 'cbor-x';
import { CborError, GENERIC_OBJECT_TAG } from './cbor.js';

let out = new Uint8Array(1024);
let outView = new DataView(out.buffer);
let outPos = 0;

/**
 * The deterministic encoding values are compared by (docs/storage-format.md, "Canonical form"):
 * RFC 8949 §4.2.1 (shortest heads and floats, definite lengths, map entries sorted by their
 * encoded keys), with what reads return as the value: an object is its own enumerable string
 * keys, -0 is 0 (the ledger stores it so), a Buffer or ArrayBuffer is its bytes; a bigint is
 * always a bignum (tag 2/3) and a Map is tagged 259, so 1 ≠ 1n and a Map ≠ an object.
 */
export function canonicalBytes(value: unknown): Uint8Array {
  outPos = 0;
  try {
    writeCanonical(value);
    return out.slice(0, outPos);
  } finally {
    if (out.length > CANONICAL_BUFFER_KEPT_SIZE_BYTES) {
      out = new Uint8Array(CANONICAL_BUFFER_KEPT_SIZE_BYTES);
      outView = new DataView(out.buffer);
    }
  }
}

/** The output buffer shrinks back to this after encoding a large value. */
const CANONICAL_BUFFER_KEPT_SIZE_BYTES = 64 * 1024;

function reserve(sizeBytes: number): void {
  if (outPos + sizeBytes <= out.length) return;
  const grown = new Uint8Array(Math.max(out.length * 2, outPos + sizeBytes));
  grown.set(out.subarray(0, outPos));
  out = grown;
  outView = new DataView(out.buffer);
}

function writeHead(major: number, value: number): void {
  reserve(9);
  const high = major << 5;
  if (value < 24) out[outPos++] = high | value;
  else if (value < 0x100) {
    out[outPos++] = high | 24;
    out[outPos++] = value;
  } else if (value < 0x10000) {
    out[outPos++] = high | 25;
    outView.setUint16(outPos, value);
    outPos += 2;
  } else if (value < 0x100000000) {
    out[outPos++] = high | 26;
    outView.setUint32(outPos, value);
    outPos += 4;
  } else {
    out[outPos++] = high | 27;
    outView.setBigUint64(outPos, BigInt(value));
    outPos += 8;
  }
}

function writeBytes(major: number, bytes: Uint8Array): void {
  writeHead(major, bytes.length);
  reserve(bytes.length);
  out.set(bytes, outPos);
  outPos += bytes.length;
}

const TWO_TO_64 = 2 ** 64;

function writeNumber(value: number): void {
  if (Number.isInteger(value) && Math.abs(value) < TWO_TO_64) {
    if (value >= 0) writeHead(0, value);
    else writeHead(1, -1 - value);
    return;
  }
  reserve(9);
  if (Number.isNaN(value)) {
    out[outPos++] = 0xf9;
    out[outPos++] = 0x7e;
    out[outPos++] = 0x00;
    return;
  }
  const half = numberToHalf(value);
  if (half !== null) {
    out[outPos++] = 0xf9;
    outView.setUint16(outPos, half);
    outPos += 2;
  } else if (Math.fround(value) === value) {
    out[outPos++] = 0xfa;
    outView.setFloat32(outPos, value);
    outPos += 4;
  } else {
    out[outPos++] = 0xfb;
    outView.setFloat64(outPos, value);
    outPos += 8;
  }
}

/** The half-precision bits of `value` when it has one exactly (non-integers and infinities only reach here). */
function numberToHalf(value: number): number | null {
  if (value === Number.POSITIVE_INFINITY) return 0x7c00;
  if (value === Number.NEGATIVE_INFINITY) return 0xfc00;
  if (Math.fround(value) !== value) return null;
  const sign = value < 0 ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  for (let exponent = -14; exponent <= 15; exponent++) {
    // Normal halves: (1 + m/1024) · 2^exponent, m an integer below 1024.
    const mantissa = magnitude / 2 ** exponent - 1;
    if (mantissa >= 0 && mantissa < 1) {
      const bits = mantissa * 1024;
      return Number.isInteger(bits) ? sign | ((exponent + 15) << 10) | bits : null;
    }
  }
  const subnormal = magnitude / 2 ** -24;
  return Number.isInteger(subnormal) && subnormal < 1024 ? sign | subnormal : null;
}

function writeBigInt(value: bigint): void {
  const negative = value < 0n;
  let magnitude = negative ? -1n - value : value;
  const bytes: number[] = [];
  while (magnitude > 0n) {
    bytes.unshift(Number(magnitude & 0xffn));
    magnitude >>= 8n;
  }
  writeHead(6, negative ? 3 : 2);
  writeBytes(2, Uint8Array.from(bytes));
}

/** Entries as encoded [key, value] byte pairs, sorted bytewise by key, then by value (keys may encode alike). */
function writeSortedEntries(entries: [Uint8Array, Uint8Array][]): void {
  entries.sort(([keyA, valueA], [keyB, valueB]) => Buffer.compare(keyA, keyB) || Buffer.compare(valueA, valueB));
  writeHead(5, entries.length);
  for (const [key, value] of entries) {
    reserve(key.length + value.length);
    out.set(key, outPos);
    outPos += key.length;
    out.set(value, outPos);
    outPos += value.length;
  }
}

/** The encoding of `value` alone, for sorting: written past the output so far, then taken back. */
function encodedApart(value: unknown): Uint8Array {
  const start = outPos;
  writeCanonical(value);
  const encoded = out.slice(start, outPos);
  outPos = start;
  return encoded;
}

const TYPED_ARRAY_TAGS = new Map<unknown, number>([
  [Uint8ClampedArray, 68],
  [Uint16Array, 69],
  [Uint32Array, 70],
  [BigUint64Array, 71],
  [Int8Array, 72],
  [Int16Array, 77],
  [Int32Array, 78],
  [BigInt64Array, 79],
  [Float32Array, 85],
  [Float64Array, 86],
]);

function writeCanonical(value: unknown): void {
  switch (typeof value) {
    case 'string':
      writeBytes(3, Buffer.from(value, 'utf8'));
      return;
    case 'number':
      writeNumber(value);
      return;
    case 'boolean':
      writeHead(7, value ? 21 : 20);
      return;
    case 'undefined':
      writeHead(7, 23);
      return;
    case 'bigint':
      writeBigInt(value);
      return;
    case 'object':
      break;
    default:
      throw new CborError(`a ${typeof value} has no CBOR form`);
  }
  if (value === null) {
    writeHead(7, 22);
    return;
  }
  if (Array.isArray(value)) {
    writeHead(4, value.length);
    for (let index = 0; index < value.length; index++) writeCanonical(value[index]);
    return;
  }
  if (value instanceof Uint8Array && (value.constructor === Uint8Array || Buffer.isBuffer(value))) {
    writeBytes(2, value);
    return;
  }
  if (ArrayBuffer.isView(value)) {
    const tag = TYPED_ARRAY_TAGS.get(value.constructor);
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (tag !== undefined) writeHead(6, tag);
    writeBytes(2, bytes); // a DataView is stored as its bytes
    return;
  }
  if (value instanceof ArrayBuffer) {
    writeBytes(2, new Uint8Array(value));
    return;
  }
  if (value instanceof Date) {
    writeHead(6, 1);
    writeNumber(value.getTime() / 1000);
    return;
  }
  if (value instanceof Tag) {
    writeHead(6, value.tag);
    writeCanonical(value.value);
    return;
  }
  if (value instanceof RegExp || value instanceof Error) {
    // As the ledger of earlier versions holds them (tag 27), so queries can still find those.
    writeHead(6, GENERIC_OBJECT_TAG);
    writeCanonical(value instanceof RegExp ? ['RegExp', value.source, value.flags] : [value.name, value.message]);
    return;
  }
  if (value instanceof Map) {
    writeHead(6, 259);
    writeSortedEntries([...value].map(([key, entry]) => [encodedApart(key), encodedApart(entry)]));
    return;
  }
  if (value instanceof Set) {
    // A set's order carries no meaning: its elements sorted by their encoding.
    const items = [...value].map((item) => encodedApart(item)).sort((a, b) => Buffer.compare(a, b));
    writeHead(6, 258);
    writeHead(4, items.length);
    for (const item of items) {
      reserve(item.length);
      out.set(item, outPos);
      outPos += item.length;
    }
    return;
  }
  // Plain objects, and anything else cbor-x stores as one: its own enumerable string keys.
  const entries: [Uint8Array, Uint8Array][] = [];
  for (const key of Object.keys(value)) entries.push([encodedApart(key), encodedApart((value as Record<string, unknown>)[key])]);
  writeSortedEntries(entries);
}
