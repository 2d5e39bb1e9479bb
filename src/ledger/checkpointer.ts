/**
 * Checkpoints: a durability barrier makes LevelDB durable up to the applied WAL record, then the
 * WAL may drop what came before it (docs/storage-format.md, "Checkpoints"). A failed barrier
 * stops the store for good; nothing is lost, the next open replays the WAL.
 */
import { FactError, isFactError } from '../errors.js';
import type { BoundBarrier } from '../storage/barrier.js';
import type { Wal } from '../wal/wal.js';
import type { LedgerState } from './state.js';

/**
 * 32 MiB of logged payload: each checkpoint's barrier flushes LevelDB's memtable, so checkpoints
 * closer than LEVEL_WRITE_BUFFER_SIZE_BYTES (storage/level.ts) would make the small level-0
 * tables a larger write buffer avoids. After a crash, open replays at most about this much WAL.
 */
export const DEFAULT_CHECKPOINT_EVERY_BYTES = 32 * 1024 * 1024;

export class Checkpointer {
  readonly #wal: Wal;
  readonly #barrier: BoundBarrier;
  readonly #state: LedgerState;
  readonly #everyBytes: number;
  #bytesSinceCheckpoint = 0;
  #run: Promise<void> | null = null;
  /** The first failed barrier: the store stopped, and close reports it. */
  #barrierFailure: FactError | null = null;

  constructor(wal: Wal, barrier: BoundBarrier, state: LedgerState, everyBytes: number) {
    this.#wal = wal;
    this.#barrier = barrier;
    this.#state = state;
    this.#everyBytes = everyBytes;
  }

  get barrierFailure(): FactError | null {
    return this.#barrierFailure;
  }

  /** The background checkpoint in progress, if any (it never rejects). */
  get running(): Promise<void> | null {
    return this.#run;
  }

  /** Counts a logged commit record; starts a checkpoint in the background every `everyBytes`. */
  noteLogged(sizeBytes: number): void {
    this.#bytesSinceCheckpoint += sizeBytes;
    if (this.#bytesSinceCheckpoint < this.#everyBytes || this.#run) return;
    this.#bytesSinceCheckpoint = 0;
    this.#run = this.checkpoint()
      .catch(() => {
        // A failed checkpoint loses nothing: the WAL keeps every record since the last one. A
        // failed barrier has stopped the store (makeDurable), and close reports it.
      })
      .finally(() => {
        this.#run = null;
      });
  }

  /** Barrier (LevelDB durable up to the applied LSN), then tell the WAL; never past a failed barrier. */
  async checkpoint(): Promise<void> {
    if (this.#barrierFailure) throw this.#barrierFailure;
    const lsn = this.#state.appliedLsn;
    if (lsn <= this.#wal.checkpointLsn) return;
    await this.makeDurable();
    await this.#wal.checkpoint(lsn);
  }

  /**
   * The barrier. A failure stops the store like a failed apply: LevelDB then refuses writes
   * anyway (its background error sticks until reopened), and a later barrier that succeeds
   * would not prove that what this one covered survived.
   */
  async makeDurable(): Promise<void> {
    if (this.#barrierFailure) throw this.#barrierFailure;
    try {
      await this.#barrier();
    } catch (error) {
      const failure = isFactError(error) ? error : new FactError('FACT_IO', `the durability barrier of ${this.#state.path} failed`, { cause: error });
      this.#barrierFailure ??= failure;
      this.#state.fail(failure);
      throw failure;
    }
  }
}
