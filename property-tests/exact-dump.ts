/**
 * An exact, self-describing text form of a value, for comparing what the store returns byte for
 * byte: unlike `toEqual` it tells `undefined` from a missing key, -0 from 0, NaN, a Map from an
 * object, key order, prototypes, typed-array kinds and invalid dates apart. Written for the tests,
 * independent of the store's own canonical encoding (src/model/canonical.ts).
 */

function dumpNumber(value: number): string {
  return Object.is(value, -0) ? 'num:-0' : `num:${String(value)}`;
}

function prototypeName(value: object): string {
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype === null) return 'null-proto';
  if (prototype === Object.prototype) return 'object';
  return `proto:${(prototype as { constructor?: { name?: string } }).constructor?.name ?? '?'}`;
}

export function exactDump(value: unknown, depth = 0): string {
  if (depth > 200) throw new Error('exactDump: nesting deeper than 200');
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'boolean':
      return `bool:${String(value)}`;
    case 'number':
      return dumpNumber(value);
    case 'bigint':
      return `bigint:${value.toString()}`;
    case 'string':
      // JSON.stringify keeps lone surrogates distinguishable (as \udxxx escapes).
      return `str:${JSON.stringify(value)}`;
    case 'symbol':
    case 'function':
      return `${typeof value}:${String(value)}`;
    default:
      break;
  }
  if (value === null) return 'null';
  const next = depth + 1;
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (let i = 0; i < value.length; i++) items.push(i in value ? exactDump(value[i], next) : 'hole');
    const extra = Object.keys(value).filter((key) => !/^\d+$/.test(key));
    return `array[${items.join(',')}${extra.length > 0 ? `;extra:${extra.join(',')}` : ''}]`;
  }
  if (value instanceof Date) return `date:${String(value.getTime())}`;
  if (value instanceof Map) return `map{${[...value.entries()].map(([k, v]) => `${exactDump(k, next)}=>${exactDump(v, next)}`).join(',')}}`;
  if (value instanceof Set) return `set{${[...value].map((item) => exactDump(item, next)).join(',')}}`;
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
    return `${value.constructor.name}(${bytes})`;
  }
  const object = value as Record<string, unknown>;
  const keys = Reflect.ownKeys(object).map((key) => {
    const descriptor = Object.getOwnPropertyDescriptor(object, key)!;
    const flags = descriptor.enumerable === true ? '' : '(hidden)';
    return `${exactDump(typeof key === 'symbol' ? key : key, next)}${flags}:${'value' in descriptor ? exactDump(descriptor.value, next) : 'accessor'}`;
  });
  return `${prototypeName(object)}{${keys.join(',')}}`;
}
