/**
 * FactStore: the database's public face. Public methods validate and delegate; the write path
 * (plan → log to the WAL → resolve → apply to LevelDB) is in ledger/, the reads in query/, the
 * index work in indexes/ (docs/architecture.md is the map).
 */
import { resolve as resolvePath, sep as pathSeparator } from 'node:path';
import { Level } from 'level';
import { asError, FactError, invalid, isFactError, shown } from './errors.js';
import { clearRebuildShadow, type RebuildProgress } from './indexes/rebuild.js';
import { clearUnrecordedDataIndexes, type DataIndexProgress } from './indexes/data-index.js';
import { type VerifyReport } from './indexes/verify.js';
import { GeneratedIds, ID_SEED_SIZE_BYTES } from './model/ids.js';
import { DATA_FIELD_SIZE_BYTES_MAX, Query, type AppendCondition, type ReadSource } from './model/query.js';
import type {
  AckOption,
  AppendResult,
  Consumer,
  ConsumerInfo,
  ConsumerOptions,
  Decider,
  DecideOptions,
  DecideResult,
  EventInput,
  EventReader,
  ReadOptions,
  StreamAppendResult,
  StreamExpectation,
  SubscribeOptions,
  Subscription,
} from './model/types.js';
import { checkExpectation, checkName, checkReadOptions, checkStreamId, STREAM_ID_SIZE_BYTES_MAX, uniqueNames } from './model/validation.js';
import { EventStream, FlatEvents } from './query/event-stream.js';
import { LedgerReader } from './query/ledger-reader.js';
import { MergedReads } from './query/merged-reads.js';
import { DecisionReads } from './query/decision-reads.js';
import { abortable, parseSource } from './query/sources.js';
import { UnappliedTail } from './query/tail.js';
import { HeadWatch } from './query/head-watch.js';
import { LiveSubscription, type SubscriptionStart } from './query/subscription.js';
import { bindBarrier, chooseBarrier, type LevelDurability } from './storage/barrier.js';
import { metaKey } from './storage/keys.js';
import { batchFactory, ByteArena, LEVEL_OPEN_OPTIONS, VIEW, type BatchFactory, type LevelDatabase } from './storage/level.js';
import { readRecordedDataFields } from './storage/meta.js';
import { Applier } from './ledger/applier.js';
import { Checkpointer, DEFAULT_CHECKPOINT_EVERY_BYTES } from './ledger/checkpointer.js';
import { ConflictCheck } from './ledger/conflicts.js';
import { Planner } from './ledger/planner.js';
import { checkFormat, replayWal, settleIdSeed, upgradeLedger } from './ledger/recovery.js';
import { checkCondition, type AppendRequest, type CheckedCondition, type DecisionRequest } from './ledger/requests.js';
import { MaintenanceScheduler } from './ledger/scheduler.js';
import { LedgerState } from './ledger/state.js';
import { StreamVersions } from './ledger/stream-versions.js';
import { Writer } from './ledger/writer.js';
import { checkAckPosition, ConsumerPositions } from './ledger/consumers.js';
import { checkBackupDestination, swapInto, type BackupProgress, type BackupResult } from './ledger/backup.js';
import { DurableConsumer } from './ledger/durable-consumer.js';
import { CONSUMER_NAME_SIZE_BYTES_MAX, type ConsumerAck } from './storage/commit-record.js';
import { joinPath, type FileSystem } from './wal/file-system.js';
import { LOCK_FILE } from './wal/format.js';
import { NodeFileSystem } from './wal/node-file-system.js';
import { Wal, type WalOptions } from './wal/wal.js';

export interface FactStoreOptions {
  /** Create the database when missing (default true); with false a missing one fails with FACT_NOT_FOUND. */
  createIfMissing?: boolean;
  /** WAL options (docs/wal-format.md). */
  wal?: Pick<WalOptions, 'sync' | 'syncIntervalMs' | 'segmentSizeBytes' | 'retainSegments' | 'maxRecordSizeBytes'>;
  /**
   * An abstract-level database to use instead of `level` (classic-level in Node) at `<path>/ledger` (tests:
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
  /** Logged bytes between checkpoints. Default 32 MiB (DEFAULT_CHECKPOINT_EVERY_BYTES). */
  checkpointEveryBytes?: number;
  /** Indexes to maintain besides the built-in ones: top-level data fields. */
  indexes?: { data?: readonly string[] };
  /** Progress of building a data-field index from the ledger (at open, or on first use). */
  onIndexBuild?: (progress: DataIndexProgress) => void;
}

/** Attempts of an asynchronous decision (decide()) unless options.maxAttempts says otherwise. */
export const DECIDE_ATTEMPTS_DEFAULT = 10;

export interface AppendStreamOptions {
  expect?: StreamExpectation;
  /** A DCB condition checked in addition to `expect`. */
  condition?: AppendCondition;
  /** A consumer's ack made durable with these events, atomically (exactly-once projections). */
  ack?: AckOption;
  /** @internal For `factstore import` only: the timestamp to record (ms since the epoch) instead of the clock's. */
  timestamp?: number;
}

export interface AppendOptions {
  /** A consumer's ack made durable with these events, atomically (exactly-once projections). */
  ack?: AckOption;
  /** @internal For `factstore import` only: the timestamp to record (ms since the epoch) instead of the clock's. */
  timestamp?: number;
}

/** What open() wires together. */
interface StoreParts {
  wal: Wal;
  db: LevelDatabase;
  ownsDb: boolean;
  checkpointer: Checkpointer;
  state: LedgerState;
}

export class FactStore implements AsyncDisposable {
  readonly path: string;
  readonly #wal: Wal;
  readonly #db: LevelDatabase;
  readonly #ownsDb: boolean;
  readonly #state: LedgerState;
  readonly #ids = new GeneratedIds();
  readonly #tail = new UnappliedTail(this.#ids);
  readonly #arena = new ByteArena();
  readonly #newBatch: BatchFactory;
  readonly #reads: MergedReads;
  readonly #versions: StreamVersions;
  readonly #writer: Writer;
  readonly #applier: Applier;
  readonly #checkpointer: Checkpointer;
  readonly #maintenance: MaintenanceScheduler;
  readonly #watch = new HeadWatch();
  readonly #subscriptions = new Set<LiveSubscription>();
  readonly #consumerPositions = new ConsumerPositions();
  readonly #consumers = new Set<DurableConsumer>();
  #closing: Promise<void> | null = null;
  #closed = false;

  private constructor(path: string, { wal, db, ownsDb, checkpointer, state }: StoreParts, onIndexBuild: ((progress: DataIndexProgress) => void) | undefined) {
    this.path = path;
    this.#wal = wal;
    this.#db = db;
    this.#ownsDb = ownsDb;
    this.#state = state;
    this.#checkpointer = checkpointer;
    const tail = this.#tail;
    const ids = this.#ids;
    const newBatch = batchFactory(db, ownsDb);
    this.#newBatch = newBatch;
    const reader = new LedgerReader(db, ids);
    this.#reads = new MergedReads(db, reader, tail, () => state.appliedHead);
    this.#versions = new StreamVersions(db, tail);
    const conflicts = new ConflictCheck(db, tail, state);
    const decisionReads = new DecisionReads(reader, this.#reads, tail, () => state.appliedHead, ids);
    this.#applier = new Applier(wal, tail, newBatch, this.#arena, state);
    const planner = new Planner({ db, reader, reads: this.#reads, tail, ids, state, versions: this.#versions, conflicts, decisionReads });
    this.#writer = new Writer({ wal, tail, arena: this.#arena, state, planner, versions: this.#versions, conflicts, decisionReads, applier: this.#applier, checkpointer, watch: this.#watch, consumers: this.#consumerPositions });
    this.#maintenance = new MaintenanceScheduler({
      db,
      wal,
      newBatch,
      ids,
      state,
      writer: this.#writer,
      versions: this.#versions,
      conflicts,
      decisionReads,
      checkpointer,
      onIndexBuild,
      checkOpen: (method) => this.#checkOpen(method),
    });
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
    checkWalRecordSize(options.wal?.maxRecordSizeBytes);
    if (options.onIndexBuild !== undefined && typeof options.onIndexBuild !== 'function') throw invalid('FactStore.open: onIndexBuild must be a function');
    const durability = chooseBarrier(options.level, options.levelDurability);
    const fs = options.fs ?? new NodeFileSystem();
    const walDir = joinPath(path, 'wal');
    if (options.createIfMissing === false && !(await fs.exists(walDir))) {
      throw new FactError('FACT_NOT_FOUND', `no database at ${path} (createIfMissing is false)`, { details: { path } });
    }
    // LevelDB's lock first: the WAL's recovery may rewrite files, and its pid lock can misjudge a live holder.
    const db = await openLevel(path, options.level, fs, walDir);
    const ownsDb = options.level === undefined;
    let wal: Wal | undefined;
    try {
      wal = await Wal.open(walDir, { ...(options.wal ?? {}), fs });
      const barrier = bindBarrier(db, durability, path);
      await checkFormat(db, path, barrier);
      const state = new LedgerState(path);
      const checkpointer = new Checkpointer(wal, barrier, state, checkpointEveryBytes);
      const store = new FactStore(path, { wal, db, ownsDb, checkpointer, state }, options.onIndexBuild);
      await store.#recover(declaredDataFields);
      return store;
    } catch (error) {
      await wal?.close().catch(() => undefined);
      if (ownsDb) await db.close().catch(() => undefined);
      if (isFactError(error)) throw error;
      throw new FactError('FACT_IO', `FactStore.open: could not open the ledger at ${path}`, { cause: error, details: { path } });
    }
  }

  /** Last position in the store (0 when empty). */
  head(): Promise<number> {
    // Rejects (never throws) when closed, like every other promise-returning method.
    return new Promise((resolve) => {
      this.#checkOpen('head');
      resolve(this.#state.head);
    });
  }

  /** Current version of a stream (0 when it does not exist). */
  async streamVersion(streamId: string): Promise<number> {
    this.#checkOpen('streamVersion');
    return this.#reads.streamVersion(checkStreamId(streamId, 'streamVersion'));
  }

  /** Appends one event or several atomically; with a DCB condition, only if no matching event came after `after`. */
  append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options?: AppendOptions): Promise<AppendResult> {
    try {
      this.#checkOpen('append');
      if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalid('append: options must be an object');
      return this.#submit('append', '', 'any', checkCondition(condition, 'append'), events, this.#checkAck(options?.ack, 'append'), checkTimestamp(options?.timestamp, 'append'));
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
      const timestamp = checkTimestamp(options.timestamp, 'appendStream');
      return this.#submit('appendStream', stream, expect, condition, events, this.#checkAck(options.ack, 'appendStream'), timestamp) as Promise<StreamAppendResult>;
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  /**
   * The DCB decision in one call: reads the events matching `query`, calls `decider(events)`,
   * appends what it returns as if with `failIfEventsMatch: query` after what it saw. A
   * synchronous decider runs in the writer's turn on exact state and never conflicts; an
   * asynchronous one is appended with that condition and, on FACT_CONCURRENCY, decided again
   * (at most `maxAttempts` times; the last conflict is surfaced).
   */
  async decide(query: Query, decider: Decider, options: DecideOptions = {}): Promise<DecideResult> {
    this.#checkOpen('decide');
    if (!(query instanceof Query)) throw invalid('decide: query must be a Query (Query.items(...), Query.tags(...), …)');
    if (typeof decider !== 'function') throw invalid('decide: decider must be a function (events) => events to append');
    if (typeof options !== 'object' || options === null) throw invalid('decide: options must be an object');
    const maxAttempts = options.maxAttempts ?? DECIDE_ATTEMPTS_DEFAULT;
    if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) throw invalid(`decide: maxAttempts must be a positive integer, got ${shown(maxAttempts)}`);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('decide: signal must be an AbortSignal');
    signal?.throwIfAborted();
    if (!this.#maintenance.hasDataIndexes(query.dataFields)) await this.#maintenance.ensureDataIndexes(query.dataFields);
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      this.#checkOpen('decide');
      const decision: DecisionRequest = { query, decider, attempt, signal, outcome: null };
      const result = await this.#writer.enqueue(this.#writer.prepareDecision(decision));
      const outcome = decision.outcome!;
      if (outcome.kind === 'appended') return { appended: result, decidedAt: outcome.decidedAt, attempts: attempt };
      if (outcome.kind === 'nothing') return { appended: null, decidedAt: outcome.decidedAt, attempts: attempt };
      const output = await untilAborted(outcome.output, signal);
      if (output === null || output === undefined || (Array.isArray(output) && output.length === 0)) {
        return { appended: null, decidedAt: outcome.decidedAt, attempts: attempt };
      }
      try {
        const appended = await this.#submit('decide', '', 'any', { query, after: outcome.decidedAt }, output);
        return { appended, decidedAt: outcome.decidedAt, attempts: attempt };
      } catch (error) {
        if (!isFactError(error) || error.code !== 'FACT_CONCURRENCY') throw error;
        if (attempt >= maxAttempts) {
          throw new FactError('FACT_CONCURRENCY', `decide: ${error.message} (after ${attempt} attempts)`, { cause: error, details: { ...error.details, attempts: attempt } });
        }
      }
    }
  }

  /** Events of a source in position order (stream position order for a stream). */
  read(source: ReadSource = 'all', options?: ReadOptions): EventReader {
    this.#checkOpen('read');
    const scan = checkReadOptions(options, 'read');
    const index = parseSource(source);
    const maintenance = this.#maintenance;
    const reads = this.#reads;
    // Fields once indexed stay indexed: only a read that needs a build gets the extra layer.
    const needsBuild = index instanceof Query && !maintenance.hasDataIndexes(index.dataFields);
    async function* afterBuild() {
      await maintenance.ensureDataIndexes((index as Query).dataFields);
      yield* reads.scan(index, scan);
    }
    const signal = scan.signal;
    const all = async () => {
      if (needsBuild) await maintenance.ensureDataIndexes(index.dataFields);
      const events = await reads.readAll(index, scan);
      // As the streaming read: an abort during the read fails it rather than returning what was read.
      signal?.throwIfAborted();
      return events;
    };
    // The whole ledger streams in batches (no generator step per event: a full scan's cost).
    if (index === 'all' || (index instanceof Query && index.compiled === 'all')) return new EventStream(() => new FlatEvents(reads.scanAllBatches(scan), signal), all);
    const run = () => (needsBuild ? afterBuild() : reads.scan(index, scan));
    return new EventStream(() => (signal === undefined ? run() : abortable(run(), signal)), all);
  }

  /**
   * The events of a source from `options.from` (default: the beginning), then live as they
   * commit: each matching event once, in position order, with no gap between history and live.
   * A live event comes as soon as its append resolved. Ends with close(), the signal, or
   * db.close().
   */
  subscribe(source: ReadSource = 'all', options: SubscribeOptions = {}): Subscription {
    this.#checkOpen('subscribe');
    if (typeof options !== 'object' || options === null) throw invalid('subscribe: options must be an object');
    return this.#subscribe(source, { from: checkSubscriptionStart(options.from), signal: options.signal }, 'subscribe');
  }

  #subscribe(source: ReadSource, { from: start, signal }: { from: SubscriptionStart; signal: unknown }, method: string): LiveSubscription {
    const index = parseSource(source);
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid(`${method}: signal must be an AbortSignal`);
    const state = this.#state;
    const maintenance = this.#maintenance;
    const subscriptions = this.#subscriptions;
    const subscription = new LiveSubscription(
      {
        reads: this.#reads,
        tail: this.#tail,
        watch: this.#watch,
        head: () => state.head,
        appliedHead: () => state.appliedHead,
        prepare: async () => {
          if (index instanceof Query && !maintenance.hasDataIndexes(index.dataFields)) await maintenance.ensureDataIndexes(index.dataFields);
        },
        onEnd: (ended) => subscriptions.delete(ended),
      },
      index,
      start,
      signal,
    );
    if (!subscription.ended) subscriptions.add(subscription);
    return subscription;
  }

  /**
   * A durable consumer: subscribes to `source` after the position `name` acknowledged last (from
   * the beginning for a new name) and acknowledges durably (options.autoAck, ack()). One live
   * consumer per name in a process: a second is refused with FACT_LOCKED until the first closes.
   */
  consumer(name: string, source: ReadSource = 'all', options: ConsumerOptions = {}): Consumer {
    this.#checkOpen('consumer');
    const consumerName = checkConsumerName(name, 'consumer');
    if (typeof options !== 'object' || options === null) throw invalid('consumer: options must be an object');
    const autoAck = options.autoAck ?? true;
    if (typeof autoAck !== 'boolean') throw invalid('consumer: autoAck must be a boolean');
    const subscriptionOptions = { from: { after: this.#consumerPositions.position(consumerName) ?? 0 }, signal: options.signal };
    const subscription = this.#subscribe(source, subscriptionOptions, 'consumer');
    if (!this.#consumerPositions.claim(consumerName)) {
      void subscription.close();
      throw new FactError('FACT_LOCKED', `consumer: ${consumerName} is already open in this process; close it first`, { details: { consumer: consumerName } });
    }
    const positions = this.#consumerPositions;
    const consumers = this.#consumers;
    const state = this.#state;
    const consumer = new DurableConsumer({
      name: consumerName,
      subscription,
      positions,
      autoAck,
      head: () => state.head,
      logAck: (position) => this.#logAcks([{ name: consumerName, position }]),
      onEnd: (ended) => {
        consumers.delete(ended);
        positions.release(consumerName);
      },
    });
    consumers.add(consumer);
    return consumer;
  }

  /** Durable consumers with their acknowledged position and lag (head − position), by name. */
  consumers(): Promise<ConsumerInfo[]> {
    return new Promise((resolve) => {
      this.#checkOpen('consumers');
      const head = this.#state.head;
      const positions = this.#consumerPositions;
      resolve(positions.list().map(([name, position]) => ({ name, position, lag: head - position, live: positions.isLive(name) })));
    });
  }

  /** Sets a consumer's acknowledged position (to rebuild its projection: 0); refused while it is open. */
  async resetConsumer(name: string, position: number): Promise<void> {
    this.#checkOpen('resetConsumer');
    const consumerName = checkConsumerName(name, 'resetConsumer');
    const checked = checkAckPosition(position, this.#state.head, 'resetConsumer: position');
    this.#checkNotLive(consumerName, 'resetConsumer');
    await this.#logAcks([{ name: consumerName, position: checked }]);
  }

  /** Forgets a consumer; refused while it is open. FACT_NOT_FOUND when it has no position. */
  async deleteConsumer(name: string): Promise<void> {
    this.#checkOpen('deleteConsumer');
    const consumerName = checkConsumerName(name, 'deleteConsumer');
    this.#checkNotLive(consumerName, 'deleteConsumer');
    if (this.#consumerPositions.position(consumerName) === undefined) {
      throw new FactError('FACT_NOT_FOUND', `deleteConsumer: no consumer ${consumerName}`, { details: { consumer: consumerName } });
    }
    await this.#logAcks([{ name: consumerName, position: null }]);
  }

  /** Stream ids, optionally of one category, in id order. */
  streams(options: { category?: string } = {}): { [Symbol.asyncIterator](): AsyncIterator<string>; toArray(): Promise<string[]> } {
    this.#checkOpen('streams');
    if (typeof options !== 'object' || options === null) throw invalid('streams: options must be an object');
    const category = options.category === undefined ? undefined : checkName(options.category, 'streams: category', STREAM_ID_SIZE_BYTES_MAX);
    const reads = this.#reads;
    return {
      [Symbol.asyncIterator]: () => reads.streams(category),
      toArray: async () => {
        const ids: string[] = [];
        for await (const id of reads.streams(category)) ids.push(id);
        return ids;
      },
    };
  }

  /** Checks ledger, indexes and WAL against each other. */
  async verify(): Promise<VerifyReport> {
    this.#checkOpen('verify');
    return this.#maintenance.turn(() => this.#maintenance.verify());
  }

  /**
   * A consistent copy of the database at `dest` (a new path, or an empty directory), taken while
   * appends go on: exactly the events through the head when it starts, the indexes, the
   * consumers' positions. The copy is a database of its own: open it, or restore() it.
   */
  async backup(dest: string, options: { onProgress?: (progress: BackupProgress) => void } = {}): Promise<BackupResult> {
    this.#checkOpen('backup');
    if (typeof dest !== 'string' || dest.length === 0) throw invalid('backup: dest must be a non-empty path');
    if (typeof options !== 'object' || options === null) throw invalid('backup: options must be an object');
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalid('backup: onProgress must be a function');
    if (resolvePath(dest) === resolvePath(this.path) || resolvePath(dest).startsWith(`${resolvePath(this.path)}${pathSeparator}`)) {
      throw invalid(`backup: dest ${dest} is inside the database ${this.path}`);
    }
    await checkBackupDestination(dest, 'backup');
    return this.#maintenance.turn(() => this.#maintenance.backup(dest, options.onProgress));
  }

  /**
   * Restores a backup (see backup()) to `path`: refuses an existing database there unless
   * `force`, and one that is open (FACT_LOCKED). The backup itself is left as it is.
   */
  static async restore(backupPath: string, path: string, options: { force?: boolean } = {}): Promise<BackupResult> {
    if (typeof backupPath !== 'string' || backupPath.length === 0) throw invalid('restore: backupPath must be a non-empty path');
    if (typeof path !== 'string' || path.length === 0) throw invalid('restore: path must be a non-empty path');
    if (typeof options !== 'object' || options === null) throw invalid('restore: options must be an object');
    const force = options.force ?? false;
    if (typeof force !== 'boolean') throw invalid('restore: force must be a boolean');
    if (!force) await checkBackupDestination(path, 'restore').catch((error: unknown) => {
      throw isFactError(error) ? new FactError('FACT_INVALID_ARGUMENT', `restore: ${path} exists; pass force to replace it`, { details: { path } }) : error;
    });
    const staged = `${path}.restoring-${process.pid}-${Date.now()}`;
    let existing: FactStore | null = null;
    if (force && (await new NodeFileSystem().exists(joinPath(path, 'wal')))) {
      // Holding the database's locks proves nobody has it open while it is replaced.
      existing = await FactStore.open(path, { createIfMissing: false });
    }
    try {
      const source = await FactStore.open(backupPath, { createIfMissing: false });
      let result: BackupResult;
      try {
        result = await source.backup(staged);
      } finally {
        await source.close();
      }
      await existing?.close();
      existing = null;
      await swapInto(staged, path);
      return { ...result, path };
    } finally {
      await existing?.close();
    }
  }

  /** Rebuilds every index from the ledger; the result is byte-identical to incremental indexes. */
  async rebuildIndexes(options: { onProgress?: (progress: RebuildProgress) => void } = {}): Promise<{ events: number }> {
    this.#checkOpen('rebuildIndexes');
    if (typeof options !== 'object' || options === null) throw invalid('rebuildIndexes: options must be an object');
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalid('rebuildIndexes: onProgress must be a function');
    return this.#maintenance.turn(async () => {
      const { events } = await this.#maintenance.rebuild(options.onProgress);
      return { events };
    });
  }

  /** Waits for appends in flight, checkpoints, and closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #submit(
    method: AppendRequest['method'],
    stream: string,
    expect: StreamExpectation,
    condition: CheckedCondition | null,
    events: unknown,
    acks: ConsumerAck[] | null = null,
    timestamp?: number,
  ): Promise<AppendResult | StreamAppendResult> {
    const prefetch = stream === '' ? null : this.#versions.prefetch(stream);
    const prepared = this.#writer.prepare(method, stream, expect, condition, events, prefetch, acks, timestamp);
    const enqueue = () => {
      this.#checkOpen(method);
      return this.#writer.enqueue(prepared);
    };
    // Queued at once, so appends are planned in call order; one whose condition needs a data
    // index not built yet is queued once it is (the writer never waits for a build).
    if (condition !== null && !this.#maintenance.hasDataIndexes(condition.query.dataFields)) {
      return this.#maintenance.ensureDataIndexes(condition.query.dataFields).then(enqueue);
    }
    return enqueue();
  }

  /** Logs consumer acks with the next group; resolves once durable. */
  async #logAcks(acks: ConsumerAck[]): Promise<void> {
    await this.#writer.enqueue(this.#writer.prepareAcks(acks));
  }

  #checkAck(value: unknown, method: string): ConsumerAck[] | null {
    if (value === undefined) return null;
    if (typeof value !== 'object' || value === null) throw invalid(`${method}: ack must be an object { consumer, position }`);
    const { consumer, position } = value as AckOption;
    const name = checkConsumerName(consumer, `${method}: ack.consumer`);
    return [{ name, position: checkAckPosition(position, this.#state.head, `${method}: ack.position`) }];
  }

  #checkNotLive(name: string, method: string): void {
    if (this.#consumerPositions.isLive(name)) {
      throw new FactError('FACT_LOCKED', `${method}: consumer ${name} is open in this process; close it first`, { details: { consumer: name } });
    }
  }

  /** Replay, id seed, checkpoint, then the index repairs a cut-short open or maintenance left (recovery rows 6–10). */
  async #recover(declaredDataFields: readonly string[]): Promise<void> {
    const db = this.#db;
    const state = this.#state;
    state.dataFields = await readRecordedDataFields(db);
    state.applyDataFields = state.dataFields;
    const replayed = await replayWal({ path: this.path, db, wal: this.#wal, newBatch: this.#newBatch, arena: this.#arena, dataFields: state.dataFields });
    state.head = replayed.head;
    state.appliedHead = replayed.head;
    state.nextPosition = replayed.head + 1;
    state.appliedLsn = replayed.appliedLsn;
    await this.#consumerPositions.load(db, replayed.head, this.path);
    // After the replay, which writes format-4 chunks only: what is left of an older layout is LevelDB's.
    await upgradeLedger(db, this.#newBatch, () => this.#checkpointer.makeDurable());
    await settleIdSeed({ path: this.path, db, wal: this.#wal }, this.#ids, replayed, () => this.#checkpointer.makeDurable());
    await this.#checkpointer.checkpoint();
    if ((await db.get<Uint8Array, Uint8Array>(metaKey('rebuilding'), VIEW)) !== undefined) {
      // A format upgrade (or an older version's rebuild) was cut short: its entries cannot be trusted.
      await this.#maintenance.underRebuildMarker(() => this.#maintenance.rebuild());
    } else {
      // A rebuildIndexes() cut short leaves its shadow (the rebuild above clears it itself).
      await clearRebuildShadow(db);
    }
    await clearUnrecordedDataIndexes(db, state.dataFields);
    await this.#maintenance.ensureDataIndexes(declaredDataFields);
  }

  /** Rejects when a barrier failed during the handle's life or the final checkpoint failed; closes either way. */
  async #close(): Promise<void> {
    let checkpointFailure: FactError | null = null;
    try {
      // Subscriptions end first: their reads must not outlive LevelDB.
      this.#watch.end();
      // Consumers first: their auto-acks go through the writer, which is still running.
      await Promise.all([...this.#consumers].map((consumer) => consumer.close().catch(() => undefined)));
      await Promise.all([...this.#subscriptions].map((subscription) => subscription.close()));
      await this.#maintenance.settled();
      await this.#writer.unpaused();
      await this.#writer.idle();
      await this.#checkpointer.running;
      if (!this.#state.failure) {
        await this.#checkpointer.checkpoint().catch((error: unknown) => {
          checkpointFailure = isFactError(error) ? error : new FactError('FACT_IO', `the final checkpoint of ${this.path} failed`, { cause: error });
        });
      }
    } finally {
      this.#closed = true;
      await this.#wal.close().catch(() => undefined);
      if (this.#ownsDb) await this.#db.close().catch(() => undefined);
    }
    const failure = this.#checkpointer.barrierFailure ?? checkpointFailure;
    if (failure) throw failure;
  }

  #checkOpen(method: string): void {
    if (this.#closed || this.#closing) {
      throw new FactError('FACT_CLOSED', `${method}: the database at ${this.path} is closed`, { details: { path: this.path } });
    }
  }
}

/**
 * A bare WAL takes any maxRecordSizeBytes from 0; a database must at least fit its id-seed record,
 * else a new one would fail at its first write, after its directories were made.
 */
function checkWalRecordSize(value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < ID_SEED_SIZE_BYTES) {
    throw invalid(`FactStore.open: wal.maxRecordSizeBytes must be an integer of at least ${ID_SEED_SIZE_BYTES} (the id-seed record), got ${shown(value)}`);
  }
}

function checkDataFields(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid('FactStore.open: indexes.data must be an array of field names');
  return uniqueNames(value, () => 'FactStore.open: indexes.data field', DATA_FIELD_SIZE_BYTES_MAX).sort();
}

/** The internal timestamp option: undefined (the clock at enqueue) or ms since the epoch, as a chunk header holds it. */
function checkTimestamp(value: unknown, method: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalid(`${method}: timestamp must be an integer ≥ 0 (ms since the epoch), got ${shown(value)}`);
  return value;
}

function checkConsumerName(value: unknown, method: string): string {
  return checkName(value, `${method}: name`, CONSUMER_NAME_SIZE_BYTES_MAX);
}

function checkSubscriptionStart(from: unknown): SubscriptionStart {
  if (from === undefined || from === 'start') return 'start';
  if (from === 'end') return 'end';
  if (typeof from === 'number' && Number.isSafeInteger(from) && from >= 0) return from;
  throw invalid(`subscribe: from must be 'start', 'end' or an integer ≥ 0, got ${shown(from)}`);
}

/** Opens the `level` option, or level's Level (classic-level in Node) at `<path>/ledger`, taking LevelDB's lock (a kernel lock, released when its holder dies). */
async function openLevel(path: string, level: LevelDatabase | undefined, fs: FileSystem, walDir: string): Promise<LevelDatabase> {
  const db = level ?? new Level<Uint8Array, Uint8Array>(joinPath(path, 'ledger'), LEVEL_OPEN_OPTIONS);
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

/** The pid in a WAL lock file, or null when there is none to read. */
async function lockFilePid(fs: FileSystem, lockPath: string): Promise<number | null> {
  const bytes = await fs.readFile(lockPath).catch(() => null);
  const pid = bytes === null ? Number.NaN : Number.parseInt(Buffer.from(bytes).toString('utf8'), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/** `value` awaited, or the signal's reason once it aborts (the work behind `value` goes on). */
function untilAborted<T>(value: T | PromiseLike<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return Promise.resolve(value);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(asError(signal.reason));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(value).then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(asError(error));
      },
    );
  });
}
