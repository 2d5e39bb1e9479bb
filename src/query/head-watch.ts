/**
 * Wakes whoever waits for the head to move: one promise per generation, replaced at every
 * commit, so a commit costs the same however many subscribers wait.
 */
/** The longest delay a timer takes: the keep-alive never fires. */
const KEEP_ALIVE_INTERVAL_MS = 2 ** 31 - 1;

export class HeadWatch {
  #moved: Promise<void>;
  #wake!: () => void;
  #ended = false;
  #waiting = 0;
  /** A pending promise holds no handle: while someone waits, this timer keeps Node running, as a socket would. */
  #keepAlive: ReturnType<typeof setInterval> | null = null;

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
    this.#stopKeepAlive();
  }

  /** A waiter starts waiting (a subscription with nothing to hand out): the process stays alive. */
  hold(): void {
    if (this.#ended) return;
    if (this.#waiting++ === 0) this.#keepAlive ??= setInterval(() => undefined, KEEP_ALIVE_INTERVAL_MS);
  }

  release(): void {
    if (this.#waiting > 0 && --this.#waiting === 0) this.#stopKeepAlive();
  }

  #stopKeepAlive(): void {
    if (this.#keepAlive !== null) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
  }

  #nextGeneration(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }
}
