/**
 * Invisible maintenance: while rebuildIndexes(), a data-index build on first use or verify()
 * runs, every read, stream version, stream list, expectation, DCB condition and idempotency check
 * sees exactly the acknowledged events, and appends keep being accepted.
 */
import { describe, expect, it } from 'vitest';
import { FactStore, Query, type FactStoreOptions, type RecordedEvent } from '../src/index.js';
import { classicBackend, expectFactError, memoryBackend, type OptionsFor } from './support/backends.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const EVENTS = 20_000;
const TYPES = ['A', 'B', 'C', 'D'];

async function populate(db: FactStore): Promise<void> {
  for (let first = 0; first < EVENTS; first += 1000) {
    await db.append(
      Array.from({ length: 1000 }, (_, index) => ({
        type: TYPES[(first + index) % TYPES.length]!,
        tags: [`t${(first + index) % 7}`],
        data: { k: (first + index) % 5 },
      })),
    );
  }
  await db.append({ type: 'Exotic', id: 'exotic', tags: ['exotic'], data: EXOTIC_DATA() });
  await db.appendStream('s', { type: 'Opened', id: 'open-s', tags: ['stream:s'], data: { k: 'opened' } }, { expect: 'none' });
  await db.appendStream('other-1', [{ type: 'A' }, { type: 'B' }], { expect: 'none' });
}

/** Data of every kind the codec promises to round-trip, read back while maintenance runs. */
const EXOTIC_DATA = () => ({
  ...(JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>),
  map: new Map<unknown, unknown>([['a', 1], [2, [3n]]]),
  when: new Date(1_700_000_000_000),
  bytes: Uint8Array.of(0, 255, 7),
  big: 2n ** 70n,
  float: 0.1,
  nested: { b: [1, { c: null }], a: 'ü' },
});

/** What every read path says about the store, for comparison before, during and after maintenance. */
async function observe(db: FactStore) {
  const positions = (events: RecordedEvent[]) => events.map((event) => event.position);
  return {
    head: await db.head(),
    sVersion: await db.streamVersion('s'),
    sEvents: positions(await db.read({ stream: 's' }).toArray()),
    streams: await db.streams().toArray(),
    otherCategory: await db.streams({ category: 'other' }).toArray(),
    typeD: (await db.read({ type: 'D' }).toArray()).length,
    tag3Backward: positions(await db.read({ tag: 't3' }, { direction: 'backward', limit: 5 }).toArray()),
    category: positions(await db.read({ category: 'other' }).toArray()),
    query: positions(await db.read({ query: Query.types('B').withTags('t2') }, { limit: 20 }).toArray()),
    lastQuery: positions(await db.read({ query: Query.tags('stream:s') }, { direction: 'backward', limit: 1 }).toArray()),
    // toArray() reads in one batch: the streaming read must agree with it.
    queryStreamed: await (async () => {
      const seen: number[] = [];
      for await (const recorded of db.read({ query: Query.types('B').withTags('t2') }, { limit: 20 })) seen.push(recorded.position);
      return seen;
    })(),
    exotic: (await db.read({ tag: 'exotic' }).toArray()).map((event) => event.data),
  };
}

/**
 * Runs `test` on a populated database, closed and reopened with `extra` options so that nothing is
 * cached and every check must read the indexes; removes it afterwards.
 */
async function withPopulatedStore(backend: () => OptionsFor, extra: FactStoreOptions, test: (db: FactStore) => Promise<void>): Promise<void> {
  const optionsFor = backend();
  const dir = mkdtempSync(join(tmpdir(), 'factstore-maint-'));
  try {
    const path = join(dir, 'db');
    const populated = await FactStore.open(path, optionsFor(path));
    await populate(populated);
    await populated.close();
    const db = await FactStore.open(path, { ...optionsFor(path), ...extra });
    try {
      await test(db);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.each([
  ['memory-level', memoryBackend],
  ['classic-level', classicBackend],
] as const)('maintenance is invisible (%s)', (_name, backend: () => OptionsFor) => {
  it('rebuildIndexes(): reads, versions, expectations, conditions and retries see every acknowledged event; appends go on', async () => {
    await withPopulatedStore(backend, {}, async (db) => {
      const before = await observe(db);
      expect(before.sVersion).toBe(1);
      expect(before.exotic).toEqual([EXOTIC_DATA()]);
      expect(Object.keys(before.exotic[0] as object)).toContain('__proto__');
      expect(({} as { polluted?: unknown }).polluted).toBeUndefined();

      const during: Promise<unknown>[] = [];
      const appendsResolvedDuringRebuild: boolean[] = [];
      let rebuildDone = false;
      let progressCalls = 0;
      const rebuilding = db
        .rebuildIndexes({
          onProgress: () => {
            progressCalls++;
            if (progressCalls !== 1) return;
            during.push(expectFactError(() => db.appendStream('s', { type: 'Again' }, { expect: 'none' }), 'FACT_CONCURRENCY'));
            during.push(expectFactError(() => db.appendStream('s', { type: 'Again' }, { expect: 0 }), 'FACT_CONCURRENCY'));
            during.push(
              expectFactError(() => db.append({ type: 'Claim' }, { failIfEventsMatch: Query.tags('stream:s'), after: 0 }), 'FACT_CONCURRENCY'),
            );
            // An identical retry by id returns the original result.
            during.push(
              db
                .appendStream('s', { type: 'Opened', id: 'open-s', tags: ['stream:s'], data: { k: 'opened' } }, { expect: 'none' })
                .then((result) => expect(result).toEqual({ position: EVENTS + 2, streamPosition: 1, count: 1 })),
            );
            during.push(db.append({ type: 'Exotic', id: 'exotic', tags: ['exotic'], data: EXOTIC_DATA() }).then((result) => expect(result).toEqual({ position: EVENTS + 1, count: 1 })));
            during.push(observe(db).then((seen) => expect(seen).toEqual(before)));
            for (let index = 0; index < 5; index++) {
              during.push(
                db.append({ type: 'During', tags: ['during'] }).then(() => {
                  appendsResolvedDuringRebuild.push(!rebuildDone);
                }),
              );
            }
          },
        })
        .then((result) => {
          rebuildDone = true;
          return result;
        });
      await Promise.all(during.map((promise) => promise.then(() => undefined)));
      expect(await rebuilding).toEqual({ events: EVENTS + 4 });
      await Promise.all(during);
      expect(progressCalls).toBeGreaterThan(1);
      // Appends were not held back for the whole rebuild.
      expect(appendsResolvedDuringRebuild).toContain(true);

      const report = await db.verify();
      expect(report.problems).toEqual([]);
      const after = await observe(db);
      expect({ ...after, head: before.head, typeD: before.typeD }).toEqual(before);
      expect(after.head).toBe(before.head + 5);
      expect((await db.read({ tag: 'during' }).toArray()).length).toBe(5);
    });
  });

  it('a data-index build on first use: other reads and appends go on, and the query sees every acknowledged event', async () => {
    const builds: number[] = [];
    let buildDone = false;
    const onIndexBuild = (progress: { events: number; total: number }) => {
      builds.push(progress.events);
      if (progress.events === progress.total) buildDone = true;
    };
    await withPopulatedStore(backend, { onIndexBuild }, async (db) => {
      const before = await observe(db);
      const building = db.read({ query: Query.data({ k: 3 }) }).toArray();
      // Issued while the build runs: they must neither wait for it nor see anything else.
      const appended = await db.append({ type: 'During', data: { k: 3 } });
      const appendResolvedFirst = !buildDone;
      expect(await observe(db)).toEqual({ ...before, head: before.head + 1 });
      const matched = await building;
      expect(builds.length).toBeGreaterThan(1);
      expect(appendResolvedFirst).toBe(true);
      const expected = (await db.read().toArray()).filter((event) => (event.data as { k?: unknown } | null)?.k === 3);
      // The append made during the build is matched once the build is done.
      expect((await db.read({ query: Query.data({ k: 3 }) }).toArray()).map((event) => event.position)).toEqual(expected.map((event) => event.position));
      expect(expected.at(-1)!.position).toBe(appended.position);
      expect(matched.map((event) => event.position)).toEqual(expected.map((event) => event.position).filter((position) => position <= matched.at(-1)!.position));
      expect((await db.verify()).problems).toEqual([]);
    });
  });
});

describe('verify() beside checkpoints and appends', () => {
  it('gives a correct answer while checkpoints delete segments under it, and does not hold appends for its whole scan', async () => {
    const optionsFor = memoryBackend();
    const options = { ...optionsFor('/db'), wal: { segmentSizeBytes: 4096, retainSegments: 0 }, checkpointEveryBytes: 4096 };
    const db = await FactStore.open('/db', options);
    for (let batch = 0; batch < 40; batch++) {
      await db.append(Array.from({ length: 50 }, (_, index) => ({ type: 'T', tags: [`t${index % 3}`], data: { batch } })));
    }
    let verifyDone = false;
    const verifying = db.verify().then((report) => {
      verifyDone = true;
      return report;
    });
    let resolvedDuringVerify = 0;
    let appended = 0;
    while (!verifyDone && appended < 400) {
      await db.append(Array.from({ length: 20 }, () => ({ type: 'During', tags: ['during'] })));
      appended++;
      if (!verifyDone) resolvedDuringVerify++;
    }
    const report = await verifying;
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(resolvedDuringVerify).toBeGreaterThan(0);
    const final = await db.verify();
    expect(final.problems).toEqual([]);
    expect(final.events).toBe(2000 + appended * 20);
    await db.close();
  });
});
