/**
 * Planning a group: the reads its checks need, then in call order each append's expectation,
 * condition, id and retry checks, its positions and its chunks. An append that fails a check is
 * rejected here and writes nothing; the others are planned as if it had not been.
 */
import { readU64BE, utf8 } from '../bytes.js';
import { asError, assert, FactError, invalid } from '../errors.js';
import { CHUNK_KIND_APPEND_CONTINUED, CHUNK_KIND_APPEND_FIRST, decodeEncodedEvents, recordedEventOf, type DecodedChunk, type EventTuple } from '../model/chunk.js';
import { matchesQuery, type Query } from '../model/query.js';
import { prepareEvents, type PreparedEvents } from '../model/validation.js';
import { freezeEvent, type DecisionReads } from '../query/decision-reads.js';
import { recordSizeBytes } from '../storage/commit-record.js';
import type { GeneratedIds } from '../model/ids.js';
import type { AppendResult, RecordedEvent, StreamExpectation } from '../model/types.js';
import type { LedgerReader } from '../query/ledger-reader.js';
import type { MergedReads } from '../query/merged-reads.js';
import type { UnappliedTail } from '../query/tail.js';
import { KeySpace, nameKey } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import { latestPlannedMatch, type ConflictCheck } from './conflicts.js';
import { sizeAppend, type AppendRequest, type PlannedAppend, type PlannedChunk } from './requests.js';
import { isOneAppend, type ChunkSpan, type ChunkSpanAt } from './retry.js';
import type { LedgerState } from './state.js';
import type { StreamVersions } from './stream-versions.js';
import { canonicalBytes } from '../model/canonical.js';

/** Stored state a group's checks read (see Planner.read). */
export interface PlanReads {
  /**
   * Positions and stored events of the caller-chosen ids that exist, and the ids the caller may
   * not choose: this database's generated form for a position not yet committed (ids.ts).
   */
  existingIds: { positions: ReadonlyMap<string, number>; events: ReadonlyMap<number, RecordedEvent>; reserved: ReadonlySet<string>; spanAt: ChunkSpanAt };
  /** Per request, the newest committed position matching its condition (0: none); null without conditions. */
  committedConflicts: number[] | null;
  /** Per request, the committed events matching its decision's query; null without decisions. */
  decisionEvents: (readonly RecordedEvent[] | null)[] | null;
}

const NOTHING_READ: PlanReads = {
  existingIds: { positions: new Map(), events: new Map(), reserved: new Set(), spanAt: () => undefined },
  committedConflicts: null,
  decisionEvents: null,
};

/** How large a group's commit record may grow (Writer: the WAL's and the unapplied tail's limits). */
export interface PlanLimits {
  groupBytes: number;
  recordBytes: number;
}

export interface Plan {
  planned: PlannedAppend[];
  /** Requests left for the next group, in order: a decision's events did not fit this one. */
  deferred: AppendRequest[];
  /**
   * Requests settled after seeing this group's planned appends (a decision that appends nothing
   * or goes on outside, a conflict, a failed expectation, an id being appended): a crash or a
   * failed fdatasync could still undo what they saw, so they settle only once the group is
   * durable, like its appends, and fail with it.
   */
  settleWhenDurable: { request: AppendRequest; result: AppendResult | FactError }[];
}

/** Resolves or rejects a request with what planning decided for it. */
export function settleRequest(request: AppendRequest, result: AppendResult | FactError): void {
  if (result instanceof FactError) request.reject(result);
  else request.resolve(result);
}

export interface PlannerParts {
  db: LevelDatabase;
  reader: LedgerReader;
  reads: MergedReads;
  tail: UnappliedTail;
  ids: GeneratedIds;
  state: LedgerState;
  versions: StreamVersions;
  conflicts: ConflictCheck;
  decisionReads: DecisionReads;
}

export class Planner {
  readonly #parts: PlannerParts;

  constructor(parts: PlannerParts) {
    this.#parts = parts;
  }

  /**
   * Reads what the group's checks need that memory does not hold: stream versions not cached,
   * stored events of caller-chosen ids, condition matches. Most groups need none of it, and then
   * nothing here awaits (an await costs microseconds, a tenth of a lone writer's append besides
   * its fdatasync).
   */
  read(group: AppendRequest[]): Promise<PlanReads> | PlanReads {
    const { state, versions, conflicts, decisionReads } = this.#parts;
    let streamsMissing = false;
    let callerIds = false;
    let conditions = false;
    let decisions = false;
    for (const request of group) {
      if (request.decision) decisions = true;
      if (request.condition) {
        conditions = true;
        assert(
          request.condition.query.dataFields.every((field) => state.dataFields.includes(field)),
          'a condition is queued once its data indexes are built (FactStore.append)',
        );
      }
      if (request.stream !== '' && !versions.has(request.stream)) streamsMissing = true;
      if (request.events.callerIds) callerIds = true;
    }
    if (!streamsMissing && !callerIds && !conditions && !decisions) return NOTHING_READ;
    return (async () => {
      if (streamsMissing) await versions.load(group);
      const existingIds = callerIds ? await this.#lookUpIds(group) : NOTHING_READ.existingIds;
      // Committed conflicts: LevelDB and the unapplied tail hold every committed event.
      const committedConflicts = conditions
        ? await Promise.all(group.map((request) => (request.condition ? conflicts.latestMatch(request.condition.query, request.condition.after) : Promise.resolve(0))))
        : null;
      // Every committed match: no group becomes durable while this one is planned.
      const decisionEvents = decisions
        ? await Promise.all(group.map((request) => (request.decision ? decisionReads.matching(request.decision.query, state.head) : Promise.resolve(null))))
        : null;
      return { existingIds, committedConflicts, decisionEvents };
    })();
  }

  /** Expectation and id checks in call order, each seeing the committed state and the group's earlier appends. */
  plan(group: AppendRequest[], reads: PlanReads, limits: PlanLimits): Plan {
    const { state, versions } = this.#parts;
    const { existingIds, committedConflicts, decisionEvents } = reads;
    const groupIds = new Set<string>();
    const planned: PlannedAppend[] = [];
    let plannedBytes = 0;
    let plannedAcksBytes = 0;
    const settleWhenDurable: Plan['settleWhenDurable'] = [];
    const settle = (request: AppendRequest, result: AppendResult | FactError) => {
      if (planned.length === 0) settleRequest(request, result);
      else settleWhenDurable.push({ request, result });
    };
    for (let requestIndex = 0; requestIndex < group.length; requestIndex++) {
      const request = group[requestIndex]!;
      if (request.decision && !this.#decide(request, decisionEvents![requestIndex]!, planned, limits, settle)) continue;
      // Decided sizes were not known when the group was taken: what no longer fits waits, in order.
      if (planned.length > 0 && recordSizeBytes(plannedBytes + request.chunksSizeBytes, plannedAcksBytes + request.acksSizeBytes) > limits.groupBytes) {
        return { planned, deferred: group.slice(requestIndex), settleWhenDurable };
      }
      const { events } = request;
      const reserved = existingIds.reserved.size > 0 ? events.ids.find((id) => id !== null && existingIds.reserved.has(id)) : undefined;
      if (reserved !== undefined) {
        request.reject(
          invalid(`${request.method}: event id ${reserved} has the form of the ids this database generates, for a position not yet written; choose another id`, {
            id: reserved,
          }),
        );
        continue;
      }
      if (existingIds.positions.size > 0) {
        const existing = events.ids.map((id) => (id === null ? undefined : existingIds.positions.get(id)));
        if (existing.some((position) => position !== undefined)) {
          settleRetry(request, existing, existingIds.events, existingIds.spanAt);
          continue;
        }
      }
      // Generated UUIDs collide with nothing: only caller-chosen ids can repeat within a group.
      const duplicate = events.callerIds ? events.ids.find((id) => id !== null && groupIds.has(id)) : undefined;
      if (duplicate !== undefined) {
        settle(
          request,
          new FactError('FACT_DUPLICATE_EVENT_ID', `${request.method}: event id ${duplicate} is already being appended by a concurrent append`, {
            details: { id: duplicate },
          }),
        );
        continue;
      }
      if (request.condition) {
        // Conflicts among the earlier appends of this group, checked in memory.
        const conflict = Math.max(committedConflicts?.[requestIndex] ?? 0, latestPlannedMatch(planned, request.condition));
        if (conflict > 0) {
          settle(
            request,
            new FactError(
              'FACT_CONCURRENCY',
              `${request.method}: condition failed: the event at position ${conflict} matches failIfEventsMatch and came after position ${request.condition.after}`,
              { details: { expected: request.condition.after, actual: conflict, ...(request.stream !== '' ? { stream: request.stream } : {}) } },
            ),
          );
          continue;
        }
      }
      let firstStreamPosition = 0;
      if (request.stream !== '') {
        const version = versions.get(request.stream);
        const violation = expectationViolation(request.expect, version);
        if (violation) {
          settle(
            request,
            new FactError('FACT_CONCURRENCY', `appendStream: stream ${request.stream} ${violation} (expected ${String(request.expect)}, actual version ${version})`, {
              details: { stream: request.stream, expected: request.expect, actual: version },
            }),
          );
          continue;
        }
        firstStreamPosition = version + 1;
        versions.set(request.stream, version + events.count);
      }
      if (events.callerIds) for (const id of events.ids) if (id !== null) groupIds.add(id);
      const firstPosition = state.nextPosition;
      state.nextPosition += events.count;
      planned.push({ request, firstPosition, firstStreamPosition, chunks: this.#chunks(request, firstPosition, firstStreamPosition) });
      plannedBytes += request.chunksSizeBytes;
      plannedAcksBytes += request.acksSizeBytes;
    }
    return { planned, deferred: [], settleWhenDurable };
  }

  /**
   * Runs a decision on exact state: the committed matches and those of the group's earlier
   * appends. True when it returned events to plan now (request.events is then set); otherwise
   * the request is settled here.
   */
  #decide(
    request: AppendRequest,
    committed: readonly RecordedEvent[],
    planned: readonly PlannedAppend[],
    limits: PlanLimits,
    settle: (request: AppendRequest, result: AppendResult) => void,
  ): boolean {
    const decision = request.decision!;
    const decidedAt = this.#parts.state.nextPosition - 1;
    const nothing = () => settle(request, { position: decidedAt, count: 0 });
    if (decision.signal?.aborted) {
      request.reject(asError(decision.signal.reason));
      return false;
    }
    const earlier = planned.length === 0 ? [] : this.#plannedMatches(planned, decision.query);
    let output: unknown;
    try {
      output = decision.decider(earlier.length === 0 ? committed : [...committed, ...earlier], { attempt: decision.attempt, signal: decision.signal });
    } catch (error) {
      request.reject(asError(error));
      return false;
    }
    if (isThenable(output)) {
      decision.outcome = { kind: 'outside', decidedAt, output };
      nothing();
      return false;
    }
    if (output === null || output === undefined || (Array.isArray(output) && output.length === 0)) {
      decision.outcome = { kind: 'nothing', decidedAt };
      nothing();
      return false;
    }
    let events: PreparedEvents;
    try {
      events = prepareEvents(output, 'decide');
    } catch (error) {
      request.reject(asError(error));
      return false;
    }
    if (events.callerIds) {
      // Ids of the caller's may make it a retry, which only a read can tell: appended by decide().
      decision.outcome = { kind: 'outside', decidedAt, output };
      nothing();
      return false;
    }
    const chunksSizeBytes = sizeAppend('decide', events, 0, limits.recordBytes);
    if (typeof chunksSizeBytes !== 'number') {
      request.reject(chunksSizeBytes);
      return false;
    }
    request.events = events;
    request.chunksSizeBytes = chunksSizeBytes;
    decision.outcome = { kind: 'appended', decidedAt };
    return true;
  }

  /** Events of the group's planned appends that match `query`, as the ledger will hold them, read-only. */
  #plannedMatches(planned: readonly PlannedAppend[], query: Query): RecordedEvent[] {
    const { ids } = this.#parts;
    const matches: RecordedEvent[] = [];
    for (const append of planned) {
      for (const chunk of append.chunks) {
        // The header's types and tags are the ledger's; its data is where data fields matter (#chunks).
        let decoded: EventTuple[] | null = null;
        chunk.header.tuples.forEach((tuple, index) => {
          const [, type, data, , tags] = tuple;
          if (!matchesQuery(query, { type, tags, data })) return;
          decoded ??= decodeEncodedEvents(chunk.events, `the chunk planned at position ${chunk.firstPosition}`);
          const event = recordedEventOf(chunk.header, decoded[index]!, chunk.firstPosition, index, ids);
          freezeEvent(event);
          matches.push(event);
        });
      }
    }
    return matches;
  }

  #chunks(request: AppendRequest, firstPosition: number, firstStreamPosition: number): PlannedChunk[] {
    const { applyDataFields } = this.#parts.state;
    const chunks: PlannedChunk[] = [];
    const streamBytes = utf8(request.stream);
    let chunkFirst = firstPosition;
    let chunkStreamPosition = firstStreamPosition;
    for (const chunk of request.events.chunks) {
      // Data indexes and condition checks must see what the ledger holds (the bytes encoded when
      // append was called), not the caller's objects: changed since, or not round-tripping.
      const tuples = applyDataFields.length > 0 ? decodeEncodedEvents(chunk.events, `the chunk planned at position ${chunkFirst}`) : chunk.tuples;
      const kind = chunkFirst === firstPosition ? CHUNK_KIND_APPEND_FIRST : CHUNK_KIND_APPEND_CONTINUED;
      const header = { kind, timestamp: request.timestamp, stream: request.stream, firstStreamPosition: request.stream === '' ? 0 : chunkStreamPosition, tuples };
      chunks.push({ firstPosition: chunkFirst, header, streamBytes, events: chunk.events });
      chunkFirst += chunk.tuples.length;
      chunkStreamPosition += chunk.tuples.length;
    }
    return chunks;
  }

  /**
   * Stored positions and events of the caller-chosen ids of the group that already exist, and the
   * ids among them that are reserved. Caller ids are indexed (or in the tail); an id in this
   * database's generated form names its position, whose event has it if its id was generated.
   */
  async #lookUpIds(group: AppendRequest[]): Promise<PlanReads['existingIds']> {
    const { db, tail, ids: generated, state, reads } = this.#parts;
    const ids = new Set<string>();
    for (const request of group) if (request.events.callerIds) for (const id of request.events.ids) if (id !== null) ids.add(id);
    const positions = new Map<string, number>();
    const events = new Map<number, RecordedEvent>();
    const reserved = new Set<string>();
    if (ids.size === 0) return { positions, events, reserved, spanAt: NOTHING_READ.existingIds.spanAt };
    for (const [id, position] of tail.snapshot(state.appliedHead).idPositions(ids)) positions.set(id, position);
    const stored = [...ids].filter((id) => !positions.has(id));
    const values = await db.getMany<Uint8Array, Uint8Array>(
      stored.map((id) => nameKey(KeySpace.id, utf8(id))),
      VIEW,
    );
    const generatedForm: { id: string; position: number }[] = [];
    for (const [index, id] of stored.entries()) {
      const value = values[index];
      if (value !== undefined) {
        positions.set(id, readU64BE(value, 0));
        continue;
      }
      const position = generated.position(id);
      if (position === null) continue;
      // Later positions will be given exactly this id: a caller may not take it first.
      if (position > state.head) reserved.add(id);
      else generatedForm.push({ id, position });
    }
    // Retries are rare: fetch each stored event to compare its content.
    const fetch = new Set([...positions.values(), ...generatedForm.map((entry) => entry.position)]);
    for (const position of fetch) {
      const event = await reads.eventAt(position);
      if (event !== undefined) events.set(event.position, event);
    }
    // A generated-form id exists if its position's event has it (that event's id was generated).
    for (const { id, position } of generatedForm) if (events.get(position)?.id === id) positions.set(id, position);
    return { positions, events, reserved, spanAt: await this.#chunkSpans(events.keys()) };
  }

  /**
   * The chunks holding `positions` and their neighbours (a retry must be exactly one append, see
   * retry.ts): the unapplied tail first, else LevelDB's chunk at or before the position.
   */
  async #chunkSpans(positions: Iterable<number>): Promise<ChunkSpanAt> {
    const { tail: unapplied, state, reader } = this.#parts;
    const spans: ChunkSpan[] = [];
    const spanAt: ChunkSpanAt = (position) => spans.find((span) => span.first <= position && position < span.first + span.count);
    const tail = unapplied.snapshot(state.appliedHead);
    const spanOf = (first: number, chunk: DecodedChunk): ChunkSpan => ({
      first,
      count: chunk.tuples.length,
      kind: chunk.kind,
      timestamp: chunk.timestamp,
      stream: chunk.stream,
      firstStreamPosition: chunk.firstStreamPosition,
    });
    for (const position of positions) {
      for (const wanted of [position - 1, position, position + 1]) {
        if (wanted < 1 || wanted > state.head || spanAt(wanted) !== undefined) continue;
        const inTail = tail.chunkAt(wanted);
        if (inTail !== undefined) {
          spans.push(spanOf(inTail.firstPosition, inTail.planned));
          continue;
        }
        const stored = await reader.chunkAt(wanted);
        if (stored !== undefined) spans.push(spanOf(stored.first, stored.chunk));
      }
    }
    return spanAt;
  }
}

/** Some ids already exist: an identical retry returns the original result, anything else fails. */
function settleRetry(request: AppendRequest, existing: (number | undefined)[], storedEvents: ReadonlyMap<number, RecordedEvent>, spanAt: ChunkSpanAt): void {
  const { events } = request;
  const stored = existing.map((position) => (position === undefined ? undefined : storedEvents.get(position)));
  // Compared as the ledger would hold them: the decoded bytes, not the caller's objects.
  const tuples = events.chunks.flatMap((chunk) => decodeEncodedEvents(chunk.events, `the retried ${request.method}`));
  const mismatch = tuples.findIndex((tuple, index) => {
    const event = stored[index];
    return event === undefined || !sameEvent(tuple, request.stream, event) || (index > 0 && event.position !== stored[index - 1]!.position + 1);
  });
  // Identical events, but a retry must also be all of one append: not part of one, not parts of two.
  if (mismatch < 0 && !isOneAppend(stored[0]!.position, events.count, spanAt)) {
    const first = stored[0]!;
    request.reject(
      new FactError(
        'FACT_DUPLICATE_EVENT_ID',
        `${request.method}: events ${events.ids[0]} … exist at positions ${first.position} … ${first.position + events.count - 1}, but not as one append of exactly these events`,
        { details: { id: events.ids[0], position: first.position } },
      ),
    );
    return;
  }
  if (mismatch >= 0) {
    // Name an id that exists: for a partial retry, the first one that does.
    const partial = stored[mismatch] === undefined;
    const index = partial ? existing.findIndex((position) => position !== undefined) : mismatch;
    const id = events.ids[index]!;
    const position = existing[index];
    request.reject(
      new FactError(
        'FACT_DUPLICATE_EVENT_ID',
        `${request.method}: event id ${id} already exists at position ${position} ${partial ? 'but other events of this append do not' : 'with different content'}`,
        { details: { id, position } },
      ),
    );
    return;
  }
  const last = stored[stored.length - 1]!;
  request.resolve(
    request.stream === '' ? { position: last.position, count: events.count } : { position: last.position, count: events.count, streamPosition: last.streamPosition ?? 0 },
  );
}

function expectationViolation(expect: StreamExpectation, version: number): string | null {
  if (expect === 'any') return null;
  if (expect === 'none') return version === 0 ? null : 'already exists';
  if (expect === 'exists') return version > 0 ? null : 'does not exist';
  return version === expect ? null : 'is not at the expected version';
}

/** Same stream and same content in canonical form (object keys in any order). */
function sameEvent(tuple: EventTuple, stream: string, event: RecordedEvent): boolean {
  if ((event.stream ?? '') !== stream) return false;
  const stored: EventTuple = [event.id, event.type, event.data, event.metadata, event.tags];
  return Buffer.from(canonicalBytes(tuple)).equals(canonicalBytes(stored));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
