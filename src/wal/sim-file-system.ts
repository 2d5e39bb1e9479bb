/**
 * SimFileSystem: the FileSystem API over a simulated disk that remembers what is durable.
 * The disk model is sim-disk.ts, what a crash does to it sim-crash.ts, injected faults and
 * crash-after-N sim-faults.ts. The methods and handles stay together: all go through #beginOp.
 */
import { FactError } from '../errors.js';
import type { FileHandle, FileLock, FileSystem, OpenMode } from './file-system.js';
import { parentDir } from './file-system.js';
import { Mulberry32 } from './prng.js';
import { crashPowerLoss, crashProcess, type SimCrashOptions, type SimCrashReport } from './sim-crash.js';
import { applyFileOp, ByteBuffer, cloneDirs, commitDirOpsThrough, type Dir, type DirOp, type Inode, newDir, type Node, truncateInode, writeInode } from './sim-disk.js';
import { fsError, type SimFault, SimFaultPlan, type SimOpKind, type SimOpObserver } from './sim-faults.js';

export { SimCrashError } from './sim-faults.js';
export type { SimFault, SimFaultErrno, SimFaultOp, SimOpKind, SimOpObserver } from './sim-faults.js';
export type { SimCrashMode, SimCrashOptions, SimCrashReport } from './sim-crash.js';

/** Seed used when none is given, so that an unseeded run still replays exactly. */
const DEFAULT_SEED = 0x5eed;
const BITS_PER_BYTE = 8;

export interface SimFileSystemOptions {
  /** Seed of the PRNG that drives crashes and torn writes (a 32-bit integer). */
  seed?: number;
}

/**
 * An in-memory {@link FileSystem} that remembers what is durable and can crash, for
 * testing code against power loss (in the spirit of SQLite's crash VFS, FoundationDB's
 * non-durable files and TigerBeetle's test storage). Everything is deterministic: the same
 * seed and the same calls give the same result, so a failing run replays exactly.
 *
 * Model:
 * - Each file is an inode with `current` bytes (what reads see) and `durable` bytes (what
 *   survives power loss). Writes and truncates since the last `datasync()` are pending, in order.
 * - Creating (open 'create'/'overwrite' of a missing file), renaming and unlinking change the
 *   directory at once and are pending until `syncDir()` of that directory.
 *   `mkdir()` is durable immediately (it also syncs each parent directory it changes).
 * - Handles are bound to the inode, like a Unix fd: they survive rename and unlink.
 * - `crash()` keeps a random prefix of each directory's pending operations (journaling file
 *   systems commit metadata in order) and keeps, drops or tears each pending write.
 *
 * Fs failures are plain Errors with a Node-like `code` ('ENOENT', 'EEXIST', 'EISDIR',
 * 'ENOTDIR', 'EBADF', 'EINVAL', or an injected 'EIO'/'ENOSPC').
 *
 * @example
 * const fs = new SimFileSystem({ seed: 42 });
 * await fs.mkdir('/db');
 * const file = await fs.open('/db/a.log', 'create');
 * await file.write(bytes, 0);
 * fs.crash(); // the file may be gone: its creation was never synced with syncDir('/db')
 */
export class SimFileSystem implements FileSystem {
  readonly #dirs = new Map<string, Dir>();
  #prng: Mulberry32;
  #nextInodeId = 1;
  /** Incremented by each crash: handles of an older epoch are dead. */
  #epoch = 0;
  #openHandles = new Set<HandleState>();
  /** Held locks: path → token, so a stale FileLock cannot release a newer holder's lock. */
  readonly #locks = new Map<string, object>();
  #faults = new SimFaultPlan();

  constructor(options: SimFileSystemOptions = {}) {
    this.#prng = new Mulberry32(options.seed ?? DEFAULT_SEED);
    for (const root of ['/', '.']) this.#dirs.set(root, newDir(root));
  }

  // ---- FileSystem -------------------------------------------------------------------------

  open(path: string, mode: OpenMode): Promise<FileHandle> {
    return settle(() => {
      const p = normalisePath(path);
      const creates = mode === 'create' || mode === 'overwrite';
      const fault = this.#beginOp('open', [p], { counted: creates });
      if (fault) throw fault;
      if (this.#dirs.has(p)) throw fsError('EISDIR', 'open', p);
      const dir = this.#parentOf(p, 'open');
      const name = baseName(p);
      const existing = dir.entries.get(name);
      if (existing?.kind === 'dir') throw fsError('EISDIR', 'open', p);
      let inode: Inode;
      if (existing === undefined) {
        if (!creates) throw fsError('ENOENT', 'open', p);
        inode = this.#newInode();
        dir.entries.set(name, inode);
        dir.pending.push({ kind: 'link', name, inode });
      } else {
        if (mode === 'create') throw fsError('EEXIST', 'open', p);
        inode = existing;
        if (mode === 'overwrite') truncateInode(inode, 0);
      }
      return this.#newHandle(inode, p, mode !== 'read');
    });
  }

  readFile(path: string): Promise<Uint8Array | null> {
    return settle(() => {
      const p = normalisePath(path);
      const fault = this.#beginOp('read', [p]);
      if (fault) throw fault;
      if (this.#dirs.has(p)) throw fsError('EISDIR', 'readFile', p);
      const inode = this.#dirs.get(parentDir(p))?.entries.get(baseName(p));
      return inode?.kind === 'file' ? inode.current.copy() : null;
    });
  }

  readdir(path: string): Promise<string[]> {
    return settle(() => {
      const p = normalisePath(path);
      this.#beginOp('readdir', [p]);
      const dir = this.#dirs.get(p);
      if (dir === undefined) {
        if (this.#lookup(p) !== undefined) throw fsError('ENOTDIR', 'readdir', p);
        return [];
      }
      return [...dir.entries.keys()].sort();
    });
  }

  mkdir(path: string): Promise<void> {
    return settle(() => {
      const p = normalisePath(path);
      this.#beginOp('mkdir', [p], { counted: true });
      const missing: string[] = [];
      for (let at = p; !this.#dirs.has(at); at = parentDir(at)) {
        const parent = this.#dirs.get(parentDir(at));
        if (parent?.entries.get(baseName(at))?.kind === 'file') {
          throw fsError(at === p ? 'EEXIST' : 'ENOTDIR', 'mkdir', p);
        }
        missing.push(at);
      }
      for (const dirPath of missing.reverse()) {
        const parent = this.#dirs.get(parentDir(dirPath));
        if (parent === undefined) throw new FactError('FACT_ASSERTION', `sim: parent of ${dirPath} missing`);
        // The contract says mkdir returns with its parents synced: commit what they had pending.
        this.#syncDirEntries(parent);
        const dir = newDir(dirPath);
        this.#dirs.set(dirPath, dir);
        parent.entries.set(baseName(dirPath), dir);
        parent.durable.set(baseName(dirPath), dir);
      }
    });
  }

  /**
   * Renames a file (directories cannot be renamed: EISDIR), replacing any file at `to`.
   * Atomic at a crash. A cross-directory rename is pending in both directories and becomes
   * durable when EITHER is synced (a journal commits it as one transaction, together with
   * everything queued before it in both directories).
   */
  rename(from: string, to: string): Promise<void> {
    return settle(() => {
      const f = normalisePath(from);
      const t = normalisePath(to);
      const fault = this.#beginOp('rename', [f, t], { counted: true });
      if (fault) throw fault;
      const fromDir = this.#parentOf(f, 'rename');
      const fromName = baseName(f);
      const node = fromDir.entries.get(fromName);
      if (node === undefined) throw fsError('ENOENT', 'rename', f);
      // Directories never move in this model; the WAL only renames files.
      if (node.kind === 'dir' || this.#dirs.has(t)) throw fsError('EISDIR', 'rename', `${f} -> ${t}`);
      const toDir = this.#parentOf(t, 'rename');
      if (f === t) return;
      const toName = baseName(t);
      fromDir.entries.delete(fromName);
      toDir.entries.set(toName, node);
      const op: DirOp = { kind: 'rename', from: fromDir, fromName, to: toDir, toName, inode: node };
      fromDir.pending.push(op);
      if (toDir !== fromDir) toDir.pending.push(op);
    });
  }

  /** Removes a file name (pending until syncDir); open handles keep the inode. */
  unlink(path: string): Promise<void> {
    return settle(() => {
      const p = normalisePath(path);
      const fault = this.#beginOp('unlink', [p], { counted: true });
      if (fault) throw fault;
      if (this.#dirs.has(p)) throw fsError('EISDIR', 'unlink', p);
      const dir = this.#dirs.get(parentDir(p));
      const name = baseName(p);
      if (dir?.entries.get(name) === undefined) return;
      dir.entries.delete(name);
      dir.pending.push({ kind: 'unlink', name });
    });
  }

  exists(path: string): Promise<boolean> {
    return settle(() => {
      const p = normalisePath(path);
      this.#beginOp('exists', [p]);
      return this.#lookup(p) !== undefined;
    });
  }

  syncDir(path: string): Promise<void> {
    return settle(() => {
      const p = normalisePath(path);
      const fault = this.#beginOp('syncDir', [p], { counted: true });
      if (fault) throw fault;
      const dir = this.#dirs.get(p);
      if (dir === undefined) {
        throw fsError(this.#lookup(p) === undefined ? 'ENOENT' : 'ENOTDIR', 'syncDir', p);
      }
      this.#syncDirEntries(dir);
    });
  }

  /**
   * An in-memory lock table: no file is created, so readdir stays clean. A crash (the
   * process died) releases every lock. A second holder gets FACT_LOCKED naming this pid.
   */
  lock(path: string): Promise<FileLock> {
    return settle(() => {
      const p = normalisePath(path);
      this.#beginOp('lock', [p]);
      this.#parentOf(p, 'lock');
      if (this.#locks.has(p)) {
        throw new FactError('FACT_LOCKED', `${p} is locked by process ${process.pid}`, {
          details: { path: p, pid: process.pid },
        });
      }
      const token = {};
      this.#locks.set(p, token);
      return {
        release: () =>
          settle(() => {
            this.#beginOp('release', [p]);
            if (this.#locks.get(p) === token) this.#locks.delete(p);
          }),
      };
    });
  }

  // ---- Crashes and faults -----------------------------------------------------------------

  /**
   * Simulates a crash. Every handle opened before it is dead (EBADF), every lock is
   * released, and a pending {@link crashAfterOps} limit is cleared.
   *
   * 'power-loss' (default), driven by the seeded PRNG:
   * - per directory, a random-length prefix of its pending entry operations survives; a
   *   cross-directory rename survives in both directories or in neither;
   * - per surviving file, starting from its durable bytes, each pending write is kept,
   *   dropped or torn (a random-length prefix kept), and each pending truncate is kept or
   *   dropped; the result becomes both what reads see and what is durable.
   *
   * 'process': the page cache survives, so file content, directories and what is pending
   * stay as they are (a later power-loss crash can still lose the unsynced part).
   */
  crash(options: SimCrashOptions = {}): SimCrashReport {
    const mode = options.mode ?? 'power-loss';
    const report: SimCrashReport = {
      mode,
      writesKept: 0,
      writesTorn: 0,
      writesDropped: 0,
      truncatesKept: 0,
      truncatesDropped: 0,
      dirOpsKept: 0,
      dirOpsDropped: 0,
      handlesClosed: this.#openHandles.size,
      locksReleased: this.#locks.size,
    };
    this.#epoch += 1;
    this.#openHandles = new Set();
    this.#locks.clear();
    this.#faults.restart();
    if (mode === 'process') crashProcess(this.#dirs.values(), report);
    else crashPowerLoss(this.#dirs, this.#prng, report);
    return report;
  }

  /**
   * Lets `count` more mutating or syncing operations (write, truncate, datasync, syncDir,
   * rename, unlink, open with 'create'/'overwrite', mkdir) run; the next one, and every
   * operation of any kind after it (reads too), rejects with {@link SimCrashError} until
   * {@link crash} is called. Reads between the last allowed operation and that one still work.
   */
  crashAfterOps(count: number): void {
    this.#faults.crashAfterOps(count);
  }

  /**
   * Calls `observer` before each mutating or syncing operation (the ones crashAfterOps counts),
   * with its kind and path; `null` removes it. An observer that calls `crashAfterOps(0)` makes
   * that very operation the first one of the dead process (SimMachine counts LevelDB's writes
   * and the file system's in one sequence this way).
   */
  observeOps(observer: SimOpObserver | null): void {
    this.#faults.observe(observer);
  }

  /** Mutating or syncing operations started so far (see {@link crashAfterOps}); never reset. */
  get opCount(): number {
    return this.#faults.opCount;
  }

  /**
   * Adds a fault rule. Rules are checked in the order added and a call fires at most one.
   * Effects of a fault, besides the rejection:
   * - 'write': a random prefix of the data (possibly none) was written, as a real failing
   *   write may do;
   * - 'datasync': nothing becomes durable, and (like Linux after a failed fsync, the 2018
   *   "fsyncgate") the writes pending at that moment are marked clean without being on disk:
   *   a later successful datasync does NOT make them durable, so once one has run they are
   *   lost at the next power-loss crash (before it, a crash keeps, tears or drops them like any
   *   unsynced write). Reads still see them until then. Code must stop trusting the file.
   * - any other op: no effect.
   * Rules survive crashes; see {@link clearFaults}.
   */
  injectFault(fault: SimFault): void {
    this.#faults.inject(fault);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  /** Bit rot in synced data: flips one bit of a file in both its durable and current bytes. */
  flipBit(path: string, byteOffset: number, bitIndex: number): void {
    const p = normalisePath(path);
    const inode = this.#durableInode(p) ?? this.#currentInode(p);
    if (inode === undefined) throw fsError('ENOENT', 'flipBit', p);
    if (!Number.isInteger(bitIndex) || bitIndex < 0 || bitIndex >= BITS_PER_BYTE) {
      throw new FactError('FACT_INVALID_ARGUMENT', `flipBit: bitIndex ${bitIndex} is not in 0..7`);
    }
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset >= inode.durable.length) {
      throw new FactError('FACT_INVALID_ARGUMENT', `flipBit: byte ${byteOffset} is not in the durable content of ${p}`);
    }
    inode.durable.flipBit(byteOffset, bitIndex);
    if (byteOffset < inode.current.length) inode.current.flipBit(byteOffset, bitIndex);
  }

  /** The bytes that would survive a crash right now if nothing pending did; null when the file is not durably there. */
  durableContent(path: string): Uint8Array | null {
    return this.#durableInode(normalisePath(path))?.durable.copy() ?? null;
  }

  durableSizeBytes(path: string): number | null {
    return this.#durableInode(normalisePath(path))?.durable.length ?? null;
  }

  /** Restarts the PRNG from `seed`. */
  reseed(seed: number): void {
    this.#prng = new Mulberry32(seed);
  }

  /**
   * An independent deep copy of the disk (current, durable and pending state) and of the
   * PRNG state, so several crashes can be explored from one state. Handles, locks, fault
   * rules and a crashAfterOps limit do not carry over; opCount does.
   */
  clone(): SimFileSystem {
    const copy = new SimFileSystem();
    copy.#prng = this.#prng.clone();
    copy.#nextInodeId = this.#nextInodeId;
    copy.#faults = new SimFaultPlan(this.#faults.opCount);
    copy.#dirs.clear();
    for (const [path, dir] of cloneDirs(this.#dirs)) copy.#dirs.set(path, dir);
    return copy;
  }

  // ---- Internals --------------------------------------------------------------------------

  /**
   * Every operation starts here, so crash arming and faults apply uniformly. Throws when the
   * simulated process has crashed or the handle is dead; returns the injected fault, if any,
   * for the caller to apply its side effects and throw.
   */
  #beginOp(kind: SimOpKind, paths: readonly string[], options: BeginOptions = {}): Error | undefined {
    const path = paths.join(' -> ');
    this.#faults.checkAlive(kind, path);
    const handle = options.handle;
    if (handle !== undefined) {
      const dead = handle.closed || handle.epoch !== this.#epoch;
      if (dead || (options.writes === true && !handle.writable)) throw fsError('EBADF', kind, path);
    }
    if (options.counted === true) this.#faults.count(kind, path);
    return this.#faults.faultFor(kind, paths, path);
  }

  #newHandle(inode: Inode, path: string, writable: boolean): FileHandle {
    const handle: HandleState = { inode, path, writable, epoch: this.#epoch, closed: false };
    this.#openHandles.add(handle);
    const paths = [path];
    return {
      read: (buffer, offset, length, position) =>
        settle(() => {
          const fault = this.#beginOp('read', paths, { handle });
          if (fault) throw fault;
          return inode.current.read(buffer, offset, length, position);
        }),
      write: (data, position) =>
        settle(() => {
          const fault = this.#beginOp('write', paths, { handle, writes: true, counted: true });
          if (!Number.isSafeInteger(position) || position < 0) throw fsError('EINVAL', 'write', path);
          // A failing write may still have put a prefix of the data in the page cache.
          const written = fault ? data.subarray(0, this.#prng.int(data.length + 1)) : data;
          writeInode(inode, written, position);
          if (fault) throw fault;
        }),
      datasync: () =>
        settle(() => {
          const fault = this.#beginOp('datasync', paths, { handle, counted: true });
          if (fault) {
            for (const op of inode.pending) if (op.kind === 'write') op.lostBySyncFailure = true;
            throw fault;
          }
          for (const op of inode.pending) {
            if (op.kind === 'write' && op.lostBySyncFailure) continue;
            applyFileOp(inode.durable, op);
          }
          inode.pending = [];
        }),
      truncate: (sizeBytes) =>
        settle(() => {
          const fault = this.#beginOp('truncate', paths, { handle, writes: true, counted: true });
          if (fault) throw fault;
          if (!Number.isInteger(sizeBytes) || sizeBytes < 0) throw fsError('EINVAL', 'truncate', path);
          truncateInode(inode, sizeBytes);
        }),
      sizeBytes: () =>
        settle(() => {
          this.#beginOp('stat', paths, { handle });
          return inode.current.length;
        }),
      close: () =>
        settle(() => {
          this.#beginOp('close', paths, { handle });
          handle.closed = true;
          this.#openHandles.delete(handle);
        }),
    };
  }

  #newInode(): Inode {
    const id = this.#nextInodeId;
    this.#nextInodeId += 1;
    return { kind: 'file', id, current: new ByteBuffer(), durable: new ByteBuffer(), pending: [] };
  }

  #parentOf(path: string, operation: string): Dir {
    const dir = this.#dirs.get(parentDir(path));
    if (dir === undefined) throw fsError('ENOENT', operation, path);
    return dir;
  }

  #lookup(path: string): Node | undefined {
    return this.#dirs.get(path) ?? this.#dirs.get(parentDir(path))?.entries.get(baseName(path));
  }

  #currentInode(path: string): Inode | undefined {
    const node = this.#dirs.get(parentDir(path))?.entries.get(baseName(path));
    return node?.kind === 'file' ? node : undefined;
  }

  #durableInode(path: string): Inode | undefined {
    const node = this.#dirs.get(parentDir(path))?.durable.get(baseName(path));
    return node?.kind === 'file' ? node : undefined;
  }

  #syncDirEntries(dir: Dir): void {
    const last = dir.pending.at(-1);
    if (last !== undefined) commitDirOpsThrough(dir, last);
  }
}

// ---- Model types ----------------------------------------------------------------------------

interface BeginOptions {
  /** Counts toward opCount and crashAfterOps (mutating or syncing operations). */
  counted?: boolean;
  handle?: HandleState;
  /** The operation needs a handle opened for writing. */
  writes?: boolean;
}

interface HandleState {
  inode: Inode;
  path: string;
  writable: boolean;
  epoch: number;
  closed: boolean;
}

// ---- Helpers --------------------------------------------------------------------------------

/** Runs `fn` now and reports its outcome as a promise, like an fs call that has completed. */
function settle<T>(fn: () => T): Promise<T> {
  // The executor runs synchronously and turns a throw into a rejection.
  return new Promise((resolve) => resolve(fn()));
}

/** Strips './', trailing '/' and repeated '/'; '' and '.' are the relative root. */
function normalisePath(path: string): string {
  const absolute = path.startsWith('/');
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.length === 0) return absolute ? '/' : '.';
  return (absolute ? '/' : '') + parts.join('/');
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
