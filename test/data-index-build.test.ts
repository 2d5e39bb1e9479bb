/**
 * A data-index build that fails in the process (a LevelDB write error) leaves entries behind;
 * the next build of the field (which clears them first) gives exactly the entries and the reads
 * a clean build gives. The crash-point suite seldom reaches this retry (a crash never leaves a
 * failed build in a live process: the next open clears unrecorded fields), so it is tested here.
 */
import { describe, expect, it } from 'vitest';
import { FactStore, Query, isFactError } from '../src/index.js';
import { LossyLevel, SimFileSystem } from '../src/testing/index.js';
import { KeySpace } from '../src/storage/keys.js';
import { REBUILD_BATCH_EVENTS } from '../src/indexes/derive.js';
import { VIEW } from '../src/storage/level.js';

async function dataKeys(level: LossyLevel): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of level.keys<Uint8Array>({ ...VIEW, gte: Uint8Array.of(KeySpace.data), lt: Uint8Array.of(KeySpace.data + 1) })) {
    keys.push(Buffer.from(key).toString('hex'));
  }
  return keys;
}

describe('data-index build after a failed one', () => {
  it('clears what the failed build wrote, then builds the same entries a clean build does', async () => {
    const events = Array.from({ length: REBUILD_BATCH_EVENTS + 600 }, (_, n) => ({ type: 'Enrolled', tags: [`course:c${n % 7}`], data: { course: `c${n % 7}`, seat: n } }));
    const query = Query.items({ types: ['Enrolled'], data: { course: 'c3' } });

    // The reference: a clean build on the same events.
    const cleanLevel = new LossyLevel();
    const clean = await FactStore.open('/db', { fs: new SimFileSystem(), level: cleanLevel });
    await clean.append(events);
    const expected = [];
    for await (const event of clean.read({ query })) expected.push(event.position);
    await clean.verify();
    const expectedKeys = await dataKeys(cleanLevel);
    await clean.close();

    const level = new LossyLevel();
    const db = await FactStore.open('/db', { fs: new SimFileSystem(), level });
    await db.append(events);
    await db.verify(); // the ledger is in LevelDB: the next writes are the build's
    level.failWrite({ code: 'EIO', after: 1 });
    const failed = await (async () => {
      try {
        for await (const event of db.read({ query })) void event;
        return null;
      } catch (error) {
        return error;
      }
    })();
    expect(isFactError(failed), String(failed)).toBe(true);
    // The first batch of the build is there, unrecorded: nothing reads it.
    expect((await dataKeys(level)).length).toBeGreaterThan(0);
    expect((await dataKeys(level)).length).toBeLessThan(expectedKeys.length);

    const positions = [];
    for await (const event of db.read({ query })) positions.push(event.position);
    expect(positions).toEqual(expected);
    expect(await dataKeys(level)).toEqual(expectedKeys);
    expect((await db.verify()).ok).toBe(true);
    await db.close();
  });
});
