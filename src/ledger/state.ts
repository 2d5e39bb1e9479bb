/**
 * The positions and switches the write path's parts share (one object, so that each part reads
 * the current value, never a copy), and the store's stop: the first failure that ends appends.
 */
import type { FactError } from '../errors.js';

export class LedgerState {
  readonly path: string;
  /** Last durable position: visible to reads (from LevelDB or the unapplied tail). */
  head = 0;
  /** Last position and WAL record applied to LevelDB. */
  appliedHead = 0;
  appliedLsn = 0;
  /** Next position to plan; ahead of `head` while a group is in flight. */
  nextPosition = 1;
  /** Data fields with a complete index, in order; recorded under `M dataFields`. */
  dataFields: string[] = [];
  /** Data fields whose entries the write path writes: `dataFields` and those being built. */
  applyDataFields: string[] = [];
  #failure: FactError | null = null;
  readonly #onFailure: ((failure: FactError) => void)[] = [];

  constructor(path: string) {
    this.path = path;
  }

  /** The first failure: no append is accepted after it until the database is reopened. */
  get failure(): FactError | null {
    return this.#failure;
  }

  /** Stops the store (the first failure sticks) and tells every listener, each time. */
  fail(error: FactError): FactError {
    this.#failure ??= error;
    for (const listener of this.#onFailure) listener(this.#failure);
    return this.#failure;
  }

  onFailure(listener: (failure: FactError) => void): void {
    this.#onFailure.push(listener);
  }
}
