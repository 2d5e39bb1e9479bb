/**
 * The checkpoint file and segment retention (docs/wal-format.md, "Checkpoint file"): reading and
 * durably replacing CHECKPOINT, and deleting the segments a checkpoint covers.
 */
import { assert, ioError } from '../errors.js';
import type { FileSystem } from './file-system.js';
import { joinPath } from './file-system.js';
import { CHECKPOINT_FILE, decodeCheckpoint, encodeCheckpoint, TEMP_SUFFIX } from './format.js';
import { type SegmentLog, walCorruption } from './segment-files.js';

/** A log whose oldest segments retention may drop (the writer's). */
export interface RetainedLog extends SegmentLog {
  /** Forgets the oldest segment once its file is durably gone. */
  dropOldestSegment(): void;
}

/** The checkpoint LSN in CHECKPOINT (0 when there is none); an invalid file is corruption (row 4). */
export async function readCheckpointLsn(fs: FileSystem, dir: string): Promise<number> {
  const checkpointPath = joinPath(dir, CHECKPOINT_FILE);
  const checkpointBytes = await fs.readFile(checkpointPath);
  if (checkpointBytes === null) return 0;
  const decoded = decodeCheckpoint(checkpointBytes);
  if ('invalid' in decoded) {
    throw walCorruption(`checkpoint file ${checkpointPath} is invalid: ${decoded.invalid}`, { file: CHECKPOINT_FILE });
  }
  return decoded.lsn;
}

/** Temp file, fdatasync, rename, directory fsync: a crash leaves the old or the new one. */
export async function writeCheckpointFile(fs: FileSystem, dir: string, lsn: number): Promise<void> {
  const path = joinPath(dir, CHECKPOINT_FILE);
  try {
    const handle = await fs.open(path + TEMP_SUFFIX, 'overwrite');
    try {
      await handle.write(encodeCheckpoint(lsn), 0);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await fs.rename(path + TEMP_SUFFIX, path);
    await fs.syncDir(dir);
  } catch (error) {
    throw ioError('write checkpoint', path, error);
  }
}

/** Deletes sealed segments wholly at or below `checkpointLsn`, beyond the `retainSegments` newest such ones. */
export async function deleteCheckpointedSegments(
  fs: FileSystem,
  dir: string,
  log: RetainedLog,
  checkpointLsn: number,
  retainSegments: number,
): Promise<void> {
  const segments = log.segments;
  // Sealed segments whose last LSN (the next one's first − 1) is covered by the checkpoint.
  let covered = 0;
  while (covered + 1 < segments.length && segments[covered + 1]!.firstLsn - 1 <= checkpointLsn) covered++;
  const deletable = covered - Math.min(covered, retainSegments);
  for (let index = 0; index < deletable; index++) {
    const oldest = segments[0]!;
    assert(oldest !== log.active.segment, 'the active segment is never deleted');
    try {
      await fs.unlink(oldest.path);
      // One durable unlink at a time keeps the remaining segments contiguous after a crash.
      await fs.syncDir(dir);
    } catch (error) {
      throw ioError('delete segment', oldest.path, error);
    }
    log.dropOldestSegment();
  }
}
