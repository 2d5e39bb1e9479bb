/**
 * Index maintenance against a live write path: rebuild, verify and data-index builds run one at
 * a time, in call order, while appends go on; each pauses the writer only for moments (to drain
 * the tail) and never changes what a read, condition or expectation sees (docs/storage-format.md,
 * "Rebuilds").
 */
import { writeBackup, type BackupProgress, type BackupResult } from './backup.js';
import { asError, FactError, isFactError } from '../errors.js';
import { buildDataIndexes, clearDataIndex, type DataIndexProgress } from '../indexes/data-index.js';
import { rebuildIndexes, type RebuildProgress } from '../indexes/rebuild.js';
import { verifyStore, type VerifyReport } from '../indexes/verify.js';
import type { GeneratedIds } from '../model/ids.js';
import { metaKey } from '../storage/keys.js';
import { VIEW, type BatchFactory, type LevelDatabase } from '../storage/level.js';
import { recordDataFields } from '../storage/meta.js';
import type { Wal } from '../wal/wal.js';
import type { Checkpointer } from './checkpointer.js';
import type { ConflictCheck } from './conflicts.js';
import type { DecisionReads } from '../query/decision-reads.js';
import type { LedgerState } from './state.js';
import type { StreamVersions } from './stream-versions.js';
import type { Writer } from './writer.js';

export interface SchedulerParts {
  db: LevelDatabase;
  wal: Wal;
  newBatch: BatchFactory;
  ids: GeneratedIds;
  state: LedgerState;
  writer: Writer;
  versions: StreamVersions;
  conflicts: ConflictCheck;
  decisionReads: DecisionReads;
  checkpointer: Checkpointer;
  onIndexBuild: ((progress: DataIndexProgress) => void) | undefined;
  /** Throws FACT_CLOSED once the store is closing (checked when a turn starts). */
  checkOpen: (method: string) => void;
}

export class MaintenanceScheduler {
  readonly #parts: SchedulerParts;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(parts: SchedulerParts) {
    this.#parts = parts;
  }

  /** Resolves once every turn started so far has ended. */
  async settled(): Promise<void> {
    await this.#chain;
  }

  /** Runs `work` after every maintenance started before it; appends are not held back. */
  turn<T>(work: () => Promise<T>): Promise<T> {
    const { checkOpen, state } = this.#parts;
    const run = this.#chain.then(async () => {
      checkOpen('maintenance');
      try {
        return await work();
      } catch (error) {
        if (isFactError(error)) throw error;
        throw new FactError('FACT_IO', `index maintenance of ${state.path} failed: ${asError(error).message}`, { cause: error, details: { path: state.path } });
      }
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** A backup of the events through the head, from a LevelDB snapshot; appends go on meanwhile. */
  async backup(dest: string, onProgress: ((progress: BackupProgress) => void) | undefined): Promise<BackupResult> {
    const { db, state, writer } = this.#parts;
    if (!db.supports.explicitSnapshots) return writer.exclusive(() => writeBackup(db, undefined, state.head, dest, onProgress));
    const { snapshot, head } = await writer.exclusive(() => Promise.resolve({ snapshot: db.snapshot(), head: state.head }));
    try {
      return await writeBackup(db, snapshot, head, dest, onProgress);
    } finally {
      await snapshot.close();
    }
  }

  /** verify() on a LevelDB snapshot holding exactly the events through the head; appends go on. */
  async verify(): Promise<VerifyReport> {
    const { db, wal, ids, state, writer } = this.#parts;
    if (!db.supports.explicitSnapshots) {
      return writer.exclusive(() => verifyStore(db, wal, state.head, state.dataFields, ids.seed!, undefined));
    }
    const { snapshot, head } = await writer.exclusive(() => Promise.resolve({ snapshot: db.snapshot(), head: state.head }));
    try {
      return await verifyStore(db, wal, head, state.dataFields, ids.seed!, snapshot);
    } finally {
      await snapshot.close();
    }
  }

  /**
   * rebuildIndexes() while appends go on (indexes/maintenance.ts): LevelDB holds every event
   * through the head taken here, the later ones are the apply's.
   */
  async rebuild(onProgress?: (progress: RebuildProgress) => void): Promise<{ events: number; changes: number }> {
    const { db, newBatch, state, writer, versions, conflicts, decisionReads } = this.#parts;
    const head = await writer.exclusive(() => Promise.resolve(state.head));
    const pause = <T>(work: (latest: number) => Promise<T>) =>
      writer.exclusive(async () => {
        const result = await work(state.head);
        // Cached versions and newest positions may have been read from entries the rebuild changed.
        versions.forget();
        conflicts.forget();
        decisionReads.forget();
        return result;
      });
    return rebuildIndexes(db, newBatch, head, state.dataFields, pause, onProgress);
  }

  /**
   * Maintenance that clears and rewrites entries of chunks WAL replay may no longer cover: a
   * power loss could keep the clears and lose the rewrite. A durable `M rebuilding` marker
   * around it makes recovery redo a full rebuild (docs/storage-format.md, recovery row 9).
   */
  async underRebuildMarker<T>(work: () => Promise<T>): Promise<T> {
    const { db, checkpointer } = this.#parts;
    await db.put<Uint8Array, Uint8Array>(metaKey('rebuilding'), new Uint8Array(0), VIEW);
    await checkpointer.makeDurable();
    const result = await work();
    await checkpointer.makeDurable();
    await db.del<Uint8Array>(metaKey('rebuilding'), { keyEncoding: 'view' });
    return result;
  }

  /** Builds the indexes of data fields that have none yet; appends go on meanwhile. */
  async ensureDataIndexes(fields: readonly string[]): Promise<void> {
    if (this.hasDataIndexes(fields)) return;
    await this.turn(() => this.#buildMissingDataIndexes(fields));
  }

  hasDataIndexes(fields: readonly string[]): boolean {
    return fields.every((field) => this.#parts.state.dataFields.includes(field));
  }

  /**
   * Indexes data fields over the whole ledger: from the head taken here the write path writes
   * their entries, and the ledger through it is indexed meanwhile. Queries on a field wait for
   * its build; nothing else does. The field is recorded complete only after a barrier made its
   * entries durable; until then no read trusts them, and a crash leaves entries the next build
   * clears first.
   */
  async #buildMissingDataIndexes(fields: readonly string[]): Promise<void> {
    const { db, newBatch, state, writer, checkpointer, onIndexBuild } = this.#parts;
    const missing = [...new Set(fields.filter((field) => !state.dataFields.includes(field)))];
    if (missing.length === 0) return;
    for (const field of missing) await clearDataIndex(db, field);
    const recorded = [...new Set([...state.dataFields, ...missing])].sort();
    // With the tail drained, every chunk planned from now on decodes its data for the new fields.
    const head = await writer.exclusive(() => {
      state.applyDataFields = recorded;
      return Promise.resolve(state.head);
    });
    try {
      await buildDataIndexes(db, newBatch, head, missing, onIndexBuild);
      await checkpointer.makeDurable();
      await recordDataFields(db, recorded);
      state.dataFields = recorded;
    } finally {
      // A failed build leaves entries that the next one clears first.
      state.applyDataFields = state.dataFields;
    }
  }
}
