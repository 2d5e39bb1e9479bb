/**
 * Tagged JSON: the values an event's data and metadata may hold (any CBOR value factstore stores)
 * as JSON, losslessly. JSON has no bytes, dates, bigints, Maps, Sets, undefined, NaN or ±Infinity,
 * so each is written as an object with exactly one key, its tag:
 *
 *   Uint8Array (and Buffer)     {"$bytes":"<base64>"}
 *   other typed arrays          {"$typed":["Float64Array","<base64 of its bytes, little-endian>"]}
 *   Date                        {"$date":"2024-01-02T03:04:05.678Z"}  (an invalid Date: {"$date":null})
 *   bigint                      {"$bigint":"-12345678901234567890"}
 *   Map                         {"$map":[[key, value], …]}  (keys and values tagged JSON)
 *   Set                         {"$set":[value, …]}
 *   undefined                   {"$undefined":true}
 *   NaN, Infinity, -Infinity    {"$number":"NaN"} / {"$number":"Infinity"} / {"$number":"-Infinity"}
 *
 * The escape: a plain object of the data that itself has exactly one key starting with `$` is
 * written as {"$object":{"$key": value}}, so it is never read as a tag. Every other object and
 * array is plain JSON (its values tagged). Reading an object with one `$` key that is no tag above
 * fails, naming it. README, "Command line", documents this for users.
 */

const TYPED_ARRAYS = {
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as const;

type TypedArrayName = keyof typeof TYPED_ARRAYS;

function base64(view: ArrayBufferView): string {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString('base64');
}

function isTagKey(keys: string[]): boolean {
  return keys.length === 1 && keys[0]!.startsWith('$');
}

/** `value` as tagged JSON; the same reference when it needs no tag anywhere (plain JSON data costs no copy). */
export function toTaggedJson(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // -0 is stored as 0 (README), so only the three non-finite values need a tag.
      return Number.isFinite(value) ? value : { $number: String(value) };
    case 'bigint':
      return { $bigint: value.toString() };
    case 'undefined':
      return { $undefined: true };
    case 'object':
      if (value === null) return null;
      if (Array.isArray(value)) return encodeArray(value);
      if (value instanceof Uint8Array) return { $bytes: base64(value) };
      if (ArrayBuffer.isView(value)) return { $typed: [value.constructor.name, base64(value)] };
      if (value instanceof Date) return { $date: Number.isNaN(value.getTime()) ? null : value.toISOString() };
      if (value instanceof Map) return { $map: Array.from(value, ([key, entry]) => [toTaggedJson(key), toTaggedJson(entry)]) };
      if (value instanceof Set) return { $set: Array.from(value, toTaggedJson) };
      return encodeObject(value as Record<string, unknown>);
    default:
      throw new TypeError(`a ${typeof value} cannot be exported`);
  }
}

function encodeArray(array: unknown[]): unknown[] {
  let copy: unknown[] | null = null;
  for (let index = 0; index < array.length; index++) {
    const item = array[index];
    const encoded = toTaggedJson(item);
    if (encoded !== item && copy === null) copy = array.slice(0, index);
    if (copy !== null) copy.push(encoded);
  }
  return copy ?? array;
}

function encodeObject(object: Record<string, unknown>): unknown {
  const keys = Object.keys(object);
  let copy: Record<string, unknown> | null = null;
  for (let index = 0; index < keys.length; index++) {
    const key = keys[index]!;
    const item = object[key];
    const encoded = toTaggedJson(item);
    if (encoded !== item && copy === null) {
      copy = {};
      for (let before = 0; before < index; before++) define(copy, keys[before]!, object[keys[before]!]);
    }
    if (copy !== null) define(copy, key, encoded);
  }
  const result = copy ?? object;
  return isTagKey(keys) ? { $object: result } : result;
}

/** An own data property, `__proto__` included (an assignment would set the prototype instead). */
function define(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A value of tagged JSON (as JSON.parse returns it) back to what was exported; throws a TypeError naming a bad tag. */
export function fromTaggedJson(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return decodeArray(value);
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  if (isTagKey(keys)) return decodeTag(keys[0]!, object[keys[0]!]);
  let copy: Record<string, unknown> | null = null;
  for (let index = 0; index < keys.length; index++) {
    const key = keys[index]!;
    const item = object[key];
    const decoded = fromTaggedJson(item);
    if (decoded !== item && copy === null) {
      copy = {};
      for (let before = 0; before < index; before++) define(copy, keys[before]!, object[keys[before]!]);
    }
    if (copy !== null) define(copy, key, decoded);
  }
  return copy ?? object;
}

function decodeArray(array: unknown[]): unknown[] {
  let copy: unknown[] | null = null;
  for (let index = 0; index < array.length; index++) {
    const item = array[index];
    const decoded = fromTaggedJson(item);
    if (decoded !== item && copy === null) copy = array.slice(0, index);
    if (copy !== null) copy.push(decoded);
  }
  return copy ?? array;
}

function decodeTag(tag: string, body: unknown): unknown {
  const bad = (expected: string) => new TypeError(`${tag} expects ${expected}, got ${JSON.stringify(body)}`);
  switch (tag) {
    case '$bytes':
      if (typeof body !== 'string') throw bad('a base64 string');
      return new Uint8Array(Buffer.from(body, 'base64'));
    case '$typed': {
      if (!Array.isArray(body) || body.length !== 2 || typeof body[1] !== 'string' || !Object.hasOwn(TYPED_ARRAYS, body[0] as string)) throw bad(`[typed array name, base64] (${Object.keys(TYPED_ARRAYS).join(', ')})`);
      const bytes = Buffer.from(body[1], 'base64');
      const Type = TYPED_ARRAYS[body[0] as TypedArrayName];
      if (bytes.length % Type.BYTES_PER_ELEMENT !== 0) throw bad(`a whole number of ${Type.BYTES_PER_ELEMENT}-byte elements`);
      // A copy into a fresh buffer: aligned for the element size.
      const buffer = new ArrayBuffer(bytes.length);
      new Uint8Array(buffer).set(bytes);
      return new Type(buffer);
    }
    case '$date': {
      if (body === null) return new Date(Number.NaN);
      const date = typeof body === 'string' ? new Date(body) : null;
      if (date === null || Number.isNaN(date.getTime())) throw bad('an ISO date string or null');
      return date;
    }
    case '$bigint':
      if (typeof body !== 'string' || !/^-?\d+$/.test(body)) throw bad('a decimal integer string');
      return BigInt(body);
    case '$map':
      if (!Array.isArray(body) || !body.every((entry) => Array.isArray(entry) && entry.length === 2)) throw bad('a list of [key, value] pairs');
      return new Map((body as [unknown, unknown][]).map(([key, entry]) => [fromTaggedJson(key), fromTaggedJson(entry)]));
    case '$set':
      if (!Array.isArray(body)) throw bad('a list');
      return new Set(body.map(fromTaggedJson));
    case '$undefined':
      if (body !== true) throw bad('true');
      return undefined;
    case '$number':
      if (body !== 'NaN' && body !== 'Infinity' && body !== '-Infinity') throw bad('"NaN", "Infinity" or "-Infinity"');
      return Number(body);
    case '$object': {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('an object');
      const inner = body as Record<string, unknown>;
      const result: Record<string, unknown> = {};
      for (const key of Object.keys(inner)) define(result, key, fromTaggedJson(inner[key]));
      return result;
    }
    default:
      throw new TypeError(`unknown tag ${tag} (an object with one key starting with $ is a tag; write a plain one as {"$object":{…}})`);
  }
}
