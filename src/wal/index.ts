/** factstore/wal: the write-ahead log on its own. The one explicit export list of this entry. */
export { Wal } from './wal.js';
export type { SyncMode, WalOptions, WalRecord, WalAppendOptions, WalRecoveryReport } from './wal.js';
export {
  DEFAULT_SEGMENT_SIZE_BYTES,
  MIN_SEGMENT_SIZE_BYTES,
  DEFAULT_SYNC_INTERVAL_MS,
  MIN_SYNC_INTERVAL_MS,
  DEFAULT_RETAIN_SEGMENTS,
  DEFAULT_MAX_RECORD_SIZE_BYTES,
} from './wal.js';
export type { FileSystem, FileHandle, FileLock, OpenMode } from './file-system.js';
export { NodeFileSystem, BLOCKING_DATASYNC_LATENCY_MS_MAX } from './node-file-system.js';
export type { NodeFileSystemOptions, DatasyncMode } from './node-file-system.js';
export { SimFileSystem, SimCrashError } from './sim-file-system.js';
export type { SimFileSystemOptions, SimCrashMode, SimCrashOptions, SimFault, SimFaultOp, SimFaultErrno, SimCrashReport } from './sim-file-system.js';
export {
  Journal,
  JOURNAL_RECORD_TYPES,
  MAX_JOURNAL_ID_LENGTH,
  MAX_JOURNAL_ERROR_LENGTH,
  DEFAULT_CARRY_AFTER_SEGMENTS,
  DEFAULT_CHECKPOINT_EVERY_SEGMENTS,
} from './journal.js';
export type { JournalOptions, JournalEntry, JournalFailure, JournalFailureInput } from './journal.js';
export { FactError, isFactError } from '../errors.js';
export type { FactErrorCode } from '../errors.js';
