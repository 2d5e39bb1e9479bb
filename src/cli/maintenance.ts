/** factstore verify [--repair], rebuild-indexes, backup and restore: db.verify(), db.rebuildIndexes(), db.backup() and FactStore.restore(). */
import { FactStore, type BackupResult, type VerifyReport } from '../index.js';
import { progressBar, withStore } from './common.js';

export interface VerifyOutcome {
  report: VerifyReport;
  /** With --repair, when the indexes were rebuilt: what changed, and the check after it. */
  repair: { rebuilt: { events: number }; problemsFixed: string[]; after: VerifyReport } | null;
}

async function rebuild(db: FactStore, progress: boolean | undefined): Promise<{ events: number }> {
  const bar = progressBar('rebuild-indexes', await db.head(), progress);
  try {
    return await db.rebuildIndexes({ onProgress: ({ events, total }) => bar.update(events, total) });
  } finally {
    bar.stop();
  }
}

export async function verify(path: string, options: { repair?: boolean; progress?: boolean }): Promise<VerifyOutcome> {
  return withStore(path, {}, async (db) => {
    const report = await db.verify();
    if (report.ok || !options.repair) return { report, repair: null };
    // The documented repair: indexes are derived data, rebuilt from the ledger. Problems the rebuild cannot fix stay in `after`.
    const rebuilt = await rebuild(db, options.progress);
    const after = await db.verify();
    const problemsFixed = report.problems.filter((problem) => !after.problems.includes(problem));
    return { report, repair: { rebuilt, problemsFixed, after } };
  });
}

export function formatVerify({ report, repair }: VerifyOutcome): string {
  const lines = [
    `${report.ok ? 'ok' : 'PROBLEMS'}: ${report.events} events, ${report.indexEntries} index entries, ${report.walRecordsChecked} WAL records checked`,
    ...report.problems.map((problem) => `  problem: ${problem}`),
  ];
  if (repair !== null) {
    lines.push(`repair: rebuilt every index from the ledger (${repair.rebuilt.events} events)`);
    lines.push(...repair.problemsFixed.map((problem) => `  fixed: ${problem}`));
    lines.push(`after repair: ${repair.after.ok ? 'ok' : 'PROBLEMS remain'}`, ...repair.after.problems.map((problem) => `  problem: ${problem}`));
  }
  return lines.join('\n') + '\n';
}

export async function rebuildIndexes(path: string, options: { progress?: boolean }): Promise<{ events: number }> {
  return withStore(path, {}, (db) => rebuild(db, options.progress));
}

/** A backup of a (closed) database: what db.backup() writes while it is open. */
export async function backup(path: string, dest: string, options: { progress?: boolean }): Promise<BackupResult> {
  return withStore(path, {}, async (db) => {
    const bar = progressBar('backup', await db.head(), options.progress, 'entries');
    try {
      return await db.backup(dest, { onProgress: ({ entries }) => bar.update(entries, Math.max(entries, 1)) });
    } finally {
      bar.stop();
    }
  });
}

export async function restore(backupPath: string, path: string, options: { force?: boolean }): Promise<BackupResult> {
  return FactStore.restore(backupPath, path, { force: options.force ?? false });
}
