import * as fs from 'node:fs';
import { FactError } from '../errors.js';
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

class NodeFileHandle implements FileHandle {
  readonly #fd: number;

  constructor(fd: number) {
    this.#fd = fd;
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
      return Promise.reject(error as Error);
    }
  }

  datasync(): Promise<void> {
    return callbackToPromise<void>((done) => fs.fdatasync(this.#fd, (error) => done(error, undefined)));
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
  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    // A raw descriptor, not fs.promises' FileHandle: its callback API is cheaper per call.
    const fd = await callbackToPromise<number>((done) => fs.open(path, openFlags[mode], done));
    return new NodeFileHandle(fd);
  }

  async readFile(path: string): Promise<Uint8Array | null> {
    try {
      return await fs.promises.readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
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
