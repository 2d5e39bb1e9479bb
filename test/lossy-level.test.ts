/**
 * LossyLevel's crash model (src/testing/lossy-level.ts): what a power loss may and may not take,
 * checked over many seeds. That it behaves like classic-level without crashes is
 * test/lossy-level-differential.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES, LossyLevel, mulberry32 } from '../src/testing/index.js';

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;
// LevelDB's write option (abstract-level's types do not list it).
const SYNCED = { ...VIEW, sync: true };
const SEEDS = 300;
const key = (n: number) => Uint8Array.of(n);

/** The keys (as numbers) a power loss with `seed` leaves of `db`, with the crash's report. */
async function afterPowerLoss(db: LossyLevel, seed: number) {
  const crashed = db.crash(mulberry32(seed));
  await crashed.open();
  const keys = (await crashed.keys(VIEW).all()).map((bytes) => bytes[0]!);
  await crashed.close();
  return { keys, report: crashed.crashReport! };
}

describe('LossyLevel crash model', () => {
  it('a synced write survives every power loss; an earlier unsynced one in the same log with it, one in an older log not always (the log switch)', async () => {
    const db = new LossyLevel();
    await db.open();
    await db.put(key(1), key(1), VIEW);
    await db.put(key(2), key(2), SYNCED);
    await db.put(key(3), key(3), VIEW);
    const outcomes = new Set<string>();
    for (let seed = 0; seed < SEEDS; seed++) {
      const { keys, report } = await afterPowerLoss(db, seed);
      expect(keys, `seed ${seed}`).toContain(2);
      // No log switch before the synced write: its fsync covered the earlier write.
      if (report.logSwitch === 0) expect(keys, `seed ${seed}`).toContain(1);
      outcomes.add(keys.join(','));
    }
    // The log-switch case (1 lost, 2 kept) and holes after the sync are all reachable.
    expect([...outcomes].sort()).toEqual(['1,2', '1,2,3', '2', '2,3']);
    await db.close();
  });

  it('without a synced write, any subset of the unsynced batches may survive (holes), a barrier keeps all before it', async () => {
    const db = new LossyLevel();
    await db.open();
    await db.put(key(9), key(9), VIEW);
    await db.compactRange(key(0), key(0));
    for (const n of [1, 2, 3]) await db.put(key(n), key(n), VIEW);
    const outcomes = new Set<string>();
    for (let seed = 0; seed < SEEDS; seed++) {
      const { keys } = await afterPowerLoss(db, seed);
      expect(keys, `seed ${seed}`).toContain(9);
      outcomes.add(keys.filter((n) => n !== 9).join(','));
    }
    expect(outcomes.size).toBe(8);
    await db.close();
  });

  it('clear() is not atomic: a power loss can keep part of it; with classic-level’s 16 KiB batches a small clear is one batch', async () => {
    for (const [clearBatchSizeBytes, partial] of [
      [0, true],
      [CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES, false],
    ] as const) {
      const db = new LossyLevel({ clearBatchSizeBytes });
      await db.open();
      for (const n of [1, 2, 3]) await db.put(key(n), key(n), VIEW);
      await db.compactRange(key(0), key(0));
      await db.clear({ keyEncoding: 'view', gte: key(1), lte: key(3) });
      expect(await db.keys(VIEW).all()).toEqual([]);
      const outcomes = new Set<string>();
      for (let seed = 0; seed < SEEDS; seed++) outcomes.add((await afterPowerLoss(db, seed)).keys.join(','));
      const partials = [...outcomes].filter((outcome) => outcome !== '' && outcome !== '1,2,3');
      expect(partials.length > 0, `clearBatchSizeBytes ${clearBatchSizeBytes}: partial clears ${JSON.stringify(partials)}`).toBe(partial);
      await db.close();
    }
  });

  it('a clear whose second batch fails leaves its first batch done, and rejects like classic-level', async () => {
    const db = new LossyLevel();
    await db.open();
    for (const n of [1, 2, 3]) await db.put(key(n), key(n), VIEW);
    db.failWrite({ code: 'ENOSPC', after: 1 });
    await expect(db.clear({ keyEncoding: 'view' })).rejects.toMatchObject({ code: 'LEVEL_IO_ERROR', message: expect.stringContaining('No space left on device') as unknown });
    expect((await db.keys(VIEW).all()).map((bytes) => bytes[0])).toEqual([2, 3]);
    await db.close();
  });

  it('a failed write is not in the database, but may come back after a crash (its log record may have been written), never after a flush', async () => {
    const db = new LossyLevel();
    await db.open();
    await db.put(key(1), key(1), VIEW);
    db.failWrite({ code: 'EIO', syncOnly: true });
    await expect(db.put(key(2), key(2), SYNCED)).rejects.toMatchObject({ code: 'LEVEL_IO_ERROR' });
    expect(await db.get(key(2), VIEW)).toBeUndefined();
    const outcomes = new Set<string>();
    for (let seed = 0; seed < SEEDS; seed++) {
      outcomes.add(`power:${(await afterPowerLoss(db, seed)).keys.join(',')}`);
      const killed = db.crash(mulberry32(seed), 'process');
      await killed.open();
      outcomes.add(`process:${(await killed.keys(VIEW).all()).map((bytes) => bytes[0]).join(',')}`);
      await killed.close();
    }
    expect([...outcomes].sort()).toEqual(['power:', 'power:1', 'power:1,2', 'power:2', 'process:1', 'process:1,2']);
    await db.compactRange(key(0), key(0));
    for (let seed = 0; seed < 50; seed++) expect((await afterPowerLoss(db, seed)).keys).toEqual([1]);
    await db.close();
  });
});
