/**
 * The one writer: appends queue in call order, go in groups that share one WAL record (group
 * commit), resolve once it is durable, and wait while the unapplied tail is full (backpressure).
 * Maintenance pauses it for moments (`exclusive`); it never waits for maintenance otherwise.
 */
import { assert, FactError, ioError, isFactError } from '../errors.js';
import type { AppendResult, StreamAppendResult, StreamExpectation } from '../model/types.js';
import { prepareEvents, type PreparedEvents } from '../model/validation.js';
import type { TailChunk, UnappliedTail } from '../query/tail.js';
import { ackSizeBytes, encodeCommitChunks, encodeCommitWithAcks, recordSizeBytes, WAL_RECORD_COMMIT, WAL_RECORD_COMMIT_ACKS, type ConsumerAck } from '../storage/commit-record.js';
import type { ConsumerPositions } from './consumers.js';
import type { ByteArena } from '../storage/level.js';
import type { Wal } from '../wal/wal.js';
import type { Applier } from './applier.js';
import type { Checkpointer } from './checkpointer.js';
import type { ConflictCheck } from './conflicts.js';
import { settleRequest, type Plan, type Planner } from './planner.js';
import { sizeAppend, type AppendRequest, type CheckedCondition, type DecisionRequest, type PlannedAppend, type VersionPrefetch } from './requests.js';
import type { DecisionReads } from '../query/decision-reads.js';
import type { HeadWatch } from '../query/head-watch.js';
import type { LedgerState } from './state.js';
import type { StreamVersions } from './stream-versions.js';

/** An append's timestamp until enqueue() stamps it with the clock (an import sets its own, ≥ 0). */
const TIMESTAMP_AT_ENQUEUE = -1;

export const GROUP_APPENDS_MAX = 1024;
/** A group's commit record also stays below this (and below the WAL's maxRecordSizeBytes). */
export const GROUP_PAYLOAD_SIZE_BYTES_MAX = 16 * 1024 * 1024;
/** Resolved events not yet applied to LevelDB beyond which new groups wait for the apply. */
export const UNAPPLIED_EVENTS_MAX = 16_384;
/**
 * Bytes of resolved chunks not yet applied beyond which new groups wait, and up to which a group
 * fills the tail (one append alone may cross it). 16,384 typical events (≈ 250 B) take about
 * this much, so small events meet the event bound first and large ones this one; the caller's
 * event objects, which the tail holds until applied, take a few times as much heap.
 */
export const UNAPPLIED_SIZE_BYTES_MAX = 4 * 1024 * 1024;
/** Longest time the writer runs groups back to back without giving the event loop a turn. */
export const WRITER_TURN_MS = 1;

/** A planned group whose commit record the WAL is writing. */
interface LoggedGroup {
  planned: PlannedAppend[];
  payload: Uint8Array;
  /** Per planned chunk in order, its bytes in the ledger: views into `payload`. */
  chunkBytes: Uint8Array[];
  /** Consumer acks in the record (type 3 when any). */
  acks: ConsumerAck[];
  /** Resolves with the record's LSN once durable. */
  logged: Promise<number>;
  /** Decisions that saw this group's appends: settled with them (Plan.settleWhenDurable). */
  settleWhenDurable: Plan['settleWhenDurable'];
}

/** An append validated and sized, not yet queued: enqueue stamps it and gives it its promise. */
export type PreparedAppend = AppendRequest;

const notQueued = () => undefined;

const NO_EVENTS: PreparedEvents = Object.freeze({ chunks: [], ids: [], callerIds: false, count: 0 });

export interface WriterParts {
  wal: Wal;
  tail: UnappliedTail;
  arena: ByteArena;
  state: LedgerState;
  planner: Planner;
  versions: StreamVersions;
  conflicts: ConflictCheck;
  decisionReads: DecisionReads;
  applier: Applier;
  checkpointer: Checkpointer;
  /** Told after every group that moved the head (subscriptions wait on it). */
  watch: HeadWatch;
  consumers: ConsumerPositions;
}

function sumAckSizes(acks: readonly ConsumerAck[]): number {
  let sizeBytes = 0;
  for (const ack of acks) sizeBytes += ackSizeBytes(ack);
  return sizeBytes;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Writer {
  readonly #parts: WriterParts;
  #queue: AppendRequest[] = [];
  #run: Promise<void> | null = null;
  /** A short section (see exclusive) during which appends wait. */
  #paused: Promise<unknown> | null = null;

  constructor(parts: WriterParts) {
    this.#parts = parts;
    parts.state.onFailure((failure) => {
      for (const request of this.#queue.splice(0)) request.reject(failure);
    });
  }

  /** Validates and sizes an append; throws on bad input, before anything is queued. */
  prepare(
    method: AppendRequest['method'],
    stream: string,
    expect: StreamExpectation,
    condition: CheckedCondition | null,
    input: unknown,
    versionPrefetch: VersionPrefetch | null,
    acks: ConsumerAck[] | null = null,
    timestamp: number = TIMESTAMP_AT_ENQUEUE,
  ): PreparedAppend {
    const { state, wal } = this.#parts;
    if (state.failure) throw state.failure;
    const events = prepareEvents(input, method);
    const acksSizeBytes = acks === null ? 0 : sumAckSizes(acks);
    const chunksSizeBytes = sizeAppend(method, events, Buffer.byteLength(stream), wal.maxRecordSizeBytes, acksSizeBytes);
    if (typeof chunksSizeBytes !== 'number') throw chunksSizeBytes;
    // One object from validation to resolution (an append's allocations show in the 64-writer case).
    return { method, stream, expect, condition, decision: null, events, chunksSizeBytes, acks, acksSizeBytes, timestamp, versionPrefetch, resolve: notQueued, reject: notQueued };
  }

  /** Acks with no events: logged with the next group (WAL record type 3). */
  prepareAcks(acks: ConsumerAck[]): PreparedAppend {
    if (this.#parts.state.failure) throw this.#parts.state.failure;
    return {
      method: 'ack',
      stream: '',
      expect: 'any',
      condition: null,
      decision: null,
      events: NO_EVENTS,
      chunksSizeBytes: 0,
      acks,
      acksSizeBytes: sumAckSizes(acks),
      timestamp: TIMESTAMP_AT_ENQUEUE,
      versionPrefetch: null,
      resolve: notQueued,
      reject: notQueued,
    };
  }

  /** A decision to queue: its events (and size) are known once the planner has run its decider. */
  prepareDecision(decision: DecisionRequest): PreparedAppend {
    if (this.#parts.state.failure) throw this.#parts.state.failure;
    return {
      method: 'decide',
      stream: '',
      expect: 'any',
      condition: null,
      decision,
      events: NO_EVENTS,
      chunksSizeBytes: 0,
      acks: null,
      acksSizeBytes: 0,
      timestamp: TIMESTAMP_AT_ENQUEUE,
      versionPrefetch: null,
      resolve: notQueued,
      reject: notQueued,
    };
  }

  /** Queues a prepared append (planned in queue order); resolves once it is durable. */
  enqueue(append: PreparedAppend): Promise<AppendResult | StreamAppendResult> {
    return new Promise((resolve, reject) => {
      if (append.timestamp === TIMESTAMP_AT_ENQUEUE) append.timestamp = Date.now();
      append.resolve = resolve;
      append.reject = reject;
      this.#queue.push(append);
      this.#kick();
    });
  }

  /** Runs `work` with no append in flight and LevelDB holding every resolved event; appends submitted meanwhile wait for it. */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    while (this.#paused) await this.#paused.catch(() => undefined);
    const run = this.idle().then(work);
    this.#paused = run;
    try {
      return await run;
    } finally {
      this.#paused = null;
      if (this.#queue.length > 0) this.#kick();
    }
  }

  /** Resolves once no exclusive section is running or waiting. */
  async unpaused(): Promise<void> {
    while (this.#paused) await this.#paused.catch(() => undefined);
  }

  /** Waits until no append is in flight and LevelDB holds every resolved event (unless failed). */
  async idle(): Promise<void> {
    do {
      while (this.#run) await this.#run;
      await this.#parts.applier.applyAll();
    } while (this.#run);
  }

  #kick(): void {
    if (this.#run || this.#paused) return;
    this.#run = this.#runGroups().finally(() => {
      this.#run = null;
      if (this.#queue.length > 0 && !this.#paused) this.#kick();
    });
  }

  async #runGroups(): Promise<void> {
    const { state, tail, applier } = this.#parts;
    let turnStartMs = performance.now();
    // A fresh start also takes a microtask: appends issued in the same synchronous run join.
    let lastGroupSize = 1;
    while (this.#queue.length > 0) {
      // A lone writer (last group: one append) resubmits in a microtask, so a microtask gathers
      // it (an event-loop turn costs ≈ 30 µs, a fifth of its append), with a full turn at least
      // every WRITER_TURN_MS for timers, I/O and readers. Concurrent callers get a full turn
      // between groups: those busy with a read can then join the next group.
      if (lastGroupSize === 1 && performance.now() - turnStartMs < WRITER_TURN_MS) {
        await Promise.resolve();
      } else {
        await yieldToEventLoop();
        turnStartMs = performance.now();
      }
      if (this.#paused) return;
      // Backpressure: the unapplied tail stays bounded, so memory does too.
      while (tail.events >= UNAPPLIED_EVENTS_MAX || tail.sizeBytes >= UNAPPLIED_SIZE_BYTES_MAX) {
        applier.kick(true);
        if (!applier.running) break; // failed: the group is rejected below
        await applier.running;
      }
      const group = this.#takeGroup();
      lastGroupSize = group.length;
      if (state.failure) {
        for (const request of group) request.reject(state.failure);
        continue;
      }
      try {
        await this.#commitGroup(group);
      } catch (error) {
        // A bug, not an I/O failure (those are handled inside): stop rather than hang the group.
        const failure = state.fail(
          isFactError(error) ? error : new FactError('FACT_ASSERTION', `the writer of ${state.path} failed unexpectedly; reopen the database`, { cause: error }),
        );
        for (const request of group) request.reject(failure);
      }
    }
  }

  /**
   * The next appends in call order, as many as share one commit record: at most
   * GROUP_APPENDS_MAX, and a record within GROUP_PAYLOAD_SIZE_BYTES_MAX, the WAL's limit and
   * what the unapplied tail has room for (an append alone always goes: prepare refused ones the
   * WAL cannot take).
   */
  #takeGroup(): AppendRequest[] {
    const limitBytes = this.#groupLimitBytes();
    let count = 0;
    let chunksSizeBytes = 0;
    let acksSizeBytes = 0;
    while (count < this.#queue.length && count < GROUP_APPENDS_MAX) {
      const request = this.#queue[count]!;
      chunksSizeBytes += request.chunksSizeBytes;
      acksSizeBytes += request.acksSizeBytes;
      if (count > 0 && recordSizeBytes(chunksSizeBytes, acksSizeBytes) > limitBytes) break;
      count++;
    }
    return this.#queue.splice(0, count);
  }

  #groupLimitBytes(): number {
    return Math.min(GROUP_PAYLOAD_SIZE_BYTES_MAX, this.#parts.wal.maxRecordSizeBytes, UNAPPLIED_SIZE_BYTES_MAX - this.#parts.tail.sizeBytes);
  }

  async #commitGroup(group: AppendRequest[]): Promise<void> {
    const { state, tail, applier, conflicts, decisionReads, checkpointer, versions, watch } = this.#parts;
    applier.beginPlanning();
    let issued: LoggedGroup | null;
    try {
      issued = await this.#planAndLog(group);
    } finally {
      applier.endPlanning();
    }
    if (issued === null) return;
    const { planned, payload, chunkBytes } = issued;
    let lsn: number;
    try {
      lsn = await issued.logged;
    } catch (error) {
      const failure = state.fail(
        new FactError('FACT_WAL_POISONED', `the write-ahead log of ${state.path} failed; no further appends are accepted until the database is reopened`, {
          cause: error,
        }),
      );
      for (const append of planned) append.request.reject(failure);
      for (const { request } of issued.settleWhenDurable) request.reject(failure);
      return;
    }
    // Durable: visible to reads from now on (through the tail), applied to LevelDB in the background.
    const published: TailChunk[] = [];
    for (const append of planned) {
      for (const chunk of append.chunks) published.push({ firstPosition: chunk.firstPosition, bytes: chunkBytes[published.length]!, planned: chunk.header, lsn });
    }
    tail.add(published);
    const last = state.nextPosition - 1;
    if (published.length > 0) {
      assert(last > state.head, 'positions only grow');
      state.head = last;
      conflicts.noteDurable(published);
      decisionReads.noteDurable(published);
    }
    if (issued.acks.length > 0) {
      this.#parts.consumers.noteDurable(issued.acks);
      applier.noteAcks(lsn, issued.acks);
    }
    for (const append of planned) {
      const last = append.firstPosition + append.request.events.count - 1;
      const count = append.request.events.count;
      append.request.resolve(
        append.request.stream === '' ? { position: last, count } : { position: last, count, streamPosition: append.firstStreamPosition + count - 1 },
      );
    }
    for (const { request, result } of issued.settleWhenDurable) settleRequest(request, result);
    // Subscribers read what the callers were told is durable, in the same turn.
    watch.moved();
    // Building the apply batch takes main-thread time: after the callers resumed, not before.
    setImmediate(() => applier.kick());
    checkpointer.noteLogged(payload.length);
    versions.trim();
  }

  /** Plans the group and hands its WAL record to the WAL; null when nothing is left to write. */
  async #planAndLog(group: AppendRequest[]): Promise<LoggedGroup | null> {
    const { planner, state, versions, arena, wal } = this.#parts;
    let planned: PlannedAppend[];
    let settleWhenDurable: Plan['settleWhenDurable'];
    try {
      const reads = planner.read(group);
      const plan = planner.plan(group, reads instanceof Promise ? await reads : reads, { groupBytes: this.#groupLimitBytes(), recordBytes: wal.maxRecordSizeBytes });
      planned = plan.planned;
      settleWhenDurable = plan.settleWhenDurable;
      // Decisions sized only once decided may not all fit: the rest go first into the next group.
      if (plan.deferred.length > 0) this.#queue.unshift(...plan.deferred);
    } catch (error) {
      // Reading state failed: nothing was written, so only this group fails.
      for (const request of group) request.reject(isFactError(error) ? error : ioError('plan', state.path, error));
      // Planned versions may be ahead of what was committed; reload them from LevelDB.
      versions.forget();
      state.nextPosition = state.head + 1;
      return null;
    }
    if (planned.length === 0) {
      // Nothing planned, so nothing was deferred (kept for safety: never leave a request hanging).
      for (const { request, result } of settleWhenDurable) settleRequest(request, result);
      return null;
    }
    const chunks = planned.length === 1 ? planned[0]!.chunks : planned.flatMap((append) => append.chunks);
    let chunksSizeBytes = 0;
    let acksSizeBytes = 0;
    let acks: ConsumerAck[] = [];
    for (const { request } of planned) {
      chunksSizeBytes += request.chunksSizeBytes;
      if (request.acks !== null) {
        acks = acks.length === 0 ? request.acks : [...acks, ...request.acks];
        acksSizeBytes += request.acksSizeBytes;
      }
    }
    if (acks.length > 0) {
      const { payload, chunkBytes } = encodeCommitWithAcks(planned[0]!.firstPosition, chunks, acks, arena.allocate);
      assert(payload.length === recordSizeBytes(chunksSizeBytes, acksSizeBytes), 'the record is as large as #takeGroup reckoned');
      return { planned, payload, chunkBytes, acks, settleWhenDurable, logged: wal.append(payload, { type: WAL_RECORD_COMMIT_ACKS }) };
    }
    // From the arena: the ledger keeps views of it (the chunks) until they are applied.
    const { payload, chunkBytes } = encodeCommitChunks(planned[0]!.firstPosition, chunks, arena.allocate);
    assert(payload.length === recordSizeBytes(chunksSizeBytes, 0), 'the commit record is as large as #takeGroup reckoned');
    return { planned, payload, chunkBytes, acks, settleWhenDurable, logged: wal.append(payload, { type: WAL_RECORD_COMMIT }) };
  }
}
