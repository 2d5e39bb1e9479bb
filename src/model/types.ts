/** Public types of the database. */

/** An event as given to append. */
export interface EventInput {
  type: string;
  data?: unknown;
  metadata?: Record<string, unknown>;
  tags?: readonly string[];
  /** A UUID is generated when absent. Re-appending an id with identical content is a no-op. */
  id?: string;
}

/** An event as reads return it. */
export interface RecordedEvent {
  id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  tags: string[];
  /** Global store position: 1-based, gapless, in commit order. */
  position: number;
  /** Milliseconds since the epoch; one value for all events of one append. */
  timestamp: number;
  stream?: string;
  streamPosition?: number;
}

export interface AppendResult {
  /** Position of the last event written. */
  position: number;
  count: number;
}

export interface StreamAppendResult extends AppendResult {
  /** Stream position (version) of the last event written. */
  streamPosition: number;
}

/** 'any' (default), 'none' (stream must not exist), 'exists', or the current version (0 = no stream). */
export type StreamExpectation = 'any' | 'none' | 'exists' | number;

export type ReadDirection = 'forward' | 'backward';

export interface ReadOptions {
  /** Inclusive start: a stream position for `{ stream }`, else a store position. */
  from?: number;
  direction?: ReadDirection;
  limit?: number;
  /** Stops the read; the iterator then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** An async iterable of events that can also be collected. */
export interface EventReader extends AsyncIterable<RecordedEvent> {
  toArray(): Promise<RecordedEvent[]>;
}

export interface SubscribeOptions {
  /**
   * Where to start: 'start' (the default), an inclusive position (a stream position for
   * `{ stream }`), or 'end' (only events committed after subscribing).
   */
  from?: 'start' | 'end' | number;
  /** Ends the subscription (its iteration finishes, as with close()). */
  signal?: AbortSignal;
}

/**
 * The history of a source, then its live events as they commit: each matching event once, in
 * position order, no gaps. Iterable once.
 */
export interface Subscription extends AsyncIterableIterator<RecordedEvent>, AsyncDisposable {
  /**
   * Resolves with the store position it caught up to, once every event of the history (up to
   * the head when it first ran out of events) was handed out; rejects with FACT_CLOSED if the
   * subscription ends first.
   */
  readonly caughtUp: Promise<number>;
  /** Position of the last event handed out (0 before the first). */
  readonly position: number;
  /** Ends the iteration (a pending next() resolves done); resolves once it holds no read. */
  close(): Promise<void>;
}

export interface ConsumerOptions {
  /**
   * true (the default): asking for the next event acknowledges the one before it, in the
   * background and batched (an ack is durable with the next group commit); close() waits for
   * those. false: only ack() acknowledges.
   */
  autoAck?: boolean;
  /** Ends the consumer, as close() does. */
  signal?: AbortSignal;
}

/**
 * A durable consumer: a subscription that starts after the last position its name
 * acknowledged, and acknowledges durably (at-least-once delivery; exactly-once for effects
 * appended with `ack`).
 */
export interface Consumer extends Subscription {
  readonly name: string;
  /** The durable acknowledged position (0 when none). */
  readonly acknowledged: number;
  /** Acknowledges `position` (default: the last event handed out); resolves once durable. */
  ack(position?: number): Promise<void>;
}

/** A consumer's acknowledgement made durable together with an append's events. */
export interface AckOption {
  consumer: string;
  position: number;
}

export interface ConsumerInfo {
  name: string;
  /** Acknowledged position. */
  position: number;
  /** head − position. */
  lag: number;
  /** Whether a consumer of this name is open in this process. */
  live: boolean;
}

/** What a decider is given besides the events. */
export interface DecisionContext {
  /** 1 for the first call; a later call follows a conflict of an asynchronous decision. */
  attempt: number;
  /** The signal passed to decide(), if any. */
  signal: AbortSignal | undefined;
}

/** The events to append (none: null, undefined or an empty list), or a promise of them. */
export type Decision = EventInput | readonly EventInput[] | null | undefined | void;

/**
 * Given the events matching the decision's query (read-only, in position order), returns the
 * events to append. A synchronous decider runs in the writer's turn, on exact state, and never
 * conflicts; an asynchronous one is appended with the query as condition and retried.
 */
export type Decider = (events: readonly RecordedEvent[], context: DecisionContext) => Decision | PromiseLike<Decision>;

export interface DecideOptions {
  /** Attempts of an asynchronous decision before its conflict is surfaced (default 10). */
  maxAttempts?: number;
  /** Stops waiting for an asynchronous decider and its retries; decide() rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface DecideResult {
  /** The append the decision made, or null when it returned no events. */
  appended: AppendResult | null;
  /** The newest position the (last) decision saw: its events are every match up to here. */
  decidedAt: number;
  /** Decider calls it took (1 unless an asynchronous decision conflicted). */
  attempts: number;
}
