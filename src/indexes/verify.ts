/** verify(): the ledger, every index and the WAL checked against each other. */
import { decodeChunk, openChunk, upgradeChunk, type DecodedChunk } from '../model/chunk.js';
import { decodeCommit, decodeCommitWithAcks, WAL_RECORD_COMMIT, WAL_RECORD_COMMIT_ACKS, WAL_RECORD_ID_SEED } from '../storage/commit-record.js';
import type { AbstractSnapshot } from 'abstract-level';
import { INDEX_KEY_SPACES, KeySpace, ledgerKey, metaKey, spaceRange } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import type { Wal, WalRecord } from '../wal/wal.js';
import { isFactError } from '../errors.js';
import { forEachIndexEntry } from './entries.js';
import { sameBytes } from '../bytes.js';
import { readU64BE } from '../bytes.js';

export const VERIFY_PROBLEMS_MAX = 100;
const VERIFY_LOOKUP_BATCH_ENTRIES = 1024;

export interface VerifyReport {
  ok: boolean;
  /** Human-readable findings, at most VERIFY_PROBLEMS_MAX. */
  problems: string[];
  events: number;
  indexEntries: number;
  walRecordsChecked: number;
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
  // null after a chunk whose header is damaged: its length is unknown, so the next one is not judged.
  let expectedFirst: number | null = 1;
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger), snapshot })) {
    const first = readU64BE(key, 1);
    if (expectedFirst !== null && first !== expectedFirst) report(`ledger gap or overlap: chunk at position ${first}, expected ${expectedFirst}`);
    const chunk = checkedChunk(value, first, report);
    if (chunk === null) {
      expectedFirst = null;
      continue;
    }
    if (chunk.tuples.length === 0) {
      // Damaged events: reported; their index entries cannot be derived.
      expectedFirst = first + (chunk as DamagedChunk).count;
      continue;
    }
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
  if (expectedFirst !== null && expectedFirst - 1 !== head) report(`ledger ends at position ${expectedFirst - 1}, but the head is ${head}`);
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
    if (record.type !== WAL_RECORD_COMMIT && record.type !== WAL_RECORD_COMMIT_ACKS) return;
    const commit = record.type === WAL_RECORD_COMMIT ? decodeCommit(record.payload, record.lsn) : decodeCommitWithAcks(record.payload, record.lsn).commit;
    if (commit === null) return;
    // Logged after the snapshot: not in it, and checked by the next verify().
    if (commit.firstPosition > head) return;
    walRecordsChecked++;
    const positions: number[] = [];
    let position = commit.firstPosition;
    // A record an older version logged holds chunks without checksums; LevelDB holds their upgrade.
    const expected: Uint8Array[] = [];
    for (const bytes of commit.chunks) {
      positions.push(position);
      const where = `ledger chunk ${position} in WAL record ${record.lsn}`;
      expected.push(upgradeChunk(bytes, position, where));
      position += openChunk(bytes, position, where).count;
    }
    const stored = await db.getMany<Uint8Array, Uint8Array>(positions.map((position) => ledgerKey(position)), read);
    for (const [index, bytes] of expected.entries()) {
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


interface DamagedChunk extends DecodedChunk {
  count: number;
}

/**
 * The chunk stored under `first`, every checksum verified; on damage, each damaged event (or the
 * chunk, when its header is damaged: null) is reported, and a chunk with no tuples but its event
 * count is returned.
 */
function checkedChunk(value: Uint8Array, first: number, report: (problem: string) => void): DecodedChunk | null {
  try {
    return decodeChunk(value, first);
  } catch (error) {
    if (!isFactError(error) || error.code !== 'FACT_CORRUPTION') throw error;
  }
  let view;
  try {
    view = openChunk(value, first);
  } catch (error) {
    report((error as Error).message);
    return null;
  }
  if (!view.checksummed) {
    // Formats 1–3 decode as a whole: decodeChunk's error names the chunk.
    try {
      view.tuples();
    } catch (error) {
      report((error as Error).message);
    }
    return null;
  }
  for (let index = 0; index < view.count; index++) {
    try {
      view.tuple(index);
    } catch (error) {
      report((error as Error).message);
    }
  }
  const damaged: DamagedChunk = { kind: view.kind, timestamp: view.timestamp, stream: view.stream, firstStreamPosition: view.firstStreamPosition, tuples: [], count: view.count };
  return damaged;
}
