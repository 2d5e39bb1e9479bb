/** Input validation of the public methods: bad input gets FACT_INVALID_ARGUMENT and changes nothing. */
import { FactError, invalid } from '../errors.js';
import type { EventInput, ReadOptions, StreamExpectation } from './types.js';
import { unstorableEventOf } from './cbor.js';
import { CHUNK_EVENTS_MAX, encodeEvents, type EncodedEvents, type EventTuple } from './chunk.js';

export const EVENT_TYPE_SIZE_BYTES_MAX = 256;
export const TAG_SIZE_BYTES_MAX = 1024;
export const STREAM_ID_SIZE_BYTES_MAX = 1024;
export const EVENT_ID_SIZE_BYTES_MAX = 256;
export const APPEND_EVENTS_MAX = 100_000;

const NAME_HAS_NUL = -1;
const NAME_HAS_LONE_SURROGATE = -2;

/** The UTF-8 size of `value`, or NAME_HAS_NUL / NAME_HAS_LONE_SURROGATE: one pass, no allocation. */
function nameSizeBytes(value: string): number {
  let size = 0;
  for (let index = 0; index < value.length; index++) {
    const code = value.charCodeAt(index);
    if (code < 0x80) {
      if (code === 0) return NAME_HAS_NUL;
      size += 1;
    } else if (code < 0x800) {
      size += 2;
    } else if (code >= 0xd800 && code <= 0xdbff) {
      const next = value.charCodeAt(index + 1); // NaN past the end
      if (!(next >= 0xdc00 && next <= 0xdfff)) return NAME_HAS_LONE_SURROGATE;
      size += 4;
      index++;
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      return NAME_HAS_LONE_SURROGATE;
    } else {
      size += 3;
    }
  }
  return size;
}

/** Whether checkName accepts `value`: the hot path checks this and builds no message. */
export function isValidName(value: unknown, maxBytes: number): value is string {
  if (typeof value !== 'string' || value.length === 0) return false;
  const size = nameSizeBytes(value);
  return size >= 0 && size <= maxBytes;
}

/** A name used in keys: non-empty string, no NUL (it separates key parts), bounded UTF-8 size. */
export function checkName(value: unknown, what: string, maxBytes: number): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${what} must be a non-empty string, got ${describe(value)}`);
  const size = nameSizeBytes(value);
  if (size === NAME_HAS_NUL) throw invalid(`${what} must not contain a NUL character`);
  // Keys are UTF-8: a lone surrogate would be stored as U+FFFD and no longer match itself.
  if (size === NAME_HAS_LONE_SURROGATE) throw invalid(`${what} is not well-formed UTF-16 (it has a lone surrogate)`);
  if (size > maxBytes) throw invalid(`${what} is longer than ${maxBytes} bytes of UTF-8`);
  return value;
}

/**
 * Every name of `list` checked (`what(index)` names one in errors), duplicates dropped, in first
 * order. Array.from, not map: a sparse array's hole is read as undefined and refused (map would
 * skip it and keep the hole in the result).
 */
export function uniqueNames(list: readonly unknown[], what: (index: number) => string, maxBytes: number): string[] {
  return [...new Set(Array.from(list, (value, index) => checkName(value, what(index), maxBytes)))];
}

export function checkStreamId(value: unknown, method: string): string {
  if (isValidName(value, STREAM_ID_SIZE_BYTES_MAX)) return value;
  return checkName(value, `${method}: stream id`, STREAM_ID_SIZE_BYTES_MAX);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

export interface PreparedEvents {
  /** Event tuples split into chunks of at most CHUNK_EVENTS_MAX, each event encoded once, alone. */
  chunks: { tuples: EventTuple[]; events: EncodedEvents }[];
  /** The caller's ids; null where the store generates the id (from the position, when planned). */
  ids: (string | null)[];
  /** Whether the caller chose any id (only then can an append be a retry or reuse a stored id). */
  callerIds: boolean;
  count: number;
}

/** Validates, normalises and encodes the events of one append. */
export function prepareEvents(input: unknown, method: string): PreparedEvents {
  const events = Array.isArray(input) ? (input as unknown[]) : [input];
  if (events.length === 0) throw invalid(`${method}: the event list is empty`);
  if (events.length > APPEND_EVENTS_MAX) throw invalid(`${method}: more than ${APPEND_EVENTS_MAX} events in one append`);
  const tuples: EventTuple[] = [];
  const ids: (string | null)[] = [];
  const seenIds = new Set<string>();
  let callerIdCount = 0;
  for (let index = 0; index < events.length; index++) {
    const raw = events[index];
    // Messages are built only on failure: a template string per event and field costs more than the checks.
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(`${method}: event ${index} must be an object, got ${describe(raw)}`);
    const event = raw as EventInput;
    const type = event.type;
    if (!isValidName(type, EVENT_TYPE_SIZE_BYTES_MAX)) throw invalidName(type, `${method}: event ${index}: type`, EVENT_TYPE_SIZE_BYTES_MAX);
    const tags = event.tags === undefined ? [] : uniqueTags(event.tags, method, index);
    const metadata = event.metadata ?? {};
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      throw invalid(`${method}: event ${index}: metadata must be an object, got ${describe(metadata)}`);
    }
    let id: string | null = null;
    if (event.id !== undefined) {
      if (!isValidName(event.id, EVENT_ID_SIZE_BYTES_MAX)) throw invalidName(event.id, `${method}: event ${index}: id`, EVENT_ID_SIZE_BYTES_MAX);
      id = event.id;
      callerIdCount++;
      if (seenIds.has(id)) throw new FactError('FACT_DUPLICATE_EVENT_ID', `${method}: event ${index}: id ${id} appears twice in one append`, { details: { id } });
      seenIds.add(id);
    }
    ids.push(id);
    tuples.push([id, type, event.data === undefined ? null : event.data, metadata, tags]);
  }
  const chunks: PreparedEvents['chunks'] = [];
  for (let start = 0; start < tuples.length; start += CHUNK_EVENTS_MAX) {
    const slice = tuples.length <= CHUNK_EVENTS_MAX ? tuples : tuples.slice(start, start + CHUNK_EVENTS_MAX);
    let events: EncodedEvents;
    try {
      events = encodeEvents(slice);
    } catch (cause) {
      throw invalid(`${method}: event data or metadata cannot be encoded as CBOR`, {}, cause);
    }
    // What reads could not rebuild exactly would make its chunk unreadable or wrong: refused here.
    const unstorable = unstorableEventOf(events.bytes, events.ends);
    if (unstorable !== null) throw invalid(`${method}: event ${start + unstorable.index} cannot be stored: ${unstorable.reason}`, { index: start + unstorable.index });
    chunks.push({ tuples: slice, events });
  }
  return { chunks, ids, callerIds: callerIdCount > 0, count: tuples.length };
}

/** The error checkName throws for a value isValidName refused. */
function invalidName(value: unknown, what: string, maxBytes: number): FactError {
  try {
    checkName(value, what, maxBytes);
  } catch (error) {
    return error as FactError;
  }
  throw new FactError('FACT_ASSERTION', `${what}: isValidName and checkName disagree`);
}

/** Tags of an event below which duplicates are found by scanning instead of with a Set. */
const TAG_SCAN_DEDUPE_MAX = 16;

/** The event's tags, checked, duplicates dropped (first occurrence kept). */
function uniqueTags(input: unknown, method: string, index: number): string[] {
  if (!Array.isArray(input)) throw invalid(`${method}: event ${index}: tags must be an array of strings, got ${describe(input)}`);
  const tags: string[] = [];
  const seen = input.length > TAG_SCAN_DEDUPE_MAX ? new Set<string>() : null;
  for (let tagIndex = 0; tagIndex < input.length; tagIndex++) {
    const tag: unknown = input[tagIndex];
    if (!isValidName(tag, TAG_SIZE_BYTES_MAX)) throw invalidName(tag, `${method}: event ${index}: tag ${tagIndex}`, TAG_SIZE_BYTES_MAX);
    if (seen === null ? tags.includes(tag) : seen.has(tag)) continue;
    seen?.add(tag);
    tags.push(tag);
  }
  return tags;
}

export function checkExpectation(value: unknown, method: string): StreamExpectation {
  if (value === undefined) return 'any';
  if (value === 'any' || value === 'none' || value === 'exists') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw invalid(`${method}: expect must be 'any', 'none', 'exists' or a stream version ≥ 0, got ${describe(value)}`);
}

export interface CheckedReadOptions {
  from: number | undefined;
  direction: 'forward' | 'backward';
  limit: number;
  signal: AbortSignal | undefined;
}

export function checkReadOptions(options: unknown, method: string): CheckedReadOptions {
  if (options === undefined) return { from: undefined, direction: 'forward', limit: Number.POSITIVE_INFINITY, signal: undefined };
  if (typeof options !== 'object' || options === null) throw invalid(`${method}: options must be an object`);
  const { from, direction, limit, signal } = options as ReadOptions;
  if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) throw invalid(`${method}: from must be an integer ≥ 0, got ${describe(from)}`);
  if (direction !== undefined && direction !== 'forward' && direction !== 'backward') {
    throw invalid(`${method}: direction must be 'forward' or 'backward', got ${describe(direction)}`);
  }
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw invalid(`${method}: limit must be an integer ≥ 0, got ${describe(limit)}`);
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid(`${method}: signal must be an AbortSignal`);
  return { from, direction: direction ?? 'forward', limit: limit ?? Number.POSITIVE_INFINITY, signal };
}
