/**
 * FactStore conformance suite: the public contract, written once (describeStoreSuite) and run
 * against both LevelDB backends — memory-level (WAL on SimFileSystem) and classic-level (the
 * default: real files). Recovery after crashes needs SimFileSystem and a MemoryLevel kept across
 * opens, so it has its own block at the end.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import type { MemoryLevel } from 'memory-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore, Query } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import type { EventInput, FactError, FactStoreOptions, LevelDatabase, RecordedEvent, StreamAppendResult } from '../src/index.js';
import { INDEX_KEY_SPACES, KeySpace, indexKey, ledgerKey, metaKey, nameKey, spaceRange, u64, u64Pair } from '../src/storage/keys.js';
import { GeneratedIds } from '../src/model/ids.js';
import { VIEW } from '../src/storage/level.js';
import { classicBackend, expectFactError, hex, memoryBackend, newMemoryLevel, positionsOf, type OptionsFor } from './support/backends.js';
import { readU64BE, utf8 } from '../src/bytes.js';

/** Ids the store generates: UUID version 8 (src/model/ids.ts). */
const GENERATED_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const range = (from: number, to: number) => Array.from({ length: Math.abs(to - from) + 1 }, (_, index) => (from <= to ? from + index : from - index));

/** Every entry of the given key spaces as `key=value` hex, in key order. */
async function dumpSpaces(level: LevelDatabase, spaces: readonly number[]): Promise<string[]> {
  const rows: string[] = [];
  for (const space of spaces) {
    for await (const [key, value] of level.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(space) })) rows.push(`${hex(key)}=${hex(value)}`);
  }
  return rows;
}

const dumpIndexes = (level: LevelDatabase) => dumpSpaces(level, INDEX_KEY_SPACES);

async function ledgerChunkStarts(level: LevelDatabase): Promise<number[]> {
  const starts: number[] = [];
  for await (const key of level.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(KeySpace.ledger) })) starts.push(readU64BE(key, 1));
  return starts;
}

/**
 * A small course/student store (positions in comments):
 * 1 course-c1#1 CourseDefined [course:c1]      5 course-c1#2 CourseCapacityChanged [course:c1]
 * 2 student-s1#1 StudentRegistered [student:s1] 6 student-s2#1 StudentRegistered [student:s2]
 * 3 StudentSubscribed [course:c1, student:s1]   7 StudentSubscribed [course:c2, student:s2]
 * 4 course-c2#1 CourseDefined [course:c2]      8 course-c1#3 CourseArchived [course:c1]
 */
async function seedCourses(db: FactStore): Promise<void> {
  await db.appendStream('course-c1', { type: 'CourseDefined', data: { capacity: 10 }, tags: ['course:c1'] }, { expect: 'none' });
  await db.appendStream('student-s1', { type: 'StudentRegistered', tags: ['student:s1'] });
  await db.append({ type: 'StudentSubscribed', tags: ['course:c1', 'student:s1'] });
  await db.appendStream('course-c2', { type: 'CourseDefined', data: { capacity: 5 }, tags: ['course:c2'] });
  await db.appendStream('course-c1', { type: 'CourseCapacityChanged', data: { capacity: 20 }, tags: ['course:c1'] }, { expect: 1 });
  await db.appendStream('student-s2', { type: 'StudentRegistered', tags: ['student:s2'] });
  await db.append({ type: 'StudentSubscribed', tags: ['course:c2', 'student:s2'] });
  await db.appendStream('course-c1', { type: 'CourseArchived', tags: ['course:c1'] }, { expect: 2 });
}

const BIG_EVENTS = 5000;
const BIG_BATCH = 500;

/** BIG_EVENTS events in stream big-1, appended in batches; event i (0-based) is at position i + 1. */
async function seedBig(db: FactStore): Promise<void> {
  for (let start = 0; start < BIG_EVENTS; start += BIG_BATCH) {
    const events: EventInput[] = range(start, start + BIG_BATCH - 1).map((i) => ({
      type: i % 2 === 0 ? 'Even' : 'Odd',
      data: { i },
      tags: [`mod:${i % 10}`],
    }));
    await db.appendStream('big-1', events);
  }
}

/**
 * Calls that each public method of FactStore makes in the lifecycle traits. Promise-returning
 * methods must reject (never throw); read() and streams() return synchronously and throw.
 */
const LIFECYCLE_CALLS: Record<string, { kind: 'promise' | 'sync'; call: (db: FactStore) => unknown }> = {
  head: { kind: 'promise', call: (db) => db.head() },
  streamVersion: { kind: 'promise', call: (db) => db.streamVersion('s-1') },
  append: { kind: 'promise', call: (db) => db.append({ type: 'T' }) },
  appendStream: { kind: 'promise', call: (db) => db.appendStream('s-1', { type: 'T' }) },
  read: { kind: 'sync', call: (db) => db.read() },
  streams: { kind: 'sync', call: (db) => db.streams() },
  verify: { kind: 'promise', call: (db) => db.verify() },
  rebuildIndexes: { kind: 'promise', call: (db) => db.rebuildIndexes() },
  decide: { kind: 'promise', call: (db) => db.decide(Query.tags('t'), () => null) },
  subscribe: { kind: 'sync', call: (db) => db.subscribe() },
  consumer: { kind: 'sync', call: (db) => db.consumer('c') },
  consumers: { kind: 'promise', call: (db) => db.consumers() },
  resetConsumer: { kind: 'promise', call: (db) => db.resetConsumer('c', 0) },
  deleteConsumer: { kind: 'promise', call: (db) => db.deleteConsumer('c') },
  backup: { kind: 'promise', call: (db) => db.backup(join(tmpdir(), 'factstore-never-written')) },
};

export function describeStoreSuite(name: string, makeOptions: () => OptionsFor): void {
  describe(name, () => {
    let optionsFor: OptionsFor;
    let root: string;
    const opened: FactStore[] = [];

    beforeEach(() => {
      optionsFor = makeOptions();
      root = mkdtempSync(join(tmpdir(), 'factstore-store-'));
    });

    afterEach(async () => {
      for (const db of opened.splice(0)) await db.close();
      rmSync(root, { recursive: true, force: true });
    });

    const dbPath = (name = 'db') => join(root, name);

    async function openStore(path = dbPath(), extra: FactStoreOptions = {}): Promise<FactStore> {
      const db = await FactStore.open(path, { ...optionsFor(path), ...extra });
      opened.push(db);
      return db;
    }

    /** Direct access to the LevelDB of a database that is closed. */
    async function withLevel<T>(path: string, work: (level: LevelDatabase) => Promise<T>): Promise<T> {
      const level = optionsFor(path).level;
      if (level !== undefined) return work(level);
      const classic = new Level<Uint8Array, Uint8Array>(join(path, 'ledger'), VIEW);
      await classic.open();
      try {
        return await work(classic);
      } finally {
        await classic.close();
      }
    }

    /** Closes `db`, runs `work` on its LevelDB, reopens. */
    async function tamper(db: FactStore, work: (level: LevelDatabase) => Promise<void>): Promise<FactStore> {
      await db.close();
      await withLevel(db.path, work);
      return openStore(db.path);
    }

    // ------------------------------------------------------------------ open / close

    describe('open and close', () => {
      it('creates a missing database by default, and reopens it with createIfMissing: false', async () => {
        const path = dbPath('nested/new');
        const db = await openStore(path);
        expect(db.path).toBe(path);
        expect(await db.head()).toBe(0);
        await db.append({ type: 'Created' });
        await db.close();
        if (optionsFor(path).level === undefined) {
          expect(existsSync(join(path, 'wal'))).toBe(true);
          expect(existsSync(join(path, 'ledger'))).toBe(true);
        }
        const again = await openStore(path, { createIfMissing: false });
        expect(await again.head()).toBe(1);
      });

      it('createIfMissing: false on a missing path fails with FACT_NOT_FOUND and creates nothing', async () => {
        const path = dbPath('missing');
        const error = await expectFactError(() => openStore(path, { createIfMissing: false }), 'FACT_NOT_FOUND', /missing/);
        expect(error.details).toEqual({ path });
        expect(existsSync(path)).toBe(false);
        // Still creatable afterwards.
        const db = await openStore(path);
        expect(await db.head()).toBe(0);
      });

      it('rejects bad open arguments with FACT_INVALID_ARGUMENT', async () => {
        await expectFactError(() => FactStore.open(''), 'FACT_INVALID_ARGUMENT', /path/);
        await expectFactError(() => openStore(dbPath(), { checkpointEveryBytes: 0 }), 'FACT_INVALID_ARGUMENT', /checkpointEveryBytes/);
      });

      it('refuses a WAL record limit too small for the id-seed record before anything is written (a bare WAL takes any from 0)', async () => {
        for (const maxRecordSizeBytes of [0, -0, 15, 1.5]) {
          const path = join(root, `tiny-records-${String(maxRecordSizeBytes)}`);
          await expectFactError(() => openStore(path, { wal: { maxRecordSizeBytes } }), 'FACT_INVALID_ARGUMENT', /wal\.maxRecordSizeBytes must be an integer of at least 16/);
          expect(existsSync(path), 'a refused open creates nothing').toBe(false);
        }
        const db = await openStore(join(root, 'records-16'), { wal: { maxRecordSizeBytes: 16 } });
        expect(await db.head()).toBe(0);
        await db.close();
      });

      it('a second open of a database that is open fails with FACT_LOCKED naming the pid', async () => {
        const db = await openStore();
        await db.append({ type: 'First' });
        const error = await expectFactError(() => openStore(), 'FACT_LOCKED');
        expect(error.message).toContain(String(process.pid));
        // The first handle is unaffected; after closing it the database opens again.
        expect(await db.append({ type: 'Second' })).toEqual({ position: 2, count: 1 });
        await db.close();
        const again = await openStore();
        expect(await again.head()).toBe(2);
      });

      it('close is idempotent', async () => {
        const db = await openStore();
        await db.append({ type: 'T' });
        await Promise.all([db.close(), db.close()]);
        await db.close();
        await expectFactError(() => db.head(), 'FACT_CLOSED');
      });

      it('LIFECYCLE_CALLS lists every public method of FactStore', () => {
        const methods = Object.getOwnPropertyNames(FactStore.prototype).filter((method) => method !== 'constructor' && method !== 'close');
        // A new public method needs a lifecycle trait: add it to LIFECYCLE_CALLS.
        expect(methods.sort()).toEqual(Object.keys(LIFECYCLE_CALLS).sort());
      });

      for (const [method, { kind, call }] of Object.entries(LIFECYCLE_CALLS)) {
        it(`${method}() after close fails with FACT_CLOSED`, async () => {
          const db = await openStore();
          await db.appendStream('s-1', { type: 'T' });
          await db.close();
          if (kind === 'sync') {
            await expectFactError(() => call(db), 'FACT_CLOSED', new RegExp(`${method}: .* is closed`));
            return;
          }
          let result: unknown;
          expect(() => (result = call(db)), `${method} must reject, not throw`).not.toThrow();
          expect(result).toBeInstanceOf(Promise);
          await expectFactError(() => result, 'FACT_CLOSED', new RegExp(`${method}: .* is closed`));
        });
      }

      it('calls made while close is in progress fail with FACT_CLOSED', async () => {
        const db = await openStore();
        const pending = db.append({ type: 'BeforeClose' });
        const closing = db.close();
        await expectFactError(() => db.append({ type: 'DuringClose' }), 'FACT_CLOSED');
        await expectFactError(() => db.head(), 'FACT_CLOSED');
        await closing;
        expect(await pending).toEqual({ position: 1, count: 1 });
      });

      it('`await using` closes the database at the end of the scope', async () => {
        const path = dbPath();
        let scoped: FactStore | undefined;
        {
          await using db = await FactStore.open(path, optionsFor(path));
          scoped = db;
          await db.append({ type: 'Scoped' });
        }
        await expectFactError(() => scoped.head(), 'FACT_CLOSED');
        const again = await openStore(path); // the lock was released
        expect(await again.head()).toBe(1);
      });

      it('appends in flight when close is called complete', async () => {
        const db = await openStore();
        const pending = range(0, 19).map((i) => db.append({ type: 'InFlight', data: { i } }));
        const closing = db.close();
        const settled = await Promise.allSettled(pending);
        await closing;
        expect(settled.map((result) => result.status)).toEqual(Array(20).fill('fulfilled'));
        const results = settled.map((result) => (result as PromiseFulfilledResult<{ position: number }>).value.position);
        expect([...results].sort((a, b) => a - b)).toEqual(range(1, 20));
        const again = await openStore();
        expect(await again.head()).toBe(20);
        const events = await again.read().toArray();
        expect(events.map((event) => (event.data as { i: number }).i)).toEqual(range(0, 19)); // call order
      });
    });

    // ------------------------------------------------------------------ events

    describe('recorded events', () => {
      it('records id, type, data, metadata, tags, position and timestamp', async () => {
        const db = await openStore();
        const before = Date.now();
        const result = await db.append([
          { type: 'Plain' },
          { type: 'Full', id: 'caller-id-1', data: { x: 1 }, metadata: { correlation: 'c-1' }, tags: ['b', 'a', 'b', 'c', 'a'] },
        ]);
        const after = Date.now();
        expect(result).toEqual({ position: 2, count: 2 });
        const [plain, full] = await db.read().toArray();
        expect(plain).toEqual({ id: expect.stringMatching(GENERATED_ID) as unknown, type: 'Plain', data: null, metadata: {}, tags: [], position: 1, timestamp: plain!.timestamp });
        expect(full).toEqual({
          id: 'caller-id-1',
          type: 'Full',
          data: { x: 1 },
          metadata: { correlation: 'c-1' },
          tags: ['b', 'a', 'c'],
          position: 2,
          timestamp: plain!.timestamp,
        });
        expect('stream' in plain! || 'streamPosition' in plain!).toBe(false);
        expect(plain!.timestamp).toBeGreaterThanOrEqual(before);
        expect(plain!.timestamp).toBeLessThanOrEqual(after);
      });

      it('generates distinct UUIDs and keeps positions 1-based and gapless across appends', async () => {
        const db = await openStore();
        await db.append([{ type: 'A' }, { type: 'B' }, { type: 'C' }]);
        await db.append({ type: 'D' });
        await db.appendStream('s-1', [{ type: 'E' }, { type: 'F' }]);
        const events = await db.read().toArray();
        expect(positionsOf(events)).toEqual(range(1, 6));
        expect(events.map((event) => event.type)).toEqual(['A', 'B', 'C', 'D', 'E', 'F']);
        expect(new Set(events.map((event) => event.id)).size).toBe(6);
        for (const event of events) expect(event.id).toMatch(GENERATED_ID);
        // One timestamp per append.
        expect(new Set(events.slice(0, 3).map((event) => event.timestamp)).size).toBe(1);
        expect(events[4]!.timestamp).toBe(events[5]!.timestamp);
      });

      it('stream and streamPosition are set only for stream appends', async () => {
        const db = await openStore();
        await db.appendStream('order-1', [{ type: 'Placed' }, { type: 'Paid' }]);
        await db.append({ type: 'Unrelated' });
        await db.appendStream('order-1', { type: 'Shipped' });
        const events = await db.read().toArray();
        expect(events.map(({ stream, streamPosition }) => [stream, streamPosition])).toEqual([
          ['order-1', 1],
          ['order-1', 2],
          [undefined, undefined],
          ['order-1', 3],
        ]);
        expect(Object.keys(events[2]!).sort()).toEqual(['data', 'id', 'metadata', 'position', 'tags', 'timestamp', 'type']);
      });

      it('round-trips nested objects, arrays, Date, Uint8Array, bigint and Map in data and metadata', async () => {
        const db = await openStore();
        const data = {
          nested: { list: [1, 'two', null, true, { deep: [new Date(5), -1.5] }] },
          when: new Date(1_700_000_000_000),
          bytes: new Uint8Array([0, 1, 2, 255]),
          big: 12_345_678_901_234_567_890n,
          small: -5n,
          map: new Map<unknown, unknown>([
            ['k', 1],
            [2, 'two'],
          ]),
          empty: {},
          text: 'héllo ✓',
        };
        const metadata = { user: 'u-1', at: new Date(0), flags: new Map([['a', true]]), ids: [1n, 2n] };
        await db.append({ type: 'Rich', data, metadata });
        await db.append({ type: 'Scalar', data: 42 });
        await db.append({ type: 'List', data: [new Uint8Array([9]), 'x'] });
        const [rich, scalar, list] = await db.read().toArray();
        expect(rich!.data).toEqual(data);
        expect(rich!.metadata).toEqual(metadata);
        const read = rich!.data as typeof data;
        expect(read.when).toBeInstanceOf(Date);
        expect(read.bytes).toBeInstanceOf(Uint8Array);
        expect(read.map).toBeInstanceOf(Map);
        expect(typeof read.big).toBe('bigint');
        expect(scalar!.data).toBe(42);
        expect(list!.data).toEqual([new Uint8Array([9]), 'x']);
      });
    });

    // ------------------------------------------------------------------ append

    describe('append and appendStream', () => {
      it('append takes one event or an array and returns { position, count }', async () => {
        const db = await openStore();
        expect(await db.append({ type: 'One' })).toEqual({ position: 1, count: 1 });
        expect(await db.append([{ type: 'Two' }, { type: 'Three' }, { type: 'Four' }])).toEqual({ position: 4, count: 3 });
        expect(await db.append([{ type: 'Five' }])).toEqual({ position: 5, count: 1 });
        expect(await db.head()).toBe(5);
      });

      it('appendStream returns { position, streamPosition, count } for every expectation that holds', async () => {
        const db = await openStore();
        expect(await db.appendStream('acc-1', { type: 'Opened' }, { expect: 'none' })).toEqual({ position: 1, streamPosition: 1, count: 1 });
        expect(await db.appendStream('acc-1', [{ type: 'A' }, { type: 'B' }], { expect: 'exists' })).toEqual({ position: 3, streamPosition: 3, count: 2 });
        expect(await db.appendStream('acc-1', { type: 'C' }, { expect: 3 })).toEqual({ position: 4, streamPosition: 4, count: 1 });
        expect(await db.appendStream('acc-1', { type: 'D' }, { expect: 'any' })).toEqual({ position: 5, streamPosition: 5, count: 1 });
        expect(await db.appendStream('acc-1', { type: 'E' })).toEqual({ position: 6, streamPosition: 6, count: 1 });
        expect(await db.appendStream('acc-2', { type: 'Opened' }, { expect: 0 })).toEqual({ position: 7, streamPosition: 1, count: 1 });
        expect(await db.appendStream('acc-3', { type: 'Opened' }, {})).toEqual({ position: 8, streamPosition: 1, count: 1 });
        expect(await db.streamVersion('acc-1')).toBe(6);
      });

      it('a violated expectation fails with FACT_CONCURRENCY { stream, expected, actual } and writes nothing', async () => {
        const db = await openStore();
        await db.appendStream('acc-1', [{ type: 'A' }, { type: 'B' }]);
        const cases: [string, 'none' | 'exists' | number, number][] = [
          ['acc-1', 'none', 2],
          ['acc-2', 'exists', 0],
          ['acc-1', 1, 2],
          ['acc-1', 3, 2],
          ['acc-1', 0, 2],
          ['acc-2', 1, 0],
        ];
        for (const [stream, expected, actual] of cases) {
          const error = await expectFactError(
            () => db.appendStream(stream, [{ type: 'X' }, { type: 'Y' }], { expect: expected }),
            'FACT_CONCURRENCY',
            new RegExp(stream),
          );
          expect(error.details).toEqual({ stream, expected, actual });
        }
        expect(await db.head()).toBe(2);
        expect(await db.streamVersion('acc-1')).toBe(2);
        expect(await db.streamVersion('acc-2')).toBe(0);
        expect(await db.streams().toArray()).toEqual(['acc-1']);
        expect(positionsOf(await db.read().toArray())).toEqual([1, 2]);
      });

      it('appends are atomic: a failing append in a group leaves the others whole and positions gapless', async () => {
        const db = await openStore();
        await db.appendStream('acc-1', { type: 'Opened' });
        const settled = await Promise.allSettled([
          db.appendStream('acc-2', [{ type: 'A' }, { type: 'B' }]),
          db.appendStream('acc-1', [{ type: 'C' }, { type: 'D' }, { type: 'E' }], { expect: 'none' }),
          db.append([{ type: 'F' }, { type: 'G' }]),
        ]);
        expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
        expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'FACT_CONCURRENCY' });
        const events = await db.read().toArray();
        expect(events.map((event) => event.type)).toEqual(['Opened', 'A', 'B', 'F', 'G']);
        expect(positionsOf(events)).toEqual(range(1, 5));
        expect(await db.streamVersion('acc-1')).toBe(1);
      });
    });

    // ------------------------------------------------------------------ idempotency

    describe('generated ids', () => {
      it('are derived from the position: stable across reopen, distinct between databases, and found by id', async () => {
        const path = dbPath();
        let db = await openStore(path);
        await db.appendStream('order-1', [{ type: 'Placed' }, { type: 'Paid' }]);
        await db.append(range(1, 300).map((n) => ({ type: 'Bulk', data: { n } })));
        const before = await db.read().toArray();
        expect(new Set(before.map((event) => event.id)).size).toBe(302);
        await db.close();
        db = await openStore(path);
        expect(await db.read().toArray()).toEqual(before);
        const other = await openStore(dbPath('other'));
        await other.appendStream('order-1', [{ type: 'Placed' }, { type: 'Paid' }]);
        expect((await other.read().toArray()).map((event) => event.id)).not.toEqual(before.slice(0, 2).map((event) => event.id));
        await other.close();

        // Re-appending a read event with its generated id is a retry (no write) or a duplicate.
        const [placed, paid] = before;
        const retry = { type: 'Placed', id: placed!.id, data: placed!.data, metadata: placed!.metadata, tags: placed!.tags };
        const retried = await db.appendStream('order-1', [retry, { type: 'Paid', id: paid!.id }]);
        expect(retried).toEqual({ position: 2, streamPosition: 2, count: 2 });
        // All 300 events (two chunks) are a retry; one of them alone is part of an append, not one.
        const bulkEvents = before.slice(2).map((event) => ({ type: 'Bulk', id: event.id, data: event.data }));
        expect(await db.append(bulkEvents)).toEqual({ position: 302, count: 300 });
        const bulk = before[150]!;
        await expectFactError(() => db.append({ type: 'Bulk', id: bulk.id, data: bulk.data }), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
        const error = await expectFactError(() => db.append({ type: 'Bulk', id: bulk.id, data: { n: -1 } }), 'FACT_DUPLICATE_EVENT_ID', /already exists/);
        expect(error.details).toEqual({ id: bulk.id, position: bulk.position });
        expect(await db.head()).toBe(302);
      });

      it("an id of this database's generated form for a position not yet written is refused; for a caller id's position it is an ordinary id", async () => {
        const path = dbPath();
        let db = await openStore(path);
        await db.append({ type: 'First' });
        await db.append({ type: 'Chosen', id: 'chosen-2' });
        await db.close();
        const seed = await withLevel(path, (level) => level.get<Uint8Array, Uint8Array>(metaKey('idSeed'), VIEW));
        const ids = new GeneratedIds();
        ids.useSeed(seed!);
        db = await openStore(path);
        expect((await db.read().toArray()).map((event) => event.id)).toEqual([ids.id(1), 'chosen-2']);
        // Position 2 holds a caller id, so the generated form of 2 names no event: an ordinary new id.
        expect(await db.append({ type: 'Taken', id: ids.id(2) })).toEqual({ position: 3, count: 1 });
        expect(await db.append({ type: 'Taken', id: ids.id(2) })).toEqual({ position: 3, count: 1 });
        expect((await db.read('all', { from: 3 }).toArray())[0]!.id).toBe(ids.id(2));
        // Position 5 is not written yet: the store will generate that id for it.
        const error = await expectFactError(() => db.append([{ type: 'Fine' }, { type: 'Early', id: ids.id(5) }]), 'FACT_INVALID_ARGUMENT', /has the form of the ids this database generates/);
        expect(error.details).toEqual({ id: ids.id(5) });
        expect(await db.head()).toBe(3);
        await db.append([{ type: 'Fourth' }, { type: 'Fifth' }]);
        expect((await db.read('all', { from: 5 }).toArray())[0]!.id).toBe(ids.id(5));
        // Now it exists: the same append is a retry, other content (or a part of it) a duplicate.
        expect(await db.append([{ type: 'Fourth', id: ids.id(4) }, { type: 'Fifth', id: ids.id(5) }])).toEqual({ position: 5, count: 2 });
        await expectFactError(() => db.append({ type: 'Sixth', id: ids.id(5) }), 'FACT_DUPLICATE_EVENT_ID', /already exists at position 5/);
        await expectFactError(() => db.append({ type: 'Fifth', id: ids.id(5) }), 'FACT_DUPLICATE_EVENT_ID', /not as one append/);
        expect(await db.head()).toBe(5);
      });
    });

    describe('idempotent retries by caller id', () => {
      it('an identical re-append returns the original result and writes nothing', async () => {
        const db = await openStore();
        const events: EventInput[] = [
          { type: 'A', id: 'e-1', data: { n: 1, at: new Date(7), map: new Map([['k', 1n]]) }, tags: ['t'] },
          { type: 'B', id: 'e-2', metadata: { m: [1, 2] }, data: new Uint8Array([1, 2]) },
        ];
        const original = await db.append(events);
        await db.append({ type: 'Other' });
        expect(await db.append(events)).toEqual(original);
        expect(await db.append(events.map((event) => ({ ...event })))).toEqual(original);
        expect(await db.head()).toBe(3);

        const streamOriginal = await db.appendStream('order-1', [{ type: 'Placed', id: 'o-1' }, { type: 'Paid', id: 'o-2' }], { expect: 'none' });
        await db.appendStream('order-1', { type: 'Shipped' });
        // The retry returns the original result even though expect: 'none' no longer holds.
        expect(await db.appendStream('order-1', [{ type: 'Placed', id: 'o-1' }, { type: 'Paid', id: 'o-2' }], { expect: 'none' })).toEqual(streamOriginal);
        expect(await db.head()).toBe(6);
        expect(await db.streamVersion('order-1')).toBe(3);
        expect((await db.read().toArray()).map((event) => event.id).filter((id) => !GENERATED_ID.test(id))).toEqual(['e-1', 'e-2', 'o-1', 'o-2']);
      });

      it('the same id with different content fails with FACT_DUPLICATE_EVENT_ID and writes nothing', async () => {
        const db = await openStore();
        await db.append({ type: 'A', id: 'e-1', data: { n: 1 }, tags: ['t'] });
        await db.appendStream('s-1', { type: 'A', id: 'e-2' });
        const variants: (() => Promise<unknown>)[] = [
          () => db.append({ type: 'B', id: 'e-1', data: { n: 1 }, tags: ['t'] }),
          () => db.append({ type: 'A', id: 'e-1', data: { n: 2 }, tags: ['t'] }),
          () => db.append({ type: 'A', id: 'e-1', data: { n: 1 } }),
          () => db.append({ type: 'A', id: 'e-1', data: { n: 1 }, tags: ['t'], metadata: { m: 1 } }),
          () => db.appendStream('s-2', { type: 'A', id: 'e-1', data: { n: 1 }, tags: ['t'] }),
          () => db.append({ type: 'A', id: 'e-2' }), // same content, but the original was a stream append
          () => db.appendStream('s-1', [{ type: 'A', id: 'e-2' }, { type: 'More', id: 'e-3' }]), // partial retry
          () => db.append([{ type: 'A', id: 'e-1', data: { n: 1 }, tags: ['t'] }, { type: 'New' }]), // one id not chosen by the caller
          () => db.append([{ type: 'New' }, { type: 'A', id: 'e-1', data: { n: 1 }, tags: ['t'] }]),
        ];
        for (const variant of variants) {
          const error = await expectFactError(variant, 'FACT_DUPLICATE_EVENT_ID');
          expect(['e-1', 'e-2']).toContain(error.details.id);
          expect(error.message).toContain(String(error.details.id));
        }
        expect(await db.head()).toBe(2);
        expect(await db.streamVersion('s-2')).toBe(0);
        expect((await db.read().toArray()).map((event) => event.id)).toEqual(['e-1', 'e-2']);
      });

      it('duplicate ids within one append fail with FACT_DUPLICATE_EVENT_ID', async () => {
        const db = await openStore();
        const error = await expectFactError(() => db.append([{ type: 'A', id: 'd' }, { type: 'B' }, { type: 'A', id: 'd' }]), 'FACT_DUPLICATE_EVENT_ID', /twice/);
        expect(error.details).toEqual({ id: 'd' });
        await expectFactError(() => db.appendStream('s-1', [{ type: 'A', id: 'd' }, { type: 'A', id: 'd' }]), 'FACT_DUPLICATE_EVENT_ID');
        expect(await db.head()).toBe(0);
      });

      it('of concurrent appends with the same id exactly one succeeds', async () => {
        const db = await openStore();
        const settled = await Promise.allSettled([
          db.append({ type: 'A', id: 'same' }),
          db.append({ type: 'B', id: 'same' }),
          db.appendStream('s-1', { type: 'C', id: 'same' }),
        ]);
        const fulfilled = settled.filter((result) => result.status === 'fulfilled');
        expect(fulfilled).toHaveLength(1);
        for (const result of settled) {
          if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: 'FACT_DUPLICATE_EVENT_ID', details: { id: 'same' } });
        }
        const events = await db.read().toArray();
        expect(events).toHaveLength(1);
        expect(events[0]!.id).toBe('same');

        // Identical concurrent appends: one event is written, and any that resolve get its result.
        const identical = await Promise.allSettled(range(1, 5).map(() => db.append({ type: 'Same', id: 'twin', data: { v: 1 } })));
        const results = identical.filter((result) => result.status === 'fulfilled').map((result) => result.value);
        expect(results.length).toBeGreaterThanOrEqual(1);
        for (const result of results) expect(result).toEqual({ position: 2, count: 1 });
        for (const result of identical) {
          if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: 'FACT_DUPLICATE_EVENT_ID' });
        }
        expect(await db.head()).toBe(2);
      });
    });

    // ------------------------------------------------------------------ validation

    describe('bad input', () => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const badAppends: [string, (db: FactStore) => unknown, RegExp][] = [
        ['missing type', (db) => db.append({} as EventInput), /event 0: type must be a non-empty string/],
        ['empty type', (db) => db.append({ type: '' }), /type must be a non-empty string/],
        ['non-string type', (db) => db.append({ type: 7 as unknown as string }), /type must be a non-empty string/],
        ['type with NUL', (db) => db.append({ type: 'a\0b' }), /type must not contain a NUL/],
        ['type too long', (db) => db.append({ type: 'é'.repeat(129) }), /type is longer than 256 bytes/],
        ['type with a lone high surrogate', (db) => db.append({ type: 'a\ud800b' }), /type is not well-formed UTF-16/],
        ['type ending in a high surrogate', (db) => db.append({ type: 'ab\ud83d' }), /type is not well-formed UTF-16/],
        ['tag with a lone low surrogate', (db) => db.append({ type: 'T', tags: ['ok', '\udc00x'] }), /tag 1 is not well-formed UTF-16/],
        ['tag too long', (db) => db.append({ type: 'T', tags: ['🐢'.repeat(257)] }), /tag 0 is longer than 1024 bytes/],
        ['tag with NUL among many tags', (db) => db.append({ type: 'T', tags: [...range(1, 20).map((n) => `t${n}`), 'a\0'] }), /tag 20 must not contain a NUL/],
        ['id too long', (db) => db.append({ type: 'T', id: 'i'.repeat(257) }), /id is longer than 256 bytes/],
        ['missing type in the second event', (db) => db.append([{ type: 'Fine' }, {} as EventInput]), /event 1: type/],
        ['non-array tags', (db) => db.append({ type: 'T', tags: 'tag' as unknown as string[] }), /tags must be an array/],
        ['non-string tag', (db) => db.append({ type: 'T', tags: ['ok', 3 as unknown as string] }), /tag 1 must be a non-empty string/],
        ['empty tag', (db) => db.append({ type: 'T', tags: [''] }), /tag 0 must be a non-empty string/],
        ['non-object metadata', (db) => db.append({ type: 'T', metadata: 'm' as unknown as Record<string, unknown> }), /metadata must be an object/],
        ['array metadata', (db) => db.append({ type: 'T', metadata: [] as unknown as Record<string, unknown> }), /metadata must be an object/],
        ['empty id', (db) => db.append({ type: 'T', id: '' }), /id must be a non-empty string/],
        ['non-string id', (db) => db.append({ type: 'T', id: 5 as unknown as string }), /id must be a non-empty string/],
        ['non-object event', (db) => db.append('event' as unknown as EventInput), /event 0 must be an object/],
        ['null event', (db) => db.append(null as unknown as EventInput), /event 0 must be an object/],
        ['empty event list', (db) => db.append([]), /event list is empty/],
        ['empty event list (stream)', (db) => db.appendStream('s-1', []), /event list is empty/],
        ['function in data', (db) => db.append({ type: 'T', data: { f: () => 1 } }), /cannot be encoded as CBOR/],
        ['symbol in data', (db) => db.append({ type: 'T', data: [Symbol('s')] }), /cannot be encoded as CBOR/],
        ['cyclic data', (db) => db.append({ type: 'T', data: cyclic }), /cannot be encoded as CBOR/],
        ['function in metadata', (db) => db.appendStream('s-1', { type: 'T', metadata: { f: () => 1 } }), /cannot be encoded as CBOR/],
        ['non-string stream id', (db) => db.appendStream(42 as unknown as string, { type: 'T' }), /stream id must be a non-empty string/],
        ['empty stream id', (db) => db.appendStream('', { type: 'T' }), /stream id must be a non-empty string/],
        ['stream id with NUL', (db) => db.appendStream('a\0b', { type: 'T' }), /stream id must not contain a NUL/],
        ['stream id with a lone surrogate', (db) => db.appendStream('s-\udfff', { type: 'T' }), /stream id is not well-formed UTF-16/],
        ['stream id too long', (db) => db.appendStream('s'.repeat(1025), { type: 'T' }), /stream id is longer than 1024 bytes/],
        ['negative expect', (db) => db.appendStream('s-1', { type: 'T' }, { expect: -1 }), /expect must be/],
        ['fractional expect', (db) => db.appendStream('s-1', { type: 'T' }, { expect: 1.5 }), /expect must be/],
        ['unknown expect', (db) => db.appendStream('s-1', { type: 'T' }, { expect: 'maybe' as 'any' }), /expect must be/],
        ['null expect', (db) => db.appendStream('s-1', { type: 'T' }, { expect: null as unknown as 'any' }), /expect must be/],
        ['non-object appendStream options', (db) => db.appendStream('s-1', { type: 'T' }, null as unknown as object), /options must be an object/],
      ];
      const badCalls: [string, (db: FactStore) => unknown, RegExp][] = [
        ['negative limit', (db) => db.read('all', { limit: -1 }).toArray(), /limit must be an integer ≥ 0/],
        ['fractional limit', (db) => db.read('all', { limit: 0.5 }).toArray(), /limit must be/],
        ['bad direction', (db) => db.read('all', { direction: 'sideways' as 'forward' }).toArray(), /direction must be 'forward' or 'backward'/],
        ['negative from', (db) => db.read({ stream: 's-1' }, { from: -1 }).toArray(), /from must be an integer ≥ 0/],
        ['non-number from', (db) => db.read('all', { from: '1' as unknown as number }).toArray(), /from must be/],
        ['bad signal', (db) => db.read('all', { signal: {} as AbortSignal }).toArray(), /signal must be an AbortSignal/],
        ['non-object read options', (db) => db.read('all', 'fast' as unknown as object).toArray(), /options must be an object/],
        ['unknown source string', (db) => db.read('everything' as 'all').toArray(), /source must be 'all' or an object/],
        ['null source', (db) => db.read(null as unknown as 'all').toArray(), /source must be 'all' or an object/],
        ['empty source', (db) => db.read({} as { stream: string }).toArray(), /exactly one of stream, type, tag, category/],
        ['two-key source', (db) => {
            const twoKeys = { stream: 's-1', type: 'T' };
            return db.read(twoKeys).toArray();
          }, /exactly one of/],
        ['unknown source key', (db) => db.read({ topic: 'x' } as unknown as { stream: string }).toArray(), /unknown source "topic"/],
        ['non-string stream source', (db) => db.read({ stream: 1 as unknown as string }).toArray(), /stream id must be a non-empty string/],
        ['empty tag source', (db) => db.read({ tag: '' }).toArray(), /tag must be a non-empty string/],
        ['empty type source', (db) => db.read({ type: '' }).toArray(), /type must be a non-empty string/],
        ['empty category source', (db) => db.read({ category: '' }).toArray(), /category must be a non-empty string/],
        ['non-string streamVersion id', (db) => db.streamVersion(1 as unknown as string), /stream id must be/],
        ['empty streams category', (db) => db.streams({ category: '' }).toArray(), /category must be a non-empty string/],
        ['non-function onProgress', (db) => db.rebuildIndexes({ onProgress: 5 as unknown as () => void }), /onProgress must be a function/],
      ];

      it.each(badAppends)('append with %s fails with FACT_INVALID_ARGUMENT and writes nothing', async (_name, call, message) => {
        const db = await openStore();
        await db.appendStream('s-1', { type: 'Existing' });
        await expectFactError(() => call(db), 'FACT_INVALID_ARGUMENT', message);
        expect(await db.head()).toBe(1);
        expect(await db.streamVersion('s-1')).toBe(1);
        expect(await db.read().toArray()).toHaveLength(1);
        // The store still works.
        expect(await db.append({ type: 'After' })).toEqual({ position: 2, count: 1 });
      });

      it('names at their UTF-8 size limit are accepted, and repeated tags are kept once, first occurrence first', async () => {
        const db = await openStore();
        const type = '🐢'.repeat(64); // 256 bytes of UTF-8
        const stream = 'é'.repeat(512); // 1024 bytes
        const fewTags = ['b', 'a', 'b', 'c', 'a'];
        const manyTags = [...range(1, 30).map((n) => `t${n % 20}`), 'x'];
        await db.appendStream(stream, [{ type, tags: fewTags }, { type: 'Many', tags: manyTags }]);
        const events = await db.read({ stream }).toArray();
        expect(events.map((event) => event.type)).toEqual([type, 'Many']);
        expect(events[0]!.tags).toEqual(['b', 'a', 'c']);
        expect(events[1]!.tags).toEqual([...range(1, 19).map((n) => `t${n}`), 't0', 'x']);
        expect(await db.read({ tag: 't0' }).toArray()).toHaveLength(1);
      });

      it('invalid read, streamVersion, streams and rebuildIndexes arguments fail with FACT_INVALID_ARGUMENT', async () => {
        const db = await openStore();
        await db.appendStream('s-1', { type: 'Existing' });
        for (const [name, call, message] of badCalls) {
          const error = await expectFactError(() => call(db), 'FACT_INVALID_ARGUMENT', message);
          expect(error.message, name).toMatch(message);
        }
        expect(await db.head()).toBe(1);
        expect((await db.verify()).ok).toBe(true);
      });
    });

    // ------------------------------------------------------------------ concurrency

    describe('concurrency', () => {
      it('50 concurrent appendStream calls with the same expected version: exactly one succeeds', async () => {
        const db = await openStore();
        await db.appendStream('acc-1', [{ type: 'Opened' }, { type: 'Deposited' }]);
        const version = await db.streamVersion('acc-1');
        const settled = await Promise.allSettled(range(1, 50).map((writer) => db.appendStream('acc-1', { type: 'Withdrawn', data: { writer } }, { expect: version })));
        const fulfilled = settled.filter((result) => result.status === 'fulfilled');
        expect(fulfilled).toHaveLength(1);
        expect(fulfilled[0]!.value).toEqual({ position: 3, streamPosition: 3, count: 1 });
        for (const result of settled) {
          if (result.status === 'rejected') {
            expect(result.reason).toMatchObject({ code: 'FACT_CONCURRENCY', details: { stream: 'acc-1', expected: 2, actual: 3 } });
          }
        }
        expect(await db.head()).toBe(3);
      });

      it('appends to a stream not yet cached (its version read ahead of planning) still see each other', async () => {
        const path = dbPath();
        let db = await openStore(path);
        await db.appendStream('acc-9', [{ type: 'Opened' }]);
        await db.close();
        db = await openStore(path); // nothing cached: every call below reads the version ahead
        const settled = await Promise.allSettled([
          ...range(1, 10).map(() => db.appendStream('acc-9', { type: 'Withdrawn' }, { expect: 1 })),
          db.appendStream('acc-9', { type: 'Noted' }),
          ...range(1, 10).map(() => db.appendStream('acc-10', { type: 'Opened' }, { expect: 'none' })),
        ]);
        const fulfilled = settled.filter((result) => result.status === 'fulfilled').map((result) => result.value);
        expect(fulfilled).toEqual([
          { position: 2, streamPosition: 2, count: 1 },
          { position: 3, streamPosition: 3, count: 1 },
          { position: 4, streamPosition: 1, count: 1 },
        ]);
        expect(await db.streamVersion('acc-9')).toBe(3);
        expect(await db.streamVersion('acc-10')).toBe(1);
      });

      it("appends too large for one WAL record are refused up front; many that together are too large share several records", async () => {
        const db = await openStore(undefined, { wal: { maxRecordSizeBytes: 4096 } });
        const event = (n: number) => ({ type: 'Sized', data: { n, pad: 'x'.repeat(900) } });
        const error = await expectFactError(() => db.append(range(1, 5).map(event)), 'FACT_INVALID_ARGUMENT', /needs a \d+-byte WAL record, above the WAL's maxRecordSizeBytes 4096/);
        expect(error.details).toMatchObject({ maxRecordSizeBytes: 4096 });
        expect(await db.head()).toBe(0);
        // Twenty concurrent appends of ≈ 1 KB: one group would need ≈ 20 KB; they go in several.
        const results = await Promise.all(range(1, 20).map((n) => db.appendStream(`sized-${n}`, event(n))));
        expect(results.map((result) => result.position).sort((a, b) => a - b)).toEqual(range(1, 20));
        expect(await db.append(range(1, 3).map(event))).toEqual({ position: 23, count: 3 });
        expect((await db.verify()).ok).toBe(true);
      });

      it('50 writers reading the version and appending with it: exactly one succeeds per version', async () => {
        const db = await openStore();
        const WRITERS = 50;
        const winners = new Map<number, number>(); // stream position → writer
        let conflicts = 0;
        await Promise.all(
          range(1, WRITERS).map(async (writer) => {
            for (;;) {
              const version = await db.streamVersion('counter-1');
              try {
                const result = await db.appendStream('counter-1', { type: 'Incremented', data: { writer } }, { expect: version });
                expect(result.streamPosition).toBe(version + 1);
                expect(winners.has(result.streamPosition)).toBe(false);
                winners.set(result.streamPosition, writer);
                return;
              } catch (error) {
                expect(error).toMatchObject({ code: 'FACT_CONCURRENCY', details: { stream: 'counter-1', expected: version } });
                expect((error as FactError).details.actual).toBeGreaterThan(version);
                conflicts++;
              }
            }
          }),
        );
        expect(conflicts).toBeGreaterThan(0);
        expect([...winners.keys()].sort((a, b) => a - b)).toEqual(range(1, WRITERS));
        expect(await db.streamVersion('counter-1')).toBe(WRITERS);
        const events = await db.read({ stream: 'counter-1' }).toArray();
        expect(events.map((event) => event.streamPosition)).toEqual(range(1, WRITERS));
        expect(positionsOf(events)).toEqual(range(1, WRITERS));
        expect(events.map((event) => (event.data as { writer: number }).writer)).toEqual(range(1, WRITERS).map((position) => winners.get(position)));
      });

      it('concurrent appends across streams get unique, gapless positions', async () => {
        const db = await openStore();
        const calls = range(0, 89).map((i) => {
          const events = range(0, i % 3).map((j) => ({ type: 'Item', data: { i, j } }));
          return i % 10 === 9 ? db.append(events) : db.appendStream(`cart-${i % 6}`, events);
        });
        const results = await Promise.all(calls);
        const spans = results.map((result, i) => ({ i, first: result.position - result.count + 1, last: result.position })).sort((a, b) => a.first - b.first);
        let next = 1;
        for (const span of spans) {
          expect(span.first).toBe(next);
          next = span.last + 1;
        }
        const total = next - 1;
        expect(total).toBe(results.reduce((sum, result) => sum + result.count, 0));
        expect(await db.head()).toBe(total);
        const events = await db.read().toArray();
        expect(positionsOf(events)).toEqual(range(1, total));
        for (const span of spans) {
          for (let position = span.first; position <= span.last; position++) {
            expect(events[position - 1]!.data).toEqual({ i: span.i, j: position - span.first });
          }
        }
        for (let cart = 0; cart < 6; cart++) {
          const streamEvents = await db.read({ stream: `cart-${cart}` }).toArray();
          expect(streamEvents.map((event) => event.streamPosition)).toEqual(range(1, streamEvents.length));
          const positions = positionsOf(streamEvents);
          expect(positions).toEqual([...positions].sort((a, b) => a - b));
          expect(await db.streamVersion(`cart-${cart}`)).toBe(streamEvents.length);
          for (const event of streamEvents) expect((event.data as { i: number }).i % 6).toBe(cart);
        }
      });

      it('an append that resolved is immediately visible in read, head and streamVersion', async () => {
        const db = await openStore();
        await Promise.all(
          range(0, 29).map(async (i) => {
            const stream = `visible-${i % 3}`;
            const result = await db.appendStream(stream, { type: 'Seen', data: { i }, tags: [`i:${i}`] });
            expect(await db.head()).toBeGreaterThanOrEqual(result.position);
            expect(await db.streamVersion(stream)).toBeGreaterThanOrEqual(result.streamPosition);
            const [event] = await db.read('all', { from: result.position, limit: 1 }).toArray();
            expect(event).toMatchObject({ position: result.position, data: { i }, stream, streamPosition: result.streamPosition });
            const [byStream] = await db.read({ stream }, { from: result.streamPosition, limit: 1 }).toArray();
            expect(byStream?.position).toBe(result.position);
            expect(positionsOf(await db.read({ tag: `i:${i}` }).toArray())).toEqual([result.position]);
          }),
        );
      });
    });

    // ------------------------------------------------------------------ reads

    describe('reads', () => {
      it('reads every source forward in order', async () => {
        const db = await openStore();
        await seedCourses(db);
        expect(positionsOf(await db.read().toArray())).toEqual(range(1, 8));
        expect(positionsOf(await db.read('all').toArray())).toEqual(range(1, 8));
        const c1 = await db.read({ stream: 'course-c1' }).toArray();
        expect(c1.map((event) => [event.position, event.streamPosition, event.type])).toEqual([
          [1, 1, 'CourseDefined'],
          [5, 2, 'CourseCapacityChanged'],
          [8, 3, 'CourseArchived'],
        ]);
        expect(positionsOf(await db.read({ type: 'CourseDefined' }).toArray())).toEqual([1, 4]);
        expect(positionsOf(await db.read({ type: 'StudentSubscribed' }).toArray())).toEqual([3, 7]);
        expect(positionsOf(await db.read({ tag: 'course:c1' }).toArray())).toEqual([1, 3, 5, 8]);
        expect(positionsOf(await db.read({ tag: 'student:s2' }).toArray())).toEqual([6, 7]);
        expect(positionsOf(await db.read({ category: 'course' }).toArray())).toEqual([1, 4, 5, 8]);
        expect(positionsOf(await db.read({ category: 'student' }).toArray())).toEqual([2, 6]);
        // Events read through an index are complete.
        const [defined] = await db.read({ type: 'CourseDefined' }).toArray();
        expect(defined).toEqual((await db.read('all', { limit: 1 }).toArray())[0]);
        for (const source of [{ stream: 'course-c9' }, { type: 'Nope' }, { tag: 'nope' }, { category: 'nope' }]) {
          expect(await db.read(source).toArray()).toEqual([]);
        }
      });

      it('from is inclusive: a stream position for a stream, a store position otherwise', async () => {
        const db = await openStore();
        await seedCourses(db);
        expect(positionsOf(await db.read('all', { from: 6 }).toArray())).toEqual([6, 7, 8]);
        expect(positionsOf(await db.read('all', { from: 0 }).toArray())).toEqual(range(1, 8));
        expect(positionsOf(await db.read('all', { from: 9 }).toArray())).toEqual([]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { from: 2 }).toArray())).toEqual([5, 8]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { from: 3 }).toArray())).toEqual([8]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { from: 4 }).toArray())).toEqual([]);
        expect(positionsOf(await db.read({ tag: 'course:c1' }, { from: 3 }).toArray())).toEqual([3, 5, 8]);
        expect(positionsOf(await db.read({ tag: 'course:c1' }, { from: 4 }).toArray())).toEqual([5, 8]);
        expect(positionsOf(await db.read({ type: 'CourseDefined' }, { from: 2 }).toArray())).toEqual([4]);
        expect(positionsOf(await db.read({ category: 'course' }, { from: 5 }).toArray())).toEqual([5, 8]);
      });

      it('reads backward (from the end by default) and honours limit', async () => {
        const db = await openStore();
        await seedCourses(db);
        expect(positionsOf(await db.read('all', { direction: 'backward' }).toArray())).toEqual(range(8, 1));
        expect(positionsOf(await db.read('all', { direction: 'backward', from: 3 }).toArray())).toEqual([3, 2, 1]);
        expect(positionsOf(await db.read('all', { direction: 'backward', from: 100 }).toArray())).toEqual(range(8, 1));
        expect(positionsOf(await db.read('all', { direction: 'backward', from: 0 }).toArray())).toEqual([]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { direction: 'backward' }).toArray())).toEqual([8, 5, 1]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { direction: 'backward', from: 2 }).toArray())).toEqual([5, 1]);
        expect(positionsOf(await db.read({ tag: 'course:c1' }, { direction: 'backward', from: 4 }).toArray())).toEqual([3, 1]);
        expect(positionsOf(await db.read({ type: 'StudentRegistered' }, { direction: 'backward' }).toArray())).toEqual([6, 2]);
        expect(positionsOf(await db.read({ category: 'course' }, { direction: 'backward', from: 7 }).toArray())).toEqual([5, 4, 1]);
        expect(positionsOf(await db.read('all', { direction: 'forward', limit: 3 }).toArray())).toEqual([1, 2, 3]);
        expect(positionsOf(await db.read('all', { direction: 'backward', limit: 2 }).toArray())).toEqual([8, 7]);
        expect(positionsOf(await db.read('all', { from: 4, limit: 2 }).toArray())).toEqual([4, 5]);
        expect(positionsOf(await db.read({ tag: 'course:c1' }, { from: 2, limit: 2 }).toArray())).toEqual([3, 5]);
        expect(positionsOf(await db.read({ stream: 'course-c1' }, { direction: 'backward', limit: 1 }).toArray())).toEqual([8]);
        expect(await db.read('all', { limit: 0 }).toArray()).toEqual([]);
        expect(await db.read({ tag: 'course:c1' }, { limit: 0 }).toArray()).toEqual([]);
      });

      it('a read is an async iterable that can be iterated once; toArray collects it', async () => {
        const db = await openStore();
        await seedCourses(db);
        const reader = db.read({ tag: 'course:c1' });
        const seen: number[] = [];
        for await (const event of reader) seen.push(event.position);
        expect(seen).toEqual([1, 3, 5, 8]);
        expect(() => reader[Symbol.asyncIterator]()).toThrow(/only once/);
        expect(positionsOf(await db.read({ tag: 'course:c1' }).toArray())).toEqual(seen);
        // Reads are lazy: a read started before an append and iterated after it sees the append.
        const lazy = db.read('all', { from: 9 });
        await db.append({ type: 'Late' });
        expect(positionsOf(await lazy.toArray())).toEqual([9]);
      });

      it('head(), streamVersion(), streams() and streams({ category })', async () => {
        const db = await openStore();
        expect(await db.head()).toBe(0);
        expect(await db.streamVersion('course-c1')).toBe(0);
        expect(await db.streams().toArray()).toEqual([]);
        expect(await db.read().toArray()).toEqual([]);
        expect(await db.read('all', { direction: 'backward' }).toArray()).toEqual([]);
        await seedCourses(db);
        await db.appendStream('course', { type: 'NoDash' });
        await db.appendStream('course-c1-x', { type: 'TwoDashes' });
        expect(await db.head()).toBe(10);
        expect(await db.streamVersion('course-c1')).toBe(3);
        expect(await db.streamVersion('course-c2')).toBe(1);
        expect(await db.streamVersion('course-c3')).toBe(0);
        expect(await db.streams().toArray()).toEqual(['course', 'course-c1', 'course-c1-x', 'course-c2', 'student-s1', 'student-s2']);
        expect(await db.streams({ category: 'course' }).toArray()).toEqual(['course', 'course-c1', 'course-c1-x', 'course-c2']);
        expect(await db.streams({ category: 'student' }).toArray()).toEqual(['student-s1', 'student-s2']);
        expect(await db.streams({ category: 'course-c1' }).toArray()).toEqual([]);
        expect(await db.streams({ category: 'nope' }).toArray()).toEqual([]);
        const iterated: string[] = [];
        for await (const stream of db.streams({ category: 'student' })) iterated.push(stream);
        expect(iterated).toEqual(['student-s1', 'student-s2']);
        expect(positionsOf(await db.read({ category: 'course' }).toArray())).toEqual([1, 4, 5, 8, 9, 10]);
      });

      it('reads across chunk boundaries, from inside a chunk, in both directions', async () => {
        const path = dbPath();
        let db = await openStore(path);
        const events = (kind: string) => range(1, 300).map((n) => ({ type: kind, data: { n }, tags: n % 100 === 0 ? ['hundred'] : [] }));
        expect(await db.append(events('Flat'))).toEqual({ position: 300, count: 300 });
        expect(await db.appendStream('chunky-1', events('Streamed'))).toEqual({ position: 600, streamPosition: 300, count: 300 });
        await db.close();
        expect(await withLevel(path, ledgerChunkStarts)).toEqual([1, 257, 301, 557]);
        db = await openStore(path);
        expect(positionsOf(await db.read().toArray())).toEqual(range(1, 600));
        expect(positionsOf(await db.read('all', { direction: 'backward' }).toArray())).toEqual(range(600, 1));
        expect(positionsOf(await db.read('all', { from: 250, limit: 10 }).toArray())).toEqual(range(250, 259));
        expect(positionsOf(await db.read('all', { from: 260, limit: 10, direction: 'backward' }).toArray())).toEqual(range(260, 251));
        expect(positionsOf(await db.read('all', { from: 257, limit: 3, direction: 'backward' }).toArray())).toEqual([257, 256, 255]);
        expect(positionsOf(await db.read('all', { from: 256, limit: 2 }).toArray())).toEqual([256, 257]);
        expect(positionsOf(await db.read('all', { from: 299, limit: 4 }).toArray())).toEqual([299, 300, 301, 302]);
        expect(positionsOf(await db.read('all', { from: 302, limit: 4, direction: 'backward' }).toArray())).toEqual([302, 301, 300, 299]);
        expect(positionsOf(await db.read('all', { from: 1, direction: 'backward' }).toArray())).toEqual([1]);
        expect(positionsOf(await db.read('all', { from: 600 }).toArray())).toEqual([600]);
        expect(positionsOf(await db.read('all', { from: 590, direction: 'backward', limit: 40 }).toArray())).toEqual(range(590, 551));
        const streamSlice = await db.read({ stream: 'chunky-1' }, { from: 250, limit: 10 }).toArray();
        expect(streamSlice.map((event) => [event.streamPosition, event.position])).toEqual(range(250, 259).map((n) => [n, n + 300]));
        const streamBack = await db.read({ stream: 'chunky-1' }, { from: 258, limit: 4, direction: 'backward' }).toArray();
        expect(streamBack.map((event) => event.streamPosition)).toEqual([258, 257, 256, 255]);
        expect(streamBack.map((event) => (event.data as { n: number }).n)).toEqual([258, 257, 256, 255]);
        expect(positionsOf(await db.read({ tag: 'hundred' }).toArray())).toEqual([100, 200, 300, 400, 500, 600]);
        expect(positionsOf(await db.read({ tag: 'hundred' }, { from: 250, direction: 'backward' }).toArray())).toEqual([200, 100]);
        expect((await db.read({ type: 'Streamed' }, { from: 556, limit: 2 }).toArray()).map((event) => event.streamPosition)).toEqual([256, 257]);
      });

      it('type, category, tag and stream reads from every kind of position, both directions, equal a filtered read of the ledger', async () => {
        const path = dbPath();
        let db = await openStore(path);
        // Chunks of one to 300 events (a 300-event append is split), types interleaved within a
        // chunk, two streams of one category, and plain appends in between.
        const kinds = ['A', 'B', 'C'];
        const batch = (size: number, seed: number) => range(1, size).map((n) => ({ type: kinds[(n * seed) % 3]!, data: { k: n % 4 }, tags: n % 5 === 0 ? ['five'] : [] }));
        for (const [index, size] of [1, 3, 300, 2, 40, 1, 257, 7].entries()) {
          if (index % 3 === 2) await db.append(batch(size, index + 1));
          else await db.appendStream(`cat-${index % 2}`, batch(size, index + 2));
        }
        await db.close();
        db = await openStore(path); // everything read from LevelDB
        const all = await db.read().toArray();
        const head = all.length;
        const sources = [
          { source: { type: 'A' }, matches: (event: RecordedEvent) => event.type === 'A' },
          { source: { type: 'C' }, matches: (event: RecordedEvent) => event.type === 'C' },
          { source: { category: 'cat' }, matches: (event: RecordedEvent) => event.stream !== undefined },
          { source: { tag: 'five' }, matches: (event: RecordedEvent) => event.tags.includes('five') },
        ] as const;
        const froms = [0, 1, 2, 4, 5, 6, 100, 255, 256, 257, 258, 300, 303, 304, 305, 306, 345, 346, 347, 500, 560, 603, 604, 605, head, head + 300];
        for (const { source, matches } of sources) {
          for (const from of froms) {
            for (const limit of [undefined, 1, 3]) {
              const forward = all.filter((event) => matches(event) && event.position >= from).map((event) => event.position);
              const backward = all.filter((event) => matches(event) && event.position <= from).map((event) => event.position).reverse();
              const cut = (positions: number[]) => (limit === undefined ? positions : positions.slice(0, limit));
              const where = `${JSON.stringify(source)} from ${from} limit ${limit}`;
              expect(positionsOf(await db.read(source, { from, limit }).toArray()), where).toEqual(cut(forward));
              expect(positionsOf(await db.read(source, { from, limit, direction: 'backward' }).toArray()), where).toEqual(cut(backward));
            }
          }
        }
        for (const stream of ['cat-0', 'cat-1']) {
          const events = all.filter((event) => event.stream === stream);
          for (const from of [0, 1, 2, 3, 4, 5, 256, 257, 258, 300, 301, 302, 303, 304, events.length, events.length + 1]) {
            const forward = events.filter((event) => event.streamPosition! >= from).map((event) => event.position);
            const backward = events.filter((event) => event.streamPosition! <= from).map((event) => event.position).reverse();
            expect(positionsOf(await db.read({ stream }, { from }).toArray()), `${stream} from ${from}`).toEqual(forward);
            expect(positionsOf(await db.read({ stream }, { from, direction: 'backward' }).toArray()), `${stream} from ${from} backward`).toEqual(backward);
            expect(positionsOf(await db.read({ stream }, { from, direction: 'backward', limit: 2 }).toArray())).toEqual(backward.slice(0, 2));
          }
        }
        // A query intersecting types with a data field seeks its type cursors into postings, both ways.
        for (const from of froms) {
          const matches = (event: RecordedEvent) => event.type !== 'A' && (event.data as { k: number }).k === 1;
          const query = Query.items({ types: ['B', 'C'], data: { k: 1 } });
          const expected = all.filter(matches).map((event) => event.position);
          expect(positionsOf(await db.read({ query }, { from }).toArray())).toEqual(expected.filter((position) => position >= from));
          expect(positionsOf(await db.read({ query }, { from, direction: 'backward' }).toArray())).toEqual(expected.filter((position) => position <= from).reverse());
        }
      });

      it('iterating a large read streams every event in order', async () => {
        const db = await openStore();
        await seedBig(db);
        expect(await db.head()).toBe(BIG_EVENTS);
        let expected = 1;
        for await (const event of db.read()) {
          expect(event.position).toBe(expected);
          expect((event.data as { i: number }).i).toBe(expected - 1);
          expected++;
        }
        expect(expected).toBe(BIG_EVENTS + 1);
        expected = BIG_EVENTS;
        for await (const event of db.read('all', { direction: 'backward' })) expect(event.position).toBe(expected--);
        expect(expected).toBe(0);
        expected = 1;
        for await (const event of db.read({ stream: 'big-1' })) {
          expect([event.streamPosition, event.position]).toEqual([expected, expected]);
          expected++;
        }
        expect(expected).toBe(BIG_EVENTS + 1);
        const mod3 = await db.read({ tag: 'mod:3' }).toArray();
        expect(positionsOf(mod3)).toEqual(range(0, BIG_EVENTS / 10 - 1).map((k) => k * 10 + 4));
        expect(await db.read({ type: 'Odd' }).toArray()).toHaveLength(BIG_EVENTS / 2);
        const backwardCategory = positionsOf(await db.read({ category: 'big' }, { direction: 'backward' }).toArray());
        expect(backwardCategory).toEqual(range(BIG_EVENTS, 1));
        expect(positionsOf(await db.read('all', { from: 2500, limit: 600 }).toArray())).toEqual(range(2500, 3099));
        expect(positionsOf(await db.read({ stream: 'big-1' }, { from: 4000, direction: 'backward', limit: 300 }).toArray())).toEqual(range(4000, 3701));
      });

      it('an AbortSignal aborts a read', async () => {
        const db = await openStore();
        await db.appendStream('s-1', range(1, 40).map((n) => ({ type: 'T', data: { n }, tags: ['all'] })));
        const sources = ['all', { stream: 's-1' }, { tag: 'all' }, { type: 'T' }, { category: 's' }] as const;
        for (const source of sources) {
          // Already aborted: the first step rejects with the reason.
          const reason = new Error('stop before');
          await expect(db.read(source, { signal: AbortSignal.abort(reason) }).toArray()).rejects.toBe(reason);
          // Aborted during the iteration: the next step rejects.
          const controller = new AbortController();
          const during = new Error('stop during');
          const seen: number[] = [];
          await expect(
            (async () => {
              for await (const event of db.read(source, { signal: controller.signal })) {
                seen.push(event.position);
                if (seen.length === 3) controller.abort(during);
              }
            })(),
          ).rejects.toBe(during);
          expect(seen).toEqual([1, 2, 3]);
          // An unaborted signal changes nothing.
          expect(await db.read(source, { signal: new AbortController().signal }).toArray()).toHaveLength(40);
        }
      });
    });

    // ------------------------------------------------------------------ restart

    describe('restart', () => {
      it('stream versions, positions and ids continue after close and reopen', async () => {
        const path = dbPath();
        let db = await openStore(path);
        const placed = await db.appendStream('order-1', [{ type: 'Placed', id: 'o1-placed' }, { type: 'Paid', id: 'o1-paid' }], { expect: 'none' });
        const note = await db.append({ type: 'Note', id: 'note-1', tags: ['notes'], data: { text: 'hi' } });
        const before = await db.read().toArray();
        await db.close();

        for (let cycle = 1; cycle <= 3; cycle++) {
          db = await openStore(path);
          expect(await db.head()).toBe(2 + cycle);
          expect(await db.streamVersion('order-1')).toBe(1 + cycle);
          expect((await db.read().toArray()).slice(0, 3)).toEqual(before);
          // Idempotent retries still return the original results.
          expect(await db.appendStream('order-1', [{ type: 'Placed', id: 'o1-placed' }, { type: 'Paid', id: 'o1-paid' }], { expect: 'none' })).toEqual(placed);
          expect(await db.append({ type: 'Note', id: 'note-1', tags: ['notes'], data: { text: 'hi' } })).toEqual(note);
          await expectFactError(() => db.append({ type: 'Note', id: 'note-1' }), 'FACT_DUPLICATE_EVENT_ID');
          await expectFactError(() => db.appendStream('order-1', { type: 'Stale' }, { expect: cycle }), 'FACT_CONCURRENCY');
          const next = await db.appendStream('order-1', { type: 'Updated', id: `update-${cycle}` }, { expect: 1 + cycle });
          expect(next).toEqual({ position: 3 + cycle, streamPosition: 2 + cycle, count: 1 });
          expect(await db.streams().toArray()).toEqual(['order-1']);
          await db.close();
        }
        db = await openStore(path);
        const events = await db.read().toArray();
        expect(events.map((event) => event.id)).toEqual(['o1-placed', 'o1-paid', 'note-1', 'update-1', 'update-2', 'update-3']);
        expect(positionsOf(events)).toEqual(range(1, 6));
        expect(positionsOf(await db.read({ stream: 'order-1' }).toArray())).toEqual([1, 2, 4, 5, 6]);
        expect(positionsOf(await db.read({ tag: 'notes' }).toArray())).toEqual([3]);
        expect((await db.verify()).ok).toBe(true);
      });
    });

    // ------------------------------------------------------------------ verify and rebuild

    describe('verify and rebuildIndexes', () => {
      it('verify() reports a healthy store as ok', async () => {
        const db = await openStore();
        expect(await db.verify()).toMatchObject({ ok: true, problems: [], events: 0, indexEntries: 0 });
        await seedCourses(db);
        await db.append(range(1, 300).map((n) => ({ type: 'Bulk', data: { n } })));
        const report = await db.verify();
        expect(report).toMatchObject({ ok: true, problems: [], events: 308 });
        // Type postings, tags, streams; generated ids need no entries.
        expect(report.indexEntries).toBeGreaterThan(8);
        expect(report.walRecordsChecked).toBeGreaterThanOrEqual(1);
      });

      it('verify() detects a deleted index entry, an extra index entry and a wrong value; rebuildIndexes() repairs them', async () => {
        let db = await openStore();
        await seedCourses(db);
        await db.close();
        const healthy = await withLevel(db.path, dumpIndexes);
        db = await tamper(db, async (level) => {
          await level.del<Uint8Array>(indexKey(KeySpace.type, utf8('CourseDefined'), 4), { keyEncoding: 'view' });
          await level.del<Uint8Array>(indexKey(KeySpace.streamPositions, utf8('course-c1'), 2), { keyEncoding: 'view' });
          await level.put<Uint8Array, Uint8Array>(indexKey(KeySpace.tag, utf8('ghost'), 3), u64(3), VIEW);
          await level.put<Uint8Array, Uint8Array>(nameKey(KeySpace.id, utf8('no-such-event')), u64(1), VIEW);
          await level.put<Uint8Array, Uint8Array>(nameKey(KeySpace.streamVersions, utf8('course-c2')), u64(7), VIEW);
        });
        const report = await db.verify();
        expect(report.ok).toBe(false);
        const problems = report.problems.join('\n');
        expect(problems).toContain(`index entry ${hex(indexKey(KeySpace.type, utf8('CourseDefined'), 4))} is missing`);
        expect(problems).toContain(`index entry ${hex(indexKey(KeySpace.streamPositions, utf8('course-c1'), 2))} is missing`);
        expect(problems).toMatch(/index space 'T' has 7 entries, the ledger implies 8/);
        expect(problems).toMatch(/index space 'G' has \d+ entries, the ledger implies \d+/);
        expect(problems).toMatch(/index space 'I' has 1 entries, the ledger implies 0/);
        expect(problems).toContain(`index entry ${hex(nameKey(KeySpace.streamVersions, utf8('course-c2')))} has value ${hex(u64(7))}, expected ${hex(u64(1))}`);
        expect(await db.rebuildIndexes()).toEqual({ events: 8 });
        expect((await db.verify()).ok).toBe(true);
        expect(positionsOf(await db.read({ type: 'CourseDefined' }).toArray())).toEqual([1, 4]);
        expect(await db.streamVersion('course-c2')).toBe(1);
        await db.close();
        expect(await withLevel(db.path, dumpIndexes)).toEqual(healthy);
      });

      it("verify() reports an id seed in LevelDB that differs from the WAL's (every generated id would have changed)", async () => {
        let db = await openStore();
        await seedCourses(db);
        const ids = (await db.read().toArray()).map((event) => event.id);
        db = await tamper(db, (level) => level.put<Uint8Array, Uint8Array>(metaKey('idSeed'), new Uint8Array(16).fill(7), VIEW));
        expect((await db.read().toArray()).map((event) => event.id)).not.toEqual(ids);
        const report = await db.verify();
        expect(report.ok).toBe(false);
        expect(report.problems.join('\n')).toMatch(/WAL record 1 logs the id seed [0-9a-f]{32}, but the store derives ids from 07070707/);
      });

      it('verify() detects a missing ledger chunk', async () => {
        let db = await openStore();
        await seedCourses(db);
        db = await tamper(db, (level) => level.del<Uint8Array>(ledgerKey(5), { keyEncoding: 'view' }));
        const report = await db.verify();
        expect(report.ok).toBe(false);
        const problems = report.problems.join('\n');
        expect(problems).toMatch(/ledger gap or overlap: chunk at position 6, expected 5/);
        expect(problems).toMatch(/ledger chunk at position 5 is missing/);
        // Reads through an index that names the lost chunk fail loudly.
        await expectFactError(() => db.read({ stream: 'course-c1' }).toArray(), 'FACT_CORRUPTION', /chunk 5/);
      });

      it('rebuildIndexes() output is byte-identical to the incremental indexes and reports progress', async () => {
        let db = await openStore();
        await seedCourses(db);
        await seedBig(db);
        await db.appendStream('course-c2', range(1, 300).map((n) => ({ type: 'Seat', tags: [`seat:${n % 7}`, 'seat'] })));
        const head = await db.head();
        expect(head).toBe(8 + BIG_EVENTS + 300);
        await db.close();
        const incremental = await withLevel(db.path, dumpIndexes);
        // Tag entries (most events have one or two), and type, category and stream postings.
        expect(incremental.length).toBeGreaterThan(head);
        db = await openStore(db.path);
        const progress: { events: number; total: number }[] = [];
        expect(await db.rebuildIndexes({ onProgress: (step) => progress.push(step) })).toEqual({ events: head });
        expect(progress.length).toBeGreaterThanOrEqual(2);
        for (const [index, step] of progress.entries()) {
          expect(step.total).toBe(head);
          if (index > 0) expect(step.events).toBeGreaterThanOrEqual(progress[index - 1]!.events);
        }
        expect(progress.at(-1)).toEqual({ events: head, total: head });
        expect((await db.verify()).ok).toBe(true);
        await db.close();
        expect(await withLevel(db.path, dumpIndexes)).toEqual(incremental);
      });

      it('after deleting all index data, rebuildIndexes() restores reads, versions and idempotency', async () => {
        let db = await openStore();
        await seedCourses(db);
        const retried = await db.append({ type: 'Keyed', id: 'k-1', tags: ['keyed'] });
        const before = {
          all: await db.read().toArray(),
          stream: await db.read({ stream: 'course-c1' }).toArray(),
          tag: await db.read({ tag: 'course:c1' }).toArray(),
          streams: await db.streams().toArray(),
        };
        db = await tamper(db, async (level) => {
          for (const space of INDEX_KEY_SPACES) await level.clear({ keyEncoding: 'view', ...spaceRange(space) });
        });
        expect(await db.read({ stream: 'course-c1' }).toArray()).toEqual([]);
        expect(await db.read({ tag: 'course:c1' }).toArray()).toEqual([]);
        expect(await db.streams().toArray()).toEqual([]);
        expect(await db.streamVersion('course-c1')).toBe(0);
        expect((await db.verify()).ok).toBe(false);
        let last: { events: number; total: number } | undefined;
        expect(await db.rebuildIndexes({ onProgress: (step) => (last = step) })).toEqual({ events: 9 });
        expect(last).toEqual({ events: 9, total: 9 });
        expect(await db.read().toArray()).toEqual(before.all);
        expect(await db.read({ stream: 'course-c1' }).toArray()).toEqual(before.stream);
        expect(await db.read({ tag: 'course:c1' }).toArray()).toEqual(before.tag);
        expect(await db.streams().toArray()).toEqual(before.streams);
        expect(await db.streamVersion('course-c1')).toBe(3);
        expect(await db.append({ type: 'Keyed', id: 'k-1', tags: ['keyed'] })).toEqual(retried);
        expect(await db.appendStream('course-c1', { type: 'Reopened' }, { expect: 3 })).toEqual({ position: 10, streamPosition: 4, count: 1 });
        expect((await db.verify()).ok).toBe(true);
      });

      it('appends made while rebuildIndexes() runs wait for it and are indexed', async () => {
        const db = await openStore();
        await seedCourses(db);
        const rebuilding = db.rebuildIndexes();
        const appended = db.appendStream('course-c1', { type: 'During', tags: ['course:c1'] }, { expect: 3 });
        expect(await rebuilding).toEqual({ events: 8 });
        expect(await appended).toEqual({ position: 9, streamPosition: 4, count: 1 });
        expect(positionsOf(await db.read({ tag: 'course:c1' }).toArray())).toEqual([1, 3, 5, 8, 9]);
        expect((await db.verify()).ok).toBe(true);
      });
    });
  });
}

describeStoreSuite('FactStore on memory-level (WAL on SimFileSystem)', memoryBackend);
describeStoreSuite('FactStore on classic-level (default)', classicBackend);

// ------------------------------------------------------------------ recovery

describe('FactStore recovery (memory-level + SimFileSystem)', () => {
  const DB = '/data/db';
  /** No background checkpoint: LevelDB is checkpointed only at open and close. */
  const NO_CHECKPOINTS = 1 << 30;
  const open = (fs: SimFileSystem, level: LevelDatabase, extra: FactStoreOptions = {}) =>
    FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS, ...extra });

  /** A copy of a LevelDB: what survives when LevelDB loses everything written after this moment. */
  async function copyLevel(source: LevelDatabase): Promise<MemoryLevel<Uint8Array, Uint8Array>> {
    const copy = newMemoryLevel();
    await copy.open();
    const batch = copy.batch();
    for await (const [key, value] of source.iterator<Uint8Array, Uint8Array>(VIEW)) batch.put(key, value, VIEW);
    await batch.write();
    return copy;
  }

  /** LevelDB holds every resolved event once verify() has run: it waits for the background apply. */
  async function drained(db: FactStore): Promise<void> {
    expect((await db.verify()).ok).toBe(true);
  }

  const dumpAll = (level: LevelDatabase) => dumpSpaces(level, [KeySpace.meta, KeySpace.ledger, ...INDEX_KEY_SPACES]);

  async function appendMixed(db: FactStore, tag: string): Promise<StreamAppendResult[]> {
    return [
      await db.appendStream(`order-${tag}`, [{ type: 'Placed', id: `${tag}-placed`, data: { at: new Date(1) } }, { type: 'Paid' }]),
      await db.appendStream('order-shared', { type: 'Touched', tags: [tag] }),
      { ...(await db.append(range(1, 300).map((n) => ({ type: 'Bulk', data: { tag, n }, tags: [`bulk:${tag}`] })))), streamPosition: 0 },
      await db.appendStream(`order-${tag}`, { type: 'Shipped', id: `${tag}-shipped` }, { expect: 2 }),
    ];
  }

  it('after a process crash, versions, positions and ids continue and retries return the original result', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    const placed = await db.appendStream('order-1', [{ type: 'Placed', id: 'o1-placed' }], { expect: 'none' });
    const note = await db.append({ type: 'Note', id: 'note-1', tags: ['t'] });
    fs.crash({ mode: 'process' }); // no close: the lock dies with the process
    const reopened = await open(fs, level);
    try {
      expect(await reopened.head()).toBe(2);
      expect(await reopened.streamVersion('order-1')).toBe(1);
      expect(await reopened.appendStream('order-1', [{ type: 'Placed', id: 'o1-placed' }], { expect: 'none' })).toEqual(placed);
      expect(await reopened.append({ type: 'Note', id: 'note-1', tags: ['t'] })).toEqual(note);
      expect(await reopened.appendStream('order-1', { type: 'Paid' }, { expect: 1 })).toEqual({ position: 3, streamPosition: 2, count: 1 });
      expect((await reopened.verify()).ok).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it('replays the WAL into a LevelDB that lost everything written since the last checkpoint', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    let db = await open(fs, level);
    await appendMixed(db, 'a');
    await db.close(); // checkpoint
    const atCheckpoint = await copyLevel(level);
    db = await open(fs, level);
    const results = await appendMixed(db, 'b');
    const expected = await db.read().toArray();
    await drained(db);
    const expectedDump = await dumpAll(level);
    fs.crash(); // power loss; sync 'always' made every acknowledged append durable
    db = await open(fs, atCheckpoint);
    try {
      expect(await db.head()).toBe(expected.length);
      expect(await db.read().toArray()).toEqual(expected);
      expect(await db.streamVersion('order-b')).toBe(3);
      expect(await db.streamVersion('order-shared')).toBe(2);
      expect(await db.streams().toArray()).toEqual(['order-a', 'order-b', 'order-shared']);
      expect(positionsOf(await db.read({ tag: 'bulk:b' }).toArray())).toHaveLength(300);
      expect((await db.verify()).ok).toBe(true);
      expect(await dumpAll(atCheckpoint)).toEqual(expectedDump); // replay writes the same bytes
      expect(await db.appendStream('order-b', { type: 'Shipped', id: 'b-shipped' }, { expect: 2 })).toEqual(results[3]);
      expect(await db.append({ type: 'After' })).toEqual({ position: expected.length + 1, count: 1 });
    } finally {
      await db.close();
    }
  });

  it('replays the whole WAL into a fresh LevelDB when no checkpoint happened since creation', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    await seedBig(db);
    await db.appendStream('other-1', { type: 'Last', tags: ['last'] });
    await drained(db);
    const expectedDump = await dumpAll(level);
    fs.crash({ mode: 'process' });
    const fresh = newMemoryLevel();
    const reopened = await open(fs, fresh);
    try {
      expect(await reopened.head()).toBe(BIG_EVENTS + 1);
      expect(await dumpAll(fresh)).toEqual(expectedDump);
      expect(positionsOf(await reopened.read({ tag: 'last' }).toArray())).toEqual([BIG_EVENTS + 1]);
      expect(await reopened.streamVersion('big-1')).toBe(BIG_EVENTS);
      expect((await reopened.verify()).ok).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it('replay fills a hole: LevelDB lost one batch but kept a later one', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    await db.appendStream('order-1', { type: 'Placed', tags: ['order'] });
    await drained(db);
    const beforeLost = new Set(await dumpAll(level).then((rows) => rows.map((row) => row.split('=')[0]!)));
    await db.appendStream('order-1', [{ type: 'Paid', tags: ['order'] }, { type: 'Packed' }]);
    await drained(db);
    const lostKeys = (await dumpAll(level)).map((row) => row.split('=')[0]!).filter((key) => !beforeLost.has(key));
    await db.appendStream('order-1', { type: 'Shipped', tags: ['order'] });
    const expected = await db.read().toArray();
    await drained(db);
    const expectedDump = await dumpAll(level);
    fs.crash({ mode: 'process' });
    const holed = await copyLevel(level);
    for (const key of lostKeys) await holed.del(Buffer.from(key, 'hex'), { keyEncoding: 'view' });
    expect(lostKeys.length).toBeGreaterThan(3);
    const reopened = await open(fs, holed);
    try {
      expect(await reopened.read().toArray()).toEqual(expected);
      expect(positionsOf(await reopened.read({ tag: 'order' }).toArray())).toEqual([1, 2, 4]);
      expect(await dumpAll(holed)).toEqual(expectedDump);
      expect((await reopened.verify()).ok).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it("a LevelDB whose 'applied' LSN is beyond the end of the WAL fails with FACT_CORRUPTION", async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    await db.append([{ type: 'A' }, { type: 'B' }]);
    await db.append({ type: 'C' });
    await db.close();
    const applied = (await level.get<Uint8Array, Uint8Array>(metaKey('applied'), VIEW))!;
    // WAL record 1 is the database's id seed; the appends are records 2 and 3.
    expect([readU64BE(applied, 0), readU64BE(applied, 8)]).toEqual([3, 3]);
    await level.put<Uint8Array, Uint8Array>(metaKey('applied'), u64Pair(3, 9), VIEW);
    const error = await expectFactError(() => open(fs, level), 'FACT_CORRUPTION', /applied WAL record 9 but the WAL ends at 3/);
    expect(error.details).toEqual({ appliedLsn: 9, walLastLsn: 3 });
    // The failed open released the lock; with the value restored the database opens.
    await level.put<Uint8Array, Uint8Array>(metaKey('applied'), applied, VIEW);
    const reopened = await open(fs, level);
    expect(await reopened.head()).toBe(3);
    await reopened.close();
    // A lost WAL (a new, empty one) next to a LevelDB that has applied records.
    await expectFactError(() => open(new SimFileSystem(), level), 'FACT_CORRUPTION', /acknowledged WAL data was lost/);
  });

  it('a LevelDB that lost data a checkpoint covered fails with FACT_CORRUPTION instead of opening empty', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    await appendMixed(db, 'a');
    await db.close(); // checkpoint: the WAL no longer replays these records
    await expectFactError(() => open(fs, newMemoryLevel()), 'FACT_CORRUPTION');
    const reopened = await open(fs, level);
    expect(await reopened.head()).toBe(304);
    await reopened.close();
  });

  it('a format-1 database (a type, category and stream entry per event) gets its indexes rebuilt on open', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await open(fs, level);
    await appendMixed(db, 'a');
    await appendMixed(db, 'b');
    const before = {
      bulk: await db.read({ type: 'Bulk' }, { direction: 'backward', limit: 5 }).toArray(),
      orders: await db.read({ category: 'order' }).toArray(),
      stream: await db.read({ stream: 'order-b' }, { from: 2 }).toArray(),
    };
    await db.close();
    const expected = await dumpIndexes(level);
    // What a format-1 build left: no postings, one entry per event.
    for (const space of [KeySpace.type, KeySpace.category, KeySpace.streamPositions]) await level.clear({ keyEncoding: 'view', ...spaceRange(space) });
    for (const event of before.orders) {
      await level.put<Uint8Array, Uint8Array>(indexKey(KeySpace.type, utf8(event.type), event.position), u64(event.position), VIEW);
      await level.put<Uint8Array, Uint8Array>(indexKey(KeySpace.category, utf8('order'), event.position), u64(event.position), VIEW);
      await level.put<Uint8Array, Uint8Array>(indexKey(KeySpace.streamPositions, utf8(event.stream!), event.streamPosition!), u64Pair(event.position, event.position), VIEW);
    }
    await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(1), VIEW);

    const reopened = await open(fs, level);
    expect(await reopened.read({ type: 'Bulk' }, { direction: 'backward', limit: 5 }).toArray()).toEqual(before.bulk);
    expect(await reopened.read({ category: 'order' }).toArray()).toEqual(before.orders);
    expect(await reopened.read({ stream: 'order-b' }, { from: 2 }).toArray()).toEqual(before.stream);
    expect((await reopened.verify()).ok).toBe(true);
    await reopened.close();
    expect(await dumpIndexes(level)).toEqual(expected);
    expect(readU64BE((await level.get<Uint8Array, Uint8Array>(metaKey("format"), VIEW))!, 0)).toBe(5);
    expect(await level.get<Uint8Array, Uint8Array>(metaKey('rebuilding'), VIEW)).toBeUndefined();
  });

  it('an unsupported storage format fails with FACT_CORRUPTION', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    await (await open(fs, level)).close();
    await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(99), VIEW);
    await expectFactError(() => open(fs, level), 'FACT_CORRUPTION', /storage format 99/);
  });
});
