/**
 * The only door through which src/wal touches storage. Two implementations:
 * NodeFileSystem (real files) and SimFileSystem (in memory, remembers what is durable,
 * crashes and injects faults on demand). Paths are plain strings joined with '/'.
 *
 * Durability contract (what SimFileSystem models and NodeFileSystem provides on Linux):
 * - bytes written to a file are durable only after `datasync()` on that file;
 * - creating, renaming or unlinking a directory entry is durable only after
 *   `syncDir()` on the parent directory;
 * - a failed write or sync may have lost data: the caller must stop trusting the file.
 */
export interface FileHandle {
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; returns bytes read (0 at end). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Writes all of `data` at `position` (growing the file when needed). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** fdatasync: makes the file's written bytes (and its size) durable. */
  datasync(): Promise<void>;
  truncate(sizeBytes: number): Promise<void>;
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

/**
 * 'read': existing file, read only. 'readwrite': existing file, read and write.
 * 'create': a new file that must not exist yet (fails with EEXIST), read and write.
 * 'overwrite': create or truncate to empty, read and write.
 */
export type OpenMode = 'read' | 'readwrite' | 'create' | 'overwrite';

export interface FileLock {
  release(): Promise<void>;
}

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandle>;
  /** Whole file content, or null when the file does not exist. */
  readFile(path: string): Promise<Uint8Array | null>;
  /** Entry names (not paths) of a directory, sorted; [] when it does not exist. */
  readdir(path: string): Promise<string[]>;
  /** Creates the directory and missing parents; durable (parents synced) when it returns. */
  mkdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; no error when it does not exist. */
  unlink(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** fsync of a directory: makes entry creations, renames and unlinks in it durable. */
  syncDir(path: string): Promise<void>;
  /**
   * Takes an exclusive lock for this process on `path` (a lock file). Fails with FACT_LOCKED,
   * naming the holder's pid, while another holder (this process or another) is alive. A lock
   * left by a process that died does not block.
   */
  lock(path: string): Promise<FileLock>;
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

export function parentDir(path: string): string {
  const slash = path.lastIndexOf('/');
  if (slash < 0) return '.';
  if (slash === 0) return '/';
  return path.slice(0, slash);
}
