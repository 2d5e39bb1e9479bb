/**
 * The oracle itself: the README's own examples, and a cross-check of its value equality against
 * the production canonical encoding on equal copies, look-alikes of other types and random pairs. The cross-check is not the oracle's source (the oracle is
 * written from the spec); a disagreement means one of the two is wrong, and says which values.
 *
 * Heavier run: FACT_PROPERTY_RUNS=5000 npx vitest run property-tests/oracle/dcb-oracle.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../src/model/canonical.js';
import { propertyParams } from '../settings.js';
import { categoryOf, conflictingPosition, expectationHolds, expectedRead, queryMatches, valuesEqual } from './dcb-oracle.js';
import type { RecordedEvent } from '../../src/model/types.js';

const DEFAULT_RUNS = 2_000;

const event = (position: number, type: string, tags: string[], data: unknown = null, stream?: string): RecordedEvent => ({
  id: `e${position}`,
  type,
  tags,
  data,
  metadata: {},
  position,
  timestamp: 0,
  ...(stream === undefined ? {} : { stream, streamPosition: 1 }),
});

describe('the DCB oracle', () => {
  it('follows the README and the DCB spec on their examples', () => {
    const subscribed = event(1, 'StudentSubscribed', ['course:c1', 'student:s1']);
    expect(queryMatches([{ types: ['CourseDefined', 'StudentSubscribed'], tags: ['course:c1'] }], subscribed)).toBe(true);
    expect(queryMatches([{ tags: ['course:c1', 'student:s2'] }], subscribed)).toBe(false); // ALL tags
    expect(queryMatches([{ tags: ['course:c1', 'student:s2'] }, { types: ['StudentSubscribed'] }], subscribed)).toBe(true); // ANY item
    expect(queryMatches([{ types: ['CourseDefined'], tags: ['course:c1'] }], subscribed)).toBe(false);
    expect(queryMatches('all', subscribed)).toBe(true);
    // Data: 123 ≠ '123', 1 ≠ 1n, a Map ≠ an object, key order is irrelevant, an array lists alternatives.
    expect(queryMatches([{ data: { n: 123 } }], event(1, 'A', [], { n: '123' }))).toBe(false);
    expect(queryMatches([{ data: { n: 1 } }], event(1, 'A', [], { n: 1n }))).toBe(false);
    expect(queryMatches([{ data: { n: [1, 2] } }], event(1, 'A', [], { n: 2 }))).toBe(true);
    expect(queryMatches([{ data: { pair: [[1, 2]] } }], event(1, 'A', [], { pair: [1, 2] }))).toBe(true);
    expect(queryMatches([{ data: { pair: [1, 2] } }], event(1, 'A', [], { pair: [1, 2] }))).toBe(false);
    expect(queryMatches([{ data: { o: { a: 1, b: 2 } } }], event(1, 'A', [], { o: { b: 2, a: 1 } }))).toBe(true);
    expect(queryMatches([{ data: { o: new Map([['a', 1]]) } }], event(1, 'A', [], { o: { a: 1 } }))).toBe(false);
    expect(queryMatches([{ data: { k: 1 } }], event(1, 'A', [], new Map([['k', 1]])))).toBe(false); // only plain-object data has fields
    // Conditions: fail iff a match lies after `after` (or exists at all without it); actual = the latest.
    const ledger = [event(1, 'A', ['x']), event(2, 'B', ['x']), event(3, 'A', ['y'])];
    expect(conflictingPosition(ledger, { failIfEventsMatch: [{ tags: ['x'] }] })).toBe(2);
    expect(conflictingPosition(ledger, { failIfEventsMatch: [{ tags: ['x'] }], after: 1 })).toBe(2);
    expect(conflictingPosition(ledger, { failIfEventsMatch: [{ tags: ['x'] }], after: 2 })).toBe(0);
    expect(conflictingPosition(ledger, { failIfEventsMatch: 'all', after: 9 })).toBe(0);
    // Reads: from inclusive in both directions, limit in read order; categories up to the first '-'.
    expect(expectedRead(ledger, { tag: 'x' }, { direction: 'backward', from: 2, limit: 1 }).map((e) => e.position)).toEqual([2]);
    expect(expectedRead(ledger, 'all', { from: 2 }).map((e) => e.position)).toEqual([2, 3]);
    expect([categoryOf('cart-1-2'), categoryOf('cart')]).toEqual(['cart', 'cart']);
    expect(expectedRead([event(1, 'A', [], null, 'cart-1'), event(2, 'A', [], null, 'carts')], { category: 'cart' }).map((e) => e.position)).toEqual([1]);
    expect([expectationHolds('none', 0), expectationHolds('none', 1), expectationHolds('exists', 0), expectationHolds(3, 3), expectationHolds(0, 0), expectationHolds(2, 3)]).toEqual([
      true,
      false,
      false,
      true,
      true,
      false,
    ]);
  });

  it('value equality agrees with the canonical CBOR encoding', () => {
    const leaf = fc.oneof(
      fc.constantFrom<unknown>(0, -0, 1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 0.1, 65504, 1n, -1n, 0n, 2n ** 70n, '', '1', 'a', true, false, null, undefined),
      fc.double(),
      fc.integer(),
      fc.bigInt(),
      fc.string({ maxLength: 3 }),
      fc.integer({ min: -1, max: 3 }).map((ms) => new Date(ms)),
      fc.uint8Array({ maxLength: 3 }),
      fc.uint8Array({ maxLength: 3 }).map((bytes) => Buffer.from(bytes)),
      fc.uint8Array({ maxLength: 4 }).map((bytes) => new Uint16Array(bytes.buffer, 0, bytes.length >> 1)),
    );
    const { value } = fc.letrec<{ value: unknown }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('value'), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom('a', 'b', '__proto__', 'constructor'), tie('value'), { maxKeys: 3 }),
        fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 2 }).map((entries) => new Map(entries)),
        fc.array(tie('value'), { maxLength: 3 }).map((items) => new Set(items)),
      ),
    }));
    /** A copy that should compare equal: object keys reversed, Map and Set entries reversed, byte views swapped, -0 for 0. */
    const variant = (input: unknown): unknown => {
      if (input === 0) return -0;
      if (Array.isArray(input)) return input.map(variant);
      if (input instanceof Map) return new Map([...input].reverse().map(([key, entry]) => [variant(key), variant(entry)]));
      if (input instanceof Set) return new Set([...input].reverse().map(variant));
      if (Buffer.isBuffer(input)) return new Uint8Array(input);
      if (input instanceof Uint8Array) return Buffer.from(input);
      if (input !== null && typeof input === 'object' && !(input instanceof Date) && !ArrayBuffer.isView(input)) {
        const copy: Record<string, unknown> = {};
        for (const key of Object.keys(input).reverse()) Object.defineProperty(copy, key, { value: variant((input as Record<string, unknown>)[key]), enumerable: true, writable: true, configurable: true });
        return copy;
      }
      return input;
    };
    /** A look-alike of another JavaScript or CBOR type (1 and 1n, a Map and an object, bytes and Uint16Array…), mostly unequal. */
    const confused = (input: unknown): unknown => {
      if (typeof input === 'number') return Number.isInteger(input) ? BigInt(input) : String(input);
      if (typeof input === 'bigint') return Number(input);
      if (typeof input === 'string') return input === '' ? null : Number(input);
      if (input === null) return undefined;
      if (input === undefined) return null;
      if (typeof input === 'boolean') return input ? 1 : 0;
      if (input instanceof Date) return input.getTime() / 1000;
      if (Array.isArray(input)) return input.length === 0 ? new Set() : [confused(input[0]), ...(input as unknown[]).slice(1)];
      if (input instanceof Map) return Object.fromEntries([...input.values()].map((entry, index) => [`k${index}`, entry]));
      if (input instanceof Set) return [...input];
      if (input instanceof Uint8Array) return input.length % 2 === 0 ? new Uint16Array(input.buffer.slice(input.byteOffset, input.byteOffset + input.length)) : [...input];
      if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
      return new Map(Object.entries(input));
    };
    const sameBytes = (a: unknown, b: unknown) => Buffer.from(canonicalBytes(a)).equals(canonicalBytes(b));
    fc.assert(
      fc.property(value, value, fc.constantFrom('variant', 'confused', 'other'), (a, b, how) => {
        const other = how === 'variant' ? variant(a) : how === 'confused' ? confused(a) : b;
        expect(valuesEqual(a, other), `valuesEqual vs canonical bytes for ${fc.stringify(a)} and ${fc.stringify(other)}`).toBe(sameBytes(a, other));
      }),
      propertyParams(DEFAULT_RUNS),
    );
  });
});
