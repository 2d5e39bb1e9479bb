/**
 * Power loss in the middle of index maintenance (rebuildIndexes, a data-index build): the
 * `M rebuilding` marker makes recovery redo the rebuild, so no index entry is lost for good.
 */
import { describe, expect, it } from 'vitest';
import { FactStore, Query } from '../src/index.js';
import { metaKey } from '../src/ledger/keys.js';
import { SimFileSystem } from '../src/wal/sim-file-system.js';
import { LossyLevel, mulberry32 } from '../property-tests/lossy-level.js';

const SEEDS = 40;
const TYPES = ['A', 'B', 'C'];

async function populatedStore(seed: number) {
  const fs = new SimFileSystem({ seed });
  const level = new LossyLevel();
  const options = { fs, level, wal: { segmentSizeBytes: 4096 }, checkpointEveryBytes: 2048 };
  let db = await FactStore.open('/db', options);
  for (let batch = 0; batch < 6; batch++) {
    await db.append(
      Array.from({ length: 50 }, (_, index) => ({
        type: TYPES[(batch + index) % 3]!,
        tags: [`t${index % 5}`],
        data: { k: index % 4 },
      })),
    );
  }
  // Close checkpoints: every entry is now older than the checkpoint, out of WAL replay's reach.
  await db.close();
  db = await FactStore.open('/db', options);
  return { fs, level, db };
}

async function turns(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function expectHealthy(db: FactStore): Promise<void> {
  const report = await db.verify();
  expect(report.problems).toEqual([]);
  expect(report.events).toBe(300);
  const all = await db.read().toArray();
  for (const type of TYPES) {
    expect((await db.read({ type }).toArray()).map((event) => event.position)).toEqual(all.filter((event) => event.type === type).map((event) => event.position));
  }
}

describe('a crash during index maintenance', () => {
  for (const [name, start] of [
    ['rebuildIndexes', (db: FactStore) => db.rebuildIndexes()],
    ['a data-index build on first use', (db: FactStore) => db.read({ query: Query.data({ k: 1 }) }).toArray()],
  ] as const) {
    it(`is recovered by a full rebuild: ${name}`, async () => {
      let crashedMidway = 0;
      for (let seed = 1; seed <= SEEDS; seed++) {
        const { fs, level, db } = await populatedStore(seed);
        const work = (start(db) as Promise<unknown>).catch(() => undefined);
        await turns(seed % 12);
        const crashed = level.crash(mulberry32(seed));
        fs.crash();
        await crashed.open();
        if ((await crashed.get(metaKey('rebuilding'), { keyEncoding: 'view', valueEncoding: 'view' })) !== undefined) crashedMidway++;
        await work;
        const reopened = await FactStore.open('/db', { fs, level: crashed, wal: { segmentSizeBytes: 4096 } });
        await expectHealthy(reopened);
        const expected = (await reopened.read().toArray()).filter((event) => (event.data as { k: number }).k === 1);
        expect((await reopened.read({ query: Query.data({ k: 1 }) }).toArray()).map((event) => event.position)).toEqual(expected.map((event) => event.position));
        await reopened.close();
      }
      // The seeds must really cut maintenance short, or this test proves nothing.
      expect(crashedMidway).toBeGreaterThan(SEEDS / 4);
    });
  }
});
