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
import type { LedgerReader, ScanOptions } from './ledger-reader.js';
import { openQueryCursor } from './plan.js';
import { toTailSource, type ParsedSource } from './sources.js';
import type { UnappliedTail } from './tail.js';

/** Index hits decoded per step of a query read. */
const READ_BATCH_EVENTS = 128;

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
    const cursor = await openQueryCursor(this.#db, items, forward, scan.from);
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
