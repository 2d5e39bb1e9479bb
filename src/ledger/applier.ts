/**
 * The background apply: writes the unapplied tail to LevelDB, many appends per batch, once their
 * WAL records are durable (docs/storage-format.md, "Write path"). Appends never wait for it
 * unless the tail is full.
 */
import { assert, FactError } from '../errors.js';
import { forEachIndexEntry } from '../indexes/entries.js';
import type { TailChunk, UnappliedTail } from '../query/tail.js';
import { putAcks, type ConsumerAck } from '../storage/commit-record.js';
import { ledgerKey, metaKey, u64Pair } from '../storage/keys.js';
import type { BatchFactory, ByteArena } from '../storage/level.js';
import type { Wal } from '../wal/wal.js';
import type { LedgerState } from './state.js';

/** The apply starts once this many events wait, or after APPLY_DELAY_MS: LevelDB batches amortise their fixed cost. */
export const APPLY_BATCH_EVENTS = 512;
export const APPLY_DELAY_MS = 2;

export class Applier {
  readonly #wal: Wal;
  readonly #tail: UnappliedTail;
  readonly #newBatch: BatchFactory;
  readonly #arena: ByteArena;
  readonly #state: LedgerState;
  #run: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** An apply is due (full batch or delay over) but waits for the writer's WAL sync to overlap. */
  #due = false;
  /** The writer is planning a group: an apply started now would delay its WAL write. */
  #planning = false;
  /** Consumer acks of durable WAL records not yet in LevelDB, in LSN order. */
  #acks: { lsn: number; acks: readonly ConsumerAck[] }[] = [];

  constructor(wal: Wal, tail: UnappliedTail, newBatch: BatchFactory, arena: ByteArena, state: LedgerState) {
    this.#wal = wal;
    this.#tail = tail;
    this.#newBatch = newBatch;
    this.#arena = arena;
    this.#state = state;
  }

  /** The apply in progress, if any. */
  get running(): Promise<void> | null {
    return this.#run;
  }

  /** A durable record's acks: applied with the chunks of records up to it (or alone). */
  noteAcks(lsn: number, acks: readonly ConsumerAck[]): void {
    this.#acks.push({ lsn, acks });
    setImmediate(() => this.kick());
  }

  beginPlanning(): void {
    this.#planning = true;
  }

  /**
   * The group's WAL write is issued (its sync runs in the microtasks that follow): an apply that
   * became due while the group was planned starts in the next check phase, so building its batch
   * overlaps the disk's sync instead of lengthening the next append.
   */
  endPlanning(): void {
    this.#planning = false;
    if (this.#due || this.#tail.events >= APPLY_BATCH_EVENTS) setImmediate(() => this.kick());
  }

  /**
   * Starts the apply when it is due (a full batch waits, the delay is over, or `now`), else arms
   * the delay timer. A due apply waits while the writer plans a group (see endPlanning).
   */
  kick(now = false): void {
    if (this.#run || (this.#tail.chunkCount === 0 && this.#acks.length === 0) || this.#state.failure) return;
    if (!now && !this.#due && this.#tail.events < APPLY_BATCH_EVENTS) {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.#due = true;
        this.kick();
      }, APPLY_DELAY_MS).unref();
      return;
    }
    if (!now && this.#planning) {
      this.#due = true;
      return;
    }
    this.#due = false;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#run = this.#applyTail().finally(() => {
      this.#run = null;
      this.kick();
    });
  }

  /** Applies until the tail is empty, or the apply failed. */
  async applyAll(): Promise<void> {
    for (this.kick(true); this.#run; this.kick(true)) await this.#run;
  }

  /**
   * Applies the tail to LevelDB, everything waiting in one batch, again while a full batch waits
   * (less goes after the delay) and the writer is not planning a group (the next batch is then
   * built during its WAL sync). A failure loses nothing (the WAL holds every chunk, recovery
   * applies them) but stops all appends.
   */
  async #applyTail(): Promise<void> {
    const state = this.#state;
    for (let first = true; first || (this.#tail.events >= APPLY_BATCH_EVENTS && !this.#planning); first = false) {
      if (state.failure) return;
      const chunks = await this.#durableTailChunks();
      // Acks whose record is durable (each was noted once its record was): all of them, so that
      // LevelDB holds every record up to the newest LSN this batch names.
      const durableLsn = this.#wal.durableLsn;
      let ackCount = 0;
      while (ackCount < this.#acks.length && this.#acks[ackCount]!.lsn <= durableLsn) ackCount++;
      if (chunks.length === 0 && ackCount === 0) return;
      const batch = this.#newBatch();
      const put = (key: Uint8Array, value: Uint8Array) => batch.put(key, value);
      // Only the newest chunk of a stream in this batch writes the stream's version.
      const newestOfStream = new Map<string, TailChunk>();
      for (const chunk of chunks) newestOfStream.set(chunk.planned.stream, chunk);
      const texts = new Map<string, Uint8Array>();
      for (const chunk of chunks) {
        put(ledgerKey(chunk.firstPosition, this.#arena.allocate), chunk.bytes);
        forEachIndexEntry(chunk.planned, chunk.firstPosition, put, state.applyDataFields, newestOfStream.get(chunk.planned.stream) === chunk, this.#arena.allocate, texts);
      }
      const newest = chunks.at(-1);
      const last = newest === undefined ? state.appliedHead : newest.firstPosition + newest.planned.tuples.length - 1;
      let lsn = newest?.lsn ?? 0;
      for (let index = 0; index < ackCount; index++) {
        const logged = this.#acks[index]!;
        putAcks(batch, logged.acks);
        lsn = Math.max(lsn, logged.lsn);
      }
      put(metaKey('applied'), u64Pair(last, lsn));
      try {
        await batch.write();
      } catch (error) {
        state.fail(
          new FactError('FACT_IO', `LevelDB failed to apply logged events of ${state.path}; they are durable and will be applied when the database is reopened`, {
            cause: error,
          }),
        );
        return;
      }
      assert(newest === undefined || last > state.appliedHead, 'applied positions only grow');
      this.#tail.dropApplied(chunks.length);
      this.#acks.splice(0, ackCount);
      state.appliedHead = last;
      state.appliedLsn = Math.max(state.appliedLsn, lsn);
    }
  }

  /**
   * The oldest chunks of the tail whose WAL record is durable (syncing the WAL when neither they
   * nor the oldest pending acks are): LevelDB, which makes its tables
   * durable on its own, must never hold an event that a power loss can take from the WAL, or the
   * database would not open again (recovery row 6). With sync 'none' appends resolve before
   * their record is synced: the apply then asks the WAL for a sync (appends never wait for it).
   */
  async #durableTailChunks(): Promise<readonly TailChunk[]> {
    let chunks = this.#tail.chunks;
    const oldestLsn = Math.min(chunks[0]?.lsn ?? Number.POSITIVE_INFINITY, this.#acks[0]?.lsn ?? Number.POSITIVE_INFINITY);
    if (oldestLsn !== Number.POSITIVE_INFINITY && oldestLsn > this.#wal.durableLsn) {
      try {
        await this.#wal.sync();
      } catch (error) {
        this.#state.fail(
          new FactError('FACT_WAL_POISONED', `the write-ahead log of ${this.#state.path} failed to sync; no further appends are accepted until the database is reopened`, {
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
}
