/** rebuildIndexes(), verify() and data-index builds: all derive index entries from the ledger with forEachIndexEntry. */
import { decodeChunk, type DecodedChunk } from '../model/chunk.js';
import { decodeCommit, WAL_RECORD_COMMIT, WAL_RECORD_ID_SEED } from '../storage/commit-record.js';
import type { AbstractSnapshot } from 'abstract-level';
import { INDEX_KEY_SPACES, indexPrefix, KeySpace, ledgerKey, metaKey, prefixBounds, spaceRange, type Allocate } from '../storage/keys.js';
import { ByteArena, VIEW, type BatchFactory, type LevelDatabase } from '../storage/level.js';
import type { Wal, WalRecord } from '../wal/wal.js';
import { isFactError } from '../errors.js';
import { forEachIndexEntry } from './entries.js';
import { readU64BE, utf8, utf8Decode } from '../bytes.js';

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

/** Which chunks a ledger scan covers: first positions in [from, through], read from `snapshot` if given. */
interface ChunkRange {
  from?: number;
  through?: number;
  snapshot?: AbstractSnapshot | undefined;
}

/** Chunks of the ledger in position order. */
async function* ledgerChunks(db: LevelDatabase, range: ChunkRange = {}): AsyncGenerator<{ first: number; bytes: Uint8Array; chunk: DecodedChunk }> {
  const space = spaceRange(KeySpace.ledger);
  const bounds = {
    gte: range.from === undefined ? space.gte : ledgerKey(range.from),
    ...(range.through === undefined ? { lt: space.lt } : { lte: ledgerKey(range.through) }),
  };
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...bounds, snapshot: range.snapshot })) {
    const first = readU64BE(key, 1);
    yield { first, bytes: value, chunk: decodeChunk(value, String(first)) };
  }
}

/**
 * Writes the index entries (those `keep` accepts, through `put`) of the ledger's chunks in
 * `range` in batches of REBUILD_BATCH_EVENTS events, reporting progress after each; returns the
 * events seen.
 */
async function writeDerivedEntries(
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

const asIs = (key: Uint8Array) => key;

/** `R` + key: where a rebuild writes the entry it derives for `key`. */
function shadowKey(key: Uint8Array, allocate: Allocate): Uint8Array {
  const shadow = allocate(key.length + 1);
  shadow[0] = KeySpace.rebuild;
  shadow.set(key, 1);
  return shadow;
}

/** Index spaces whose every value starts with the u64 position (I) or chunk position (S T G K D) of the event(s) it indexes. */
const POSITIONED_SPACES = [KeySpace.streamPositions, KeySpace.type, KeySpace.tag, KeySpace.category, KeySpace.id, KeySpace.data] as const;
/** Index spaces that hold one entry per stream, whatever its events' positions (V: its version, last write wins). */
const PER_STREAM_SPACES = [KeySpace.streamVersions, KeySpace.streamCategories] as const;

/** The last position LevelDB holds every chunk through (`M applied`, written in every apply batch), at least `atLeast`. */
async function appliedPosition(db: LevelDatabase, atLeast: number): Promise<number> {
  const applied = await db.get<Uint8Array, Uint8Array>(metaKey('applied'), VIEW);
  return applied === undefined ? atLeast : Math.max(atLeast, readU64BE(applied, 0));
}

/** Drops a leftover shadow (of a rebuild that a crash or an error cut short): nothing reads it. */
export async function clearRebuildShadow(db: LevelDatabase): Promise<void> {
  await db.clear({ keyEncoding: 'view', ...spaceRange(KeySpace.rebuild) });
}

/** Entries of one iterator, read ahead in batches. */
class EntryReader {
  readonly #iterator;
  #buffer: [Uint8Array, Uint8Array][] = [];
  #index = 0;
  #done = false;

  constructor(db: LevelDatabase, range: { gte: Uint8Array; lt: Uint8Array }) {
    this.#iterator = db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...range });
  }

  async current(): Promise<[Uint8Array, Uint8Array] | null> {
    if (this.#index >= this.#buffer.length && !this.#done) {
      this.#buffer = await this.#iterator.nextv(MERGE_READ_BATCH_ENTRIES);
      this.#index = 0;
      if (this.#buffer.length === 0) this.#done = true;
    }
    return this.#buffer[this.#index] ?? null;
  }

  advance(): void {
    this.#index++;
  }

  close(): Promise<void> {
    return this.#iterator.close();
  }
}

const MERGE_READ_BATCH_ENTRIES = 256;
const MERGE_WRITE_BATCH_OPERATIONS = 1024;

/**
 * Makes one index space equal to its shadow, writing only the differences: an entry the
 * shadow lacks is deleted, one it has is put where missing or different. Entries for which
 * `ownedByApply` holds (events appended after the rebuild's snapshot, indexed by the apply) are
 * left alone. A healthy index is therefore never written, and a reader sees every entry that is
 * right at every moment.
 */
async function mergeSpace(db: LevelDatabase, space: number, ownedByApply: (value: Uint8Array) => boolean): Promise<number> {
  const live = new EntryReader(db, spaceRange(space));
  const shadow = new EntryReader(db, spaceRange(KeySpace.rebuild, Uint8Array.of(space)));
  let batch = db.batch();
  let operations = 0;
  let changes = 0;
  const change = async (write: () => void) => {
    write();
    changes++;
    if (++operations >= MERGE_WRITE_BATCH_OPERATIONS) {
      await batch.write();
      batch = db.batch();
      operations = 0;
    }
  };
  try {
    for (;;) {
      const liveEntry = await live.current();
      const shadowEntry = await shadow.current();
      if (liveEntry === null && shadowEntry === null) break;
      const order = liveEntry === null ? 1 : shadowEntry === null ? -1 : Buffer.compare(liveEntry[0], shadowEntry[0].subarray(1));
      if (order < 0) {
        const [key, value] = liveEntry!;
        if (!ownedByApply(value)) await change(() => batch.del(key, { keyEncoding: 'view' }));
        live.advance();
      } else if (order > 0) {
        const [key, value] = shadowEntry!;
        await change(() => batch.put(key.subarray(1), value, VIEW));
        shadow.advance();
      } else {
        const [key, value] = liveEntry!;
        const expected = shadowEntry![1];
        if (!sameBytes(value, expected) && !ownedByApply(value)) await change(() => batch.put(key, expected, VIEW));
        live.advance();
        shadow.advance();
      }
    }
    if (operations > 0) await batch.write();
    else await batch.close();
  } finally {
    await Promise.all([live.close(), shadow.close()]);
  }
  return changes;
}

/**
 * Runs `work` with no append in flight and LevelDB holding every acknowledged event, whose last
 * position it is given; appends wait meanwhile (store.ts's #exclusive).
 */
export type Pause = <T>(work: (head: number) => Promise<T>) => Promise<T>;

/**
 * Makes every index equal to what the ledger implies, while appends go on (docs/storage-format.md,
 * "Rebuilds"). The entries of the chunks through `head` (LevelDB holds all of them) are derived
 * into the shadow space `R`; then each index is made equal to its shadow, by differences, leaving
 * alone the entries of events appended since (the apply writes those); then, paused, the
 * per-stream entries (V, C) are derived for the events appended meanwhile as well and made
 * equal too. Nothing is ever cleared: a crash at any point leaves every index at least as right
 * as before (no marker needed), and a reader never sees a right entry go missing.
 */
export async function rebuildIndexes(
  db: LevelDatabase,
  newBatch: BatchFactory,
  head: number,
  dataFields: readonly string[],
  pause: Pause,
  onProgress?: (progress: RebuildProgress) => void,
): Promise<{ events: number; changes: number }> {
  await clearRebuildShadow(db);
  const events = await writeDerivedEntries(db, newBatch, dataFields, { through: head }, () => true, shadowKey, (done) =>
    onProgress?.({ events: done, total: head }),
  );
  let changes = 0;
  const appendedLater = (value: Uint8Array) => value.length >= 8 && readU64BE(value, 0) > head;
  for (const space of POSITIONED_SPACES) changes += await mergeSpace(db, space, appendedLater);
  const perStream = (key: Uint8Array) => key[0] === KeySpace.streamVersions || key[0] === KeySpace.streamCategories;
  // The events appended so far first, appends going on, so that the pause covers only the few since.
  const caughtUp = await appliedPosition(db, head);
  await writeDerivedEntries(db, newBatch, dataFields, { from: head + 1, through: caughtUp }, perStream, shadowKey, () => undefined);
  changes += await pause(async (latest) => {
    await writeDerivedEntries(db, newBatch, dataFields, { from: caughtUp + 1, through: latest }, perStream, shadowKey, () => undefined);
    let perStreamChanges = 0;
    for (const space of PER_STREAM_SPACES) perStreamChanges += await mergeSpace(db, space, () => false);
    return perStreamChanges;
  });
  await clearRebuildShadow(db);
  return { events, changes };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function hex(key: Uint8Array): string {
  return Buffer.from(key).toString('hex');
}

/**
 * Checks the ledger through `head`, every index and the WAL against each other. `snapshot` (taken
 * when LevelDB held exactly the events through `head`) lets appends and their apply go on
 * meanwhile; without one the caller must hold appends back. Checkpoints may delete WAL segments
 * during the scan: their records were checkpointed, so the check resumes at the oldest left.
 */
export async function verifyStore(
  db: LevelDatabase,
  wal: Wal,
  head: number,
  dataFields: readonly string[],
  idSeed: Uint8Array,
  snapshot: AbstractSnapshot | undefined,
): Promise<VerifyReport> {
  const read = { ...VIEW, snapshot };
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
    const values = await db.getMany<Uint8Array, Uint8Array>(pending.map((entry) => entry.key), read);
    for (const [index, entry] of pending.entries()) {
      const actual = values[index];
      if (actual === undefined) report(`index entry ${hex(entry.key)} is missing`);
      else if (!sameBytes(actual, entry.value)) report(`index entry ${hex(entry.key)} has value ${hex(actual)}, expected ${hex(entry.value)}`);
    }
    pending = [];
  };

  let events = 0;
  let expectedFirst = 1;
  for await (const { first, chunk } of ledgerChunks(db, { snapshot })) {
    if (first !== expectedFirst) report(`ledger gap or overlap: chunk at position ${first}, expected ${expectedFirst}`);
    expectedFirst = first + chunk.tuples.length;
    events += chunk.tuples.length;
    forEachIndexEntry(chunk, first, (key, value) => {
      const space = key[0]!;
      if (space === KeySpace.streamVersions || space === KeySpace.streamCategories) {
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
    for await (const key of db.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(space), snapshot })) {
      void key;
      count++;
    }
    indexEntries += count;
    const expected = expectedPerSpace.get(space) ?? 0;
    if (count !== expected) report(`index space '${String.fromCharCode(space)}' has ${count} entries, the ledger implies ${expected}`);
  }

  // Every record still in the WAL must match the ledger byte for byte.
  let walRecordsChecked = 0;
  const storedSeed = await db.get<Uint8Array, Uint8Array>(metaKey('idSeed'), read);
  if (storedSeed === undefined || !sameBytes(storedSeed, idSeed)) report(`M idSeed ${storedSeed === undefined ? 'is missing' : `is ${hex(storedSeed)}`}, but the store derives ids from ${hex(idSeed)}`);
  const checkRecord = async (record: WalRecord) => {
    if (record.type === WAL_RECORD_ID_SEED && !sameBytes(record.payload, idSeed)) {
      report(`WAL record ${record.lsn} logs the id seed ${hex(record.payload)}, but the store derives ids from ${hex(idSeed)}`);
    }
    if (record.type !== WAL_RECORD_COMMIT) return;
    const commit = decodeCommit(record.payload, record.lsn);
    // Logged after the snapshot: not in it, and checked by the next verify().
    if (commit.firstPosition > head) return;
    walRecordsChecked++;
    const positions: number[] = [];
    let position = commit.firstPosition;
    for (const bytes of commit.chunks) {
      positions.push(position);
      position += decodeChunk(bytes, `in WAL record ${record.lsn}`).tuples.length;
    }
    const stored = await db.getMany<Uint8Array, Uint8Array>(positions.map((position) => ledgerKey(position)), read);
    for (const [index, bytes] of commit.chunks.entries()) {
      const actual = stored[index];
      if (actual === undefined) report(`WAL record ${record.lsn}: ledger chunk at position ${positions[index]} is missing`);
      else if (!sameBytes(actual, bytes)) report(`WAL record ${record.lsn}: ledger chunk at position ${positions[index]} differs from the WAL`);
    }
  };
  let from = wal.firstLsn;
  for (;;) {
    try {
      for await (const record of wal.replay({ from })) {
        await checkRecord(record);
        from = record.lsn + 1;
      }
      break;
    } catch (error) {
      // A checkpoint deleted the segment being read: what it held was checkpointed, so applied.
      if (!isFactError(error) || error.code !== 'FACT_OUT_OF_RANGE') throw error;
      from = Math.max(from, wal.firstLsn);
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
 * Writes the entries of data fields `fields` for the chunks through `head` (the apply indexes
 * the later ones). Nothing reads a field's entries before its build is recorded complete, and
 * the caller cleared any left by an interrupted build.
 */
export async function buildDataIndexes(
  db: LevelDatabase,
  newBatch: BatchFactory,
  head: number,
  fields: readonly string[],
  onProgress?: (progress: DataIndexProgress) => void,
): Promise<void> {
  const onlyData = (key: Uint8Array) => key[0] === KeySpace.data;
  await writeDerivedEntries(db, newBatch, fields, { through: head }, onlyData, asIs, (done) => onProgress?.({ fields: [...fields], events: done, total: head }));
}

/** Clears the entries of a data field (left by a build that a crash interrupted). */
export async function clearDataIndex(db: LevelDatabase, field: string): Promise<void> {
  await db.clear({ keyEncoding: 'view', ...prefixBounds(indexPrefix(KeySpace.data, utf8(field))) });
}

/**
 * Clears the entries of every data field not recorded complete: left by a build that a crash
 * cut short (nothing reads them, but they take space and verify() counts them). One seek per
 * field that has entries.
 */
export async function clearUnrecordedDataIndexes(db: LevelDatabase, recorded: readonly string[]): Promise<void> {
  const space = spaceRange(KeySpace.data);
  let from = space.gte;
  for (;;) {
    const [key] = await db.keys<Uint8Array>({ keyEncoding: 'view', gte: from, lt: space.lt, limit: 1 }).all();
    if (key === undefined) return;
    const end = key.indexOf(0, 1);
    if (end < 0) {
      // Not a data entry's shape: rebuildIndexes() or verify() deal with it.
      from = Uint8Array.from([...key, 0]);
      continue;
    }
    const field = key.subarray(1, end);
    const bounds = prefixBounds(indexPrefix(KeySpace.data, field));
    if (!recorded.includes(utf8Decode(field))) await db.clear({ keyEncoding: 'view', ...bounds });
    from = bounds.lt;
  }
}
