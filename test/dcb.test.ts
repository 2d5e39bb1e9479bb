/**
 * The DCB specification (dcb.events) as named tests: reads by query, conditional appends,
 * query validation and builders, and data-field queries. The suite is written once
 * (describeDcbSuite) and run against memory-level (WAL on SimFileSystem) and classic-level
 * (real files in a temporary directory).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { Encoder } from 'cbor-x';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactError, FactStore, Query } from '../src/index.js';
import type { AppendResult, DataIndexProgress, EventInput, FactStoreOptions, LevelDatabase } from '../src/index.js';
import { INDEX_KEY_SPACES, KeySpace, metaKey, spaceRange } from '../src/storage/keys.js';
import { VIEW } from '../src/storage/level.js';
import { queryMatches, type OracleQuery } from '../property-tests/oracle/dcb-oracle.js';
import { classicBackend, expectFactError, hex, memoryBackend, positionsOf, type OptionsFor } from './support/backends.js';

const metaDecoder = new Encoder({ useRecords: false });

async function dumpIndexes(level: LevelDatabase): Promise<string[]> {
  const rows: string[] = [];
  for (const space of INDEX_KEY_SPACES) {
    for await (const [key, value] of level.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(space) })) rows.push(`${hex(key)}=${hex(value)}`);
  }
  return rows;
}

async function recordedDataFields(level: LevelDatabase): Promise<string[] | undefined> {
  const value = await level.get<Uint8Array, Uint8Array>(metaKey('dataFields'), VIEW);
  return value === undefined ? undefined : (metaDecoder.decode(value) as string[]);
}

async function countDataEntries(level: LevelDatabase): Promise<number> {
  let count = 0;
  for await (const key of level.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(KeySpace.data) })) {
    void key;
    count++;
  }
  return count;
}

/**
 * The read fixture (positions 1–8):
 *   1 A [x]   2 B [x y]   3 C [y]   4 A [x y]   5 B []   6 A [z]   7 C [x y z]   8 B [x]
 */
const FIXTURE: EventInput[] = [
  { type: 'A', tags: ['x'] },
  { type: 'B', tags: ['x', 'y'] },
  { type: 'C', tags: ['y'] },
  { type: 'A', tags: ['x', 'y'] },
  { type: 'B' },
  { type: 'A', tags: ['z'] },
  { type: 'C', tags: ['x', 'y', 'z'] },
  { type: 'B', tags: ['x'] },
];

/** Both the positions the store returns and the brute-force filter of read('all'). */
async function queryPositions(db: FactStore, query: Query, options: Parameters<FactStore['read']>[1] = {}): Promise<number[]> {
  return positionsOf(await db.read({ query }, options).toArray());
}

export function describeDcbSuite(name: string, makeOptions: () => OptionsFor): void {
  describe(name, () => {
    let optionsFor: OptionsFor;
    let root: string;
    const opened: FactStore[] = [];

    beforeEach(() => {
      optionsFor = makeOptions();
      root = mkdtempSync(join(tmpdir(), 'factstore-dcb-'));
    });

    afterEach(async () => {
      for (const db of opened.splice(0)) await db.close();
      rmSync(root, { recursive: true, force: true });
    });

    const dbPath = (name = 'db') => join(root, name);

    async function openStore(extra: FactStoreOptions = {}, path = dbPath()): Promise<FactStore> {
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

    async function fixtureStore(): Promise<FactStore> {
      const db = await openStore();
      await db.append(FIXTURE);
      return db;
    }

    async function expectVerified(db: FactStore): Promise<void> {
      const report = await db.verify();
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
    }

    // ------------------------------------------------------------------ read

    describe('read({ query })', () => {
      it('by type: events of any of the types (OR)', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.types('A'))).toEqual([1, 4, 6]);
        expect(await queryPositions(db, Query.types('A', 'C'))).toEqual([1, 3, 4, 6, 7]);
        expect(await queryPositions(db, Query.types('Unknown'))).toEqual([]);
      });

      it('by tags: events carrying every tag (AND)', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.tags('x'))).toEqual([1, 2, 4, 7, 8]);
        expect(await queryPositions(db, Query.tags('x', 'y'))).toEqual([2, 4, 7]);
        expect(await queryPositions(db, Query.tags('x', 'y', 'z'))).toEqual([7]);
        expect(await queryPositions(db, Query.tags('x', 'unknown'))).toEqual([]);
      });

      it('by type and tags: both must hold', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.items({ types: ['B'], tags: ['x'] }))).toEqual([2, 8]);
        expect(await queryPositions(db, Query.items({ types: ['A', 'C'], tags: ['x', 'y'] }))).toEqual([4, 7]);
        expect(await queryPositions(db, Query.items({ types: ['B'], tags: ['z'] }))).toEqual([]);
      });

      it('several items: the union, in position order, each event once', async () => {
        const db = await fixtureStore();
        // A∧x = 1, 4; y = 2, 3, 4, 7: event 4 matches both items and comes once.
        const query = Query.items({ types: ['A'], tags: ['x'] }, { tags: ['y'] });
        expect(await queryPositions(db, query)).toEqual([1, 2, 3, 4, 7]);
        expect(await queryPositions(db, query, { direction: 'backward' })).toEqual([7, 4, 3, 2, 1]);
        // Identical items do not duplicate events either.
        expect(await queryPositions(db, Query.items({ tags: ['x'] }, { tags: ['x'] }, { types: ['B'] }))).toEqual([1, 2, 4, 5, 7, 8]);
      });

      it('Query.all() reads every event', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.all())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await queryPositions(db, Query.all(), { from: 3, direction: 'backward', limit: 2 })).toEqual([3, 2]);
      });

      it('from a position (inclusive)', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.types('A'), { from: 4 })).toEqual([4, 6]);
        expect(await queryPositions(db, Query.types('A'), { from: 5 })).toEqual([6]);
        expect(await queryPositions(db, Query.tags('x'), { from: 3 })).toEqual([4, 7, 8]);
        expect(await queryPositions(db, Query.items({ types: ['A'], tags: ['x'] }, { tags: ['y'] }), { from: 4 })).toEqual([4, 7]);
        expect(await queryPositions(db, Query.tags('x'), { from: 0 })).toEqual([1, 2, 4, 7, 8]);
      });

      it('from beyond the head: empty', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.types('A'), { from: 9 })).toEqual([]);
        expect(await queryPositions(db, Query.tags('x', 'y'), { from: 1_000_000 })).toEqual([]);
        expect(await queryPositions(db, Query.all(), { from: 9 })).toEqual([]);
      });

      it('backward, with from and limit', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.tags('x'), { direction: 'backward' })).toEqual([8, 7, 4, 2, 1]);
        expect(await queryPositions(db, Query.tags('x'), { direction: 'backward', from: 6 })).toEqual([4, 2, 1]);
        expect(await queryPositions(db, Query.tags('x'), { direction: 'backward', from: 7, limit: 2 })).toEqual([7, 4]);
        expect(await queryPositions(db, Query.types('A'), { direction: 'backward', from: 100, limit: 2 })).toEqual([6, 4]);
        expect(await queryPositions(db, Query.types('A'), { direction: 'backward', from: 0 })).toEqual([]);
        expect(await queryPositions(db, Query.tags('x'), { limit: 2 })).toEqual([1, 2]);
        expect(await queryPositions(db, Query.tags('x'), { limit: 0 })).toEqual([]);
      });

      it('returns whole recorded events', async () => {
        const db = await openStore();
        await db.append({ type: 'A', tags: ['x'], data: { n: 1 }, metadata: { by: 'me' }, id: 'e-1' });
        const [event] = await db.read({ query: Query.tags('x') }).toArray();
        expect(event).toMatchObject({ id: 'e-1', type: 'A', tags: ['x'], data: { n: 1 }, metadata: { by: 'me' }, position: 1 });
      });

      it('every query result equals a brute-force filter of read("all")', async () => {
        const db = await fixtureStore();
        const all = await db.read('all').toArray();
        // Each query with the items it means, for the independent oracle (written from the DCB spec).
        const queries: [Query, OracleQuery][] = [
          [Query.types('A'), [{ types: ['A'] }]],
          [Query.tags('y'), [{ tags: ['y'] }]],
          [Query.types('B', 'C').withTags('x'), [{ types: ['B', 'C'], tags: ['x'] }]],
          [Query.tags('z').or(Query.types('B')), [{ tags: ['z'] }, { types: ['B'] }]],
          [Query.items({ types: ['A'] }, { types: ['B'], tags: ['y'] }, { tags: ['x', 'z'] }), [{ types: ['A'] }, { types: ['B'], tags: ['y'] }, { tags: ['x', 'z'] }]],
        ];
        for (const [query, items] of queries) {
          expect(await queryPositions(db, query)).toEqual(positionsOf(all.filter((event) => queryMatches(items, event))));
        }
      });
    });

    // ------------------------------------------------------------------ append

    describe('append(events, condition)', () => {
      it('without condition: appends whatever exists', async () => {
        const db = await fixtureStore();
        expect(await db.append({ type: 'A', tags: ['x'] })).toEqual({ position: 9, count: 1 });
        expect(await db.append([{ type: 'A' }, { type: 'B' }], undefined)).toEqual({ position: 11, count: 2 });
        expect(await db.head()).toBe(11);
      });

      it('condition without after: fails if any matching event exists', async () => {
        const db = await fixtureStore();
        const error = await expectFactError(() => db.append({ type: 'D' }, { failIfEventsMatch: Query.tags('x', 'y') }), 'FACT_CONCURRENCY');
        expect(error.details).toMatchObject({ expected: 0, actual: 7 });
        expect(await db.head()).toBe(8);
        // Nothing matches: it succeeds.
        expect(await db.append({ type: 'D' }, { failIfEventsMatch: Query.tags('x', 'w') })).toEqual({ position: 9, count: 1 });
        expect(await db.append({ type: 'D' }, { failIfEventsMatch: Query.types('Unknown') })).toEqual({ position: 10, count: 1 });
      });

      it('condition without after on an empty store succeeds', async () => {
        const db = await openStore();
        expect(await db.append({ type: 'A' }, { failIfEventsMatch: Query.all() })).toEqual({ position: 1, count: 1 });
        await expectFactError(() => db.append({ type: 'A' }, { failIfEventsMatch: Query.all() }), 'FACT_CONCURRENCY');
      });

      it('with after at the last match: succeeds', async () => {
        const db = await fixtureStore();
        const query = Query.tags('x', 'y');
        const seen = await db.read({ query }).toArray();
        const after = seen.at(-1)!.position;
        expect(after).toBe(7);
        expect(await db.append({ type: 'D', tags: ['x', 'y'] }, { failIfEventsMatch: query, after })).toEqual({ position: 9, count: 1 });
      });

      it('with a newer match: fails with FACT_CONCURRENCY { expected: after, actual: the latest conflict }', async () => {
        const db = await fixtureStore();
        const query = Query.tags('x');
        // Matches after 3: 4, 7, 8 — the latest is 8.
        const error = await expectFactError(() => db.append({ type: 'D' }, { failIfEventsMatch: query, after: 3 }), 'FACT_CONCURRENCY', /position 8/);
        expect(error.details).toEqual({ expected: 3, actual: 8 });
        // Add two newer matches: the latest conflict is reported, not the first.
        await db.append([{ type: 'E', tags: ['x'] }, { type: 'E' }, { type: 'E', tags: ['x'] }]);
        const again = await expectFactError(() => db.append({ type: 'D' }, { failIfEventsMatch: query, after: 8 }), 'FACT_CONCURRENCY');
        expect(again.details).toEqual({ expected: 8, actual: 11 });
        expect(await db.head()).toBe(11);
      });

      it('with non-matching newer events: succeeds', async () => {
        const db = await fixtureStore();
        // Matches of A∧z: only 6. Events 7 and 8 are newer and do not match.
        expect(await db.append({ type: 'A', tags: ['z'] }, { failIfEventsMatch: Query.items({ types: ['A'], tags: ['z'] }), after: 6 })).toEqual({
          position: 9,
          count: 1,
        });
        expect(await db.append({ type: 'D' }, { failIfEventsMatch: Query.types('C'), after: 7 })).toEqual({ position: 10, count: 1 });
      });

      it('with after above the head: succeeds', async () => {
        const db = await fixtureStore();
        expect(await db.append({ type: 'A' }, { failIfEventsMatch: Query.all(), after: 100 })).toEqual({ position: 9, count: 1 });
        expect(await db.append({ type: 'A' }, { failIfEventsMatch: Query.types('A'), after: 10 })).toEqual({ position: 10, count: 1 });
      });

      it('a failing multi-event conditional append writes nothing (atomic)', async () => {
        const db = await fixtureStore();
        const before = await db.read('all').toArray();
        const events: EventInput[] = [
          { type: 'D', tags: ['w'], id: 'multi-1' },
          { type: 'D', tags: ['w'], id: 'multi-2' },
          { type: 'D', tags: ['w'], id: 'multi-3' },
        ];
        await expectFactError(() => db.append(events, { failIfEventsMatch: Query.types('B'), after: 7 }), 'FACT_CONCURRENCY');
        expect(await db.head()).toBe(8);
        expect(await db.read('all').toArray()).toEqual(before);
        expect(await db.read({ query: Query.tags('w') }).toArray()).toEqual([]);
        // The ids were not taken: the same events append once the condition holds.
        expect(await db.append(events, { failIfEventsMatch: Query.types('B'), after: 8 })).toEqual({ position: 11, count: 3 });
        await expectVerified(db);
      });

      it('exactly one winner among 20 concurrent appends with the same condition and after', async () => {
        const db = await fixtureStore();
        const query = Query.tags('seat:1');
        const after = await db.head();
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, writer) => db.append({ type: 'SeatTaken', tags: ['seat:1'], data: { writer } }, { failIfEventsMatch: query, after })),
        );
        const winners = results.filter((result): result is PromiseFulfilledResult<AppendResult> => result.status === 'fulfilled');
        expect(winners).toHaveLength(1);
        const winner = winners[0]!.value.position;
        for (const result of results) {
          if (result.status === 'fulfilled') continue;
          const error = result.reason as FactError;
          expect(error).toBeInstanceOf(FactError);
          expect(error.code).toBe('FACT_CONCURRENCY');
          expect(error.details).toEqual({ expected: after, actual: winner });
        }
        expect(positionsOf(await db.read({ query }).toArray())).toEqual([winner]);
        expect(await db.head()).toBe(after + 1);
      });

      it('20 concurrent readers deciding and appending with the same condition: one winner, the rest see it', async () => {
        const db = await fixtureStore();
        const query = Query.tags('seat:2');
        const attempt = async (writer: number) => {
          // The decision is based on everything up to the head as it was before the read.
          const after = await db.head();
          const seen = await db.read({ query }).toArray();
          if (seen.length > 0) return 'seen';
          await db.append({ type: 'SeatTaken', tags: ['seat:2'], data: { writer } }, { failIfEventsMatch: query, after });
          return 'won';
        };
        const results = await Promise.allSettled(Array.from({ length: 20 }, (_, writer) => attempt(writer)));
        const won = results.filter((result) => result.status === 'fulfilled' && result.value === 'won');
        expect(won).toHaveLength(1);
        for (const result of results) if (result.status === 'rejected') expect((result.reason as FactError).code).toBe('FACT_CONCURRENCY');
        expect(await db.read({ query }).toArray()).toHaveLength(1);
      });

      it('no conflicts among 20 concurrent appends with disjoint conditions', async () => {
        const db = await fixtureStore();
        const after = await db.head();
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, writer) =>
            db.append({ type: 'Claimed', tags: [`key:${writer}`] }, { failIfEventsMatch: Query.items({ types: ['Claimed'], tags: [`key:${writer}`] }), after }),
          ),
        );
        expect(results.map((result) => result.position).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, index) => after + 1 + index));
        expect(await db.head()).toBe(after + 20);
        for (let writer = 0; writer < 20; writer++) expect(await db.read({ query: Query.tags(`key:${writer}`) }).toArray()).toHaveLength(1);
      });

      it('the appended events are not checked against their own condition', async () => {
        const db = await openStore();
        const query = Query.tags('username:ada');
        expect(await db.append({ type: 'UsernameClaimed', tags: ['username:ada'] }, { failIfEventsMatch: query })).toEqual({ position: 1, count: 1 });
        // Several events that all match their own condition.
        const other = Query.types('Batch');
        expect(await db.append([{ type: 'Batch' }, { type: 'Batch' }], { failIfEventsMatch: other, after: 1 })).toEqual({ position: 3, count: 2 });
        // But the next one sees them.
        await expectFactError(() => db.append({ type: 'UsernameClaimed', tags: ['username:ada'] }, { failIfEventsMatch: query }), 'FACT_CONCURRENCY');
      });

      it('appendStream with both expect and condition: each fails on its own', async () => {
        const db = await fixtureStore();
        await db.appendStream('course-c1', { type: 'CourseDefined', tags: ['course:c1'] }, { expect: 'none' });
        const condition = { failIfEventsMatch: Query.tags('course:c1'), after: 9 };
        // The expectation fails, the condition holds.
        const wrongExpect = await expectFactError(() => db.appendStream('course-c1', { type: 'X' }, { expect: 0, condition }), 'FACT_CONCURRENCY');
        expect(wrongExpect.details).toEqual({ stream: 'course-c1', expected: 0, actual: 1 });
        // The expectation holds, the condition fails.
        const wrongCondition = await expectFactError(
          () => db.appendStream('course-c1', { type: 'X' }, { expect: 1, condition: { failIfEventsMatch: Query.tags('course:c1'), after: 8 } }),
          'FACT_CONCURRENCY',
          /condition/,
        );
        expect(wrongCondition.details).toMatchObject({ expected: 8, actual: 9 });
        expect(await db.head()).toBe(9);
        expect(await db.streamVersion('course-c1')).toBe(1);
        // Both hold.
        expect(await db.appendStream('course-c1', { type: 'X', tags: ['course:c1'] }, { expect: 1, condition })).toEqual({ position: 10, streamPosition: 2, count: 1 });
        // Condition only (expect defaults to 'any').
        await expectFactError(() => db.appendStream('course-c1', { type: 'X' }, { condition }), 'FACT_CONCURRENCY');
        await expectVerified(db);
      });

      it('a conditional append sees a conflicting append of the same group', async () => {
        const db = await openStore();
        const query = Query.tags('t');
        const [first, second] = await Promise.allSettled([
          db.append({ type: 'A', tags: ['t'] }),
          db.append({ type: 'B' }, { failIfEventsMatch: query, after: 0 }),
        ]);
        expect(first.status).toBe('fulfilled');
        expect(second.status).toBe('rejected');
        expect((second as PromiseRejectedResult).reason).toMatchObject({ code: 'FACT_CONCURRENCY', details: { expected: 0, actual: 1 } });
      });
    });

    // ------------------------------------------------------------------ validation

    describe('query validation', () => {
      it('an item with no criteria is FACT_INVALID_ARGUMENT', async () => {
        await expectFactError(() => Query.items({}), 'FACT_INVALID_ARGUMENT', /no criteria/);
        await expectFactError(() => Query.items({ types: ['A'] }, {}), 'FACT_INVALID_ARGUMENT', /item 1/);
        await expectFactError(() => Query.tags('x').or({}), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.items({ foo: ['A'] } as never), 'FACT_INVALID_ARGUMENT', /unknown keys/);
      });

      it('Query.items() without items is FACT_INVALID_ARGUMENT', async () => {
        await expectFactError(() => Query.items(), 'FACT_INVALID_ARGUMENT', /at least one item/);
      });

      it('empty types or tags arrays are FACT_INVALID_ARGUMENT', async () => {
        await expectFactError(() => Query.items({ types: [] }), 'FACT_INVALID_ARGUMENT', /types/);
        await expectFactError(() => Query.items({ tags: [] }), 'FACT_INVALID_ARGUMENT', /tags/);
        await expectFactError(() => Query.items({ types: [], tags: ['x'] }), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.types(), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.tags(), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.types(''), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.tags('a\0b'), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.items({ types: 'A' } as never), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.data({}), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.data({ email: [] }), 'FACT_INVALID_ARGUMENT');
      });

      it('a sparse array reads its holes as undefined: refused among types and tags, an accepted value among data values', async () => {
        /* eslint-disable no-sparse-arrays -- the holes are the test */
        await expectFactError(() => Query.items({ types: [, 'A'] as string[] }), 'FACT_INVALID_ARGUMENT', /type 0 must be a non-empty string, got undefined/);
        await expectFactError(() => Query.items({ tags: ['x', , 'y'] as string[] }), 'FACT_INVALID_ARGUMENT', /tag 1 must be a non-empty string, got undefined/);
        expect(JSON.stringify(Query.data({ n: [1, , 2] }))).toBe(JSON.stringify(Query.data({ n: [1, undefined, 2] })));
        const dir = join(root, 'sparse-index');
        await expectFactError(() => FactStore.open(dir, { ...optionsFor(dir), indexes: { data: [, 'kind'] as string[] } }), 'FACT_INVALID_ARGUMENT', /indexes\.data field must be a non-empty string, got undefined/);
        expect(existsSync(dir), 'a refused open creates nothing').toBe(false);
        /* eslint-enable no-sparse-arrays */
      });

      it('failIfEventsMatch that is not a Query is FACT_INVALID_ARGUMENT and writes nothing', async () => {
        const db = await fixtureStore();
        const notQueries: unknown[] = [{ types: ['A'] }, [{ tags: ['x'] }], 'all', null, undefined, Query];
        for (const failIfEventsMatch of notQueries) {
          await expectFactError(() => db.append({ type: 'A' }, { failIfEventsMatch } as never), 'FACT_INVALID_ARGUMENT', /failIfEventsMatch/);
          await expectFactError(() => db.appendStream('s-1', { type: 'A' }, { condition: { failIfEventsMatch } as never }), 'FACT_INVALID_ARGUMENT');
        }
        for (const after of [-1, 1.5, Number.NaN, '3']) {
          await expectFactError(() => db.append({ type: 'A' }, { failIfEventsMatch: Query.all(), after } as never), 'FACT_INVALID_ARGUMENT', /after/);
        }
        await expectFactError(() => db.append({ type: 'A' }, 'condition' as never), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => db.read({ query: { tags: ['x'] } } as never), 'FACT_INVALID_ARGUMENT');
        expect(await db.head()).toBe(8);
      });
    });

    // ------------------------------------------------------------------ builders

    describe('query builders', () => {
      it('Query.types, Query.tags and Query.data make one item each', async () => {
        expect(Query.types('A', 'B').toJSON()).toEqual([{ types: ['A', 'B'] }]);
        expect(Query.tags('x', 'y').toJSON()).toEqual([{ tags: ['x', 'y'] }]);
        expect(Query.data({ email: 'a@b' }).dataFields).toEqual(['email']);
        expect(Query.all().toJSON()).toBe('all');
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.types('A', 'B'))).toEqual(await queryPositions(db, Query.items({ types: ['A', 'B'] })));
        expect(await queryPositions(db, Query.tags('x', 'y'))).toEqual(await queryPositions(db, Query.items({ tags: ['x', 'y'] })));
      });

      it('withTags, withTypes and withData narrow the last item only', async () => {
        const db = await fixtureStore();
        expect(await queryPositions(db, Query.types('A').withTags('x'))).toEqual([1, 4]);
        expect(await queryPositions(db, Query.tags('x').withTypes('B', 'C'))).toEqual([2, 7, 8]);
        expect(await queryPositions(db, Query.tags('x').withTags('y'))).toEqual([2, 4, 7]);
        // Only the last item is narrowed: C stays whole.
        const query = Query.types('C').or(Query.types('A')).withTags('x');
        expect(query.toJSON()).toEqual([{ types: ['C'] }, { types: ['A'], tags: ['x'] }]);
        expect(await queryPositions(db, query)).toEqual([1, 3, 4, 7]);
        expect(Query.types('A').withData({ n: 1 }).withTags('x').toJSON()).toEqual([{ types: ['A'], tags: ['x'], data: { n: '1 value(s)' } }]);
        await expectFactError(() => Query.types('A').withTypes('B'), 'FACT_INVALID_ARGUMENT', /already has types/);
        await expectFactError(() => Query.data({ n: 1 }).withData({ n: 2 }), 'FACT_INVALID_ARGUMENT', /data\.n/);
        await expectFactError(() => Query.all().withTags('x'), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.types('A').withTags(), 'FACT_INVALID_ARGUMENT');
      });

      it('or() adds items from queries and plain items; or(Query.all()) is all', async () => {
        const db = await fixtureStore();
        const query = Query.types('A').or(Query.tags('y', 'z'), { types: ['B'], tags: ['y'] });
        expect(query.toJSON()).toEqual([{ types: ['A'] }, { tags: ['y', 'z'] }, { types: ['B'], tags: ['y'] }]);
        expect(await queryPositions(db, query)).toEqual([1, 2, 4, 6, 7]);
        expect(Query.types('A').or(Query.all()).toJSON()).toBe('all');
        expect(Query.all().or(Query.types('A')).toJSON()).toBe('all');
        await expectFactError(() => Query.types('A').or('x' as never), 'FACT_INVALID_ARGUMENT');
        // Arguments are validated even when the result is Query.all().
        await expectFactError(() => Query.types('A').or({ types: ['B'] }, Query.all(), {}), 'FACT_INVALID_ARGUMENT');
        await expectFactError(() => Query.all().or({}), 'FACT_INVALID_ARGUMENT');
        // Queries are immutable: narrowing returns a new one.
        const base = Query.types('A');
        base.withTags('x');
        base.or(Query.types('B'));
        expect(base.toJSON()).toEqual([{ types: ['A'] }]);
      });
    });

    // ------------------------------------------------------------------ data queries

    describe('data queries', () => {
      const users: EventInput[] = [
        { type: 'UserRegistered', data: { email: 'ada@example.com', age: 36 } },
        { type: 'UserRegistered', data: { email: 'bob@example.com', age: 41 } },
        { type: 'EmailChanged', data: { email: 'ada@example.com', previous: 'ada@old.example.com' } },
        { type: 'UserRegistered', data: { email: 'cy@example.com' } },
        { type: 'Noise' },
      ];

      it('a declared index (indexes.data) is built at open and answers queries', async () => {
        const progress: DataIndexProgress[] = [];
        const db = await openStore({ indexes: { data: ['email'] }, onIndexBuild: (step) => progress.push(step) });
        expect(progress.at(-1)).toEqual({ fields: ['email'], events: 0, total: 0 });
        progress.length = 0;
        await db.append(users);
        expect(await queryPositions(db, Query.data({ email: 'ada@example.com' }))).toEqual([1, 3]);
        expect(await queryPositions(db, Query.types('UserRegistered').withData({ email: 'ada@example.com' }))).toEqual([1]);
        expect(progress).toEqual([]);
        await expectVerified(db);
      });

      it('a declared index over an existing store is built from the ledger at open', async () => {
        let db = await openStore();
        await db.append(users);
        await db.close();
        const progress: DataIndexProgress[] = [];
        db = await openStore({ indexes: { data: ['email', 'age'] }, onIndexBuild: (step) => progress.push(step) });
        expect(progress.at(-1)).toEqual({ fields: ['age', 'email'], events: 5, total: 5 });
        progress.length = 0;
        expect(await queryPositions(db, Query.data({ age: 41 }))).toEqual([2]);
        expect(progress).toEqual([]);
        await expectVerified(db);
      });

      it('an undeclared field is indexed on first use, recorded, and not rebuilt after reopen', async () => {
        const progress: DataIndexProgress[] = [];
        let db = await openStore({ onIndexBuild: (step) => progress.push(step) });
        await db.append(users);
        // Enough events for more than one progress report (one per 4096 events).
        await db.append(Array.from({ length: 5000 }, (_, index) => ({ type: 'Filler', data: { email: `u${index % 50}@example.com` } })));
        const head = await db.head();
        expect(progress).toEqual([]);
        expect(await queryPositions(db, Query.data({ email: 'ada@example.com' }))).toEqual([1, 3]);
        expect(progress.length).toBeGreaterThanOrEqual(2);
        expect(progress.every((step) => step.fields.length === 1 && step.fields[0] === 'email' && step.total === head)).toBe(true);
        expect(progress.at(-1)!.events).toBe(head);
        const builds = progress.length;
        // A second query uses the index as it is.
        expect(await queryPositions(db, Query.data({ email: 'u7@example.com' }), { limit: 2 })).toEqual([13, 63]);
        expect(progress).toHaveLength(builds);
        await expectVerified(db);
        await db.close();
        expect(await withLevel(db.path, recordedDataFields)).toEqual(['email']);
        const entries = await withLevel(db.path, countDataEntries);
        expect(entries).toBe(head - 1);

        progress.length = 0;
        db = await openStore({ onIndexBuild: (step) => progress.push(step) });
        expect(await queryPositions(db, Query.data({ email: 'ada@example.com' }))).toEqual([1, 3]);
        expect(progress).toEqual([]);
        // Declaring it now changes nothing either.
        await db.close();
        db = await openStore({ indexes: { data: ['email'] }, onIndexBuild: (step) => progress.push(step) });
        expect(await queryPositions(db, Query.data({ email: 'cy@example.com' }))).toEqual([4]);
        expect(progress).toEqual([]);
        await expectVerified(db);
      });

      it('a data index built on first use is maintained for new events', async () => {
        const db = await openStore();
        await db.append(users);
        expect(await queryPositions(db, Query.data({ email: 'bob@example.com' }))).toEqual([2]);
        await db.append({ type: 'EmailChanged', data: { email: 'bob@example.com' } });
        await db.appendStream('user-bob', { type: 'Login', data: { email: 'bob@example.com' } });
        expect(await queryPositions(db, Query.data({ email: 'bob@example.com' }))).toEqual([2, 6, 7]);
        expect(await queryPositions(db, Query.data({ email: 'bob@example.com' }), { direction: 'backward', limit: 1 })).toEqual([7]);
        await expectVerified(db);
      });

      it('rebuildIndexes() rebuilds data indexes byte-identically', async () => {
        let db = await openStore({ indexes: { data: ['age'] } });
        await db.append(users);
        await db.read({ query: Query.data({ email: 'ada@example.com' }) }).toArray();
        await db.append([...users, { type: 'X', data: { email: ['a', 'b'], age: 1n } }]);
        await db.close();
        const incremental = await withLevel(db.path, dumpIndexes);
        expect(incremental.some((row) => row.startsWith(hex(Uint8Array.of(KeySpace.data))))).toBe(true);
        db = await openStore({ indexes: { data: ['age'] } });
        await db.rebuildIndexes();
        await expectVerified(db);
        await db.close();
        expect(await withLevel(db.path, dumpIndexes)).toEqual(incremental);
        expect(await withLevel(db.path, recordedDataFields)).toEqual(['age', 'email']);
      });

      it('123 and "123" are different values (so are 1 and 1n)', async () => {
        const db = await openStore();
        await db.append([
          { type: 'T', data: { code: 123 } },
          { type: 'T', data: { code: '123' } },
          { type: 'T', data: { code: 1 } },
          { type: 'T', data: { code: 1n } },
          { type: 'T', data: { code: 123.5 } },
        ]);
        expect(await queryPositions(db, Query.data({ code: 123 }))).toEqual([1]);
        expect(await queryPositions(db, Query.data({ code: '123' }))).toEqual([2]);
        expect(await queryPositions(db, Query.data({ code: 1 }))).toEqual([3]);
        expect(await queryPositions(db, Query.data({ code: 1n }))).toEqual([4]);
        expect(await queryPositions(db, Query.data({ code: 123.5 }))).toEqual([5]);
        await expectVerified(db);
      });

      it('an array of values matches any of them; a wrapped array matches an array value', async () => {
        const db = await openStore();
        await db.append(users);
        await db.append([{ type: 'Pair', data: { email: ['ada@example.com', 'bob@example.com'] } }]);
        expect(await queryPositions(db, Query.data({ email: ['ada@example.com', 'bob@example.com'] }))).toEqual([1, 2, 3]);
        expect(await queryPositions(db, Query.data({ email: ['cy@example.com', 'nobody'] }))).toEqual([4]);
        expect(await queryPositions(db, Query.data({ email: [['ada@example.com', 'bob@example.com']] }))).toEqual([6]);
        // Several fields of one item: AND.
        expect(await queryPositions(db, Query.data({ email: ['ada@example.com', 'bob@example.com'], age: [36, 41, 99] }))).toEqual([1, 2]);
        await expectVerified(db);
      });

      it('data indexes and conditions see the data as it was when append was called', async () => {
        const db = await openStore({ indexes: { data: ['email'] } });
        const data = { email: 'before@example.com' };
        const pending = db.append({ type: 'UserRegistered', data });
        // The caller changes its object while the append is in flight.
        data.email = 'after@example.com';
        await pending;
        expect((await db.read('all').toArray())[0]!.data).toEqual({ email: 'before@example.com' });
        expect(await queryPositions(db, Query.data({ email: 'before@example.com' }))).toEqual([1]);
        expect(await queryPositions(db, Query.data({ email: 'after@example.com' }))).toEqual([]);
        // The same in a group: the second append's condition sees the first one's recorded data.
        const other = { email: 'x@example.com' };
        const first = db.append({ type: 'UserRegistered', data: other });
        const second = db.append({ type: 'UserRegistered', data: { email: 'y@example.com' } }, { failIfEventsMatch: Query.data({ email: 'y@example.com' }), after: 1 });
        other.email = 'y@example.com';
        expect(await first).toEqual({ position: 2, count: 1 });
        expect(await second).toEqual({ position: 3, count: 1 });
        await expectVerified(db);
      });

      it('non-object data never matches', async () => {
        const db = await openStore();
        await db.append([
          { type: 'T', data: 'email' },
          { type: 'T', data: ['a'] },
          { type: 'T', data: null },
          { type: 'T', data: 5 },
          { type: 'T', data: new Map([['email', 'a']]) },
          { type: 'T', data: new Date(0) },
          { type: 'T', data: new Uint8Array([1]) },
          { type: 'T' },
          { type: 'T', data: { email: 'a' } },
          { type: 'T', data: { other: 'a', nested: { email: 'a' } } },
        ]);
        expect(await queryPositions(db, Query.data({ email: 'a' }))).toEqual([9]);
        expect(await queryPositions(db, Query.data({ 0: 'a' }))).toEqual([]);
        expect(await queryPositions(db, Query.data({ length: 1 }))).toEqual([]);
        await expectVerified(db);
      });

      it('a data condition in a conditional append (the index is built for it)', async () => {
        const progress: DataIndexProgress[] = [];
        const db = await openStore({ onIndexBuild: (step) => progress.push(step) });
        await db.append(users);
        const taken = Query.types('UserRegistered', 'EmailChanged').withData({ email: 'ada@example.com' });
        await expectFactError(
          () => db.append({ type: 'UserRegistered', data: { email: 'ada@example.com' } }, { failIfEventsMatch: taken }),
          'FACT_CONCURRENCY',
        );
        expect(progress.at(-1)).toMatchObject({ fields: ['email'], events: 5, total: 5 });
        const free = Query.types('UserRegistered').withData({ email: 'dee@example.com' });
        expect(await db.append({ type: 'UserRegistered', data: { email: 'dee@example.com' } }, { failIfEventsMatch: free })).toEqual({ position: 6, count: 1 });
        const again = await expectFactError(
          () => db.append({ type: 'UserRegistered', data: { email: 'dee@example.com' } }, { failIfEventsMatch: free, after: 5 }),
          'FACT_CONCURRENCY',
        );
        expect(again.details).toEqual({ expected: 5, actual: 6 });
        // Concurrent registrations of one address: exactly one wins.
        const query = Query.data({ email: 'eve@example.com' });
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, () => db.append({ type: 'UserRegistered', data: { email: 'eve@example.com' } }, { failIfEventsMatch: query, after: 6 })),
        );
        expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
        // A condition on a field not yet indexed builds its index first.
        expect(await db.append({ type: 'T', data: { age: 36 } }, { failIfEventsMatch: Query.data({ age: 50 }) })).toMatchObject({ count: 1 });
        expect(progress.at(-1)).toMatchObject({ fields: ['age'] });
        await expectFactError(() => db.append({ type: 'T' }, { failIfEventsMatch: Query.data({ age: 36 }), after: 7 }), 'FACT_CONCURRENCY');
        await expectVerified(db);
      });
    });
  });
}

describeDcbSuite('DCB on memory-level + SimFileSystem', memoryBackend);
describeDcbSuite('DCB on classic-level + real files', classicBackend);
