/**
 * Recovery against what LevelDB and the WAL kept. Sync 'none' and 'interval' acknowledge appends before the WAL is durable. A power loss may
 * then lose the newest acknowledged appends (as the README says), but must never leave a
 * database that refuses to open: LevelDB, which makes tables durable on its own, must never
 * hold an event the WAL could still lose.
 */
import { describe, expect, it } from 'vitest';
import { FactStore } from '../src/index.js';
import { LossyLevel, mulberry32, SimFileSystem } from '../src/testing/index.js';
import { ledgerKey, metaKey, u64Pair } from '../src/storage/keys.js';
import { VIEW } from '../src/storage/level.js';
import { expectFactError } from './support/backends.js';
import { readU64BE } from '../src/bytes.js';

const SEEDS = 30;

async function turns(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function waitMs(ms: number): Promise<void> {
  await new Promise<void>((resolve) => setTimeout(resolve, ms));
}

// 'interval' acknowledges at the timed fdatasync, so it may lose nothing acknowledged; 'none'
// acknowledges once written and may lose the newest acknowledged appends.
describe.each([
  ['none', {}, true],
  ['interval', { syncIntervalMs: 10 }, false],
] as const)("sync '%s': a power loss", (sync, walOptions, losesAcknowledged) => {
  it('never leaves a database that refuses to open, and what survives is a gapless prefix', async () => {
    let lostSome = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const fs = new SimFileSystem({ seed });
      const level = new LossyLevel();
      const options = { fs, level, wal: { sync, ...walOptions, segmentSizeBytes: 4096 }, checkpointEveryBytes: 1 << 30 };
      const db = await FactStore.open('/db', options);
      let acknowledged = 0;
      for (let batch = 0; batch < 8; batch++) {
        const { position } = await db.append(Array.from({ length: 20 }, (_, index) => ({ type: 'T', tags: [`t${index % 3}`], data: { batch, index } })));
        acknowledged = position;
        // Give the background apply time to write LevelDB (its delay is 2 ms).
        // (the last one is crashed at once: with sync 'none' its record may not be synced yet).
        if (batch < 7) await (batch % 2 === 0 ? waitMs(3) : turns(seed % 5));
      }
      // LevelDB keeps everything it was given (its tables are flushed on its own), the WAL keeps
      // only what was synced: the case where LevelDB could get ahead of the WAL.
      const crashedLevel = level.crash(() => 0.85); // strategy 'all'
      fs.crash();
      const reopened = await FactStore.open('/db', { ...options, level: crashedLevel });
      const head = await reopened.head();
      if (losesAcknowledged) expect(head).toBeLessThanOrEqual(acknowledged);
      else expect(head).toBe(acknowledged);
      if (head < acknowledged) lostSome++;
      const report = await reopened.verify();
      expect(report.problems).toEqual([]);
      expect(report.events).toBe(head);
      const events = await reopened.read().toArray();
      expect(events.map((event) => event.position)).toEqual(Array.from({ length: head }, (_, index) => index + 1));
      await reopened.close();
      void db.close().catch(() => undefined);
    }
    // The WAL really lost acknowledged appends in some runs, or this test proves nothing.
    if (losesAcknowledged) expect(lostSome).toBeGreaterThan(0);
  });

  it('keeps everything that close() made durable', async () => {
    const fs = new SimFileSystem({ seed: 7 });
    const level = new LossyLevel();
    const options = { fs, level, wal: { sync, ...walOptions } };
    const db = await FactStore.open('/db', options);
    for (let batch = 0; batch < 5; batch++) await db.append({ type: 'T', data: { batch } });
    await db.close();
    const crashedLevel = level.crash(mulberry32(7));
    fs.crash();
    const reopened = await FactStore.open('/db', { ...options, level: crashedLevel });
    expect(await reopened.head()).toBe(5);
    expect((await reopened.verify()).ok).toBe(true);
    await reopened.close();
  });
});

describe('recovery row 8', () => {
  it('a gap between what LevelDB applied and the first record replayed after it is FACT_CORRUPTION', async () => {
    const fs = new SimFileSystem({ seed: 3 });
    const level = new LossyLevel();
    const options = { fs, level, checkpointEveryBytes: 1 << 30 };
    const db = await FactStore.open('/db', options);
    await db.append([{ type: 'A' }, { type: 'A' }]);
    await db.verify(); // applied: M applied = (2, its LSN)
    await db.append({ type: 'B' });
    // A process crash keeps everything; then M applied claims one position less than it applied.
    const crashed = level.crash(() => 0, 'process');
    fs.crash({ mode: 'process' });
    await crashed.open();
    const applied = (await crashed.get(metaKey('applied'), VIEW))!;
    await crashed.put(metaKey('applied'), u64Pair(readU64BE(applied, 0) - 1, readU64BE(applied, 8)), VIEW);
    // Row 6c finds it first: the ledger's last chunk ends after M applied's position.
    await expectFactError(() => FactStore.open('/db', { ...options, level: crashed }), 'FACT_CORRUPTION', /M applied says LevelDB applied up to position 1, but the ledger's last chunk \(L 1\) ends at position 2/);
    // M applied one record back: the record after it must start right after its position.
    await crashed.put(metaKey('applied'), u64Pair(readU64BE(applied, 0), readU64BE(applied, 8) - 1), VIEW);
    await expectFactError(() => FactStore.open('/db', { ...options, level: crashed }), 'FACT_CORRUPTION', /starts at position 1, expected 3, right after the last position LevelDB applied/);
    void db.close().catch(() => undefined);
  });
});

describe('recovery row 6c', () => {
  it('a power-loss hole (a lost batch before the surviving one that holds M applied) is refilled from the WAL, not refused', async () => {
    const fs = new SimFileSystem({ seed: 4 });
    const level = new LossyLevel();
    const options = { fs, level, checkpointEveryBytes: 1 << 30 };
    const db = await FactStore.open('/db', options);
    await db.append({ type: 'A' });
    await db.verify(); // applied: M applied = (1, its LSN)
    await db.append({ type: 'B', tags: ['t'] });
    await db.verify();
    // An acks-only record: its batch moves M applied's LSN and writes no chunk.
    await db.consumer('audit', 'all').ack(2);
    await db.verify();
    // The power loss kept the later batch (M applied: position 2) but lost the one with event 2.
    const crashed = level.crash(() => 0, 'process');
    fs.crash({ mode: 'process' });
    await crashed.open();
    await crashed.del(ledgerKey(2), VIEW);
    const reopened = await FactStore.open('/db', { ...options, level: crashed });
    expect(await reopened.head()).toBe(2);
    const events = [];
    for await (const event of reopened.read()) events.push(event.type);
    expect(events).toEqual(['A', 'B']);
    expect((await reopened.verify()).ok).toBe(true);
    const audit = reopened.consumer('audit', 'all');
    expect(audit.acknowledged).toBe(2);
    await audit.close();
    await reopened.close();
    void db.close().catch(() => undefined);
  });

  it('after the replay, an M applied past the end of the ledger is FACT_CORRUPTION', async () => {
    const fs = new SimFileSystem({ seed: 5 });
    const level = new LossyLevel();
    const options = { fs, level };
    const db = await FactStore.open('/db', options);
    await db.append([{ type: 'A' }, { type: 'A' }]);
    await db.close(); // checkpointed: the WAL holds nothing to replay
    await level.open();
    const applied = (await level.get(metaKey('applied'), VIEW))!;
    await level.put(metaKey('applied'), u64Pair(readU64BE(applied, 0) + 1, readU64BE(applied, 8)), VIEW);
    await level.close();
    await expectFactError(
      () => FactStore.open('/db', options),
      'FACT_CORRUPTION',
      /after the WAL replay, M applied says LevelDB applied up to position 3, but the ledger's last chunk \(L 1\) ends at position 2/,
    );
  });
});
