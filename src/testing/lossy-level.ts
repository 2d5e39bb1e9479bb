/**
 * LossyLevel: an in-memory abstract-level database (a memory-level subclass) that loses writes
 * at a simulated crash the way LevelDB 1.20 can (docs/storage-format.md, "What factstore relies
 * on from LevelDB"). It is the LevelDB double of `factstore/testing`; memory-level is an
 * optional peer dependency of factstore, needed only by this file: install it to use
 * `factstore/testing`.
 *
 * - every write (put, del, array or chained batch, clear) since the last durability barrier is
 *   kept in order as one unsynced batch; a batch is atomic (all of its operations or none);
 *   a `sync: true` write is treated like any other (conservative: LevelDB makes it durable);
 * - `compactRange(start, end, options)` is the flush: the batches written before the call
 *   become durable when the returned promise resolves (FactStore's barrier calls it between two
 *   synced writes, src/storage/barrier.ts);
 * - `crash(rng)` returns a NEW database whose content is the durable state plus a random subset
 *   of the unsynced batches, applied in order. Any subset, not only a prefix: LevelDB can lose an
 *   earlier unsynced batch while a later one survives. `crash(rng, 'process')` loses nothing
 *   (the page cache survives a process crash) and keeps the batches unsynced.
 *
 * Faults, like LevelDB's: `failFlush()` makes the next compactRange resolve without making
 * anything durable and leaves a sticky background error, so every later write fails (LevelDB's
 * CompactRange drops its flush's status; its writes then yield the background error);
 * `failWrite()` fails a chosen write with EIO or ENOSPC. Errors look like classic-level's
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
  strategy: LossyStrategy;
  unsynced: number;
  /** Indexes (in write order) of the unsynced batches that survived. */
  kept: number[];
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

function applyBatch(entries: Entries, batch: readonly LossyOp[]): void {
  for (const op of batch) {
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
  #unsynced: LossyOp[][] = [];
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
  constructor() {
    super({ storeEncoding: 'view', keyEncoding: 'view', valueEncoding: 'view' });
  }

  /** The database a crash left: `durable`, then `unsynced` (still losable) on open. */
  static #afterCrash(durable: Entries, unsynced: readonly LossyOp[][], crashReport: LossyCrashReport): LossyLevel {
    const db = new LossyLevel();
    db.#durable = new Map(durable);
    db.#unsynced = unsynced.map((batch) => [...batch]);
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
  #checkWrite(options: object): void {
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
        throw error;
      }
    }
    if (sync) this.#syncWrites++;
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
    for (const batch of this.#unsynced) await base._batch.call(this, batch, {});
  }

  /** @internal */
  async _put(key: Uint8Array, value: Uint8Array, options: object): Promise<void> {
    this.#observer?.('put');
    this.#checkWrite(options);
    this.#unsynced.push([{ type: 'put', key: key.slice(), value: value.slice() }]);
    await base._put.call(this, key, value, options);
  }

  /** @internal */
  async _del(key: Uint8Array, options: object): Promise<void> {
    this.#observer?.('del');
    this.#checkWrite(options);
    this.#unsynced.push([{ type: 'del', key: key.slice() }]);
    await base._del.call(this, key, options);
  }

  /** @internal */
  async _batch(operations: readonly { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[], options: object): Promise<void> {
    this.#observer?.('batch');
    this.#checkWrite(options);
    const batch: LossyOp[] = operations.map((op) =>
      op.type === 'put' ? { type: 'put', key: op.key.slice(), value: (op.value ?? new Uint8Array(0)).slice() } : { type: 'del', key: op.key.slice() },
    );
    this.#unsynced.push(batch);
    await base._batch.call(this, operations, options);
  }

  /** @internal clear(range) as one atomic batch of deletes of the keys in the range at that moment. */
  async _clear(options: Record<string, unknown>): Promise<void> {
    const range: Record<string, unknown> = { keyEncoding: 'view' };
    for (const name of RANGE_OPTIONS) if (options[name] !== undefined) range[name] = options[name];
    if (typeof options.limit === 'number' && options.limit >= 0) range.limit = options.limit;
    if (options.reverse === true) range.reverse = true;
    const keys = await this.keys<Uint8Array>(range).all();
    await this._batch(
      keys.map((key) => ({ type: 'del' as const, key })),
      {},
    );
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
    for (const batch of this.#unsynced.slice(0, covered)) applyBatch(this.#durable, batch);
    this.#unsynced = this.#unsynced.slice(covered);
    this.#barriers += 1;
  }

  /**
   * The database after a crash at this moment: a new object (open it, or let FactStore open
   * it). 'power-loss' keeps the durable state plus a random subset of the unsynced batches;
   * 'process' keeps everything (still unsynced).
   */
  crash(rng: () => number, mode: 'power-loss' | 'process' = 'power-loss'): LossyLevel {
    const unsynced = this.#unsynced;
    if (mode === 'process') {
      const kept = unsynced.map((_, index) => index);
      return LossyLevel.#afterCrash(this.#durable, unsynced, { mode, strategy: 'all', unsynced: unsynced.length, kept });
    }
    const draw = rng();
    // Mostly arbitrary subsets (holes), sometimes the plain cases.
    const strategy: LossyStrategy = draw < 0.55 ? 'subset' : draw < 0.8 ? 'prefix' : draw < 0.9 ? 'all' : 'none';
    let kept: number[];
    if (strategy === 'subset') {
      const keepProbability = rng();
      kept = unsynced.map((_, index) => index).filter(() => rng() < keepProbability);
    } else if (strategy === 'prefix') {
      const length = Math.floor(rng() * (unsynced.length + 1));
      kept = unsynced.slice(0, length).map((_, index) => index);
    } else {
      kept = strategy === 'all' ? unsynced.map((_, index) => index) : [];
    }
    const durable: Entries = new Map(this.#durable);
    for (const index of kept) applyBatch(durable, unsynced[index]!);
    return LossyLevel.#afterCrash(durable, [], { mode, strategy, unsynced: unsynced.length, kept });
  }
}
