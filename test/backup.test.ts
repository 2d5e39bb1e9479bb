/**
 * db.backup(dest) while appends go on, and FactStore.restore(backup, path): a backup holds exactly
 * the events through one head, verifies clean, reads identically, keeps consumers' positions, and
 * a restore never overwrites a database unless forced, nor one that is open.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore, Query } from '../src/index.js';
import { expectFactError, memoryBackend } from './support/backends.js';

describe('backup and restore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'factstore-backup-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes a consistent backup during concurrent appends; restored, it verifies clean and reads identically', async () => {
    const db = await FactStore.open(join(dir, 'db'), { indexes: { data: ['n'] } });
    for (let batch = 0; batch < 20; batch++) {
      await db.append(Array.from({ length: 100 }, (_, index) => ({ type: index % 2 ? 'Odd' : 'Even', data: { n: index, bytes: Uint8Array.of(batch, index) }, tags: [`t${index % 7}`] })));
    }
    const consumer = db.consumer('projector');
    for (let taken = 0; taken < 10; taken++) await consumer.next();
    await consumer.next(); // acknowledges 10
    await consumer.close();
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, writer) => {
      for (let round = 0; writing; round++) await db.appendStream(`w-${writer}`, { type: 'During', data: { round }, tags: ['during'] });
    });
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    const backup = await db.backup(join(dir, 'backup'));
    writing = false;
    await Promise.all(writers);
    expect(backup.position).toBeGreaterThanOrEqual(2000);
    const head = await db.head();
    expect(head).toBeGreaterThan(backup.position);
    const original = (await db.read().toArray()).slice(0, backup.position);
    const originalTags = (await db.read({ tag: 'during' }).toArray()).filter((event) => event.position <= backup.position);
    await db.close();

    const restored = await FactStore.restore(join(dir, 'backup'), join(dir, 'restored'));
    expect(restored.position).toBe(backup.position);
    for (const path of [join(dir, 'backup'), join(dir, 'restored')]) {
      const copy = await FactStore.open(path, { createIfMissing: false });
      expect(await copy.head()).toBe(backup.position);
      expect(await copy.read().toArray()).toEqual(original);
      expect(await copy.read({ tag: 'during' }).toArray()).toEqual(originalTags);
      expect(await copy.read({ query: Query.items({ data: { n: 3 } }) }).toArray()).toEqual(original.filter((event) => (event.data as { n?: number }).n === 3));
      expect(await copy.consumers()).toEqual([{ name: 'projector', position: 10, lag: backup.position - 10, live: false }]);
      expect((await copy.verify()).problems).toEqual([]);
      // It is a database of its own: it takes appends.
      expect((await copy.append({ type: 'After' })).position).toBe(backup.position + 1);
      await copy.close();
    }
    // Nothing half-written is left next to them.
    expect(readdirSync(dir).sort()).toEqual(['backup', 'db', 'restored']);
  });

  it('backs up a memory-level store to files, and an empty store', async () => {
    const options = memoryBackend()('/db');
    const db = await FactStore.open('/db', options);
    const empty = await db.backup(join(dir, 'empty'));
    expect(empty.position).toBe(0);
    await db.append([{ type: 'A', data: { at: new Date(5) } }, { type: 'B' }]);
    await db.backup(join(dir, 'two'));
    const expected = await db.read().toArray();
    await db.close();
    const copy = await FactStore.open(join(dir, 'two'), { createIfMissing: false });
    expect(await copy.read().toArray()).toEqual(expected);
    await copy.close();
    const none = await FactStore.open(join(dir, 'empty'), { createIfMissing: false });
    expect(await none.head()).toBe(0);
    await none.close();
  });

  it('refuses to overwrite: an existing backup destination, a database without force, an open database', async () => {
    const db = await FactStore.open(join(dir, 'db'));
    await db.append({ type: 'A' });
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full', 'file'), 'x');
    await expectFactError(() => db.backup(join(dir, 'full')), 'FACT_INVALID_ARGUMENT', /exists/);
    await expectFactError(() => db.backup(join(dir, 'db', 'inside')), 'FACT_INVALID_ARGUMENT', /inside the database/);
    await expectFactError(() => db.backup(''), 'FACT_INVALID_ARGUMENT');
    await db.backup(join(dir, 'backup'));
    await expectFactError(() => FactStore.restore(join(dir, 'backup'), join(dir, 'db')), 'FACT_INVALID_ARGUMENT', /force/);
    await expectFactError(() => FactStore.restore(join(dir, 'backup'), join(dir, 'db'), { force: true }), 'FACT_LOCKED');
    await expectFactError(() => FactStore.restore(join(dir, 'missing'), join(dir, 'new')), 'FACT_NOT_FOUND');
    expect(existsSync(join(dir, 'new'))).toBe(false);
    await db.append({ type: 'B' });
    await db.close();
    // Forced, on a closed database: replaced by the backup (one event, not two).
    await FactStore.restore(join(dir, 'backup'), join(dir, 'db'), { force: true });
    const restored = await FactStore.open(join(dir, 'db'), { createIfMissing: false });
    expect((await restored.read().toArray()).map((event) => event.type)).toEqual(['A']);
    await restored.close();
    expect(readdirSync(dir).sort()).toEqual(['backup', 'db', 'full']);
  });

  it('a backup runs alongside a rebuild and a checkpointing writer without changing what they see', async () => {
    const db = await FactStore.open(join(dir, 'db'), { checkpointEveryBytes: 4096 });
    await db.append(Array.from({ length: 500 }, (_, index) => ({ type: 'E', tags: [`t${index % 3}`] })));
    const [backup] = await Promise.all([db.backup(join(dir, 'backup')), db.rebuildIndexes(), db.append({ type: 'Concurrent', tags: ['t1'] })]);
    expect((await db.verify()).problems).toEqual([]);
    const expected = (await db.read({ tag: 't1' }).toArray()).filter((event) => event.position <= backup.position);
    await db.close();
    const copy = await FactStore.open(join(dir, 'backup'), { createIfMissing: false });
    expect(await copy.read({ tag: 't1' }).toArray()).toEqual(expected);
    expect((await copy.verify()).problems).toEqual([]);
    await copy.close();
  });
});
