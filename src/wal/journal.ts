/**
 * A durable job queue / outbox on top of the WAL: entries are pushed, failed (retry
 * bookkeeping) and acked; open replays the log from the checkpoint to rebuild the live set.
 * Record types, compaction (checkpoints + carry-forward) and the crash argument are specified
 * in docs/journal.md; this file follows it. The record codec is journal-records.ts, the live
 * set in memory journal-entries.ts; this file has the API, its validation, and compaction,
 * which stays here because it shares the journal's tail position, appends and poison state.
 */
import { assert, FactError, invalid } from '../errors.js';
import { encodedRecordSizeBytes } from './format.js';
import {
  carrySizeBound,
  decodeJournalRecord,
  encodeAck,
  encodeCarry,
  encodeClear,
  encodeFail,
  encodePush,
  isErrorCode,
  isValidId,
  JOURNAL_RECORD_TYPES,
  type JournalFailure,
  LONE_SURROGATE,
  MAX_JOURNAL_ID_LENGTH,
} from './journal-records.js';
import { LiveEntries, type LiveEntry } from './journal-entries.js';
import { DEFAULT_MAX_RECORD_SIZE_BYTES, DEFAULT_SEGMENT_SIZE_BYTES, type WalOptions } from './options.js';
import type { WalRecoveryReport } from './recovery.js';
import type { WalRecord } from './replay.js';
import { Wal } from './wal.js';

export { JOURNAL_RECORD_TYPES, MAX_JOURNAL_ID_LENGTH };
export type { JournalFailure };

/** Longest failure text, in UTF-16 code units: a string `error`, or an Error's message, name and string code together. */
export const MAX_JOURNAL_ERROR_LENGTH = 64 * 1024;
/** Default `carryAfterBytes`, in segments of `segmentSizeBytes`. */
export const DEFAULT_CARRY_AFTER_SEGMENTS = 4;
/** Default `checkpointEveryBytes`, in segments of `segmentSizeBytes`. */
export const DEFAULT_CHECKPOINT_EVERY_SEGMENTS = 1;

export interface JournalOptions extends WalOptions {
  /**
   * Carry old live entries forward once the oldest live entry pins more than this many bytes
   * of log and at least half of the pinned bytes are garbage. Default
   * DEFAULT_CARRY_AFTER_SEGMENTS × segmentSizeBytes.
   */
  carryAfterBytes?: number;
  /**
   * Move the WAL checkpoint once it can advance by at least this many bytes of log (0: after
   * every operation). Default DEFAULT_CHECKPOINT_EVERY_SEGMENTS × segmentSizeBytes.
   */
  checkpointEveryBytes?: number;
}

/** What `fail` takes: the error as a string, or an Error (as caught). */
export interface JournalFailureInput {
  error: string | Error;
  retryAtMs: number;
}

export interface JournalEntry {
  id: string;
  payload: Uint8Array;
  /** LSN of the entry's original push: its position in push order (kept by carry-forward). */
  pushedAtLsn?: number;
  /** How many times `fail` was recorded for it. */
  attempts: number;
  lastFailure: JournalFailure | null;
}

interface Appended {
  lsn: number;
  pos: number;
  bytes: number;
  /** Resolves when durable; a rejection has already poisoned the journal. */
  done: Promise<void>;
}

interface Refused {
  /** Rejects with the WAL's reason. */
  refused: Promise<void>;
}

/** Bad input to a Journal method: the shared invalid() of errors.ts, its message naming the method. */
function invalidInput(method: string, message: string, details: Record<string, unknown> = {}): FactError {
  return invalid(`Journal.${method}: ${message}`, details);
}

function byteLength(value: number | undefined, fallback: number, name: string): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 0) {
    throw invalidInput('open', `${name} must be a non-negative integer, got ${String(value)}`);
  }
  return resolved;
}

function validateId(method: string, id: unknown): asserts id is string {
  if (!isValidId(id)) {
    throw invalidInput(method, `id must be a non-empty well-formed string of at most ${MAX_JOURNAL_ID_LENGTH} characters`, {
      id: typeof id === 'string' ? id.slice(0, 64) : typeof id,
    });
  }
}

/**
 * Checks what `fail` was given and makes the failure it records. An Error keeps its name,
 * message and code; its stack (long, and naming this process's files) and cause (any value)
 * are not recorded.
 */
function failureOf(input: JournalFailureInput): JournalFailure {
  if (typeof input !== 'object' || input === null) throw invalidInput('fail', 'failure must be an object { error, retryAtMs }');
  const { error, retryAtMs } = input as { error: unknown; retryAtMs: unknown };
  if (typeof retryAtMs !== 'number' || !Number.isFinite(retryAtMs)) {
    throw invalidInput('fail', `failure.retryAtMs must be a finite number, got ${String(retryAtMs)}`);
  }
  // -0 would come back as 0 after a reopen: normalise so memory equals what replay rebuilds.
  const retry = retryAtMs === 0 ? 0 : retryAtMs;
  const texts: string[] = [];
  let failure: JournalFailure;
  if (typeof error === 'string') {
    texts.push(error);
    failure = { error, retryAtMs: retry };
  } else if (error instanceof Error) {
    // Any of these may have been overwritten with another kind of value.
    const { name, message, code } = error as { name: unknown; message: unknown; code?: unknown };
    if (typeof name !== 'string' || typeof message !== 'string') throw invalidInput('fail', 'failure.error is an Error whose name or message is not a string');
    if (code !== undefined && code !== null && !isErrorCode(code)) {
      throw invalidInput('fail', `failure.error is an Error whose code is neither a string nor a safe integer (${typeof code})`);
    }
    texts.push(name, message);
    failure = { error: message, retryAtMs: retry, errorName: name };
    if (code !== undefined && code !== null) {
      if (typeof code === 'string') texts.push(code);
      failure.errorCode = code === 0 ? 0 : code;
    }
  } else {
    throw invalidInput('fail', `failure.error must be a string or an Error, got ${error === null ? 'null' : typeof error}`);
  }
  const length = texts.reduce((sum, text) => sum + text.length, 0);
  if (length > MAX_JOURNAL_ERROR_LENGTH || texts.some((text) => LONE_SURROGATE.test(text))) {
    throw invalidInput('fail', `failure.error must be well-formed text of at most ${MAX_JOURNAL_ERROR_LENGTH} characters (an Error's message, name and code together), got ${length}`);
  }
  return failure;
}

function toPublic(entry: LiveEntry): JournalEntry {
  return {
    id: entry.id,
    payload: entry.payload.slice(),
    pushedAtLsn: entry.order,
    attempts: entry.attempts,
    lastFailure: entry.lastFailure === null ? null : { ...entry.lastFailure },
  };
}

export class Journal implements AsyncDisposable {
  readonly #wal: Wal;
  readonly #carryAfterBytes: number;
  readonly #checkpointEveryBytes: number;
  readonly #maxRecordSizeBytes: number;
  readonly #entries = new LiveEntries();
  /** Journal-local byte position of the log tail and of the checkpoint (0 = checkpoint at open). */
  #tailPos = 0;
  #checkpointPos = 0;
  #compactionChain: Promise<void> = Promise.resolve();
  #inflight = new Set<Promise<unknown>>();
  #poison: unknown = null;
  #closing: Promise<void> | null = null;
  #closed = false;

  private constructor(wal: Wal, carryAfterBytes: number, checkpointEveryBytes: number, maxRecordSizeBytes: number) {
    this.#wal = wal;
    this.#carryAfterBytes = carryAfterBytes;
    this.#checkpointEveryBytes = checkpointEveryBytes;
    this.#maxRecordSizeBytes = maxRecordSizeBytes;
  }

  /** Opens (creating if needed) the journal in `dir` and rebuilds its entries from the WAL. */
  static async open(dir: string, options: JournalOptions = {}): Promise<Journal> {
    if (typeof options !== 'object' || options === null) throw invalidInput('open', 'options must be an object');
    const { carryAfterBytes, checkpointEveryBytes, ...walOptions } = options;
    // An invalid segmentSizeBytes is rejected by Wal.open; here it only scales the defaults.
    const segmentSizeBytes = Number.isSafeInteger(options.segmentSizeBytes) ? options.segmentSizeBytes! : DEFAULT_SEGMENT_SIZE_BYTES;
    const carry = byteLength(carryAfterBytes, DEFAULT_CARRY_AFTER_SEGMENTS * segmentSizeBytes, 'carryAfterBytes');
    if (carry < 1) throw invalidInput('open', 'carryAfterBytes must be at least 1');
    const every = byteLength(checkpointEveryBytes, DEFAULT_CHECKPOINT_EVERY_SEGMENTS * segmentSizeBytes, 'checkpointEveryBytes');
    const wal = await Wal.open(dir, walOptions);
    const journal = new Journal(wal, carry, every, options.maxRecordSizeBytes ?? DEFAULT_MAX_RECORD_SIZE_BYTES);
    try {
      await journal.#replay();
    } catch (error) {
      await wal.close().catch(() => undefined);
      throw error;
    }
    return journal;
  }

  /** Number of live (not acked) entries. */
  get size(): number {
    return this.#entries.size;
  }

  /** The WAL's last LSN (every journal operation and carry is one LSN). */
  get lastLsn(): number {
    return this.#wal.lastLsn;
  }

  /** The WAL's checkpoint: records at or below it are no longer replayed. */
  get checkpointLsn(): number {
    return this.#wal.checkpointLsn;
  }

  /** What the WAL's recovery found at open. */
  get walRecovery(): WalRecoveryReport {
    return this.#wal.recovery;
  }

  /** Adds an entry; resolves once it is durable. A live id is FACT_INVALID_ARGUMENT. */
  push(id: string, payload: Uint8Array): Promise<void> {
    return this.#track(this.#push(id, payload));
  }

  /** Marks an entry done: it is never returned again. An id that is not live is FACT_NOT_FOUND. */
  ack(id: string): Promise<void> {
    return this.#track(this.#ack(id));
  }

  /**
   * Records the entry's latest failure and counts an attempt. `error` is a string or an Error
   * (name, message and code are kept). An id that is not live is FACT_NOT_FOUND.
   */
  fail(id: string, failure: JournalFailureInput): Promise<void> {
    return this.#track(this.#fail(id, failure));
  }

  /** Drops every entry. */
  clear(): Promise<void> {
    return this.#track(this.#clear());
  }

  /**
   * Every live entry in push order with its attempts and last failure, as of the calls made
   * so far (including ones whose promise has not resolved yet). Copies: safe to mutate.
   */
  recover(): JournalEntry[] {
    this.#checkUsable('recover');
    return Array.from(this.#entries.values(), toPublic);
  }

  /** Waits for pending operations, then closes the WAL. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------- operations

  async #push(id: string, payload: Uint8Array): Promise<void> {
    this.#checkUsable('push');
    validateId('push', id);
    if (!(payload instanceof Uint8Array)) throw invalidInput('push', 'payload must be a Uint8Array');
    if (this.#entries.has(id)) throw invalidInput('push', `id ${JSON.stringify(id)} is already live (push it again after ack)`, { id });
    this.#checkCarryFits('push', id, payload, null);
    const copy = Uint8Array.prototype.slice.call(payload);
    const appended = this.#append(JOURNAL_RECORD_TYPES.push, encodePush(id, copy));
    if ('refused' in appended) return appended.refused;
    this.#entries.add({
      id,
      payload: copy,
      order: appended.lsn,
      attempts: 0,
      lastFailure: null,
      basisLsn: appended.lsn,
      basisPos: appended.pos,
      basisBytes: appended.bytes,
    });
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #ack(id: string): Promise<void> {
    this.#checkUsable('ack');
    const entry = this.#live('ack', id);
    const appended = this.#append(JOURNAL_RECORD_TYPES.ack, encodeAck(id));
    if ('refused' in appended) return appended.refused;
    this.#entries.remove(entry);
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #fail(id: string, failure: JournalFailureInput): Promise<void> {
    this.#checkUsable('fail');
    const entry = this.#live('fail', id);
    const lastFailure = failureOf(failure);
    this.#checkCarryFits('fail', id, entry.payload, lastFailure);
    const appended = this.#append(JOURNAL_RECORD_TYPES.fail, encodeFail(id, lastFailure));
    if ('refused' in appended) return appended.refused;
    entry.attempts += 1;
    entry.lastFailure = lastFailure;
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #clear(): Promise<void> {
    this.#checkUsable('clear');
    const appended = this.#append(JOURNAL_RECORD_TYPES.clear, encodeClear());
    if ('refused' in appended) return appended.refused;
    this.#entries.clear();
    await appended.done;
    await this.#compactIfDue(true);
  }

  #checkUsable(method: string): void {
    if (this.#closing !== null || this.#closed) {
      throw new FactError('FACT_CLOSED', `Journal.${method}: the journal in ${this.#wal.dir} is closed`, { details: { dir: this.#wal.dir } });
    }
    if (this.#poison !== null) {
      throw new FactError(
        'FACT_WAL_POISONED',
        `Journal.${method}: the journal in ${this.#wal.dir} stopped after a failed write; close and reopen it to recover from what is on disk`,
        { cause: this.#poison, details: { dir: this.#wal.dir } },
      );
    }
  }

  #live(method: string, id: string): LiveEntry {
    validateId(method, id);
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new FactError('FACT_NOT_FOUND', `Journal.${method}: no live entry ${JSON.stringify(id)}`, { details: { id } });
    return entry;
  }

  /** Rejects what would make the entry's carry record too large for the WAL, so carrying never fails on size. */
  #checkCarryFits(method: string, id: string, payload: Uint8Array, failure: JournalFailure | null): void {
    const bound = carrySizeBound(id, payload, failure);
    if (bound > this.#maxRecordSizeBytes) {
      throw new FactError(
        'FACT_WAL_RECORD_TOO_LARGE',
        `Journal.${method}: the entry's records could reach ${bound} bytes, above maxRecordSizeBytes ${this.#maxRecordSizeBytes}`,
        { details: { sizeBytes: bound, maxRecordSizeBytes: this.#maxRecordSizeBytes } },
      );
    }
  }

  /**
   * Appends one record. LSNs are assigned synchronously in call order, so the caller updates
   * memory right after this returns and memory order equals log order. If the WAL refuses the
   * record at once (closed, poisoned, too large: no LSN assigned) nothing changed and `refused`
   * rejects with the WAL's error. A later rejection means
   * the WAL is poisoned: memory may be ahead of disk, so the journal is poisoned too.
   */
  #append(type: number, payload: Uint8Array): Appended | Refused {
    const before = this.#wal.lastLsn;
    const written = this.#wal.append(payload, { type });
    if (this.#wal.lastLsn === before) return { refused: written.then(() => undefined) };
    assert(this.#wal.lastLsn === before + 1, 'one append takes one LSN');
    const bytes = encodedRecordSizeBytes(payload.length);
    const pos = this.#tailPos;
    this.#tailPos += bytes;
    const done = written.then(
      () => undefined,
      (error: unknown) => {
        this.#poisonWith(error);
        throw error;
      },
    );
    return { lsn: before + 1, pos, bytes, done };
  }

  #poisonWith(error: unknown): void {
    this.#poison ??= error;
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise);
    const untrack = () => this.#inflight.delete(promise);
    promise.then(untrack, untrack);
    return promise;
  }

  async #close(): Promise<void> {
    try {
      await Promise.allSettled([...this.#inflight]);
      await this.#compactionChain;
    } finally {
      this.#closed = true;
      await this.#wal.close();
    }
  }

  // ---------------------------------------------------------------- compaction

  /** The checkpoint that keeps every live entry's basis record: just below the oldest basis. */
  #checkpointTarget(): { lsn: number; pos: number } {
    const oldest = this.#entries.oldestBasis();
    if (oldest === undefined) return { lsn: this.#wal.lastLsn, pos: this.#tailPos };
    return { lsn: oldest.basisLsn - 1, pos: oldest.basisPos };
  }

  #carryDue(): boolean {
    const oldest = this.#entries.oldestBasis();
    if (oldest === undefined) return false;
    const pinnedBytes = this.#tailPos - oldest.basisPos;
    // Carrying when at least half the pinned log is garbage makes every carry free more than it writes.
    return pinnedBytes > this.#carryAfterBytes && pinnedBytes > 2 * this.#entries.liveBytes;
  }

  #checkpointDue(force: boolean): boolean {
    const target = this.#checkpointTarget();
    if (target.lsn <= this.#wal.checkpointLsn) return false;
    return force || target.pos - this.#checkpointPos >= this.#checkpointEveryBytes;
  }

  #compactIfDue(force: boolean): Promise<void> {
    if (this.#poison !== null || (!this.#carryDue() && !this.#checkpointDue(force))) return Promise.resolve();
    const run = this.#compactionChain.then(() => this.#compact(force));
    this.#compactionChain = run;
    return run;
  }

  /** One compaction step; serialised by #compactionChain. Never rejects: a failure poisons. */
  async #compact(force: boolean): Promise<void> {
    if (this.#poison !== null || this.#closed) return;
    try {
      if (this.#carryDue()) {
        await Promise.all(this.#carry());
        if (this.#poison !== null) return;
      }
      if (this.#checkpointDue(force)) {
        // The target comes from memory, i.e. from every record appended so far, including ones
        // above it that are not durable yet (an ack that made an older entry dead). Make all of
        // them durable first, or a crash could keep the checkpoint but lose that ack, and the
        // entry's push below the checkpoint would be gone. sync() covers every append made
        // before it: issued synchronously after computing the target.
        const target = this.#checkpointTarget();
        await this.#wal.sync();
        await this.#wal.checkpoint(target.lsn);
        this.#checkpointPos = Math.max(this.#checkpointPos, target.pos);
      }
    } catch (error) {
      this.#poisonWith(error);
    }
  }

  /**
   * Re-appends every live entry whose basis lies more than carryAfterBytes / 2 behind the tail,
   * in push order. Synchronous up to the appends, so memory stays in log order.
   */
  #carry(): Promise<void>[] {
    const cutoff = this.#tailPos - Math.floor(this.#carryAfterBytes / 2);
    const batch = this.#entries.basedBefore(cutoff);
    batch.sort((a, b) => a.order - b.order);
    const done: Promise<void>[] = [];
    for (const entry of batch) {
      const record = encodeCarry(entry.id, entry.order, entry.payload, entry.attempts, entry.lastFailure);
      const appended = this.#append(JOURNAL_RECORD_TYPES.carry, record);
      if ('refused' in appended) {
        // Closed or poisoned WAL: the entry keeps its old basis (still correct, just pinned).
        done.push(appended.refused);
        continue;
      }
      this.#entries.setBasis(entry, appended.lsn, appended.pos, appended.bytes);
      done.push(appended.done);
    }
    return done;
  }

  // ---------------------------------------------------------------- recovery

  async #replay(): Promise<void> {
    let outOfOrder = false;
    for await (const record of this.#wal.replay()) {
      if (this.#replayRecord(record)) outOfOrder = true;
    }
    if (outOfOrder) this.#entries.restorePushOrder();
  }

  /** Applies one replayed record; returns true when it inserted an entry out of push order. */
  #replayRecord(record: WalRecord): boolean {
    const pos = this.#tailPos;
    const bytes = encodedRecordSizeBytes(record.payload.length);
    this.#tailPos += bytes;
    return this.#entries.apply(record, decodeJournalRecord(record), pos, bytes);
  }
}
