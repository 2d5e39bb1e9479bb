/**
 * Arbitraries shared by the property tests: data of every type the README promises that
 * `data` and `metadata` round-trip (plain objects with keys such as __proto__, constructor, ''
 * and '1', arrays, Map with any keys, Set, Date (invalid too), Uint8Array and other typed
 * arrays, bigint, integers, floats (-0, NaN, ±Infinity), strings (non-ASCII, NUL, lone
 * surrogates, long ones), booleans, null, undefined).
 */
import fc from 'fast-check';

/** Code units that stress UTF-8: ASCII, 2-, 3- and 4-byte characters, NUL and lone surrogates. */
export const unitArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('a', 'b', 'z', '0', '-', ' ', ':') },
  { weight: 2, arbitrary: fc.constantFrom('é', 'ß', '€', '中', '😀', '\u0000', '\u007f', '\u0080', '\uffff') },
  { weight: 1, arbitrary: fc.constantFrom('\ud800', '\udfff', '\udc00') },
);
export const stringArb = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: unitArb, maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: unitArb, minLength: 60, maxLength: 300 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 200, maxLength: 400 }) },
);
export const keyArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('a', 'b', 'id', 'name', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '', '1', '10', 'a b', 'ключ') },
  { weight: 1, arbitrary: stringArb },
);

export const leafArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
  fc.double(),
  fc.constantFrom(0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5, 1e300, 2 ** 32, -(2 ** 31) - 1),
  fc.bigInt({ min: -(2n ** 100n), max: 2n ** 100n }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  stringArb,
  fc.boolean(),
  fc.constantFrom(null, undefined),
  fc.date(),
  fc.constant(new Date(Number.NaN)),
  fc.uint8Array({ maxLength: 40 }),
  fc.int16Array({ maxLength: 8 }),
  fc.uint32Array({ maxLength: 8 }),
  fc.float32Array({ maxLength: 8 }),
  fc.float64Array({ maxLength: 8 }),
  fc.bigInt64Array({ maxLength: 4 }),
);

/** An object of own enumerable properties in the given order; `__proto__` an own key, never the prototype. */
export function objectOf(entries: [string, unknown][]): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const [key, value] of entries) Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  return object;
}

export const { value: valueArb } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: leafArb },
    fc.array(tie('value'), { maxLength: 5 }),
    fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 5 }).map(objectOf),
    fc.array(fc.tuple(fc.oneof(keyArb, leafArb), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
    fc.array(fc.oneof(leafArb, tie('value')), { maxLength: 4 }).map((items) => new Set(items)),
  ),
}));

