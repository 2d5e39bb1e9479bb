/** Data-field indexes: built from the ledger on first use (or at open), cleared when a build was cut short. */
import { indexPrefix, KeySpace, prefixBounds, spaceRange } from '../storage/keys.js';
import { type BatchFactory, type LevelDatabase } from '../storage/level.js';
import { utf8, utf8Decode } from '../bytes.js';
import { writeDerivedEntries } from './derive.js';

const asIs = (key: Uint8Array) => key;

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

