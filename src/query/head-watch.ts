/**
 * Wakes whoever waits for the head to move: one promise per generation, replaced at every
 * commit, so a commit costs the same however many subscribers wait.
 */
export class HeadWatch {
  #moved: Promise<void>;
  #wake!: () => void;
  #ended = false;

  constructor() {
    this.#moved = this.#nextGeneration();
  }

  /**
   * Resolves at the next commit (or when the store ends). Take it in the same synchronous step
   * as reading the head: a commit in between is then never missed.
   */
  next(): Promise<void> {
    return this.#moved;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The head moved (the writer, after a group became durable and visible). */
  moved(): void {
    if (this.#ended) return;
    const wake = this.#wake;
    this.#moved = this.#nextGeneration();
    wake();
  }

  /** The store is closing: every waiter wakes, and nothing waits again. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  #nextGeneration(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }
}
