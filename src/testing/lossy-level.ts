/**
 * LossyLevel: an in-memory abstract-level database (a memory-level subclass) that loses writes
 * at a simulated crash the way LevelDB 1.20 can (docs/storage-format.md, "What factstore relies
 * on from LevelDB"), in the worst way LevelDB allows. It is the LevelDB double of
 * `factstore/testing`; memory-level is an optional peer dependency of factstore, needed only by
 * this file: install it to use `factstore/testing`. test/lossy-level-differential.test.ts runs
 * the same random operations on it and on a real classic-level and checks they agree.
 *
 * - every write (put, del, array or chained batch) since the last durability barrier is kept in
 *   order as one unsynced batch; a batch is atomic (all of its operations or none);
 * - `clear()` is NOT atomic, like classic-level's: it deletes the keys of its range (as of its
 *   start) in several batches, each an unsynced batch of its own, so a crash or a failing write
 *   can leave part of it done. classic-level starts a new batch once a batch's keys exceed
 *   16 KiB; by default LossyLevel puts every key in its own batch (the worst case, which covers
 *   every coarser split); `new LossyLevel({ clearBatchSizeBytes })` chooses classic-level's rule
 *   with another threshold (CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES to match it);
 * - a `sync: true` write fsyncs LevelDB's current log file: it and every earlier batch still in
 *   that log survive any crash. Earlier batches in a log that LevelDB already closed without
 *   syncing (a full memtable moved aside, not yet flushed) do not: the log-switch case, where
 *   an older unsynced batch is lost while a newer synced one survives;
 * - `compactRange(start, end, options)` is the flush: the batches written before the call
 *   become durable when the returned promise resolves (FactStore's barrier calls it between two
 *   synced writes, src/storage/barrier.ts);
 * - `crash(rng)` returns a NEW database whose content is the durable state plus what survived of
 *   the unsynced batches, applied in order. Where LevelDB switched logs is not observable before
 *   a crash, so the crash draws it: a point where the current log began (batches before it sit in
 *   the one older log LevelDB may still be flushing; LevelDB holds at most one such memtable, so
 *   batches before the log before that were flushed: durable). In each log, the batches up to
 *   its last synced one survive; of the others a random subset survives, not only a prefix
 *   (holes). `crash(rng, 'process')` loses nothing (the page cache survives a process crash) and
 *   keeps the batches unsynced.
 *
 * Faults, like LevelDB's: `failFlush()` makes the next compactRange resolve without making
 * anything durable and leaves a sticky background error, so every later write fails (LevelDB's
 * CompactRange drops its flush's status; its writes then yield the background error);
 * `failWrite()` fails a chosen write with EIO or ENOSPC; the failed write is not in the database,
 * but its record may have reached LevelDB's log ("may or may not show up when the DB is
 * re-opened", db_impl.cc), so a later crash, even a process crash, may bring it back (never once
 * a flush has retired that log). Errors look like classic-level's
 * (`code` 'LEVEL_IO_ERROR', message "IO error: …"). A crash clears them, like a reopen.
 *
 * The old object stays usable, so a "zombie" store of the crashed process can keep writing to
 * it without touching the new one. Randomness comes only from the `rng` given (seed it from a
 * generated value, e.g. `mulberry32(seed)` of `factstore/testing`), so a failure replays exactly.
 */
import { MemoryLevel } from 'memory-level';

export type LossyOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

/** Which unsynced batches a power-loss crash keeps. */
export type LossyStrategy = 'subset' | 'prefix' | 'all' | 'none';

export interface LossyCrashReport {
  mode: 'power-loss' | 'process';
  /** How the batches that could be lost were chosen. */
  strategy: LossyStrategy;
  unsynced: number;
  /** Indexes (in write order) of the unsynced batches that survived. */
  kept: number[];
  /** Index of the first batch of LevelDB's current log (the batches before it were in older logs); 0 when all were in one. */
  logSwitch: number;
  /** Batches that survived because a synced write made their log durable (or a background flush did). */
  forced: number[];
}

export interface LossyLevelOptions {
  /**
   * clear() starts a new batch once the keys of a batch exceed this many bytes, like
   * classic-level (which uses CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES). Default 0: every deleted key
   * is its own batch, the worst case.
   */
  clearBatchSizeBytes?: number;
}

/** classic-level 3's clear(): a batch ends once its keys exceed 16 KiB (binding.cc, ClearWorker). */
export const CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES = 16 * 1024;

/** One write as LevelDB's log holds it. */
interface UnsyncedBatch {
  ops: LossyOp[];
  /** Written with `sync: true`: LevelDB fsynced its log after it. */
  sync: boolean;
  /**
   * The write failed (failWrite): not in the database now, but LevelDB may have put its record
   * in the log, so it may show up after a crash and reopen ("may or may not", db_impl.cc).
   */
  failed?: true;
}

/** The memory-level (abstract-level) private methods this class wraps; they are not in its types. */
interface PrivateLevel {
  _put(key: Uint8Array, value: Uint8Array, options: object): Promise<void>;
  _del(key: Uint8Array, options: object): Promise<void>;
  _batch(operations: readonly { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[], options: object): Promise<void>;
}

const base = MemoryLevel.prototype as unknown as PrivateLevel;
const RANGE_OPTIONS = ['gt', 'gte', 'lt', 'lte'] as const;

type Entries = Map<string, { key: Uint8Array; value: Uint8Array }>;

/** errno codes a LossyLevel fault can carry, with their strerror text. */
const FAULT_MESSAGES = { EIO: 'Input/output error', ENOSPC: 'No space left on device' } as const;
export type LossyFaultCode = keyof typeof FAULT_MESSAGES;

export interface LossyWriteFault {
  code: LossyFaultCode;
  /** Writes that still succeed before the failing one (default 0: the next write fails). */
  after?: number;
  /** Only writes with `sync: true` count and fail (a failed fsync of LevelDB's log). */
  syncOnly?: boolean;
  /** The failure stays: every later write fails too, like LevelDB after a failed log sync. */
  sticky?: boolean;
}

/** An error shaped like classic-level's for a LevelDB IOError status. */
function levelIoError(code: LossyFaultCode, file: string): Error {
  return Object.assign(new Error(`IO error: ${file}: ${FAULT_MESSAGES[code]}`), { code: 'LEVEL_IO_ERROR', errno: code });
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function applyBatch(entries: Entries, batch: UnsyncedBatch): void {
  for (const op of batch.ops) {
    if (op.type === 'put') entries.set(hex(op.key), { key: op.key, value: op.value });
    else entries.delete(hex(op.key));
  }
}

/** The writes a LossyLevel observer sees (compactRange is the flush). */
export type LossyWriteKind = 'put' | 'del' | 'batch' | 'compactRange';

export class LossyLevel extends MemoryLevel<Uint8Array, Uint8Array> {
  /** What survives any crash. */
  #durable: Entries = new Map();
  /** Batches written since the last barrier, in write order. */
  #unsynced: UnsyncedBatch[] = [];
  readonly #clearBatchSizeBytes: number;
  #loaded = false;
  #barriers = 0;
  #syncWrites = 0;
  /** LevelDB's background error: once set, every write fails with it. */
  #backgroundError: Error | null = null;
  #flushFault: LossyFaultCode | null = null;
  #writeFault: (LossyWriteFault & { after: number }) | null = null;
  #crashReport: LossyCrashReport | undefined;
  #observer: ((kind: LossyWriteKind) => void) | null = null;

  /** An empty database. */
  constructor(options: LossyLevelOptions = {}) {
    super({ storeEncoding: 'view', keyEncoding: 'view', valueEncoding: 'view' });
    const size = options.clearBatchSizeBytes ?? 0;
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`LossyLevel: clearBatchSizeBytes must be a non-negative integer, got ${String(size)}`);
    this.#clearBatchSizeBytes = size;
  }

  /** The database a crash left: `durable`, then `unsynced` (still losable) on open. */
  static #afterCrash(from: LossyLevel, durable: Entries, unsynced: readonly UnsyncedBatch[], crashReport: LossyCrashReport): LossyLevel {
    const db = new LossyLevel({ clearBatchSizeBytes: from.#clearBatchSizeBytes });
    db.#durable = new Map(durable);
    db.#unsynced = unsynced.map((batch) => ({ ops: [...batch.ops], sync: batch.sync }));
    db.#crashReport = crashReport;
    return db;
  }

  /** What the crash that made this database did (undefined for a fresh one). */
  get crashReport(): LossyCrashReport | undefined {
    return this.#crashReport;
  }

  /** Unsynced batches (for debugging output). */
  get unsyncedBatches(): number {
    return this.#unsynced.length;
  }

  /** Completed flushes (compactRange calls that made the writes before them durable). */
  get barriers(): number {
    return this.#barriers;
  }

  /** Writes with `sync: true` that succeeded. */
  get syncWrites(): number {
    return this.#syncWrites;
  }

  /**
   * The next compactRange resolves but its flush fails: nothing becomes durable, and every
   * later write fails with the error (LevelDB's sticky background error).
   */
  failFlush(code: LossyFaultCode = 'ENOSPC'): void {
    this.#flushFault = code;
  }

  /**
   * Calls `observer` before each write and each compactRange; `null` removes it. If it throws,
   * the call fails with that error and writes nothing (SimMachine crashes the machine there).
   */
  observeWrites(observer: ((kind: LossyWriteKind) => void) | null): void {
    this.#observer = observer;
  }

  /** A write (counted from now, see LossyWriteFault) fails and writes nothing. */
  failWrite(fault: LossyWriteFault): void {
    this.#writeFault = { ...fault, after: fault.after ?? 0 };
  }

  /** Throws the error a write gets now, if any. */
  #checkWrite(options: object, ops: LossyOp[]): void {
    if (this.#backgroundError) throw this.#backgroundError;
    const sync = (options as { sync?: unknown }).sync === true;
    const fault = this.#writeFault;
    if (fault && (sync || fault.syncOnly !== true)) {
      if (fault.after > 0) {
        fault.after--;
      } else {
        const error = levelIoError(fault.code, sync ? '000003.log (sync)' : '000003.log');
        if (fault.sticky === true) this.#backgroundError = error;
        this.#writeFault = null;
        // The log record may have been written (fully or not) before the failure: a ghost.
        this.#unsynced.push({ ops, sync, failed: true });
        throw error;
      }
    }
    if (sync) this.#syncWrites++;
  }

  #record(ops: LossyOp[], options: object): void {
    this.#unsynced.push({ ops, sync: (options as { sync?: unknown }).sync === true });
  }

  // ---- abstract-level private API: record every write, then let memory-level do it ------------
  // (@internal: abstract-level calls these; they are not part of a database's public type)

  /** @internal */
  async _open(): Promise<void> {
    if (this.#loaded) return;
    this.#loaded = true;
    // Durable content, then what a process crash kept unsynced (still unsynced, still losable).
    const puts = [...this.#durable.values()].map(({ key, value }) => ({ type: 'put' as const, key, value }));
    await base._batch.call(this, puts, {});
    for (const batch of this.#unsynced) if (batch.failed !== true) await base._batch.call(this, batch.ops, {});
  }

  /** @internal */
  async _put(key: Uint8Array, value: Uint8Array, options: object): Promise<void> {
    this.#observer?.('put');
    const ops: LossyOp[] = [{ type: 'put', key: key.slice(), value: value.slice() }];
    this.#checkWrite(options, ops);
    this.#record(ops, options);
    await base._put.call(this, key, value, options);
  }

  /** @internal */
  async _del(key: Uint8Array, options: object): Promise<void> {
    this.#observer?.('del');
    const ops: LossyOp[] = [{ type: 'del', key: key.slice() }];
    this.#checkWrite(options, ops);
    this.#record(ops, options);
    await base._del.call(this, key, options);
  }

  /** @internal */
  async _batch(operations: readonly { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[], options: object): Promise<void> {
    this.#observer?.('batch');
    const batch: LossyOp[] = operations.map((op) =>
      op.type === 'put' ? { type: 'put', key: op.key.slice(), value: (op.value ?? new Uint8Array(0)).slice() } : { type: 'del', key: op.key.slice() },
    );
    this.#checkWrite(options, batch);
    this.#record(batch, options);
    await base._batch.call(this, operations, options);
  }

  /**
   * @internal clear(range) like classic-level's: the keys in the range when it starts, deleted
   * in consecutive batches (each its own write, unsynced, and able to fail), so it is not atomic.
   */
  async _clear(options: Record<string, unknown>): Promise<void> {
    const range: Record<string, unknown> = { keyEncoding: 'view' };
    for (const name of RANGE_OPTIONS) if (options[name] !== undefined) range[name] = options[name];
    if (typeof options.limit === 'number' && options.limit >= 0) range.limit = options.limit;
    if (options.reverse === true) range.reverse = true;
    const keys = await this.keys<Uint8Array>(range).all();
    let next = 0;
    while (next < keys.length) {
      // classic-level's loop: add keys while the batch's keys total at most the threshold.
      const batch: { type: 'del'; key: Uint8Array }[] = [];
      let sizeBytes = 0;
      while (next < keys.length && sizeBytes <= this.#clearBatchSizeBytes) {
        const key = keys[next++]!;
        batch.push({ type: 'del', key });
        sizeBytes += key.length;
      }
      await this._batch(batch, {});
    }
  }

  /**
   * The flush: everything written before the call is durable once it resolves. Like LevelDB's
   * CompactRange it never rejects: a failed flush (failFlush, or a background error already
   * held) makes nothing durable and leaves the error for the next write.
   */
  async compactRange(_start?: unknown, _end?: unknown, _options?: unknown): Promise<void> {
    this.#observer?.('compactRange');
    const covered = this.#unsynced.length;
    // Like classic-level, the work completes later; a crash before then makes nothing durable.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.#flushFault) {
      this.#backgroundError ??= levelIoError(this.#flushFault, '000005.ldb');
      this.#flushFault = null;
    }
    if (this.#backgroundError) return;
    // The flush writes the memtable, which never held a failed write: LevelDB's next log replay
    // (at open) no longer reads the old log, so a ghost before the flush is gone for good.
    for (const batch of this.#unsynced.slice(0, covered)) if (batch.failed !== true) applyBatch(this.#durable, batch);
    this.#unsynced = this.#unsynced.slice(covered);
    this.#barriers += 1;
  }

  /**
   * The database after a crash at this moment: a new object (open it, or let FactStore open
   * it). 'power-loss' keeps the durable state plus what survives of the unsynced batches (see
   * the file's comment); 'process' keeps everything (still unsynced).
   */
  crash(rng: () => number, mode: 'power-loss' | 'process' = 'power-loss'): LossyLevel {
    const unsynced = this.#unsynced;
    const all = unsynced.map((_, index) => index);
    if (mode === 'process') {
      // The page cache keeps the log; a failed write's record is there or not.
      const kept = all.filter((index) => unsynced[index]!.failed !== true || rng() < 0.5);
      const replayed = kept.map((index) => ({ ops: unsynced[index]!.ops, sync: unsynced[index]!.sync }));
      return LossyLevel.#afterCrash(this, this.#durable, replayed, { mode, strategy: 'all', unsynced: unsynced.length, kept, logSwitch: 0, forced: [] });
    }
    // Where LevelDB's logs began: [0, flushed) was in logs already flushed (durable), [flushed,
    // logSwitch) in the older log (closed unsynced), [logSwitch, n) in the current one.
    const n = unsynced.length;
    const logSwitch = n === 0 || rng() < 0.5 ? 0 : 1 + Math.floor(rng() * n);
    const flushed = logSwitch === 0 || rng() < 0.7 ? 0 : Math.floor(rng() * (logSwitch + 1));
    const forced = new Set<number>();
    for (let index = 0; index < flushed; index++) if (unsynced[index]!.failed !== true) forced.add(index);
    for (const [start, end] of [
      [flushed, logSwitch],
      [logSwitch, n],
    ] as const) {
      // A synced write fsynced its log: it and everything before it in that log survive.
      let lastSync = -1;
      for (let index = start; index < end; index++) if (unsynced[index]!.sync && unsynced[index]!.failed !== true) lastSync = index;
      // A failed write's record may be torn or missing even in a synced log: never forced.
      for (let index = start; index <= lastSync; index++) if (unsynced[index]!.failed !== true) forced.add(index);
    }
    // A failed write in a flushed log is gone: the flush wrote the memtable (without it) and LevelDB then deleted that log.
    const losable = all.filter((index) => !forced.has(index) && !(index < flushed && unsynced[index]!.failed === true));
    const draw = rng();
    // Mostly arbitrary subsets (holes), sometimes the plain cases.
    const strategy: LossyStrategy = draw < 0.55 ? 'subset' : draw < 0.8 ? 'prefix' : draw < 0.9 ? 'all' : 'none';
    let chosen: number[];
    if (strategy === 'subset') {
      const keepProbability = rng();
      chosen = losable.filter(() => rng() < keepProbability);
    } else if (strategy === 'prefix') {
      chosen = losable.slice(0, Math.floor(rng() * (losable.length + 1)));
    } else {
      chosen = strategy === 'all' ? losable : [];
    }
    const keptSet = new Set([...forced, ...chosen]);
    const kept = all.filter((index) => keptSet.has(index));
    const durable: Entries = new Map(this.#durable);
    for (const index of kept) applyBatch(durable, unsynced[index]!);
    return LossyLevel.#afterCrash(this, durable, [], { mode, strategy, unsynced: n, kept, logSwitch, forced: [...forced].sort((a, b) => a - b) });
  }
}
