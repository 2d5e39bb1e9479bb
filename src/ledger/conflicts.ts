/**
 * DCB conflict checks: the newest committed event after a position that matches a condition's
 * query, settled from memory where it can be (the newest position per tag and type), and the
 * same check among the appends planned in one group.
 */
import { readU64BE, utf8 } from '../bytes.js';
import { matchesQuery, type CompiledItem, type Query } from '../model/query.js';
import type { TailChunk, TailSnapshot, UnappliedTail } from '../query/tail.js';
import { openQueryCursor } from '../query/plan.js';
import { indexPrefix, KeySpace, prefixBounds } from '../storage/keys.js';
import type { LevelDatabase } from '../storage/level.js';
import type { CheckedCondition, PlannedAppend } from './requests.js';
import type { LedgerState } from './state.js';

export const NEWEST_POSITIONS_ENTRIES_MAX = 100_000;

export class ConflictCheck {
  readonly #db: LevelDatabase;
  readonly #tail: UnappliedTail;
  readonly #state: LedgerState;
  /** Newest position per tag or type index ('G'/'T' + name); bounded. */
  readonly #newestPositions = new Map<string, number>();

  constructor(db: LevelDatabase, tail: UnappliedTail, state: LedgerState) {
    this.#db = db;
    this.#tail = tail;
    this.#state = state;
  }

  /** Position of the newest committed event after `after` matching the query, or 0. Only the writer calls it. */
  async latestMatch(query: Query, after: number): Promise<number> {
    const items = query.compiled;
    if (items === 'all') return this.#state.head > after ? this.#state.head : 0;
    const tail = this.#tail.snapshot(this.#state.appliedHead);
    if (!(await this.#mayMatchAfter(items, after, tail))) return 0;
    // Tail positions are newer than LevelDB's: a match there is the newest.
    const inTail = tail.newestMatch(query);
    if (inTail > 0) return inTail > after ? inTail : 0;
    const cursor = await openQueryCursor(this.#db, items, false, undefined);
    try {
      const hit = cursor.current;
      return hit !== null && hit.position > after ? hit.position : 0;
    } finally {
      await cursor.close();
    }
  }

  /** Keeps the cached newest positions right as a group becomes durable (entries not cached are read on demand). */
  noteDurable(chunks: readonly TailChunk[]): void {
    if (this.#newestPositions.size === 0) return;
    const note = (key: string, position: number) => {
      if (this.#newestPositions.has(key)) this.#newestPositions.set(key, position);
    };
    const typePrefix = String.fromCharCode(KeySpace.type);
    const tagPrefix = String.fromCharCode(KeySpace.tag);
    for (const chunk of chunks) {
      chunk.planned.tuples.forEach(([, type, , , tags], index) => {
        note(typePrefix + type, chunk.firstPosition + index);
        for (const tag of tags) note(tagPrefix + tag, chunk.firstPosition + index);
      });
    }
  }

  /** Drops what was read from the indexes (a rebuild may have changed the entries it came from). */
  forget(): void {
    this.#newestPositions.clear();
  }

  /**
   * False when no item can match an event after `after`: an item's matches are bounded by the
   * newest event of each of its tags and of its types (kept in memory, read from the index on a
   * miss). Most conditions are settled here without an index scan.
   */
  async #mayMatchAfter(items: readonly CompiledItem[], after: number, tail: TailSnapshot): Promise<boolean> {
    for (const item of items) {
      let bound = Number.POSITIVE_INFINITY;
      for (const tag of item.tags) bound = Math.min(bound, await this.#newestWith(KeySpace.tag, tag, tail));
      if (item.types !== null && bound > after) {
        let newestOfTypes = 0;
        for (const type of item.types) newestOfTypes = Math.max(newestOfTypes, await this.#newestWith(KeySpace.type, type, tail));
        bound = Math.min(bound, newestOfTypes);
      }
      if (bound > after) return true;
    }
    return false;
  }

  /** The newest position with one tag or type (0 when none). */
  async #newestWith(space: number, name: string, tail: TailSnapshot): Promise<number> {
    const key = String.fromCharCode(space) + name;
    const cached = this.#newestPositions.get(key);
    if (cached !== undefined) return cached;
    // Tail positions are newer than LevelDB's: LevelDB is read only when the tail has none.
    let newest = tail.newestWith(space === KeySpace.tag ? 'tag' : 'type', name);
    if (newest === 0) {
      const keys = await this.#db.keys<Uint8Array>({ keyEncoding: 'view', ...prefixBounds(indexPrefix(space, utf8(name))), reverse: true, limit: 1 }).all();
      if (keys[0] !== undefined) newest = readU64BE(keys[0], keys[0].length - 8);
    }
    if (this.#newestPositions.size >= NEWEST_POSITIONS_ENTRIES_MAX) this.#newestPositions.clear();
    this.#newestPositions.set(key, newest);
    return newest;
  }
}

/** The newest position among a group's planned appends that matches a condition (0 if none). */
export function latestPlannedMatch(planned: readonly PlannedAppend[], condition: CheckedCondition): number {
  let latest = 0;
  for (const append of planned) {
    for (const chunk of append.chunks) {
      chunk.header.tuples.forEach(([, type, data, , tags], index) => {
        const position = chunk.firstPosition + index;
        if (position > condition.after && position > latest && matchesQuery(condition.query, { type, tags, data })) latest = position;
      });
    }
  }
  return latest;
}
