/**
 * Recovery at open: the decision table of docs/wal-format.md ("Recovery"), row by row. It hands
 * the writer a log that is contiguous, ends in a complete unit, and is durable.
 */
import { assert, ioError } from '../errors.js';
import type { FileHandle, FileSystem } from './file-system.js';
import { joinPath } from './file-system.js';
import { RECORD_HEADER_SIZE_BYTES, SEGMENT_HEADER_SIZE_BYTES, TEMP_SUFFIX } from './format.js';
import type { ResolvedOptions } from './options.js';
import { readCheckpointLsn, writeCheckpointFile } from './checkpoints.js';
import {
  type ActiveSegment,
  checkSegmentHeader,
  createSegment,
  readPrefix,
  type Segment,
  segmentsIn,
  walCorruption,
  zeroRange,
} from './segment-files.js';
import { endOfNonZero, findAttestingRecord, scanSegment, type SegmentScan } from './segment-scan.js';

export interface WalRecoveryReport {
  /** Segment files in the log after recovery. */
  segments: number;
  /** Oldest LSN still readable by replay (lastLsn + 1 when the log is empty). */
  firstLsn: number;
  lastLsn: number;
  checkpointLsn: number;
  /** Bytes of torn tail removed (never acknowledged). */
  truncatedBytes: number;
  tornTail: { segment: string; offsetBytes: number; bytes: number } | null;
  /** Leftover temp files of interrupted segment creation or checkpointing, deleted. */
  removedTempFiles: string[];
  /** What a lossy repair (option `repair`) dropped, or null. */
  repair: {
    segment: string;
    offsetBytes: number;
    reason: string;
    droppedFromLsn: number;
    droppedBytes: number;
    deletedSegments: string[];
    checkpointLoweredFrom: number | null;
  } | null;
}

/** The recovered log: every LSN ≤ lastLsn is in `segments` and durable; `active` is open for writing. */
export interface RecoveredLog {
  segments: Segment[];
  active: ActiveSegment;
  lastLsn: number;
  checkpointLsn: number;
  report: WalRecoveryReport;
}

/** Recovers the WAL in `dir` (locked by the caller). On failure nothing stays open. */
export function recoverLog(fs: FileSystem, dir: string, options: ResolvedOptions): Promise<RecoveredLog> {
  return new LogRecovery(fs, dir, options).run();
}

class LogRecovery {
  readonly #fs: FileSystem;
  readonly #dir: string;
  readonly #options: ResolvedOptions;
  readonly #report: WalRecoveryReport = {
    segments: 0,
    firstLsn: 1,
    lastLsn: 0,
    checkpointLsn: 0,
    truncatedBytes: 0,
    tornTail: null,
    removedTempFiles: [],
    repair: null,
  };

  constructor(fs: FileSystem, dir: string, options: ResolvedOptions) {
    this.#fs = fs;
    this.#dir = dir;
    this.#options = options;
  }

  async run(): Promise<RecoveredLog> {
    const report = this.#report;
    const names = await this.#fs.readdir(this.#dir);
    for (const name of names) {
      if (name.endsWith(TEMP_SUFFIX)) {
        await this.#fs.unlink(joinPath(this.#dir, name));
        report.removedTempFiles.push(name);
      }
    }
    if (report.removedTempFiles.length > 0) await this.#fs.syncDir(this.#dir);

    let checkpointLsn = await readCheckpointLsn(this.#fs, this.#dir);
    const segments = segmentsIn(this.#dir, names);

    if (segments.length === 0) {
      if (checkpointLsn > 0) {
        throw walCorruption(`WAL in ${this.#dir} has a checkpoint at LSN ${checkpointLsn} but no segment files`, { checkpointLsn });
      }
      const active = await createSegment(this.#fs, this.#dir, 1, this.#options.segmentSizeBytes, this.#options.segmentFillStepBytes);
      return this.#finish([active.segment], active, 0, checkpointLsn);
    }

    // Retained segments (wholly ≤ checkpoint): headers now, records when replay reads them.
    let firstNeeded = 0;
    while (firstNeeded < segments.length - 1 && segments[firstNeeded + 1]!.firstLsn - 1 <= checkpointLsn) firstNeeded++;
    for (let index = 0; index < firstNeeded; index++) {
      const header = await readPrefix(this.#fs, segments[index]!, SEGMENT_HEADER_SIZE_BYTES);
      checkSegmentHeader(segments[index]!, header);
    }
    if (segments[firstNeeded]!.firstLsn > checkpointLsn + 1) {
      throw walCorruption(
        `WAL in ${this.#dir} is missing records: checkpoint is LSN ${checkpointLsn} but the oldest needed segment ${segments[firstNeeded]!.name} starts at LSN ${segments[firstNeeded]!.firstLsn}`,
        { checkpointLsn, segment: segments[firstNeeded]!.name },
      );
    }

    let lastLsn = 0;
    let activeEnd = SEGMENT_HEADER_SIZE_BYTES;
    // The active segment's file length: a segment shorter than its capacity is not corruption
    // (row 6a): the end of the file reads as zero fill, and the writer extends the fill again.
    let filledBytes = 0;
    let activeScan: { bytes: Uint8Array; scan: SegmentScan } | null = null;
    for (let index = firstNeeded; index < segments.length; index++) {
      const segment = segments[index]!;
      const next = segments[index + 1];
      const bytes = await this.#fs.readFile(segment.path);
      checkSegmentHeader(segment, bytes);
      assert(bytes !== null, 'header check rejects a missing file');
      const scan = scanSegment(bytes, segment.firstLsn);
      if (next) {
        if (scan.lastLsn !== next.firstLsn - 1) {
          const damage = walCorruption(
            `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}); the log continues in ${next.name} at LSN ${next.firstLsn}, so this is acknowledged data`,
            { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
          );
          if (!this.#options.repair || scan.lastLsn >= next.firstLsn) throw damage;
          await this.#repair(segments, index, bytes, scan.endOffset, scan.lastLsn + 1, damage.message);
          lastLsn = scan.lastLsn;
          activeEnd = scan.endOffset;
          filledBytes = bytes.length;
          activeScan = { bytes, scan };
          break;
        }
        continue;
      }
      // The newest segment: its tail decides torn versus damaged (rows 6–8).
      lastLsn = scan.lastLsn;
      activeEnd = scan.endOffset;
      filledBytes = bytes.length;
      activeScan = { bytes, scan };
      const tailEnd = endOfNonZero(bytes, scan.endOffset);
      if (tailEnd > scan.endOffset) {
        const attesting = findAttestingRecord(bytes, scan.endOffset, tailEnd, scan.lastLsn + 1);
        if (attesting) {
          const damage = walCorruption(
            `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}); a later record (LSN ${attesting.lsn}) shows it had been durable, so this is acknowledged data`,
            { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
          );
          if (!this.#options.repair) throw damage;
          await this.#repair(segments, index, bytes, scan.endOffset, scan.lastLsn + 1, damage.message);
        } else if (scan.lastLsn < checkpointLsn) {
          // The first lost LSN was checkpointed, so it had been durable: row 9, not a torn tail.
          // Without repair the tail is left as it is and the check below refuses to open.
          if (this.#options.repair) {
            const reason = `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1}), at or below the checkpoint ${checkpointLsn}`;
            await this.#repair(segments, index, bytes, scan.endOffset, scan.lastLsn + 1, reason);
          }
        } else {
          await zeroRange(this.#fs, segment, scan.endOffset, tailEnd);
          report.truncatedBytes = tailEnd - scan.endOffset;
          report.tornTail = { segment: segment.name, offsetBytes: scan.endOffset, bytes: tailEnd - scan.endOffset };
        }
      }
    }

    if (lastLsn < checkpointLsn) {
      const message = `WAL in ${this.#dir} ends at LSN ${lastLsn}, below its checkpoint ${checkpointLsn}: checkpointed records are missing`;
      if (!this.#options.repair) throw walCorruption(message, { lastLsn, checkpointLsn });
      await writeCheckpointFile(this.#fs, this.#dir, lastLsn);
      report.repair ??= {
        segment: segments[segments.length - 1]!.name,
        offsetBytes: activeEnd,
        reason: message,
        droppedFromLsn: lastLsn + 1,
        droppedBytes: 0,
        deletedSegments: [],
        checkpointLoweredFrom: null,
      };
      report.repair.checkpointLoweredFrom = checkpointLsn;
      checkpointLsn = lastLsn;
    }

    const activeSegment = segments[segments.length - 1]!;
    let handle: FileHandle;
    try {
      handle = await this.#fs.open(activeSegment.path, 'readwrite');
    } catch (error) {
      throw ioError('open', activeSegment.path, error);
    }
    // The recovered log is durable from here on (replay hands it out as such), even when the
    // crash was only the process's and part of it was still in the page cache; same for the
    // directory (a segment created, or deleted by a checkpoint, just before the crash).
    try {
      // Records above every durable LSN stamped in the segment may never have been synced, and
      // after a failed fdatasync the page cache shows bytes that a later fdatasync does not
      // write ("fsyncgate"): write them again so that the fdatasync below covers them.
      const records = activeScan?.scan.records ?? [];
      const stamped = records.reduce((max, record) => Math.max(max, record.durableLsn), 0);
      const firstUnsynced = records.find((record) => record.lsn > stamped);
      if (activeScan && firstUnsynced) {
        const from = firstUnsynced.payloadOffset - RECORD_HEADER_SIZE_BYTES;
        await handle.write(activeScan.bytes.subarray(from, activeEnd), from);
      }
      await handle.datasync();
      await this.#fs.syncDir(this.#dir);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw ioError('sync recovered log', activeSegment.path, error);
    }
    return this.#finish(segments, { segment: activeSegment, handle, offsetBytes: activeEnd, capacityBytes: Math.max(this.#options.segmentSizeBytes, filledBytes), filledBytes }, lastLsn, checkpointLsn);
  }

  #finish(segments: Segment[], active: ActiveSegment, lastLsn: number, checkpointLsn: number): RecoveredLog {
    const report = this.#report;
    report.segments = segments.length;
    report.firstLsn = segments[0]?.firstLsn ?? lastLsn + 1;
    report.lastLsn = lastLsn;
    report.checkpointLsn = checkpointLsn;
    return { segments, active, lastLsn, checkpointLsn, report };
  }

  /** Row 10 of the decision table: keep the log up to `offset` of segment `index`, drop the rest. */
  async #repair(segments: Segment[], index: number, bytes: Uint8Array, offset: number, droppedFromLsn: number, reason: string): Promise<void> {
    const segment = segments[index]!;
    const tailEnd = endOfNonZero(bytes, offset);
    await zeroRange(this.#fs, segment, offset, tailEnd);
    let droppedBytes = tailEnd - offset;
    const deletedSegments: string[] = [];
    // Newest first, so a crash midway leaves a contiguous log ending in a complete segment.
    for (const later of segments.slice(index + 1).reverse()) {
      const laterBytes = await this.#fs.readFile(later.path);
      droppedBytes += laterBytes ? endOfNonZero(laterBytes, SEGMENT_HEADER_SIZE_BYTES) - SEGMENT_HEADER_SIZE_BYTES : 0;
      await this.#fs.unlink(later.path);
      await this.#fs.syncDir(this.#dir);
      deletedSegments.push(later.name);
    }
    segments.length = index + 1;
    this.#report.repair = { segment: segment.name, offsetBytes: offset, reason, droppedFromLsn, droppedBytes, deletedSegments, checkpointLoweredFrom: null };
  }
}
