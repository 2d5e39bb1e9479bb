/**
 * The write-ahead log: segmented, checksummed, group-committed (docs/wal-format.md). This file is
 * the public facade: it validates every call and delegates to recovery.ts (open),
 * group-commit.ts (appends and syncs), checkpoints.ts (checkpoints, retention) and replay.ts.
 */
import { FactError, ioError, isFactError, shown } from '../errors.js';
import type { FileLock, FileSystem } from './file-system.js';
import { joinPath } from './file-system.js';
import { LOCK_FILE, RECORD_TYPE_MAX } from './format.js';
import { NodeFileSystem } from './node-file-system.js';
import { deleteCheckpointedSegments, writeCheckpointFile } from './checkpoints.js';
import { GroupCommitWriter } from './group-commit.js';
import { type ResolvedOptions, type SyncMode, validateOptions, type WalOptions } from './options.js';
import { recoverLog, type WalRecoveryReport } from './recovery.js';
import { replayLog, type WalRecord } from './replay.js';

export {
  DEFAULT_SEGMENT_SIZE_BYTES,
  MIN_SEGMENT_SIZE_BYTES,
  DEFAULT_SYNC_INTERVAL_MS,
  MIN_SYNC_INTERVAL_MS,
  DEFAULT_RETAIN_SEGMENTS,
  DEFAULT_MAX_RECORD_SIZE_BYTES,
} from './options.js';
export type { SyncMode, WalOptions, WalRecord, WalRecoveryReport };

export interface WalAppendOptions {
  /** A byte (0–255) stored with the record; the WAL gives it no meaning. Default 0. */
  type?: number;
}

export class Wal implements AsyncDisposable {
  readonly dir: string;
  readonly #fs: FileSystem;
  readonly #options: ResolvedOptions;
  readonly #lock: FileLock;
  readonly #writer: GroupCommitWriter;
  readonly #recovery: WalRecoveryReport;
  #checkpointLsn: number;
  #checkpointChain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(
    dir: string,
    fs: FileSystem,
    options: ResolvedOptions,
    lock: FileLock,
    writer: GroupCommitWriter,
    recovery: WalRecoveryReport,
    checkpointLsn: number,
  ) {
    this.dir = dir;
    this.#fs = fs;
    this.#options = options;
    this.#lock = lock;
    this.#writer = writer;
    this.#recovery = recovery;
    this.#checkpointLsn = checkpointLsn;
  }

  /** Opens (creating if needed) the WAL in `dir` and recovers it; resolves when ready. */
  static async open(dir: string, options: WalOptions = {}): Promise<Wal> {
    if (typeof dir !== 'string' || dir.length === 0) {
      throw new FactError('FACT_INVALID_ARGUMENT', 'Wal.open: dir must be a non-empty string');
    }
    const resolved = validateOptions(options);
    const fs = options.fs ?? new NodeFileSystem();
    try {
      await fs.mkdir(dir);
    } catch (error) {
      throw ioError('mkdir', dir, error);
    }
    const lock = await fs.lock(joinPath(dir, LOCK_FILE)).catch((error: unknown) => {
      throw isFactError(error) ? error : ioError('lock', joinPath(dir, LOCK_FILE), error);
    });
    try {
      // Recovery closes what it opened when it fails.
      const log = await recoverLog(fs, dir, resolved);
      const writer = new GroupCommitWriter(fs, dir, resolved, log.segments, log.active, log.lastLsn);
      return new Wal(dir, fs, resolved, lock, writer, log.report, log.checkpointLsn);
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw isFactError(error) ? error : ioError('recovery', dir, error);
    }
  }

  /** What open found and did. */
  get recovery(): WalRecoveryReport {
    return this.#recovery;
  }

  get checkpointLsn(): number {
    return this.#checkpointLsn;
  }

  /** The oldest LSN replay can still read (lastLsn + 1 when no record is left). */
  get firstLsn(): number {
    return this.#writer.segments[0]?.firstLsn ?? this.#writer.nextLsn;
  }

  /** The last LSN handed out by append (written or not yet). */
  get lastLsn(): number {
    return this.#writer.nextLsn - 1;
  }

  /** The last LSN known durable. */
  get durableLsn(): number {
    return this.#writer.durableLsn;
  }

  get syncMode(): SyncMode {
    return this.#options.sync;
  }

  /** The largest payload append accepts. */
  get maxRecordSizeBytes(): number {
    return this.#options.maxRecordSizeBytes;
  }

  /** Appends one record; resolves with its LSN once durable (per the sync mode). */
  append(payload: Uint8Array, options: WalAppendOptions = {}): Promise<number> {
    return this.#enqueue([payload], options, 'append');
  }

  /** Appends records as one atomic unit; resolves with their LSNs. */
  async appendBatch(payloads: readonly Uint8Array[], options: WalAppendOptions = {}): Promise<number[]> {
    if (!Array.isArray(payloads) || payloads.length === 0) {
      throw new FactError('FACT_INVALID_ARGUMENT', 'appendBatch: payloads must be a non-empty array');
    }
    const lastLsn = await this.#enqueue(payloads, options, 'appendBatch');
    const first = lastLsn - payloads.length + 1;
    return Array.from({ length: payloads.length }, (_, index) => first + index);
  }

  #enqueue(payloads: readonly Uint8Array[], options: WalAppendOptions, method: string): Promise<number> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError(method));
    if (this.#writer.poisoned) return Promise.reject(this.#writer.poisonedError());
    const type = options.type ?? 0;
    if (!Number.isInteger(type) || type < 0 || type > RECORD_TYPE_MAX) {
      return Promise.reject(new FactError('FACT_INVALID_ARGUMENT', `${method}: type must be an integer from 0 to 255, got ${String(type)}`));
    }
    const copies: Uint8Array[] = [];
    for (const [index, payload] of payloads.entries()) {
      if (!(payload instanceof Uint8Array)) {
        return Promise.reject(new FactError('FACT_INVALID_ARGUMENT', `${method}: payload ${index} is not a Uint8Array`));
      }
      if (payload.length > this.#options.maxRecordSizeBytes) {
        return Promise.reject(
          new FactError(
            'FACT_WAL_RECORD_TOO_LARGE',
            `${method}: payload ${index} is ${payload.length} bytes, above maxRecordSizeBytes ${this.#options.maxRecordSizeBytes}`,
            { details: { sizeBytes: payload.length, maxRecordSizeBytes: this.#options.maxRecordSizeBytes } },
          ),
        );
      }
      // The caller may reuse its buffer as soon as we return.
      copies.push(Uint8Array.prototype.slice.call(payload));
    }
    return this.#writer.enqueue(copies, type);
  }

  /** Makes every append made before this call durable (whatever the sync mode). */
  sync(): Promise<void> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError('sync'));
    if (this.#writer.poisoned) return Promise.reject(this.#writer.poisonedError());
    return this.#writer.requestSync();
  }

  /**
   * Durably records that every LSN ≤ `lsn` has been applied elsewhere, then deletes segments
   * wholly at or below it beyond the `retainSegments` newest such ones.
   */
  checkpoint(lsn: number): Promise<void> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError('checkpoint'));
    if (this.#writer.poisoned) return Promise.reject(this.#writer.poisonedError());
    if (!Number.isSafeInteger(lsn) || lsn < 0 || lsn > this.lastLsn) {
      return Promise.reject(
        new FactError('FACT_INVALID_ARGUMENT', `checkpoint: lsn must be an integer from 0 to the last LSN ${this.lastLsn}, got ${String(lsn)}`),
      );
    }
    const run = this.#checkpointChain.then(() => this.#checkpoint(lsn));
    this.#checkpointChain = run.catch(() => undefined);
    return run;
  }

  /** One checkpoint, serialised by #checkpointChain (docs/wal-format.md, steps 1–3). */
  async #checkpoint(lsn: number): Promise<void> {
    if (lsn <= this.#checkpointLsn) return;
    if (lsn > this.#writer.durableLsn) await this.#writer.requestSync();
    await writeCheckpointFile(this.#fs, this.dir, lsn);
    this.#checkpointLsn = lsn;
    await deleteCheckpointedSegments(this.#fs, this.dir, this.#writer, this.#checkpointLsn, this.#options.retainSegments);
  }

  /**
   * Records with LSN ≥ `from` (default: checkpoint + 1) in LSN order, up to the last
   * acknowledged LSN at the call (durable, or written with sync 'none').
   */
  replay(options: { from?: number } = {}): AsyncIterableIterator<WalRecord> {
    if (this.#closed) throw this.#closedError('replay');
    const from = options.from ?? this.#checkpointLsn + 1;
    if (!Number.isSafeInteger(from) || from < 1) {
      throw new FactError('FACT_INVALID_ARGUMENT', `replay: from must be a positive integer, got ${shown(options.from)}`);
    }
    const oldest = this.firstLsn;
    if (from < oldest) {
      throw new FactError('FACT_OUT_OF_RANGE', `replay: LSN ${from} is no longer in the log (oldest is ${oldest}); segments at or below the checkpoint were deleted`, {
        details: { from, oldest },
      });
    }
    return replayLog(this.#fs, this.#writer, from, this.#options.sync === 'none' ? this.#writer.writtenLsn : this.#writer.durableLsn);
  }

  /** Flushes pending appends, syncs, and releases the directory. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    try {
      // A failed final sync has poisoned the WAL and rejected its appends: close anyway.
      if (!this.#writer.poisoned) await this.#writer.requestSync().catch(() => undefined);
      await this.#writer.loop;
      await this.#checkpointChain;
    } finally {
      this.#closed = true;
      await this.#writer.shutdown();
      await this.#lock.release().catch(() => undefined);
    }
  }

  #closedError(method: string): FactError {
    return new FactError('FACT_CLOSED', `${method}: the WAL in ${this.dir} is closed`, { details: { dir: this.dir } });
  }
}
