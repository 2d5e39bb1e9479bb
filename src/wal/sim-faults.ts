/**
 * What SimFileSystem throws and when: errno errors, the fault plan (injected EIO/ENOSPC rules)
 * and crash-after-N-operations, with the operation count they share.
 */
import { FactError } from '../errors.js';

/** Operations that `SimFileSystem.injectFault` can make fail. 'read' covers both FileHandle.read and readFile. */
export type SimFaultOp = 'open' | 'read' | 'write' | 'truncate' | 'datasync' | 'syncDir' | 'rename' | 'unlink';

/** Errno codes that an injected fault throws (as a plain Error with this `code`). */
export type SimFaultErrno = 'EIO' | 'ENOSPC';

/** A deterministic fault rule for `SimFileSystem.injectFault`. */
export interface SimFault {
  op: SimFaultOp;
  /**
   * Matches when the operation's path contains this string (so an exact path matches, and
   * '.wal' matches every file whose path contains '.wal'). A rename matches on either path;
   * a handle operation matches on the path the handle was opened with. Omitted: every path.
   */
  path?: string;
  error: SimFaultErrno;
  /** Matching calls to let through before failing. Default 0. */
  after?: number;
  /** How many matching calls fail (after the skipped ones). Default 1; Infinity allowed. */
  times?: number;
}

/** Every operation SimFileSystem starts; the fault plan sees each one. */
export type SimOpKind = SimFaultOp | 'readdir' | 'mkdir' | 'exists' | 'lock' | 'release' | 'stat' | 'close';

/** Called before each mutating or syncing operation is counted (SimFileSystem.observeOps). */
export type SimOpObserver = (kind: SimOpKind, path: string) => void;

/**
 * Thrown by every operation once the limit set by `SimFileSystem.crashAfterOps` is
 * reached, until `SimFileSystem.crash` is called: the process "died" at that call.
 */
export class SimCrashError extends Error {
  readonly code = 'SIM_CRASHED' as const;

  constructor(operation: string, path: string) {
    super(`simulated crash: ${operation} ${path} was not performed`);
    this.name = 'SimCrashError';
  }
}

interface FaultRule {
  op: SimFaultOp;
  path: string | undefined;
  error: SimFaultErrno;
  skip: number;
  remaining: number;
}

export function fsError(code: string, operation: string, path: string): Error & { code: string } {
  return Object.assign(new Error(`${code}: ${operation} ${path}`), { code, path });
}

export function requireCount(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new FactError('FACT_INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${value}`);
  }
}

/** Fault rules and the crash-after-N limit, in the order SimFileSystem checks them for each operation. */
export class SimFaultPlan {
  #faults: FaultRule[] = [];
  #opCount: number;
  #opsUntilHalt: number | null = null;
  #halted = false;
  #observer: SimOpObserver | null = null;

  constructor(opCount = 0) {
    this.#opCount = opCount;
  }

  /** Mutating or syncing operations started so far; never reset. */
  get opCount(): number {
    return this.#opCount;
  }

  crashAfterOps(count: number): void {
    requireCount(count, 'crashAfterOps count');
    this.#opsUntilHalt = count;
  }

  observe(observer: SimOpObserver | null): void {
    this.#observer = observer;
  }

  inject(fault: SimFault): void {
    const after = fault.after ?? 0;
    const times = fault.times ?? 1;
    requireCount(after, 'fault.after');
    if (times !== Infinity) requireCount(times, 'fault.times');
    if (times === 0) return;
    this.#faults.push({ op: fault.op, path: fault.path, error: fault.error, skip: after, remaining: times });
  }

  clear(): void {
    this.#faults = [];
  }

  /** A crash happened: the process runs again, without a crashAfterOps limit. Rules stay. */
  restart(): void {
    this.#halted = false;
    this.#opsUntilHalt = null;
  }

  /** Throws SimCrashError once the simulated process has died. */
  checkAlive(kind: SimOpKind, path: string): void {
    if (this.#halted) throw new SimCrashError(kind, path);
  }

  /** Counts a mutating or syncing operation; the one past the crashAfterOps limit dies. */
  count(kind: SimOpKind, path: string): void {
    // First, so that an observer that halts the process (crashAfterOps(0)) stops this very call.
    this.#observer?.(kind, path);
    if (this.#opsUntilHalt !== null) {
      if (this.#opsUntilHalt === 0) {
        this.#halted = true;
        throw new SimCrashError(kind, path);
      }
      this.#opsUntilHalt -= 1;
    }
    this.#opCount += 1;
  }

  /** The error of the first rule this operation fires (consuming it), if any. */
  faultFor(kind: SimOpKind, paths: readonly string[], path: string): Error | undefined {
    for (let i = 0; i < this.#faults.length; i++) {
      const rule = this.#faults[i];
      if (rule === undefined || rule.op !== kind) continue;
      if (rule.path !== undefined && !paths.some((p) => p.includes(rule.path ?? ''))) continue;
      if (rule.skip > 0) {
        rule.skip -= 1;
        continue;
      }
      rule.remaining -= 1;
      if (rule.remaining <= 0) this.#faults.splice(i, 1);
      return fsError(rule.error, `${kind} (injected)`, path);
    }
    return undefined;
  }
}
