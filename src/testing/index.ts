/**
 * factstore/testing: doubles for testing your own code against crashes. The one explicit export
 * list of this entry. LossyLevel needs memory-level, an optional peer
 * dependency: install it next to factstore to use this entry.
 */
export { LossyLevel } from './lossy-level.js';
export type { LossyCrashReport, LossyStrategy, LossyFaultCode, LossyWriteFault, LossyOp } from './lossy-level.js';
export { SimFileSystem, SimCrashError } from '../wal/index.js';
export type {
  SimFileSystemOptions,
  SimCrashMode,
  SimCrashOptions,
  SimCrashReport,
  SimFault,
  SimFaultOp,
  SimFaultErrno,
} from '../wal/index.js';
export { mulberry32 } from '../wal/prng.js';
