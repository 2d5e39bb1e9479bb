/** Index entries derived from the ledger, in batches: what rebuilds and data-index builds write. */
import { decodeChunk, type DecodedChunk } from '../model/chunk.js';
import type { AbstractSnapshot } from 'abstract-level';
import { KeySpace, ledgerKey, spaceRange, type Allocate } from '../storage/keys.js';
import { ByteArena, VIEW, type BatchFactory, type LevelDatabase } from '../storage/level.js';
import { forEachIndexEntry } from './entries.js';
import { readU64BE } from '../bytes.js';

export const REBUILD_BATCH_EVENTS = 4096;

/** Which chunks a ledger scan covers: first positions in [from, through], read from `snapshot` if given. */
export interface ChunkRange {
  from?: number;
  through?: number;
  snapshot?: AbstractSnapshot | undefined;
}

/** Chunks of the ledger in position order. */
export async function* ledgerChunks(db: LevelDatabase, range: ChunkRange = {}): AsyncGenerator<{ first: number; bytes: Uint8Array; chunk: DecodedChunk }> {
  const space = spaceRange(KeySpace.ledger);
  const bounds = {
    gte: range.from === undefined ? space.gte : ledgerKey(range.from),
    ...(range.through === undefined ? { lt: space.lt } : { lte: ledgerKey(range.through) }),
  };
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...bounds, snapshot: range.snapshot })) {
    const first = readU64BE(key, 1);
    yield { first, bytes: value, chunk: decodeChunk(value, first) };
  }
}

/**
 * Writes the index entries (those `keep` accepts, through `put`) of the ledger's chunks in
 * `range` in batches of REBUILD_BATCH_EVENTS events, reporting progress after each; returns the
 * events seen.
 */
export async function writeDerivedEntries(
  db: LevelDatabase,
  newBatch: BatchFactory,
  dataFields: readonly string[],
  range: ChunkRange,
  keep: (key: Uint8Array) => boolean,
  target: (key: Uint8Array, allocate: Allocate) => Uint8Array,
  progress: (events: number) => void,
): Promise<number> {
  let batch = newBatch();
  const arena = new ByteArena();
  let inBatch = 0;
  let events = 0;
  const put = (key: Uint8Array, value: Uint8Array) => {
    if (keep(key)) batch.put(target(key, arena.allocate), value);
  };
  for await (const { first, chunk } of ledgerChunks(db, range)) {
    forEachIndexEntry(chunk, first, put, dataFields, true, arena.allocate);
    inBatch += chunk.tuples.length;
    events += chunk.tuples.length;
    if (inBatch >= REBUILD_BATCH_EVENTS) {
      await batch.write();
      batch = newBatch();
      inBatch = 0;
      progress(events);
    }
  }
  await batch.write();
  progress(events);
  return events;
}

