import type { EventReader, RecordedEvent } from '../model/types.js';

/**
 * One read: iterable once, lazily started, with toArray() for convenience. `source` starts the
 * streaming read; `all`, when given, reads everything at once (MergedReads.readAll) for toArray().
 */
export class EventStream implements EventReader {
  readonly #source: () => AsyncIterator<RecordedEvent>;
  readonly #all: (() => Promise<RecordedEvent[]>) | undefined;
  #started = false;

  constructor(source: () => AsyncIterator<RecordedEvent>, all?: () => Promise<RecordedEvent[]>) {
    this.#source = source;
    this.#all = all;
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    if (this.#started) throw new TypeError('a read can be iterated only once; call read() again');
    this.#started = true;
    return this.#source();
  }

  async toArray(): Promise<RecordedEvent[]> {
    if (this.#all !== undefined) {
      if (this.#started) throw new TypeError('a read can be iterated only once; call read() again');
      this.#started = true;
      return this.#all();
    }
    const events: RecordedEvent[] = [];
    for await (const event of this) events.push(event);
    return events;
  }
}

/**
 * The events of a source of batches, one at a time, without a generator step per event: next()
 * hands out the current batch's events as resolved promises and awaits the source only for the
 * next batch. The signal is checked before every event, as `abortable` does; an abort or an
 * early return closes the source (and the LevelDB iterator behind it).
 */
export class FlatEvents implements AsyncIterator<RecordedEvent> {
  readonly #batches: AsyncGenerator<RecordedEvent[]>;
  readonly #signal: AbortSignal | undefined;
  #batch: RecordedEvent[] = [];
  #index = 0;

  constructor(batches: AsyncGenerator<RecordedEvent[]>, signal: AbortSignal | undefined) {
    this.#batches = batches;
    this.#signal = signal;
  }

  next(): Promise<IteratorResult<RecordedEvent>> {
    if (this.#signal?.aborted) return this.#abort();
    if (this.#index < this.#batch.length) return Promise.resolve({ value: this.#batch[this.#index++]!, done: false });
    return this.#nextBatch();
  }

  async return(): Promise<IteratorResult<RecordedEvent>> {
    this.#batch = [];
    await this.#batches.return(undefined);
    return { value: undefined, done: true };
  }

  async #nextBatch(): Promise<IteratorResult<RecordedEvent>> {
    for (;;) {
      const step = await this.#batches.next();
      if (step.done) return { value: undefined, done: true };
      if (this.#signal?.aborted) return this.#abort();
      this.#batch = step.value;
      this.#index = 0;
      if (this.#batch.length > 0) return { value: this.#batch[this.#index++]!, done: false };
    }
  }

  async #abort(): Promise<never> {
    const reason: unknown = this.#signal!.reason;
    await this.return();
    throw reason;
  }
}
