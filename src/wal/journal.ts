/**
 * A durable job queue / outbox on top of the WAL: entries are pushed, failed (retry
 * bookkeeping) and acked; open replays the log from the checkpoint to rebuild the live set.
 * Record types, compaction (checkpoints + carry-forward) and the crash argument are specified
 * in docs/journal.md; this file follows it.
 */
import { decode, encode } from 'cbor-x';
import { assert, FactError } from '../errors.js';
import { encodedRecordSizeBytes } from './format.js';
import { DEFAULT_MAX_RECORD_SIZE_BYTES, DEFAULT_SEGMENT_SIZE_BYTES, Wal } from './wal.js';
import type { WalOptions, WalRecord, WalRecoveryReport } from './wal.js';

/** WAL record type bytes of the journal (docs/journal.md). */
export const JOURNAL_RECORD_TYPES = Object.freeze({ push: 1, ack: 2, fail: 3, clear: 4, carry: 5 } as const);
/** Longest entry id, in UTF-16 code units. */
export const MAX_JOURNAL_ID_LENGTH = 1024;
/** Longest failure text, in UTF-16 code units: a string `error`, or an Error's message, name and string code together. */
export const MAX_JOURNAL_ERROR_LENGTH = 64 * 1024;
/** Default `carryAfterBytes`, in segments of `segmentSizeBytes`. */
export const DEFAULT_CARRY_AFTER_SEGMENTS = 4;
/** Default `checkpointEveryBytes`, in segments of `segmentSizeBytes`. */
export const DEFAULT_CHECKPOINT_EVERY_SEGMENTS = 1;

/** CBOR sizes used to bound a carry record without encoding it (RFC 8949 §3). */
const CBOR_MAX_NUMBER_SIZE_BYTES = 9;
const CBOR_ARRAY_HEADER_SIZE_BYTES = 1;
const CBOR_NULL_SIZE_BYTES = 1;
const CARRY_FIELDS = 6;
/** Lone surrogates would be replaced by U+FFFD when encoded as UTF-8: recovery would differ. */
const LONE_SURROGATE = /\p{Surrogate}/u;

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

/** An entry's last failure, as `recover()` returns it. */
export interface JournalFailure {
  /** The string `fail` was given, or the message of the Error it was given. */
  error: string;
  retryAtMs: number;
  /** Only when `fail` was given an Error: its `name`. */
  errorName?: string;
  /** Only when `fail` was given an Error whose `code` was a string or a safe integer. */
  errorCode?: string | number;
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

interface LiveEntry {
  id: string;
  payload: Uint8Array;
  /** Order key: LSN of the original push. */
  order: number;
  attempts: number;
  lastFailure: JournalFailure | null;
  /** The newest record that describes the entry whole (its push or its latest carry). */
  basisLsn: number;
  /** Byte position of that record in the log since the checkpoint at open (journal-local). */
  basisPos: number;
  basisBytes: number;
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

function invalid(method: string, message: string, details: Record<string, unknown> = {}): FactError {
  return new FactError('FACT_INVALID_ARGUMENT', `Journal.${method}: ${message}`, { details });
}

function corruption(record: WalRecord, message: string, cause?: unknown): FactError {
  return new FactError('FACT_CORRUPTION', `journal record at LSN ${record.lsn} (type ${record.type}): ${message}`, {
    cause,
    details: { lsn: record.lsn, type: record.type },
  });
}

function byteLength(value: number | undefined, fallback: number, name: string): number {
  const resolved = value ?? fallback;
  if (!Number.isSafeInteger(resolved) || resolved < 0) {
    throw invalid('open', `${name} must be a non-negative integer, got ${String(value)}`);
  }
  return resolved;
}

function isValidId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_JOURNAL_ID_LENGTH && !LONE_SURROGATE.test(id);
}

function validateId(method: string, id: unknown): asserts id is string {
  if (!isValidId(id)) {
    throw invalid(method, `id must be a non-empty well-formed string of at most ${MAX_JOURNAL_ID_LENGTH} characters`, {
      id: typeof id === 'string' ? id.slice(0, 64) : typeof id,
    });
  }
}

function cborStringSizeBytes(value: string): number {
  return cborHeadSizeBytes(Buffer.byteLength(value, 'utf8'));
}

function cborHeadSizeBytes(length: number): number {
  const head = length < 24 ? 1 : length < 2 ** 8 ? 2 : length < 2 ** 16 ? 3 : length < 2 ** 32 ? 5 : 9;
  return head + length;
}

/** An upper bound of the carry record of an entry (the largest record the journal writes for it). */
function carrySizeBound(id: string, payload: Uint8Array, failure: JournalFailure | null): number {
  return (
    CBOR_ARRAY_HEADER_SIZE_BYTES +
    cborStringSizeBytes(id) +
    CBOR_MAX_NUMBER_SIZE_BYTES +
    cborHeadSizeBytes(payload.length) +
    CBOR_MAX_NUMBER_SIZE_BYTES +
    (failure === null ? 2 * CBOR_NULL_SIZE_BYTES : cborErrorSizeBound(failure) + CBOR_MAX_NUMBER_SIZE_BYTES)
  );
}

/** An upper bound of a failure's error field (a string, or [name, message, code?]). */
function cborErrorSizeBound(failure: JournalFailure): number {
  if (failure.errorName === undefined) return cborStringSizeBytes(failure.error);
  const code = failure.errorCode;
  const codeBytes = code === undefined ? 0 : typeof code === 'string' ? cborStringSizeBytes(code) : CBOR_MAX_NUMBER_SIZE_BYTES;
  return CBOR_ARRAY_HEADER_SIZE_BYTES + cborStringSizeBytes(failure.errorName) + cborStringSizeBytes(failure.error) + codeBytes;
}

function isErrorCode(code: unknown): code is string | number {
  return typeof code === 'string' || Number.isSafeInteger(code);
}

/** A failure's error field in fail and carry records: the string, or [name, message] / [name, message, code]. */
function encodedError(failure: JournalFailure): string | (string | number)[] {
  if (failure.errorName === undefined) return failure.error;
  const fields: (string | number)[] = [failure.errorName, failure.error];
  if (failure.errorCode !== undefined) fields.push(failure.errorCode);
  return fields;
}

/** The failure a replayed error field and retryAtMs describe, or null when the field is malformed. */
function decodedFailure(error: unknown, retryAtMs: number): JournalFailure | null {
  if (typeof error === 'string') return { error, retryAtMs };
  if (!Array.isArray(error) || error.length < 2 || error.length > 3) return null;
  const [name, message, code] = error as unknown[];
  if (typeof name !== 'string' || typeof message !== 'string' || (error.length === 3 && !isErrorCode(code))) return null;
  const failure: JournalFailure = { error: message, retryAtMs, errorName: name };
  if (error.length === 3) failure.errorCode = code as string | number;
  return failure;
}

/**
 * Checks what `fail` was given and makes the failure it records. An Error keeps its name,
 * message and code; its stack (long, and naming this process's files) and cause (any value)
 * are not recorded.
 */
function failureOf(input: JournalFailureInput): JournalFailure {
  if (typeof input !== 'object' || input === null) throw invalid('fail', 'failure must be an object { error, retryAtMs }');
  const { error, retryAtMs } = input as { error: unknown; retryAtMs: unknown };
  if (typeof retryAtMs !== 'number' || !Number.isFinite(retryAtMs)) {
    throw invalid('fail', `failure.retryAtMs must be a finite number, got ${String(retryAtMs)}`);
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
    if (typeof name !== 'string' || typeof message !== 'string') throw invalid('fail', 'failure.error is an Error whose name or message is not a string');
    if (code !== undefined && code !== null && !isErrorCode(code)) {
      throw invalid('fail', `failure.error is an Error whose code is neither a string nor a safe integer (${typeof code})`);
    }
    texts.push(name, message);
    failure = { error: message, retryAtMs: retry, errorName: name };
    if (code !== undefined && code !== null) {
      if (typeof code === 'string') texts.push(code);
      failure.errorCode = code === 0 ? 0 : code;
    }
  } else {
    throw invalid('fail', `failure.error must be a string or an Error, got ${error === null ? 'null' : typeof error}`);
  }
  const length = texts.reduce((sum, text) => sum + text.length, 0);
  if (length > MAX_JOURNAL_ERROR_LENGTH || texts.some((text) => LONE_SURROGATE.test(text))) {
    throw invalid('fail', `failure.error must be well-formed text of at most ${MAX_JOURNAL_ERROR_LENGTH} characters (an Error's message, name and code together), got ${length}`);
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
  /** Live entries in push order (order key ascending). */
  #entries = new Map<string, LiveEntry>();
  /** The same entries in basis order (oldest basis first): its head pins the checkpoint. */
  #byBasis = new Map<string, LiveEntry>();
  /** Sum of basisBytes over live entries. */
  #liveBytes = 0;
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
    if (typeof options !== 'object' || options === null) throw invalid('open', 'options must be an object');
    const { carryAfterBytes, checkpointEveryBytes, ...walOptions } = options;
    // An invalid segmentSizeBytes is rejected by Wal.open; here it only scales the defaults.
    const segmentSizeBytes = Number.isSafeInteger(options.segmentSizeBytes) ? options.segmentSizeBytes! : DEFAULT_SEGMENT_SIZE_BYTES;
    const carry = byteLength(carryAfterBytes, DEFAULT_CARRY_AFTER_SEGMENTS * segmentSizeBytes, 'carryAfterBytes');
    if (carry < 1) throw invalid('open', 'carryAfterBytes must be at least 1');
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
    if (!(payload instanceof Uint8Array)) throw invalid('push', 'payload must be a Uint8Array');
    if (this.#entries.has(id)) throw invalid('push', `id ${JSON.stringify(id)} is already live (push it again after ack)`, { id });
    this.#checkCarryFits('push', id, payload, null);
    const copy = Uint8Array.prototype.slice.call(payload);
    const appended = this.#append(JOURNAL_RECORD_TYPES.push, encode([id, copy]));
    if ('refused' in appended) return appended.refused;
    const entry: LiveEntry = {
      id,
      payload: copy,
      order: appended.lsn,
      attempts: 0,
      lastFailure: null,
      basisLsn: appended.lsn,
      basisPos: appended.pos,
      basisBytes: appended.bytes,
    };
    this.#entries.set(id, entry);
    this.#byBasis.set(id, entry);
    this.#liveBytes += appended.bytes;
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #ack(id: string): Promise<void> {
    this.#checkUsable('ack');
    const entry = this.#live('ack', id);
    const appended = this.#append(JOURNAL_RECORD_TYPES.ack, encode([id]));
    if ('refused' in appended) return appended.refused;
    this.#remove(entry);
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #fail(id: string, failure: JournalFailureInput): Promise<void> {
    this.#checkUsable('fail');
    const entry = this.#live('fail', id);
    const lastFailure = failureOf(failure);
    this.#checkCarryFits('fail', id, entry.payload, lastFailure);
    const appended = this.#append(JOURNAL_RECORD_TYPES.fail, encode([id, encodedError(lastFailure), lastFailure.retryAtMs]));
    if ('refused' in appended) return appended.refused;
    entry.attempts += 1;
    entry.lastFailure = lastFailure;
    await appended.done;
    await this.#compactIfDue(false);
  }

  async #clear(): Promise<void> {
    this.#checkUsable('clear');
    const appended = this.#append(JOURNAL_RECORD_TYPES.clear, encode([]));
    if ('refused' in appended) return appended.refused;
    this.#entries.clear();
    this.#byBasis.clear();
    this.#liveBytes = 0;
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

  #remove(entry: LiveEntry): void {
    this.#entries.delete(entry.id);
    this.#byBasis.delete(entry.id);
    this.#liveBytes -= entry.basisBytes;
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
    const oldest = this.#byBasis.values().next();
    if (oldest.done === true) return { lsn: this.#wal.lastLsn, pos: this.#tailPos };
    return { lsn: oldest.value.basisLsn - 1, pos: oldest.value.basisPos };
  }

  #carryDue(): boolean {
    const oldest = this.#byBasis.values().next();
    if (oldest.done === true) return false;
    const pinnedBytes = this.#tailPos - oldest.value.basisPos;
    // Carrying when at least half the pinned log is garbage makes every carry free more than it writes.
    return pinnedBytes > this.#carryAfterBytes && pinnedBytes > 2 * this.#liveBytes;
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
    const batch: LiveEntry[] = [];
    for (const entry of this.#byBasis.values()) {
      if (entry.basisPos >= cutoff) break;
      batch.push(entry);
    }
    batch.sort((a, b) => a.order - b.order);
    const done: Promise<void>[] = [];
    for (const entry of batch) {
      const failure = entry.lastFailure;
      const record = encode([entry.id, entry.order, entry.payload, entry.attempts, failure === null ? null : encodedError(failure), failure?.retryAtMs ?? null]);
      const appended = this.#append(JOURNAL_RECORD_TYPES.carry, record);
      if ('refused' in appended) {
        // Closed or poisoned WAL: the entry keeps its old basis (still correct, just pinned).
        done.push(appended.refused);
        continue;
      }
      this.#setBasis(entry, appended.lsn, appended.pos, appended.bytes);
      done.push(appended.done);
    }
    return done;
  }

  #setBasis(entry: LiveEntry, lsn: number, pos: number, bytes: number): void {
    this.#liveBytes += bytes - entry.basisBytes;
    entry.basisLsn = lsn;
    entry.basisPos = pos;
    entry.basisBytes = bytes;
    this.#byBasis.delete(entry.id);
    this.#byBasis.set(entry.id, entry);
  }

  // ---------------------------------------------------------------- recovery

  async #replay(): Promise<void> {
    let outOfOrder = false;
    for await (const record of this.#wal.replay()) {
      if (this.#replayRecord(record)) outOfOrder = true;
    }
    if (outOfOrder) {
      const sorted = [...this.#entries.values()].sort((a, b) => a.order - b.order);
      this.#entries = new Map(sorted.map((entry) => [entry.id, entry]));
    }
  }

  /** Applies one replayed record; returns true when it inserted an entry out of push order. */
  #replayRecord(record: WalRecord): boolean {
    const pos = this.#tailPos;
    const bytes = encodedRecordSizeBytes(record.payload.length);
    this.#tailPos += bytes;
    let fields: unknown;
    try {
      fields = decode(record.payload);
    } catch (error) {
      throw corruption(record, 'payload is not valid CBOR', error);
    }
    if (!Array.isArray(fields)) throw corruption(record, 'payload is not a CBOR array');
    const field = (index: number): unknown => fields[index];
    const shape = (length: number, ok: boolean) => {
      if (fields.length !== length || !ok) throw corruption(record, 'payload fields do not match the record type');
    };
    switch (record.type) {
      case JOURNAL_RECORD_TYPES.push: {
        const [id, payload] = [field(0), field(1)];
        shape(2, isValidId(id) && payload instanceof Uint8Array);
        const entryId = id as string;
        if (this.#entries.has(entryId)) throw corruption(record, `push of ${JSON.stringify(entryId)}, which is already live`);
        const entry: LiveEntry = {
          id: entryId,
          payload: (payload as Uint8Array).slice(),
          order: record.lsn,
          attempts: 0,
          lastFailure: null,
          basisLsn: record.lsn,
          basisPos: pos,
          basisBytes: bytes,
        };
        this.#entries.set(entryId, entry);
        this.#byBasis.set(entryId, entry);
        this.#liveBytes += bytes;
        return false;
      }
      case JOURNAL_RECORD_TYPES.ack: {
        const id = field(0);
        shape(1, isValidId(id));
        // Unknown: its push lies at or below the checkpoint (legitimate), nothing to do.
        const entry = this.#entries.get(id as string);
        if (entry !== undefined) this.#remove(entry);
        return false;
      }
      case JOURNAL_RECORD_TYPES.fail: {
        const [id, error, retryAtMs] = [field(0), field(1), field(2)];
        const failure = typeof retryAtMs === 'number' && Number.isFinite(retryAtMs) ? decodedFailure(error, retryAtMs) : null;
        shape(3, isValidId(id) && failure !== null);
        const entry = this.#entries.get(id as string);
        if (entry !== undefined) {
          entry.attempts += 1;
          entry.lastFailure = failure;
        }
        return false;
      }
      case JOURNAL_RECORD_TYPES.clear: {
        shape(0, true);
        this.#entries.clear();
        this.#byBasis.clear();
        this.#liveBytes = 0;
        return false;
      }
      case JOURNAL_RECORD_TYPES.carry: {
        const [id, order, payload, attempts, error, retryAtMs] = fields as unknown[];
        const failure = typeof retryAtMs === 'number' && Number.isFinite(retryAtMs) ? decodedFailure(error, retryAtMs) : null;
        const failureOk = (error === null && retryAtMs === null) || failure !== null;
        shape(
          CARRY_FIELDS,
          isValidId(id) &&
            Number.isSafeInteger(order) &&
            (order as number) >= 1 &&
            (order as number) < record.lsn &&
            payload instanceof Uint8Array &&
            Number.isSafeInteger(attempts) &&
            (attempts as number) >= 0 &&
            failureOk,
        );
        const entryId = id as string;
        const lastFailure = failure;
        const existing = this.#entries.get(entryId);
        if (existing !== undefined) {
          // The original push (or an older carry) is also in the replayed range: same entry.
          if (existing.order !== order) {
            throw corruption(record, `carry of ${JSON.stringify(entryId)} pushed at LSN ${String(order)}, but the live entry was pushed at LSN ${existing.order}`);
          }
          existing.attempts = attempts as number;
          existing.lastFailure = lastFailure;
          this.#setBasis(existing, record.lsn, pos, bytes);
          return false;
        }
        const entry: LiveEntry = {
          id: entryId,
          payload: (payload as Uint8Array).slice(),
          order: order as number,
          attempts: attempts as number,
          lastFailure,
          basisLsn: record.lsn,
          basisPos: pos,
          basisBytes: bytes,
        };
        this.#entries.set(entryId, entry);
        this.#byBasis.set(entryId, entry);
        this.#liveBytes += bytes;
        // Its push lies below the checkpoint: later pushes may already be in the map.
        return true;
      }
      default:
        throw corruption(record, 'unknown record type');
    }
  }
}
