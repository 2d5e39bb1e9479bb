/**
 * Reads that see every resolved append: LevelDB up to the applied head merged with the unapplied
 * tail (docs/storage-format.md, "Write path"). Each read snapshots the tail before it touches
 * LevelDB, so an event the apply moves meanwhile comes once, never twice or not at all.
 */
import { assert } from '../errors.js';
import { readU64BE, utf8, utf8Decode } from '../bytes.js';
import { Query } from '../model/query.js';
import type { RecordedEvent } from '../model/types.js';
import { indexRange, KeySpace, nameKey, spaceRange } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import type { IndexHit } from '../indexes/entries.js';
import type { LedgerReader, ScanOptions } from './ledger-reader.js';
import type { PositionCursor } from './cursors.js';
import { openQueryCursor } from './plan.js';
import { toTailSource, type ParsedSource } from './sources.js';
import type { UnappliedTail } from './tail.js';

/** Index hits decoded per step of a query read. */
const READ_BATCH_EVENTS = 128;
/** Hits whose chunks one getMany of a batch read fetches: bounds a LevelDB call, not the read. */
const BATCH_READ_HITS_MAX = 4096;
/**
 * Up to this many hits, a batch read fetches their chunks with getSync: a hop through LevelDB's
 * thread pool costs more than a few point reads from the block or page cache, and so few keep
 * the event loop blocked only briefly (bench/query.bench.ts, the 10-match tag query).
 */
const SYNC_READ_HITS_MAX = 64;

/** A stream's version as LevelDB holds it (0 when it has none). */
export async function storedStreamVersion(db: LevelDatabase, stream: string): Promise<number> {
  const value = await db.get<Uint8Array, Uint8Array>(nameKey(KeySpace.streamVersions, utf8(stream)), VIEW);
  return value === undefined ? 0 : readU64BE(value, 0);
}

export class MergedReads {
  readonly #db: LevelDatabase;
  readonly #reader: LedgerReader;
  readonly #tail: UnappliedTail;
  readonly #appliedHead: () => number;

  constructor(db: LevelDatabase, reader: LedgerReader, tail: UnappliedTail, appliedHead: () => number) {
    this.#db = db;
    this.#reader = reader;
    this.#tail = tail;
    this.#appliedHead = appliedHead;
  }

  /** A read: LevelDB up to the applied head, then the unapplied tail (the reverse backward). */
  async *scan(index: ParsedSource, scan: ScanOptions): AsyncGenerator<RecordedEvent> {
    // The snapshot before any LevelDB read: a chunk the apply moves meanwhile is then in both,
    // and the LevelDB side skips it, never in neither.
    const tail = this.#tail.snapshot(this.#appliedHead());
    if (tail.isEmpty) {
      yield* this.#storedScan(index, scan, tail.appliedHead);
      return;
    }
    const forward = scan.direction === 'forward';
    const tailSource = toTailSource(index);
    let remaining = scan.limit;
    if (!forward) {
      for (const event of tail.events(tailSource, false, scan.from, remaining)) {
        yield event;
        remaining--;
      }
    }
    if (remaining <= 0) return;
    for await (const event of this.#storedScan(index, { ...scan, limit: Number.POSITIVE_INFINITY }, tail.appliedHead)) {
      if (event.position > tail.appliedHead) {
        if (forward) break;
        continue;
      }
      yield event;
      if (--remaining <= 0) return;
    }
    if (forward) yield* tail.events(tailSource, true, scan.from, remaining);
  }

  /**
   * scan() of the whole ledger in batches (LevelDB's steps, then the tail's events at once):
   * a full scan then costs no generator step per event (see FlatEvents).
   */
  async *scanAllBatches(scan: ScanOptions): AsyncGenerator<RecordedEvent[]> {
    const tail = this.#tail.snapshot(this.#appliedHead());
    const forward = scan.direction === 'forward';
    let remaining = scan.limit;
    const tailEvents = (direction: boolean) => (tail.isEmpty ? [] : [...tail.events({ kind: 'all' }, direction, scan.from, remaining)]);
    if (!forward) {
      const newest = tailEvents(false);
      remaining -= newest.length;
      if (newest.length > 0) yield newest;
    }
    if (remaining <= 0) return;
    for await (let batch of this.#reader.scanLedgerBatches({ ...scan, limit: Number.POSITIVE_INFINITY }, tail.appliedHead)) {
      // Backward from above the applied head, LevelDB may hold what the apply moved since: the tail gave it.
      if (!forward && batch.length > 0 && batch[0]!.position > tail.appliedHead) batch = batch.filter((event) => event.position <= tail.appliedHead);
      if (batch.length > remaining) batch = batch.slice(0, remaining);
      if (batch.length === 0) continue;
      remaining -= batch.length;
      yield batch;
      if (remaining <= 0) return;
    }
    if (forward) {
      const newest = tailEvents(true);
      if (newest.length > 0) yield newest;
    }
  }

  /**
   * The whole of a read as an array: what scan() yields, without a step per event. For a query
   * or one index the hits are gathered first (from the cursors' buffers, reading LevelDB only
   * when a buffer runs out), then the chunks they name come in one getMany and only those are
   * decoded. The tail is snapshotted first, as in scan().
   */
  async readAll(index: ParsedSource, scan: ScanOptions): Promise<RecordedEvent[]> {
    if (index === 'all' || (index instanceof Query && index.compiled === 'all')) {
      scan.signal?.throwIfAborted();
      const events: RecordedEvent[] = [];
      for await (const batch of this.scanAllBatches(scan)) {
        for (const event of batch) events.push(event);
        scan.signal?.throwIfAborted();
      }
      return events;
    }
    scan.signal?.throwIfAborted();
    const tail = this.#tail.snapshot(this.#appliedHead());
    const forward = scan.direction === 'forward';
    const tailSource = toTailSource(index);
    const events: RecordedEvent[] = [];
    if (!forward && !tail.isEmpty) for (const event of tail.events(tailSource, false, scan.from, scan.limit)) events.push(event);
    const remaining = scan.limit - events.length;
    if (remaining > 0) {
      // LevelDB's side ends at the snapshot's applied head: what the apply moved since is in the tail.
      const hits = await this.#storedHits(index, { ...scan, limit: remaining }, tail.appliedHead);
      for (let first = 0; first < hits.length; first += BATCH_READ_HITS_MAX) {
        scan.signal?.throwIfAborted();
        const batch = hits.slice(first, first + BATCH_READ_HITS_MAX);
        const read = batch.length <= SYNC_READ_HITS_MAX && this.#reader.readsSync ? this.#reader.eventsSync(batch) : await this.#reader.events(batch);
        for (const event of read) events.push(event);
      }
    }
    if (forward && !tail.isEmpty) for (const event of tail.events(tailSource, true, scan.from, scan.limit - events.length)) events.push(event);
    return events;
  }

  /** Hits of a query or index in LevelDB up to `head` (by position), at most `scan.limit`. */
  async #storedHits(index: Query | Exclude<ParsedSource, 'all' | Query>, scan: ScanOptions, head: number): Promise<IndexHit[]> {
    const forward = scan.direction === 'forward';
    const hits: IndexHit[] = [];
    if (!(index instanceof Query)) {
      for await (const batch of this.#reader.scanIndexHits(index.space, utf8(index.name), { ...scan, limit: Number.POSITIVE_INFINITY })) {
        for (const hit of batch) {
          if (hit.position > head) {
            if (forward) return hits;
            continue;
          }
          hits.push(hit);
          if (hits.length >= scan.limit) return hits;
        }
      }
      return hits;
    }
    const items = index.compiled;
    assert(items !== 'all', 'Query.all() reads the ledger');
    const cursor = await openQueryCursor(this.#db, items, forward, scan.from, scan.limit);
    try {
      await collectHits(cursor, forward, head, scan, hits);
    } finally {
      await cursor.close();
    }
    return hits;
  }

  /** The event at `position`, if the store has it. */
  async eventAt(position: number): Promise<RecordedEvent | undefined> {
    for await (const event of this.scan('all', { from: position, direction: 'forward', limit: 1, signal: undefined })) return event;
    return undefined;
  }

  /** A stream's version: 0 when it does not exist. */
  async streamVersion(stream: string): Promise<number> {
    // The tail before LevelDB: the apply drops a stream from the tail only once LevelDB has it.
    const inTail = this.#tail.streamVersion(stream);
    if (inTail !== undefined) return inTail;
    return storedStreamVersion(this.#db, stream);
  }

  /** Stream ids, of one category or all, in LevelDB's (UTF-8 byte) order. */
  async *streams(category: string | undefined): AsyncGenerator<string> {
    // Streams created in the tail, merged in; taken first, so a stream the apply moves meanwhile
    // shows up twice at most, and is yielded once.
    const created = this.#tail
      .snapshot(this.#appliedHead())
      .newStreams(category)
      .map((stream) => Buffer.from(stream, 'utf8'))
      .sort((a, b) => Buffer.compare(a, b));
    let next = 0;
    const range = category === undefined ? spaceRange(KeySpace.streamVersions) : indexRange(KeySpace.streamCategories, utf8(category));
    const skip = category === undefined ? 1 : 1 + utf8(category).length + 1;
    for await (const key of this.#db.keys<Uint8Array>({ keyEncoding: 'view', ...range })) {
      const name = key.subarray(skip);
      while (next < created.length && Buffer.compare(created[next]!, name) < 0) yield created[next++]!.toString('utf8');
      if (next < created.length && Buffer.compare(created[next]!, name) === 0) next++;
      yield utf8Decode(name);
    }
    while (next < created.length) yield created[next++]!.toString('utf8');
  }

  /** A read of what LevelDB holds, up to `head` for the whole ledger. */
  async *#storedScan(index: ParsedSource, scan: ScanOptions, head: number): AsyncGenerator<RecordedEvent> {
    if (index === 'all' || (index instanceof Query && index.compiled === 'all')) {
      yield* this.#reader.scanLedger(scan, head);
      return;
    }
    if (index instanceof Query) {
      yield* this.#queryScan(index, scan);
      return;
    }
    for await (const hits of this.#reader.scanIndexHits(index.space, utf8(index.name), scan)) {
      yield* await this.#reader.events(hits);
    }
  }

  async *#queryScan(query: Query, scan: ScanOptions): AsyncGenerator<RecordedEvent> {
    const items = query.compiled;
    assert(items !== 'all', 'Query.all() reads the ledger');
    const forward = scan.direction === 'forward';
    const cursor = await openQueryCursor(this.#db, items, forward, scan.from, scan.limit);
    let remaining = scan.limit;
    try {
      while (remaining > 0 && cursor.current !== null) {
        scan.signal?.throwIfAborted();
        const hits = [];
        while (hits.length < READ_BATCH_EVENTS && hits.length < remaining && cursor.current !== null) {
          hits.push(cursor.current);
          await cursor.next();
        }
        remaining -= hits.length;
        yield* await this.#reader.events(hits);
      }
    } finally {
      await cursor.close();
    }
  }
}

/**
 * Moves `cursor` along, pushing its hits up to `head` (forward it stops there, backward it skips
 * what lies past it) until `scan.limit` hits or the end. Steps within the cursors' buffers are
 * synchronous; only a buffer running out awaits LevelDB.
 */
async function collectHits(cursor: PositionCursor, forward: boolean, head: number, scan: ScanOptions, hits: IndexHit[]): Promise<void> {
  for (;;) {
    const hit = cursor.current;
    if (hit === null || hits.length >= scan.limit) return;
    if (hit.position <= head) hits.push(hit);
    else if (forward) return;
    if (cursor.buffered) cursor.nextSync();
    else {
      scan.signal?.throwIfAborted();
      await cursor.next();
    }
  }
}
