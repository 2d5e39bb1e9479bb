/**
 * Exact data: event values round-trip exactly (odd keys included), retries must equal one
 * original append, values compare in canonical form, and hostile or extreme input is refused at
 * append or read as FACT_CORRUPTION (docs/storage-format.md, "Event encoding", "Chunks").
 */
import { Encoder, Tag } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { DATA_FIELD_VALUE_SIZE_BYTES_MAX, DATA_NESTING_DEPTH_MAX, FactStore, Query } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import { CHUNK_EVENTS_MAX, CHUNK_KIND_APPEND_FIRST, CHUNK_KIND_UNMARKED, decodeChunk } from '../src/model/chunk.js';
import { dataValuePrefix, KeySpace, metaKey, positionKey, spaceRange, u64 } from '../src/storage/keys.js';
import { VIEW } from '../src/storage/level.js';
import { isOneAppend, type ChunkSpan } from '../src/ledger/retry.js';
import { expectFactError, hex, newMemoryLevel } from './support/backends.js';
import { utf8 } from '../src/bytes.js';
import { canonicalBytes } from '../src/model/canonical.js';

function open(level = newMemoryLevel(), fs = new SimFileSystem(), data: string[] = []) {
  return FactStore.open('/db', { level, levelDurability: 'volatile', fs, indexes: { data } });
}

/** A chunk header (docs/storage-format.md, "Chunks") of kind `kind`, not a stream append, then `tuples`. */
function chunkBytes(kind: number, tuples: Uint8Array): Uint8Array {
  const header = new Uint8Array(19);
  header[0] = kind;
  return Buffer.concat([header, tuples]);
}

describe('values round-trip exactly', () => {
  it('own keys named __proto__, constructor and toString come back as given, polluting no prototype', async () => {
    const level = newMemoryLevel();
    const fs = new SimFileSystem();
    let db = await open(level, fs);
    const data = JSON.parse('{"__proto__": {"polluted": true}, "a": 2, "constructor": {"prototype": 1}, "toString": "x", "nested": [{"__proto__": 3}]}') as Record<string, unknown>;
    const metadata = JSON.parse('{"__proto__": {"admin": true}}') as Record<string, unknown>;
    await db.append({ type: 'Odd', id: 'odd-1', data, metadata });
    const check = (event: { data: unknown; metadata: unknown }) => {
      const read = event.data as Record<string, unknown>;
      expect(Object.keys(read)).toEqual(['__proto__', 'a', 'constructor', 'toString', 'nested']);
      expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
      expect(Object.getOwnPropertyDescriptor(read, '__proto__')?.value).toEqual({ polluted: true });
      expect(Object.getOwnPropertyDescriptor((read.nested as object[])[0], '__proto__')?.value).toBe(3);
      expect(Object.getPrototypeOf((read.nested as object[])[0])).toBe(Object.prototype);
      expect(Object.getOwnPropertyDescriptor(event.metadata, '__proto__')?.value).toEqual({ admin: true });
      expect(JSON.stringify(read)).toBe(JSON.stringify(data));
    };
    check((await db.read().toArray())[0]!); // from the unapplied tail, or LevelDB
    await db.close();
    db = await open(level, fs);
    check((await db.read().toArray())[0]!); // from LevelDB
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
    // An identical retry is idempotent.
    expect(await db.append({ type: 'Odd', id: 'odd-1', data, metadata })).toEqual({ position: 1, count: 1 });
    expect(await db.head()).toBe(1);
    await db.close();
  });

  it('Maps stay Maps and objects plain objects; Date, Uint8Array, bigint and Set keep their types', async () => {
    const db = await open();
    const data = { map: new Map<unknown, unknown>([['__proto__', 1], [2, 'two']]), object: { a: 1 }, date: new Date(1_700_000_000_123), bytes: Uint8Array.of(1, 2), big: 2n ** 70n, small: 1n, set: new Set([1, 'a']) };
    await db.append({ type: 'Typed', data });
    const [event] = await db.read().toArray();
    expect(event!.data).toEqual(data);
    const read = event!.data as typeof data;
    expect(read.map).toBeInstanceOf(Map);
    expect(Object.getPrototypeOf(read.object)).toBe(Object.prototype);
    expect(typeof read.small).toBe('bigint');
    await db.close();
  });

  it('objects whose key lists join alike ([""] and [], ["a\\u0000b"] and ["a", "b"]) read back as themselves', async () => {
    const db = await open();
    // The last: a key list beyond the compiled readers' COMPILED_READER_KEYS_SIZE_BYTES_MAX (4096), read key by key.
    const wide = Object.fromEntries(Array.from({ length: 300 }, (_, index) => [`a key of twenty ${String(index).padStart(3, '0')}`, index]));
    const data = [{ '': 1 }, {}, { 'a\u0000b': 2 }, { a: 3, b: 4 }, { 'a\u0000': 5 }, { a: 6, '': 7 }, wide];
    await db.append([{ type: 'K', data }, { type: 'K', data: data.slice().reverse() }]);
    const events = await db.read().toArray();
    expect(events.map((event) => event.data)).toEqual([data, data.slice().reverse()]);
    expect((events[0]!.data as object[]).map((object) => Object.keys(object))).toEqual([[''], [], ['a\u0000b'], ['a', 'b'], ['a\u0000'], ['a', ''], Object.keys(wide)]);
    await db.close();
  });
});

describe('retries equal exactly one original append', () => {
  it('a run of stored events that spans two appends, or is part of one, is not a retry', async () => {
    const db = await open();
    const e = (n: number) => ({ type: 'E', id: `e${n}`, data: { n } });
    expect(await db.append([e(1), e(2)])).toEqual({ position: 2, count: 2 });
    expect(await db.append([e(3), e(4)])).toEqual({ position: 4, count: 2 });
    await expectFactError(() => db.append([e(2), e(3)]), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
    await expectFactError(() => db.append([e(1)]), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
    await expectFactError(() => db.append([e(1), e(2), e(3), e(4)]), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
    expect(await db.append([e(3), e(4)])).toEqual({ position: 4, count: 2 });
    // An append of several chunks is one append; its chunks alone are not.
    const bulk = Array.from({ length: CHUNK_EVENTS_MAX + 10 }, (_, index) => e(100 + index));
    expect(await db.append(bulk)).toEqual({ position: 4 + bulk.length, count: bulk.length });
    expect(await db.append(bulk)).toEqual({ position: 4 + bulk.length, count: bulk.length });
    await expectFactError(() => db.append(bulk.slice(0, CHUNK_EVENTS_MAX)), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
    await expectFactError(() => db.append(bulk.slice(CHUNK_EVENTS_MAX)), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
    expect(await db.head()).toBe(4 + bulk.length);
    await db.close();
  });

  it('kind-1 chunks (formats 1 and 2) are judged by boundaries, full chunks, timestamp and stream', () => {
    const span = (first: number, count: number, timestamp = 5, stream = '', firstStreamPosition = 0): ChunkSpan => ({ first, count, kind: CHUNK_KIND_UNMARKED, timestamp, stream, firstStreamPosition });
    const at = (spans: ChunkSpan[]) => (position: number) => spans.find((chunk) => chunk.first <= position && position < chunk.first + chunk.count);
    const full = CHUNK_EVENTS_MAX;
    // Not full: a chunk of its own append.
    expect(isOneAppend(1, 2, at([span(1, 2), span(3, 2)]))).toBe(true);
    expect(isOneAppend(3, 2, at([span(1, 2), span(3, 2)]))).toBe(true);
    expect(isOneAppend(2, 2, at([span(1, 2), span(3, 2)]))).toBe(false);
    // After a full chunk of the same timestamp and stream, a chunk may continue that append.
    expect(isOneAppend(full + 1, 2, at([span(1, full), span(full + 1, 2)]))).toBe(false);
    expect(isOneAppend(1, full, at([span(1, full), span(full + 1, 2)]))).toBe(false);
    expect(isOneAppend(1, full + 2, at([span(1, full), span(full + 1, 2)]))).toBe(true);
    // Another timestamp, or a stream that does not continue, starts another append.
    expect(isOneAppend(full + 1, 2, at([span(1, full), span(full + 1, 2, 6)]))).toBe(true);
    expect(isOneAppend(1, full + 2, at([span(1, full), span(full + 1, 2, 6)]))).toBe(false);
    expect(isOneAppend(full + 1, 2, at([span(1, full, 5, 's', 1), span(full + 1, 2, 5, 's', 1)]))).toBe(true);
    // A marked first chunk after old ones starts an append for certain.
    expect(isOneAppend(full + 1, 2, at([span(1, full), { ...span(full + 1, 2), kind: CHUNK_KIND_APPEND_FIRST }]))).toBe(true);
  });
});

describe('canonical comparison does not depend on key order', () => {
  it('a retry with the keys of data in another order is identical', async () => {
    const db = await open();
    await db.append({ type: 'K', id: 'k1', data: { a: 1, b: 2, nested: new Map([['x', 1], ['y', 2]]) } });
    expect(await db.append({ type: 'K', id: 'k1', data: { b: 2, nested: new Map([['y', 2], ['x', 1]]), a: 1 } })).toEqual({ position: 1, count: 1 });
    await expectFactError(() => db.append({ type: 'K', id: 'k1', data: { a: 1, b: 3 } }), 'FACT_DUPLICATE_EVENT_ID');
    await db.close();
  });

  it('Query.data finds an object value whatever the order of its keys; 1 ≠ 1n, a Map ≠ an object', async () => {
    const db = await open(newMemoryLevel(), new SimFileSystem(), ['where']);
    await db.append([
      { type: 'P', data: { where: { city: 'Ghent', zip: 9000 } } },
      { type: 'P', data: { where: 1n } },
      { type: 'P', data: { where: new Map<string, unknown>([['city', 'Ghent'], ['zip', 9000]]) } },
    ]);
    const found = async (value: unknown) => (await db.read({ query: Query.data({ where: [value] }) }).toArray()).map((event) => event.position);
    expect(await found({ zip: 9000, city: 'Ghent' })).toEqual([1]);
    expect(await found(1)).toEqual([]);
    expect(await found(1n)).toEqual([2]);
    expect(await found(new Map<string, unknown>([['zip', 9000], ['city', 'Ghent']]))).toEqual([3]);
    // RFC 8949 §4.2.1: keys sorted by their encoding, shortest floats; -0 is stored (and compared) as 0.
    expect(hex(canonicalBytes({ b: 1, a: [1.5, -0] }))).toBe('a2616182f93e0000616201');
    await db.close();
  });

  it('a format-2 database with a data index is upgraded: its data entries are rebuilt in canonical form', async () => {
    const level = newMemoryLevel();
    const fs = new SimFileSystem();
    let db = await open(level, fs, ['where']);
    await db.append({ type: 'P', data: { where: { zip: 9000, city: 'Ghent' } } });
    await db.close();
    // What format 2 wrote: the D entry of cbor-x's canonical form, keys unsorted.
    const legacyCanonical = new Encoder({ useRecords: false, mapsAsObjects: false });
    await level.clear({ keyEncoding: 'view', ...spaceRange(KeySpace.data) });
    const legacyValue = legacyCanonical.encode({ zip: 9000, city: 'Ghent' });
    await level.put<Uint8Array, Uint8Array>(positionKey(dataValuePrefix(utf8('where'), legacyValue), 1), u64(1), VIEW);
    await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(2), VIEW);

    db = await open(level, fs, ['where']);
    expect((await db.read({ query: Query.data({ where: [{ city: 'Ghent', zip: 9000 }] }) }).toArray()).map((event) => event.position)).toEqual([1]);
    const report = await db.verify();
    expect(report.problems).toEqual([]);
    await db.close();
    expect(hex((await level.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW))!)).toBe(hex(u64(5)));
  });
});

describe('hostile or extreme input', () => {
  const nested = (depth: number): unknown => {
    let value: unknown = 0;
    for (let level = 0; level < depth; level++) value = level % 2 === 0 ? [value] : { inner: value };
    return value;
  };

  it(`data nested deeper than DATA_NESTING_DEPTH_MAX (${DATA_NESTING_DEPTH_MAX}) is refused at append and nothing is written`, async () => {
    const db = await open();
    await db.append({ type: 'Deep', data: nested(DATA_NESTING_DEPTH_MAX), metadata: { m: nested(DATA_NESTING_DEPTH_MAX - 1) } });
    expect((await db.read().toArray())[0]!.data).toEqual(nested(DATA_NESTING_DEPTH_MAX));
    const error = await expectFactError(() => db.append([{ type: 'Fine' }, { type: 'Deep', data: nested(DATA_NESTING_DEPTH_MAX + 1) }]), 'FACT_INVALID_ARGUMENT', /event 1 cannot be stored: .*DATA_NESTING_DEPTH_MAX/);
    expect(error.details).toEqual({ index: 1 });
    await expectFactError(() => db.append({ type: 'Deep', metadata: { m: nested(DATA_NESTING_DEPTH_MAX) } }), 'FACT_INVALID_ARGUMENT', /DATA_NESTING_DEPTH_MAX/);
    // Far too deep to encode at all.
    await expectFactError(() => db.append({ type: 'Deep', data: nested(100_000) }), 'FACT_INVALID_ARGUMENT');
    await expectFactError(() => db.append({ type: 'Odd', data: { pattern: /a+/ } }), 'FACT_INVALID_ARGUMENT', /RegExp/);
    await expectFactError(() => db.append({ type: 'Odd', data: { error: new Error('x') } }), 'FACT_INVALID_ARGUMENT', /Error/);
    expect(await db.head()).toBe(1);
    await db.close();
  });

  it(`data-field values above DATA_FIELD_VALUE_SIZE_BYTES_MAX (${DATA_FIELD_VALUE_SIZE_BYTES_MAX}) are not indexed, and queries for them are refused`, async () => {
    const level = newMemoryLevel();
    const db = await open(level, new SimFileSystem(), ['note']);
    const large = 'x'.repeat(DATA_FIELD_VALUE_SIZE_BYTES_MAX);
    await db.append([{ type: 'N', data: { note: large } }, { type: 'N', data: { note: 'short' } }]);
    expect((await db.read().toArray())[0]!.data).toEqual({ note: large });
    expect(() => Query.data({ note: large })).toThrow(/DATA_FIELD_VALUE_SIZE_BYTES_MAX/);
    expect(() => Query.data({ note: large.slice(3) })).not.toThrow();
    expect((await db.read({ query: Query.data({ note: 'short' }) }).toArray()).map((event) => event.position)).toEqual([2]);
    expect((await db.verify()).ok).toBe(true);
    await db.close();
    let entries = 0;
    for await (const key of level.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(KeySpace.data) })) entries += key.length > 0 ? 1 : 0;
    expect(entries).toBe(1);
  });

  it('hand-made hostile chunk bytes give FACT_CORRUPTION naming the chunk, never cycles, RegExps or huge allocations', () => {
    const corrupt = (tuples: string) => expect(() => decodeChunk(chunkBytes(CHUNK_KIND_APPEND_FIRST, Buffer.from(tuples, 'hex')), 7)).toThrow(/ledger chunk 7/);
    corrupt('9bffffffffffffffff'); // an array of 2^64 − 1 items
    corrupt('9a7fffffff00'); // an array of 2^31 items in one byte
    corrupt('817a7fffffff61'); // a string of 2^31 bytes
    corrupt('81bb00000000ffffffff'); // a map of 2^32 entries
    corrupt('8185f6'); // truncated
    corrupt('81' + '81'.repeat(200_000) + 'f6'); // deeper than the stack
    corrupt('8185f66154f6a0801c'); // bytes after the value, reserved additional info
    corrupt('8185f66154f6d9e0058080'); // a record before its definition
    corrupt(''); // no events
    corrupt('8185f6f4f6a080'); // type not a string
    expect(() => decodeChunk(new Uint8Array([9, ...new Uint8Array(18), 0x80]), 8)).toThrow(/ledger chunk 8 has an unknown kind/);
    // Tags 27 (RegExp), 28/29 (shared values, cycles) and 6/51 (packed values) stay inert Tags.
    const legacy = new Encoder();
    const tagged = (tag: number, value: unknown) => new Tag(value, tag);
    const tuples = legacy.encode([[null, 'T', [tagged(28, [tagged(29, 0)]), tagged(27, ['RegExp', '(a+)+$', '']), tagged(6, 0)], {}, []]]);
    const [[, , data]] = decodeChunk(chunkBytes(CHUNK_KIND_UNMARKED, tuples), 9).tuples as unknown as [[null, string, unknown[]]];
    expect(data[0]).toBeInstanceOf(Tag);
    expect(((data[0] as Tag).value as Tag[])[0]).toBeInstanceOf(Tag);
    expect(data[1]).toBeInstanceOf(Tag);
    expect(data[1]).not.toBeInstanceOf(RegExp);
    expect(data[2]).toBeInstanceOf(Tag);
  });

  it('strings the native reader refuses (an 8-byte length), or cut short, read as the JavaScript reader reads them', () => {
    const text = (value: string) => Buffer.concat([Buffer.from([0x78, value.length]), Buffer.from(value)]);
    const long = 'x'.repeat(150);
    // A length cbor-x never writes (8 bytes): asked for that string first the addon reads it; met while
    // looking ahead (here past its first call's 254 strings) it throws, and the rest is read in JavaScript.
    const eightByteLength = Buffer.concat([Buffer.from('7b0000000000000096', 'hex'), Buffer.from(long)]);
    const strings = Array.from({ length: 300 }, (_, index) => `string ${index}`);
    const first = Buffer.concat([Buffer.from('8185f6', 'hex'), eightByteLength, Buffer.from('f6a080', 'hex')]);
    const later = Buffer.concat([Buffer.from('8185f66154', 'hex'), Buffer.from('99012d', 'hex'), ...strings.map(text), eightByteLength, Buffer.from('a080', 'hex')]);
    expect(decodeChunk(chunkBytes(CHUNK_KIND_APPEND_FIRST, first), 2).tuples).toEqual([[null, long, null, new Map(), []]]);
    expect(decodeChunk(chunkBytes(CHUNK_KIND_APPEND_FIRST, later), 3).tuples).toEqual([[null, 'T', [...strings, long], new Map(), []]]);
    // A string longer than the bytes left, after enough bytes to be read natively.
    const cut = Buffer.concat([Buffer.from('8185f6', 'hex'), text(long), Buffer.from('78c8', 'hex'), Buffer.from(long)]);
    expect(() => decodeChunk(chunkBytes(CHUNK_KIND_APPEND_FIRST, cut), 4)).toThrow(/ledger chunk 4 does not decode/);
  });

  it('a format-2 chunk written by cbor-x (the encoder of every version) reads back identically', () => {
    const data = { a: [1, 2.5, 'x', null, true], when: new Date(86_400_000), bytes: Uint8Array.of(7), big: -(2n ** 80n), map: new Map([[1, { b: 2 }]]), set: new Set(['s']), none: undefined, f32: new Float32Array([1.5]) };
    const tuples = new Encoder().encode([['id-1', 'T', data, { m: 1 }, ['t']], [null, 'U', { a: [3] }, {}, []]]);
    expect(decodeChunk(chunkBytes(CHUNK_KIND_UNMARKED, tuples), 1).tuples).toEqual([
      ['id-1', 'T', data, { m: 1 }, ['t']],
      [null, 'U', { a: [3] }, {}, []],
    ]);
  });
});
