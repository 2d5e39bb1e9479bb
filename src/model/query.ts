/**
 * DCB queries (dcb.events): "all", or a non-empty list of items OR-ed together. An item matches
 * an event when its type is one of `types` (if given) AND the event carries every tag in `tags`
 * (if given) AND each top-level `data` field equals the value, or one of the values of an array.
 */
import { invalid } from '../errors.js';
import { checkName, EVENT_TYPE_SIZE_BYTES_MAX, TAG_SIZE_BYTES_MAX, uniqueNames } from './validation.js';
import { canonicalBytes } from './canonical.js';

export const DATA_FIELD_SIZE_BYTES_MAX = 256;
/**
 * Largest canonical encoding of a data-field value that is indexed (it is part of a LevelDB
 * key): an event whose value is larger is left out of that field's index, and a query for
 * such a value is refused, since the index could not answer it.
 */
export const DATA_FIELD_VALUE_SIZE_BYTES_MAX = 1024;

export interface QueryItem {
  types?: readonly string[];
  tags?: readonly string[];
  /** Field → value, or → array of accepted values. Values compare by their CBOR encoding. */
  data?: Readonly<Record<string, unknown>>;
}

/** @internal A validated item, with data values in canonical CBOR form. */
export interface CompiledItem {
  types: string[] | null;
  tags: string[];
  data: { field: string; values: Uint8Array[] }[];
}

function compileItem(item: unknown, where: string): CompiledItem {
  if (item instanceof Query) throw invalid(`${where}: expected a query item, got a Query (use .or(query))`);
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid(`${where} must be an object with types, tags or data`);
  const { types, tags, data } = item as QueryItem;
  const unknownKeys = Object.keys(item).filter((key) => key !== 'types' && key !== 'tags' && key !== 'data');
  if (unknownKeys.length > 0) throw invalid(`${where} has unknown keys ${JSON.stringify(unknownKeys)}`);
  let compiledTypes: string[] | null = null;
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length === 0) throw invalid(`${where}: types must be a non-empty array of strings`);
    compiledTypes = uniqueNames(types, (index) => `${where}: type ${index}`, EVENT_TYPE_SIZE_BYTES_MAX);
  }
  let compiledTags: string[] = [];
  if (tags !== undefined) {
    if (!Array.isArray(tags) || tags.length === 0) throw invalid(`${where}: tags must be a non-empty array of strings`);
    compiledTags = uniqueNames(tags, (index) => `${where}: tag ${index}`, TAG_SIZE_BYTES_MAX);
  }
  const compiledData: CompiledItem['data'] = [];
  if (data !== undefined) {
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw invalid(`${where}: data must be an object of field → value`);
    const fields = Object.keys(data);
    if (fields.length === 0) throw invalid(`${where}: data must name at least one field`);
    for (const field of fields.sort()) {
      checkName(field, `${where}: data field`, DATA_FIELD_SIZE_BYTES_MAX);
      const raw = data[field];
      // Array.from: a sparse array's hole is the value undefined (map would skip it and keep the hole).
      const values: unknown[] = Array.isArray(raw) ? Array.from(raw) : [raw];
      if (values.length === 0) throw invalid(`${where}: data.${field} must list at least one value`);
      let encoded: Uint8Array[];
      try {
        encoded = values.map((value) => canonicalBytes(value));
      } catch {
        throw invalid(`${where}: data.${field} has a value that cannot be encoded as CBOR`);
      }
      const large = encoded.findIndex((value) => value.length > DATA_FIELD_VALUE_SIZE_BYTES_MAX);
      if (large >= 0) {
        throw invalid(
          `${where}: data.${field} has a value of ${encoded[large]!.length} bytes (canonical CBOR); data-field values above DATA_FIELD_VALUE_SIZE_BYTES_MAX (${DATA_FIELD_VALUE_SIZE_BYTES_MAX}) are not indexed, so they cannot be queried`,
        );
      }
      compiledData.push({ field, values: dedupeBytes(encoded) });
    }
  }
  if (compiledTypes === null && compiledTags.length === 0 && compiledData.length === 0) {
    throw invalid(`${where} has no criteria: give types, tags or data (use Query.all() for every event)`);
  }
  return { types: compiledTypes, tags: compiledTags, data: compiledData };
}

function dedupeBytes(values: Uint8Array[]): Uint8Array[] {
  const seen = new Set<string>();
  return values.filter((value) => {
    const key = Buffer.from(value).toString('hex');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** An immutable DCB query. Build with Query.all(), Query.items(), Query.types(), Query.tags(), Query.data(). */
export class Query {
  readonly #items: readonly CompiledItem[] | 'all';

  private constructor(items: readonly CompiledItem[] | 'all') {
    this.#items = items;
  }

  /** Every event. */
  static all(): Query {
    return new Query('all');
  }

  /** Events matching any of the items. */
  static items(...items: QueryItem[]): Query {
    if (items.length === 0) throw invalid('Query.items: give at least one item (use Query.all() for every event)');
    return new Query(items.map((item, index) => compileItem(item, `Query.items: item ${index}`)));
  }

  /** Events of any of these types. */
  static types(...types: string[]): Query {
    return new Query([compileItem({ types }, 'Query.types')]);
  }

  /** Events carrying all of these tags. */
  static tags(...tags: string[]): Query {
    return new Query([compileItem({ tags }, 'Query.tags')]);
  }

  /** Events whose top-level data fields equal these values (an array lists accepted values). */
  static data(data: Record<string, unknown>): Query {
    return new Query([compileItem({ data }, 'Query.data')]);
  }

  /** Narrows the last item: its events must also carry all of these tags. */
  withTags(...tags: string[]): Query {
    return this.#refineLast({ tags }, 'withTags');
  }

  /** Narrows the last item: its events must also be of one of these types. */
  withTypes(...types: string[]): Query {
    return this.#refineLast({ types }, 'withTypes');
  }

  /** Narrows the last item by data field values. */
  withData(data: Record<string, unknown>): Query {
    return this.#refineLast({ data }, 'withData');
  }

  /** Events matching this query or any of the others (queries or items). */
  or(...others: (Query | QueryItem)[]): Query {
    // Every argument is validated, even when the result is Query.all().
    let all = this.#items === 'all';
    const items = this.#items === 'all' ? [] : [...this.#items];
    for (const [index, other] of others.entries()) {
      if (other instanceof Query) {
        if (other.#items === 'all') all = true;
        else items.push(...other.#items);
      } else {
        items.push(compileItem(other, `Query.or: argument ${index}`));
      }
    }
    return all ? Query.all() : new Query(items);
  }

  #refineLast(extra: QueryItem, method: string): Query {
    if (this.#items === 'all') throw invalid(`Query.${method}: Query.all() has no item to narrow`);
    const last = this.#items[this.#items.length - 1]!;
    const checked = compileItem(extra, `Query.${method}`);
    if (checked.types !== null && last.types !== null) throw invalid(`Query.${method}: the item already has types`);
    const fields = new Set(last.data.map((entry) => entry.field));
    const clash = checked.data.find((entry) => fields.has(entry.field));
    if (clash) throw invalid(`Query.${method}: the item already constrains data.${clash.field}`);
    const merged: CompiledItem = {
      types: checked.types ?? last.types,
      tags: [...new Set([...last.tags, ...checked.tags])],
      data: [...last.data, ...checked.data].sort((a, b) => (a.field < b.field ? -1 : a.field > b.field ? 1 : 0)),
    };
    return new Query([...this.#items.slice(0, -1), merged]);
  }

  /** @internal The compiled items, or 'all'. */
  get compiled(): readonly CompiledItem[] | 'all' {
    return this.#items;
  }

  /** @internal Data fields this query needs indexes for. */
  get dataFields(): string[] {
    if (this.#items === 'all') return [];
    return [...new Set(this.#items.flatMap((item) => item.data.map((entry) => entry.field)))];
  }

  toJSON(): unknown {
    if (this.#items === 'all') return 'all';
    return this.#items.map((item) => ({
      ...(item.types ? { types: item.types } : {}),
      ...(item.tags.length > 0 ? { tags: item.tags } : {}),
      ...(item.data.length > 0 ? { data: Object.fromEntries(item.data.map((entry) => [entry.field, `${entry.values.length} value(s)`])) } : {}),
    }));
  }
}

/**
 * The canonical CBOR bytes of a top-level data field, or null when the event has no such field
 * or its value is above DATA_FIELD_VALUE_SIZE_BYTES_MAX (not indexed: no query can ask for it).
 */
export function dataFieldBytes(data: unknown, field: string): Uint8Array | null {
  if (typeof data !== 'object' || data === null || Array.isArray(data) || data instanceof Map || ArrayBuffer.isView(data) || data instanceof Date) {
    return null;
  }
  if (!Object.prototype.hasOwnProperty.call(data, field)) return null;
  const bytes = canonicalBytes((data as Record<string, unknown>)[field]);
  return bytes.length > DATA_FIELD_VALUE_SIZE_BYTES_MAX ? null : bytes;
}

/** Whether an event matches a query, in memory (the reference semantics of the indexed path). */
export function matchesQuery(query: Query, event: { type: string; tags: readonly string[]; data: unknown }): boolean {
  const items = query.compiled;
  if (items === 'all') return true;
  return items.some((item) => {
    if (item.types !== null && !item.types.includes(event.type)) return false;
    if (!item.tags.every((tag) => event.tags.includes(tag))) return false;
    return item.data.every(({ field, values }) => {
      const actual = dataFieldBytes(event.data, field);
      return actual !== null && values.some((value) => Buffer.compare(value, actual) === 0);
    });
  });
}

/** What a read reads: the whole ledger, one index, or a DCB query. */
export type ReadSource = 'all' | { stream: string } | { type: string } | { tag: string } | { category: string } | { query: Query };

/** DCB append condition: fail if an event matching the query exists after position `after`. */
export interface AppendCondition {
  failIfEventsMatch: Query;
  /** The highest position the client saw when deciding; absent = no matching event may exist. */
  after?: number;
}
