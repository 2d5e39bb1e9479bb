/**
 * The write-ahead log: segmented, checksummed, group-committed. Format and recovery rules are
 * specified in docs/wal-format.md; this file follows that spec's decision table.
 */
import { assert, FactError, ioError, isFactError } from '../errors.js';
import type { FileHandle, FileLock, FileSystem } from './file-system.js';
import { joinPath } from './file-system.js';
import {
  CHECKPOINT_FILE,
  decodeCheckpoint,
  decodeSegmentHeader,
  encodeCheckpoint,
  encodeRecordInto,
  encodeSegmentHeader,
  LOCK_FILE,
  parseSegmentFileName,
  RECORD_HEADER_SIZE_BYTES,
  RECORD_PAYLOAD_SIZE_BYTES_LIMIT,
  RECORD_TYPE_MAX,
  SEGMENT_HEADER_SIZE_BYTES,
  segmentFileName,
  TEMP_SUFFIX,
} from './format.js';
import { NodeFileSystem } from './node-file-system.js';
import { endOfNonZero, findAttestingRecord, scanSegment, type SegmentScan } from './segment-scan.js';

export type SyncMode = 'always' | 'interval' | 'none';

export const DEFAULT_SEGMENT_SIZE_BYTES = 16 * 1024 * 1024;
export const MIN_SEGMENT_SIZE_BYTES = 1024;
export const DEFAULT_SYNC_INTERVAL_MS = 200;
export const MIN_SYNC_INTERVAL_MS = 10;
export const DEFAULT_RETAIN_SEGMENTS = 4;
export const DEFAULT_MAX_RECORD_SIZE_BYTES = 64 * 1024 * 1024;
const ZERO_FILL_CHUNK_SIZE_BYTES = 1024 * 1024;

export interface WalOptions {
  /** A segment is sealed and a new one started when the next unit would not fit. Default 16 MiB. */
  segmentSizeBytes?: number;
  /** When an append resolves; see docs/wal-format.md. Default 'always'. */
  sync?: SyncMode;
  /** With sync 'interval': time between fdatasyncs. Default 200; values below 10 become 10. */
  syncIntervalMs?: number;
  /** Already-checkpointed segments kept for replay; 'all' keeps every segment. Default 4. */
  retainSegments?: number | 'all';
  /** Largest payload accepted by append. Default 64 MiB, at most 1 GiB. */
  maxRecordSizeBytes?: number;
  /** Opt into lossy repair of damaged acknowledged data (reported in `recovery.repair`). */
  repair?: boolean;
  /** The file system; default real files. SimFileSystem for crash tests. */
  fs?: FileSystem;
}

export interface WalRecord {
  lsn: number;
  type: number;
  payload: Uint8Array;
}

export interface WalAppendOptions {
  /** A byte (0–255) stored with the record; the WAL gives it no meaning. Default 0. */
  type?: number;
}

export interface WalRecoveryReport {
  /** Segment files in the log after recovery. */
  segments: number;
  /** Oldest LSN still readable by replay (lastLsn + 1 when the log is empty). */
  firstLsn: number;
  lastLsn: number;
  checkpointLsn: number;
  /** Bytes of torn tail removed (never acknowledged). */
  truncatedBytes: number;
  tornTail: { segment: string; offsetBytes: number; bytes: number } | null;
  /** Leftover temp files of interrupted segment creation or checkpointing, deleted. */
  removedTempFiles: string[];
  /** What a lossy repair (option `repair`) dropped, or null. */
  repair: {
    segment: string;
    offsetBytes: number;
    reason: string;
    droppedFromLsn: number;
    droppedBytes: number;
    deletedSegments: string[];
    checkpointLoweredFrom: number | null;
  } | null;
}

interface Segment {
  firstLsn: number;
  name: string;
  path: string;
}

interface PendingAppend {
  payloads: Uint8Array[];
  type: number;
  firstLsn: number;
  lastLsn: number;
  resolve: (lsn: number) => void;
  reject: (error: Error) => void;
}

interface SyncWaiter {
  /** The last LSN handed out when the sync was asked for: it resolves once that is durable. */
  upTo: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface ResolvedOptions {
  segmentSizeBytes: number;
  sync: SyncMode;
  syncIntervalMs: number;
  retainSegments: number;
  maxRecordSizeBytes: number;
  repair: boolean;
}

function validateOptions(options: WalOptions): ResolvedOptions {
  const invalid = (message: string) => new FactError('FACT_INVALID_ARGUMENT', `Wal.open: ${message}`);
  const segmentSizeBytes = options.segmentSizeBytes ?? DEFAULT_SEGMENT_SIZE_BYTES;
  if (!Number.isSafeInteger(segmentSizeBytes) || segmentSizeBytes < MIN_SEGMENT_SIZE_BYTES) {
    throw invalid(`segmentSizeBytes must be an integer ≥ ${MIN_SEGMENT_SIZE_BYTES}, got ${String(options.segmentSizeBytes)}`);
  }
  const sync = options.sync ?? 'always';
  if (sync !== 'always' && sync !== 'interval' && sync !== 'none') {
    throw invalid(`sync must be 'always', 'interval' or 'none', got ${String(sync)}`);
  }
  const interval = options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
  if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 0) {
    throw invalid(`syncIntervalMs must be a non-negative number, got ${String(options.syncIntervalMs)}`);
  }
  const retain = options.retainSegments ?? DEFAULT_RETAIN_SEGMENTS;
  if (retain !== 'all' && (!Number.isSafeInteger(retain) || retain < 0)) {
    throw invalid(`retainSegments must be a non-negative integer or 'all', got ${String(options.retainSegments)}`);
  }
  const maxRecordSizeBytes = options.maxRecordSizeBytes ?? DEFAULT_MAX_RECORD_SIZE_BYTES;
  if (!Number.isSafeInteger(maxRecordSizeBytes) || maxRecordSizeBytes < 0 || maxRecordSizeBytes > RECORD_PAYLOAD_SIZE_BYTES_LIMIT) {
    throw invalid(`maxRecordSizeBytes must be an integer from 0 to ${RECORD_PAYLOAD_SIZE_BYTES_LIMIT}`);
  }
  return {
    segmentSizeBytes,
    sync,
    syncIntervalMs: Math.max(MIN_SYNC_INTERVAL_MS, interval),
    retainSegments: retain === 'all' ? Number.POSITIVE_INFINITY : retain,
    maxRecordSizeBytes,
    repair: options.repair === true,
  };
}

function corruption(message: string, details: Record<string, unknown>): FactError {
  return new FactError('FACT_WAL_CORRUPTION', message, { details });
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

let zeroFill: Uint8Array | undefined;
function zeros(): Uint8Array {
  zeroFill ??= new Uint8Array(ZERO_FILL_CHUNK_SIZE_BYTES);
  return zeroFill;
}

async function writeZeros(handle: FileHandle, from: number, to: number): Promise<void> {
  for (let offset = from; offset < to; offset += ZERO_FILL_CHUNK_SIZE_BYTES) {
    await handle.write(zeros().subarray(0, Math.min(ZERO_FILL_CHUNK_SIZE_BYTES, to - offset)), offset);
  }
}

export class Wal implements AsyncDisposable {
  readonly dir: string;
  readonly #fs: FileSystem;
  readonly #options: ResolvedOptions;
  readonly #lock: FileLock;
  #segments: Segment[] = [];
  #active!: { segment: Segment; handle: FileHandle; offsetBytes: number; capacityBytes: number };
  #recovery!: WalRecoveryReport;
  #checkpointLsn = 0;
  /** Next LSN to hand out; LSNs are assigned in call order. */
  #nextLsn = 1;
  #writtenLsn = 0;
  #durableLsn = 0;
  #pending: PendingAppend[] = [];
  #awaitingSync: PendingAppend[] = [];
  #syncWaiters: SyncWaiter[] = [];
  #syncDue = false;
  #syncTimer: NodeJS.Timeout | null = null;
  #loop: Promise<void> | null = null;
  #checkpointChain: Promise<unknown> = Promise.resolve();
  #poison: FactError | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(dir: string, fs: FileSystem, options: ResolvedOptions, lock: FileLock) {
    this.dir = dir;
    this.#fs = fs;
    this.#options = options;
    this.#lock = lock;
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
    const wal = new Wal(dir, fs, resolved, lock);
    try {
      await wal.#recover();
    } catch (error) {
      await wal.#active?.handle.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw isFactError(error) ? error : ioError('recovery', dir, error);
    }
    return wal;
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
    return this.#segments[0]?.firstLsn ?? this.#nextLsn;
  }

  /** The last LSN handed out by append (written or not yet). */
  get lastLsn(): number {
    return this.#nextLsn - 1;
  }

  /** The last LSN known durable. */
  get durableLsn(): number {
    return this.#durableLsn;
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
    if (this.#poison) return Promise.reject(this.#poisonedError());
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
    return new Promise<number>((resolve, reject) => {
      const firstLsn = this.#nextLsn;
      this.#nextLsn += copies.length;
      this.#pending.push({ payloads: copies, type, firstLsn, lastLsn: this.#nextLsn - 1, resolve, reject });
      this.#kick();
    });
  }

  /** Makes every append made before this call durable (whatever the sync mode). */
  sync(): Promise<void> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError('sync'));
    if (this.#poison) return Promise.reject(this.#poisonedError());
    return this.#requestSync();
  }

  /** Resolves once every LSN handed out so far is durable; close and checkpoints use it too. */
  #requestSync(): Promise<void> {
    // A poisoned loop never runs again: its waiters would hang.
    if (this.#poison) return Promise.reject(this.#poisonedError());
    return new Promise<void>((resolve, reject) => {
      this.#syncWaiters.push({ upTo: this.#nextLsn - 1, resolve, reject });
      this.#kick();
    });
  }

  /**
   * Durably records that every LSN ≤ `lsn` has been applied elsewhere, then deletes segments
   * wholly at or below it beyond the `retainSegments` newest such ones.
   */
  checkpoint(lsn: number): Promise<void> {
    if (this.#closed || this.#closing) return Promise.reject(this.#closedError('checkpoint'));
    if (this.#poison) return Promise.reject(this.#poisonedError());
    if (!Number.isSafeInteger(lsn) || lsn < 0 || lsn > this.lastLsn) {
      return Promise.reject(
        new FactError('FACT_INVALID_ARGUMENT', `checkpoint: lsn must be an integer from 0 to the last LSN ${this.lastLsn}, got ${String(lsn)}`),
      );
    }
    const run = this.#checkpointChain.then(() => this.#checkpoint(lsn));
    this.#checkpointChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Records with LSN ≥ `from` (default: checkpoint + 1) in LSN order, up to the last
   * acknowledged LSN at the call (durable, or written with sync 'none').
   */
  replay(options: { from?: number } = {}): AsyncIterableIterator<WalRecord> {
    if (this.#closed) throw this.#closedError('replay');
    const from = options.from ?? this.#checkpointLsn + 1;
    if (!Number.isSafeInteger(from) || from < 1) {
      throw new FactError('FACT_INVALID_ARGUMENT', `replay: from must be a positive integer, got ${String(options.from)}`);
    }
    const oldest = this.#segments[0]?.firstLsn ?? this.#nextLsn;
    if (from < oldest) {
      throw new FactError('FACT_OUT_OF_RANGE', `replay: LSN ${from} is no longer in the log (oldest is ${oldest}); segments at or below the checkpoint were deleted`, {
        details: { from, oldest },
      });
    }
    return this.#replay(from, this.#options.sync === 'none' ? this.#writtenLsn : this.#durableLsn);
  }

  async *#replay(from: number, until: number): AsyncIterableIterator<WalRecord> {
    const segments = [...this.#segments];
    const active = this.#active;
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index]!;
      const next = segments[index + 1];
      if (next && next.firstLsn <= from) continue;
      if (segment.firstLsn > until) break;
      const isActive = segment === active.segment;
      const bytes = isActive
        ? await this.#readPrefix(segment, active.offsetBytes)
        : await this.#fs.readFile(segment.path).catch((error: unknown) => {
            if ((error as { code?: unknown }).code === 'ENOENT' && !this.#segments.includes(segment)) return null;
            throw ioError('read', segment.path, error);
          });
      if (bytes === null) {
        throw new FactError('FACT_OUT_OF_RANGE', `replay: segment ${segment.name} was deleted by a checkpoint during replay`, {
          details: { segment: segment.name },
        });
      }
      const header = decodeSegmentHeader(bytes);
      if ('invalid' in header || header.firstLsn !== segment.firstLsn) {
        throw corruption(`segment ${segment.path}: invalid header (${'invalid' in header ? header.invalid : 'first LSN differs from its name'})`, {
          segment: segment.name,
          offsetBytes: 0,
        });
      }
      const scan = scanSegment(bytes, segment.firstLsn);
      const expectedLast = next ? next.firstLsn - 1 : until;
      if (scan.lastLsn < Math.min(expectedLast, until)) {
        throw corruption(
          `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1} expected, log continues to ${expectedLast})`,
          { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
        );
      }
      for (const record of scan.records) {
        if (record.lsn < from) continue;
        if (record.lsn > until) return;
        yield {
          lsn: record.lsn,
          type: record.type,
          payload: bytes.slice(record.payloadOffset, record.payloadOffset + record.payloadLength),
        };
      }
    }
  }

  async #readPrefix(segment: Segment, lengthBytes: number): Promise<Uint8Array | null> {
    let handle: FileHandle;
    try {
      handle = await this.#fs.open(segment.path, 'read');
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return null;
      throw ioError('open', segment.path, error);
    }
    try {
      const bytes = new Uint8Array(lengthBytes);
      let offset = 0;
      while (offset < lengthBytes) {
        const read = await handle.read(bytes, offset, lengthBytes - offset, offset);
        if (read === 0) break;
        offset += read;
      }
      return bytes.subarray(0, offset);
    } catch (error) {
      throw ioError('read', segment.path, error);
    } finally {
      await handle.close().catch(() => undefined);
    }
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
      if (!this.#poison) await this.#requestSync().catch(() => undefined);
      await this.#loop;
      await this.#checkpointChain;
    } finally {
      this.#closed = true;
      if (this.#syncTimer) clearTimeout(this.#syncTimer);
      this.#syncTimer = null;
      await this.#active.handle.close().catch(() => undefined);
      await this.#lock.release().catch(() => undefined);
    }
  }

  #closedError(method: string): FactError {
    return new FactError('FACT_CLOSED', `${method}: the WAL in ${this.dir} is closed`, { details: { dir: this.dir } });
  }

  #poisonedError(): FactError {
    return new FactError(
      'FACT_WAL_POISONED',
      `the WAL in ${this.dir} stopped accepting writes after a failed write or sync; close and reopen it to recover from what is on disk`,
      { cause: this.#poison?.cause, details: { dir: this.dir } },
    );
  }

  // ---------------------------------------------------------------- writing

  /** Starts the I/O loop unless it runs: one loop does every write, sync and rotation. */
  #kick(): void {
    if (this.#loop) return;
    this.#loop = this.#runLoop().finally(() => {
      this.#loop = null;
      if (!this.#poison && (this.#pending.length > 0 || this.#syncWaiters.length > 0 || this.#syncDue)) this.#kick();
    });
  }

  async #runLoop(): Promise<void> {
    // Taken out of #pending / #syncWaiters while in progress: a failure must reject them too.
    let group: PendingAppend[] = [];
    let waiters: SyncWaiter[] = [];
    try {
      let firstGroup = true;
      while (this.#pending.length > 0 || this.#syncWaiters.length > 0 || this.#syncDue) {
        // A fresh loop waits one microtask, so appends issued in the same synchronous run (or
        // by callers its last group resolved) join; a lone writer pays no event-loop turn. Between
        // groups, callers resolved by the last flush need a full turn to append again.
        if (firstGroup) await Promise.resolve();
        else await yieldToEventLoop();
        firstGroup = false;
        if (this.#poison) return;
        if (this.#pending.length > 0) {
          group = this.#pending;
          this.#pending = [];
          await this.#writeGroup(group);
          group = [];
        }
        if (this.#syncWaiters.length > 0 || this.#syncDue) {
          waiters = this.#syncWaiters;
          this.#syncWaiters = [];
          this.#syncDue = false;
          await this.#syncActive();
          // A waiter whose appends arrived during this group's write waits for the next round.
          for (const waiter of waiters) {
            if (waiter.upTo <= this.#durableLsn) waiter.resolve();
            else this.#syncWaiters.push(waiter);
          }
          waiters = [];
        }
      }
    } catch (error) {
      this.#poisonWith(error);
      const poisoned = this.#poisonedError();
      for (const unit of group) unit.reject(poisoned);
      for (const waiter of waiters) waiter.reject(poisoned);
    }
  }

  async #writeGroup(group: PendingAppend[]): Promise<void> {
    const { segmentSizeBytes } = this.#options;
    let chunk: PendingAppend[] = [];
    let chunkBytes = 0;
    for (const unit of group) {
      let unitBytes = 0;
      for (const payload of unit.payloads) unitBytes += RECORD_HEADER_SIZE_BYTES + payload.length;
      const offset = this.#active.offsetBytes + chunkBytes;
      const segmentHasRecords = offset > SEGMENT_HEADER_SIZE_BYTES;
      if (offset + unitBytes > Math.max(segmentSizeBytes, this.#active.capacityBytes) && segmentHasRecords) {
        await this.#writeChunk(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        await this.#rotate(SEGMENT_HEADER_SIZE_BYTES + unitBytes);
      }
      chunk.push(unit);
      chunkBytes += unitBytes;
    }
    await this.#writeChunk(chunk, chunkBytes);
    switch (this.#options.sync) {
      case 'always':
        await this.#syncActive();
        break;
      case 'interval':
        this.#armSyncTimer();
        break;
      case 'none':
        this.#resolveAwaitingSync(this.#writtenLsn);
        break;
    }
  }

  async #writeChunk(units: PendingAppend[], sizeBytes: number): Promise<void> {
    if (units.length === 0) return;
    const active = this.#active;
    const bytes = new Uint8Array(sizeBytes);
    let offset = 0;
    const durableLsn = this.#durableLsn;
    for (const unit of units) {
      let lsn = unit.firstLsn;
      for (let index = 0; index < unit.payloads.length; index++) {
        offset = encodeRecordInto(bytes, offset, {
          lsn,
          durableLsn,
          batchRemaining: unit.payloads.length - 1 - index,
          type: unit.type,
          payload: unit.payloads[index]!,
        });
        lsn++;
      }
    }
    assert(offset === sizeBytes, 'chunk size matches its records');
    assert(units[0]!.firstLsn === this.#writtenLsn + 1, 'chunk continues the log without a gap');
    // Written units wait for the sync that covers them; a failure below rejects them too.
    for (const unit of units) this.#awaitingSync.push(unit);
    try {
      await active.handle.write(bytes, active.offsetBytes);
    } catch (error) {
      throw ioError('write', active.segment.path, error);
    }
    active.offsetBytes += sizeBytes;
    this.#writtenLsn = units[units.length - 1]!.lastLsn;
  }

  async #syncActive(): Promise<void> {
    const target = this.#writtenLsn;
    if (target > this.#durableLsn) {
      try {
        await this.#active.handle.datasync();
      } catch (error) {
        throw ioError('fdatasync', this.#active.segment.path, error);
      }
      this.#durableLsn = target;
    }
    this.#resolveAwaitingSync(this.#durableLsn);
  }

  #resolveAwaitingSync(durableLsn: number): void {
    let resolved = 0;
    for (const unit of this.#awaitingSync) {
      if (unit.lastLsn > durableLsn) break;
      unit.resolve(unit.lastLsn);
      resolved++;
    }
    this.#awaitingSync.splice(0, resolved);
  }

  #armSyncTimer(): void {
    if (this.#syncTimer) return;
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null;
      this.#syncDue = true;
      this.#kick();
    }, this.#options.syncIntervalMs);
  }

  async #rotate(minimumSizeBytes: number): Promise<void> {
    // Every sealed segment is entirely durable: recovery treats damage in it as corruption.
    await this.#syncActive();
    const firstLsn = this.#writtenLsn + 1;
    const previous = this.#active;
    const { segment, handle, capacityBytes } = await this.#createSegment(firstLsn, minimumSizeBytes);
    this.#segments.push(segment);
    this.#active = { segment, handle, offsetBytes: SEGMENT_HEADER_SIZE_BYTES, capacityBytes };
    await previous.handle.close().catch(() => undefined);
  }

  /** Header + zero fill into a temp file, fdatasync, rename, directory fsync (docs/wal-format.md). */
  async #createSegment(firstLsn: number, minimumSizeBytes: number) {
    const name = segmentFileName(firstLsn);
    const path = joinPath(this.dir, name);
    const tempPath = path + TEMP_SUFFIX;
    const capacityBytes = Math.max(this.#options.segmentSizeBytes, minimumSizeBytes);
    let handle: FileHandle | undefined;
    try {
      handle = await this.#fs.open(tempPath, 'overwrite');
      await handle.write(encodeSegmentHeader(firstLsn), 0);
      await writeZeros(handle, SEGMENT_HEADER_SIZE_BYTES, capacityBytes);
      await handle.datasync();
      await this.#fs.rename(tempPath, path);
      await this.#fs.syncDir(this.dir);
    } catch (error) {
      await handle?.close().catch(() => undefined);
      throw ioError('create segment', path, error);
    }
    return { segment: { firstLsn, name, path }, handle, capacityBytes };
  }

  #poisonWith(error: unknown): void {
    if (!this.#poison) {
      this.#poison = isFactError(error) ? error : ioError('write path', this.dir, error);
    }
    const poisoned = this.#poisonedError();
    for (const unit of [...this.#awaitingSync, ...this.#pending]) unit.reject(poisoned);
    for (const waiter of this.#syncWaiters) waiter.reject(poisoned);
    this.#awaitingSync = [];
    this.#pending = [];
    this.#syncWaiters = [];
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
  }

  // ---------------------------------------------------------------- checkpoints

  async #checkpoint(lsn: number): Promise<void> {
    if (lsn <= this.#checkpointLsn) return;
    if (lsn > this.#durableLsn) await this.#requestSync();
    await this.#writeCheckpointFile(lsn);
    this.#checkpointLsn = lsn;
    await this.#deleteCheckpointedSegments();
  }

  async #deleteCheckpointedSegments(): Promise<void> {
    // Sealed segments whose last LSN (the next one's first − 1) is covered by the checkpoint.
    let covered = 0;
    while (covered + 1 < this.#segments.length && this.#segments[covered + 1]!.firstLsn - 1 <= this.#checkpointLsn) covered++;
    const deletable = covered - Math.min(covered, this.#options.retainSegments);
    for (let index = 0; index < deletable; index++) {
      const oldest = this.#segments[0]!;
      assert(oldest !== this.#active.segment, 'the active segment is never deleted');
      try {
        await this.#fs.unlink(oldest.path);
        // One durable unlink at a time keeps the remaining segments contiguous after a crash.
        await this.#fs.syncDir(this.dir);
      } catch (error) {
        throw ioError('delete segment', oldest.path, error);
      }
      this.#segments.shift();
    }
  }

  // ---------------------------------------------------------------- recovery

  async #recover(): Promise<void> {
    const report: WalRecoveryReport = {
      segments: 0,
      firstLsn: 1,
      lastLsn: 0,
      checkpointLsn: 0,
      truncatedBytes: 0,
      tornTail: null,
      removedTempFiles: [],
      repair: null,
    };
    const names = await this.#fs.readdir(this.dir);
    for (const name of names) {
      if (name.endsWith(TEMP_SUFFIX)) {
        await this.#fs.unlink(joinPath(this.dir, name));
        report.removedTempFiles.push(name);
      }
    }
    if (report.removedTempFiles.length > 0) await this.#fs.syncDir(this.dir);

    const checkpointPath = joinPath(this.dir, CHECKPOINT_FILE);
    const checkpointBytes = await this.#fs.readFile(checkpointPath);
    let checkpointLsn = 0;
    if (checkpointBytes !== null) {
      const decoded = decodeCheckpoint(checkpointBytes);
      if ('invalid' in decoded) {
        throw corruption(`checkpoint file ${checkpointPath} is invalid: ${decoded.invalid}`, { file: CHECKPOINT_FILE });
      }
      checkpointLsn = decoded.lsn;
    }

    const segments: Segment[] = [];
    for (const name of names) {
      const firstLsn = parseSegmentFileName(name);
      if (firstLsn !== null) segments.push({ firstLsn, name, path: joinPath(this.dir, name) });
    }
    segments.sort((a, b) => a.firstLsn - b.firstLsn);

    if (segments.length === 0) {
      if (checkpointLsn > 0) {
        throw corruption(`WAL in ${this.dir} has a checkpoint at LSN ${checkpointLsn} but no segment files`, { checkpointLsn });
      }
      const created = await this.#createSegment(1, 0);
      this.#segments = [created.segment];
      this.#active = { segment: created.segment, handle: created.handle, offsetBytes: SEGMENT_HEADER_SIZE_BYTES, capacityBytes: created.capacityBytes };
      this.#finishRecovery(report, 0, checkpointLsn);
      return;
    }

    // Retained segments (wholly ≤ checkpoint): headers now, records when replay reads them.
    let firstNeeded = 0;
    while (firstNeeded < segments.length - 1 && segments[firstNeeded + 1]!.firstLsn - 1 <= checkpointLsn) firstNeeded++;
    for (let index = 0; index < firstNeeded; index++) {
      const header = await this.#readPrefix(segments[index]!, SEGMENT_HEADER_SIZE_BYTES);
      this.#checkHeader(segments[index]!, header);
    }
    if (segments[firstNeeded]!.firstLsn > checkpointLsn + 1) {
      throw corruption(
        `WAL in ${this.dir} is missing records: checkpoint is LSN ${checkpointLsn} but the oldest needed segment ${segments[firstNeeded]!.name} starts at LSN ${segments[firstNeeded]!.firstLsn}`,
        { checkpointLsn, segment: segments[firstNeeded]!.name },
      );
    }

    let lastLsn = 0;
    let activeEnd = SEGMENT_HEADER_SIZE_BYTES;
    let capacityBytes = 0;
    let activeScan: { bytes: Uint8Array; scan: SegmentScan } | null = null;
    for (let index = firstNeeded; index < segments.length; index++) {
      const segment = segments[index]!;
      const next = segments[index + 1];
      const bytes = await this.#fs.readFile(segment.path);
      this.#checkHeader(segment, bytes);
      assert(bytes !== null, 'header check rejects a missing file');
      const scan = scanSegment(bytes, segment.firstLsn);
      if (next) {
        if (scan.lastLsn !== next.firstLsn - 1) {
          const damage = corruption(
            `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}); the log continues in ${next.name} at LSN ${next.firstLsn}, so this is acknowledged data`,
            { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
          );
          if (!this.#options.repair || scan.lastLsn >= next.firstLsn) throw damage;
          await this.#repair(report, segments, index, bytes, scan.endOffset, scan.lastLsn + 1, damage.message);
          lastLsn = scan.lastLsn;
          activeEnd = scan.endOffset;
          capacityBytes = bytes.length;
          activeScan = { bytes, scan };
          break;
        }
        continue;
      }
      // The newest segment: its tail decides torn versus damaged (rows 6–8).
      lastLsn = scan.lastLsn;
      activeEnd = scan.endOffset;
      capacityBytes = bytes.length;
      activeScan = { bytes, scan };
      const tailEnd = endOfNonZero(bytes, scan.endOffset);
      if (tailEnd > scan.endOffset) {
        const attesting = findAttestingRecord(bytes, scan.endOffset, tailEnd, scan.lastLsn + 1);
        if (attesting) {
          const damage = corruption(
            `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}); a later record (LSN ${attesting.lsn}) shows it had been durable, so this is acknowledged data`,
            { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
          );
          if (!this.#options.repair) throw damage;
          await this.#repair(report, segments, index, bytes, scan.endOffset, scan.lastLsn + 1, damage.message);
        } else if (scan.lastLsn < checkpointLsn) {
          // The first lost LSN was checkpointed, so it had been durable: row 9, not a torn tail.
          // Without repair the tail is left as it is and the check below refuses to open.
          if (this.#options.repair) {
            const reason = `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}), at or below the checkpoint ${checkpointLsn}`;
            await this.#repair(report, segments, index, bytes, scan.endOffset, scan.lastLsn + 1, reason);
          }
        } else {
          await this.#zeroRange(segment, scan.endOffset, tailEnd);
          report.truncatedBytes = tailEnd - scan.endOffset;
          report.tornTail = { segment: segment.name, offsetBytes: scan.endOffset, bytes: tailEnd - scan.endOffset };
        }
      }
    }

    if (lastLsn < checkpointLsn) {
      const message = `WAL in ${this.dir} ends at LSN ${lastLsn}, below its checkpoint ${checkpointLsn}: checkpointed records are missing`;
      if (!this.#options.repair) throw corruption(message, { lastLsn, checkpointLsn });
      await this.#writeCheckpointFile(lastLsn);
      report.repair ??= {
        segment: segments[segments.length - 1]!.name,
        offsetBytes: activeEnd,
        reason: message,
        droppedFromLsn: lastLsn + 1,
        droppedBytes: 0,
        deletedSegments: [],
        checkpointLoweredFrom: null,
      };
      report.repair.checkpointLoweredFrom = checkpointLsn;
      checkpointLsn = lastLsn;
    }

    const activeSegment = segments[segments.length - 1]!;
    let handle: FileHandle;
    try {
      handle = await this.#fs.open(activeSegment.path, 'readwrite');
    } catch (error) {
      throw ioError('open', activeSegment.path, error);
    }
    // The recovered log is durable from here on (replay hands it out as such), even when the
    // crash was only the process's and part of it was still in the page cache; same for the
    // directory (a segment created, or deleted by a checkpoint, just before the crash).
    try {
      // Records above every durable LSN stamped in the segment may never have been synced, and
      // after a failed fdatasync the page cache shows bytes that a later fdatasync does not
      // write ("fsyncgate"): write them again so that the fdatasync below covers them.
      const records = activeScan?.scan.records ?? [];
      const stamped = records.reduce((max, record) => Math.max(max, record.durableLsn), 0);
      const firstUnsynced = records.find((record) => record.lsn > stamped);
      if (activeScan && firstUnsynced) {
        const from = firstUnsynced.payloadOffset - RECORD_HEADER_SIZE_BYTES;
        await handle.write(activeScan.bytes.subarray(from, activeEnd), from);
      }
      await handle.datasync();
      await this.#fs.syncDir(this.dir);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw ioError('sync recovered log', activeSegment.path, error);
    }
    this.#segments = segments;
    this.#active = { segment: activeSegment, handle, offsetBytes: activeEnd, capacityBytes };
    this.#finishRecovery(report, lastLsn, checkpointLsn);
  }

  #finishRecovery(report: WalRecoveryReport, lastLsn: number, checkpointLsn: number): void {
    this.#checkpointLsn = checkpointLsn;
    this.#nextLsn = lastLsn + 1;
    this.#writtenLsn = lastLsn;
    this.#durableLsn = lastLsn;
    report.segments = this.#segments.length;
    report.firstLsn = this.#segments[0]?.firstLsn ?? lastLsn + 1;
    report.lastLsn = lastLsn;
    report.checkpointLsn = checkpointLsn;
    this.#recovery = report;
  }

  #checkHeader(segment: Segment, bytes: Uint8Array | null): asserts bytes is Uint8Array {
    const header = bytes === null ? { invalid: 'file vanished' } : decodeSegmentHeader(bytes);
    if ('invalid' in header || header.firstLsn !== segment.firstLsn) {
      throw corruption(
        `segment ${segment.path}: invalid header (${'invalid' in header ? header.invalid : `first LSN ${header.firstLsn} differs from its name`})`,
        { segment: segment.name, offsetBytes: 0 },
      );
    }
  }

  async #zeroRange(segment: Segment, from: number, to: number): Promise<void> {
    const handle = await this.#fs.open(segment.path, 'readwrite');
    try {
      await writeZeros(handle, from, to);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /** Row 10 of the decision table: keep the log up to `offset` of segment `index`, drop the rest. */
  async #repair(
    report: WalRecoveryReport,
    segments: Segment[],
    index: number,
    bytes: Uint8Array,
    offset: number,
    droppedFromLsn: number,
    reason: string,
  ): Promise<void> {
    const segment = segments[index]!;
    const tailEnd = endOfNonZero(bytes, offset);
    await this.#zeroRange(segment, offset, tailEnd);
    let droppedBytes = tailEnd - offset;
    const deletedSegments: string[] = [];
    // Newest first, so a crash midway leaves a contiguous log ending in a complete segment.
    for (const later of segments.slice(index + 1).reverse()) {
      const laterBytes = await this.#fs.readFile(later.path);
      droppedBytes += laterBytes ? endOfNonZero(laterBytes, SEGMENT_HEADER_SIZE_BYTES) - SEGMENT_HEADER_SIZE_BYTES : 0;
      await this.#fs.unlink(later.path);
      await this.#fs.syncDir(this.dir);
      deletedSegments.push(later.name);
    }
    segments.length = index + 1;
    report.repair = { segment: segment.name, offsetBytes: offset, reason, droppedFromLsn, droppedBytes, deletedSegments, checkpointLoweredFrom: null };
  }

  /** Temp file, fdatasync, rename, directory fsync: a crash leaves the old or the new one. */
  async #writeCheckpointFile(lsn: number): Promise<void> {
    const path = joinPath(this.dir, CHECKPOINT_FILE);
    try {
      const handle = await this.#fs.open(path + TEMP_SUFFIX, 'overwrite');
      try {
        await handle.write(encodeCheckpoint(lsn), 0);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.#fs.rename(path + TEMP_SUFFIX, path);
      await this.#fs.syncDir(this.dir);
    } catch (error) {
      throw ioError('write checkpoint', path, error);
    }
  }
}
