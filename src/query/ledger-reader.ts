/**
 * Reads events from LevelDB: the ledger by position, or an index range followed by point reads
 * of the chunks its entries name. Everything streams through iterators in bounded batches.
 */
import { FactError } from '../errors.js';
import { decodeChunk, recordedEvent, type DecodedChunk } from '../ledger/chunk.js';
import { indexKey, indexKeyNumber, indexRange, KeySpace, ledgerKey, readU64, spaceRange } from '../ledger/keys.js';
import { VIEW, type LevelDatabase } from '../ledger/level.js';
import type { RecordedEvent } from '../types.js';

export const READ_BATCH_ENTRIES = 128;
export const CHUNK_CACHE_ENTRIES_MAX = 64;

export interface ScanOptions {
  from: number | undefined;
  direction: 'forward' | 'backward';
  limit: number;
  signal: AbortSignal | undefined;
}

/** An index entry: the event's position and its chunk's first position. */
export interface IndexHit {
  position: number;
  chunk: number;
}

export class LedgerReader {
  readonly #db: LevelDatabase;
  /** Chunks never change once written, so cached decodes stay valid. */
  readonly #cache = new Map<number, DecodedChunk>();

  constructor(db: LevelDatabase) {
    this.#db = db;
  }

  async chunks(firstPositions: readonly number[]): Promise<Map<number, DecodedChunk>> {
    const found = new Map<number, DecodedChunk>();
    const missing: number[] = [];
    for (const first of firstPositions) {
      const cached = this.#cache.get(first);
      if (cached) found.set(first, cached);
      else if (!missing.includes(first)) missing.push(first);
    }
    if (missing.length > 0) {
      const values = await this.#db.getMany<Uint8Array, Uint8Array>(missing.map((position) => ledgerKey(position)), VIEW);
      for (const [index, first] of missing.entries()) {
        const value = values[index];
        if (value === undefined) {
          throw new FactError('FACT_CORRUPTION', `an index names ledger chunk ${first}, which does not exist; run verify() or rebuildIndexes()`, {
            details: { chunk: first },
          });
        }
        const chunk = decodeChunk(value, String(first));
        this.#remember(first, chunk);
        found.set(first, chunk);
      }
    }
    return found;
  }

  #remember(first: number, chunk: DecodedChunk): void {
    if (this.#cache.size >= CHUNK_CACHE_ENTRIES_MAX) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(first, chunk);
  }

  /** Events of positions `hits` (in the given order). */
  async events(hits: readonly IndexHit[]): Promise<RecordedEvent[]> {
    const chunks = await this.chunks(hits.map((hit) => hit.chunk));
    return hits.map((hit) => recordedEvent(chunks.get(hit.chunk)!, hit.chunk, hit.position - hit.chunk));
  }

  /** The whole ledger from `from` (inclusive), forward or backward. */
  async *scanLedger(options: ScanOptions, head: number): AsyncGenerator<RecordedEvent> {
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
    try {
      for (;;) {
        signal?.throwIfAborted();
        const entries = await iterator.nextv(16);
        if (entries.length === 0) return;
        for (const [key, value] of entries) {
          const first = readU64(key, 1);
          const chunk = decodeChunk(value, String(first));
          const count = chunk.tuples.length;
          for (let step = 0; step < count; step++) {
            const index = forward ? step : count - 1 - step;
            const position = first + index;
            if (forward ? position < start || position > head : position > start) continue;
            yield recordedEvent(chunk, first, index);
            if (--remaining <= 0) return;
          }
        }
      }
    } finally {
      await iterator.close();
    }
  }

  async #chunkStartAtOrBefore(position: number): Promise<Uint8Array> {
    const space = spaceRange(KeySpace.ledger);
    const keys = await this.#db.keys<Uint8Array>({ keyEncoding: 'view', gte: space.gte, lte: ledgerKey(position), reverse: true, limit: 1 }).all();
    return keys[0] ?? space.gte;
  }

  /**
   * Entries of one index (type, tag, category: number = position; stream: number = stream
   * position and the value carries the position) from `from`, in either direction.
   */
  async *scanIndexHits(space: number, name: Uint8Array, options: ScanOptions): AsyncGenerator<IndexHit[]> {
    const { direction, signal } = options;
    let remaining = options.limit;
    if (remaining <= 0) return;
    const range = indexRange(space, name);
    const forward = direction === 'forward';
    const bound = options.from === undefined ? undefined : indexKey(space, name, options.from);
    const iterator = this.#db.iterator<Uint8Array, Uint8Array>(
      forward
        ? { ...VIEW, gte: bound ?? range.gte, lt: range.lt }
        : { ...VIEW, gte: range.gte, ...(bound ? { lte: bound } : { lt: range.lt }), reverse: true },
    );
    const isStream = space === KeySpace.stream;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const entries = await iterator.nextv(Math.min(READ_BATCH_ENTRIES, remaining));
        if (entries.length === 0) return;
        const hits: IndexHit[] = entries.map(([key, value]) =>
          isStream ? { position: readU64(value, 0), chunk: readU64(value, 8) } : { position: indexKeyNumber(key), chunk: readU64(value, 0) },
        );
        remaining -= hits.length;
        yield hits;
        if (remaining <= 0) return;
      }
    } finally {
      await iterator.close();
    }
  }
}
