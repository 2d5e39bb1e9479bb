/**
 * The ledger's decoder reads strings two ways (src/model/cbor.ts): by cbor-extract's native
 * call, many strings at once, or one by one in JavaScript. Both must give the same values, on
 * what the store writes and on damaged bytes alike (fast-check).
 *
 * Random chunks are event tuples [id, type, data, metadata, tags] encoded by the store's
 * encoder (encodeTuples), their data and metadata built of every type the README promises:
 * plain objects (keys such as __proto__, constructor, '' and '1' included), arrays, Map (any
 * keys), Set, Date (invalid too), Uint8Array and other typed arrays, bigint, integers, floats
 * (-0, NaN, ±Infinity), strings (non-ASCII, lone surrogates, long ones), booleans, null, undefined.
 *
 * Laws:
 * 1. decodeStored with native strings and without give structurally identical values: same
 *    types and prototypes, same own keys in the same order, same entries, same bytes, and every
 *    byte string a copy of its own;
 * 2. where no key is `__proto__` (which cbor-x renames), cbor-x's own decoder gives that value too;
 * 3. the value read is the value written, compared in canonical form, unless a string had a lone
 *    surrogate (cbor-x's encoder replaces it);
 * 4. a chunk damaged once (truncated, a byte changed, a byte inserted) gives the same outcome
 *    both ways: the same value, or an error on both.
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/codec.property.test.ts
 * Heavier run: FACT_PROPERTY_RUNS=2000 npx vitest run property-tests/codec.property.test.ts
 */
import { Decoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeStored, decodeStoredItems, nativeStringExtraction } from '../src/model/cbor.js';
import { encodeEvents, encodeTuples, type EventTuple } from '../src/model/chunk.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';
import { canonicalBytes } from '../src/model/canonical.js';
import { keyArb, objectOf, stringArb, valueArb } from './arbitraries.js';

const DEFAULT_RUNS = 300;

// ------------------------------------------------------------------------------------ arbitraries

const tupleArb: fc.Arbitrary<EventTuple> = fc.tuple(
  fc.option(stringArb, { nil: null }),
  stringArb,
  valueArb,
  fc.array(fc.tuple(keyArb, valueArb), { maxLength: 3 }).map(objectOf),
  fc.array(stringArb, { maxLength: 4 }),
);
/** Up to a few hundred strings a chunk: beyond one native call's 254. */
const tuplesArb = fc.oneof(fc.array(tupleArb, { minLength: 1, maxLength: 4 }), fc.array(tupleArb, { minLength: 20, maxLength: 80 }));

type Damage = { kind: 'truncate' | 'set' | 'insert'; at: number; byte: number };
const damageArb: fc.Arbitrary<Damage> = fc.record({ kind: fc.constantFrom<Damage['kind']>('truncate', 'set', 'insert'), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) });

function damaged(bytes: Uint8Array, { kind, at, byte }: Damage): Uint8Array {
  const index = Math.floor(at * bytes.length);
  if (kind === 'truncate') return bytes.slice(0, index);
  if (kind === 'insert') return Uint8Array.from([...bytes.subarray(0, index), byte, ...bytes.subarray(index)]);
  const copy = bytes.slice();
  copy[index] = byte;
  return copy;
}

// ------------------------------------------------------------------------------------ structural identity

/** Where `a` and `b` differ (type, prototype, own keys and their order, entries, bytes), or null. */
function difference(a: unknown, b: unknown, source: Uint8Array, path = '$'): string | null {
  if (typeof a !== typeof b) return `${path}: ${typeof a} ≠ ${typeof b}`;
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b) ? null : `${path}: ${String(a)} ≠ ${String(b)}`;
  const objectB = b as object;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(objectB)) return `${path}: prototypes differ`;
  if (ArrayBuffer.isView(a)) {
    const viewB = objectB as ArrayBufferView;
    // A copy of its own, not a view of the chunk a reader could change.
    if (a.buffer === source.buffer || viewB.buffer === source.buffer) return `${path}: a view of the source`;
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(viewB.buffer, viewB.byteOffset, viewB.byteLength)) ? null : `${path}: bytes differ`;
  }
  if (a instanceof Date) return Object.is(a.getTime(), (objectB as Date).getTime()) ? null : `${path}: dates differ`;
  if (a instanceof Map || a instanceof Set) {
    const entriesA = [...(a as Map<unknown, unknown>).entries()];
    const entriesB = [...(objectB as Map<unknown, unknown>).entries()];
    if (entriesA.length !== entriesB.length) return `${path}: ${entriesA.length} ≠ ${entriesB.length} entries`;
    for (let index = 0; index < entriesA.length; index++) {
      const found = difference(entriesA[index], entriesB[index], source, `${path}<${index}>`);
      if (found !== null) return found;
    }
    return null;
  }
  const keysA = Reflect.ownKeys(a);
  const keysB = Reflect.ownKeys(objectB);
  if (keysA.join('\u0000') !== keysB.join('\u0000') || keysA.length !== keysB.length) return `${path}: own keys ${JSON.stringify(keysA.map(String))} ≠ ${JSON.stringify(keysB.map(String))}`;
  for (const key of keysA) {
    const descriptorA = Object.getOwnPropertyDescriptor(a, key)!;
    const descriptorB = Object.getOwnPropertyDescriptor(objectB, key)!;
    if (descriptorA.enumerable !== descriptorB.enumerable || descriptorA.writable !== descriptorB.writable) return `${path}.${String(key)}: descriptors differ`;
    const found = difference(descriptorA.value, descriptorB.value, source, `${path}.${String(key)}`);
    if (found !== null) return found;
  }
  return null;
}

/** The value, or the error, of decoding `bytes`. */
function outcome(decode: () => unknown): { value: unknown } | { error: unknown } {
  try {
    return { value: decode() };
  } catch (error) {
    return { error };
  }
}

function hasKeyProto(bytes: Uint8Array): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes('__proto__');
}

function wellFormed(value: unknown): boolean {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('utf8') === value;
  if (value instanceof Map) return [...value].every(([key, entry]) => wellFormed(key) && wellFormed(entry));
  if (value instanceof Set || Array.isArray(value)) return [...(value as Iterable<unknown>)].every(wellFormed);
  if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && !(value instanceof Date)) return Object.entries(value).every(([key, entry]) => wellFormed(key) && wellFormed(entry));
  return true;
}

/** cbor-x's decoder as the oracle: byte strings copied, read from a plain Uint8Array (a Buffer's slices are Buffers). */
const cborx = new Decoder({ copyBuffers: true });

// ------------------------------------------------------------------------------------ properties

describe('the ledger decoder reads strings natively and in JavaScript alike', () => {
  it('native string extraction is in use wherever the addon loads', () => {
    // The native reader is what makes a scan as fast as cbor-x: this machine has the addon.
    expect(nativeStringExtraction).toBe(true);
  });

  it(
    'laws 1–3: stored chunks decode identically both ways, as cbor-x decodes them, to what was written',
    () => {
      fc.assert(
        fc.property(tuplesArb, (tuples) => {
          const bytes = new Uint8Array(encodeTuples(tuples));
          const native = decodeStored(bytes);
          const alone = decodeStored(bytes, { nativeStrings: false });
          expect(difference(native, alone, bytes)).toBeNull();
          if (!hasKeyProto(bytes)) expect(difference(native, cborx.decode(bytes), bytes)).toBeNull();
          if (wellFormed(tuples)) expect(Buffer.from(canonicalBytes(native)).equals(canonicalBytes(tuples))).toBe(true);
          // Format 4: each event encoded alone; all at once (one extraction across the events,
          // shapes reused within the call) and one by one read the same as the array above.
          const events = encodeEvents(tuples);
          const items = decodeStoredItems(events.bytes, 0, events.ends, 0, tuples.length);
          expect(difference(items, native, bytes)).toBeNull();
          expect(difference(decodeStoredItems(events.bytes, 0, events.ends, 0, tuples.length, { nativeStrings: false }), native, bytes)).toBeNull();
          for (let index = tuples.length - 1; index >= 0; index--) expect(difference(decodeStoredItems(events.bytes, 0, events.ends, index, 1), [(native as unknown[])[index]], bytes)).toBeNull();
        }),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 200),
  );

  it(
    'law 4: damaged chunks give the same value or an error both ways',
    () => {
      fc.assert(
        fc.property(tuplesArb, fc.array(damageArb, { minLength: 1, maxLength: 3 }), (tuples, damages) => {
          const bytes = damages.reduce(damaged, new Uint8Array(encodeTuples(tuples)));
          const native = outcome(() => decodeStored(bytes));
          const alone = outcome(() => decodeStored(bytes, { nativeStrings: false }));
          if ('error' in native || 'error' in alone) {
            expect('error' in native && 'error' in alone, `native: ${'error' in native ? String(native.error) : 'a value'}, alone: ${'error' in alone ? String(alone.error) : 'a value'}`).toBe(true);
            return;
          }
          expect(difference(native.value, alone.value, bytes)).toBeNull();
        }),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 200),
  );

});
