/**
 * Chunk values of the ledger (docs/storage-format.md, "Chunks"): a small binary header decided
 * at plan time, then the events, each encoded on its own when the append was validated. Format 4
 * chunks (kinds 4–6) carry an offset table and a CRC-32 per event, so one event decodes without
 * the others and every read verifies what it decodes; kinds 1–3 (formats 1–3) are still read.
 */
import zlib from 'node:zlib';
import { Encoder } from 'cbor-x';
import { assert, FactError } from '../errors.js';
import { CborError, decodeStored, decodeStoredItems } from './cbor.js';
import type { RecordedEvent } from './types.js';
import type { GeneratedIds } from './ids.js';
import { readU64BE, utf8, utf8Decode, writeU64BE } from '../bytes.js';

const { crc32 } = zlib;

/**
 * Where a chunk's append starts (docs/storage-format.md, "Chunks"), as DecodedChunk.kind gives it
 * for every layout: the first chunk of an append, one continuing the append of the chunk before,
 * or unmarked (written by formats 1 and 2, which do not say).
 */
export const CHUNK_KIND_UNMARKED = 1;
export const CHUNK_KIND_APPEND_FIRST = 2;
export const CHUNK_KIND_APPEND_CONTINUED = 3;
/** The stored first byte of format-4 chunks: the kinds above plus this offset. */
export const CHUNK_KIND_CHECKSUMMED_OFFSET = 3;
export const CHUNK_EVENTS_MAX = 256;
/** kind, timestamp, first stream position, stream id length. */
const CHUNK_HEADER_FIXED_SIZE_BYTES = 1 + 8 + 8 + 2;
const EVENT_COUNT_SIZE_BYTES = 2;
/** Per event: a u32 end offset and a u32 CRC-32. */
const EVENT_TABLE_ENTRY_SIZE_BYTES = 8;
const HEADER_CHECKSUM_SIZE_BYTES = 4;

/** Encodes each event tuple alone: one encode() starts with no record shapes, so each event's bytes decode by themselves. */
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

/** The events of one chunk, each encoded alone, back to back: event i is bytes [ends[i − 1] (0 for i = 0), ends[i]). */
export interface EncodedEvents {
  bytes: Uint8Array;
  ends: Uint32Array;
}

/** The format 1–3 encoding (one CBOR array of all tuples): what older versions stored after the header. */
export function encodeTuples(tuples: EventTuple[]): Uint8Array {
  return eventEncoder.encode(tuples);
}

/** Each tuple encoded by its own cbor-x call, back to back. */
export function encodeEvents(tuples: readonly EventTuple[]): EncodedEvents {
  const parts: Uint8Array[] = [];
  const ends = new Uint32Array(tuples.length);
  let size = 0;
  for (let index = 0; index < tuples.length; index++) {
    const part = eventEncoder.encode(tuples[index]);
    parts.push(part);
    size += part.length;
    ends[index] = size;
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return { bytes, ends };
}

/** Bytes of a format-4 chunk whose stream id has `streamSizeBytes` of UTF-8 and whose `eventCount` events encode to `eventsSizeBytes`. */
export function chunkSizeBytes(streamSizeBytes: number, eventCount: number, eventsSizeBytes: number): number {
  return eventsOffset(streamSizeBytes, eventCount) + eventsSizeBytes;
}

function eventsOffset(streamSizeBytes: number, eventCount: number): number {
  return CHUNK_HEADER_FIXED_SIZE_BYTES + streamSizeBytes + EVENT_COUNT_SIZE_BYTES + eventCount * EVENT_TABLE_ENTRY_SIZE_BYTES + HEADER_CHECKSUM_SIZE_BYTES;
}

// CRC-32 (the polynomial of zlib.crc32) of 8 more bytes, in JavaScript: cheaper than a native call.
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    table[byte] = crc;
  }
  return table;
})();

/** zlib.crc32(u64BE(value), crc) */
function crc32U64(value: number, crc: number): number {
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  let c = ~crc;
  for (let shift = 24; shift >= 0; shift -= 8) c = CRC_TABLE[(c ^ (high >>> shift)) & 0xff]! ^ (c >>> 8);
  for (let shift = 24; shift >= 0; shift -= 8) c = CRC_TABLE[(c ^ (low >>> shift)) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

function writeU32(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value >>> 24;
  target[offset + 1] = (value >>> 16) & 0xff;
  target[offset + 2] = (value >>> 8) & 0xff;
  target[offset + 3] = value & 0xff;
}

/**
 * Writes the format-4 chunk of the events starting at `firstPosition` at `offset` of `target`
 * (chunkSizeBytes long); `streamBytes` is utf8(header.stream). The checksums bind the position,
 * so a chunk is only valid under its own ledger key.
 */
export function writeChunk(target: Uint8Array, offset: number, header: ChunkHeader, streamBytes: Uint8Array, events: EncodedEvents, firstPosition: number): void {
  const count = events.ends.length;
  assert(streamBytes.length <= 0xffff, 'stream id fits the chunk header');
  assert(count >= 1 && count <= CHUNK_EVENTS_MAX, 'a chunk holds 1 … CHUNK_EVENTS_MAX events');
  assert(
    header.kind === CHUNK_KIND_APPEND_FIRST || header.kind === CHUNK_KIND_APPEND_CONTINUED || header.kind === CHUNK_KIND_UNMARKED,
    'a chunk kind says where its append starts, or that it does not know',
  );
  const prefixEnd = offset + CHUNK_HEADER_FIXED_SIZE_BYTES + streamBytes.length;
  target[offset] = header.kind + CHUNK_KIND_CHECKSUMMED_OFFSET;
  writeU64BE(target, offset + 1, header.timestamp);
  writeU64BE(target, offset + 9, header.firstStreamPosition);
  target[offset + 17] = streamBytes.length >>> 8;
  target[offset + 18] = streamBytes.length & 0xff;
  target.set(streamBytes, offset + CHUNK_HEADER_FIXED_SIZE_BYTES);
  target[prefixEnd] = count >>> 8;
  target[prefixEnd + 1] = count & 0xff;
  const endsAt = prefixEnd + EVENT_COUNT_SIZE_BYTES;
  const crcsAt = endsAt + 4 * count;
  const headerCrcAt = crcsAt + 4 * count;
  const eventsAt = headerCrcAt + HEADER_CHECKSUM_SIZE_BYTES;
  target.set(events.bytes, eventsAt);
  const prefixCrc = crc32(target.subarray(offset, prefixEnd));
  let start = 0;
  for (let index = 0; index < count; index++) {
    const end = events.ends[index]!;
    writeU32(target, endsAt + 4 * index, end);
    writeU32(target, crcsAt + 4 * index, crc32(target.subarray(eventsAt + start, eventsAt + end), crc32U64(firstPosition + index, prefixCrc)));
    start = end;
  }
  writeU32(target, headerCrcAt, crc32(target.subarray(offset, headerCrcAt), crc32U64(firstPosition, 0)));
}

/** The event tuples of encodeTuples' bytes (formats 1–3). */
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

/** The tuples of encodeEvents' bytes (what validation encoded), decoded as the ledger will hold them. */
export function decodeEncodedEvents(events: EncodedEvents, where: string): EventTuple[] {
  return decodeEventRange(events.bytes, 0, events.ends, 0, events.ends.length, where, () => 'an event');
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

/**
 * A chunk whose header (and, for format 4, header checksum and offset table) was checked: its
 * events decode one at a time, each verified against its checksum first.
 */
export interface ChunkView extends ChunkHeader {
  readonly count: number;
  /** Whether the chunk has the format-4 layout (checksums), else a format 1–3 one. */
  readonly checksummed: boolean;
  tuple(index: number): EventTuple;
  /** All tuples, in order. */
  tuples(): EventTuple[];
}

function corrupt(message: string, first: number, cause?: unknown, position?: number): FactError {
  return new FactError('FACT_CORRUPTION', message, { ...(cause === undefined ? {} : { cause }), details: { chunk: first, ...(position === undefined ? {} : { position }) } });
}

/**
 * Opens the chunk stored under ledger key `first`, checking every header field (docs/storage-format.md,
 * "Validity"); `where` names it in errors (default: "ledger chunk <first>").
 */
export function openChunk(chunk: Uint8Array, first: number, where = `ledger chunk ${first}`): ChunkView {
  const stored = chunk[0];
  if (chunk.length < CHUNK_HEADER_FIXED_SIZE_BYTES || stored === undefined || stored < CHUNK_KIND_UNMARKED || stored > CHUNK_KIND_UNMARKED + 2 * CHUNK_KIND_CHECKSUMMED_OFFSET - 1) {
    throw corrupt(`${where} has an unknown kind`, first);
  }
  const streamLength = (chunk[17]! << 8) | chunk[18]!;
  const prefixEnd = CHUNK_HEADER_FIXED_SIZE_BYTES + streamLength;
  if (prefixEnd > chunk.length) throw corrupt(`${where} is shorter than its header says`, first);
  const checksummed = stored > CHUNK_KIND_CHECKSUMMED_OFFSET;
  const header = {
    kind: checksummed ? stored - CHUNK_KIND_CHECKSUMMED_OFFSET : stored,
    timestamp: readU64BE(chunk, 1),
    firstStreamPosition: readU64BE(chunk, 9),
    stream: '',
  };
  if (!checksummed) {
    header.stream = utf8Decode(chunk.subarray(CHUNK_HEADER_FIXED_SIZE_BYTES, prefixEnd));
    const tuples = decodeTuples(chunk.subarray(prefixEnd), where.replace(/^ledger chunk /, ''));
    return { ...header, count: tuples.length, checksummed, tuple: (index) => tuples[index]!, tuples: () => tuples };
  }
  if (prefixEnd + EVENT_COUNT_SIZE_BYTES > chunk.length) throw corrupt(`${where} is shorter than its header says`, first);
  const count = (chunk[prefixEnd]! << 8) | chunk[prefixEnd + 1]!;
  const endsAt = prefixEnd + EVENT_COUNT_SIZE_BYTES;
  const crcsAt = endsAt + 4 * count;
  const headerCrcAt = crcsAt + 4 * count;
  const eventsAt = headerCrcAt + HEADER_CHECKSUM_SIZE_BYTES;
  if (eventsAt > chunk.length) throw corrupt(`${where} is shorter than its header says`, first);
  // The header checksum binds the key's position: a chunk stored under another key fails here.
  if (readU32(chunk, headerCrcAt) !== crc32(chunk.subarray(0, headerCrcAt), crc32U64(first, 0))) {
    throw corrupt(`${where}: the header checksum does not match (damaged, or not the chunk of position ${first})`, first);
  }
  if (count < 1 || count > CHUNK_EVENTS_MAX) throw corrupt(`${where} says it holds ${count} events`, first);
  const ends = new Uint32Array(count);
  let previous = 0;
  for (let index = 0; index < count; index++) {
    const end = readU32(chunk, endsAt + 4 * index);
    if (end <= previous) throw corrupt(`${where}: the offset table is not increasing at event ${index}`, first);
    ends[index] = end;
    previous = end;
  }
  if (eventsAt + previous !== chunk.length) throw corrupt(`${where}: its events end at byte ${eventsAt + previous}, but the chunk has ${chunk.length}`, first);
  header.stream = utf8Decode(chunk.subarray(CHUNK_HEADER_FIXED_SIZE_BYTES, prefixEnd));
  const prefixCrc = crc32(chunk.subarray(0, prefixEnd));
  const verify = (index: number) => {
    const start = index === 0 ? 0 : ends[index - 1]!;
    const expected = readU32(chunk, crcsAt + 4 * index);
    if (crc32(chunk.subarray(eventsAt + start, eventsAt + ends[index]!), crc32U64(first + index, prefixCrc)) !== expected) {
      throw corrupt(`${where}: the event at position ${first + index} fails its checksum`, first, undefined, first + index);
    }
  };
  const describe = (index: number) => `the event at position ${first + index}`;
  return {
    ...header,
    count,
    checksummed,
    tuple(index) {
      assert(index >= 0 && index < count, 'event index inside its chunk');
      verify(index);
      return decodeEventRange(chunk, eventsAt, ends, index, 1, where, describe, first)[0]!;
    },
    tuples() {
      for (let index = 0; index < count; index++) verify(index);
      return decodeEventRange(chunk, eventsAt, ends, 0, count, where, describe, first);
    },
  };
}

/** Decodes events [from, from + count) whose bytes are chunk[base + ends[i − 1], base + ends[i]). */
function decodeEventRange(
  chunk: Uint8Array,
  base: number,
  ends: Uint32Array,
  from: number,
  count: number,
  where: string,
  describe: (index: number) => string,
  first?: number,
): EventTuple[] {
  let values: unknown[];
  try {
    values = decodeStoredItems(chunk, base, ends, from, count);
  } catch (cause) {
    const index = cause instanceof CborError && cause.item !== undefined ? cause.item : from;
    const position = first === undefined ? undefined : first + index;
    throw new FactError('FACT_CORRUPTION', `${where}: ${describe(index)} does not decode`, { cause, details: { chunk: first ?? where, ...(position === undefined ? {} : { position }) } });
  }
  for (let index = 0; index < values.length; index++) {
    if (!isEventTuple(values[index])) {
      const position = first === undefined ? undefined : first + from + index;
      throw new FactError('FACT_CORRUPTION', `${where}: ${describe(from + index)} is not an event [id, type, data, metadata, tags]`, {
        details: { chunk: first ?? where, ...(position === undefined ? {} : { position }) },
      });
    }
  }
  return values as EventTuple[];
}

/** Every event of the chunk stored under ledger key `first`, all checksums verified. */
export function decodeChunk(chunk: Uint8Array, first: number, where?: string): DecodedChunk {
  const view = openChunk(chunk, first, where);
  return { kind: view.kind, timestamp: view.timestamp, stream: view.stream, firstStreamPosition: view.firstStreamPosition, tuples: view.tuples() };
}

/** Whether `chunk` has the format-4 layout (its first byte; nothing else checked). */
export function isChecksummedChunk(chunk: Uint8Array): boolean {
  return (chunk[0] ?? 0) > CHUNK_KIND_CHECKSUMMED_OFFSET;
}

/**
 * The format-4 chunk of the same events as the chunk `chunk` stored under `first`: itself when
 * it has that layout already, else its tuples re-encoded one by one (deterministic: the same old
 * bytes always give the same new ones, and both decode to the same events).
 */
export function upgradeChunk(chunk: Uint8Array, first: number, where?: string): Uint8Array {
  if (isChecksummedChunk(chunk)) return chunk;
  const decoded = decodeChunk(chunk, first, where);
  const streamBytes = utf8(decoded.stream);
  const events = encodeEvents(decoded.tuples);
  const target = new Uint8Array(chunkSizeBytes(streamBytes.length, events.ends.length, events.bytes.length));
  writeChunk(target, 0, decoded, streamBytes, events, first);
  return target;
}

export function recordedEvent(chunk: DecodedChunk, firstPosition: number, index: number, ids: GeneratedIds): RecordedEvent {
  const tuple = chunk.tuples[index];
  assert(tuple !== undefined, 'event index inside its chunk');
  return recordedEventOf(chunk, tuple, firstPosition, index, ids);
}

/** The event `tuple`, index `index` of the chunk at `firstPosition` with header `header`. */
export function recordedEventOf(header: ChunkHeader, tuple: EventTuple, firstPosition: number, index: number, ids: GeneratedIds): RecordedEvent {
  const [id, type, data, metadata, tags] = tuple;
  const position = firstPosition + index;
  const event: RecordedEvent = { id: id ?? ids.id(position), type, data, metadata, tags, position, timestamp: header.timestamp };
  if (header.stream !== '') {
    event.stream = header.stream;
    event.streamPosition = header.firstStreamPosition + index;
  }
  return event;
}

/** The category of a stream: its id up to the first '-'. */
export function streamCategory(stream: string): string {
  const dash = stream.indexOf('-');
  return dash < 0 ? stream : stream.slice(0, dash);
}
