/** factstore: the one explicit public export list. */
export { FactStore } from './ledger/store.js';
export type { FactStoreOptions, AppendStreamOptions } from './ledger/store.js';
export { Query } from './query/query.js';
export type { QueryItem } from './query/query.js';
export type { LevelDatabase } from './ledger/level.js';
export type { LevelBarrier, LevelDurability } from './ledger/barrier.js';
export type {
  EventInput,
  RecordedEvent,
  AppendResult,
  StreamAppendResult,
  StreamExpectation,
  ReadOptions,
  ReadSource,
  ReadDirection,
  EventReader,
  AppendCondition,
} from './types.js';
export type { RebuildProgress, VerifyReport, DataIndexProgress } from './indexes/maintenance.js';
export {
  EVENT_TYPE_SIZE_BYTES_MAX,
  TAG_SIZE_BYTES_MAX,
  STREAM_ID_SIZE_BYTES_MAX,
  EVENT_ID_SIZE_BYTES_MAX,
  APPEND_EVENTS_MAX,
} from './ledger/validation.js';
export { DATA_NESTING_DEPTH_MAX } from './ledger/cbor.js';
export { DATA_FIELD_VALUE_SIZE_BYTES_MAX } from './query/query.js';
export { FactError, isFactError, FactErrorCodes } from './errors.js';
export type { FactErrorCode, FactErrorOptions } from './errors.js';
export { Wal, NodeFileSystem, SimFileSystem } from './wal/index.js';
export type { WalOptions, SyncMode, FileSystem } from './wal/index.js';
