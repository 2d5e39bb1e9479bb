/**
 * Streaming cursors over index entries ordered by position, in either direction: one index
 * range, a union (types of an item, values of a data field, items of a query) and a leapfrog
 * intersection (tags and criteria of one item). Intersections seek instead of scanning, so a
 * rare tag ANDed with a common type reads about as many entries as the rare tag has.
 */
import { entryHits, isPostingSpace, type IndexHit } from '../indexes/entries.js';
import { CHUNK_EVENTS_MAX } from '../model/chunk.js';
import { prefixBounds } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import { utf8Decode, writeU64BE } from '../bytes.js';

/**
 * Entries of a cursor's first LevelDB read when the read has no small limit: enough that a typical
 * decision or tag read (tens of matches) ends in one nextv per cursor, each nextv being a hop
 * to LevelDB's thread pool.
 */
export const FIRST_BATCH_ENTRIES = 32;
const BATCH_ENTRIES_MAX = 256;

export interface PositionCursor {
  /** The hit under the cursor, or null once exhausted. */
  readonly current: IndexHit | null;
  /** Moves past the current hit. */
  next(): Promise<void>;
  /** True when next() needs no LevelDB read: nextSync() may be called instead. */
  readonly buffered: boolean;
  /** next() from what is buffered; only when `buffered`. */
  nextSync(): void;
  /** Moves to the first hit at or after `position` (forward), at or before it (backward). */
  seek(position: number): Promise<void>;
  close(): Promise<void>;
}

/** True when `a` comes before `b` in the cursor's direction. */
function before(forward: boolean, a: number, b: number): boolean {
  return forward ? a < b : a > b;
}

/**
 * The hits of one index by position (type, tag, data), in one direction. Type entries are
 * postings keyed by their last position (entries.ts): a backward read or seek to P starts at
 * the key P + CHUNK_EVENTS_MAX − 1, the furthest an entry holding P can be, and hits beyond the
 * target are dropped.
 */
export class IndexCursor implements PositionCursor {
  readonly #prefix: Uint8Array;
  readonly #space: number;
  /** How far past a position the key of an entry holding it can be. */
  readonly #keyReachPositions: number;
  readonly #forward: boolean;
  readonly #iterator;
  /** The from or seek target: hits before it (in the direction) are dropped. */
  #target: number | undefined;
  #buffer: IndexHit[] = [];
  #index = 0;
  #exhausted = false;
  #batchEntries: number;
  /** Tag entries carry their event's type after the chunk position: keep only these types. */
  readonly #types: ReadonlySet<string> | null;

  private constructor(
    db: LevelDatabase,
    prefix: Uint8Array,
    forward: boolean,
    from: number | undefined,
    types: ReadonlySet<string> | null,
    firstBatchEntries: number,
  ) {
    this.#batchEntries = Math.max(1, Math.min(BATCH_ENTRIES_MAX, firstBatchEntries));
    this.#prefix = prefix;
    this.#space = prefix[0]!;
    this.#keyReachPositions = isPostingSpace(this.#space) ? CHUNK_EVENTS_MAX - 1 : 0;
    this.#forward = forward;
    this.#types = types;
    this.#target = from;
    const bounds = prefixBounds(prefix);
    const start = from === undefined ? undefined : this.#seekKey(from);
    this.#iterator = db.iterator<Uint8Array, Uint8Array>(
      forward
        ? { ...VIEW, gte: start ?? bounds.gte, lt: bounds.lt }
        : { ...VIEW, gte: bounds.gte, ...(start ? { lte: start } : { lt: bounds.lt }), reverse: true },
    );
  }

  static async open(
    db: LevelDatabase,
    prefix: Uint8Array,
    forward: boolean,
    from: number | undefined,
    types: ReadonlySet<string> | null = null,
    firstBatchEntries = FIRST_BATCH_ENTRIES,
  ): Promise<IndexCursor> {
    const cursor = new IndexCursor(db, prefix, forward, from, types, firstBatchEntries);
    await cursor.#fill();
    return cursor;
  }

  get current(): IndexHit | null {
    return this.#buffer[this.#index] ?? null;
  }

  async next(): Promise<void> {
    this.#index++;
    if (this.#index >= this.#buffer.length) await this.#fill();
  }

  get buffered(): boolean {
    return this.#index + 1 < this.#buffer.length || this.#exhausted;
  }

  nextSync(): void {
    this.#index++;
  }

  async seek(position: number): Promise<void> {
    const current = this.current;
    if (current === null || !before(this.#forward, current.position, position)) return;
    const last = this.#buffer[this.#buffer.length - 1]!;
    if (!before(this.#forward, last.position, position)) {
      while (before(this.#forward, this.#buffer[this.#index]!.position, position)) this.#index++;
      return;
    }
    if (this.#exhausted) {
      this.#buffer = [];
      this.#index = 0;
      return;
    }
    this.#target = position;
    this.#iterator.seek(this.#seekKey(position));
    await this.#fill();
  }

  async close(): Promise<void> {
    await this.#iterator.close();
  }

  /** The key an iterator seeks to for the first hit at or after (forward) / before (backward) `position`. */
  #seekKey(position: number): Uint8Array {
    const key = new Uint8Array(this.#prefix.length + 8);
    key.set(this.#prefix, 0);
    writeU64BE(key, this.#prefix.length, this.#forward ? position : position + this.#keyReachPositions);
    return key;
  }

  async #fill(): Promise<void> {
    this.#buffer = [];
    this.#index = 0;
    // With a type filter a whole batch can be skipped: read on until a hit or the end.
    while (this.#buffer.length === 0 && !this.#exhausted) {
      const asked = this.#batchEntries;
      let entries = await this.#iterator.nextv(asked);
      // Small first batches keep `limit: 1` reads cheap; long scans grow into large ones.
      this.#batchEntries = Math.min(BATCH_ENTRIES_MAX, this.#batchEntries * 2);
      // Fewer entries than asked: usually the range's end. classic-level then answers the next
      // nextv from its ended flag without a hop, and knowing the cursor exhausted lets a batch
      // read finish from the buffer (the byte budget can cut a batch short too: then this reads on).
      if (entries.length > 0 && entries.length < asked) {
        const more = await this.#iterator.nextv(1);
        if (more.length === 0) this.#exhausted = true;
        else entries = entries.concat(more);
      }
      if (entries.length === 0) this.#exhausted = true;
      for (const [key, value] of entries) {
        if (this.#types !== null && !this.#types.has(utf8Decode(value.subarray(8)))) continue;
        entryHits(this.#space, key, value, this.#buffer, this.#forward);
      }
      const target = this.#target;
      if (target !== undefined && this.#buffer.length > 0 && before(this.#forward, this.#buffer[0]!.position, target)) {
        this.#buffer = this.#buffer.filter((hit) => !before(this.#forward, hit.position, target));
      }
    }
  }
}

/** Hits of any child, each position once. */
export class UnionCursor implements PositionCursor {
  readonly #children: PositionCursor[];
  readonly #forward: boolean;

  constructor(children: PositionCursor[], forward: boolean) {
    this.#children = children;
    this.#forward = forward;
  }

  get current(): IndexHit | null {
    let best: IndexHit | null = null;
    for (const child of this.#children) {
      const hit = child.current;
      if (hit !== null && (best === null || before(this.#forward, hit.position, best.position))) best = hit;
    }
    return best;
  }

  async next(): Promise<void> {
    const current = this.current;
    if (current === null) return;
    await Promise.all(this.#children.filter((child) => child.current?.position === current.position).map((child) => child.next()));
  }

  get buffered(): boolean {
    const current = this.current;
    return current === null || this.#children.every((child) => child.current?.position !== current.position || child.buffered);
  }

  nextSync(): void {
    const current = this.current;
    if (current === null) return;
    for (const child of this.#children) if (child.current?.position === current.position) child.nextSync();
  }

  async seek(position: number): Promise<void> {
    await Promise.all(this.#children.map((child) => child.seek(position)));
  }

  async close(): Promise<void> {
    await Promise.all(this.#children.map((child) => child.close()));
  }
}

/** Hits present in every child (leapfrog join). */
export class IntersectionCursor implements PositionCursor {
  readonly #children: PositionCursor[];
  readonly #forward: boolean;
  #current: IndexHit | null = null;

  private constructor(children: PositionCursor[], forward: boolean) {
    this.#children = children;
    this.#forward = forward;
  }

  static async open(children: PositionCursor[], forward: boolean): Promise<IntersectionCursor> {
    const cursor = new IntersectionCursor(children, forward);
    await cursor.#align();
    return cursor;
  }

  get current(): IndexHit | null {
    return this.#current;
  }

  async next(): Promise<void> {
    if (this.#current === null) return;
    await this.#children[0]!.next();
    await this.#align();
  }

  /** Aligning seeks the children, which may read: only an exhausted intersection is buffered. */
  get buffered(): boolean {
    return this.#current === null;
  }

  nextSync(): void {}

  async seek(position: number): Promise<void> {
    if (this.#current === null || !before(this.#forward, this.#current.position, position)) return;
    await this.#children[0]!.seek(position);
    await this.#align();
  }

  async close(): Promise<void> {
    await Promise.all(this.#children.map((child) => child.close()));
  }

  /** Seeks every child to the furthest current position until all agree or one runs out. */
  async #align(): Promise<void> {
    for (;;) {
      let target: number | null = null;
      for (const child of this.#children) {
        const hit = child.current;
        if (hit === null) {
          this.#current = null;
          return;
        }
        if (target === null || before(this.#forward, target, hit.position)) target = hit.position;
      }
      let agreed = true;
      for (const child of this.#children) {
        await child.seek(target!);
        const hit = child.current;
        if (hit === null) {
          this.#current = null;
          return;
        }
        if (hit.position !== target) agreed = false;
      }
      if (agreed) {
        this.#current = this.#children[0]!.current;
        return;
      }
    }
  }
}
