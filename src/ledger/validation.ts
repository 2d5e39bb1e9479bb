/** Input validation of the public methods: bad input gets FACT_INVALID_ARGUMENT and changes nothing. */
import { randomUUID } from 'node:crypto';
import { FactError } from '../errors.js';
import type { EventInput, ReadOptions, StreamExpectation } from '../types.js';
import { CHUNK_EVENTS_MAX, encodeTuples, type EventTuple } from './chunk.js';
import { utf8 } from './keys.js';

export const EVENT_TYPE_SIZE_BYTES_MAX = 256;
export const TAG_SIZE_BYTES_MAX = 1024;
export const STREAM_ID_SIZE_BYTES_MAX = 1024;
export const EVENT_ID_SIZE_BYTES_MAX = 256;
export const APPEND_EVENTS_MAX = 100_000;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function invalid(message: string, details: Record<string, unknown> = {}, cause?: unknown): FactError {
  return new FactError('FACT_INVALID_ARGUMENT', message, { details, cause });
}

/** A name used in keys: non-empty string, no NUL (it separates key parts), bounded UTF-8 size. */
export function checkName(value: unknown, what: string, maxBytes: number): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${what} must be a non-empty string, got ${describe(value)}`);
  if (value.includes('\0')) throw invalid(`${what} must not contain a NUL character`);
  // Keys are UTF-8: a lone surrogate would be stored as U+FFFD and no longer match itself.
  if (LONE_SURROGATE.test(value)) throw invalid(`${what} is not well-formed UTF-16 (it has a lone surrogate)`);
  if (utf8(value).length > maxBytes) throw invalid(`${what} is longer than ${maxBytes} bytes of UTF-8`);
  return value;
}

export function checkStreamId(value: unknown, method: string): string {
  return checkName(value, `${method}: stream id`, STREAM_ID_SIZE_BYTES_MAX);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

export interface PreparedEvents {
  /** Event tuples split into chunks of at most CHUNK_EVENTS_MAX, each encoded once. */
  chunks: { tuples: EventTuple[]; tuplesBytes: Uint8Array }[];
  ids: string[];
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
  const ids: string[] = [];
  const seenIds = new Set<string>();
  let callerIdCount = 0;
  for (const [index, raw] of events.entries()) {
    const where = `${method}: event ${index}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(`${where} must be an object, got ${describe(raw)}`);
    const event = raw as EventInput;
    const type = checkName(event.type, `${where}: type`, EVENT_TYPE_SIZE_BYTES_MAX);
    let tags: string[] = [];
    if (event.tags !== undefined) {
      if (!Array.isArray(event.tags)) throw invalid(`${where}: tags must be an array of strings, got ${describe(event.tags)}`);
      tags = [...new Set(event.tags.map((tag, tagIndex) => checkName(tag, `${where}: tag ${tagIndex}`, TAG_SIZE_BYTES_MAX)))];
    }
    const metadata = event.metadata ?? {};
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      throw invalid(`${where}: metadata must be an object, got ${describe(metadata)}`);
    }
    let id: string;
    if (event.id === undefined) {
      id = randomUUID();
    } else {
      id = checkName(event.id, `${where}: id`, EVENT_ID_SIZE_BYTES_MAX);
      callerIdCount++;
    }
    if (seenIds.has(id)) throw new FactError('FACT_DUPLICATE_EVENT_ID', `${where}: id ${id} appears twice in one append`, { details: { id } });
    seenIds.add(id);
    ids.push(id);
    tuples.push([id, type, event.data === undefined ? null : event.data, metadata, tags]);
  }
  const chunks: PreparedEvents['chunks'] = [];
  for (let start = 0; start < tuples.length; start += CHUNK_EVENTS_MAX) {
    const slice = tuples.slice(start, start + CHUNK_EVENTS_MAX);
    let tuplesBytes: Uint8Array;
    try {
      tuplesBytes = encodeTuples(slice);
    } catch (cause) {
      throw invalid(`${method}: event data or metadata cannot be encoded as CBOR`, {}, cause);
    }
    chunks.push({ tuples: slice, tuplesBytes });
  }
  return { chunks, ids, callerIds: callerIdCount > 0, count: tuples.length };
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
