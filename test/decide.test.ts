/**
 * db.decide(query, decider, options): the DCB decision in one call, on memory-level (WAL on
 * SimFileSystem) and classic-level (real files). Synchronous deciders run in the writer's turn
 * and never conflict; asynchronous ones are appended with the query as condition and retried.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactError, FactStore, Query } from '../src/index.js';
import type { SimFileSystem } from '../src/testing/index.js';
import type { EventInput, FactStoreOptions, RecordedEvent } from '../src/index.js';
import { DECISION_TAG_POSITIONS_MAX } from '../src/query/decision-reads.js';
import { classicBackend, expectFactError, memoryBackend, positionsOf, type OptionsFor } from './support/backends.js';

const courseQuery = (course: string) => Query.items({ types: ['CourseDefined', 'StudentSubscribed'], tags: [`course:${course}`] });

/** Subscribes while the course has room: the course-enrolment decision of the README. */
function subscribe(student: string, course: string) {
  return (events: readonly RecordedEvent[]): EventInput | null => {
    const capacity = (events.find((event) => event.type === 'CourseDefined')?.data as { capacity: number } | undefined)?.capacity ?? 0;
    const subscribed = events.filter((event) => event.type === 'StudentSubscribed').length;
    return subscribed < capacity ? { type: 'StudentSubscribed', data: { student, course }, tags: [`course:${course}`, `student:${student}`] } : null;
  };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function describeDecide(name: string, makeBackend: () => OptionsFor) {
  describe(`decide() — ${name}`, () => {
    let dir: string;
    let optionsFor: OptionsFor;
    let db: FactStore;
    const open = (options: FactStoreOptions = {}) => FactStore.open(join(dir, 'db'), { ...optionsFor(join(dir, 'db')), ...options });

    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'factstore-decide-'));
      optionsFor = makeBackend();
      db = await open();
    });
    afterEach(async () => {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('hands the decider the matching events in order, read-only, and appends what it returns', async () => {
      await db.append([
        { type: 'CourseDefined', data: { capacity: 2 }, tags: ['course:c1'] },
        { type: 'CourseDefined', data: { capacity: 9 }, tags: ['course:c2'] },
        { type: 'Unrelated', tags: ['course:c1'] },
      ]);
      let seen: readonly RecordedEvent[] = [];
      const result = await db.decide(courseQuery('c1'), (events) => {
        seen = events;
        return subscribe('s1', 'c1')(events);
      });
      expect(positionsOf(seen)).toEqual([1]);
      expect(seen[0]).toEqual((await db.read('all').toArray())[0]);
      expect(Object.isFrozen(seen[0]) && Object.isFrozen(seen[0]!.data) && Object.isFrozen(seen[0]!.tags)).toBe(true);
      expect(result).toEqual({ appended: { position: 4, count: 1 }, decidedAt: 3, attempts: 1 });
      const again = await db.decide(courseQuery('c1'), (events) => {
        seen = events;
        return null;
      });
      expect(positionsOf(seen)).toEqual([1, 4]);
      expect(again).toEqual({ appended: null, decidedAt: 4, attempts: 1 });
      expect(await db.head()).toBe(4);
    });

    it('returning nothing (null, undefined, []) appends nothing', async () => {
      for (const nothing of [null, undefined, []]) {
        expect((await db.decide(Query.tags('x'), () => nothing)).appended).toBeNull();
      }
      expect(await db.head()).toBe(0);
    });

    it('of equal concurrent decisions exactly one wins, and capacity is never exceeded (synchronous deciders)', async () => {
      await db.append({ type: 'CourseDefined', data: { capacity: 3 }, tags: ['course:c1'] });
      const results = await Promise.all(Array.from({ length: 20 }, (_, k) => db.decide(courseQuery('c1'), subscribe(`s${k}`, 'c1'))));
      expect(results.filter((result) => result.appended !== null)).toHaveLength(3);
      expect(results.every((result) => result.attempts === 1)).toBe(true);
      const claims = await Promise.all(
        Array.from({ length: 10 }, () => db.decide(Query.tags('username:ada'), (events) => (events.length === 0 ? { type: 'UsernameClaimed', tags: ['username:ada'] } : null))),
      );
      expect(claims.filter((claim) => claim.appended !== null)).toHaveLength(1);
      expect(await db.read({ tag: 'course:c1' }).toArray()).toHaveLength(4);
    });

    it('loses no update: concurrent increments each see the previous one', async () => {
      const increment = (events: readonly RecordedEvent[]) => ({ type: 'Incremented', data: { value: events.length + 1 }, tags: ['counter'] });
      await Promise.all(Array.from({ length: 50 }, () => db.decide(Query.tags('counter'), increment)));
      const values = (await db.read({ tag: 'counter' }).toArray()).map((event) => (event.data as { value: number }).value);
      expect(values).toEqual(Array.from({ length: 50 }, (_, k) => k + 1));
    });

    it('sees appends called before it in the same turn, and none called after', async () => {
      const before = db.append({ type: 'Counted', tags: ['n'] });
      let seen: readonly RecordedEvent[] = [];
      const decision = db.decide(Query.tags('n'), (events) => {
        seen = events;
        return { type: 'Counted', tags: ['n'] };
      });
      const after = db.append({ type: 'Counted', tags: ['n'] });
      await Promise.all([before, decision, after]);
      expect(positionsOf(seen)).toEqual([1]);
      expect((await decision).appended).toEqual({ position: 2, count: 1 });
    });

    it('an asynchronous decider is appended with the query as condition and retried on conflict', async () => {
      await db.append({ type: 'CourseDefined', data: { capacity: 2 }, tags: ['course:c1'] });
      const slowly = (student: string) => async (events: readonly RecordedEvent[]) => {
        await tick();
        return subscribe(student, 'c1')(events);
      };
      const results = await Promise.all(Array.from({ length: 6 }, (_, k) => db.decide(courseQuery('c1'), slowly(`s${k}`))));
      expect(results.filter((result) => result.appended !== null)).toHaveLength(2);
      expect(Math.max(...results.map((result) => result.attempts))).toBeGreaterThan(1);
      expect(await db.read({ tag: 'course:c1' }).toArray()).toHaveLength(3);
    });

    it('bounds the attempts of an asynchronous decision and surfaces the last conflict', async () => {
      let calls = 0;
      const error = await expectFactError(
        () =>
          db.decide(
            Query.tags('hot'),
            async (events, context) => {
              calls++;
              expect(context.attempt).toBe(calls);
              // Someone else always gets there first.
              await db.append({ type: 'Elsewhere', tags: ['hot'] });
              return { type: 'Mine', tags: ['hot'], data: { seen: events.length } };
            },
            { maxAttempts: 3 },
          ),
        'FACT_CONCURRENCY',
        /after 3 attempts/,
      );
      expect(calls).toBe(3);
      expect(error.details).toMatchObject({ attempts: 3 });
      expect((await db.read({ tag: 'hot' }).toArray()).map((event) => event.type)).toEqual(['Elsewhere', 'Elsewhere', 'Elsewhere']);
    });

    it('an abort stops it: before it starts, while an asynchronous decider runs, and while queued', async () => {
      const aborted = AbortSignal.abort(new Error('stop'));
      await expect(db.decide(Query.tags('a'), () => ({ type: 'X', tags: ['a'] }), { signal: aborted })).rejects.toThrow('stop');
      const controller = new AbortController();
      let release: () => void = () => undefined;
      const waiting = db.decide(
        Query.tags('a'),
        () =>
          new Promise<EventInput>((resolve) => {
            release = () => resolve({ type: 'X', tags: ['a'] });
          }),
        { signal: controller.signal },
      );
      await tick();
      controller.abort(new Error('no longer needed'));
      await expect(waiting).rejects.toThrow('no longer needed');
      release();
      // Queued behind an append, then aborted before the writer runs its decider.
      const queued = new AbortController();
      const append = db.append({ type: 'Y' });
      let called = false;
      const decision = db.decide(
        Query.tags('a'),
        () => {
          called = true;
          return { type: 'X', tags: ['a'] };
        },
        { signal: queued.signal },
      );
      const settled = decision.then(
        () => null,
        (error: unknown) => error,
      );
      queued.abort(new Error('changed my mind'));
      await append;
      expect(await settled).toMatchObject({ message: 'changed my mind' });
      expect(called).toBe(false);
      await tick();
      expect(await db.read({ tag: 'a' }).toArray()).toEqual([]);
    });

    it('a decider that throws, or returns invalid events, fails alone and writes nothing', async () => {
      const others = [db.append({ type: 'Before' }), db.append({ type: 'After' })];
      const thrown = db.decide(Query.tags('t'), () => {
        throw new Error('decider bug');
      });
      await expect(thrown).rejects.toThrow('decider bug');
      await expectFactError(() => db.decide(Query.tags('t'), () => ({ type: '' })), 'FACT_INVALID_ARGUMENT', /decide: event 0: type/);
      await expectFactError(() => db.decide(Query.tags('t'), () => Promise.resolve([{ type: 'ok' }, 5 as unknown as EventInput])), 'FACT_INVALID_ARGUMENT', /event 1 must be an object/);
      await Promise.all(others);
      expect((await db.read('all').toArray()).map((event) => event.type)).toEqual(['Before', 'After']);
    });

    it('refuses bad arguments before anything is queued', async () => {
      await expectFactError(() => db.decide({} as Query, () => null), 'FACT_INVALID_ARGUMENT', /query must be a Query/);
      await expectFactError(() => db.decide(Query.tags('a'), 'no' as never), 'FACT_INVALID_ARGUMENT', /decider must be a function/);
      await expectFactError(() => db.decide(Query.tags('a'), () => null, { maxAttempts: 0 }), 'FACT_INVALID_ARGUMENT', /maxAttempts/);
      await expectFactError(() => db.decide(Query.tags('a'), () => null, { signal: {} as AbortSignal }), 'FACT_INVALID_ARGUMENT', /signal/);
      await db.close();
      await expectFactError(() => db.decide(Query.tags('a'), () => null), 'FACT_CLOSED');
      db = await open();
    });

    it('events with ids of the caller are an idempotent retry', async () => {
      const claim = () => ({ id: 'claim-1', type: 'Claimed', tags: ['thing'] });
      const first = await db.decide(Query.tags('thing'), claim);
      const second = await db.decide(Query.tags('thing'), claim);
      expect(first.appended).toEqual({ position: 1, count: 1 });
      expect(second.appended).toEqual({ position: 1, count: 1 });
      expect(await db.head()).toBe(1);
    });

    it('a decision too large for one WAL record is refused; decisions that do not fit a group wait for the next', async () => {
      await db.close();
      db = await open({ wal: { maxRecordSizeBytes: 64 * 1024 } });
      const big = (label: string) => ({ type: 'Big', tags: ['big'], data: { label, blob: 'x'.repeat(40 * 1024) } });
      const results = await Promise.all([db.append(big('append')), db.decide(Query.tags('big'), () => big('decided')), db.decide(Query.tags('big'), (events) => big(`after ${events.length}`))]);
      expect(results.map((result) => ('appended' in result ? result.appended!.position : result.position))).toEqual([1, 2, 3]);
      expect((await db.read({ tag: 'big' }).toArray()).map((event) => (event.data as { label: string }).label)).toEqual(['append', 'decided', 'after 2']);
      await expectFactError(() => db.decide(Query.tags('big'), () => ({ type: 'Huge', data: 'y'.repeat(70 * 1024) })), 'FACT_INVALID_ARGUMENT', /maxRecordSizeBytes/);
    });

    it('queries without tags, with data fields, and tags with very many events decide on exact reads', async () => {
      await db.append([
        ...Array.from({ length: DECISION_TAG_POSITIONS_MAX + 5 }, (_, k) => ({ type: 'Crowd', tags: ['crowded'], data: { k } })),
        { type: 'Rare', tags: ['crowded', 'rare'], data: { k: 1 } },
      ]);
      const seenBy = async (query: Query) => {
        let seen: readonly RecordedEvent[] = [];
        await db.decide(query, (events) => {
          seen = events;
          return null;
        });
        return seen;
      };
      expect(await seenBy(Query.tags('crowded'))).toHaveLength(DECISION_TAG_POSITIONS_MAX + 6);
      expect(positionsOf(await seenBy(Query.tags('crowded', 'rare')))).toEqual([DECISION_TAG_POSITIONS_MAX + 6]);
      expect(positionsOf(await seenBy(Query.types('Rare')))).toEqual([DECISION_TAG_POSITIONS_MAX + 6]);
      expect(positionsOf(await seenBy(Query.items({ tags: ['crowded'], data: { k: 1 } })))).toEqual([2, DECISION_TAG_POSITIONS_MAX + 6]);
      // A list grows past the limit as appends go on: still exact.
      await db.append(Array.from({ length: DECISION_TAG_POSITIONS_MAX }, () => ({ type: 'Rare', tags: ['rare'] })));
      expect(await seenBy(Query.tags('rare'))).toHaveLength(DECISION_TAG_POSITIONS_MAX + 1);
    });

    it('stays exact across close and reopen, with the apply behind and after it', async () => {
      await db.append({ type: 'CourseDefined', data: { capacity: 4 }, tags: ['course:c1'] });
      await db.decide(courseQuery('c1'), subscribe('s1', 'c1'));
      await db.close();
      db = await open();
      const results = await Promise.all(Array.from({ length: 6 }, (_, k) => db.decide(courseQuery('c1'), subscribe(`s${k + 2}`, 'c1'))));
      expect(results.filter((result) => result.appended !== null)).toHaveLength(3);
      expect(await db.read({ tag: 'course:c1' }).toArray()).toHaveLength(5);
    });

    it('runs concurrently with rebuildIndexes() and verify() and sees exactly what reads see', async () => {
      await db.append(Array.from({ length: 600 }, (_, k) => ({ type: 'Filler', tags: [`f:${k % 7}`, 'counter-area'] })));
      const increment = (events: readonly RecordedEvent[]) => ({ type: 'Incremented', data: { value: events.length + 1 }, tags: ['counter'] });
      const maintenance = (async () => {
        for (let round = 0; round < 3; round++) {
          await db.rebuildIndexes();
          expect((await db.verify()).problems).toEqual([]);
        }
      })();
      const decisions: Promise<unknown>[] = [];
      for (let k = 0; k < 60; k++) {
        decisions.push(db.decide(Query.tags('counter'), increment));
        if (k % 10 === 0) await tick();
      }
      await Promise.all([maintenance, ...decisions]);
      const values = (await db.read({ tag: 'counter' }).toArray()).map((event) => (event.data as { value: number }).value);
      expect(values).toEqual(Array.from({ length: 60 }, (_, k) => k + 1));
      expect((await db.verify()).problems).toEqual([]);
    });
  });
}

describeDecide('memory-level', memoryBackend);
describeDecide('classic-level', classicBackend);

// Found by test/store-kill.test.ts: a decision that appended nothing resolved while the append
// it saw (an earlier one of the same group) was not durable yet, so a kill could lose what it had
// decided on (decidedAt past the head after the restart). Refusals caused by the group's own
// appends were reported early the same way.
describe('results that depend on appends of the same group wait until those are durable', () => {
  const claim = { type: 'Claimed', tags: ['slot'] };
  const cases: [string, (db: FactStore) => Promise<unknown>][] = [
    ['a synchronous decision that appends nothing', (db) => db.decide(Query.tags('slot'), () => null)],
    ['an asynchronous decision that appends nothing', (db) => db.decide(Query.tags('slot'), () => Promise.resolve(null))],
    ['a condition failed by the earlier append', (db) => db.append(claim, { failIfEventsMatch: Query.tags('slot'), after: 0 })],
    ["an expectation failed by the earlier append's stream version", (db) => db.appendStream('s-1', claim, { expect: 'none' })],
    ['an id the earlier append is appending', (db) => db.append({ ...claim, id: 'claim-1' })],
  ];

  it.each(cases)('%s settles after the earlier append resolved, with what it saw', async (_, second) => {
    const db = await FactStore.open('/db', { ...memoryBackend()('/db') });
    try {
      const order: string[] = [];
      const first = db.appendStream('s-1', { ...claim, id: 'claim-1' }).then((result) => (order.push('first'), result));
      const then = second(db).then(
        (result) => (order.push('second'), result),
        (error: unknown) => (order.push('second'), error),
      );
      const [firstResult, secondResult] = await Promise.all([first, then]);
      expect(order).toEqual(['first', 'second']);
      expect(firstResult.position).toBe(1);
      if (secondResult instanceof FactError) expect(['FACT_CONCURRENCY', 'FACT_DUPLICATE_EVENT_ID']).toContain(secondResult.code);
      else expect((secondResult as { decidedAt: number }).decidedAt).toBe(1);
      expect(await db.head()).toBe(1);
    } finally {
      await db.close();
    }
  });

  it.each(cases)('%s fails with the group when its fdatasync fails (it saw an event that was never committed)', async (_, second) => {
    const backend = memoryBackend();
    const options = backend('/db');
    const db = await FactStore.open('/db', options);
    try {
      (options.fs as SimFileSystem).injectFault({ op: 'datasync', path: 'wal', error: 'EIO' });
      const first = db.appendStream('s-1', { ...claim, id: 'claim-1' }).then(() => 'resolved', (error: unknown) => (error as FactError).code);
      const then = second(db).then(() => 'resolved', (error: unknown) => (error as FactError).code);
      expect(await first).toBe('FACT_WAL_POISONED');
      expect(await then).toBe('FACT_WAL_POISONED');
    } finally {
      await db.close().catch(() => undefined);
    }
  });
});
