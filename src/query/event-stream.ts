import type { EventReader, RecordedEvent } from '../model/types.js';

/**
 * One read: iterable once, lazily started, with toArray() for convenience. `source` starts the
 * streaming read; `all`, when given, reads everything at once (MergedReads.readAll) for toArray().
 */
export class EventStream implements EventReader {
  readonly #source: () => AsyncGenerator<RecordedEvent>;
  readonly #all: (() => Promise<RecordedEvent[]>) | undefined;
  #started = false;

  constructor(source: () => AsyncGenerator<RecordedEvent>, all?: () => Promise<RecordedEvent[]>) {
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
