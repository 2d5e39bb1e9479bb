import * as fs from 'node:fs';
import { asError, FactError } from '../errors.js';
import type { FileHandle, FileLock, FileSystem, OpenMode } from './file-system.js';
import { parentDir } from './file-system.js';

const openFlags: Record<OpenMode, string> = {
  read: 'r',
  readwrite: 'r+',
  create: 'wx+',
  overwrite: 'w+',
};

/** Paths locked by this process, so a second open in the same process fails too. */
const locksHeldByThisProcess = new Set<string>();

function callbackToPromise<T>(run: (done: (error: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value)));
  });
}

/**
 * How datasync waits for the disk. 'threadpool': libuv's pool (the event loop stays free, a
 * round trip costs 50–65 µs per commit). 'blocking': fdatasyncSync on the main thread (faster
 * while the disk is fast, but a slow disk stalls the process). 'adaptive' (default): blocking
 * while recent syncs took under BLOCKING_DATASYNC_LATENCY_MS_MAX, the pool otherwise.
 */
export type DatasyncMode = 'adaptive' | 'blocking' | 'threadpool';

export const BLOCKING_DATASYNC_LATENCY_MS_MAX = 1;
/** Weight of the newest sample in the moving average of sync latency. */
const LATENCY_SMOOTHING = 0.2;

export interface NodeFileSystemOptions {
  datasync?: DatasyncMode;
}

class DatasyncPolicy {
  readonly mode: DatasyncMode;
  #averageMs = 0;

  constructor(mode: DatasyncMode) {
    this.mode = mode;
  }

  shouldBlock(): boolean {
    if (this.mode !== 'adaptive') return this.mode === 'blocking';
    // Both ways are timed, so a disk that slows down or recovers moves the average either way.
    return this.#averageMs < BLOCKING_DATASYNC_LATENCY_MS_MAX;
  }

  record(latencyMs: number): void {
    this.#averageMs += (latencyMs - this.#averageMs) * LATENCY_SMOOTHING;
  }
}

class NodeFileHandle implements FileHandle {
  readonly #fd: number;
  readonly #policy: DatasyncPolicy;

  constructor(fd: number, policy: DatasyncPolicy) {
    this.#fd = fd;
    this.#policy = policy;
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return callbackToPromise<number>((done) => fs.read(this.#fd, buffer, offset, length, position, done));
  }

  // Writes land in the page cache, so a synchronous write costs a few microseconds and saves
  // a thread-pool round trip (0.05–0.2 ms, perf-facts.md); only datasync waits for the disk.
  write(data: Uint8Array, position: number): Promise<void> {
    try {
      let written = 0;
      while (written < data.length) {
        written += fs.writeSync(this.#fd, data, written, data.length - written, position + written);
      }
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  datasync(): Promise<void> {
    const started = performance.now();
    if (this.#policy.shouldBlock()) {
      try {
        fs.fdatasyncSync(this.#fd);
      } catch (error) {
        return Promise.reject(asError(error));
      }
      this.#policy.record(performance.now() - started);
      return Promise.resolve();
    }
    return callbackToPromise<void>((done) => fs.fdatasync(this.#fd, (error) => done(error, undefined))).then(() => {
      this.#policy.record(performance.now() - started);
    });
  }

  truncate(sizeBytes: number): Promise<void> {
    return callbackToPromise<void>((done) => fs.ftruncate(this.#fd, sizeBytes, (error) => done(error, undefined)));
  }

  async sizeBytes(): Promise<number> {
    const stats = await callbackToPromise<fs.Stats>((done) => fs.fstat(this.#fd, done));
    return stats.size;
  }

  close(): Promise<void> {
    return callbackToPromise<void>((done) => fs.close(this.#fd, (error) => done(error, undefined)));
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Real files through node:fs. Directory changes are made durable only by syncDir. */
export class NodeFileSystem implements FileSystem {
  readonly #policy: DatasyncPolicy;

  constructor(options: NodeFileSystemOptions = {}) {
    const mode = options.datasync ?? 'adaptive';
    if (mode !== 'adaptive' && mode !== 'blocking' && mode !== 'threadpool') {
      throw new FactError('FACT_INVALID_ARGUMENT', `NodeFileSystem: datasync must be 'adaptive', 'blocking' or 'threadpool', got ${String(mode)}`);
    }
    this.#policy = new DatasyncPolicy(mode);
  }

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    // A raw descriptor, not fs.promises' FileHandle: its callback API is cheaper per call.
    const fd = await callbackToPromise<number>((done) => fs.open(path, openFlags[mode], done));
    return new NodeFileHandle(fd, this.#policy);
  }

  async readFile(path: string): Promise<Uint8Array | null> {
    let fd: number;
    try {
      fd = await callbackToPromise<number>((done) => fs.open(path, 'r', done));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    // One read of the whole file: fs.promises.readFile reads 512 KiB per thread-pool round trip,
    // 32 of them for a 16 MiB segment, each queued behind LevelDB's work (≈ 20–40 ms of an open).
    try {
      const { size } = await callbackToPromise<fs.Stats>((done) => fs.fstat(fd, done));
      const bytes = Buffer.allocUnsafe(size);
      let filled = 0;
      while (filled < size) {
        const read = await callbackToPromise<number>((done) => fs.read(fd, bytes, filled, size - filled, filled, done));
        if (read === 0) break; // shrank since the fstat: what is there
        filled += read;
      }
      return filled === size ? bytes : bytes.subarray(0, filled);
    } finally {
      await callbackToPromise<void>((done) => fs.close(fd, (error) => done(error, undefined)));
    }
  }

  async readdir(path: string): Promise<string[]> {
    try {
      return (await fs.promises.readdir(path)).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async mkdir(path: string): Promise<void> {
    const created = await fs.promises.mkdir(path, { recursive: true });
    if (created === undefined) return;
    // Make every newly created level durable in its parent.
    let dir = path;
    while (dir.length >= created.length) {
      await this.syncDir(parentDir(dir));
      const parent = parentDir(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }

  rename(from: string, to: string): Promise<void> {
    return fs.promises.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    try {
      await fs.promises.unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await fs.promises.stat(path);
      return true;
    } catch {
      return false;
    }
  }

  async syncDir(path: string): Promise<void> {
    const handle = await fs.promises.open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async lock(path: string): Promise<FileLock> {
    const key = fs.realpathSync(parentDir(path)) + '/' + path.slice(path.lastIndexOf('/') + 1);
    if (locksHeldByThisProcess.has(key)) {
      throw new FactError('FACT_LOCKED', `${path} is locked by this process (pid ${process.pid})`, {
        details: { path, pid: process.pid },
      });
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await fs.promises.open(path, 'wx');
        try {
          await handle.writeFile(`${process.pid}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await this.syncDir(parentDir(path));
        locksHeldByThisProcess.add(key);
        let released = false;
        return {
          release: async () => {
            if (released) return;
            released = true;
            locksHeldByThisProcess.delete(key);
            await this.unlink(path);
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const holder = Number.parseInt((await this.readFile(path).catch(() => null))?.toString() ?? '', 10);
        // Our own pid in the file without an entry in the table is a lock left by an earlier
        // incarnation of this pid (containers often run as pid 1): stale.
        if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isProcessAlive(holder)) {
          throw new FactError('FACT_LOCKED', `${path} is locked by process ${holder}`, {
            details: { path, pid: holder },
          });
        }
        await this.unlink(path); // stale: its holder died
      }
    }
    throw new FactError('FACT_LOCKED', `${path} could not be locked: another process raced for it`, {
      details: { path },
    });
  }
}
