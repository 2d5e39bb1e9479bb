/**
 * Index entries derived from one ledger chunk. The write path, rebuildIndexes() and verify()
 * all use this one function, so an incremental index equals a rebuilt one byte for byte.
 */
import { CHUNK_EVENTS_MAX, streamCategory, type DecodedChunk } from '../model/chunk.js';
import { dataValuePrefix, freshBytes, indexKey, indexKeyNumber, KeySpace, nameKey, pairKey, positionKey, u64, u64Pair, type Allocate } from '../storage/keys.js';
import { dataFieldBytes } from '../model/query.js';
import { readU64BE, utf8, writeU64BE } from '../bytes.js';

/** An index entry: the event's position and its chunk's first position. */
export interface IndexHit {
  position: number;
  chunk: number;
}

export type PutEntry = (key: Uint8Array, value: Uint8Array) => void;

const EMPTY = new Uint8Array(0);

/**
 * Type and category entries are **postings**: one entry per chunk and name, keyed by the last
 * position in the chunk with that name, whose value lists the chunk's offsets having it; stream
 * entries are one per chunk too (a chunk is a run of one stream). A chunk holds at most
 * CHUNK_EVENTS_MAX events, so an entry's positions lie within CHUNK_EVENTS_MAX − 1 below its key
 * (docs/storage-format.md, "LevelDB keys").
 *
 * `dataFields`: the data fields that have an index (docs/storage-format.md, data indexes).
 * `withStreamVersion` false leaves out the stream's version entry: a batch that also holds a
 * later chunk of the same stream writes only the newest one (the same final content).
 * `allocate`: where keys and values are built; a ByteArena's when they go straight into a batch.
 * `texts`: UTF-8 of names already encoded; a batch of many small chunks shares one.
 */
export function forEachIndexEntry(
  chunk: DecodedChunk,
  firstPosition: number,
  put: PutEntry,
  dataFields: readonly string[],
  withStreamVersion = true,
  allocate: Allocate = freshBytes,
  texts: Map<string, Uint8Array> = new Map(),
): void {
  const count = chunk.tuples.length;
  if (count === 0) return;
  const chunkValue = u64(firstPosition, allocate);
  // Offsets per type, in first-appearance order (entries are written in that order); a chunk of
  // one event (a lone writer's) needs no map.
  const typeOffsets = count === 1 ? null : new Map<string, number[]>();
  for (let index = 0; index < count; index++) {
    const [id, type, data, , tags] = chunk.tuples[index]!;
    const position = firstPosition + index;
    if (typeOffsets !== null) {
      const offsets = typeOffsets.get(type);
      if (offsets === undefined) typeOffsets.set(type, [index]);
      else offsets.push(index);
    }
    if (tags.length > 0) {
      // The type rides along in tag entries: an item with tags and types filters on one cursor.
      const typeBytes = textBytes(texts, type);
      const tagValue = allocate(8 + typeBytes.length);
      tagValue.set(chunkValue, 0);
      tagValue.set(typeBytes, 8);
      for (const tag of tags) put(indexKey(KeySpace.tag, textBytes(texts, tag), position, allocate), tagValue);
    }
    // Generated ids (null) are derived from the position: no entry (ids.ts).
    if (id !== null) put(nameKey(KeySpace.id, utf8(id), allocate), u64(position, allocate));
    for (const field of dataFields) {
      const value = dataFieldBytes(data, field);
      if (value !== null) put(positionKey(dataValuePrefix(utf8(field), value), position, allocate), chunkValue);
    }
  }
  if (typeOffsets === null) {
    put(indexKey(KeySpace.type, textBytes(texts, chunk.tuples[0]![1]), firstPosition, allocate), postingValue(firstPosition, ONE_OFFSET, allocate));
  } else {
    for (const [type, offsets] of typeOffsets) {
      put(indexKey(KeySpace.type, textBytes(texts, type), firstPosition + offsets[offsets.length - 1]!, allocate), postingValue(firstPosition, offsets, allocate));
    }
  }
  if (chunk.stream === '') return;
  const streamBytes = textBytes(texts, chunk.stream);
  const categoryBytes = textBytes(texts, streamCategory(chunk.stream));
  const lastPosition = firstPosition + count - 1;
  const lastStreamPosition = chunk.firstStreamPosition + count - 1;
  put(indexKey(KeySpace.streamPositions, streamBytes, lastStreamPosition, allocate), u64Pair(firstPosition, chunk.firstStreamPosition, allocate));
  put(indexKey(KeySpace.category, categoryBytes, lastPosition, allocate), postingValue(firstPosition, allOffsets(count), allocate));
  if (withStreamVersion) put(nameKey(KeySpace.streamVersions, streamBytes, allocate), u64(lastStreamPosition, allocate));
  if (chunk.firstStreamPosition === 1) put(pairKey(KeySpace.streamCategories, categoryBytes, streamBytes, allocate), EMPTY);
}

/** Names whose UTF-8 a `texts` cache keeps (bounding a batch's memory for its key parts). */
const TEXT_CACHE_ENTRIES_MAX = 4096;

function textBytes(texts: Map<string, Uint8Array>, text: string): Uint8Array {
  let bytes = texts.get(text);
  if (bytes === undefined) {
    bytes = utf8(text);
    if (texts.size < TEXT_CACHE_ENTRIES_MAX) texts.set(text, bytes);
  }
  return bytes;
}

const ONE_OFFSET: readonly number[] = [0];

/** u64(chunk) then one byte per offset, ascending: the value of a type or category posting. */
function postingValue(chunkFirst: number, offsets: readonly number[], allocate: Allocate): Uint8Array {
  const value = allocate(8 + offsets.length);
  writeU64BE(value, 0, chunkFirst);
  for (let index = 0; index < offsets.length; index++) value[8 + index] = offsets[index]!;
  return value;
}

const ALL_OFFSETS = Array.from({ length: CHUNK_EVENTS_MAX }, (_, offset) => offset);

function allOffsets(count: number): readonly number[] {
  return count === CHUNK_EVENTS_MAX ? ALL_OFFSETS : ALL_OFFSETS.slice(0, count);
}

/** Whether a key space holds postings (several positions per entry) rather than one position per entry. */
export function isPostingSpace(space: number): boolean {
  return space === KeySpace.type || space === KeySpace.category || space === KeySpace.streamPositions;
}

/** Appends the hits of one entry of an index by position (type, category, tag, data) to `into`, in the direction's order. */
export function entryHits(space: number, key: Uint8Array, value: Uint8Array, into: IndexHit[], forward: boolean): void {
  const chunk = readU64BE(value, 0);
  if (space === KeySpace.type || space === KeySpace.category) {
    if (forward) for (let index = 8; index < value.length; index++) into.push({ position: chunk + value[index]!, chunk });
    else for (let index = value.length - 1; index >= 8; index--) into.push({ position: chunk + value[index]!, chunk });
    return;
  }
  into.push({ position: indexKeyNumber(key), chunk });
}

/** The chunk of one stream entry and the stream positions it holds (its positions follow the chunk's first). */
export function streamEntryRange(key: Uint8Array, value: Uint8Array): { chunk: number; firstStreamPosition: number; lastStreamPosition: number } {
  return { chunk: readU64BE(value, 0), firstStreamPosition: readU64BE(value, 8), lastStreamPosition: indexKeyNumber(key) };
}
