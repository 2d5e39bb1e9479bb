/**
 * SimMachine: the machine a FactStore under test runs on, its WAL on a SimFileSystem and its
 * LevelDB a LossyLevel, so that one crash hits both at the same instant, as power loss (or
 * kill -9) does. Deterministic: the same seed and the same calls give the same crash.
 */
import { FactError } from '../errors.js';
import { SimCrashError, SimFileSystem } from '../wal/index.js';
import type { SimCrashMode, SimCrashReport } from '../wal/index.js';
import { Mulberry32 } from '../wal/prng.js';
import { LossyLevel } from './lossy-level.js';
import type { LossyCrashReport, LossyWriteKind } from './lossy-level.js';

/** Decorrelates the LevelDB double's draws from the file system's, which start from the same seed. */
const LEVEL_SEED_SALT = 0x9e37_79b9;

export interface SimMachineOptions {
  /** Seeds every random choice of the file system and of the LevelDB double (a 32-bit integer; default 0). */
  seed?: number;
}

export interface SimMachineCrashOptions {
  /** 'power-loss' (default): unsynced writes may be lost or torn. 'process': only the process died. */
  mode?: SimCrashMode;
  /** Draw this crash from `seed` instead of going on with the machine's sequence. */
  seed?: number;
}

/** What a crash did to each half of the machine. */
export interface SimMachineCrashReport {
  mode: SimCrashMode;
  fs: SimCrashReport;
  level: LossyCrashReport;
}

/** Where a crash armed with {@link SimMachine.crashAtOp} struck. */
export interface SimMachineCrashSite {
  /** The machine operation that did not happen (0 is the first one after arming). */
  op: number;
  /** 'fs': a mutating or syncing call of the WAL's file system; 'level': a LevelDB write or flush. */
  device: 'fs' | 'level';
  /** The call: 'write', 'datasync', 'rename'… or 'batch', 'put', 'del', 'compactRange'. */
  kind: string;
  /** The file, for the file system. */
  path: string;
  /** The JavaScript stack of the call (where in the code under test the crash landed). */
  stack: string;
}

/** What a dying process leaves to settle: its store (or anything else that closes). */
export interface SimMachineDying {
  close(): Promise<unknown>;
}

/**
 * @example
 * const machine = new SimMachine({ seed: 7 });
 * const db = await FactStore.open('/db', machine.storeOptions());
 * await db.append({ type: 'Acknowledged' });
 * await machine.crash({ dying: db }); // power loss
 * const reopened = await FactStore.open('/db', machine.storeOptions()); // sees 'Acknowledged'
 */
export class SimMachine {
  /** The disk: it stays one object across crashes. */
  readonly fs: SimFileSystem;
  #level = new LossyLevel();
  #prng: Mulberry32;
  /** Between halt() and restart(): how the process died and the LevelDB that survived. */
  #down: { mode: SimCrashMode; level: LossyLevel } | null = null;
  /** Armed by crashAtOp: machine operations still allowed, and how to crash. */
  #armed: { remaining: number; counted: number; options: SimMachineCrashOptions } | null = null;
  #crashSite: SimMachineCrashSite | undefined;
  #machineOps = 0;

  constructor(options: SimMachineOptions = {}) {
    const seed = options.seed ?? 0;
    this.fs = new SimFileSystem({ seed });
    this.#prng = new Mulberry32(seed ^ LEVEL_SEED_SALT);
    this.fs.observeOps((kind, path) => this.#beforeOp('fs', kind, path));
    this.#observeLevel();
  }

  #observeLevel(): void {
    this.#level.observeWrites((kind: LossyWriteKind) => {
      // The dead process's LevelDB object stays usable on its own; only the live one counts.
      if (this.#down === null && this.#beforeOp('level', kind, '')) throw new SimCrashError(kind, 'LevelDB');
    });
  }

  /** Counts one machine operation; true when it is the one the armed crash strikes (the machine is halted then). */
  #beforeOp(device: 'fs' | 'level', kind: string, path: string): boolean {
    if (this.#down !== null) return false;
    this.#machineOps += 1;
    const armed = this.#armed;
    if (armed === null) return false;
    if (armed.remaining > 0) {
      armed.remaining -= 1;
      armed.counted += 1;
      return false;
    }
    this.#armed = null;
    this.#crashSite = { op: armed.counted, device, kind, path, stack: new Error('crash site').stack ?? '' };
    // halt() stops the file system at once, so a file-system call that got here fails too.
    this.halt(armed.options);
    return true;
  }

  /**
   * Arms a crash: `count` more machine operations run (each mutating or syncing call of the file
   * system and each LevelDB write or flush, in one sequence), and the process dies at the next
   * one, which does not happen: halt(options) runs at that instant and the call fails with
   * SimCrashError. Crashing at operation k for every k this way lands inside appends, apply,
   * checkpoints and their barrier, segment deletion, rebuilds, upgrades and recovery alike.
   * `crashSite` then says where it struck; call restart() after letting the dead process settle.
   */
  crashAtOp(count: number, options: SimMachineCrashOptions = {}): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new FactError('FACT_INVALID_ARGUMENT', `SimMachine.crashAtOp: count must be a non-negative integer, got ${count}`);
    if (this.#down !== null) throw new FactError('FACT_INVALID_ARGUMENT', 'SimMachine.crashAtOp: the machine is halted; restart() it first');
    this.#armed = { remaining: count, counted: 0, options };
    this.#crashSite = undefined;
  }

  /**
   * An independent copy of the machine as it is now (disk with its pending writes, LevelDB with
   * its unsynced batches, the PRNG), to explore another future from the same state. The machine
   * must be running; the copy is not armed.
   */
  clone(): SimMachine {
    if (this.#down !== null) throw new FactError('FACT_INVALID_ARGUMENT', 'SimMachine.clone: the machine is halted; restart() it first');
    const copy = new SimMachine();
    (copy as { fs: SimFileSystem }).fs = this.fs.clone();
    copy.fs.observeOps((kind, path) => copy.#beforeOp('fs', kind, path));
    copy.#level = this.#level.crash(() => 0, 'process');
    copy.#observeLevel();
    copy.#prng = this.#prng.clone();
    return copy;
  }

  /** Disarms a crash armed with crashAtOp that has not struck. */
  disarm(): void {
    this.#armed = null;
  }

  /** Where the last armed crash struck (undefined while armed or if it did not strike). */
  get crashSite(): SimMachineCrashSite | undefined {
    return this.#crashSite;
  }

  /** Machine operations (see crashAtOp) the running process has made so far, over all restarts. */
  get machineOps(): number {
    return this.#machineOps;
  }

  /** The LevelDB double to open now; a crash replaces it with what survived. */
  get level(): LossyLevel {
    return this.#level;
  }

  /** Whether the process is dead: halt() was called and restart() not yet. */
  get halted(): boolean {
    return this.#down !== null;
  }

  /** The options that put a FactStore on this machine (spread them next to your own). */
  storeOptions(): { fs: SimFileSystem; level: LossyLevel } {
    return { fs: this.fs, level: this.#level };
  }

  /**
   * The process dies now. Its next write or sync, and every file-system call after that, fails
   * with SimCrashError; what survives of LevelDB is decided at this instant. The dead process's
   * LevelDB object stays usable apart from the surviving one, so its calls in flight may settle
   * (close its store then). Call restart() to bring the machine back.
   */
  halt(options: SimMachineCrashOptions = {}): LossyCrashReport {
    if (this.#down !== null) throw new FactError('FACT_INVALID_ARGUMENT', 'SimMachine.halt: the machine is already halted; restart() it first');
    const mode = options.mode ?? 'power-loss';
    if (options.seed !== undefined) {
      this.fs.reseed(options.seed);
      this.#prng = new Mulberry32(options.seed ^ LEVEL_SEED_SALT);
    }
    this.fs.crashAfterOps(0);
    const prng = this.#prng;
    const level = this.#level.crash(() => prng.next(), mode);
    this.#down = { mode, level };
    return level.crashReport!;
  }

  /**
   * The machine is back: the disk keeps what the crash left of its unsynced writes, open
   * handles and locks of the dead process are gone, and `level` is the LevelDB that survived.
   */
  restart(): SimMachineCrashReport {
    const down = this.#down;
    if (down === null) throw new FactError('FACT_INVALID_ARGUMENT', 'SimMachine.restart: the machine is running; halt() it first');
    this.#down = null;
    this.#armed = null;
    const fs = this.fs.crash({ mode: down.mode });
    this.#level = down.level;
    this.#observeLevel();
    return { mode: down.mode, fs, level: down.level.crashReport! };
  }

  /**
   * halt(), then closes `dying` (the dead process's store; its rejection is expected and
   * ignored), then restart(). A call of `dying` that never settles keeps this from resolving.
   */
  async crash(options: SimMachineCrashOptions & { dying?: SimMachineDying } = {}): Promise<SimMachineCrashReport> {
    this.halt(options);
    await options.dying?.close().catch(() => undefined);
    return this.restart();
  }
}
