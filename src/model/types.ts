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
