/**
 * The durability barrier: after it resolves, every write LevelDB acknowledged before it began
 * survives a power loss; when it cannot promise that, it rejects. Checkpoints advance the WAL
 * only past a barrier that resolved (docs/storage-format.md, "What factstore relies on from
 * LevelDB", which also says why this sequence is sound for LevelDB 1.20).
 */
import { FactError } from '../errors.js';
import { metaKey } from './keys.js';
import type { LevelDatabase } from './level.js';
import { invalid } from '../errors.js';

/** Resolves once every write to `db` that completed before the call is durable; rejects otherwise. */
export type LevelBarrier = (db: LevelDatabase) => Promise<void>;

/**
 * How the `level` option's database is made durable: 'volatile' for one that keeps nothing
 * worth a barrier (memory-level), or the caller's own barrier.
 */
export type LevelDurability = 'volatile' | LevelBarrier;

/** A barrier bound to its database, failing with FACT_IO. */
export type BoundBarrier = () => Promise<void>;

interface CompactingLevel {
  compactRange(start: Uint8Array, end: Uint8Array, options: { keyEncoding: 'view' }): Promise<void>;
}

const SYNCED = { keyEncoding: 'view', sync: true } as const;

function hasCompactRange(db: LevelDatabase): db is LevelDatabase & CompactingLevel {
  return typeof (db as Partial<CompactingLevel>).compactRange === 'function';
}

/**
 * LevelDB's barrier. The first synced write makes LevelDB's current log durable, or moves a full
 * memtable aside; compactRange waits for any memtable being flushed, then flushes the current
 * one to a synced table file and manifest; it reports no failure (LevelDB's CompactRange drops
 * the status), but a failed flush leaves a background error that makes the second synced write
 * fail. The writes are deletes of `M barrier`, a key that never holds a value.
 */
export async function compactRangeBarrier(db: LevelDatabase & CompactingLevel): Promise<void> {
  const key = metaKey('barrier');
  await db.del<Uint8Array>(key, SYNCED);
  await db.compactRange(FLUSH_ONLY_KEY, FLUSH_ONLY_KEY, { keyEncoding: 'view' });
  await db.del<Uint8Array>(key, SYNCED);
}

/**
 * The range compactRange is given: a key above every key space (docs/storage-format.md), so no
 * table file ever overlaps it and LevelDB's CompactRange does its memtable flush and nothing
 * more. On `M barrier` itself every checkpoint also merged all of level 0 into level 1 and, at
 * each deeper level, the file holding `M` (next to the newest ledger chunks) into the next: work
 * that grew with the store (bench/growth.bench.ts).
 */
export const FLUSH_ONLY_KEY = Uint8Array.of(0xff);

/**
 * The barrier for the database the store uses. factstore's own classic-level (`owned`) and a
 * `level` database with compactRange get compactRangeBarrier; any other `level` database must
 * come with `durability`, else FACT_INVALID_ARGUMENT (validated before anything is opened).
 */
export function chooseBarrier(db: LevelDatabase | undefined, durability: unknown): LevelDurability {
  if (db === undefined) {
    if (durability !== undefined) throw invalid('FactStore.open: levelDurability applies only with the level option (factstore’s own classic-level always gets its barrier)');
    return (owned) => compactRangeBarrier(owned as LevelDatabase & CompactingLevel);
  }
  if (durability === 'volatile' || typeof durability === 'function') return durability as LevelDurability;
  if (durability !== undefined) throw invalid(`FactStore.open: levelDurability must be 'volatile' or a barrier function, got ${typeof durability === 'string' ? JSON.stringify(durability) : typeof durability}`);
  if (hasCompactRange(db)) return () => compactRangeBarrier(db);
  throw invalid(
    "FactStore.open: the level option's database has no durability barrier (no compactRange, unlike classic-level); pass levelDurability: 'volatile' if it needs none (memory-level), or a barrier function",
  );
}

/** `durability` applied to `db`; a failure becomes FACT_IO naming the database path. */
export function bindBarrier(db: LevelDatabase, durability: LevelDurability, path: string): BoundBarrier {
  if (durability === 'volatile') return () => Promise.resolve();
  return async () => {
    try {
      await durability(db);
    } catch (error) {
      throw new FactError(
        'FACT_IO',
        `the durability barrier of the LevelDB database of ${path} failed: LevelDB may not hold durably what it acknowledged; the WAL keeps every record since its last checkpoint, and reopening the database replays them`,
        { cause: error, details: { path } },
      );
    }
  };
}
