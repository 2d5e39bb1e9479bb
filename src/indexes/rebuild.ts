/** rebuildIndexes(): every index made equal to what the ledger implies, by differences, while appends go on. */
import { KeySpace, metaKey, spaceRange, type Allocate } from '../storage/keys.js';
import { VIEW, type BatchFactory, type LevelDatabase } from '../storage/level.js';
import { readU64BE, sameBytes } from '../bytes.js';
import { writeDerivedEntries } from './derive.js';

export interface RebuildProgress {
  /** Events whose index entries are written so far. */
  events: number;
  /** Events in the store. */
  total: number;
}

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
 * position it is given; appends wait meanwhile (ledger/writer.ts, Writer.exclusive).
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

