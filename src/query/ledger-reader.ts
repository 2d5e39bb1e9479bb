/**
 * Reads events from LevelDB: the ledger by position, or an index range followed by point reads
 * of the chunks its entries name. Everything streams through iterators in bounded batches.
 */
import { FactError } from '../errors.js';
import { CHUNK_EVENTS_MAX, decodeChunk, openChunk, recordedEvent, recordedEventOf, type ChunkView, type DecodedChunk } from '../model/chunk.js';
import { entryHits, isPostingSpace, streamEntryRange, type IndexHit } from '../indexes/entries.js';
import { indexKey, indexRange, KeySpace, ledgerKey, spaceRange } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import type { GeneratedIds } from '../model/ids.js';
import type { RecordedEvent } from '../model/types.js';
import { readU64BE } from '../bytes.js';

export const READ_BATCH_ENTRIES = 128;
/** Ledger chunks a scan reads per LevelDB step (up to 4,096 events). */
export const LEDGER_SCAN_STEP_CHUNKS = 16;

export interface ScanOptions {
  from: number | undefined;
  direction: 'forward' | 'backward';
  limit: number;
  signal: AbortSignal | undefined;
}

export class LedgerReader {
  readonly #db: LevelDatabase;

  readonly #ids: GeneratedIds;

  constructor(db: LevelDatabase, ids: GeneratedIds) {
    this.#db = db;
    this.#ids = ids;
  }

  /** The stored bytes of the chunks at `firstPositions`; an index naming a missing chunk is corruption. */
  async #chunkValues(firstPositions: readonly number[]): Promise<Map<number, Uint8Array>> {
    const found = new Map<number, Uint8Array>();
    const missing = [...new Set(firstPositions)];
    if (missing.length > 0) {
      const values = await this.#db.getMany<Uint8Array, Uint8Array>(missing.map((position) => ledgerKey(position)), VIEW);
      for (const [index, first] of missing.entries()) {
        const value = values[index];
        if (value === undefined) throw missingChunk(first);
        found.set(first, value);
      }
    }
    return found;
  }

  /**
   * The chunks at `firstPositions`, each decoded once. Never cached across calls: the events
   * handed out share the decoded values, which a caller may change.
   */
  async chunks(firstPositions: readonly number[]): Promise<Map<number, DecodedChunk>> {
    const decoded = new Map<number, DecodedChunk>();
    for (const [first, value] of await this.#chunkValues(firstPositions)) decoded.set(first, decodeChunk(value, first));
    return decoded;
  }

  /** Whether eventsSync can read (classic-level can; a database without getSync cannot). */
  get readsSync(): boolean {
    return (this.#db.supports as { getSync?: boolean }).getSync === true;
  }

  /**
   * events(), without a round trip through LevelDB's thread pool (getSync: a few microseconds
   * per chunk in the block cache instead of tens for a hop). Only where readsSync.
   */
  eventsSync(hits: readonly IndexHit[]): RecordedEvent[] {
    const values = new Map<number, Uint8Array>();
    for (const hit of hits) {
      if (values.has(hit.chunk)) continue;
      const value = this.#db.getSync<Uint8Array, Uint8Array>(ledgerKey(hit.chunk), VIEW);
      if (value === undefined) throw missingChunk(hit.chunk);
      values.set(hit.chunk, value);
    }
    return this.#eventsOf(hits, values);
  }

  /** Events of positions `hits` (in the given order): only these events are decoded (and their checksums verified). */
  async events(hits: readonly IndexHit[]): Promise<RecordedEvent[]> {
    return this.#eventsOf(hits, await this.#chunkValues(hits.map((hit) => hit.chunk)));
  }

  #eventsOf(hits: readonly IndexHit[], values: ReadonlyMap<number, Uint8Array>): RecordedEvent[] {
    const views = new Map<number, ChunkView>();
    return hits.map((hit) => {
      let view = views.get(hit.chunk);
      if (view === undefined) {
        view = openChunk(values.get(hit.chunk)!, hit.chunk);
        views.set(hit.chunk, view);
      }
      const index = hit.position - hit.chunk;
      // Index values have no checksum: a damaged one may name a position before its chunk, too.
      if (index < 0 || index >= view.count) {
        throw new FactError('FACT_CORRUPTION', `an index names position ${hit.position} in ledger chunk ${hit.chunk}, which holds positions ${hit.chunk} … ${hit.chunk + view.count - 1}; run verify() or rebuildIndexes()`, {
          details: { chunk: hit.chunk, position: hit.position },
        });
      }
      return recordedEventOf(view, view.tuple(index), hit.chunk, index, this.#ids);
    });
  }

  /** The whole ledger from `from` (inclusive), forward or backward. */
  async *scanLedger(options: ScanOptions, head: number): AsyncGenerator<RecordedEvent> {
    for await (const batch of this.scanLedgerBatches(options, head)) yield* batch;
  }

  /**
   * scanLedger() in batches: the events of the chunks one LevelDB step returns (up to 16 chunks),
   * so that a full scan costs no generator step per event.
   */
  async *scanLedgerBatches(options: ScanOptions, head: number): AsyncGenerator<RecordedEvent[]> {
    const { direction, signal } = options;
    let remaining = options.limit;
    if (remaining <= 0) return;
    const forward = direction === 'forward';
    const start = options.from ?? (forward ? 1 : head);
    if (forward ? start > head : start < 1) return;
    const space = spaceRange(KeySpace.ledger);
    // The chunk holding `start` has the greatest first position ≤ start.
    const iterator = forward
      ? this.#db.iterator<Uint8Array, Uint8Array>({ ...VIEW, gte: await this.#chunkStartAtOrBefore(start), lt: space.lt })
      : this.#db.iterator<Uint8Array, Uint8Array>({ ...VIEW, gte: space.gte, lte: ledgerKey(start), reverse: true });
    const step = () => {
      const entries = iterator.nextv(LEDGER_SCAN_STEP_CHUNKS);
      // Handled at once: it may settle while the generator waits at a yield.
      entries.catch(() => undefined);
      return entries;
    };
    let pending: Promise<[Uint8Array, Uint8Array][]> | null = step();
    // Chunks tile the positions 1 … head without a gap: a missing one (lost or deleted) is damage,
    // never a silently shorter read. Forward: where the next chunk must start; backward: where the
    // chunk after the next one (in position order) starts.
    const target = Math.min(start, head);
    const startAt = Math.max(start, 1);
    let expected: number | null = null;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const entries: [Uint8Array, Uint8Array][] = await (pending ?? step());
        pending = null;
        if (entries.length === 0) {
          if (forward && (expected ?? startAt) <= head) throw missingPositions(expected ?? startAt, head);
          if (!forward && (expected ?? target + 1) > 1) throw missingPositions(1, (expected ?? target + 1) - 1);
          return;
        }
        // A long scan reads its next step while it decodes this one: LevelDB's thread and ours overlap.
        if (remaining > entries.length * CHUNK_EVENTS_MAX) pending = step();
        const batch: RecordedEvent[] = [];
        for (const [key, value] of entries) {
          const first = readU64BE(key, 1);
          // Forward, chunks past the head are the apply's since the read began: the tail gave them.
          if (forward && first > head) {
            remaining = 0;
            break;
          }
          const chunk = decodeChunk(value, first);
          const count = chunk.tuples.length;
          if (forward) {
            if (expected === null ? first > startAt || first + count <= startAt : first !== expected) throw missingPositions(expected ?? startAt, expected === null && first <= startAt ? startAt : first - 1);
            expected = first + count;
          } else if (first <= head) {
            if (expected === null ? first + count - 1 < target : first + count !== expected) throw missingPositions(first + count, (expected ?? target + 1) - 1);
            expected = first;
          }
          for (let step = 0; step < count; step++) {
            const index = forward ? step : count - 1 - step;
            const position = first + index;
            if (forward ? position < start || position > head : position > start) continue;
            batch.push(recordedEvent(chunk, first, index, this.#ids));
            if (--remaining <= 0) break;
          }
          if (remaining <= 0) break;
        }
        if (batch.length > 0) yield batch;
        if (remaining <= 0) return;
      }
    } finally {
      if (pending !== null) await pending.catch(() => undefined);
      await iterator.close();
    }
  }

  /** The stored chunk holding `position` (the one with the greatest first position ≤ it), if any. */
  async chunkAt(position: number): Promise<{ first: number; chunk: DecodedChunk } | undefined> {
    const space = spaceRange(KeySpace.ledger);
    const entries = await this.#db.iterator<Uint8Array, Uint8Array>({ ...VIEW, gte: space.gte, lte: ledgerKey(position), reverse: true, limit: 1 }).all();
    const entry = entries[0];
    if (entry === undefined) return undefined;
    const first = readU64BE(entry[0], 1);
    const chunk = decodeChunk(entry[1], first);
    return position < first + chunk.tuples.length ? { first, chunk } : undefined;
  }

  async #chunkStartAtOrBefore(position: number): Promise<Uint8Array> {
    const space = spaceRange(KeySpace.ledger);
    const keys = await this.#db.keys<Uint8Array>({ keyEncoding: 'view', gte: space.gte, lte: ledgerKey(position), reverse: true, limit: 1 }).all();
    return keys[0] ?? space.gte;
  }

  /**
   * Hits of one index (type, tag, category: `from` is a position; stream: a stream position)
   * from `from` (inclusive), in either direction. Posting entries are keyed by the last number
   * they hold, so a backward read starts CHUNK_EVENTS_MAX − 1 past `from` and drops what lies beyond.
   */
  async *scanIndexHits(space: number, name: Uint8Array, options: ScanOptions): AsyncGenerator<IndexHit[]> {
    const { direction, signal, from } = options;
    let remaining = options.limit;
    if (remaining <= 0) return;
    const range = indexRange(space, name);
    const forward = direction === 'forward';
    const reach = isPostingSpace(space) ? CHUNK_EVENTS_MAX - 1 : 0;
    const bound = from === undefined ? undefined : indexKey(space, name, forward ? from : from + reach);
    const iterator = this.#db.iterator<Uint8Array, Uint8Array>(
      forward
        ? { ...VIEW, gte: bound ?? range.gte, lt: range.lt }
        : { ...VIEW, gte: range.gte, ...(bound ? { lte: bound } : { lt: range.lt }), reverse: true },
    );
    const isStream = space === KeySpace.streamPositions;
    const beyond = (number: number) => from !== undefined && (forward ? number < from : number > from);
    try {
      for (;;) {
        signal?.throwIfAborted();
        const entries = await iterator.nextv(Math.min(READ_BATCH_ENTRIES, remaining));
        if (entries.length === 0) return;
        let hits: IndexHit[] = [];
        for (const [key, value] of entries) {
          if (!isStream) {
            entryHits(space, key, value, hits, forward);
            continue;
          }
          const { chunk, firstStreamPosition, lastStreamPosition } = streamEntryRange(key, value);
          const count = lastStreamPosition - firstStreamPosition + 1;
          for (let step = 0; step < count; step++) {
            const offset = forward ? step : count - 1 - step;
            if (!beyond(firstStreamPosition + offset)) hits.push({ position: chunk + offset, chunk });
          }
        }
        if (!isStream && from !== undefined) hits = hits.filter((hit) => !beyond(hit.position));
        if (hits.length > remaining) hits = hits.slice(0, remaining);
        remaining -= hits.length;
        if (hits.length > 0) yield hits;
        if (remaining <= 0) return;
      }
    } finally {
      await iterator.close();
    }
  }
}

function missingPositions(from: number, to: number): FactError {
  return new FactError('FACT_CORRUPTION', `the ledger has no chunk holding positions ${from} … ${to} (a ledger chunk was lost); run verify()`, {
    details: { from, to },
  });
}

function missingChunk(first: number): FactError {
  return new FactError('FACT_CORRUPTION', `an index names ledger chunk ${first}, which does not exist; run verify() or rebuildIndexes()`, {
    details: { chunk: first },
  });
}
