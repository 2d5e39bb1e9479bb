/** rebuildIndexes(), verify() and data-index builds: all derive index entries from the ledger with forEachIndexEntry. */
import { decodeChunk, type DecodedChunk } from '../ledger/chunk.js';
import { decodeCommit, WAL_RECORD_COMMIT, WAL_RECORD_ID_SEED } from '../ledger/commit-record.js';
import { INDEX_KEY_SPACES, indexPrefix, KeySpace, ledgerKey, metaKey, prefixBounds, readU64, spaceRange, utf8 } from '../ledger/keys.js';
import { ByteArena, VIEW, type BatchFactory, type LevelDatabase } from '../ledger/level.js';
import type { Wal } from '../wal/wal.js';
import { forEachIndexEntry } from './entries.js';

export const REBUILD_BATCH_EVENTS = 4096;
export const VERIFY_PROBLEMS_MAX = 100;
const VERIFY_LOOKUP_BATCH_ENTRIES = 1024;

export interface RebuildProgress {
  /** Events whose index entries are written so far. */
  events: number;
  /** Events in the store. */
  total: number;
}

export interface VerifyReport {
  ok: boolean;
  /** Human-readable findings, at most VERIFY_PROBLEMS_MAX. */
  problems: string[];
  events: number;
  indexEntries: number;
  walRecordsChecked: number;
}

/** Chunks of the ledger in position order. */
async function* ledgerChunks(db: LevelDatabase): AsyncGenerator<{ first: number; bytes: Uint8Array; chunk: DecodedChunk }> {
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger) })) {
    const first = readU64(key, 1);
    yield { first, bytes: value, chunk: decodeChunk(value, String(first)) };
  }
}

/**
 * Writes the index entries (those `keep` accepts) of the whole ledger in batches of
 * REBUILD_BATCH_EVENTS events, reporting progress after each; returns the events seen.
 */
async function writeDerivedEntries(
  db: LevelDatabase,
  newBatch: BatchFactory,
  dataFields: readonly string[],
  keep: (key: Uint8Array) => boolean,
  progress: (events: number) => void,
): Promise<number> {
  let batch = newBatch();
  const arena = new ByteArena();
  let inBatch = 0;
  let events = 0;
  const put = (key: Uint8Array, value: Uint8Array) => {
    if (keep(key)) batch.put(key, value);
  };
  for await (const { first, chunk } of ledgerChunks(db)) {
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

export async function rebuildIndexes(
  db: LevelDatabase,
  newBatch: BatchFactory,
  head: number,
  dataFields: readonly string[],
  onProgress?: (progress: RebuildProgress) => void,
): Promise<{ events: number }> {
  for (const space of INDEX_KEY_SPACES) await db.clear({ keyEncoding: 'view', ...spaceRange(space) });
  const events = await writeDerivedEntries(db, newBatch, dataFields, () => true, (done) => onProgress?.({ events: done, total: head }));
  return { events };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function hex(key: Uint8Array): string {
  return Buffer.from(key).toString('hex');
}

export async function verifyStore(db: LevelDatabase, wal: Wal, head: number, dataFields: readonly string[], idSeed: Uint8Array): Promise<VerifyReport> {
  const problems: string[] = [];
  const report = (problem: string) => {
    if (problems.length < VERIFY_PROBLEMS_MAX) problems.push(problem);
  };
  // Entries whose final value is the last one written (stream versions) are compared at the end.
  const lastWrite = new Map<string, { key: Uint8Array; value: Uint8Array }>();
  const expectedPerSpace = new Map<number, number>();
  let pending: { key: Uint8Array; value: Uint8Array }[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const values = await db.getMany<Uint8Array, Uint8Array>(pending.map((entry) => entry.key), VIEW);
    for (const [index, entry] of pending.entries()) {
      const actual = values[index];
      if (actual === undefined) report(`index entry ${hex(entry.key)} is missing`);
      else if (!sameBytes(actual, entry.value)) report(`index entry ${hex(entry.key)} has value ${hex(actual)}, expected ${hex(entry.value)}`);
    }
    pending = [];
  };

  let events = 0;
  let expectedFirst = 1;
  for await (const { first, chunk } of ledgerChunks(db)) {
    if (first !== expectedFirst) report(`ledger gap or overlap: chunk at position ${first}, expected ${expectedFirst}`);
    expectedFirst = first + chunk.tuples.length;
    events += chunk.tuples.length;
    forEachIndexEntry(chunk, first, (key, value) => {
      const space = key[0]!;
      if (space === KeySpace.streams || space === KeySpace.streamCategories) {
        lastWrite.set(hex(key), { key, value });
        return;
      }
      expectedPerSpace.set(space, (expectedPerSpace.get(space) ?? 0) + 1);
      pending.push({ key, value });
    }, dataFields);
    if (pending.length >= VERIFY_LOOKUP_BATCH_ENTRIES) await flush();
  }
  await flush();
  if (expectedFirst - 1 !== head) report(`ledger ends at position ${expectedFirst - 1}, but the head is ${head}`);
  for (const entry of lastWrite.values()) {
    expectedPerSpace.set(entry.key[0]!, (expectedPerSpace.get(entry.key[0]!) ?? 0) + 1);
    pending.push(entry);
    if (pending.length >= VERIFY_LOOKUP_BATCH_ENTRIES) await flush();
  }
  await flush();

  // Extra entries (pointing at nothing) show as a count larger than the ledger implies.
  let indexEntries = 0;
  for (const space of INDEX_KEY_SPACES) {
    let count = 0;
    for await (const key of db.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(space) })) {
      void key;
      count++;
    }
    indexEntries += count;
    const expected = expectedPerSpace.get(space) ?? 0;
    if (count !== expected) report(`index space '${String.fromCharCode(space)}' has ${count} entries, the ledger implies ${expected}`);
  }

  // Every record still in the WAL must match the ledger byte for byte.
  let walRecordsChecked = 0;
  const storedSeed = await db.get<Uint8Array, Uint8Array>(metaKey('idSeed'), VIEW);
  if (storedSeed === undefined || !sameBytes(storedSeed, idSeed)) report(`M idSeed ${storedSeed === undefined ? 'is missing' : `is ${hex(storedSeed)}`}, but the store derives ids from ${hex(idSeed)}`);
  for await (const record of wal.replay({ from: wal.firstLsn })) {
    if (record.type === WAL_RECORD_ID_SEED && !sameBytes(record.payload, idSeed)) {
      report(`WAL record ${record.lsn} logs the id seed ${hex(record.payload)}, but the store derives ids from ${hex(idSeed)}`);
    }
    if (record.type !== WAL_RECORD_COMMIT) continue;
    walRecordsChecked++;
    const commit = decodeCommit(record.payload, record.lsn);
    const positions: number[] = [];
    let position = commit.firstPosition;
    for (const bytes of commit.chunks) {
      positions.push(position);
      position += decodeChunk(bytes, `in WAL record ${record.lsn}`).tuples.length;
    }
    const stored = await db.getMany<Uint8Array, Uint8Array>(positions.map((position) => ledgerKey(position)), VIEW);
    for (const [index, bytes] of commit.chunks.entries()) {
      const actual = stored[index];
      if (actual === undefined) report(`WAL record ${record.lsn}: ledger chunk at position ${positions[index]} is missing`);
      else if (!sameBytes(actual, bytes)) report(`WAL record ${record.lsn}: ledger chunk at position ${positions[index]} differs from the WAL`);
    }
  }
  return { ok: problems.length === 0, problems, events, indexEntries, walRecordsChecked };
}

export interface DataIndexProgress {
  /** The data fields being indexed. */
  fields: string[];
  events: number;
  total: number;
}

/**
 * Indexes `fields` (not yet indexed) over the whole ledger. Their old entries, left by a build
 * that a crash interrupted, are cleared first; the caller records the fields afterwards.
 */
export async function buildDataIndexes(
  db: LevelDatabase,
  newBatch: BatchFactory,
  head: number,
  fields: readonly string[],
  onProgress?: (progress: DataIndexProgress) => void,
): Promise<void> {
  for (const field of fields) await db.clear({ keyEncoding: 'view', ...prefixBounds(indexPrefix(KeySpace.data, utf8(field))) });
  const onlyData = (key: Uint8Array) => key[0] === KeySpace.data;
  await writeDerivedEntries(db, newBatch, fields, onlyData, (done) => onProgress?.({ fields: [...fields], events: done, total: head }));
}
