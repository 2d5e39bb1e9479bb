/**
 * An independent oracle for queries, reads and append conditions, written from the DCB
 * specification (dcb.events; /work/shared/notes/event-store-semantics.md) and the README's
 * "The database" and "DCB queries and conditional appends" sections, NOT from the production
 * matcher: it imports nothing from src but types, and shares no code with src/model/query.ts or
 * src/model/canonical.ts. Plain loops and structural comparisons, so each rule can be checked by
 * reading it against the spec sentence quoted above it.
 *
 * It works on what the caller wrote (query items as plain objects), never on a compiled Query.
 *
 * Outside its domain (it throws rather than guess): cbor-x `Tag` values, RegExp and Error
 * (refused by appends anyway). Strings compare with ===, so lone surrogates (which have no UTF-8
 * form) are not modelled. Values above DATA_FIELD_VALUE_SIZE_BYTES_MAX need no rule: an event
 * with one is left out of that field's index, and a query naming such a value is refused, so
 * the size never changes which events an accepted query matches.
 */
import type { QueryItem } from '../../src/model/query.js';
import type { RecordedEvent, StreamExpectation } from '../../src/model/types.js';

/** A query as its caller wrote it: "all", or a non-empty list of items (OR-ed). */
export type OracleQuery = 'all' | readonly QueryItem[];

/** What the oracle needs of an event. */
export interface OracleEvent {
  type: string;
  tags: readonly string[];
  data: unknown;
  position?: number;
  stream?: string;
}

// ------------------------------------------------------------------------------ value equality

/**
 * README: data-field values "compare by their canonical CBOR encoding" (docs/storage-format.md,
 * "Canonical form"). Two values have the same deterministic encoding exactly when:
 * - both are numbers with the same value (integers and floats alike: JavaScript has one number
 *   type, and the shortest exact float is unique), where -0 is 0 and NaN equals NaN;
 * - both are bigints with the same value (a bigint is always a bignum: 1 ≠ 1n);
 * - both are the same string, boolean, null or undefined (each its own CBOR simple value);
 * - both are byte strings (Uint8Array, Buffer, ArrayBuffer, DataView: untagged) with equal bytes;
 * - both are typed arrays of the same other kind (each kind its own tag) with equal bytes;
 * - both are Dates (tag 1) at the same time;
 * - both are arrays of equal length, equal element by element;
 * - both are Maps (tag 259), or both Sets (tag 258), with the same entries in any order;
 * - both are plain objects (CBOR maps of their own enumerable string keys) with the same keys
 *   and equal values, in any key order.
 * Anything else differs (a Map is not an object, an array is not a Set, '1' is not 1).
 */
export function valuesEqual(a: unknown, b: unknown): boolean {
  const kindA = kindOf(a);
  const kindB = kindOf(b);
  if (kindA !== kindB) return false;
  switch (kindA) {
    case 'number': {
      const x = a as number;
      const y = b as number;
      if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) && Number.isNaN(y);
      return x === y; // -0 === 0 holds
    }
    case 'bigint':
    case 'string':
    case 'boolean':
    case 'null':
    case 'undefined':
      return a === b;
    case 'date': {
      const x = (a as Date).getTime();
      const y = (b as Date).getTime();
      return x === y || (Number.isNaN(x) && Number.isNaN(y));
    }
    case 'array': {
      const x = a as unknown[];
      const y = b as unknown[];
      if (x.length !== y.length) return false;
      for (let index = 0; index < x.length; index++) if (!valuesEqual(x[index], y[index])) return false;
      return true;
    }
    case 'map':
      return sameMultiset(
        [...(a as Map<unknown, unknown>)].map(([key, value]) => [key, value]),
        [...(b as Map<unknown, unknown>)].map(([key, value]) => [key, value]),
      );
    case 'set':
      return sameMultiset([...(a as Set<unknown>)], [...(b as Set<unknown>)]);
    case 'object': {
      const keysA = Object.keys(a as object);
      const keysB = Object.keys(b as object);
      if (keysA.length !== keysB.length) return false;
      for (const key of keysA) {
        if (!Object.prototype.propertyIsEnumerable.call(b, key)) return false;
        if (!valuesEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
      }
      return true;
    }
    default: {
      // Byte strings, plain or of one typed-array kind: compare the bytes.
      const x = bytesOf(a);
      const y = bytesOf(b);
      if (x.length !== y.length) return false;
      for (let index = 0; index < x.length; index++) if (x[index] !== y[index]) return false;
      return true;
    }
  }
}

/** Same elements, each matched once, in any order. */
function sameMultiset(a: unknown[], b: unknown[]): boolean {
  if (a.length !== b.length) return false;
  const used = new Array<boolean>(b.length).fill(false);
  outer: for (const element of a) {
    for (let index = 0; index < b.length; index++) {
      if (!used[index] && valuesEqual(element, b[index])) {
        used[index] = true;
        continue outer;
      }
    }
    return false;
  }
  return true;
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  const type = typeof value;
  if (type !== 'object') {
    if (type === 'function' || type === 'symbol') throw new Error(`oracle: a ${type} has no CBOR form`);
    return type;
  }
  if (Array.isArray(value)) return 'array';
  if (value instanceof Date) return 'date';
  if (value instanceof Map) return 'map';
  if (value instanceof Set) return 'set';
  if (value instanceof ArrayBuffer || value instanceof DataView) return 'bytes';
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor.name;
    return name === 'Uint8Array' || name === 'Buffer' ? 'bytes' : `typed:${name}`;
  }
  if (value instanceof RegExp || value instanceof Error) throw new Error('oracle: RegExp and Error values are outside the modelled domain');
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto === Object.prototype || proto === null) return 'object';
  throw new Error(`oracle: a ${(value as object).constructor?.name ?? 'class'} instance is outside the modelled domain`);
}

function bytesOf(value: unknown): Uint8Array {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  const view = value as ArrayBufferView;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

// ------------------------------------------------------------------------------------ matching

/**
 * README: "Only plain-object `data` has fields": an object that is not an array, Map, Set, Date
 * or byte string. A field is one of its own enumerable keys.
 */
function fieldOf(data: unknown): ((field: string) => { present: boolean; value: unknown }) | null {
  if (data === null || typeof data !== 'object' || kindOf(data) !== 'object') return null;
  return (field) => ({
    present: Object.prototype.propertyIsEnumerable.call(data, field),
    value: (data as Record<string, unknown>)[field],
  });
}

/**
 * DCB: "An item has optional types (the event's type must be one of them) and optional tags (the
 * event must carry all of them)". README adds data: "each top-level data field equals the value
 * (or one of the values of an array)". Absent (or, per DCB, empty) types and tags constrain nothing.
 */
export function itemMatches(item: QueryItem, event: OracleEvent): boolean {
  if (item.types !== undefined && item.types.length > 0) {
    let found = false;
    for (const type of item.types) if (type === event.type) found = true;
    if (!found) return false;
  }
  if (item.tags !== undefined) {
    for (const tag of item.tags) {
      let carried = false;
      for (const eventTag of event.tags) if (eventTag === tag) carried = true;
      if (!carried) return false;
    }
  }
  if (item.data !== undefined) {
    const field = fieldOf(event.data);
    for (const name of Object.keys(item.data)) {
      if (field === null) return false;
      const actual = field(name);
      if (!actual.present) return false;
      const wanted = item.data[name];
      const alternatives = Array.isArray(wanted) ? wanted : [wanted];
      let equal = false;
      for (const alternative of alternatives) if (valuesEqual(alternative, actual.value)) equal = true;
      if (!equal) return false;
    }
  }
  return true;
}

/** DCB: a query is "all" or a set of items, OR-ed: an event matches if ANY item matches. */
export function queryMatches(query: OracleQuery, event: OracleEvent): boolean {
  if (query === 'all') return true;
  for (const item of query) if (itemMatches(item, event)) return true;
  return false;
}

// --------------------------------------------------------------------------------------- reads

/** docs/storage-format.md: "The category of a stream is its id up to the first -, the whole id when it has none." */
export function categoryOf(stream: string): string {
  const dash = stream.indexOf('-');
  return dash < 0 ? stream : stream.slice(0, dash);
}

/** A read source (README "Reads"), with the query as written. */
export type OracleSource = 'all' | { stream: string } | { type: string } | { tag: string } | { category: string } | { query: OracleQuery };

export function sourceMatches(source: OracleSource, event: OracleEvent): boolean {
  if (source === 'all') return true;
  if ('stream' in source) return event.stream === source.stream;
  if ('type' in source) return event.type === source.type;
  if ('tag' in source) return event.tags.includes(source.tag);
  if ('category' in source) return event.stream !== undefined && categoryOf(event.stream) === source.category;
  return queryMatches(source.query, event);
}

export interface OracleReadOptions {
  from?: number | undefined;
  direction?: 'forward' | 'backward' | undefined;
  limit?: number | undefined;
}

/**
 * README: a read returns the matching events in position order, each once; "from is inclusive: a
 * stream position for { stream }, a store position otherwise; forward reads start at the
 * beginning, backward reads at the end"; limit keeps the first `limit` in read order.
 */
export function expectedRead<E extends RecordedEvent>(all: readonly E[], source: OracleSource, options: OracleReadOptions = {}): E[] {
  const backward = options.direction === 'backward';
  const byStream = source !== 'all' && 'stream' in source;
  const result: E[] = [];
  const ordered = [...all].sort((a, b) => (backward ? b.position - a.position : a.position - b.position));
  for (const event of ordered) {
    if (options.limit !== undefined && result.length >= options.limit) break;
    if (!sourceMatches(source, event)) continue;
    if (options.from !== undefined) {
      const at = byStream ? event.streamPosition! : event.position;
      if (backward ? at > options.from : at < options.from) continue;
    }
    result.push(event);
  }
  return result;
}

// ---------------------------------------------------------------------------------- conditions

export interface OracleCondition {
  failIfEventsMatch: OracleQuery;
  after?: number | undefined;
}

/**
 * DCB: "The append must fail if any event matching the query exists with a position greater than
 * after (or at all, without after). after may exceed the head." README: the failure's `actual` is
 * the position of the latest conflicting event. Returns that position, or 0 when the append may
 * proceed. `events` are those visible to the append (committed, or planned before it).
 */
export function conflictingPosition(events: readonly OracleEvent[], condition: OracleCondition): number {
  const after = condition.after ?? 0;
  let latest = 0;
  for (const event of events) {
    if (event.position === undefined) throw new Error('oracle: a condition is checked against positioned events');
    if (event.position > after && queryMatches(condition.failIfEventsMatch, event) && event.position > latest) latest = event.position;
  }
  return latest;
}

/**
 * README appendStream: expect 'any' always holds; 'none' holds when the stream has no event;
 * 'exists' when it has one; a number when it is the current version (0 = no stream).
 */
export function expectationHolds(expected: StreamExpectation, version: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'none') return version === 0;
  if (expected === 'exists') return version > 0;
  return version === expected;
}
