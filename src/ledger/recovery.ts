/**
 * Opening a database: the storage format check (and its upgrade), WAL replay into LevelDB, and
 * the id seed (docs/storage-format.md, "Recovery", rows 4–10). Replay uses only what the WAL
 * records hold: no clock, no randomness (a new seed is logged before anything derives from it).
 */
import { readU64BE } from '../bytes.js';
import { FactError } from '../errors.js';
import { forEachIndexEntry } from '../indexes/entries.js';
import { decodeChunk } from '../model/chunk.js';
import { ID_SEED_SIZE_BYTES, newIdSeed, type GeneratedIds } from '../model/ids.js';
import type { BoundBarrier } from '../storage/barrier.js';
import { decodeCommit, WAL_RECORD_COMMIT, WAL_RECORD_ID_SEED } from '../storage/commit-record.js';
import { ledgerKey, metaKey, u64, u64Pair } from '../storage/keys.js';
import { VIEW, type BatchFactory, type ByteArena, type LevelDatabase } from '../storage/level.js';
import { readRecordedDataFields } from '../storage/meta.js';
import type { Wal } from '../wal/wal.js';

export const STORAGE_FORMAT_VERSION = 3;
/** Formats whose ledger this version reads and whose indexes it rebuilds on open (1: one type, category and stream entry per event). */
const INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [1];
/**
 * Formats whose indexes this version keeps, except data-field entries, whose values were in
 * another canonical form (2: unsorted keys); with data fields, all indexes are rebuilt on open.
 */
const DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [2];
const REPLAY_BATCH_EVENTS = 4096;

/** Recovery rows 4, 5 and 5b. */
export async function checkFormat(db: LevelDatabase, path: string, barrier: BoundBarrier): Promise<void> {
  const format = await db.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW);
  if (format === undefined) {
    await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    return;
  }
  const version = readU64BE(format, 0);
  if (INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(version) || (DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(version) && (await readRecordedDataFields(db)).length > 0)) {
    // Same ledger, older index layout: the durable marker makes the rebuild at the end of
    // recovery (row 9) happen even if this open is cut short after the new version is recorded.
    await db.put<Uint8Array, Uint8Array>(metaKey('rebuilding'), new Uint8Array(0), VIEW);
    await barrier();
    await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
  } else if (DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(version)) {
    // No data-field index: nothing derived from a canonical form, the rest reads as it is.
    await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
  } else if (version !== STORAGE_FORMAT_VERSION) {
    throw new FactError('FACT_CORRUPTION', `database ${path} has storage format ${version}; this version reads ${STORAGE_FORMAT_VERSION}`);
  }
}

export interface Replayed {
  /** Last position and WAL record LevelDB holds after the replay. */
  head: number;
  appliedLsn: number;
  /** `M idSeed`, and the seed the WAL logged, if any. */
  storedSeed: Uint8Array | undefined;
  loggedSeed: Uint8Array | undefined;
}

export interface ReplayParts {
  path: string;
  db: LevelDatabase;
  wal: Wal;
  newBatch: BatchFactory;
  arena: ByteArena;
  /** The data fields whose entries the replay writes (`M dataFields`). */
  dataFields: readonly string[];
}

/** Applies every WAL record after the one LevelDB applied last (rows 6–8), checking that they line up. */
export async function replayWal({ path, db, wal, newBatch, arena, dataFields }: ReplayParts): Promise<Replayed> {
  const storedSeed = await db.get<Uint8Array, Uint8Array>(metaKey('idSeed'), VIEW);
  let loggedSeed: Uint8Array | undefined;
  const applied = await db.get<Uint8Array, Uint8Array>(metaKey('applied'), VIEW);
  const storedAppliedHead = applied === undefined ? 0 : readU64BE(applied, 0);
  const storedAppliedLsn = applied === undefined ? 0 : readU64BE(applied, 8);
  let head = storedAppliedHead;
  let appliedLsn = storedAppliedLsn;
  if (appliedLsn > wal.lastLsn) {
    throw new FactError(
      'FACT_CORRUPTION',
      `database ${path}: LevelDB has applied WAL record ${appliedLsn} but the WAL ends at ${wal.lastLsn}; acknowledged WAL data was lost`,
      { details: { appliedLsn, walLastLsn: wal.lastLsn } },
    );
  }
  if (appliedLsn < wal.checkpointLsn) {
    // The checkpoint barrier made LevelDB durable up to the checkpoint; replay starts after it.
    throw new FactError(
      'FACT_CORRUPTION',
      `database ${path}: the WAL is checkpointed at record ${wal.checkpointLsn} but LevelDB has applied only up to record ${appliedLsn}; LevelDB lost checkpointed data`,
      { details: { appliedLsn, walCheckpointLsn: wal.checkpointLsn } },
    );
  }
  let batch = newBatch();
  let batchEvents = 0;
  let expectedFirst: number | null = null;
  for await (const record of wal.replay()) {
    if (record.type === WAL_RECORD_ID_SEED) loggedSeed ??= Uint8Array.from(record.payload);
    if (record.type !== WAL_RECORD_COMMIT) continue;
    const commit = decodeCommit(record.payload, record.lsn);
    // Recovery row 8: the first record after the one LevelDB applied last starts right after it.
    const afterApplied = expectedFirst === null && record.lsn > storedAppliedLsn;
    if (afterApplied) expectedFirst = storedAppliedHead + 1;
    if (expectedFirst === null && commit.firstPosition > storedAppliedHead) {
      throw new FactError(
        'FACT_CORRUPTION',
        `WAL record ${record.lsn} starts at position ${commit.firstPosition}, but LevelDB applied it (M applied: record ${storedAppliedLsn}, position ${storedAppliedHead}) and holds only up to position ${storedAppliedHead}`,
        { details: { lsn: record.lsn } },
      );
    }
    if (expectedFirst !== null && commit.firstPosition !== expectedFirst) {
      const after = afterApplied ? `the last position LevelDB applied (M applied: position ${storedAppliedHead}, record ${storedAppliedLsn})` : 'the previous record';
      throw new FactError('FACT_CORRUPTION', `WAL record ${record.lsn} starts at position ${commit.firstPosition}, expected ${expectedFirst}, right after ${after}`, {
        details: { lsn: record.lsn },
      });
    }
    let position = commit.firstPosition;
    for (const bytes of commit.chunks) {
      const decoded = decodeChunk(bytes, `in WAL record ${record.lsn}`);
      batch.put(ledgerKey(position, arena.allocate), bytes);
      forEachIndexEntry(decoded, position, (key, value) => batch.put(key, value), dataFields, true, arena.allocate);
      position += decoded.tuples.length;
      batchEvents += decoded.tuples.length;
    }
    if (record.lsn === storedAppliedLsn && position - 1 !== storedAppliedHead) {
      throw new FactError(
        'FACT_CORRUPTION',
        `WAL record ${record.lsn} ends at position ${position - 1}, but M applied says LevelDB applied it up to position ${storedAppliedHead}`,
        { details: { lsn: record.lsn } },
      );
    }
    expectedFirst = position;
    head = position - 1;
    appliedLsn = record.lsn;
    batch.put(metaKey('applied'), u64Pair(head, appliedLsn));
    if (batchEvents >= REPLAY_BATCH_EVENTS) {
      await batch.write();
      batch = newBatch();
      batchEvents = 0;
    }
  }
  await batch.write();
  return { head, appliedLsn, storedSeed, loggedSeed };
}

/**
 * Recovery row 10: the id seed is in LevelDB, else in the WAL (a LevelDB that lost it, or
 * never had it, is refilled), else this is the first open of a database that has none: a new
 * seed is logged to the WAL and then written to LevelDB, both durably, before any event can
 * carry an id derived from it. A checkpoint can drop the seed's WAL record only after its
 * barrier made LevelDB's copy durable.
 */
export async function settleIdSeed(
  { path, db, wal }: Pick<ReplayParts, 'path' | 'db' | 'wal'>,
  ids: GeneratedIds,
  { storedSeed, loggedSeed }: Pick<Replayed, 'storedSeed' | 'loggedSeed'>,
  makeDurable: () => Promise<void>,
): Promise<void> {
  for (const [where, seed] of [['M idSeed', storedSeed], ['the WAL', loggedSeed]] as const) {
    if (seed !== undefined && seed.length !== ID_SEED_SIZE_BYTES) {
      throw new FactError('FACT_CORRUPTION', `database ${path}: the id seed in ${where} has ${seed.length} bytes, expected ${ID_SEED_SIZE_BYTES}`);
    }
  }
  if (storedSeed !== undefined) {
    ids.useSeed(storedSeed);
    return;
  }
  let seed = loggedSeed;
  if (seed === undefined) {
    seed = newIdSeed();
    await wal.append(seed, { type: WAL_RECORD_ID_SEED });
    await wal.sync();
  }
  await db.put<Uint8Array, Uint8Array>(metaKey('idSeed'), seed, VIEW);
  await makeDurable();
  ids.useSeed(seed);
}
