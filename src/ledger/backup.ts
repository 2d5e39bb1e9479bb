/**
 * Backups (README, "Backup and restore"): a copy of LevelDB as a snapshot holds it, taken when
 * LevelDB holds every resolved event, written as a database of its own (LevelDB made durable by
 * its barrier, an empty WAL), under a temporary name renamed into place once complete. A backup
 * is therefore consistent (exactly the events through one head), restorable as it is, and never
 * seen half-written.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Level } from 'level';
import type { AbstractSnapshot } from 'abstract-level';
import { FactError } from '../errors.js';
import { bindBarrier, chooseBarrier } from '../storage/barrier.js';
import { metaKey, u64Pair } from '../storage/keys.js';
import { LEVEL_OPEN_OPTIONS, VIEW, type LevelDatabase } from '../storage/level.js';
import { NodeFileSystem } from '../wal/node-file-system.js';
import { Wal } from '../wal/wal.js';

/** Bytes of keys and values per batch written to the backup. */
export const BACKUP_BATCH_SIZE_BYTES = 4 * 1024 * 1024;

export interface BackupProgress {
  /** LevelDB entries copied so far. */
  entries: number;
  bytes: number;
}

export interface BackupResult {
  path: string;
  /** The backup holds exactly the events through this position. */
  position: number;
  entries: number;
  bytes: number;
}

/** Refuses a destination that exists (a non-empty directory or a file): nothing is overwritten. */
export async function checkBackupDestination(dest: string, method: string): Promise<void> {
  const existing = await stat(dest).catch(() => null);
  if (existing === null) return;
  if (!existing.isDirectory() || (await readdir(dest)).length > 0) {
    throw new FactError('FACT_INVALID_ARGUMENT', `${method}: ${dest} exists and is not an empty directory; choose a new path`, { details: { path: dest } });
  }
}

/** Writes the snapshot's LevelDB (holding the events through `head`) as a new database at `dest`. */
export async function writeBackup(
  db: LevelDatabase,
  snapshot: AbstractSnapshot | undefined,
  head: number,
  dest: string,
  onProgress: ((progress: BackupProgress) => void) | undefined,
): Promise<BackupResult> {
  const partial = `${dest}.partial-${process.pid}-${Date.now()}`;
  await mkdir(dirname(dest), { recursive: true });
  await rm(partial, { recursive: true, force: true });
  const fs = new NodeFileSystem();
  let entries = 0;
  let bytes = 0;
  try {
    await mkdir(partial);
    const copy = new Level<Uint8Array, Uint8Array>(join(partial, 'ledger'), LEVEL_OPEN_OPTIONS);
    await copy.open();
    try {
      const appliedKey = metaKey('applied');
      let batch = copy.batch();
      let batchBytes = 0;
      for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, snapshot })) {
        // The copy's WAL starts empty: LevelDB holds everything through `head`, logged by no record.
        const stored = Buffer.compare(key, appliedKey) === 0 ? u64Pair(head, 0) : value;
        batch.put(key, stored, VIEW);
        entries++;
        batchBytes += key.length + stored.length;
        if (batchBytes >= BACKUP_BATCH_SIZE_BYTES) {
          await batch.write();
          bytes += batchBytes;
          batch = copy.batch();
          batchBytes = 0;
          onProgress?.({ entries, bytes });
        }
      }
      await batch.write();
      bytes += batchBytes;
      await bindBarrier(copy, chooseBarrier(undefined, undefined), partial)();
    } finally {
      await copy.close();
    }
    const wal = await Wal.open(join(partial, 'wal'), { fs });
    await wal.close();
    await fs.syncDir(partial);
    await rename(partial, dest);
    await fs.syncDir(dirname(dest));
  } catch (error) {
    await rm(partial, { recursive: true, force: true }).catch(() => undefined);
    if (error instanceof FactError) throw error;
    throw new FactError('FACT_IO', `backup: could not write the backup at ${dest}`, { cause: error, details: { path: dest } });
  }
  onProgress?.({ entries, bytes });
  return { path: dest, position: head, entries, bytes };
}

/** Puts a complete database (`staged`) at `path`, moving aside and then removing what was there. */
export async function swapInto(staged: string, path: string): Promise<void> {
  const fs = new NodeFileSystem();
  const previous = `${path}.replaced-${process.pid}-${Date.now()}`;
  const existed = (await stat(path).catch(() => null)) !== null;
  if (existed) await rename(path, previous);
  await rename(staged, path);
  await fs.syncDir(dirname(path));
  if (existed) await rm(previous, { recursive: true, force: true });
}
