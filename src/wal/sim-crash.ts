/**
 * What a simulated crash does to the disk: after a power loss, which pending directory
 * operations and writes survive, are dropped or are torn, drawn from the seeded PRNG; after a
 * process crash, nothing changes. SimFileSystem.crash documents the rules.
 */
import type { Mulberry32 } from './prng.js';
import { applyDirOp, applyFileOp, type Dir, type DirOp, type Inode, inodesIn } from './sim-disk.js';

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

/** A process crash: the page cache survives, so every pending operation is counted as kept and stays pending. */
export function crashProcess(dirs: Iterable<Dir>, report: SimCrashReport): void {
  const dirList = [...dirs];
  const dirOps = new Set<DirOp>();
  for (const dir of dirList) for (const op of dir.pending) dirOps.add(op);
  report.dirOpsKept = dirOps.size;
  for (const inode of inodesIn(dirList, 'entries')) {
    for (const op of inode.pending) {
      if (op.kind === 'write') report.writesKept += 1;
      else report.truncatesKept += 1;
    }
  }
}

/** A power loss: directories first (which files survive), then the pending writes of each surviving file. */
export function crashPowerLoss(dirs: ReadonlyMap<string, Dir>, prng: Mulberry32, report: SimCrashReport): void {
  crashDirectories(dirs.values(), prng, report);
  for (const inode of inodesIn(dirs.values(), 'durable')) crashInode(inode, prng, report);
}

function crashDirectories(unsorted: Iterable<Dir>, prng: Mulberry32, report: SimCrashReport): void {
  const dirs = [...unsorted].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const kept = new Map<Dir, number>();
  for (const dir of dirs) {
    if (dir.pending.length > 0) kept.set(dir, prng.int(dir.pending.length + 1));
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

function crashInode(inode: Inode, prng: Mulberry32, report: SimCrashReport): void {
  for (const op of inode.pending) {
    if (op.kind === 'truncate') {
      if (prng.int(2) === 0) {
        applyFileOp(inode.durable, op);
        report.truncatesKept += 1;
      } else {
        report.truncatesDropped += 1;
      }
      continue;
    }
    // Keep, drop or tear; a one-byte write cannot be torn.
    const choice = prng.int(op.data.length >= 2 ? 3 : 2);
    if (choice === 0) {
      inode.durable.write(op.position, op.data);
      report.writesKept += 1;
    } else if (choice === 1) {
      report.writesDropped += 1;
    } else {
      const tornLength = 1 + prng.int(op.data.length - 1);
      inode.durable.write(op.position, op.data.subarray(0, tornLength));
      report.writesTorn += 1;
    }
  }
  inode.pending = [];
  inode.current = inode.durable.clone();
}
