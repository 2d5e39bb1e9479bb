/** LevelDB key layout of docs/storage-format.md. Keys are bytes; u64 is big-endian. */
import { readU64BE, utf8, writeU64BE } from '../bytes.js';

export const KeySpace = {
  meta: 0x4d, // M
  ledger: 0x4c, // L
  /** A stream's positions: stream position → ledger position, one entry per chunk. */
  streamPositions: 0x53, // S
  /** The list of streams with their versions. */
  streamVersions: 0x56, // V
  streamCategories: 0x43, // C
  type: 0x54, // T
  tag: 0x47, // G
  category: 0x4b, // K
  id: 0x49, // I
  data: 0x44, // D
  /** rebuildIndexes()'s shadow of the index spaces: `R` + an index key (docs/storage-format.md, "Rebuilds"). */
  rebuild: 0x52, // R
  /** Durable consumers' acknowledged positions (WAL record type 3): not derived from the ledger. */
  consumer: 0x4f, // O
} as const;

/** Key spaces derived from the ledger alone, which rebuildIndexes() makes equal to a rebuild. */
export const INDEX_KEY_SPACES = [
  KeySpace.streamPositions,
  KeySpace.streamVersions,
  KeySpace.streamCategories,
  KeySpace.type,
  KeySpace.tag,
  KeySpace.category,
  KeySpace.id,
  KeySpace.data,
] as const;

/** Where key and value bytes come from: fresh arrays, or a ByteArena's (level.ts) for a batch's puts. */
export type Allocate = (sizeBytes: number) => Uint8Array;

export const freshBytes: Allocate = (sizeBytes) => new Uint8Array(sizeBytes);


export function u64(value: number, allocate: Allocate = freshBytes): Uint8Array {
  const bytes = allocate(8);
  writeU64BE(bytes, 0, value);
  return bytes;
}

export function u64Pair(first: number, second: number, allocate: Allocate = freshBytes): Uint8Array {
  const bytes = allocate(16);
  writeU64BE(bytes, 0, first);
  writeU64BE(bytes, 8, second);
  return bytes;
}


export function metaKey(name: string): Uint8Array {
  const nameBytes = utf8(name);
  const key = new Uint8Array(1 + nameBytes.length);
  key[0] = KeySpace.meta;
  key.set(nameBytes, 1);
  return key;
}

export function ledgerKey(firstPosition: number, allocate: Allocate = freshBytes): Uint8Array {
  const key = allocate(9);
  key[0] = KeySpace.ledger;
  writeU64BE(key, 1, firstPosition);
  return key;
}

/** `space` str 0x00 u64(number): an entry of a string-keyed index ordered by number. */
export function indexKey(space: number, name: Uint8Array, number: number, allocate: Allocate = freshBytes): Uint8Array {
  const key = allocate(1 + name.length + 1 + 8);
  key[0] = space;
  key.set(name, 1);
  key[1 + name.length] = 0;
  writeU64BE(key, 2 + name.length, number);
  return key;
}

/** The number at the end of an index key made by indexKey. */
export function indexKeyNumber(key: Uint8Array): number {
  return readU64BE(key, key.length - 8);
}

/** Bounds [gte, lt) of every entry of `name` in an index key space. */
export function indexRange(space: number, name: Uint8Array): { gte: Uint8Array; lt: Uint8Array } {
  const gte = new Uint8Array(1 + name.length + 1);
  gte[0] = space;
  gte.set(name, 1);
  gte[1 + name.length] = 0;
  const lt = gte.slice();
  lt[lt.length - 1] = 1;
  return { gte, lt };
}

/** `space` str: a key space keyed by one string (streams, ids). */
export function nameKey(space: number, name: Uint8Array, allocate: Allocate = freshBytes): Uint8Array {
  const key = allocate(1 + name.length);
  key[0] = space;
  key.set(name, 1);
  return key;
}

/** `space` str 0x00 str. */
export function pairKey(space: number, first: Uint8Array, second: Uint8Array, allocate: Allocate = freshBytes): Uint8Array {
  const key = allocate(1 + first.length + 1 + second.length);
  key[0] = space;
  key.set(first, 1);
  key[1 + first.length] = 0;
  key.set(second, 2 + first.length);
  return key;
}

/** Bounds of a whole key space, or of the keys of a space that start with `prefix`. */
export function spaceRange(space: number, prefix: Uint8Array = new Uint8Array(0)): { gte: Uint8Array; lt: Uint8Array } {
  const gte = new Uint8Array(1 + prefix.length);
  gte[0] = space;
  gte.set(prefix, 1);
  // The smallest key greater than every key with this prefix: bump the last byte below 0xff.
  const lt = gte.slice();
  let index = lt.length - 1;
  while (index > 0 && lt[index] === 0xff) index--;
  if (index === 0) return { gte, lt: Uint8Array.of(space + 1) };
  lt[index]! += 1;
  return { gte, lt: lt.subarray(0, index + 1) };
}

/** Bounds [gte, lt) of every key that starts with `prefix`. */
export function prefixBounds(prefix: Uint8Array): { gte: Uint8Array; lt: Uint8Array } {
  const lt = prefix.slice();
  let index = lt.length - 1;
  while (index >= 0 && lt[index] === 0xff) index--;
  if (index < 0) return { gte: prefix, lt: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) };
  lt[index]! += 1;
  return { gte: prefix, lt: lt.subarray(0, index + 1) };
}

/** `space` str 0x00: the key prefix of every entry of one name in a string-keyed index. */
export function indexPrefix(space: number, name: Uint8Array): Uint8Array {
  const prefix = new Uint8Array(1 + name.length + 1);
  prefix[0] = space;
  prefix.set(name, 1);
  return prefix;
}

/** `D` str(field) 0x00 u32(value length) value: the prefix of one field value's entries. */
export function dataValuePrefix(field: Uint8Array, value: Uint8Array): Uint8Array {
  const prefix = new Uint8Array(1 + field.length + 1 + 4 + value.length);
  prefix[0] = KeySpace.data;
  prefix.set(field, 1);
  const lengthOffset = 2 + field.length;
  new DataView(prefix.buffer).setUint32(lengthOffset, value.length);
  prefix.set(value, lengthOffset + 4);
  return prefix;
}

/** A prefix made by indexPrefix or dataValuePrefix, followed by u64(position). */
export function positionKey(prefix: Uint8Array, position: number, allocate: Allocate = freshBytes): Uint8Array {
  const key = allocate(prefix.length + 8);
  key.set(prefix, 0);
  writeU64BE(key, prefix.length, position);
  return key;
}
