/** An append as the writer queues, plans and logs it. */
import { invalid, shown, type FactError } from '../errors.js';
import { commitChunkSizeBytes, recordSizeBytes, type ConsumerAck } from '../storage/commit-record.js';
import type { DecodedChunk, EncodedEvents } from '../model/chunk.js';
import { Query, type AppendCondition } from '../model/query.js';
import type { AppendResult, Decider, StreamAppendResult, StreamExpectation } from '../model/types.js';
import type { PreparedEvents } from '../model/validation.js';

export interface CheckedCondition {
  query: Query;
  after: number;
}

export interface VersionPrefetch {
  /** The stream's version in LevelDB when read; undefined if the read failed. */
  version: Promise<number | undefined>;
  /** StreamVersions' epoch when read: a different epoch means the cache may have lost a later write. */
  epoch: number;
}

/**
 * What db.decide() queues: the writer reads the query's events and calls the decider while it
 * plans the group (docs/architecture.md, "Decisions"); the events it returns are planned there.
 */
export interface DecisionRequest {
  query: Query;
  decider: Decider;
  attempt: number;
  signal: AbortSignal | undefined;
  /** Set when planned: what came of the decision. */
  outcome: DecisionOutcome | null;
}

/**
 * `decidedAt`: the newest position the decision saw (the committed head and the group's earlier
 * appends). 'outside': the decider returned a promise, or events with ids of the caller's (whose
 * retry check needs a read): decide() appends them with the query as condition after `decidedAt`.
 */
export type DecisionOutcome =
  | { kind: 'appended'; decidedAt: number }
  | { kind: 'nothing'; decidedAt: number }
  | { kind: 'outside'; decidedAt: number; output: unknown };

export interface AppendRequest {
  method: 'append' | 'appendStream' | 'decide' | 'ack';
  stream: string;
  expect: StreamExpectation;
  condition: CheckedCondition | null;
  /** A decision's events are known once planned (empty until then). */
  decision: DecisionRequest | null;
  events: PreparedEvents;
  /** What the append's chunks add to a commit record (commitChunkSizeBytes), reckoned once. */
  chunksSizeBytes: number;
  /** Consumer acks durable together with the events (WAL record type 3); null for none. */
  acks: ConsumerAck[] | null;
  /** What the acks add to the record (ackSizeBytes). */
  acksSizeBytes: number;
  timestamp: number;
  /** The stream's stored version, read while the append was validated (StreamVersions.prefetch). */
  versionPrefetch: VersionPrefetch | null;
  /** Plain appends resolve with { position, count }, stream appends also with streamPosition. */
  resolve: (result: AppendResult | StreamAppendResult) => void;
  reject: (error: Error) => void;
}

/** A chunk of a planned append: its bytes are written into the group's commit record (CommitChunk). */
export interface PlannedChunk {
  firstPosition: number;
  /** The header, and the tuples as the ledger holds them. */
  header: DecodedChunk;
  streamBytes: Uint8Array;
  events: EncodedEvents;
}

export interface PlannedAppend {
  request: AppendRequest;
  firstPosition: number;
  firstStreamPosition: number;
  chunks: PlannedChunk[];
}

export function checkCondition(value: unknown, method: string): CheckedCondition | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null) throw invalid(`${method}: condition must be an object { failIfEventsMatch, after? }`);
  const { failIfEventsMatch, after } = value as AppendCondition;
  if (!(failIfEventsMatch instanceof Query)) throw invalid(`${method}: condition.failIfEventsMatch must be a Query (Query.items(...), Query.tags(...), …)`);
  if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) throw invalid(`${method}: condition.after must be an integer ≥ 0, got ${shown(after)}`);
  return { query: failIfEventsMatch, after: after ?? 0 };
}

/**
 * What an append's chunks add to a commit record (commitChunkSizeBytes), or the error refusing
 * it when its record alone (with its acks) would exceed the WAL's limit: refused before it
 * reaches the WAL, which would refuse it by failing for good.
 */
export function sizeAppend(method: string, events: PreparedEvents, streamSizeBytes: number, maxRecordSizeBytes: number, acksSizeBytes = 0): number | FactError {
  let chunksSizeBytes = 0;
  for (const chunk of events.chunks) chunksSizeBytes += commitChunkSizeBytes(streamSizeBytes, chunk.events.ends.length, chunk.events.bytes.length);
  const recordBytes = recordSizeBytes(chunksSizeBytes, acksSizeBytes);
  if (recordBytes <= maxRecordSizeBytes) return chunksSizeBytes;
  return invalid(`${method}: the append needs a ${recordBytes}-byte WAL record, above the WAL's maxRecordSizeBytes ${maxRecordSizeBytes}`, {
    sizeBytes: recordBytes,
    maxRecordSizeBytes,
  });
}
