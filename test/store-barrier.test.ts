/**
 * The durability barrier (src/storage/barrier.ts): a checkpoint advances the WAL only past a
 * barrier that succeeded, a failed one is reported (appends, close, open), and a `level` option
 * without a barrier is refused at open. LossyLevel plays LevelDB: its flush can fail the way
 * LevelDB's CompactRange does (the promise resolves, the next write fails), and so can writes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { FactStore } from '../src/index.js';
import { LossyLevel, SimFileSystem } from '../src/testing/index.js';
import type { FactStoreOptions, LevelDatabase } from '../src/index.js';
import { indexKey, KeySpace, ledgerKey, metaKey, u64 } from '../src/storage/keys.js';
import { compactRangeBarrier } from '../src/storage/barrier.js';
import { VIEW } from '../src/storage/level.js';
import { expectFactError, newMemoryLevel } from './support/backends.js';

const DB = '/db';
const WAL_DIR = '/db/wal';
const NO_CHECKPOINTS = 1 << 30;

/** The WAL's checkpoint file and its segment names: what a checkpoint changes. */
async function walState(fs: SimFileSystem): Promise<{ checkpoint: string | null; segments: string[] }> {
  const checkpoint = await fs.readFile(`${WAL_DIR}/CHECKPOINT`);
  const segments = (await fs.readdir(WAL_DIR)).filter((name) => name.endsWith('.log'));
  return { checkpoint: checkpoint === null ? null : Buffer.from(checkpoint).toString('hex'), segments };
}

/** The checkpoint did not move and no segment was deleted. */
async function expectNoCheckpoint(fs: SimFileSystem, before: Awaited<ReturnType<typeof walState>>): Promise<void> {
  const after = await walState(fs);
  expect(after.checkpoint).toBe(before.checkpoint);
  for (const segment of before.segments) expect(after.segments).toContain(segment);
}

const turns = async (count: number) => {
  for (let turn = 0; turn < count; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
};

const events = (count: number, round: number) => Array.from({ length: count }, (_, n) => ({ type: 'Filled', data: { round, n, pad: 'x'.repeat(64) } }));

/** A store with 40 events whose close checkpointed them, reopened. */
async function checkpointedStore(extra: FactStoreOptions = {}) {
  const fs = new SimFileSystem();
  const level = new LossyLevel();
  const options: FactStoreOptions = { fs, level, wal: { segmentSizeBytes: 4096 }, ...extra };
  let db = await FactStore.open(DB, options);
  for (let round = 0; round < 4; round++) await db.append(events(10, round));
  await db.close();
  db = await FactStore.open(DB, options);
  return { fs, level, db, options };
}

/** After a failed barrier: a fresh LevelDB object (like a reopen, it has no background error) and everything acknowledged is there. */
async function expectRecovered(fs: SimFileSystem, level: LossyLevel, count: number): Promise<void> {
  const reopened = await FactStore.open(DB, { fs, level: level.crash(() => 0.5, 'process'), wal: { segmentSizeBytes: 4096 } });
  expect(await reopened.head()).toBe(count);
  expect((await reopened.read().toArray()).length).toBe(count);
  expect((await reopened.verify()).problems).toEqual([]);
  await reopened.close();
}

describe('the durability barrier', () => {
  it('a checkpoint flushes LevelDB between two synced writes, then advances the WAL', async () => {
    const { fs, level, db } = await checkpointedStore();
    const before = await walState(fs);
    const flushes = level.barriers;
    const syncWrites = level.syncWrites;
    await db.append(events(10, 9));
    await db.close();
    expect(level.barriers).toBe(flushes + 1);
    expect(level.syncWrites).toBe(syncWrites + 2);
    expect((await walState(fs)).checkpoint).not.toBe(before.checkpoint);
  });

  it('a flush that fails silently (LevelDB drops its status) fails the background checkpoint: the WAL checkpoint and segments stay, appends fail with FACT_IO, close reports it', async () => {
    // Every 10-event append logs more than 512 bytes, so each one starts a background checkpoint.
    const { fs, level, db } = await checkpointedStore({ checkpointEveryBytes: 512 });
    const before = await walState(fs);
    await db.append(events(10, 10));
    await db.verify(); // waits for the apply: the next checkpoint has something to cover
    level.failFlush('ENOSPC');
    await db.append(events(10, 11));
    await db.append(events(10, 12));
    await turns(50);
    const error = await expectFactError(() => db.append({ type: 'After' }), 'FACT_IO', /durability barrier.*\/db/);
    expect((error.cause as { code?: string }).code).toBe('LEVEL_IO_ERROR');
    // Reads still answer, from LevelDB and the unapplied tail.
    expect((await db.read().toArray()).length).toBe(70);
    await expectNoCheckpoint(fs, before);
    await expectFactError(() => db.close(), 'FACT_IO', /durability barrier/);
    await expectFactError(() => db.head(), 'FACT_CLOSED');
    await expectNoCheckpoint(fs, before);
    await expectRecovered(fs, level, 70);
  });

  it('a failed final checkpoint makes close reject with FACT_IO; the WAL checkpoint stays and the handle is closed', async () => {
    const { fs, level, db } = await checkpointedStore({ checkpointEveryBytes: NO_CHECKPOINTS });
    const before = await walState(fs);
    await db.append(events(10, 20));
    level.failFlush('EIO');
    const error = await expectFactError(() => db.close(), 'FACT_IO', /durability barrier of the LevelDB database of \/db failed/);
    expect(error.details).toMatchObject({ path: DB });
    await expectFactError(() => db.append({ type: 'Late' }), 'FACT_CLOSED');
    await expectNoCheckpoint(fs, before);
    await expectRecovered(fs, level, 50);
  });

  it('a failed fsync of LevelDB’s log (a synced write failing with EIO) fails the barrier', async () => {
    const { fs, level, db } = await checkpointedStore({ checkpointEveryBytes: NO_CHECKPOINTS });
    const before = await walState(fs);
    await db.append(events(10, 30));
    level.failWrite({ code: 'EIO', syncOnly: true, sticky: true });
    await expectFactError(() => db.close(), 'FACT_IO', /durability barrier/);
    await expectNoCheckpoint(fs, before);
    await expectRecovered(fs, level, 50);
  });

  it('rebuildIndexes() needs no barrier (it never clears a right entry); a LevelDB write failing under it rejects it with FACT_IO and changes nothing', async () => {
    const { fs, level, db } = await checkpointedStore({ checkpointEveryBytes: NO_CHECKPOINTS });
    const before = await db.read().toArray();
    const flushes = level.barriers;
    level.failWrite({ code: 'EIO', after: 0 });
    await expectFactError(() => db.rebuildIndexes(), 'FACT_IO', /index maintenance of \/db failed/);
    expect(await db.read().toArray()).toEqual(before);
    expect((await db.verify()).problems).toEqual([]);
    expect(await db.rebuildIndexes()).toEqual({ events: 40 });
    expect(level.barriers).toBe(flushes);
    await db.close();
    await expectRecovered(fs, level, 40);
  });

  describe('a failed barrier during open fails the open with FACT_IO naming the path', () => {
    it('the first open (the new id seed is made durable)', async () => {
      const fs = new SimFileSystem();
      const level = new LossyLevel();
      level.failFlush();
      await expectFactError(() => FactStore.open(DB, { fs, level }), 'FACT_IO', /durability barrier of the LevelDB database of \/db failed/);
      // Nothing was checkpointed on a barrier that failed.
      expect((await walState(fs)).checkpoint).toBeNull();
    });

    it('the upgrade of a format-1 database (the M rebuilding marker is made durable)', async () => {
      const { level, db, options } = await checkpointedStore();
      await db.close();
      await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(1), VIEW);
      level.failFlush();
      await expectFactError(() => FactStore.open(DB, options), 'FACT_IO', /durability barrier.*\/db/);
    });

    it('an interrupted rebuild redone at open (M rebuilding present)', async () => {
      const { level, db, options } = await checkpointedStore();
      await db.close();
      await level.put<Uint8Array, Uint8Array>(metaKey('rebuilding'), new Uint8Array(0), VIEW);
      level.failFlush();
      await expectFactError(() => FactStore.open(DB, options), 'FACT_IO', /durability barrier.*\/db/);
    });

    it('the checkpoint after replaying the WAL', async () => {
      const { fs, level, db, options } = await checkpointedStore({ checkpointEveryBytes: NO_CHECKPOINTS });
      await db.append(events(10, 40));
      // A process crash: the WAL holds records after its checkpoint, which the next open replays.
      const crashed = level.crash(() => 0.5, 'process');
      fs.crash();
      const before = await walState(fs);
      crashed.failFlush();
      await expectFactError(() => FactStore.open(DB, { ...options, level: crashed }), 'FACT_IO', /durability barrier.*\/db/);
      await expectNoCheckpoint(fs, before);
    });
  });
});

describe('the level option and levelDurability', () => {
  it('a database without a barrier (memory-level) is refused at open with FACT_INVALID_ARGUMENT, and nothing is written', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    await expectFactError(() => FactStore.open(DB, { fs, level }), 'FACT_INVALID_ARGUMENT', /levelDurability/);
    expect(await fs.exists(DB)).toBe(false);
    expect(await level.keys().all()).toEqual([]);
  });

  it("levelDurability: 'volatile' opens it, and the checkpoints need no barrier", async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await FactStore.open(DB, { fs, level, levelDurability: 'volatile' });
    await db.append({ type: 'A' });
    await db.close();
    expect((await walState(fs)).checkpoint).not.toBeNull();
  });

  it('a barrier function is called at every checkpoint, and its failure keeps the WAL checkpoint', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const calls: LevelDatabase[] = [];
    let failing = false;
    const levelDurability = (db: LevelDatabase) => {
      calls.push(db);
      return failing ? Promise.reject(new Error('simulated barrier failure')) : Promise.resolve();
    };
    const db = await FactStore.open(DB, { fs, level, levelDurability, checkpointEveryBytes: NO_CHECKPOINTS });
    await db.append({ type: 'A' });
    await db.close();
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.every((db) => db === level)).toBe(true);
    const before = await walState(fs);
    const reopened = await FactStore.open(DB, { fs, level, levelDurability, checkpointEveryBytes: NO_CHECKPOINTS });
    await reopened.append({ type: 'B' });
    failing = true;
    const error = await expectFactError(() => reopened.close(), 'FACT_IO', /durability barrier/);
    expect((error.cause as Error).message).toBe('simulated barrier failure');
    await expectNoCheckpoint(fs, before);
  });

  it('bad levelDurability values are FACT_INVALID_ARGUMENT before anything is written', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const bad = { fs, level, levelDurability: 'none' } as unknown as FactStoreOptions;
    await expectFactError(() => FactStore.open(DB, bad), 'FACT_INVALID_ARGUMENT', /levelDurability/);
    // Without `level`, factstore's own classic-level always gets the real barrier.
    await expectFactError(() => FactStore.open(DB, { fs, levelDurability: 'volatile' }), 'FACT_INVALID_ARGUMENT', /levelDurability.*level/);
    expect(await fs.exists(DB)).toBe(false);
  });
});

describe("the barrier on classic-level (LevelDB 1.20's CompactRange)", () => {
  it('flushes the memtable to one more table file and compacts nothing, so its cost does not grow with the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'factstore-barrier-'));
    // level's Level is classic-level's ClassicLevel in Node; its types leave out what this test uses.
    const db = new Level<Uint8Array, Uint8Array>(dir, VIEW) as unknown as Parameters<typeof compactRangeBarrier>[0] & { getProperty(name: string): string };
    try {
      await db.open();
      const tables = () => Array.from({ length: 7 }, (_, level) => Number(db.getProperty(`leveldb.num-files-at-level${level}`))).reduce((sum, files) => sum + files, 0);
      for (let round = 0; round < 3; round++) {
        // Keys around `M` like an apply batch's: ledger chunks, `M applied`, tag entries.
        const batch = db.batch();
        for (let index = 0; index < 200; index++) {
          batch.put<Uint8Array, Uint8Array>(ledgerKey(round * 200 + index), new Uint8Array(64), VIEW);
          batch.put<Uint8Array, Uint8Array>(indexKey(KeySpace.tag, new TextEncoder().encode(`t:${index}`), round * 200 + index), u64(round), VIEW);
        }
        batch.put<Uint8Array, Uint8Array>(metaKey('applied'), u64(round), VIEW);
        await batch.write();
        await compactRangeBarrier(db);
        // A compaction would have merged the new table with an older one.
        expect(tables()).toBe(round + 1);
      }
      expect((await db.get<Uint8Array, Uint8Array>(metaKey('applied'), VIEW))?.[7]).toBe(2);
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
