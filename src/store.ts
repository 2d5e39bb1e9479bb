/**
 * FactStore: the database. Write path plan → log (WAL) → apply (LevelDB) → resolve, with
 * checkpoints and recovery as specified in docs/storage-format.md.
 */
import { ClassicLevel } from 'classic-level';
import { asError, assert, FactError, ioError, isFactError } from './errors.js';
import { forEachIndexEntry } from './indexes/entries.js';
import { LedgerReader, type ScanOptions } from './query/ledger-reader.js';
import { EventStream } from './query/event-stream.js';
import type { AppendResult, EventInput, EventReader, ReadOptions, RecordedEvent, StreamAppendResult, StreamExpectation } from './model/types.js';
import type { FileSystem } from './wal/file-system.js';
import { joinPath } from './wal/file-system.js';
import { NodeFileSystem } from './wal/node-file-system.js';
import { Wal, type WalOptions } from './wal/wal.js';
import { LOCK_FILE } from './wal/format.js';
import { bindBarrier, chooseBarrier, type BoundBarrier, type LevelDurability } from './storage/barrier.js';
import { canonicalBytes } from './model/cbor.js';
import { CHUNK_KIND_APPEND_CONTINUED, CHUNK_KIND_APPEND_FIRST, decodeChunk, decodeTuples, type DecodedChunk, type EventTuple } from './model/chunk.js';
import { isOneAppend, type ChunkSpan, type ChunkSpanAt } from './ledger/retry.js';
import { indexPrefix, indexRange, KeySpace, ledgerKey, metaKey, nameKey, prefixBounds, spaceRange, u64, u64Pair } from './storage/keys.js';
import { GeneratedIds, ID_SEED_SIZE_BYTES, newIdSeed } from './model/ids.js';
import { batchFactory, ByteArena, VIEW, type BatchFactory, type LevelDatabase } from './storage/level.js';
import { commitChunkSizeBytes, commitSizeBytes, decodeCommit, encodeCommitChunks, WAL_RECORD_COMMIT, WAL_RECORD_ID_SEED } from './storage/commit-record.js';
import { UnappliedTail, type TailChunk, type TailSnapshot, type TailSource } from './query/tail.js';
import { checkExpectation, checkName, checkReadOptions, checkStreamId, EVENT_TYPE_SIZE_BYTES_MAX, prepareEvents, STREAM_ID_SIZE_BYTES_MAX, TAG_SIZE_BYTES_MAX, type PreparedEvents } from './model/validation.js';
import {
  buildDataIndexes,
  clearDataIndex,
  clearRebuildShadow,
  clearUnrecordedDataIndexes,
  rebuildIndexes,
  verifyStore,
  type DataIndexProgress,
  type RebuildProgress,
  type VerifyReport,
} from './indexes/maintenance.js';
import { Query, matchesQuery, DATA_FIELD_SIZE_BYTES_MAX, type CompiledItem } from './model/query.js';
import { openQueryCursor } from './query/plan.js';
import { Encoder } from 'cbor-x';
import { readU64BE, utf8, utf8Decode } from './bytes.js';
import { invalid } from './errors.js';
import type { AppendCondition, ReadSource } from './model/query.js';

export const STORAGE_FORMAT_VERSION = 3;
/** Formats whose ledger this version reads and whose indexes it rebuilds on open (1: one type, category and stream entry per event). */
const INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [1];
/**
 * Formats whose indexes this version keeps, except data-field entries, whose values were in
 * another canonical form (2: unsorted keys); with data fields, all indexes are rebuilt on open.
 */
const DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS: readonly number[] = [2];
export const DEFAULT_CHECKPOINT_EVERY_BYTES = 8 * 1024 * 1024;
export const STREAM_VERSION_CACHE_ENTRIES_MAX = 100_000;
export const GROUP_APPENDS_MAX = 1024;
/** A group's commit record also stays below this (and below the WAL's maxRecordSizeBytes). */
export const GROUP_PAYLOAD_SIZE_BYTES_MAX = 16 * 1024 * 1024;
const REPLAY_BATCH_EVENTS = 4096;
const READ_BATCH_EVENTS = 128;
export const NEWEST_POSITIONS_ENTRIES_MAX = 100_000;
/** Resolved events not yet applied to LevelDB beyond which new groups wait for the apply. */
export const UNAPPLIED_EVENTS_MAX = 16_384;
/**
 * Bytes of resolved chunks not yet applied beyond which new groups wait, and up to which a group
 * fills the tail (one append alone may cross it). 16,384 typical events (≈ 250 B) take about
 * this much, so small events meet the event bound first and large ones this one; the caller's
 * event objects, which the tail holds until applied, take a few times as much heap.
 */
export const UNAPPLIED_SIZE_BYTES_MAX = 4 * 1024 * 1024;
/** The apply starts once this many events wait, or after APPLY_DELAY_MS: LevelDB batches amortise their fixed cost. */
export const APPLY_BATCH_EVENTS = 512;
export const APPLY_DELAY_MS = 2;
/** Longest time the writer runs groups back to back without giving the event loop a turn. */
export const WRITER_TURN_MS = 1;

export interface FactStoreOptions {
  /** Create the database when missing (default true); with false a missing one fails with FACT_NOT_FOUND. */
  createIfMissing?: boolean;
  /** WAL options (docs/wal-format.md). */
  wal?: Pick<WalOptions, 'sync' | 'syncIntervalMs' | 'segmentSizeBytes' | 'retainSegments' | 'maxRecordSizeBytes'>;
  /**
   * An abstract-level database to use instead of classic-level at `<path>/ledger` (tests:
   * memory-level). Without `<path>/ledger`, the WAL's pid lock is the database's only lock.
   */
  level?: LevelDatabase;
  /**
   * With `level`: how its writes are made durable at a checkpoint. Needed unless the database has
   * compactRange (classic-level): 'volatile' for one that keeps nothing across a restart
   * (memory-level), or a function resolving once everything written before it is durable.
   */
  levelDurability?: LevelDurability;
  /** The WAL's file system (tests: SimFileSystem). */
  fs?: FileSystem;
  /** Logged bytes between checkpoints. Default 8 MiB. */
  checkpointEveryBytes?: number;
  /** Indexes to maintain besides the built-in ones: top-level data fields. */
  indexes?: { data?: readonly string[] };
  /** Progress of building a data-field index from the ledger (at open, or on first use). */
  onIndexBuild?: (progress: DataIndexProgress) => void;
}

export interface AppendStreamOptions {
  expect?: StreamExpectation;
  /** A DCB condition checked in addition to `expect`. */
  condition?: AppendCondition;
}

interface AppendRequest {
  method: 'append' | 'appendStream';
  stream: string;
  expect: StreamExpectation;
  condition: CheckedCondition | null;
  events: PreparedEvents;
  /** What the append's chunks add to a commit record (commitChunkSizeBytes), reckoned once. */
  chunksSizeBytes: number;
  timestamp: number;
  /** The stream's stored version, read while the append was validated (see #prefetchStreamVersion). */
  versionPrefetch: VersionPrefetch | null;
  /** Plain appends resolve with { position, count }, stream appends also with streamPosition. */
  resolve: (result: AppendResult | StreamAppendResult) => void;
  reject: (error: Error) => void;
}

/** A chunk of a planned append: its bytes are written into the group's commit record (CommitChunk). */
interface PlannedChunk {
  firstPosition: number;
  /** The header, and the tuples as the ledger holds them. */
  header: DecodedChunk;
  streamBytes: Uint8Array;
  tuplesBytes: Uint8Array;
}

interface PlannedAppend {
  request: AppendRequest;
  firstPosition: number;
  firstStreamPosition: number;
  chunks: PlannedChunk[];
}

/** A planned group whose commit record the WAL is writing. */
interface LoggedGroup {
  planned: PlannedAppend[];
  payload: Uint8Array;
  /** Per planned chunk in order, its bytes in the ledger: views into `payload`. */
  chunkBytes: Uint8Array[];
  /** Resolves with the record's LSN once durable. */
  logged: Promise<number>;
}

interface CheckedCondition {
  query: Query;
  after: number;
}

interface VersionPrefetch {
  /** The stream's version in LevelDB when read; undefined if the read failed. */
  version: Promise<number | undefined>;
  /** #versionEpoch when read: a different epoch means the cache may have lost a later write. */
  epoch: number;
}

/** Stored state a group's checks read (see #readForPlan). */
interface PlanReads {
  /**
   * Positions and stored events of the caller-chosen ids that exist, and the ids the caller may
   * not choose: this database's generated form for a position not yet committed (ids.ts).
   */
  existingIds: { positions: ReadonlyMap<string, number>; events: ReadonlyMap<number, RecordedEvent>; reserved: ReadonlySet<string>; spanAt: ChunkSpanAt };
  /** Per request, the newest committed position matching its condition (0: none); null without conditions. */
  committedConflicts: number[] | null;
}

const NOTHING_READ: PlanReads = { existingIds: { positions: new Map(), events: new Map(), reserved: new Set(), spanAt: () => undefined }, committedConflicts: null };

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const metaEncoder = new Encoder({ useRecords: false });

function checkCondition(value: unknown, method: string): CheckedCondition | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null) throw invalid(`${method}: condition must be an object { failIfEventsMatch, after? }`);
  const { failIfEventsMatch, after } = value as AppendCondition;
  if (!(failIfEventsMatch instanceof Query)) throw invalid(`${method}: condition.failIfEventsMatch must be a Query (Query.items(...), Query.tags(...), …)`);
  if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) throw invalid(`${method}: condition.after must be an integer ≥ 0, got ${String(after)}`);
  return { query: failIfEventsMatch, after: after ?? 0 };
}

function checkDataFields(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid('FactStore.open: indexes.data must be an array of field names');
  return [...new Set(value.map((field) => checkName(field, 'FactStore.open: indexes.data field', DATA_FIELD_SIZE_BYTES_MAX)))].sort();
}

export class FactStore implements AsyncDisposable {
  readonly path: string;
  readonly #wal: Wal;
  readonly #db: LevelDatabase;
  readonly #ownsDb: boolean;
  readonly #reader: LedgerReader;
  readonly #newBatch: BatchFactory;
  readonly #checkpointEveryBytes: number;
  readonly #barrier: BoundBarrier;
  /** The first failed barrier: the store stopped, and close reports it. */
  #barrierFailure: FactError | null = null;
  /** Last durable position: visible to reads (from LevelDB or the unapplied tail). */
  #head = 0;
  /** Last position and WAL record applied to LevelDB. */
  #appliedHead = 0;
  #appliedLsn = 0;
  /** Resolved chunks waiting for the background apply (docs/storage-format.md, "Write path"). */
  readonly #tail: UnappliedTail;
  readonly #ids: GeneratedIds;
  #applyRun: Promise<void> | null = null;
  #applyTimer: ReturnType<typeof setTimeout> | null = null;
  /** An apply is due (full batch or delay over) but waits for the writer's WAL sync to overlap. */
  #applyDue = false;
  /** The writer is planning a group: an apply started now would delay its WAL write. */
  #planning = false;
  readonly #arena = new ByteArena();
  /** Next position to plan; ahead of #head while a group is in flight. */
  #nextPosition = 1;
  /** Stream versions as planned (committed plus the group in flight); bounded. */
  readonly #streamVersions = new Map<string, number>();
  /** Bumped whenever #streamVersions drops entries (see #prefetchStreamVersion). */
  #versionEpoch = 0;
  #queue: AppendRequest[] = [];
  #writer: Promise<void> | null = null;
  #failure: FactError | null = null;
  #bytesSinceCheckpoint = 0;
  #checkpointRun: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #closed = false;
  /** A short section (see #exclusive) during which appends wait. */
  #maintenance: Promise<unknown> | null = null;
  /** Index maintenance (rebuild, verify, data-index builds) runs one at a time, appends going on. */
  #maintenanceChain: Promise<unknown> = Promise.resolve();
  /** Newest position per tag or type index ('G'/'T' + name), for condition checks; bounded. */
  readonly #newestPositions = new Map<string, number>();
  /** Data fields with a complete index, in order; recorded under `M dataFields`. */
  #dataFields: string[] = [];
  /** Data fields whose entries the write path writes: #dataFields and those being built. */
  #applyDataFields: string[] = [];
  readonly #declaredDataFields: string[];
  readonly #onIndexBuild: ((progress: DataIndexProgress) => void) | undefined;

  private constructor(
    path: string,
    wal: Wal,
    db: LevelDatabase,
    ownsDb: boolean,
    barrier: BoundBarrier,
    checkpointEveryBytes: number,
    declaredDataFields: string[],
    onIndexBuild: ((progress: DataIndexProgress) => void) | undefined,
  ) {
    this.path = path;
    const ids = new GeneratedIds();
    this.#ids = ids;
    this.#tail = new UnappliedTail(ids);
    this.#declaredDataFields = declaredDataFields;
    this.#onIndexBuild = onIndexBuild;
    this.#wal = wal;
    this.#db = db;
    this.#ownsDb = ownsDb;
    this.#reader = new LedgerReader(db, ids);
    this.#newBatch = batchFactory(db, ownsDb);
    this.#checkpointEveryBytes = checkpointEveryBytes;
    this.#barrier = barrier;
  }

  /** Opens (or creates) the database at `path`; resolves when recovery is done. */
  static async open(path: string, options: FactStoreOptions = {}): Promise<FactStore> {
    if (typeof path !== 'string' || path.length === 0) throw invalid('FactStore.open: path must be a non-empty string');
    if (typeof options !== 'object' || options === null) throw invalid('FactStore.open: options must be an object');
    const checkpointEveryBytes = options.checkpointEveryBytes ?? DEFAULT_CHECKPOINT_EVERY_BYTES;
    if (!Number.isSafeInteger(checkpointEveryBytes) || checkpointEveryBytes < 1) {
      throw invalid('FactStore.open: checkpointEveryBytes must be a positive integer');
    }
    const declaredDataFields = checkDataFields(options.indexes?.data);
    if (options.onIndexBuild !== undefined && typeof options.onIndexBuild !== 'function') throw invalid('FactStore.open: onIndexBuild must be a function');
    const durability = chooseBarrier(options.level, options.levelDurability);
    const fs = options.fs ?? new NodeFileSystem();
    const walDir = joinPath(path, 'wal');
    if (options.createIfMissing === false && !(await fs.exists(walDir))) {
      throw new FactError('FACT_NOT_FOUND', `no database at ${path} (createIfMissing is false)`, { details: { path } });
    }
    // LevelDB's lock first: the WAL's recovery may rewrite files, and its pid lock can misjudge a live holder.
    const db = await FactStore.#openLevel(path, options.level, fs, walDir);
    const ownsDb = options.level === undefined;
    let wal: Wal | undefined;
    try {
      wal = await Wal.open(walDir, { ...(options.wal ?? {}), fs });
      const barrier = bindBarrier(db, durability, path);
      await FactStore.#checkFormat(db, path, barrier);
      const store = new FactStore(path, wal, db, ownsDb, barrier, checkpointEveryBytes, declaredDataFields, options.onIndexBuild);
      await store.#recover();
      return store;
    } catch (error) {
      await wal?.close().catch(() => undefined);
      if (ownsDb) await db.close().catch(() => undefined);
      if (isFactError(error)) throw error;
      throw new FactError('FACT_IO', `FactStore.open: could not open the ledger at ${path}`, { cause: error, details: { path } });
    }
  }

  /** Opens `level`, or classic-level at `<path>/ledger`, taking LevelDB's lock (a kernel lock, released when its holder dies). */
  static async #openLevel(path: string, level: LevelDatabase | undefined, fs: FileSystem, walDir: string): Promise<LevelDatabase> {
    const db = level ?? new ClassicLevel<Uint8Array, Uint8Array>(joinPath(path, 'ledger'), VIEW);
    try {
      if (db.status !== 'open') await db.open();
      return db;
    } catch (error) {
      if (level === undefined) await db.close().catch(() => undefined);
      if ((error as { cause?: { code?: unknown } }).cause?.code === 'LEVEL_LOCKED') {
        const pid = await lockFilePid(fs, joinPath(walDir, LOCK_FILE));
        const holder = pid === null ? '' : ` (pid ${pid}, from ${joinPath(walDir, LOCK_FILE)})`;
        throw new FactError('FACT_LOCKED', `FactStore.open: the ledger at ${path} is locked by another process${holder}`, {
          cause: error,
          details: pid === null ? { path } : { path, pid },
        });
      }
      throw new FactError('FACT_IO', `FactStore.open: could not open the ledger at ${path}`, { cause: error, details: { path } });
    }
  }

  // ------------------------------------------------------------------ public API

  /** Last position in the store (0 when empty). */
  head(): Promise<number> {
    // Rejects (never throws) when closed, like every other promise-returning method.
    return new Promise((resolve) => {
      this.#checkOpen('head');
      resolve(this.#head);
    });
  }

  /** Current version of a stream (0 when it does not exist). */
  async streamVersion(streamId: string): Promise<number> {
    this.#checkOpen('streamVersion');
    const stream = checkStreamId(streamId, 'streamVersion');
    // The tail before LevelDB: the apply drops a stream from the tail only once LevelDB has it.
    const inTail = this.#tail.streamVersion(stream);
    if (inTail !== undefined) return inTail;
    const value = await this.#db.get<Uint8Array, Uint8Array>(nameKey(KeySpace.streamVersions, utf8(stream)), VIEW);
    return value === undefined ? 0 : readU64BE(value, 0);
  }

  /** Appends one event or several atomically. */
  /** Appends one event or several atomically; with a DCB condition, only if no matching event came after `after`. */
  append(events: EventInput | readonly EventInput[], condition?: AppendCondition): Promise<AppendResult> {
    try {
      this.#checkOpen('append');
      const checked = checkCondition(condition, 'append');
      return this.#submit('append', '', 'any', checked, events);
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  /** Appends to a stream, atomically, if the stream's version matches `expect`. */
  appendStream(streamId: string, events: EventInput | readonly EventInput[], options: AppendStreamOptions = {}): Promise<StreamAppendResult> {
    try {
      this.#checkOpen('appendStream');
      const stream = checkStreamId(streamId, 'appendStream');
      if (typeof options !== 'object' || options === null) throw invalid('appendStream: options must be an object');
      const expect = checkExpectation(options.expect, 'appendStream');
      const condition = checkCondition(options.condition, 'appendStream');
      const versionPrefetch = this.#prefetchStreamVersion(stream);
      return this.#submit('appendStream', stream, expect, condition, events, versionPrefetch) as Promise<StreamAppendResult>;
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  /** Events of a source in position order (stream position order for a stream). */
  read(source: ReadSource = 'all', options?: ReadOptions): EventReader {
    this.#checkOpen('read');
    const scan = checkReadOptions(options, 'read');
    parseSource(source);
    const run = this.#sourceScan(source, scan);
    return new EventStream(scan.signal === undefined ? run : abortable(run, scan.signal));
  }

  /** Stream ids, optionally of one category, in id order. */
  streams(options: { category?: string } = {}): { [Symbol.asyncIterator](): AsyncIterator<string>; toArray(): Promise<string[]> } {
    this.#checkOpen('streams');
    if (typeof options !== 'object' || options === null) throw invalid('streams: options must be an object');
    const category = options.category === undefined ? undefined : checkName(options.category, 'streams: category', STREAM_ID_SIZE_BYTES_MAX);
    const db = this.#db;
    const tailOf = () => this.#tail.snapshot(this.#appliedHead);
    async function* list(): AsyncGenerator<string> {
      // Streams created in the tail, merged in LevelDB's (UTF-8 byte) order; taken first, so a
      // stream the apply moves meanwhile shows up twice at most, and is yielded once.
      const created = tailOf()
        .newStreams(category)
        .map((stream) => Buffer.from(stream, 'utf8'))
        .sort((a, b) => Buffer.compare(a, b));
      let next = 0;
      const range = category === undefined ? spaceRange(KeySpace.streamVersions) : indexRange(KeySpace.streamCategories, utf8(category));
      const skip = category === undefined ? 1 : 1 + utf8(category).length + 1;
      for await (const key of db.keys<Uint8Array>({ keyEncoding: 'view', ...range })) {
        const name = key.subarray(skip);
        while (next < created.length && Buffer.compare(created[next]!, name) < 0) yield created[next++]!.toString('utf8');
        if (next < created.length && Buffer.compare(created[next]!, name) === 0) next++;
        yield utf8Decode(name);
      }
      while (next < created.length) yield created[next++]!.toString('utf8');
    }
    return {
      [Symbol.asyncIterator]: () => list(),
      toArray: async () => {
        const ids: string[] = [];
        for await (const id of list()) ids.push(id);
        return ids;
      },
    };
  }

  /** Checks ledger, indexes and WAL against each other. */
  async verify(): Promise<VerifyReport> {
    this.#checkOpen('verify');
    return this.#maintenanceTurn(async () => {
      if (!this.#db.supports.explicitSnapshots) {
        return this.#exclusive(() => verifyStore(this.#db, this.#wal, this.#head, this.#dataFields, this.#ids.seed!, undefined));
      }
      // A snapshot of LevelDB holding exactly the events through the head, then appends go on.
      const { snapshot, head } = await this.#exclusive(() => Promise.resolve({ snapshot: this.#db.snapshot(), head: this.#head }));
      try {
        return await verifyStore(this.#db, this.#wal, head, this.#dataFields, this.#ids.seed!, snapshot);
      } finally {
        await snapshot.close();
      }
    });
  }

  /** Rebuilds every index from the ledger; the result is byte-identical to incremental indexes. */
  async rebuildIndexes(options: { onProgress?: (progress: RebuildProgress) => void } = {}): Promise<{ events: number }> {
    this.#checkOpen('rebuildIndexes');
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalid('rebuildIndexes: onProgress must be a function');
    return this.#maintenanceTurn(async () => {
      const { events } = await this.#rebuild(options.onProgress);
      return { events };
    });
  }

  /**
   * rebuildIndexes() while appends go on (maintenance.ts): LevelDB holds every event through the
   * head taken here, the later ones are the apply's.
   */
  async #rebuild(onProgress?: (progress: RebuildProgress) => void): Promise<{ events: number; changes: number }> {
    const head = await this.#exclusive(() => Promise.resolve(this.#head));
    const pause = <T>(work: (latest: number) => Promise<T>) =>
      this.#exclusive(async () => {
        const result = await work(this.#head);
        // Cached versions and newest positions may have been read from entries the rebuild changed.
        this.#streamVersions.clear();
        this.#versionEpoch++;
        this.#newestPositions.clear();
        return result;
      });
    return rebuildIndexes(this.#db, this.#newBatch, head, this.#dataFields, pause, onProgress);
  }

  /** Runs `work` after every index maintenance started before it; appends are not held back. */
  #maintenanceTurn<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#maintenanceChain.then(async () => {
      this.#checkOpen('maintenance');
      try {
        return await work();
      } catch (error) {
        if (isFactError(error)) throw error;
        throw new FactError('FACT_IO', `index maintenance of ${this.path} failed: ${asError(error).message}`, { cause: error, details: { path: this.path } });
      }
    });
    this.#maintenanceChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Index maintenance that clears and rewrites entries of chunks WAL replay may no longer cover:
   * a power loss could keep the clears and lose the rewrite. A durable `M rebuilding` marker
   * around it makes recovery redo a full rebuild (docs/storage-format.md, recovery row 9).
   */
  async #underRebuildMarker<T>(work: () => Promise<T>): Promise<T> {
    await this.#db.put<Uint8Array, Uint8Array>(metaKey('rebuilding'), new Uint8Array(0), VIEW);
    await this.#makeDurable();
    const result = await work();
    await this.#makeDurable();
    await this.#db.del<Uint8Array>(metaKey('rebuilding'), { keyEncoding: 'view' });
    return result;
  }

  /** Runs `work` with no append in flight; appends submitted meanwhile wait for it. */
  async #exclusive<T>(work: () => Promise<T>): Promise<T> {
    while (this.#maintenance) await this.#maintenance.catch(() => undefined);
    const run = this.#idle().then(work);
    this.#maintenance = run;
    try {
      return await run;
    } finally {
      this.#maintenance = null;
      if (this.#queue.length > 0) this.#kickWriter();
    }
  }

  /** Waits for appends in flight, checkpoints, and closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------------------------ reads

  /** A read: LevelDB up to the applied head, then the unapplied tail (the reverse backward). */
  async *#sourceScan(source: ReadSource, scan: ScanOptions): AsyncGenerator<RecordedEvent> {
    const index = parseSource(source);
    if (index instanceof Query) await this.#ensureDataIndexes(index.dataFields);
    // The snapshot before any LevelDB read: a chunk the apply moves meanwhile is then in both,
    // and the LevelDB side skips it, never in neither.
    const tail = this.#tail.snapshot(this.#appliedHead);
    if (tail.isEmpty) {
      yield* this.#storedScan(index, scan, tail.appliedHead);
      return;
    }
    const forward = scan.direction === 'forward';
    const tailSource = toTailSource(index);
    let remaining = scan.limit;
    if (!forward) {
      for (const event of tail.events(tailSource, false, scan.from, remaining)) {
        yield event;
        remaining--;
      }
    }
    if (remaining <= 0) return;
    for await (const event of this.#storedScan(index, { ...scan, limit: Number.POSITIVE_INFINITY }, tail.appliedHead)) {
      if (event.position > tail.appliedHead) {
        if (forward) break;
        continue;
      }
      yield event;
      if (--remaining <= 0) return;
    }
    if (forward) yield* tail.events(tailSource, true, scan.from, remaining);
  }

  /** A read of what LevelDB holds, up to `head` for the whole ledger. */
  async *#storedScan(index: ReturnType<typeof parseSource>, scan: ScanOptions, head: number): AsyncGenerator<RecordedEvent> {
    if (index === 'all' || (index instanceof Query && index.compiled === 'all')) {
      yield* this.#reader.scanLedger(scan, head);
      return;
    }
    if (index instanceof Query) {
      yield* this.#queryScan(index, scan);
      return;
    }
    for await (const hits of this.#reader.scanIndexHits(index.space, utf8(index.name), scan)) {
      yield* await this.#reader.events(hits);
    }
  }

  async *#queryScan(query: Query, scan: ScanOptions): AsyncGenerator<RecordedEvent> {
    const items = query.compiled;
    assert(items !== 'all', 'Query.all() reads the ledger');
    const forward = scan.direction === 'forward';
    const cursor = await openQueryCursor(this.#db, items, forward, scan.from);
    let remaining = scan.limit;
    try {
      while (remaining > 0 && cursor.current !== null) {
        scan.signal?.throwIfAborted();
        const hits = [];
        while (hits.length < READ_BATCH_EVENTS && hits.length < remaining && cursor.current !== null) {
          hits.push(cursor.current);
          await cursor.next();
        }
        remaining -= hits.length;
        yield* await this.#reader.events(hits);
      }
    } finally {
      await cursor.close();
    }
  }

  /** Position of the newest event after `after` matching the query, or 0: the committed conflict check. */
  async #latestMatch(query: Query, after: number): Promise<number> {
    const items = query.compiled;
    if (items === 'all') return this.#head > after ? this.#head : 0;
    const tail = this.#tail.snapshot(this.#appliedHead);
    if (!(await this.#mayMatchAfter(items, after, tail))) return 0;
    // Tail positions are newer than LevelDB's: a match there is the newest.
    const inTail = tail.newestMatch(query);
    if (inTail > 0) return inTail > after ? inTail : 0;
    const cursor = await openQueryCursor(this.#db, items, false, undefined);
    try {
      const hit = cursor.current;
      return hit !== null && hit.position > after ? hit.position : 0;
    } finally {
      await cursor.close();
    }
  }

  /**
   * False when no item can match an event after `after`: an item's matches are bounded by the
   * newest event of each of its tags and of its types (kept in memory, read from the index on a
   * miss). Most conditions are settled here without an index scan.
   */
  async #mayMatchAfter(items: readonly CompiledItem[], after: number, tail: TailSnapshot): Promise<boolean> {
    for (const item of items) {
      let bound = Number.POSITIVE_INFINITY;
      for (const tag of item.tags) bound = Math.min(bound, await this.#newestWith(KeySpace.tag, tag, tail));
      if (item.types !== null && bound > after) {
        let newestOfTypes = 0;
        for (const type of item.types) newestOfTypes = Math.max(newestOfTypes, await this.#newestWith(KeySpace.type, type, tail));
        bound = Math.min(bound, newestOfTypes);
      }
      if (bound > after) return true;
    }
    return false;
  }

  /** The newest position with one tag or type (0 when none). Only the writer calls it. */
  async #newestWith(space: number, name: string, tail: TailSnapshot): Promise<number> {
    const key = String.fromCharCode(space) + name;
    const cached = this.#newestPositions.get(key);
    if (cached !== undefined) return cached;
    // Tail positions are newer than LevelDB's: LevelDB is read only when the tail has none.
    let newest = tail.newestWith(space === KeySpace.tag ? 'tag' : 'type', name);
    if (newest === 0) {
      const keys = await this.#db.keys<Uint8Array>({ keyEncoding: 'view', ...prefixBounds(indexPrefix(space, utf8(name))), reverse: true, limit: 1 }).all();
      if (keys[0] !== undefined) newest = readU64BE(keys[0], keys[0].length - 8);
    }
    if (this.#newestPositions.size >= NEWEST_POSITIONS_ENTRIES_MAX) this.#newestPositions.clear();
    this.#newestPositions.set(key, newest);
    return newest;
  }

  /** Keeps the cached newest positions right as a group becomes durable (entries not cached are read on demand). */
  #noteNewestPositions(chunks: readonly TailChunk[]): void {
    if (this.#newestPositions.size === 0) return;
    const note = (key: string, position: number) => {
      if (this.#newestPositions.has(key)) this.#newestPositions.set(key, position);
    };
    const typePrefix = String.fromCharCode(KeySpace.type);
    const tagPrefix = String.fromCharCode(KeySpace.tag);
    for (const chunk of chunks) {
      chunk.planned.tuples.forEach(([, type, , , tags], index) => {
        note(typePrefix + type, chunk.firstPosition + index);
        for (const tag of tags) note(tagPrefix + tag, chunk.firstPosition + index);
      });
    }
  }

  /** Builds the indexes of data fields that have none yet; appends go on meanwhile. */
  async #ensureDataIndexes(fields: readonly string[]): Promise<void> {
    if (fields.every((field) => this.#dataFields.includes(field))) return;
    await this.#maintenanceTurn(() => this.#buildMissingDataIndexes(fields));
  }

  /**
   * Indexes data fields over the whole ledger: from the head taken here the write path writes
   * their entries, and the ledger through it is indexed meanwhile. Queries on a field wait for
   * its build; nothing else does. The field is recorded complete only after a barrier made its
   * entries durable; until then no read trusts them, and a crash leaves entries the next build
   * clears first.
   */
  async #buildMissingDataIndexes(fields: readonly string[]): Promise<void> {
    const missing = [...new Set(fields.filter((field) => !this.#dataFields.includes(field)))];
    if (missing.length === 0) return;
    for (const field of missing) await clearDataIndex(this.#db, field);
    const recorded = [...new Set([...this.#dataFields, ...missing])].sort();
    // With the tail drained, every chunk planned from now on decodes its data for the new fields.
    const head = await this.#exclusive(() => {
      this.#applyDataFields = recorded;
      return Promise.resolve(this.#head);
    });
    try {
      await buildDataIndexes(this.#db, this.#newBatch, head, missing, this.#onIndexBuild);
      await this.#makeDurable();
      await this.#db.put<Uint8Array, Uint8Array>(metaKey('dataFields'), metaEncoder.encode(recorded), VIEW);
      this.#dataFields = recorded;
    } finally {
      // A failed build leaves entries that the next one clears first.
      this.#applyDataFields = this.#dataFields;
    }
  }

  // ------------------------------------------------------------------ write path

  #submit(
    method: AppendRequest['method'],
    stream: string,
    expect: StreamExpectation,
    condition: CheckedCondition | null,
    events: unknown,
    versionPrefetch: VersionPrefetch | null = null,
  ): Promise<AppendResult | StreamAppendResult> {
    try {
      this.#checkOpen(method);
      if (this.#failure) throw this.#failure;
      const prepared = prepareEvents(events, method);
      const streamSizeBytes = Buffer.byteLength(stream);
      let chunksSizeBytes = 0;
      for (const chunk of prepared.chunks) chunksSizeBytes += commitChunkSizeBytes(streamSizeBytes, chunk.tuplesBytes.length);
      const recordBytes = commitSizeBytes(chunksSizeBytes);
      if (recordBytes > this.#wal.maxRecordSizeBytes) {
        // Refused before it reaches the WAL, which would refuse it by failing for good.
        throw invalid(`${method}: the append needs a ${recordBytes}-byte WAL record, above the WAL's maxRecordSizeBytes ${this.#wal.maxRecordSizeBytes}`, {
          sizeBytes: recordBytes,
          maxRecordSizeBytes: this.#wal.maxRecordSizeBytes,
        });
      }
      const enqueue = () =>
        new Promise<AppendResult | StreamAppendResult>((resolve, reject) => {
          this.#checkOpen(method);
          this.#queue.push({ method, stream, expect, condition, events: prepared, chunksSizeBytes, timestamp: Date.now(), versionPrefetch, resolve, reject });
          this.#kickWriter();
        });
      // Queued at once, so appends are planned in call order; one whose condition needs a data
      // index not built yet is queued once it is (the writer never waits for a build).
      if (condition !== null && condition.query.dataFields.some((field) => !this.#dataFields.includes(field))) {
        return this.#ensureDataIndexes(condition.query.dataFields).then(enqueue);
      }
      return enqueue();
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  #kickWriter(): void {
    if (this.#writer || this.#maintenance) return;
    this.#writer = this.#runWriter().finally(() => {
      this.#writer = null;
      if (this.#queue.length > 0 && !this.#maintenance) this.#kickWriter();
    });
  }

  async #runWriter(): Promise<void> {
    let turnStartMs = performance.now();
    // A fresh start also takes a microtask: appends issued in the same synchronous run join.
    let lastGroupSize = 1;
    while (this.#queue.length > 0) {
      // A lone writer (last group: one append) resubmits in a microtask, so a microtask gathers
      // it (an event-loop turn costs ≈ 30 µs, a fifth of its append), with a full turn at least
      // every WRITER_TURN_MS for timers, I/O and readers. Concurrent callers get a full turn
      // between groups: those busy with a read can then join the next group.
      if (lastGroupSize === 1 && performance.now() - turnStartMs < WRITER_TURN_MS) {
        await Promise.resolve();
      } else {
        await yieldToEventLoop();
        turnStartMs = performance.now();
      }
      if (this.#maintenance) return;
      // Backpressure: the unapplied tail stays bounded, so memory does too.
      while (this.#tail.events >= UNAPPLIED_EVENTS_MAX || this.#tail.sizeBytes >= UNAPPLIED_SIZE_BYTES_MAX) {
        this.#kickApply(true);
        if (!this.#applyRun) break; // failed: the group is rejected below
        await this.#applyRun;
      }
      const group = this.#takeGroup();
      lastGroupSize = group.length;
      if (this.#failure) {
        for (const request of group) request.reject(this.#failure);
        continue;
      }
      try {
        await this.#commitGroup(group);
      } catch (error) {
        // A bug, not an I/O failure (those are handled inside): stop rather than hang the group.
        this.#fail(
          isFactError(error) ? error : new FactError('FACT_ASSERTION', `the writer of ${this.path} failed unexpectedly; reopen the database`, { cause: error }),
        );
        for (const request of group) request.reject(this.#failure!);
      }
    }
  }

  /**
   * The next appends in call order, as many as share one commit record: at most
   * GROUP_APPENDS_MAX, and a record within GROUP_PAYLOAD_SIZE_BYTES_MAX, the WAL's limit and
   * what the unapplied tail has room for (an append alone always goes: #submit refused ones the
   * WAL cannot take).
   */
  #takeGroup(): AppendRequest[] {
    const limitBytes = Math.min(GROUP_PAYLOAD_SIZE_BYTES_MAX, this.#wal.maxRecordSizeBytes, UNAPPLIED_SIZE_BYTES_MAX - this.#tail.sizeBytes);
    let count = 0;
    let chunksSizeBytes = 0;
    while (count < this.#queue.length && count < GROUP_APPENDS_MAX) {
      chunksSizeBytes += this.#queue[count]!.chunksSizeBytes;
      if (count > 0 && commitSizeBytes(chunksSizeBytes) > limitBytes) break;
      count++;
    }
    return this.#queue.splice(0, count);
  }

  async #commitGroup(group: AppendRequest[]): Promise<void> {
    this.#planning = true;
    let issued: LoggedGroup | null;
    try {
      issued = await this.#planAndLog(group);
    } finally {
      this.#endPlanning();
    }
    if (issued === null) return;
    const { planned, payload, chunkBytes } = issued;
    let lsn: number;
    try {
      lsn = await issued.logged;
    } catch (error) {
      this.#fail(
        new FactError('FACT_WAL_POISONED', `the write-ahead log of ${this.path} failed; no further appends are accepted until the database is reopened`, {
          cause: error,
        }),
      );
      for (const append of planned) append.request.reject(this.#failure!);
      return;
    }
    // Durable: visible to reads from now on (through the tail), applied to LevelDB in the background.
    const published: TailChunk[] = [];
    for (const append of planned) {
      for (const chunk of append.chunks) published.push({ firstPosition: chunk.firstPosition, bytes: chunkBytes[published.length]!, planned: chunk.header, lsn });
    }
    this.#tail.add(published);
    const last = this.#nextPosition - 1;
    assert(last > this.#head, 'positions only grow');
    this.#head = last;
    this.#noteNewestPositions(published);
    for (const append of planned) {
      const last = append.firstPosition + append.request.events.count - 1;
      const count = append.request.events.count;
      append.request.resolve(
        append.request.stream === '' ? { position: last, count } : { position: last, count, streamPosition: append.firstStreamPosition + count - 1 },
      );
    }
    // Building the apply batch takes main-thread time: after the callers resumed, not before.
    setImmediate(() => this.#kickApply());
    this.#bytesSinceCheckpoint += payload.length;
    if (this.#bytesSinceCheckpoint >= this.#checkpointEveryBytes) this.#startCheckpoint();
    this.#trimStreamVersions();
  }

  /** Plans the group and hands its WAL record to the WAL; null when nothing is left to write. */
  async #planAndLog(group: AppendRequest[]): Promise<LoggedGroup | null> {
    let planned: PlannedAppend[];
    try {
      const reads = this.#readForPlan(group);
      planned = this.#plan(group, reads instanceof Promise ? await reads : reads);
    } catch (error) {
      // Reading state failed: nothing was written, so only this group fails.
      for (const request of group) request.reject(isFactError(error) ? error : ioError('plan', this.path, error));
      this.#forgetPlannedVersions();
      return null;
    }
    if (planned.length === 0) return null;
    const chunks = planned.length === 1 ? planned[0]!.chunks : planned.flatMap((append) => append.chunks);
    // From the arena: the ledger keeps views of it (the chunks) until they are applied.
    const { payload, chunkBytes } = encodeCommitChunks(planned[0]!.firstPosition, chunks, this.#arena.allocate);
    let chunksSizeBytes = 0;
    for (const { request } of planned) chunksSizeBytes += request.chunksSizeBytes;
    assert(payload.length === commitSizeBytes(chunksSizeBytes), 'the commit record is as large as #takeGroup reckoned');
    return { planned, payload, chunkBytes, logged: this.#wal.append(payload, { type: WAL_RECORD_COMMIT }) };
  }

  /**
   * Reads what the group's checks need that memory does not hold: indexes for conditions on data
   * fields, stream versions not cached, stored events of caller-chosen ids, condition matches.
   * Most groups need none of it, and then nothing here awaits (an await costs microseconds, a
   * tenth of a lone writer's append besides its fdatasync).
   */
  #readForPlan(group: AppendRequest[]): Promise<PlanReads> | PlanReads {
    let streamsMissing = false;
    let callerIds = false;
    let conditions = false;
    for (const request of group) {
      if (request.condition) {
        conditions = true;
        assert(
          request.condition.query.dataFields.every((field) => this.#dataFields.includes(field)),
          'a condition is queued once its data indexes are built (#submit)',
        );
      }
      if (request.stream !== '' && !this.#streamVersions.has(request.stream)) streamsMissing = true;
      if (request.events.callerIds) callerIds = true;
    }
    if (!streamsMissing && !callerIds && !conditions) return NOTHING_READ;
    return (async () => {
      if (streamsMissing) await this.#loadStreamVersions(group);
      const existingIds = callerIds ? await this.#lookUpIds(group) : NOTHING_READ.existingIds;
      // Committed conflicts: LevelDB and the unapplied tail hold every committed event.
      const committedConflicts = conditions
        ? await Promise.all(group.map((request) => (request.condition ? this.#latestMatch(request.condition.query, request.condition.after) : Promise.resolve(0))))
        : null;
      return { existingIds, committedConflicts };
    })();
  }

  /** Expectation and id checks in call order, each seeing the committed state and the group's earlier appends. */
  #plan(group: AppendRequest[], reads: PlanReads): PlannedAppend[] {
    const { existingIds, committedConflicts } = reads;
    const groupIds = new Set<string>();
    const planned: PlannedAppend[] = [];
    for (let requestIndex = 0; requestIndex < group.length; requestIndex++) {
      const request = group[requestIndex]!;
      const { events } = request;
      const reserved = existingIds.reserved.size > 0 ? events.ids.find((id) => id !== null && existingIds.reserved.has(id)) : undefined;
      if (reserved !== undefined) {
        request.reject(
          invalid(`${request.method}: event id ${reserved} has the form of the ids this database generates, for a position not yet written; choose another id`, {
            id: reserved,
          }),
        );
        continue;
      }
      if (existingIds.positions.size > 0) {
        const existing = events.ids.map((id) => (id === null ? undefined : existingIds.positions.get(id)));
        if (existing.some((position) => position !== undefined)) {
          this.#settleRetry(request, existing, existingIds.events, existingIds.spanAt);
          continue;
        }
      }
      // Generated UUIDs collide with nothing: only caller-chosen ids can repeat within a group.
      const duplicate = events.callerIds ? events.ids.find((id) => id !== null && groupIds.has(id)) : undefined;
      if (duplicate !== undefined) {
        request.reject(
          new FactError('FACT_DUPLICATE_EVENT_ID', `${request.method}: event id ${duplicate} is already being appended by a concurrent append`, {
            details: { id: duplicate },
          }),
        );
        continue;
      }
      if (request.condition) {
        // Conflicts among the earlier appends of this group, checked in memory.
        const conflict = Math.max(committedConflicts?.[requestIndex] ?? 0, latestPlannedMatch(planned, request.condition));
        if (conflict > 0) {
          request.reject(
            new FactError(
              'FACT_CONCURRENCY',
              `${request.method}: condition failed: the event at position ${conflict} matches failIfEventsMatch and came after position ${request.condition.after}`,
              { details: { expected: request.condition.after, actual: conflict, ...(request.stream !== '' ? { stream: request.stream } : {}) } },
            ),
          );
          continue;
        }
      }
      let firstStreamPosition = 0;
      if (request.stream !== '') {
        const version = this.#streamVersions.get(request.stream) ?? 0;
        const violation = expectationViolation(request.expect, version);
        if (violation) {
          request.reject(
            new FactError('FACT_CONCURRENCY', `appendStream: stream ${request.stream} ${violation} (expected ${String(request.expect)}, actual version ${version})`, {
              details: { stream: request.stream, expected: request.expect, actual: version },
            }),
          );
          continue;
        }
        firstStreamPosition = version + 1;
        this.#streamVersions.set(request.stream, version + events.count);
      }
      if (events.callerIds) for (const id of events.ids) if (id !== null) groupIds.add(id);
      const firstPosition = this.#nextPosition;
      this.#nextPosition += events.count;
      const chunks: PlannedChunk[] = [];
      const streamBytes = utf8(request.stream);
      let chunkFirst = firstPosition;
      let chunkStreamPosition = firstStreamPosition;
      for (const chunk of events.chunks) {
        // Data indexes and condition checks must see what the ledger holds (the bytes encoded when
        // append was called), not the caller's objects: changed since, or not round-tripping.
        const tuples = this.#applyDataFields.length > 0 ? decodeTuples(chunk.tuplesBytes, `planned at position ${chunkFirst}`) : chunk.tuples;
        const kind = chunkFirst === firstPosition ? CHUNK_KIND_APPEND_FIRST : CHUNK_KIND_APPEND_CONTINUED;
        const header = { kind, timestamp: request.timestamp, stream: request.stream, firstStreamPosition: request.stream === '' ? 0 : chunkStreamPosition, tuples };
        chunks.push({ firstPosition: chunkFirst, header, streamBytes, tuplesBytes: chunk.tuplesBytes });
        chunkFirst += chunk.tuples.length;
        chunkStreamPosition += chunk.tuples.length;
      }
      planned.push({ request, firstPosition, firstStreamPosition, chunks });
    }
    return planned;
  }

  /**
   * Starts reading the stored version of a stream that is neither cached nor in the unapplied
   * tail, so the writer need not wait for LevelDB when it plans the append (validating a large
   * append takes longer than the read). Sound while no cached version is dropped meanwhile: then
   * every write to the stream after this read is in the cache when the append is planned, and
   * every write before it was applied, so the read saw it.
   */
  #prefetchStreamVersion(stream: string): VersionPrefetch | null {
    if (this.#streamVersions.has(stream) || this.#tail.streamVersion(stream) !== undefined) return null;
    const version = this.#db
      .get<Uint8Array, Uint8Array>(nameKey(KeySpace.streamVersions, utf8(stream)), VIEW)
      .then((value) => (value === undefined ? 0 : readU64BE(value, 0)))
      .catch(() => undefined); // the writer reads again and reports the error
    return { version, epoch: this.#versionEpoch };
  }

  async #loadStreamVersions(group: AppendRequest[]): Promise<void> {
    const missing: string[] = [];
    const prefetched: { stream: string; version: Promise<number | undefined> }[] = [];
    const seen = new Set<string>();
    for (const { stream, versionPrefetch } of group) {
      if (stream === '' || seen.has(stream) || this.#streamVersions.has(stream)) continue;
      seen.add(stream);
      const inTail = this.#tail.streamVersion(stream);
      if (inTail !== undefined) this.#streamVersions.set(stream, inTail);
      else if (versionPrefetch !== null && versionPrefetch.epoch === this.#versionEpoch) prefetched.push({ stream, version: versionPrefetch.version });
      else missing.push(stream);
    }
    for (const { stream, version } of prefetched) {
      const value = await version;
      if (value === undefined) missing.push(stream);
      else this.#streamVersions.set(stream, value);
    }
    if (missing.length === 0) return;
    const values = await this.#db.getMany<Uint8Array, Uint8Array>(
      missing.map((stream) => nameKey(KeySpace.streamVersions, utf8(stream))),
      VIEW,
    );
    for (const [index, stream] of missing.entries()) {
      const value = values[index];
      this.#streamVersions.set(stream, value === undefined ? 0 : readU64BE(value, 0));
    }
  }

  /**
   * Stored positions and events of the caller-chosen ids of the group that already exist, and the
   * ids among them that are reserved. Caller ids are indexed (or in the tail); an id in this
   * database's generated form names its position, whose event has it if its id was generated.
   */
  async #lookUpIds(group: AppendRequest[]): Promise<PlanReads['existingIds']> {
    const ids = new Set<string>();
    for (const request of group) if (request.events.callerIds) for (const id of request.events.ids) if (id !== null) ids.add(id);
    const positions = new Map<string, number>();
    const events = new Map<number, RecordedEvent>();
    const reserved = new Set<string>();
    if (ids.size === 0) return { positions, events, reserved, spanAt: NOTHING_READ.existingIds.spanAt };
    const tail = this.#tail.snapshot(this.#appliedHead);
    for (const [id, position] of tail.idPositions(ids)) positions.set(id, position);
    const stored = [...ids].filter((id) => !positions.has(id));
    const values = await this.#db.getMany<Uint8Array, Uint8Array>(
      stored.map((id) => nameKey(KeySpace.id, utf8(id))),
      VIEW,
    );
    const generatedForm: { id: string; position: number }[] = [];
    for (const [index, id] of stored.entries()) {
      const value = values[index];
      if (value !== undefined) {
        positions.set(id, readU64BE(value, 0));
        continue;
      }
      const position = this.#ids.position(id);
      if (position === null) continue;
      // Later positions will be given exactly this id: a caller may not take it first.
      if (position > this.#head) reserved.add(id);
      else generatedForm.push({ id, position });
    }
    // Retries are rare: fetch each stored event to compare its content.
    const fetch = new Set([...positions.values(), ...generatedForm.map((entry) => entry.position)]);
    for (const position of fetch) {
      for await (const event of this.#sourceScan('all', { from: position, direction: 'forward', limit: 1, signal: undefined })) {
        events.set(event.position, event);
      }
    }
    // A generated-form id exists if its position's event has it (that event's id was generated).
    for (const { id, position } of generatedForm) if (events.get(position)?.id === id) positions.set(id, position);
    return { positions, events, reserved, spanAt: await this.#chunkSpans(events.keys()) };
  }

  /**
   * The chunks holding `positions` and their neighbours (a retry must be exactly one append, see
   * retry.ts): the unapplied tail first, else LevelDB's chunk at or before the position.
   */
  async #chunkSpans(positions: Iterable<number>): Promise<ChunkSpanAt> {
    const spans: ChunkSpan[] = [];
    const spanAt: ChunkSpanAt = (position) => spans.find((span) => span.first <= position && position < span.first + span.count);
    const tail = this.#tail.snapshot(this.#appliedHead);
    const spanOf = (first: number, chunk: DecodedChunk): ChunkSpan => ({
      first,
      count: chunk.tuples.length,
      kind: chunk.kind,
      timestamp: chunk.timestamp,
      stream: chunk.stream,
      firstStreamPosition: chunk.firstStreamPosition,
    });
    for (const position of positions) {
      for (const wanted of [position - 1, position, position + 1]) {
        if (wanted < 1 || wanted > this.#head || spanAt(wanted) !== undefined) continue;
        const inTail = tail.chunkAt(wanted);
        if (inTail !== undefined) {
          spans.push(spanOf(inTail.firstPosition, inTail.planned));
          continue;
        }
        const stored = await this.#reader.chunkAt(wanted);
        if (stored !== undefined) spans.push(spanOf(stored.first, stored.chunk));
      }
    }
    return spanAt;
  }

  /** Some ids already exist: an identical retry returns the original result, anything else fails. */
  #settleRetry(request: AppendRequest, existing: (number | undefined)[], storedEvents: ReadonlyMap<number, RecordedEvent>, spanAt: ChunkSpanAt): void {
    const { events } = request;
    const stored = existing.map((position) => (position === undefined ? undefined : storedEvents.get(position)));
    // Compared as the ledger would hold them: the decoded bytes, not the caller's objects.
    const tuples = events.chunks.flatMap((chunk) => decodeTuples(chunk.tuplesBytes, `of the retried ${request.method}`));
    const mismatch = tuples.findIndex((tuple, index) => {
      const event = stored[index];
      return event === undefined || !sameEvent(tuple, request.stream, event) || (index > 0 && event.position !== stored[index - 1]!.position + 1);
    });
    // Identical events, but a retry must also be all of one append: not part of one, not parts of two.
    if (mismatch < 0 && !isOneAppend(stored[0]!.position, events.count, spanAt)) {
      const first = stored[0]!;
      request.reject(
        new FactError(
          'FACT_DUPLICATE_EVENT_ID',
          `${request.method}: events ${events.ids[0]} … exist at positions ${first.position} … ${first.position + events.count - 1}, but not as one append of exactly these events`,
          { details: { id: events.ids[0], position: first.position } },
        ),
      );
      return;
    }
    if (mismatch >= 0) {
      // Name an id that exists: for a partial retry, the first one that does.
      const partial = stored[mismatch] === undefined;
      const index = partial ? existing.findIndex((position) => position !== undefined) : mismatch;
      const id = events.ids[index]!;
      const position = existing[index];
      request.reject(
        new FactError(
          'FACT_DUPLICATE_EVENT_ID',
          `${request.method}: event id ${id} already exists at position ${position} ${partial ? 'but other events of this append do not' : 'with different content'}`,
          { details: { id, position } },
        ),
      );
      return;
    }
    const last = stored[stored.length - 1]!;
    request.resolve(
      request.stream === '' ? { position: last.position, count: events.count } : { position: last.position, count: events.count, streamPosition: last.streamPosition ?? 0 },
    );
  }

  /**
   * The group's WAL write is issued (its sync runs in the microtasks that follow): an apply that
   * became due while the group was planned starts in the next check phase, so building its batch
   * overlaps the disk's sync instead of lengthening the next append.
   */
  #endPlanning(): void {
    this.#planning = false;
    if (this.#applyDue || this.#tail.events >= APPLY_BATCH_EVENTS) setImmediate(() => this.#kickApply());
  }

  /**
   * Starts the apply when it is due (a full batch waits, the delay is over, or `now`), else arms
   * the delay timer. A due apply waits while the writer plans a group (see #endPlanning).
   */
  #kickApply(now = false): void {
    if (this.#applyRun || this.#tail.chunkCount === 0 || this.#failure) return;
    if (!now && !this.#applyDue && this.#tail.events < APPLY_BATCH_EVENTS) {
      this.#applyTimer ??= setTimeout(() => {
        this.#applyTimer = null;
        this.#applyDue = true;
        this.#kickApply();
      }, APPLY_DELAY_MS).unref();
      return;
    }
    if (!now && this.#planning) {
      this.#applyDue = true;
      return;
    }
    this.#applyDue = false;
    if (this.#applyTimer) {
      clearTimeout(this.#applyTimer);
      this.#applyTimer = null;
    }
    this.#applyRun = this.#applyTail().finally(() => {
      this.#applyRun = null;
      this.#kickApply();
    });
  }

  /**
   * Applies the tail to LevelDB, everything waiting in one batch, again while a full batch waits
   * (less goes after the delay) and the writer is not planning a group (the next batch is then
   * built during its WAL sync). A failure loses nothing (the WAL holds every chunk, recovery
   * applies them) but stops all appends.
   */
  async #applyTail(): Promise<void> {
    for (let first = true; first || (this.#tail.events >= APPLY_BATCH_EVENTS && !this.#planning); first = false) {
      if (this.#failure) return;
      const chunks = await this.#durableTailChunks();
      if (chunks.length === 0) return;
      const batch = this.#newBatch();
      const put = (key: Uint8Array, value: Uint8Array) => batch.put(key, value);
      // Only the newest chunk of a stream in this batch writes the stream's version.
      const newestOfStream = new Map<string, TailChunk>();
      for (const chunk of chunks) newestOfStream.set(chunk.planned.stream, chunk);
      const texts = new Map<string, Uint8Array>();
      for (const chunk of chunks) {
        put(ledgerKey(chunk.firstPosition, this.#arena.allocate), chunk.bytes);
        forEachIndexEntry(chunk.planned, chunk.firstPosition, put, this.#applyDataFields, newestOfStream.get(chunk.planned.stream) === chunk, this.#arena.allocate, texts);
      }
      const newest = chunks[chunks.length - 1]!;
      const last = newest.firstPosition + newest.planned.tuples.length - 1;
      put(metaKey('applied'), u64Pair(last, newest.lsn));
      try {
        await batch.write();
      } catch (error) {
        this.#fail(
          new FactError('FACT_IO', `LevelDB failed to apply logged events of ${this.path}; they are durable and will be applied when the database is reopened`, {
            cause: error,
          }),
        );
        return;
      }
      assert(last > this.#appliedHead, 'applied positions only grow');
      this.#tail.dropApplied(chunks.length);
      this.#appliedHead = last;
      this.#appliedLsn = newest.lsn;
    }
  }

  /**
   * The oldest chunks of the tail whose WAL record is durable: LevelDB, which makes its tables
   * durable on its own, must never hold an event that a power loss can take from the WAL, or the
   * database would not open again (recovery row 6). With sync 'none' appends resolve before
   * their record is synced: the apply then asks the WAL for a sync (appends never wait for it).
   */
  async #durableTailChunks(): Promise<readonly TailChunk[]> {
    let chunks = this.#tail.chunks;
    if (chunks.length > 0 && chunks[0]!.lsn > this.#wal.durableLsn) {
      try {
        await this.#wal.sync();
      } catch (error) {
        this.#fail(
          new FactError('FACT_WAL_POISONED', `the write-ahead log of ${this.path} failed to sync; no further appends are accepted until the database is reopened`, {
            cause: error,
          }),
        );
        return [];
      }
      chunks = this.#tail.chunks;
    }
    const durableLsn = this.#wal.durableLsn;
    let count = 0;
    while (count < chunks.length && chunks[count]!.lsn <= durableLsn) count++;
    return count === chunks.length ? chunks : chunks.slice(0, count);
  }

  /** Applies until the tail is empty, or the apply failed. */
  async #applyAll(): Promise<void> {
    for (this.#kickApply(true); this.#applyRun; this.#kickApply(true)) await this.#applyRun;
  }

  #fail(error: FactError): void {
    this.#failure ??= error;
    for (const request of this.#queue.splice(0)) request.reject(this.#failure);
  }

  #forgetPlannedVersions(): void {
    // Planned versions may be ahead of what was committed; reload them from LevelDB.
    this.#streamVersions.clear();
    this.#versionEpoch++;
    this.#nextPosition = this.#head + 1;
  }

  #trimStreamVersions(): void {
    if (this.#streamVersions.size <= STREAM_VERSION_CACHE_ENTRIES_MAX) return;
    // Between groups every cached version is committed, so any entry may go.
    let excess = this.#streamVersions.size - STREAM_VERSION_CACHE_ENTRIES_MAX / 2;
    this.#versionEpoch++;
    for (const stream of this.#streamVersions.keys()) {
      if (excess-- <= 0) break;
      this.#streamVersions.delete(stream);
    }
  }

  /** Waits until no append is in flight and LevelDB holds every resolved event (unless failed). */
  async #idle(): Promise<void> {
    do {
      while (this.#writer) await this.#writer;
      await this.#applyAll();
    } while (this.#writer);
  }

  // ------------------------------------------------------------------ checkpoints, recovery, close

  #startCheckpoint(): void {
    if (this.#checkpointRun) return;
    this.#bytesSinceCheckpoint = 0;
    this.#checkpointRun = this.#checkpoint()
      .catch(() => {
        // A failed checkpoint loses nothing: the WAL keeps every record since the last one. A
        // failed barrier has stopped the store (#makeDurable), and close reports it.
      })
      .finally(() => {
        this.#checkpointRun = null;
      });
  }

  /** Barrier (LevelDB durable up to the applied LSN), then tell the WAL; never past a failed barrier. */
  async #checkpoint(): Promise<void> {
    if (this.#barrierFailure) throw this.#barrierFailure;
    const lsn = this.#appliedLsn;
    if (lsn <= this.#wal.checkpointLsn) return;
    await this.#makeDurable();
    await this.#wal.checkpoint(lsn);
  }

  /**
   * The barrier. A failure stops the store like a failed apply: LevelDB then refuses writes
   * anyway (its background error sticks until reopened), and a later barrier that succeeds
   * would not prove that what this one covered survived.
   */
  async #makeDurable(): Promise<void> {
    if (this.#barrierFailure) throw this.#barrierFailure;
    try {
      await this.#barrier();
    } catch (error) {
      const failure = isFactError(error) ? error : new FactError('FACT_IO', `the durability barrier of ${this.path} failed`, { cause: error });
      this.#barrierFailure ??= failure;
      this.#fail(failure);
      throw failure;
    }
  }

  /** Recovery rows 4, 5 and 5b. */
  static async #checkFormat(db: LevelDatabase, path: string, barrier: BoundBarrier): Promise<void> {
    const format = await db.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW);
    if (format === undefined) {
      await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    } else if (
      INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(readU64BE(format, 0)) ||
      (DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(readU64BE(format, 0)) && (await hasDataFields(db)))
    ) {
      // Same ledger, older index layout: the durable marker makes the rebuild in #recover
      // (recovery row 9) happen even if this open is cut short after the new version is recorded.
      await db.put<Uint8Array, Uint8Array>(metaKey('rebuilding'), new Uint8Array(0), VIEW);
      await barrier();
      await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    } else if (DATA_INDEX_UPGRADABLE_FORMAT_VERSIONS.includes(readU64BE(format, 0))) {
      // No data-field index: nothing derived from a canonical form, the rest reads as it is.
      await db.put<Uint8Array, Uint8Array>(metaKey('format'), u64(STORAGE_FORMAT_VERSION), VIEW);
    } else if (readU64BE(format, 0) !== STORAGE_FORMAT_VERSION) {
      throw new FactError('FACT_CORRUPTION', `database ${path} has storage format ${readU64BE(format, 0)}; this version reads ${STORAGE_FORMAT_VERSION}`);
    }
  }

  /**
   * Recovery row 10: the id seed is in LevelDB, else in the WAL (a LevelDB that lost it, or
   * never had it, is refilled), else this is the first open of a database that has none: a new
   * seed is logged to the WAL and then written to LevelDB, both durably, before any event can
   * carry an id derived from it. A checkpoint can drop the seed's WAL record only after its
   * barrier made LevelDB's copy durable.
   */
  async #settleIdSeed(stored: Uint8Array | undefined, logged: Uint8Array | undefined): Promise<void> {
    for (const [where, seed] of [['M idSeed', stored], ['the WAL', logged]] as const) {
      if (seed !== undefined && seed.length !== ID_SEED_SIZE_BYTES) {
        throw new FactError('FACT_CORRUPTION', `database ${this.path}: the id seed in ${where} has ${seed.length} bytes, expected ${ID_SEED_SIZE_BYTES}`);
      }
    }
    if (stored !== undefined) {
      this.#ids.useSeed(stored);
      return;
    }
    let seed = logged;
    if (seed === undefined) {
      seed = newIdSeed();
      await this.#wal.append(seed, { type: WAL_RECORD_ID_SEED });
      await this.#wal.sync();
    }
    await this.#db.put<Uint8Array, Uint8Array>(metaKey('idSeed'), seed, VIEW);
    await this.#makeDurable();
    this.#ids.useSeed(seed);
  }

  async #recover(): Promise<void> {
    const db = this.#db;
    const storedSeed = await db.get<Uint8Array, Uint8Array>(metaKey('idSeed'), VIEW);
    let loggedSeed: Uint8Array | undefined;
    const recordedFields = await db.get<Uint8Array, Uint8Array>(metaKey('dataFields'), VIEW);
    this.#dataFields = recordedFields === undefined ? [] : (metaEncoder.decode(recordedFields) as string[]);
    this.#applyDataFields = this.#dataFields;
    const applied = await db.get<Uint8Array, Uint8Array>(metaKey('applied'), VIEW);
    const storedAppliedHead = applied === undefined ? 0 : readU64BE(applied, 0);
    const storedAppliedLsn = applied === undefined ? 0 : readU64BE(applied, 8);
    let head = storedAppliedHead;
    let appliedLsn = storedAppliedLsn;
    if (appliedLsn > this.#wal.lastLsn) {
      throw new FactError(
        'FACT_CORRUPTION',
        `database ${this.path}: LevelDB has applied WAL record ${appliedLsn} but the WAL ends at ${this.#wal.lastLsn}; acknowledged WAL data was lost`,
        { details: { appliedLsn, walLastLsn: this.#wal.lastLsn } },
      );
    }
    if (appliedLsn < this.#wal.checkpointLsn) {
      // The checkpoint barrier made LevelDB durable up to the checkpoint; replay starts after it.
      throw new FactError(
        'FACT_CORRUPTION',
        `database ${this.path}: the WAL is checkpointed at record ${this.#wal.checkpointLsn} but LevelDB has applied only up to record ${appliedLsn}; LevelDB lost checkpointed data`,
        { details: { appliedLsn, walCheckpointLsn: this.#wal.checkpointLsn } },
      );
    }
    let batch = this.#newBatch();
    let batchEvents = 0;
    let expectedFirst: number | null = null;
    for await (const record of this.#wal.replay()) {
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
        batch.put(ledgerKey(position, this.#arena.allocate), bytes);
        forEachIndexEntry(decoded, position, (key, value) => batch.put(key, value), this.#dataFields, true, this.#arena.allocate);
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
        batch = this.#newBatch();
        batchEvents = 0;
      }
    }
    await batch.write();
    this.#head = head;
    this.#appliedHead = head;
    this.#nextPosition = head + 1;
    this.#appliedLsn = appliedLsn;
    await this.#settleIdSeed(storedSeed, loggedSeed);
    await this.#checkpoint();
    if ((await db.get<Uint8Array, Uint8Array>(metaKey('rebuilding'), VIEW)) !== undefined) {
      // A format upgrade (or an older version's rebuild) was cut short: its entries cannot be trusted.
      await this.#underRebuildMarker(() => this.#rebuild());
    } else {
      // A rebuildIndexes() cut short leaves its shadow (the rebuild above clears it itself).
      await clearRebuildShadow(db);
    }
    await clearUnrecordedDataIndexes(db, this.#dataFields);
    await this.#ensureDataIndexes(this.#declaredDataFields);
  }

  /** Rejects when a barrier failed during the handle's life or the final checkpoint failed; closes either way. */
  async #close(): Promise<void> {
    let checkpointFailure: FactError | null = null;
    try {
      await this.#maintenanceChain;
      while (this.#maintenance) await this.#maintenance.catch(() => undefined);
      await this.#idle();
      await this.#checkpointRun;
      if (!this.#failure) {
        await this.#checkpoint().catch((error: unknown) => {
          checkpointFailure = isFactError(error) ? error : new FactError('FACT_IO', `the final checkpoint of ${this.path} failed`, { cause: error });
        });
      }
    } finally {
      this.#closed = true;
      await this.#wal.close().catch(() => undefined);
      if (this.#ownsDb) await this.#db.close().catch(() => undefined);
    }
    const failure = this.#barrierFailure ?? checkpointFailure;
    if (failure) throw failure;
  }

  #checkOpen(method: string): void {
    if (this.#closed || this.#closing) {
      throw new FactError('FACT_CLOSED', `${method}: the database at ${this.path} is closed`, { details: { path: this.path } });
    }
  }
}

/** The index a read source names, validated. */
function parseSource(source: ReadSource): 'all' | Query | { space: number; kind: 'stream' | 'type' | 'tag' | 'category'; name: string } {
  if (source === 'all') return 'all';
  if (source instanceof Query) return source;
  if (typeof source !== 'object' || source === null) throw invalid(`read: source must be 'all' or an object, got ${String(source)}`);
  const keys = Object.keys(source);
  if (keys.length !== 1) throw invalid(`read: source must have exactly one of stream, type, tag, category, query; got ${JSON.stringify(keys)}`);
  if ('query' in source) {
    if (!(source.query instanceof Query)) throw invalid('read: source.query must be a Query');
    return source.query;
  }
  if ('stream' in source) return { space: KeySpace.streamPositions, kind: 'stream', name: checkStreamId(source.stream, 'read') };
  if ('type' in source) return { space: KeySpace.type, kind: 'type', name: checkName(source.type, 'read: type', EVENT_TYPE_SIZE_BYTES_MAX) };
  if ('tag' in source) return { space: KeySpace.tag, kind: 'tag', name: checkName(source.tag, 'read: tag', TAG_SIZE_BYTES_MAX) };
  if ('category' in source) return { space: KeySpace.category, kind: 'category', name: checkName(source.category, 'read: category', STREAM_ID_SIZE_BYTES_MAX) };
  throw invalid(`read: unknown source ${JSON.stringify(keys[0])}`);
}

function toTailSource(index: ReturnType<typeof parseSource>): TailSource {
  if (index === 'all') return { kind: 'all' };
  if (index instanceof Query) return index.compiled === 'all' ? { kind: 'all' } : { kind: 'query', query: index };
  return { kind: index.kind, name: index.name };
}

/** Checks the signal before every event, so an abort stops a read at its next step, not after a batch. */
async function* abortable(events: AsyncGenerator<RecordedEvent>, signal: AbortSignal): AsyncGenerator<RecordedEvent> {
  signal.throwIfAborted();
  for await (const event of events) {
    yield event;
    signal.throwIfAborted();
  }
}

/** The newest position among a group's planned appends that matches a condition (0 if none). */
function latestPlannedMatch(planned: readonly PlannedAppend[], condition: CheckedCondition): number {
  let latest = 0;
  for (const append of planned) {
    for (const chunk of append.chunks) {
      chunk.header.tuples.forEach(([, type, data, , tags], index) => {
        const position = chunk.firstPosition + index;
        if (position > condition.after && position > latest && matchesQuery(condition.query, { type, tags, data })) latest = position;
      });
    }
  }
  return latest;
}

function expectationViolation(expect: StreamExpectation, version: number): string | null {
  if (expect === 'any') return null;
  if (expect === 'none') return version === 0 ? null : 'already exists';
  if (expect === 'exists') return version > 0 ? null : 'does not exist';
  return version === expect ? null : 'is not at the expected version';
}

/** Same stream and same content in canonical form (object keys in any order). */
function sameEvent(tuple: EventTuple, stream: string, event: RecordedEvent): boolean {
  if ((event.stream ?? '') !== stream) return false;
  const stored: EventTuple = [event.id, event.type, event.data, event.metadata, event.tags];
  return Buffer.from(canonicalBytes(tuple)).equals(canonicalBytes(stored));
}

/** The pid in a WAL lock file, or null when there is none to read. */
async function lockFilePid(fs: FileSystem, lockPath: string): Promise<number | null> {
  const bytes = await fs.readFile(lockPath).catch(() => null);
  const pid = bytes === null ? Number.NaN : Number.parseInt(Buffer.from(bytes).toString('utf8'), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/** Whether `M dataFields` records any data-field index. */
async function hasDataFields(db: LevelDatabase): Promise<boolean> {
  const recorded = await db.get<Uint8Array, Uint8Array>(metaKey('dataFields'), VIEW);
  return recorded !== undefined && (metaEncoder.decode(recorded) as string[]).length > 0;
}
