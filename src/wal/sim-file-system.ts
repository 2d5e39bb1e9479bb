import { FactError } from '../errors.js';
import type { FileHandle, FileLock, FileSystem, OpenMode } from './file-system.js';
import { parentDir } from './file-system.js';
import { Mulberry32 } from './prng.js';

/** Seed used when none is given, so that an unseeded run still replays exactly. */
const DEFAULT_SEED = 0x5eed;
/** First capacity of a file buffer; it then doubles, so appends cost amortised O(1). */
const MIN_CAPACITY_BYTES = 64;
const BITS_PER_BYTE = 8;

/** Operations that {@link SimFileSystem.injectFault} can make fail. 'read' covers both FileHandle.read and readFile. */
export type SimFaultOp = 'open' | 'read' | 'write' | 'truncate' | 'datasync' | 'syncDir' | 'rename' | 'unlink';

/** Errno codes that an injected fault throws (as a plain Error with this `code`). */
export type SimFaultErrno = 'EIO' | 'ENOSPC';

/** A deterministic fault rule for {@link SimFileSystem.injectFault}. */
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

/**
 * 'power-loss' (default): the machine lost power; unsynced writes and directory changes are
 * randomly kept, dropped or torn. 'process': only the process died (kill -9); the page
 * cache survives, so everything written stays visible and nothing unsynced becomes durable.
 */
export type SimCrashMode = 'power-loss' | 'process';

export interface SimCrashOptions {
  mode?: SimCrashMode;
}

/** What a crash did; counts of the unsynced operations it found, for debugging output. */
export interface SimCrashReport {
  mode: SimCrashMode;
  writesKept: number;
  writesTorn: number;
  writesDropped: number;
  truncatesKept: number;
  truncatesDropped: number;
  /** Directory operations (create, rename, unlink); a cross-directory rename counts once. */
  dirOpsKept: number;
  dirOpsDropped: number;
  /** Handles that the crash closed. */
  handlesClosed: number;
  /** Locks that the crash released. */
  locksReleased: number;
}

export interface SimFileSystemOptions {
  /** Seed of the PRNG that drives crashes and torn writes (a 32-bit integer). */
  seed?: number;
}

/**
 * Thrown by every operation once the limit set by {@link SimFileSystem.crashAfterOps} is
 * reached, until {@link SimFileSystem.crash} is called: the process "died" at that call.
 */
export class SimCrashError extends Error {
  readonly code = 'SIM_CRASHED' as const;

  constructor(operation: string, path: string) {
    super(`simulated crash: ${operation} ${path} was not performed`);
    this.name = 'SimCrashError';
  }
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
  #faults: FaultRule[] = [];
  #opCount = 0;
  #opsUntilHalt: number | null = null;
  #halted = false;

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
    this.#halted = false;
    this.#opsUntilHalt = null;
    if (mode === 'process') {
      const dirOps = new Set<DirOp>();
      for (const dir of this.#dirs.values()) for (const op of dir.pending) dirOps.add(op);
      report.dirOpsKept = dirOps.size;
      for (const inode of this.#inodesIn('entries')) {
        for (const op of inode.pending) {
          if (op.kind === 'write') report.writesKept += 1;
          else report.truncatesKept += 1;
        }
      }
      return report;
    }
    this.#crashDirectories(report);
    for (const inode of this.#inodesIn('durable')) this.#crashInode(inode, report);
    return report;
  }

  /**
   * Lets `count` more mutating or syncing operations (write, truncate, datasync, syncDir,
   * rename, unlink, open with 'create'/'overwrite', mkdir) run; the next one, and every
   * operation of any kind after it (reads too), rejects with {@link SimCrashError} until
   * {@link crash} is called. Reads between the last allowed operation and that one still work.
   */
  crashAfterOps(count: number): void {
    requireCount(count, 'crashAfterOps count');
    this.#opsUntilHalt = count;
  }

  /** Mutating or syncing operations started so far (see {@link crashAfterOps}); never reset. */
  get opCount(): number {
    return this.#opCount;
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
    const after = fault.after ?? 0;
    const times = fault.times ?? 1;
    requireCount(after, 'fault.after');
    if (times !== Infinity) requireCount(times, 'fault.times');
    if (times === 0) return;
    this.#faults.push({ op: fault.op, path: fault.path, error: fault.error, skip: after, remaining: times });
  }

  clearFaults(): void {
    this.#faults = [];
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
    copy.#opCount = this.#opCount;
    const inodes = new Map<Inode, Inode>();
    const cloneInode = (inode: Inode): Inode => {
      let clone = inodes.get(inode);
      if (clone === undefined) {
        clone = {
          kind: 'file',
          id: inode.id,
          current: inode.current.clone(),
          durable: inode.durable.clone(),
          pending: inode.pending.map((op) => ({ ...op })),
        };
        inodes.set(inode, clone);
      }
      return clone;
    };
    const dirs = new Map<Dir, Dir>();
    for (const dir of this.#dirs.values()) dirs.set(dir, newDir(dir.path));
    const mapNode = (node: Node): Node => (node.kind === 'dir' ? mustGet(dirs, node) : cloneInode(node));
    const ops = new Map<DirOp, DirOp>();
    const mapOp = (op: DirOp): DirOp => {
      let clone = ops.get(op);
      if (clone === undefined) {
        clone =
          op.kind === 'unlink'
            ? { ...op }
            : op.kind === 'link'
              ? { ...op, inode: cloneInode(op.inode) }
              : { ...op, from: mustGet(dirs, op.from), to: mustGet(dirs, op.to), inode: cloneInode(op.inode) };
        ops.set(op, clone);
      }
      return clone;
    };
    copy.#dirs.clear();
    for (const [dir, clone] of dirs) {
      for (const [name, node] of dir.entries) clone.entries.set(name, mapNode(node));
      for (const [name, node] of dir.durable) clone.durable.set(name, mapNode(node));
      clone.pending = dir.pending.map(mapOp);
      copy.#dirs.set(clone.path, clone);
    }
    return copy;
  }

  // ---- Internals --------------------------------------------------------------------------

  /**
   * Every operation starts here, so crash arming and faults apply uniformly. Throws when the
   * simulated process has crashed or the handle is dead; returns the injected fault, if any,
   * for the caller to apply its side effects and throw.
   */
  #beginOp(kind: OpKind, paths: readonly string[], options: BeginOptions = {}): Error | undefined {
    const path = paths.join(' -> ');
    if (this.#halted) throw new SimCrashError(kind, path);
    const handle = options.handle;
    if (handle !== undefined) {
      const dead = handle.closed || handle.epoch !== this.#epoch;
      if (dead || (options.writes === true && !handle.writable)) throw fsError('EBADF', kind, path);
    }
    if (options.counted === true) {
      if (this.#opsUntilHalt !== null) {
        if (this.#opsUntilHalt === 0) {
          this.#halted = true;
          throw new SimCrashError(kind, path);
        }
        this.#opsUntilHalt -= 1;
      }
      this.#opCount += 1;
    }
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

  /** Files reachable from the current or the durable directory entries, by inode id. */
  #inodesIn(side: 'entries' | 'durable'): Inode[] {
    const inodes = new Set<Inode>();
    for (const dir of this.#dirs.values()) {
      for (const node of dir[side].values()) if (node.kind === 'file') inodes.add(node);
    }
    return [...inodes].sort((a, b) => a.id - b.id);
  }

  #syncDirEntries(dir: Dir): void {
    const last = dir.pending.at(-1);
    if (last !== undefined) commitDirOpsThrough(dir, last);
  }

  #crashDirectories(report: SimCrashReport): void {
    const dirs = [...this.#dirs.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const kept = new Map<Dir, number>();
    for (const dir of dirs) {
      if (dir.pending.length > 0) kept.set(dir, this.#prng.int(dir.pending.length + 1));
    }
    // A rename is one journal transaction: cut prefixes until no rename survives in only one
    // of its two directories. Prefixes only shrink, so this terminates.
    for (let changed = true; changed; ) {
      changed = false;
      for (const dir of dirs) {
        const count = kept.get(dir) ?? 0;
        for (let i = 0; i < count; i++) {
          const op = dir.pending[i];
          if (op?.kind !== 'rename' || op.from === op.to) continue;
          const other = op.from === dir ? op.to : op.from;
          if (other.pending.indexOf(op) >= (kept.get(other) ?? 0)) {
            kept.set(dir, i);
            changed = true;
            break;
          }
        }
      }
    }
    const keptOps = new Set<DirOp>();
    const allOps = new Set<DirOp>();
    for (const dir of dirs) {
      const count = kept.get(dir) ?? 0;
      dir.pending.forEach((op, i) => {
        allOps.add(op);
        if (i < count) {
          applyDirOp(dir, dir.durable, op);
          keptOps.add(op);
        }
      });
      dir.pending = [];
      dir.entries = new Map(dir.durable);
    }
    report.dirOpsKept = keptOps.size;
    report.dirOpsDropped = allOps.size - keptOps.size;
  }

  #crashInode(inode: Inode, report: SimCrashReport): void {
    for (const op of inode.pending) {
      if (op.kind === 'truncate') {
        if (this.#prng.int(2) === 0) {
          applyFileOp(inode.durable, op);
          report.truncatesKept += 1;
        } else {
          report.truncatesDropped += 1;
        }
        continue;
      }
      // Keep, drop or tear; a one-byte write cannot be torn.
      const choice = this.#prng.int(op.data.length >= 2 ? 3 : 2);
      if (choice === 0) {
        inode.durable.write(op.position, op.data);
        report.writesKept += 1;
      } else if (choice === 1) {
        report.writesDropped += 1;
      } else {
        const tornLength = 1 + this.#prng.int(op.data.length - 1);
        inode.durable.write(op.position, op.data.subarray(0, tornLength));
        report.writesTorn += 1;
      }
    }
    inode.pending = [];
    inode.current = inode.durable.clone();
  }
}

// ---- Model types ----------------------------------------------------------------------------

type OpKind = SimFaultOp | 'readdir' | 'mkdir' | 'exists' | 'lock' | 'release' | 'stat' | 'close';

interface BeginOptions {
  /** Counts toward opCount and crashAfterOps (mutating or syncing operations). */
  counted?: boolean;
  handle?: HandleState;
  /** The operation needs a handle opened for writing. */
  writes?: boolean;
}

interface FaultRule {
  op: SimFaultOp;
  path: string | undefined;
  error: SimFaultErrno;
  skip: number;
  remaining: number;
}

interface HandleState {
  inode: Inode;
  path: string;
  writable: boolean;
  epoch: number;
  closed: boolean;
}

type FileOp =
  | { kind: 'write'; position: number; data: Uint8Array; lostBySyncFailure: boolean }
  | { kind: 'truncate'; sizeBytes: number };

interface Inode {
  kind: 'file';
  /** Creation order; crashes visit inodes by id so the PRNG draws replay exactly. */
  id: number;
  current: ByteBuffer;
  durable: ByteBuffer;
  /** Writes and truncates since the last datasync, in order. */
  pending: FileOp[];
}

/** A cross-directory rename is one object in both directories' pending lists. */
type DirOp =
  | { kind: 'link'; name: string; inode: Inode }
  | { kind: 'unlink'; name: string }
  | { kind: 'rename'; from: Dir; fromName: string; to: Dir; toName: string; inode: Inode };

interface Dir {
  kind: 'dir';
  path: string;
  entries: Map<string, Node>;
  durable: Map<string, Node>;
  pending: DirOp[];
}

type Node = Inode | Dir;

function newDir(path: string): Dir {
  return { kind: 'dir', path, entries: new Map(), durable: new Map(), pending: [] };
}

function writeInode(inode: Inode, data: Uint8Array, position: number): void {
  if (data.length === 0) return;
  const copy = data.slice();
  inode.current.write(position, copy);
  inode.pending.push({ kind: 'write', position, data: copy, lostBySyncFailure: false });
}

function truncateInode(inode: Inode, sizeBytes: number): void {
  inode.current.truncate(sizeBytes);
  inode.pending.push({ kind: 'truncate', sizeBytes });
}

function applyFileOp(bytes: ByteBuffer, op: FileOp): void {
  if (op.kind === 'write') bytes.write(op.position, op.data);
  else bytes.truncate(op.sizeBytes);
}

/** Applies the part of `op` that concerns `dir` to `entries`. */
function applyDirOp(dir: Dir, entries: Map<string, Node>, op: DirOp): void {
  if (op.kind === 'link') entries.set(op.name, op.inode);
  else if (op.kind === 'unlink') entries.delete(op.name);
  else {
    if (op.from === dir) entries.delete(op.fromName);
    if (op.to === dir) entries.set(op.toName, op.inode);
  }
}

/**
 * Makes `dir`'s pending operations durable up to and including `last`. A cross-directory
 * rename among them also commits, in the other directory, everything queued up to it: the
 * journal commits in order, and the rename is one transaction.
 */
function commitDirOpsThrough(dir: Dir, last: DirOp): void {
  while (dir.pending.includes(last)) {
    const op = dir.pending.shift();
    if (op === undefined) return;
    applyDirOp(dir, dir.durable, op);
    if (op.kind === 'rename' && op.from !== op.to) {
      const other = op.from === dir ? op.to : op.from;
      if (other.pending.includes(op)) commitDirOpsThrough(other, op);
    }
  }
}

// ---- Helpers --------------------------------------------------------------------------------

/**
 * File bytes with spare capacity, so appends do not copy the whole file. Invariant: bytes
 * past `length` are zero, so growing (by a write past the end or a truncate) zero-fills.
 */
class ByteBuffer {
  #bytes: Uint8Array;
  #length: number;

  constructor(bytes: Uint8Array = new Uint8Array(0), length = 0) {
    this.#bytes = bytes;
    this.#length = length;
  }

  get length(): number {
    return this.#length;
  }

  write(position: number, data: Uint8Array): void {
    const end = position + data.length;
    this.#ensureCapacity(end);
    this.#bytes.set(data, position);
    this.#length = Math.max(this.#length, end);
  }

  truncate(sizeBytes: number): void {
    if (sizeBytes < this.#length) this.#bytes.fill(0, sizeBytes, this.#length);
    else this.#ensureCapacity(sizeBytes);
    this.#length = sizeBytes;
  }

  read(target: Uint8Array, offset: number, length: number, position: number): number {
    const count = Math.max(0, Math.min(length, this.#length - position, target.length - offset));
    target.set(this.#bytes.subarray(position, position + count), offset);
    return count;
  }

  flipBit(byteOffset: number, bitIndex: number): void {
    this.#bytes[byteOffset] = (this.#bytes[byteOffset] ?? 0) ^ (1 << bitIndex);
  }

  copy(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }

  clone(): ByteBuffer {
    return new ByteBuffer(this.#bytes.slice(0, this.#length), this.#length);
  }

  #ensureCapacity(capacity: number): void {
    if (capacity <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(capacity, this.#bytes.length * 2, MIN_CAPACITY_BYTES));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}

/** Runs `fn` now and reports its outcome as a promise, like an fs call that has completed. */
function settle<T>(fn: () => T): Promise<T> {
  // The executor runs synchronously and turns a throw into a rejection.
  return new Promise((resolve) => resolve(fn()));
}

function fsError(code: string, operation: string, path: string): Error & { code: string } {
  return Object.assign(new Error(`${code}: ${operation} ${path}`), { code, path });
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

function requireCount(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new FactError('FACT_INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${value}`);
  }
}

function mustGet<K, V>(map: Map<K, V>, key: K): V {
  const value = map.get(key);
  if (value === undefined) throw new FactError('FACT_ASSERTION', 'sim: clone lost a node');
  return value;
}
