/**
 * The simulated disk of SimFileSystem: inodes and directories with their current, durable and
 * pending state, and the operations that move state between them (see SimFileSystem's "Model").
 */
import { FactError } from '../errors.js';

/** First capacity of a file buffer; it then doubles, so appends cost amortised O(1). */
const MIN_CAPACITY_BYTES = 64;

export type FileOp =
  | { kind: 'write'; position: number; data: Uint8Array; lostBySyncFailure: boolean }
  | { kind: 'truncate'; sizeBytes: number };

export interface Inode {
  kind: 'file';
  /** Creation order; crashes visit inodes by id so the PRNG draws replay exactly. */
  id: number;
  current: ByteBuffer;
  durable: ByteBuffer;
  /** Writes and truncates since the last datasync, in order. */
  pending: FileOp[];
}

/** A cross-directory rename is one object in both directories' pending lists. */
export type DirOp =
  | { kind: 'link'; name: string; inode: Inode }
  | { kind: 'unlink'; name: string }
  | { kind: 'rename'; from: Dir; fromName: string; to: Dir; toName: string; inode: Inode };

export interface Dir {
  kind: 'dir';
  path: string;
  entries: Map<string, Node>;
  durable: Map<string, Node>;
  pending: DirOp[];
}

export type Node = Inode | Dir;

export function newDir(path: string): Dir {
  return { kind: 'dir', path, entries: new Map(), durable: new Map(), pending: [] };
}

export function writeInode(inode: Inode, data: Uint8Array, position: number): void {
  if (data.length === 0) return;
  const copy = data.slice();
  inode.current.write(position, copy);
  inode.pending.push({ kind: 'write', position, data: copy, lostBySyncFailure: false });
}

export function truncateInode(inode: Inode, sizeBytes: number): void {
  inode.current.truncate(sizeBytes);
  inode.pending.push({ kind: 'truncate', sizeBytes });
}

export function applyFileOp(bytes: ByteBuffer, op: FileOp): void {
  if (op.kind === 'write') bytes.write(op.position, op.data);
  else bytes.truncate(op.sizeBytes);
}

/** Applies the part of `op` that concerns `dir` to `entries`. */
export function applyDirOp(dir: Dir, entries: Map<string, Node>, op: DirOp): void {
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
export function commitDirOpsThrough(dir: Dir, last: DirOp): void {
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

/** Files reachable from the current or the durable directory entries, by inode id. */
export function inodesIn(dirs: Iterable<Dir>, side: 'entries' | 'durable'): Inode[] {
  const inodes = new Set<Inode>();
  for (const dir of dirs) {
    for (const node of dir[side].values()) if (node.kind === 'file') inodes.add(node);
  }
  return [...inodes].sort((a, b) => a.id - b.id);
}

/** An independent deep copy of every directory, keyed and ordered as `dirs`. */
export function cloneDirs(dirs: ReadonlyMap<string, Dir>): Map<string, Dir> {
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
  const clones = new Map<Dir, Dir>();
  for (const dir of dirs.values()) clones.set(dir, newDir(dir.path));
  const mapNode = (node: Node): Node => (node.kind === 'dir' ? mustGet(clones, node) : cloneInode(node));
  const ops = new Map<DirOp, DirOp>();
  const mapOp = (op: DirOp): DirOp => {
    let clone = ops.get(op);
    if (clone === undefined) {
      clone =
        op.kind === 'unlink'
          ? { ...op }
          : op.kind === 'link'
            ? { ...op, inode: cloneInode(op.inode) }
            : { ...op, from: mustGet(clones, op.from), to: mustGet(clones, op.to), inode: cloneInode(op.inode) };
      ops.set(op, clone);
    }
    return clone;
  };
  const copy = new Map<string, Dir>();
  for (const [dir, clone] of clones) {
    for (const [name, node] of dir.entries) clone.entries.set(name, mapNode(node));
    for (const [name, node] of dir.durable) clone.durable.set(name, mapNode(node));
    clone.pending = dir.pending.map(mapOp);
    copy.set(clone.path, clone);
  }
  return copy;
}

function mustGet<K, V>(map: Map<K, V>, key: K): V {
  const value = map.get(key);
  if (value === undefined) throw new FactError('FACT_ASSERTION', 'sim: clone lost a node');
  return value;
}

/**
 * File bytes with spare capacity, so appends do not copy the whole file. Invariant: bytes
 * past `length` are zero, so growing (by a write past the end or a truncate) zero-fills.
 */
export class ByteBuffer {
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
