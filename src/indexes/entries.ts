/**
 * Index entries derived from one ledger chunk. The write path, rebuildIndexes() and verify()
 * all use this one function, so an incremental index equals a rebuilt one byte for byte.
 */
import type { DecodedChunk } from '../ledger/chunk.js';
import { streamCategory } from '../ledger/chunk.js';
import { dataValuePrefix, freshBytes, indexKey, KeySpace, nameKey, pairKey, positionKey, u64, u64Pair, utf8, type Allocate } from '../ledger/keys.js';
import { dataFieldBytes } from '../query/query.js';

export type PutEntry = (key: Uint8Array, value: Uint8Array) => void;

const EMPTY = new Uint8Array(0);

/**
 * `dataFields`: the data fields that have an index (docs/storage-format.md, data indexes).
 * `withStreamVersion` false leaves out the stream's version entry: a batch that also holds a
 * later chunk of the same stream writes only the newest one (the same final content).
 * `allocate`: where keys and values are built; a ByteArena's when they go straight into a batch.
 */
export function forEachIndexEntry(
  chunk: DecodedChunk,
  firstPosition: number,
  put: PutEntry,
  dataFields: readonly string[],
  withStreamVersion = true,
  allocate: Allocate = freshBytes,
): void {
  const chunkValue = u64(firstPosition, allocate);
  const streamBytes = chunk.stream === '' ? null : utf8(chunk.stream);
  const categoryBytes = chunk.stream === '' ? null : utf8(streamCategory(chunk.stream));
  // Chunks repeat types and tags: encode each string once per chunk.
  const utf8Cache = new Map<string, Uint8Array>();
  const bytesOf = (text: string) => {
    let bytes = utf8Cache.get(text);
    if (bytes === undefined) {
      bytes = utf8(text);
      utf8Cache.set(text, bytes);
    }
    return bytes;
  };
  for (let index = 0; index < chunk.tuples.length; index++) {
    const [id, type, data, , tags] = chunk.tuples[index]!;
    const position = firstPosition + index;
    const typeBytes = bytesOf(type);
    put(indexKey(KeySpace.type, typeBytes, position, allocate), chunkValue);
    if (tags.length > 0) {
      // The type rides along in tag entries: an item with tags and types filters on one cursor.
      const tagValue = allocate(8 + typeBytes.length);
      tagValue.set(chunkValue, 0);
      tagValue.set(typeBytes, 8);
      for (const tag of tags) put(indexKey(KeySpace.tag, bytesOf(tag), position, allocate), tagValue);
    }
    put(nameKey(KeySpace.id, utf8(id), allocate), u64(position, allocate));
    for (const field of dataFields) {
      const value = dataFieldBytes(data, field);
      if (value !== null) put(positionKey(dataValuePrefix(utf8(field), value), position, allocate), chunkValue);
    }
    if (streamBytes !== null && categoryBytes !== null) {
      put(indexKey(KeySpace.stream, streamBytes, chunk.firstStreamPosition + index, allocate), u64Pair(position, firstPosition, allocate));
      put(indexKey(KeySpace.category, categoryBytes, position, allocate), chunkValue);
    }
  }
  if (streamBytes !== null && categoryBytes !== null && chunk.tuples.length > 0) {
    if (withStreamVersion) put(nameKey(KeySpace.streams, streamBytes, allocate), u64(chunk.firstStreamPosition + chunk.tuples.length - 1, allocate));
    if (chunk.firstStreamPosition === 1) put(pairKey(KeySpace.streamCategories, categoryBytes, streamBytes, allocate), EMPTY);
  }
}
