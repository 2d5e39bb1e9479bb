/**
 * Opening a database: the storage format check (and its upgrade), WAL replay into LevelDB, and
 * the id seed (docs/storage-format.md, "Recovery", rows 4–10). Replay uses only what the WAL
 * records hold: no clock, no randomness (a new seed is logged before anything derives from it).
 */
import { readU64BE, sameBytes } from '../bytes.js';
import { FactError, isFactError } from '../errors.js';
import { forEachIndexEntry } from '../indexes/entries.js';
import { decodeChunk, isChecksummedChunk, openChunk, upgradeChunk } from '../model/chunk.js';
import { ID_SEED_SIZE_BYTES, newIdSeed, type GeneratedIds } from '../model/ids.js';
import type { BoundBarrier } from '../storage/barrier.js';
import { decodeCommit, decodeCommitWithAcks, putAcks, WAL_RECORD_COMMIT, WAL_RECORD_COMMIT_ACKS, WAL_RECORD_ID_SEED, type ConsumerAck } from '../storage/commit-record.js';
import { KeySpace, ledgerKey, metaKey, spaceRange, u64, u64Pair } from '../storage/keys.js';
import { VIEW, type BatchFactory, type ByteArena, type LevelDatabase } from '../storage/level.js';
import { readRecordedDataFields } from '../storage/meta.js';
import type { Wal } from '../wal/wal.js';

/**
 * 5: format 4's ledger and indexes, plus WAL records of type 3 (consumer acks) and the `O` key
 * space. A format-4 reader would skip type-3 records, and with them their events: the version
 * keeps it from opening the store.
 */
export const STORAGE_FORMAT_VERSION = 5;
/** Formats whose ledger and indexes are this version's: only `M format` changes. */
const SAME_LAYOUT_FORMAT_VERSIONS: readonly number[] = [4];
/** Formats whose ledger this version reads and whose indexes it rebuilds on open (1: one type, category and stream entry per event). */
const INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [1];
/**
 * Formats whose indexes this version keeps, except data-field entries, whose values were in
 * another canonical form (2: unsorted keys); with data fields, all indexes are rebuilt on open.
 */
const DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [2];
/** Formats whose chunks lack checksums: their ledger is rewritten in the format-4 layout on open (upgradeLedger). */
const LEDGER_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [1, 2, 3];
const REPLAY_BATCH_EVENTS = 4096;
/** Events per batch of the ledger upgrade's rewrite. */
export const UPGRADE_BATCH_EVENTS = 4096;

/** Recovery rows 4, 5, 5a and 5b. */
export async function checkFormat(db: LevelDatabase, path: string, barrier: BoundBarrier): Promise<void> {
  const format = await db.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW);
  if (format === undefined) {
    await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    return;
  }
  const version = readU64BE(format, 0);
  if (version === STORAGE_FORMAT_VERSION) return;
  if (SAME_LAYOUT_FORMAT_VERSIONS.includes(version)) {
    // Durable before any type-3 record can be logged: from then on a format-4 reader refuses the store.
    await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    await barrier();
    return;
  }
  if (!LEDGER_UPGRADABLE_FORMAT_VERSIONS.includes(version)) {
    throw new FactError('FACT_CORRUPTION', `database ${path} has storage format ${version}; this version reads ${STORAGE_FORMAT_VERSION}`);
  }
  // One batch, made durable before anything is rewritten: the markers make the ledger rewrite
  // (upgradeLedger) and the index rebuild (row 9) happen even if this open is cut short, and
  // the new format keeps older versions (which cannot read kinds 4–6) from opening the store meanwhile.
  const rebuild = INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(version) || (DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(version) && (await readRecordedDataFields(db)).length > 0);
  const markers = rebuild ? ['upgrading', 'rebuilding'] : ['upgrading'];
  await db.batch<Uint8Array, Uint8Array>(
    [...markers.map((name) => ({ type: 'put' as const, key: metaKey(name), value: new Uint8Array(0) })), { type: 'put' as const, key: metaKey('format'), value: u64(STORAGE_FORMAT_VERSION) }],
    VIEW,
  );
  await barrier();
}

/**
 * Recovery row 5c: under `M upgrading`, rewrites every chunk without checksums (kinds 1–3) in the
 * format-4 layout, in place (same key, same events; one already rewritten is skipped, so a rerun
 * after a crash only finishes the job), then makes it durable and deletes the marker. Readers
 * decode both layouts to the same events, so nothing waits for it but the open. Returns the
 * chunks rewritten.
 */
export async function upgradeLedger(db: LevelDatabase, newBatch: BatchFactory, barrier: BoundBarrier): Promise<number> {
  if ((await db.get<Uint8Array, Uint8Array>(metaKey('upgrading'), VIEW)) === undefined) return 0;
  let batch = newBatch();
  let inBatch = 0;
  let rewritten = 0;
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger) })) {
    if (isChecksummedChunk(value)) continue;
    const first = readU64BE(key, 1);
    const upgraded = upgradeChunk(value, first);
    batch.put(key, upgraded);
    rewritten++;
    inBatch += decodeChunk(upgraded, first).tuples.length;
    if (inBatch >= UPGRADE_BATCH_EVENTS) {
      await batch.write();
      batch = newBatch();
      inBatch = 0;
    }
  }
  await batch.write();
  await barrier();
  await db.del<Uint8Array>(metaKey('upgrading'), VIEW);
  return rewritten;
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
  // Before the replay only a ledger past M applied is wrong: one short of it may be a hole the replay refills.
  await checkAppliedHead(db, path, storedAppliedHead, 'before replay');
  let batch = newBatch();
  let batchEvents = 0;
  let expectedFirst: number | null = null;
  for await (const record of wal.replay()) {
    if (record.type === WAL_RECORD_ID_SEED) loggedSeed ??= Uint8Array.from(record.payload);
    if (record.type !== WAL_RECORD_COMMIT && record.type !== WAL_RECORD_COMMIT_ACKS) continue;
    let acks: ConsumerAck[] = [];
    let commit: { firstPosition: number; chunks: Uint8Array[] };
    if (record.type === WAL_RECORD_COMMIT) commit = decodeCommit(record.payload, record.lsn);
    else {
      const decoded = decodeCommitWithAcks(record.payload, record.lsn);
      acks = decoded.acks;
      if (decoded.commit === null) {
        // Acks alone: no positions to check; later records of a name win, as in the apply.
        putAcks(batch, acks);
        appliedLsn = record.lsn;
        batch.put(metaKey('applied'), u64Pair(head, appliedLsn));
        continue;
      }
      commit = decoded.commit;
    }
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
    for (const logged of commit.chunks) {
      const where = `ledger chunk ${position} in WAL record ${record.lsn}`;
      // A record an older version logged holds a chunk without checksums: LevelDB gets it in the
      // format-4 layout, so it never holds one after the upgrade (see "Recovery", row 7).
      const bytes = upgradeChunk(logged, position, where);
      const decoded = decodeChunk(bytes, position, where);
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
    putAcks(batch, acks);
    batch.put(metaKey('applied'), u64Pair(head, appliedLsn));
    if (batchEvents >= REPLAY_BATCH_EVENTS) {
      await batch.write();
      batch = newBatch();
      batchEvents = 0;
    }
  }
  await batch.write();
  await checkAppliedHead(db, path, head, 'after replay');
  return { head, appliedLsn, storedSeed, loggedSeed };
}

/**
 * Recovery row 6c: `M applied`'s position is where the ledger ends. It has no checksum, and when
 * the WAL holds nothing after its checkpoint it alone gives the head: a damaged one would move
 * the head (and the next append) past events that do not exist, or before ones that do. Before
 * the replay the ledger may end short of it (a power loss lost an unsynced batch while the later
 * one holding `M applied` survived: a hole the replay refills); after it, the two are equal. A
 * last chunk whose header is damaged is left to reads and verify(), which name it.
 */
async function checkAppliedHead(db: LevelDatabase, path: string, appliedHead: number, when: 'before replay' | 'after replay'): Promise<void> {
  let ledgerEnd = 0;
  let lastChunk: number | null = null;
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger), reverse: true, limit: 1 })) {
    lastChunk = readU64BE(key, 1);
    try {
      ledgerEnd = lastChunk + openChunk(value, lastChunk).count - 1;
    } catch (error) {
      if (isFactError(error, 'FACT_CORRUPTION')) return;
      throw error;
    }
  }
  if (when === 'before replay' ? ledgerEnd > appliedHead : ledgerEnd !== appliedHead) {
    const ends = lastChunk === null ? 'the ledger is empty' : `the ledger's last chunk (L ${lastChunk}) ends at position ${ledgerEnd}`;
    const says = when === 'before replay' ? 'M applied says LevelDB applied up to position' : 'after the WAL replay, M applied says LevelDB applied up to position';
    throw new FactError('FACT_CORRUPTION', `database ${path}: ${says} ${appliedHead}, but ${ends}`, {
      details: { path, appliedHead, ledgerEnd, ...(lastChunk === null ? {} : { chunk: lastChunk }) },
    });
  }
}

/**
 * Row 10's precondition for drawing a new seed: no event in the ledger has a generated id (its
 * tuple's id is null), else every such id would silently change. Only a database without a seed
 * gets here (a new one, one from before generated ids, or a damaged one), and the first null id
 * ends the scan.
 */
async function checkNoGeneratedIds(db: LevelDatabase, path: string): Promise<void> {
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger) })) {
    const first = readU64BE(key, 1);
    const index = decodeChunk(value, first).tuples.findIndex((tuple) => tuple[0] === null);
    if (index >= 0) {
      throw new FactError('FACT_CORRUPTION', `database ${path}: M idSeed is missing and the WAL no longer holds the id seed, but the event at position ${first + index} (ledger chunk ${first}) has a generated id, which derives from that seed`, {
        details: { path, chunk: first, position: first + index },
      });
    }
  }
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
    // M idSeed has no checksum: the WAL's record, while replay still meets it, is the truth (row 10b).
    if (loggedSeed !== undefined && !sameBytes(storedSeed, loggedSeed)) {
      throw new FactError('FACT_CORRUPTION', `database ${path}: M idSeed ${Buffer.from(storedSeed).toString('hex')} differs from the id seed the WAL logged, ${Buffer.from(loggedSeed).toString('hex')}: every generated id would change`, {
        details: { path, stored: Buffer.from(storedSeed).toString('hex'), logged: Buffer.from(loggedSeed).toString('hex') },
      });
    }
    ids.useSeed(storedSeed);
    return;
  }
  let seed = loggedSeed;
  if (seed === undefined) {
    await checkNoGeneratedIds(db, path);
    seed = newIdSeed();
    await wal.append(seed, { type: WAL_RECORD_ID_SEED });
    await wal.sync();
  }
  await db.put<Uint8Array, Uint8Array>(metaKey('idSeed'), seed, VIEW);
  await makeDurable();
  ids.useSeed(seed);
}
