/**
 * Query planning: a DCB query becomes a union (over items) of intersections (over an item's
 * criteria) of index cursors: types → union of type indexes; each tag → its tag index; each
 * data field → union of its values' entries. Positions come out in order, each once.
 */
import { dataValuePrefix, indexPrefix, KeySpace } from '../storage/keys.js';
import type { LevelDatabase } from '../storage/level.js';
import { FIRST_BATCH_ENTRIES, IndexCursor, IntersectionCursor, UnionCursor, type PositionCursor } from './cursors.js';
import type { CompiledItem } from '../model/query.js';
import { utf8 } from '../bytes.js';

function union(cursors: PositionCursor[], forward: boolean): PositionCursor {
  return cursors.length === 1 ? cursors[0]! : new UnionCursor(cursors, forward);
}

async function itemCursor(db: LevelDatabase, item: CompiledItem, forward: boolean, from: number | undefined, firstBatchEntries: number): Promise<PositionCursor> {
  const open = (prefix: Uint8Array, types: ReadonlySet<string> | null = null) => IndexCursor.open(db, prefix, forward, from, types, firstBatchEntries);
  const criteria: PositionCursor[] = [];
  // Tags first: they are usually the most selective, and the intersection drives from its first
  // child. Tag entries carry the event type, so the first tag cursor also applies `types`.
  const typesOnTag = item.types !== null && item.tags.length > 0 ? new Set(item.types) : null;
  for (const [index, tag] of item.tags.entries()) criteria.push(await open(indexPrefix(KeySpace.tag, utf8(tag)), index === 0 ? typesOnTag : null));
  for (const { field, values } of item.data) {
    const fieldBytes = utf8(field);
    criteria.push(union(await Promise.all(values.map((value) => open(dataValuePrefix(fieldBytes, value)))), forward));
  }
  if (item.types !== null && typesOnTag === null) {
    criteria.push(union(await Promise.all(item.types.map((type) => open(indexPrefix(KeySpace.type, utf8(type))))), forward));
  }
  return criteria.length === 1 ? criteria[0]! : IntersectionCursor.open(criteria, forward);
}

/**
 * A cursor over the positions matching any item, starting at `from` (inclusive) in the direction.
 * A read of at most `limit` events needs no more than `limit` entries of a lone tag or type index
 * to start with (intersections and type filters grow their batches as they go).
 */
export async function openQueryCursor(
  db: LevelDatabase,
  items: readonly CompiledItem[],
  forward: boolean,
  from: number | undefined,
  limit: number = Number.POSITIVE_INFINITY,
): Promise<PositionCursor> {
  const firstBatchEntries = Math.min(FIRST_BATCH_ENTRIES, limit);
  const cursors = await Promise.all(items.map((item) => itemCursor(db, item, forward, from, firstBatchEntries)));
  return union(cursors, forward);
}
