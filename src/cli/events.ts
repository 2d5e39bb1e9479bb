/** Events as NDJSON lines: what read and export print, and what append and import parse. */
import type { EventInput, RecordedEvent } from '../index.js';
import { fromTaggedJson, toTaggedJson } from './tagged-json.js';

/**
 * One line (no newline) for a recorded event, every field, in one fixed order (an export is
 * byte-for-byte reproducible). Concatenated, not one JSON.stringify of a new object: an export
 * spends most of its time here.
 */
export function eventLine(event: RecordedEvent): string {
  let line = `{"position":${event.position},"id":${JSON.stringify(event.id)},"type":${JSON.stringify(event.type)},"timestamp":${event.timestamp}`;
  if (event.stream !== undefined) line += `,"stream":${JSON.stringify(event.stream)},"streamPosition":${event.streamPosition}`;
  line += `,"tags":${event.tags.length === 0 ? '[]' : JSON.stringify(event.tags)}`;
  if (event.data !== undefined) line += `,"data":${JSON.stringify(toTaggedJson(event.data))}`;
  return `${line},"metadata":${isEmpty(event.metadata) ? '{}' : JSON.stringify(toTaggedJson(event.metadata))}}`;
}

function isEmpty(object: Record<string, unknown>): boolean {
  for (const key in object) if (Object.hasOwn(object, key)) return false;
  return true;
}

/** A line's JSON, or a TypeError saying what is wrong with it. */
export function parseLine(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new TypeError(`malformed JSON: ${(error as Error).message}`);
  }
}

const INPUT_KEYS = new Set(['type', 'data', 'metadata', 'tags', 'id']);

/** An event to append, from parsed JSON ({ type, data?, metadata?, tags?, id? }); data and metadata are tagged JSON. */
export function inputEvent(value: unknown): EventInput {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('an event must be a JSON object { type, data?, metadata?, tags?, id? }');
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!INPUT_KEYS.has(key)) throw new TypeError(`unknown field ${JSON.stringify(key)} (an event to append has type, data, metadata, tags, id)`);
  }
  return decodeFields(object);
}

function decodeFields(object: Record<string, unknown>): EventInput {
  const event: EventInput = { type: object.type as string };
  if (object.data !== undefined) event.data = fromTaggedJson(object.data);
  if (object.metadata !== undefined) event.metadata = fromTaggedJson(object.metadata) as Record<string, unknown>;
  if (object.tags !== undefined) event.tags = object.tags as string[];
  if (object.id !== undefined) event.id = object.id as string;
  return event;
}

/** An exported event: its input fields plus where and when it was recorded. */
export interface ExportedEvent {
  event: EventInput;
  id: string;
  position: number;
  timestamp: number;
  stream: string | undefined;
  streamPosition: number | undefined;
}

function integer(object: Record<string, unknown>, key: string, min: number): number {
  const value = object[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new TypeError(`${key} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  return value;
}

/** A line of an export, parsed and checked (position, id, timestamp, stream with streamPosition). */
export function exportedEvent(value: unknown): ExportedEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('an exported event must be a JSON object');
  const object = value as Record<string, unknown>;
  const position = integer(object, 'position', 1);
  const timestamp = integer(object, 'timestamp', 0);
  if (typeof object.id !== 'string') throw new TypeError('id must be a string (an export has every event\'s id)');
  let stream: string | undefined;
  let streamPosition: number | undefined;
  if (object.stream !== undefined) {
    if (typeof object.stream !== 'string') throw new TypeError('stream must be a string');
    stream = object.stream;
    streamPosition = integer(object, 'streamPosition', 1);
  }
  const event = decodeFields(object);
  if (event.metadata !== undefined && Object.keys(event.metadata).length === 0) delete event.metadata;
  return { event, id: object.id, position, timestamp, stream, streamPosition };
}
