/** The options of Wal.open: their defaults, limits and validation (docs/wal-format.md, "Writing"). */
import { FactError, shown } from '../errors.js';
import type { FileSystem } from './file-system.js';
import { RECORD_PAYLOAD_SIZE_BYTES_LIMIT, SEGMENT_FILL_STEP_BYTES } from './format.js';

export type SyncMode = 'always' | 'interval' | 'none';

export const DEFAULT_SEGMENT_SIZE_BYTES = 16 * 1024 * 1024;
export const MIN_SEGMENT_SIZE_BYTES = 1024;
export const DEFAULT_SEGMENT_FILL_STEP_BYTES = SEGMENT_FILL_STEP_BYTES;
export const MIN_SEGMENT_FILL_STEP_BYTES = 64;
export const DEFAULT_SYNC_INTERVAL_MS = 200;
export const MIN_SYNC_INTERVAL_MS = 10;
export const DEFAULT_RETAIN_SEGMENTS = 4;
export const DEFAULT_MAX_RECORD_SIZE_BYTES = 64 * 1024 * 1024;

export interface WalOptions {
  /** A segment is sealed and a new one started when the next unit would not fit. Default 16 MiB. */
  segmentSizeBytes?: number;
  /**
   * Zero fill of a new segment and the first step of extending it ahead of the writer (steps
   * double up to 4 MiB, or this value when larger). Default 256 KiB; tuning and tests.
   */
  segmentFillStepBytes?: number;
  /** When an append resolves; see docs/wal-format.md. Default 'always'. */
  sync?: SyncMode;
  /** With sync 'interval': time between fdatasyncs. Default 200; values below 10 become 10. */
  syncIntervalMs?: number;
  /** Already-checkpointed segments kept for replay; 'all' keeps every segment. Default 4. */
  retainSegments?: number | 'all';
  /** Largest payload accepted by append. Default 64 MiB, at most 1 GiB. */
  maxRecordSizeBytes?: number;
  /** Opt into lossy repair of damaged acknowledged data (reported in `recovery.repair`). */
  repair?: boolean;
  /** The file system; default real files. SimFileSystem for crash tests. */
  fs?: FileSystem;
}

/** Checked options with every default applied: what the WAL's internals receive. */
export interface ResolvedOptions {
  segmentSizeBytes: number;
  segmentFillStepBytes: number;
  sync: SyncMode;
  syncIntervalMs: number;
  retainSegments: number;
  maxRecordSizeBytes: number;
  repair: boolean;
}

export function validateOptions(options: WalOptions): ResolvedOptions {
  const invalid = (message: string) => new FactError('FACT_INVALID_ARGUMENT', `Wal.open: ${message}`);
  const segmentSizeBytes = options.segmentSizeBytes ?? DEFAULT_SEGMENT_SIZE_BYTES;
  if (!Number.isSafeInteger(segmentSizeBytes) || segmentSizeBytes < MIN_SEGMENT_SIZE_BYTES) {
    throw invalid(`segmentSizeBytes must be an integer ≥ ${MIN_SEGMENT_SIZE_BYTES}, got ${shown(options.segmentSizeBytes)}`);
  }
  const segmentFillStepBytes = options.segmentFillStepBytes ?? DEFAULT_SEGMENT_FILL_STEP_BYTES;
  if (!Number.isSafeInteger(segmentFillStepBytes) || segmentFillStepBytes < MIN_SEGMENT_FILL_STEP_BYTES) {
    throw invalid(`segmentFillStepBytes must be an integer ≥ ${MIN_SEGMENT_FILL_STEP_BYTES}, got ${shown(options.segmentFillStepBytes)}`);
  }
  const sync = options.sync ?? 'always';
  if (sync !== 'always' && sync !== 'interval' && sync !== 'none') {
    throw invalid(`sync must be 'always', 'interval' or 'none', got ${shown(sync)}`);
  }
  const interval = options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
  if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 0) {
    throw invalid(`syncIntervalMs must be a non-negative number, got ${shown(options.syncIntervalMs)}`);
  }
  const retain = options.retainSegments ?? DEFAULT_RETAIN_SEGMENTS;
  if (retain !== 'all' && (!Number.isSafeInteger(retain) || retain < 0)) {
    throw invalid(`retainSegments must be a non-negative integer or 'all', got ${shown(options.retainSegments)}`);
  }
  const maxRecordSizeBytes = options.maxRecordSizeBytes ?? DEFAULT_MAX_RECORD_SIZE_BYTES;
  if (!Number.isSafeInteger(maxRecordSizeBytes) || maxRecordSizeBytes < 0 || maxRecordSizeBytes > RECORD_PAYLOAD_SIZE_BYTES_LIMIT) {
    throw invalid(`maxRecordSizeBytes must be an integer from 0 to ${RECORD_PAYLOAD_SIZE_BYTES_LIMIT}`);
  }
  return {
    segmentSizeBytes,
    segmentFillStepBytes,
    sync,
    syncIntervalMs: Math.max(MIN_SYNC_INTERVAL_MS, interval),
    retainSegments: retain === 'all' ? Number.POSITIVE_INFINITY : retain,
    maxRecordSizeBytes,
    repair: options.repair === true,
  };
}
