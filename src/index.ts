/** factstore: the one explicit public export list. */
export { FactStore, DECIDE_ATTEMPTS_DEFAULT } from './store.js';
export type { FactStoreOptions, AppendStreamOptions, AppendOptions } from './store.js';
export { Query } from './model/query.js';
export type { QueryItem, ReadSource, AppendCondition } from './model/query.js';
export type { LevelDatabase } from './storage/level.js';
export type { LevelBarrier, LevelDurability } from './storage/barrier.js';
export type {
  EventInput,
  RecordedEvent,
  AppendResult,
  StreamAppendResult,
  StreamExpectation,
  ReadOptions,
  ReadDirection,
  EventReader,
  SubscribeOptions,
  Subscription,
  Consumer,
  ConsumerOptions,
  ConsumerInfo,
  AckOption,
  Decider,
  Decision,
  DecisionContext,
  DecideOptions,
  DecideResult,
} from './model/types.js';
export type { RebuildProgress } from './indexes/rebuild.js';
export type { VerifyReport } from './indexes/verify.js';
export type { BackupProgress, BackupResult } from './ledger/backup.js';
export { BACKUP_BATCH_SIZE_BYTES } from './ledger/backup.js';
export type { DataIndexProgress } from './indexes/data-index.js';
export {
  EVENT_TYPE_SIZE_BYTES_MAX,
  TAG_SIZE_BYTES_MAX,
  STREAM_ID_SIZE_BYTES_MAX,
  EVENT_ID_SIZE_BYTES_MAX,
  APPEND_EVENTS_MAX,
} from './model/validation.js';
export { DATA_NESTING_DEPTH_MAX } from './model/cbor.js';
export { DATA_FIELD_VALUE_SIZE_BYTES_MAX } from './model/query.js';
export { UNAPPLIED_EVENTS_MAX, UNAPPLIED_SIZE_BYTES_MAX } from './ledger/writer.js';
export { SUBSCRIPTION_BATCH_EVENTS } from './query/subscription.js';
export { CONSUMER_NAME_SIZE_BYTES_MAX } from './storage/commit-record.js';
export { DECISION_TAG_POSITIONS_MAX, DECISION_POSITIONS_MAX, DECISION_EVENTS_MAX } from './query/decision-reads.js';
export { FactError, isFactError, FactErrorCodes } from './errors.js';
export type { FactErrorCode, FactErrorOptions } from './errors.js';
export { Wal, NodeFileSystem } from './wal/index.js';
export type { WalOptions, SyncMode, FileSystem } from './wal/index.js';
// Test doubles live in factstore/testing (SimFileSystem also in factstore/wal), not here.
