/**
 * Chunk values of the ledger (docs/storage-format.md, "Chunks"): a small binary header decided
 * at plan time, then the CBOR array of event tuples encoded once when the append was validated.
 */
import { Encoder } from 'cbor-x';
import { assert, FactError } from '../errors.js';
import { decodeStored } from './cbor.js';
import type { RecordedEvent } from './types.js';
import type { GeneratedIds } from './ids.js';
import { readU64BE, utf8Decode, writeU64BE } from '../bytes.js';

/**
 * The chunk's first byte, its kind (docs/storage-format.md, "Chunks"): whether it starts an
 * append or continues the append of the chunk before it; kind 1 chunks, written by formats 1
 * and 2, do not say.
 */
export const CHUNK_KIND_UNMARKED = 1;
export const CHUNK_KIND_APPEND_FIRST = 2;
export const CHUNK_KIND_APPEND_CONTINUED = 3;
export const CHUNK_EVENTS_MAX = 256;
const CHUNK_HEADER_FIXED_SIZE_BYTES = 1 + 8 + 8 + 2;

/** Records the event tuples: cbor-x's default options round-trip Map, Date, bigint, bytes; cbor.ts reads them. */
const eventEncoder = new Encoder();

/**
 * [id, type, data, metadata, tags] — what one event stores besides the chunk header. The id is
 * null when the store generated it: it is derived from the position (ids.ts).
 */
export type EventTuple = [id: string | null, type: string, data: unknown, metadata: Record<string, unknown>, tags: string[]];

export interface ChunkHeader {
  /** CHUNK_KIND_APPEND_FIRST, CHUNK_KIND_APPEND_CONTINUED, or CHUNK_KIND_UNMARKED (older formats). */
  kind: number;
  timestamp: number;
  /** Empty string when the chunk is not part of a stream. */
  stream: string;
  /** Stream position of the first event; 0 when not part of a stream. */
  firstStreamPosition: number;
}

export function encodeTuples(tuples: EventTuple[]): Uint8Array {
  return eventEncoder.encode(tuples);
}

/** Bytes of a chunk whose stream id has `streamSizeBytes` of UTF-8 and whose tuples encode to `tuplesSizeBytes`. */
export function chunkSizeBytes(streamSizeBytes: number, tuplesSizeBytes: number): number {
  return CHUNK_HEADER_FIXED_SIZE_BYTES + streamSizeBytes + tuplesSizeBytes;
}

/** Writes a chunk at `offset` of `target` (chunkSizeBytes long); `streamBytes` is utf8(header.stream). */
export function writeChunk(target: Uint8Array, offset: number, header: ChunkHeader, streamBytes: Uint8Array, tuplesBytes: Uint8Array): void {
  assert(streamBytes.length <= 0xffff, 'stream id fits the chunk header');
  assert(header.kind === CHUNK_KIND_APPEND_FIRST || header.kind === CHUNK_KIND_APPEND_CONTINUED, 'new chunks say where their append starts');
  target[offset] = header.kind;
  writeU64BE(target, offset + 1, header.timestamp);
  writeU64BE(target, offset + 9, header.firstStreamPosition);
  target[offset + 17] = streamBytes.length >>> 8;
  target[offset + 18] = streamBytes.length & 0xff;
  target.set(streamBytes, offset + CHUNK_HEADER_FIXED_SIZE_BYTES);
  target.set(tuplesBytes, offset + CHUNK_HEADER_FIXED_SIZE_BYTES + streamBytes.length);
}

/** The event tuples of encodeTuples' bytes. */
export function decodeTuples(tuplesBytes: Uint8Array, where: string): EventTuple[] {
  let tuples: unknown;
  try {
    tuples = decodeStored(tuplesBytes);
  } catch (cause) {
    // Malformed bytes, or nesting deeper than the stack (a RangeError): never a partial result.
    throw new FactError('FACT_CORRUPTION', `ledger chunk ${where} does not decode`, { cause, details: { chunk: where } });
  }
  if (!Array.isArray(tuples) || tuples.length === 0 || tuples.length > CHUNK_EVENTS_MAX || !tuples.every(isEventTuple)) {
    throw new FactError('FACT_CORRUPTION', `ledger chunk ${where} does not hold a list of events [id, type, data, metadata, tags]`, { details: { chunk: where } });
  }
  return tuples as EventTuple[];
}

function isEventTuple(tuple: unknown): boolean {
  if (!Array.isArray(tuple) || tuple.length !== 5) return false;
  const [id, type, , metadata, tags] = tuple as unknown[];
  return (
    (id === null || typeof id === 'string') &&
    typeof type === 'string' &&
    typeof metadata === 'object' &&
    metadata !== null &&
    Array.isArray(tags) &&
    tags.every((tag) => typeof tag === 'string')
  );
}

export interface DecodedChunk extends ChunkHeader {
  tuples: EventTuple[];
}

export function decodeChunk(chunk: Uint8Array, where: string): DecodedChunk {
  const kind = chunk[0];
  if (chunk.length < CHUNK_HEADER_FIXED_SIZE_BYTES || (kind !== CHUNK_KIND_UNMARKED && kind !== CHUNK_KIND_APPEND_FIRST && kind !== CHUNK_KIND_APPEND_CONTINUED)) {
    throw new FactError('FACT_CORRUPTION', `ledger chunk ${where} has an unknown kind`, { details: { chunk: where } });
  }
  const streamLength = (chunk[17]! << 8) | chunk[18]!;
  const tuplesOffset = CHUNK_HEADER_FIXED_SIZE_BYTES + streamLength;
  if (tuplesOffset > chunk.length) throw new FactError('FACT_CORRUPTION', `ledger chunk ${where} is shorter than its header says`, { details: { chunk: where } });
  const tuples = decodeTuples(chunk.subarray(tuplesOffset), where);
  return {
    kind,
    timestamp: readU64BE(chunk, 1),
    firstStreamPosition: readU64BE(chunk, 9),
    stream: utf8Decode(chunk.subarray(CHUNK_HEADER_FIXED_SIZE_BYTES, tuplesOffset)),
    tuples,
  };
}

export function recordedEvent(chunk: DecodedChunk, firstPosition: number, index: number, ids: GeneratedIds): RecordedEvent {
  const tuple = chunk.tuples[index];
  assert(tuple !== undefined, 'event index inside its chunk');
  const [id, type, data, metadata, tags] = tuple;
  const position = firstPosition + index;
  const event: RecordedEvent = { id: id ?? ids.id(position), type, data, metadata, tags, position, timestamp: chunk.timestamp };
  if (chunk.stream !== '') {
    event.stream = chunk.stream;
    event.streamPosition = chunk.firstStreamPosition + index;
  }
  return event;
}

/** The category of a stream: its id up to the first '-'. */
export function streamCategory(stream: string): string {
  const dash = stream.indexOf('-');
  return dash < 0 ? stream : stream.slice(0, dash);
}
