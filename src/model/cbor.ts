/**
 * The ledger's CBOR codec (docs/storage-format.md, "Event encoding"). Events are still encoded
 * by cbor-x (its record extension keeps them small), but decoded here, because reading stored
 * bytes must be exact and safe, which cbor-x's decoder is not: it renames a `__proto__` key,
 * builds RegExps and cyclic structures from tags 27–29, and keeps no bound on nesting that an
 * append could check. Nor is it used where the bytes look harmless: its tag handlers and size
 * limits are module-wide, shared with (and changeable by) the application's own cbor-x. Strings,
 * most of the work, are read by the native call cbor-x uses (cbor-extract), so a scan is as fast.
 * One file above 500 lines: the decoder's cursor is module state that every reader function
 * shares (passing it around costs a scan measurable speed), and the append-time check
 * (`unstorableEvent`) walks the same items with the same cursor.
 */
import { createRequire } from 'node:module';
import { Tag } from 'cbor-x';

/** Deepest nesting of arrays, objects, Maps and Sets an event's `data` or `metadata` may have. */
export const DATA_NESTING_DEPTH_MAX = 100;

/** cbor-x's record extension: tag 0xdfff defines a structure inline, tags 0xe000 + id reuse it. */
const RECORD_DEFINITION_TAG = 0xdfff;
const RECORD_ID_FIRST = 0xe000;
const RECORD_IDS = 0x2000;
/** cbor-x's Error and RegExp tag: never decoded into objects, refused at append. */
export const GENERIC_OBJECT_TAG = 27;

export class CborError extends Error {
  /** Which item of decodeStoredItems failed, when it was one of several. */
  item: number | undefined;
}

function fail(message: string): never {
  throw new CborError(message);
}

// ------------------------------------------------------------------ decoding

let src: Uint8Array = new Uint8Array(0);
let view: DataView = new DataView(src.buffer);
let pos = 0;
let srcBuffer = Buffer.alloc(0) as Buffer & { utf8Slice(start: number, end: number): string; latin1Slice(start: number, end: number): string };
let end = 0;
let structures: (Structure | undefined)[] = [];
/** The last definition of each record id in this decodeStoredItems call (its key-list bytes in src); see readRecordDefinition. */
let definitions: ({ start: number; end: number; structure: Structure } | undefined)[] = [];
let caching = false;
/** Where native string extraction may read to: the item's end, or the end of all items of a decodeStoredItems call. */
let extractionEnd = 0;

/**
 * cbor-extract's native `extractStrings(start, end, firstLength, source)`, the one cbor-x reads
 * strings with: from the text string whose content starts at `start`, it decodes up to 254 text
 * strings of source[..end] in one call, ASCII strings near each other as one latin-1 block.
 * null where the addon is not installed (it is optional, like cbor-x's): every string is then read alone.
 */
type ExtractStrings = (start: number, end: number, firstLength: number, source: Uint8Array) => string | string[];
const nativeExtractStrings = loadExtractStrings();
/** Whether stored strings are read natively (cbor-extract loaded), as cbor-x reads them. */
export const nativeStringExtraction = nativeExtractStrings !== null;

function loadExtractStrings(): ExtractStrings | null {
  try {
    const addon = createRequire(import.meta.url)('cbor-extract') as { extractStrings?: unknown };
    return typeof addon.extractStrings === 'function' ? (addon.extractStrings as ExtractStrings) : null;
  } catch {
    return null;
  }
}

/** Below this many bytes a value's few strings are read faster one by one than by a native call. */
const STRING_EXTRACTION_SOURCE_SIZE_BYTES_MIN = 140;

/** Extracted strings of the current decode: the next ones in order, and the block being sliced. */
let extracting = false;
let extracted: string[] = [];
let extractedNext = 0;
let block = '';
let blockStart = 0;
let blockEnd = -1;

export interface DecodeOptions {
  /** Read strings by cbor-extract's native call where it loads (the default); false reads each alone, in JavaScript. */
  nativeStrings?: boolean;
}

/** Decodes one CBOR item that fills `bytes` exactly; throws CborError (or RangeError: stack) on anything else. */
export function decodeStored(bytes: Uint8Array, options: DecodeOptions = {}): unknown {
  src = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  srcBuffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as typeof srcBuffer;
  end = bytes.length;
  extractionEnd = end;
  structures = [];
  extracting = options.nativeStrings !== false && nativeExtractStrings !== null && end >= STRING_EXTRACTION_SOURCE_SIZE_BYTES_MIN;
  extractedNext = 0;
  blockEnd = -1;
  try {
    const value = read();
    if (pos !== end) fail(`${end - pos} bytes after the value`);
    return value;
  } finally {
    src = EMPTY;
    srcBuffer = EMPTY_BUFFER;
    structures = [];
    extracted = NO_STRINGS;
    block = '';
  }
}

/**
 * Decodes items [from, from + count) of a sequence whose item i fills bytes[base + ends[i − 1], base + ends[i])
 * exactly (ends[−1] = 0), each alone: record shapes are reset at every item, since each was
 * encoded by its own cbor-x call. A failure is a CborError whose `item` says which.
 */
export function decodeStoredItems(bytes: Uint8Array, base: number, ends: ArrayLike<number>, from: number, count: number, options: DecodeOptions = {}): unknown[] {
  src = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  srcBuffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as typeof srcBuffer;
  // The items are adjacent CBOR, so one native extraction reads the strings of many of them in
  // order, as for one array; record shapes are reset at every item.
  extractionEnd = base + ends[from + count - 1]!;
  const firstStart = base + (from === 0 ? 0 : ends[from - 1]!);
  extracting = options.nativeStrings !== false && nativeExtractStrings !== null && extractionEnd - firstStart >= STRING_EXTRACTION_SOURCE_SIZE_BYTES_MIN;
  extractedNext = 0;
  extracted = NO_STRINGS;
  blockEnd = -1;
  const values: unknown[] = new Array(count);
  let item = from;
  definitions = [];
  caching = true;
  try {
    for (; item < from + count; item++) {
      pos = base + (item === 0 ? 0 : ends[item - 1]!);
      end = base + ends[item]!;
      structures = [];
      values[item - from] = read();
      if (pos !== end) fail(`${end - pos} bytes after the value`);
    }
    return values;
  } catch (error) {
    if (error instanceof CborError) error.item = item;
    throw error;
  } finally {
    definitions = [];
    caching = false;
    src = EMPTY;
    srcBuffer = EMPTY_BUFFER;
    structures = [];
    extracted = NO_STRINGS;
    block = '';
  }
}
const NO_STRINGS: string[] = [];
const EMPTY_BUFFER = Buffer.alloc(0) as typeof srcBuffer;
const EMPTY = new Uint8Array(0);

/** The argument of an item whose initial byte had additional info `info` (0–27). */
function argument(info: number): number {
  if (info < 24) return info;
  if (info === 24) {
    if (pos >= end) fail('truncated');
    return src[pos++]!;
  }
  if (info === 25) {
    if (pos + 2 > end) fail('truncated');
    const value = view.getUint16(pos);
    pos += 2;
    return value;
  }
  if (info === 26) {
    if (pos + 4 > end) fail('truncated');
    const value = view.getUint32(pos);
    pos += 4;
    return value;
  }
  if (info === 27) {
    if (pos + 8 > end) fail('truncated');
    const high = view.getUint32(pos);
    const low = view.getUint32(pos + 4);
    pos += 8;
    // Lengths and tags above 2^32 exceed anything stored; a u64 integer is read by readInteger64.
    if (high !== 0) fail('a length or tag above 2^32');
    return low;
  }
  return fail(`reserved additional info ${info}`);
}

function read(): unknown {
  if (pos >= end) fail('truncated');
  const initial = src[pos++]!;
  const major = initial >> 5;
  const info = initial & 31;
  switch (major) {
    case 0:
      return info === 27 ? readInteger64(false) : argument(info);
    case 1:
      return info === 27 ? readInteger64(true) : -1 - argument(info);
    case 2: {
      const length = definiteLength(info);
      // A copy of its own: never a view of the chunk (a reader may change it), nor a Buffer.
      const bytes = new Uint8Array(length);
      bytes.set(src.subarray(pos, pos + length));
      pos += length;
      return bytes;
    }
    case 3: {
      const length = definiteLength(info);
      const start = pos;
      pos += length;
      return readText(start, pos);
    }
    case 4: {
      if (info === 31) {
        const items: unknown[] = [];
        while (!readBreak()) items.push(read());
        return items;
      }
      const length = argument(info);
      // Every item takes a byte at least: a length beyond the bytes left is corruption, not an allocation.
      if (length > end - pos) fail(`an array of ${length} items in ${end - pos} bytes`);
      const items = new Array<unknown>(length);
      for (let index = 0; index < length; index++) items[index] = read();
      return items;
    }
    case 5: {
      const map = new Map<unknown, unknown>();
      if (info === 31) {
        while (!readBreak()) map.set(read(), read());
        return map;
      }
      const length = argument(info);
      if (length > (end - pos) / 2) fail(`a map of ${length} entries in ${end - pos} bytes`);
      for (let index = 0; index < length; index++) map.set(read(), read());
      return map;
    }
    case 6:
      return readTagged(argument(info));
    default:
      return readSimple(info);
  }
}

function definiteLength(info: number): number {
  if (info === 31) fail('an indefinite-length string');
  const length = argument(info);
  if (length > end - pos) fail(`a string of ${length} bytes in ${end - pos}`);
  return length;
}

function readBreak(): boolean {
  if (pos >= end) fail('truncated');
  if (src[pos] !== 0xff) return false;
  pos++;
  return true;
}

function readInteger64(negative: boolean): bigint {
  if (pos + 8 > end) fail('truncated');
  const value = view.getBigUint64(pos);
  pos += 8;
  // cbor-x writes numbers beyond 32 bits as floats: a 64-bit integer is a bigint.
  return negative ? -1n - value : value;
}

function readText(start: number, stop: number): string {
  if (extracting) {
    // <=: an empty string may end the block, at its very end.
    if (start <= blockEnd) return block.slice(start - blockStart, stop - blockStart);
    let string = extracted[extractedNext++];
    if (string === undefined) {
      const extraction = extractStringsFrom(start, stop);
      if (extraction === null) return readTextAlone(start, stop);
      if (typeof extraction === 'string') {
        string = extraction;
        extracted = NO_STRINGS;
      } else {
        extracted = extraction;
        extractedNext = 1;
        string = extraction[0]!;
      }
    }
    // A longer string is a block of the ASCII strings from here on, latin-1 byte for byte.
    if (string.length <= stop - start) return string;
    block = string;
    blockStart = start;
    blockEnd = start + string.length;
    return string.slice(0, stop - start);
  }
  return readTextAlone(start, stop);
}

/**
 * The next strings from the one at start..stop on, or null when the addon refuses the bytes
 * (lengths it does not read, such as 8-byte ones): this decode then reads every string alone.
 */
function extractStringsFrom(start: number, stop: number): string | string[] | null {
  try {
    const extraction = nativeExtractStrings!(start, extractionEnd, stop - start, srcBuffer);
    if (typeof extraction === 'string' || (Array.isArray(extraction) && extraction.length > 0)) return extraction;
  } catch {
    // fall through
  }
  extracting = false;
  return null;
}

function readTextAlone(start: number, stop: number): string {
  const length = stop - start;
  if (length <= 4) {
    if (length === 0) return '';
    const a = src[start]!;
    if (length === 1 && a < 0x80) return String.fromCharCode(a);
    const b = src[start + 1]!;
    if (length === 2 && (a | b) < 0x80) return String.fromCharCode(a, b);
    const c = src[start + 2]!;
    if (length === 3 && (a | b | c) < 0x80) return String.fromCharCode(a, b, c);
    const d = src[start + 3]!;
    if (length === 4 && (a | b | c | d) < 0x80) return String.fromCharCode(a, b, c, d);
  }
  return srcBuffer.utf8Slice(start, stop);
}

function readSimple(info: number): unknown {
  switch (info) {
    case 20:
      return false;
    case 21:
      return true;
    case 22:
      return null;
    case 23:
      return undefined;
    case 25: {
      if (pos + 2 > end) fail('truncated');
      const half = view.getUint16(pos);
      pos += 2;
      return halfToNumber(half);
    }
    case 26: {
      if (pos + 4 > end) fail('truncated');
      const value = view.getFloat32(pos);
      pos += 4;
      return value;
    }
    case 27: {
      if (pos + 8 > end) fail('truncated');
      const value = view.getFloat64(pos);
      pos += 8;
      return value;
    }
    case 31:
      return fail('a break outside an indefinite-length item');
    default:
      return fail(`simple value ${info}`);
  }
}

function halfToNumber(half: number): number {
  const exponent = (half >> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  const sign = half & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** Typed arrays by cbor-x's little-endian tags (RFC 8746); 64 (Uint8Array) is a plain copy. */
const TYPED_ARRAYS = new Map<number, { create: (buffer: ArrayBuffer) => unknown; elementSizeBytes: number }>([
  [68, { create: (buffer) => new Uint8ClampedArray(buffer), elementSizeBytes: 1 }],
  [69, { create: (buffer) => new Uint16Array(buffer), elementSizeBytes: 2 }],
  [70, { create: (buffer) => new Uint32Array(buffer), elementSizeBytes: 4 }],
  [71, { create: (buffer) => new BigUint64Array(buffer), elementSizeBytes: 8 }],
  [72, { create: (buffer) => new Int8Array(buffer), elementSizeBytes: 1 }],
  [77, { create: (buffer) => new Int16Array(buffer), elementSizeBytes: 2 }],
  [78, { create: (buffer) => new Int32Array(buffer), elementSizeBytes: 4 }],
  [79, { create: (buffer) => new BigInt64Array(buffer), elementSizeBytes: 8 }],
  [85, { create: (buffer) => new Float32Array(buffer), elementSizeBytes: 4 }],
  [86, { create: (buffer) => new Float64Array(buffer), elementSizeBytes: 8 }],
]);

function readTagged(tag: number): unknown {
  if (tag >= RECORD_ID_FIRST && tag < RECORD_ID_FIRST + RECORD_IDS) return readRecord(structures[tag - RECORD_ID_FIRST], tag);
  switch (tag) {
    case RECORD_DEFINITION_TAG:
      return readRecordDefinition();
    case 1: {
      const seconds = read();
      if (typeof seconds !== 'number') fail('tag 1 (date) without a number');
      return new Date(Math.round(seconds * 1000));
    }
    case 2:
    case 3: {
      const bytes = read();
      if (!(bytes instanceof Uint8Array)) fail(`tag ${tag} (bignum) without a byte string`);
      let value = 0n;
      for (const byte of bytes) value = (value << 8n) | BigInt(byte);
      return tag === 2 ? value : -1n - value;
    }
    case 64: {
      const bytes = read();
      if (!(bytes instanceof Uint8Array)) fail('tag 64 without a byte string');
      return bytes;
    }
    case 258: {
      const items = read();
      if (!Array.isArray(items)) fail('tag 258 (set) without an array');
      return new Set(items);
    }
    default: {
      const typed = TYPED_ARRAYS.get(tag);
      if (typed !== undefined) {
        const bytes = read();
        if (!(bytes instanceof Uint8Array) || bytes.length % typed.elementSizeBytes !== 0) fail(`tag ${tag} without a byte string of whole elements`);
        return typed.create(bytes.buffer as ArrayBuffer);
      }
      // Anything else, tags 27 (RegExp, Error) and 28/29 (shared values, cycles) included, stays inert.
      return new Tag(read(), tag);
    }
  }
}

function readRecordDefinition(): unknown {
  if (pos >= end) fail('truncated');
  const initial = src[pos++]!;
  if (initial >> 5 !== 4 || (initial & 31) === 31) fail('a record definition that is not a definite array');
  const length = argument(initial & 31);
  if (length < 2 || length > end - pos) fail(`a record definition of ${length} items in ${end - pos} bytes`);
  const id = read();
  if (typeof id !== 'number' || id < RECORD_ID_FIRST || id >= RECORD_ID_FIRST + RECORD_IDS) fail(`record id ${String(id)}`);
  const keysStart = pos;
  // Format-4 events are encoded alone, so each defines its shapes again: within one
  // decodeStoredItems call, a definition whose key-list bytes equal the last one of its id reuses its structure.
  const cached = definitions[id - RECORD_ID_FIRST];
  let structure: Structure;
  if (cached !== undefined && sameKeyBytes(cached.start, cached.end, keysStart)) {
    structure = cached.structure;
    // Native extraction hands out the key strings in sequence: they are read (and dropped) then.
    if (extracting) read();
    else pos = keysStart + cached.end - cached.start;
  } else {
    const keys = read();
    if (!Array.isArray(keys) || !keys.every((key) => typeof key === 'string')) fail('record keys that are not strings');
    structure = structureOf(keys, srcBuffer.latin1Slice(keysStart, pos));
    if (caching) definitions[id - RECORD_ID_FIRST] = { start: keysStart, end: pos, structure };
  }
  if (length - 2 > structure.keys.length) fail(`a record of ${length - 2} values for ${structure.keys.length} keys`);
  structures[id - RECORD_ID_FIRST] = structure;
  return readValues(structure, length - 2);
}

/** Whether src[at, at + (end − start)) equals src[start, end) and lies within the current item. */
function sameKeyBytes(start: number, stop: number, at: number): boolean {
  const length = stop - start;
  if (at + length > end) return false;
  for (let index = 0; index < length; index++) if (src[start + index] !== src[at + index]) return false;
  return true;
}

function readRecord(structure: Structure | undefined, tag: number): unknown {
  if (structure === undefined) fail(`record tag ${tag} before its definition`);
  if (pos >= end) fail('truncated');
  const initial = src[pos++]!;
  if (initial >> 5 !== 4 || (initial & 31) === 31) fail('a record that is not a definite array');
  const length = argument(initial & 31);
  if (length > structure.keys.length) fail(`a record of ${length} values for ${structure.keys.length} keys`);
  return readValues(structure, length);
}

interface Structure {
  keys: string[];
  /** Builds the object of all keys with one literal (V8 then gives every such object one shape). */
  readAll: ((read: () => unknown) => Record<string, unknown>) | null;
}

/**
 * Compiled readers across decodes (the same few structures recur in every chunk), by the bytes
 * of their key list, one character a byte: the same bytes always read as the same keys, and
 * taking them costs less than joining the keys (which is not injective either: [''] and []).
 */
const compiledReaders = new Map<string, (read: () => unknown) => Record<string, unknown>>();
const COMPILED_READERS_MAX = 4096;
/** Longer key lists are read key by key, so the cache holds at most COMPILED_READERS_MAX × this. */
const COMPILED_READER_KEYS_SIZE_BYTES_MAX = 4096;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function structureOf(keys: string[], signature: string): Structure {
  let readAll = compiledReaders.get(signature) ?? null;
  if (readAll === null && compiledReaders.size < COMPILED_READERS_MAX && signature.length <= COMPILED_READER_KEYS_SIZE_BYTES_MAX && new Set(keys).size === keys.length) {
    // Keys become string literals (JSON.stringify), so nothing from the bytes is ever code; a
    // computed ["__proto__"] is an own property, unlike a literal __proto__ key, which sets the prototype.
    const body = keys.map((key) => (key === '__proto__' ? `["__proto__"]: r()` : `${IDENTIFIER.test(key) ? key : JSON.stringify(key)}: r()`)).join(', ');
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- compiled once per shape, as cbor-x does; keys are JSON string literals
    readAll = new Function('r', `return { ${body} };`) as (read: () => unknown) => Record<string, unknown>;
    compiledReaders.set(signature, readAll);
  }
  return { keys, readAll };
}

/** An object of the first `count` keys, each an own property: `__proto__` too, never the prototype. */
function readValues(structure: Structure, count: number): Record<string, unknown> {
  if (count === structure.keys.length && structure.readAll !== null) return structure.readAll(read);
  const keys = structure.keys;
  const object: Record<string, unknown> = {};
  for (let index = 0; index < count; index++) {
    const key = keys[index]!;
    const value = read();
    if (key === '__proto__') Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
    else object[key] = value;
  }
  return object;
}

// ------------------------------------------------------------------ checking what an append stores

/**
 * Why the event tuples of cbor-x's `bytes` could not be read back exactly: null when they can,
 * else the index of the first event that cannot and the reason. Nesting is counted as reads see
 * it (a record, cbor-x's encoding of an object, is one level); tuples are `[id, type, data,
 * metadata, tags]`, so `data` and `metadata` may nest DATA_NESTING_DEPTH_MAX levels below them.
 */
export function unstorableEventOf(bytes: Uint8Array, ends: ArrayLike<number>): { index: number; reason: string } | null {
  src = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let index = 0;
  try {
    for (; index < ends.length; index++) {
      pos = index === 0 ? 0 : ends[index - 1]!;
      end = ends[index]!;
      const reason = skip(-1);
      if (reason !== null) return { index, reason };
    }
    return null;
  } catch (error) {
    return { index, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    src = EMPTY;
  }
}

/** unstorableEvent for one CBOR array of all tuples (the format 1–3 encoding). */
export function unstorableEvent(bytes: Uint8Array): { index: number; reason: string } | null {
  src = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  end = bytes.length;
  try {
    if (pos >= end || src[pos]! >> 5 !== 4) return { index: 0, reason: 'the events do not encode as an array' };
    const initial = src[pos++]!;
    const count = argument(initial & 31);
    for (let index = 0; index < count; index++) {
      const reason = skip(-1);
      if (reason !== null) return { index, reason };
    }
    return null;
  } catch (error) {
    return { index: 0, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    src = EMPTY;
  }
}

/** Skips one item `depth` levels deep (the tuple is at -1, its fields at 0); returns why it is refused, or null. */
function skip(depth: number): string | null {
  const initial = src[pos++]!;
  const major = initial >> 5;
  const info = initial & 31;
  if (major <= 1) {
    if (info === 27) pos += 8;
    else argument(info);
    return null;
  }
  if (major === 2 || major === 3) {
    const length = definiteLength(info); // before `pos +=`, which would read pos first
    pos += length;
    return null;
  }
  if (major === 7) {
    pos += info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : info === 24 ? 1 : 0;
    return null;
  }
  if (major === 6) {
    const tag = argument(info);
    if (tag === GENERIC_OBJECT_TAG) return 'it holds an Error or a RegExp (tag 27), which reads do not rebuild';
    if (tag === RECORD_DEFINITION_TAG) {
      // [id, keys, ...values]: one level, like the object it encodes.
      const length = argument(src[pos++]! & 31);
      if (depth + 1 > DATA_NESTING_DEPTH_MAX) return nestingReason();
      // The id and the key list are the object's shape, not a level of it.
      skip(-1);
      skip(-1);
      for (let index = 2; index < length; index++) {
        const reason = skip(depth + 1);
        if (reason !== null) return reason;
      }
      return null;
    }
    return skip(depth);
  }
  // Arrays and maps (cbor-x writes indefinite arrays for iterables).
  if (depth + 1 > DATA_NESTING_DEPTH_MAX) return nestingReason();
  const items = info === 31 ? Number.POSITIVE_INFINITY : major === 5 ? 2 * argument(info) : argument(info);
  for (let index = 0; index < items; index++) {
    if (info === 31 && src[pos] === 0xff) {
      pos++;
      break;
    }
    const reason = skip(depth + 1);
    if (reason !== null) return reason;
  }
  return null;
}

function nestingReason(): string {
  return `its data or metadata nests deeper than DATA_NESTING_DEPTH_MAX (${DATA_NESTING_DEPTH_MAX}) levels of arrays, objects, Maps and Sets`;
}
