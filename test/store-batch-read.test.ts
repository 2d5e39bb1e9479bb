/**
 * The batch read behind toArray() (MergedReads.readAll) against the streaming read (for await)
 * and a brute-force filter of the ledger: queries and single indexes, both directions, limits
 * and `from`, on classic-level, while appends keep the unapplied tail busy and while
 * rebuildIndexes() and verify() run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore, Query } from '../src/index.js';
import type { EventInput, ReadOptions, ReadSource, RecordedEvent } from '../src/index.js';
import { matchesQuery } from '../src/model/query.js';

const TYPES = ['A', 'B', 'C'];
const APPENDS_DURING_READS = 150;

function event(index: number): EventInput {
  return { type: TYPES[index % 3]!, tags: [`t${index % 5}`, `u${index % 40}`], data: { index } };
}

/** The same read, streamed event by event. */
async function streamed(db: FactStore, source: ReadSource, options: ReadOptions): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  for await (const recorded of db.read(source, options)) events.push(recorded);
  return events;
}

function bruteForce(all: readonly RecordedEvent[], matches: (event: RecordedEvent) => boolean, options: ReadOptions): number[] {
  const forward = options.direction !== 'backward';
  const from = options.from;
  let positions = all.filter((recorded) => matches(recorded) && (from === undefined || (forward ? recorded.position >= from : recorded.position <= from))).map((recorded) => recorded.position);
  if (!forward) positions = positions.reverse();
  return positions.slice(0, options.limit ?? Number.POSITIVE_INFINITY);
}

/** True when `positions` is what the read returns on the ledger cut at some head from `before` on. */
function seenAtSomeHead(all: readonly RecordedEvent[], matches: (event: RecordedEvent) => boolean, options: ReadOptions, before: number, positions: readonly number[]): boolean {
  for (let head = before; head <= all.length; head++) {
    const expected = bruteForce(all.slice(0, head), matches, options);
    if (expected.length === positions.length && expected.every((position, index) => position === positions[index])) return true;
  }
  return false;
}

const QUERIES: [string, Query, (event: RecordedEvent) => boolean][] = [
  ['one tag', Query.tags('u7'), (e) => e.tags.includes('u7')],
  ['tag with types, OR tag', Query.items({ types: ['A', 'B'], tags: ['u3'] }, { types: ['C'], tags: ['u4'] }), (e) => (['A', 'B'].includes(e.type) && e.tags.includes('u3')) || (e.type === 'C' && e.tags.includes('u4'))],
  ['two tags (intersection)', Query.tags('t1', 'u11'), (e) => e.tags.includes('t1') && e.tags.includes('u11')],
  ['types', Query.types('B', 'C'), (e) => ['B', 'C'].includes(e.type)],
];
const OPTIONS: ReadOptions[] = [{}, { direction: 'backward' }, { limit: 1 }, { direction: 'backward', limit: 3 }, { from: 500, limit: 7 }, { from: 900, direction: 'backward' }];

describe('batch read (toArray) equals the streaming read and brute force', () => {
  let dir: string;
  let db: FactStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'factstore-batch-'));
    db = await FactStore.open(join(dir, 'db'));
    await db.append(Array.from({ length: 1500 }, (_, index) => event(index)));
  });
  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('queries and single indexes, both directions, limits and from, with appends in the tail', async () => {
    // Small appends keep coming, so reads find events in the tail and the apply moving them.
    // Bounded, so a loaded machine does not grow the store (and the brute force) without end.
    let appended = 1500;
    let stop = false;
    const appending = (async () => {
      for (let append = 0; append < APPENDS_DURING_READS && !stop; append++) await db.append(Array.from({ length: 3 }, () => event(appended++)));
    })();
    try {
      for (const [name, query, matches] of QUERIES) {
        for (const options of OPTIONS) {
          const before = await db.head();
          const batch = await db.read({ query }, options).toArray();
          const all = await db.read('all').toArray();
          const positions = batch.map((recorded) => recorded.position);
          // The read saw the store as of some head between the one before it and the one after.
          expect(seenAtSomeHead(all, matches, options, before, positions), `${name} ${JSON.stringify(options)}`).toBe(true);
          for (const recorded of batch) expect(recorded).toEqual(all[recorded.position - 1]);
        }
      }
      for (const [source, matches] of [
        [{ tag: 'u9' }, (e: RecordedEvent) => e.tags.includes('u9')],
        [{ type: 'C' }, (e: RecordedEvent) => e.type === 'C'],
      ] as const) {
        for (const options of OPTIONS) {
          const before = await db.head();
          const batch = await db.read(source, options).toArray();
          const all = await db.read('all').toArray();
          const positions = batch.map((recorded) => recorded.position);
          expect(seenAtSomeHead(all, matches, options, before, positions), `${JSON.stringify(source)} ${JSON.stringify(options)}`).toBe(true);
        }
      }
    } finally {
      stop = true;
      await appending;
    }
    // Quiet: batch, stream and brute force agree exactly.
    const all = await db.read('all').toArray();
    for (const [name, query, matches] of QUERIES) {
      for (const options of OPTIONS) {
        const batch = (await db.read({ query }, options).toArray()).map((recorded) => recorded.position);
        expect(batch, name).toEqual(bruteForce(all, matches, options));
        expect((await streamed(db, { query }, options)).map((recorded) => recorded.position), name).toEqual(batch);
      }
    }
  });

  it('reads see the same while rebuildIndexes() and verify() run', async () => {
    const query = QUERIES[1]![1];
    const expected = (await streamed(db, { query }, {})).map((recorded) => recorded.position);
    expect(expected.length).toBeGreaterThan(10);
    const reads: Promise<void>[] = [];
    const readWhile = (done: () => boolean) =>
      (async () => {
        let count = 0;
        while (!done() || count === 0) {
          expect((await db.read({ query }).toArray()).map((recorded) => recorded.position)).toEqual(expected);
          expect((await db.read({ query }, { direction: 'backward', limit: 2 }).toArray()).map((recorded) => recorded.position)).toEqual(expected.slice(-2).reverse());
          count++;
        }
      })();
    let rebuilt = false;
    reads.push(readWhile(() => rebuilt));
    await db.rebuildIndexes();
    rebuilt = true;
    let verified = false;
    reads.push(readWhile(() => verified));
    expect((await db.verify()).problems).toEqual([]);
    verified = true;
    await Promise.all(reads);
  });

  it('a matcher sanity check: the brute force agrees with matchesQuery', async () => {
    const all = await db.read('all').toArray();
    for (const [name, query, matches] of QUERIES) {
      for (const recorded of all) expect(matchesQuery(query, recorded), name).toBe(matches(recorded));
    }
  });

  it('toArray() after iterating, or twice, is refused', async () => {
    const reader = db.read({ query: Query.tags('u1') });
    await reader.toArray();
    await expect(reader.toArray()).rejects.toThrow(TypeError);
  });
});
