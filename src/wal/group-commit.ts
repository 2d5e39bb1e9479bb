/**
 * The group-commit writer (docs/wal-format.md, "Writing"): one loop does every write, fdatasync
 * and rotation; appends waiting when a write finishes form the next group. It owns the log's
 * positions (LSNs handed out, written, durable) and its segment list. Callers pass checked
 * arguments: validation is the Wal facade's.
 */
import { assert, FactError, ioError, isFactError } from '../errors.js';
import type { FileSystem } from './file-system.js';
import { encodeRecordInto, RECORD_HEADER_SIZE_BYTES, SEGMENT_FILL_STEP_MAX_BYTES, SEGMENT_HEADER_SIZE_BYTES } from './format.js';
import type { ResolvedOptions } from './options.js';
import { type ActiveSegment, createSegment, extendFill, type Segment, type SegmentLog } from './segment-files.js';

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

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class GroupCommitWriter implements SegmentLog {
  readonly #fs: FileSystem;
  readonly #dir: string;
  readonly #options: ResolvedOptions;
  readonly #segments: Segment[];
  #active: ActiveSegment;
  /** Next LSN to hand out; LSNs are assigned in call order. */
  #nextLsn: number;
  #writtenLsn: number;
  #durableLsn: number;
  #pending: PendingAppend[] = [];
  #awaitingSync: PendingAppend[] = [];
  #syncWaiters: SyncWaiter[] = [];
  #syncDue = false;
  #syncTimer: NodeJS.Timeout | null = null;
  #loop: Promise<void> | null = null;
  #poison: FactError | null = null;

  /** Starts on a recovered log: every LSN ≤ `lastLsn` is written and durable. */
  constructor(fs: FileSystem, dir: string, options: ResolvedOptions, segments: Segment[], active: ActiveSegment, lastLsn: number) {
    this.#fs = fs;
    this.#dir = dir;
    this.#options = options;
    this.#segments = segments;
    this.#active = active;
    this.#nextLsn = lastLsn + 1;
    this.#writtenLsn = lastLsn;
    this.#durableLsn = lastLsn;
  }

  get segments(): readonly Segment[] {
    return this.#segments;
  }

  get active(): ActiveSegment {
    return this.#active;
  }

  get nextLsn(): number {
    return this.#nextLsn;
  }

  get writtenLsn(): number {
    return this.#writtenLsn;
  }

  get durableLsn(): number {
    return this.#durableLsn;
  }

  get poisoned(): boolean {
    return this.#poison !== null;
  }

  /** Checkpoint retention deleted the oldest segment's file. */
  dropOldestSegment(): void {
    this.#segments.shift();
  }

  /** Queues one unit (checked payloads the caller no longer touches); resolves with its last LSN once durable. */
  enqueue(payloads: Uint8Array[], type: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const firstLsn = this.#nextLsn;
      this.#nextLsn += payloads.length;
      this.#pending.push({ payloads, type, firstLsn, lastLsn: this.#nextLsn - 1, resolve, reject });
      this.#kick();
    });
  }

  /** Resolves once every LSN handed out so far is durable; close and checkpoints use it too. */
  requestSync(): Promise<void> {
    // A poisoned loop never runs again: its waiters would hang.
    if (this.#poison) return Promise.reject(this.poisonedError());
    return new Promise<void>((resolve, reject) => {
      this.#syncWaiters.push({ upTo: this.#nextLsn - 1, resolve, reject });
      this.#kick();
    });
  }

  /** The running I/O loop, or null: it settles (never rejects) once the writer has nothing left to do. */
  get loop(): Promise<void> | null {
    return this.#loop;
  }

  /** Stops the sync timer and closes the active segment; the writer is unusable afterwards. */
  shutdown(): Promise<void> {
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
    return this.#active.handle.close().catch(() => undefined);
  }

  poisonedError(): FactError {
    return new FactError(
      'FACT_WAL_POISONED',
      `the WAL in ${this.#dir} stopped accepting writes after a failed write or sync; close and reopen it to recover from what is on disk`,
      { cause: this.#poison?.cause, details: { dir: this.#dir } },
    );
  }

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
        // Ahead of time, so that the next groups rarely wait for an extension (docs/wal-format.md).
        if (this.#fillAheadDue()) await this.#extendFill(0);
      }
    } catch (error) {
      this.#poisonWith(error);
      const poisoned = this.poisonedError();
      for (const unit of group) unit.reject(poisoned);
      for (const waiter of waiters) waiter.reject(poisoned);
    }
  }

  async #writeGroup(group: PendingAppend[]): Promise<void> {
    let chunk: PendingAppend[] = [];
    let chunkBytes = 0;
    for (const unit of group) {
      let unitBytes = 0;
      for (const payload of unit.payloads) unitBytes += RECORD_HEADER_SIZE_BYTES + payload.length;
      const offset = this.#active.offsetBytes + chunkBytes;
      const segmentHasRecords = offset > SEGMENT_HEADER_SIZE_BYTES;
      if (offset + unitBytes > this.#capacityBytes() && segmentHasRecords) {
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
    // Records only land in zero-filled, synced space (ActiveSegment.filledBytes), except with sync 'none'.
    if (this.#fillsAhead() && active.offsetBytes + sizeBytes > active.filledBytes) await this.#extendFill(active.offsetBytes + sizeBytes);
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

  #capacityBytes(): number {
    return Math.max(this.#options.segmentSizeBytes, this.#active.capacityBytes);
  }

  /**
   * Zero fill pays off through cheaper per-append fdatasyncs; sync 'none' has none, and an
   * extension's fdatasync would flush its unsynced records: there records grow the file instead.
   */
  #fillsAhead(): boolean {
    return this.#options.sync !== 'none';
  }

  /** The write position crossed half of the filled region, and the segment is not filled to capacity. */
  #fillAheadDue(): boolean {
    const active = this.#active;
    return this.#fillsAhead() && active.filledBytes < this.#capacityBytes() && active.offsetBytes * 2 > active.filledBytes;
  }

  /**
   * Extends the active segment's zero fill by one step (as much as is filled, from
   * segmentFillStepBytes up to SEGMENT_FILL_STEP_MAX_BYTES, within capacity) and at least to
   * `minimumEnd`. Its fdatasync covers what was written before it, so those appends resolve.
   */
  async #extendFill(minimumEnd: number): Promise<void> {
    const active = this.#active;
    const { segmentFillStepBytes } = this.#options;
    const step = Math.min(Math.max(SEGMENT_FILL_STEP_MAX_BYTES, segmentFillStepBytes), Math.max(segmentFillStepBytes, active.filledBytes));
    const target = this.#writtenLsn;
    await extendFill(active, Math.max(minimumEnd, Math.min(this.#capacityBytes(), active.filledBytes + step)));
    if (target > this.#durableLsn) {
      this.#durableLsn = target;
      this.#resolveAwaitingSync(target);
    }
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
    const { segmentSizeBytes, segmentFillStepBytes } = this.#options;
    const active = await createSegment(this.#fs, this.#dir, firstLsn, Math.max(segmentSizeBytes, minimumSizeBytes), segmentFillStepBytes);
    this.#segments.push(active.segment);
    this.#active = active;
    await previous.handle.close().catch(() => undefined);
  }

  #poisonWith(error: unknown): void {
    if (!this.#poison) {
      this.#poison = isFactError(error) ? error : ioError('write path', this.#dir, error);
    }
    const poisoned = this.poisonedError();
    for (const unit of [...this.#awaitingSync, ...this.#pending]) unit.reject(poisoned);
    for (const waiter of this.#syncWaiters) waiter.reject(poisoned);
    this.#awaitingSync = [];
    this.#pending = [];
    this.#syncWaiters = [];
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
  }
}
