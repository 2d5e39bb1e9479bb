/**
 * factstore/testing: doubles for testing your own code against crashes. The one explicit export
 * list of this entry. LossyLevel (and so SimMachine) needs memory-level, an optional peer
 * dependency of factstore: install it to use this entry.
 */
export { SimMachine } from './sim-machine.js';
export type { SimMachineOptions, SimMachineCrashOptions, SimMachineCrashReport, SimMachineCrashSite, SimMachineDying } from './sim-machine.js';
export { LossyLevel, CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES } from './lossy-level.js';
export type { LossyCrashReport, LossyStrategy, LossyFaultCode, LossyWriteFault, LossyOp, LossyLevelOptions, LossyWriteKind } from './lossy-level.js';
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
