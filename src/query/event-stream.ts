import type { EventReader, RecordedEvent } from '../model/types.js';

/** One read: iterable once, lazily started, with toArray() for convenience. */
export class EventStream implements EventReader {
  readonly #source: AsyncGenerator<RecordedEvent>;
  #started = false;

  constructor(source: AsyncGenerator<RecordedEvent>) {
    this.#source = source;
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    if (this.#started) throw new TypeError('a read can be iterated only once; call read() again');
    this.#started = true;
    return this.#source;
  }

  async toArray(): Promise<RecordedEvent[]> {
    const events: RecordedEvent[] = [];
    for await (const event of this) events.push(event);
    return events;
  }
}
