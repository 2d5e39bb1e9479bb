/**
 * The journal's live entries in memory, in push order and in basis order (docs/journal.md,
 * "Compaction"), and what a replayed record does to them (docs/journal.md, "Records").
 */
import type { JournalFailure, JournalRecordFields } from './journal-records.js';
import { journalCorruption } from './journal-records.js';
import type { WalRecord } from './replay.js';

export interface LiveEntry {
  id: string;
  payload: Uint8Array;
  /** Order key: LSN of the original push. */
  order: number;
  attempts: number;
  lastFailure: JournalFailure | null;
  /** The newest record that describes the entry whole (its push or its latest carry). */
  basisLsn: number;
  /** Byte position of that record in the log since the checkpoint at open (journal-local). */
  basisPos: number;
  basisBytes: number;
}

export class LiveEntries {
  /** Live entries in push order (order key ascending). */
  #byId = new Map<string, LiveEntry>();
  /** The same entries in basis order (oldest basis first): its head pins the checkpoint. */
  readonly #byBasis = new Map<string, LiveEntry>();
  /** Sum of basisBytes over live entries. */
  #liveBytes = 0;

  get size(): number {
    return this.#byId.size;
  }

  get liveBytes(): number {
    return this.#liveBytes;
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  get(id: string): LiveEntry | undefined {
    return this.#byId.get(id);
  }

  /** In push order. */
  values(): IterableIterator<LiveEntry> {
    return this.#byId.values();
  }

  /** The entry whose basis is oldest: it pins the checkpoint. */
  oldestBasis(): LiveEntry | undefined {
    const oldest = this.#byBasis.values().next();
    return oldest.done === true ? undefined : oldest.value;
  }

  /** Entries whose basis lies before byte position `cutoff`, oldest basis first. */
  basedBefore(cutoff: number): LiveEntry[] {
    const entries: LiveEntry[] = [];
    for (const entry of this.#byBasis.values()) {
      if (entry.basisPos >= cutoff) break;
      entries.push(entry);
    }
    return entries;
  }

  /** Adds an entry whose basis is the newest record (appended last, or being replayed). */
  add(entry: LiveEntry): void {
    this.#byId.set(entry.id, entry);
    this.#byBasis.set(entry.id, entry);
    this.#liveBytes += entry.basisBytes;
  }

  remove(entry: LiveEntry): void {
    this.#byId.delete(entry.id);
    this.#byBasis.delete(entry.id);
    this.#liveBytes -= entry.basisBytes;
  }

  clear(): void {
    this.#byId.clear();
    this.#byBasis.clear();
    this.#liveBytes = 0;
  }

  /** The entry is now described whole by the record at `lsn` (a carry): it moves to the basis end. */
  setBasis(entry: LiveEntry, lsn: number, pos: number, bytes: number): void {
    this.#liveBytes += bytes - entry.basisBytes;
    entry.basisLsn = lsn;
    entry.basisPos = pos;
    entry.basisBytes = bytes;
    this.#byBasis.delete(entry.id);
    this.#byBasis.set(entry.id, entry);
  }

  /**
   * Applies one replayed record, at byte position `pos` and `bytes` long in the log; returns
   * true when it inserted an entry out of push order (see restorePushOrder).
   */
  apply(record: WalRecord, fields: JournalRecordFields, pos: number, bytes: number): boolean {
    switch (fields.kind) {
      case 'push': {
        if (this.#byId.has(fields.id)) throw journalCorruption(record, `push of ${JSON.stringify(fields.id)}, which is already live`);
        this.add({
          id: fields.id,
          payload: fields.payload.slice(),
          order: record.lsn,
          attempts: 0,
          lastFailure: null,
          basisLsn: record.lsn,
          basisPos: pos,
          basisBytes: bytes,
        });
        return false;
      }
      case 'ack': {
        // Unknown: its push lies at or below the checkpoint (legitimate), nothing to do.
        const entry = this.#byId.get(fields.id);
        if (entry !== undefined) this.remove(entry);
        return false;
      }
      case 'fail': {
        const entry = this.#byId.get(fields.id);
        if (entry !== undefined) {
          entry.attempts += 1;
          entry.lastFailure = fields.failure;
        }
        return false;
      }
      case 'clear': {
        this.clear();
        return false;
      }
      case 'carry': {
        const existing = this.#byId.get(fields.id);
        if (existing !== undefined) {
          // The original push (or an older carry) is also in the replayed range: same entry.
          if (existing.order !== fields.order) {
            throw journalCorruption(
              record,
              `carry of ${JSON.stringify(fields.id)} pushed at LSN ${String(fields.order)}, but the live entry was pushed at LSN ${existing.order}`,
            );
          }
          existing.attempts = fields.attempts;
          existing.lastFailure = fields.failure;
          this.setBasis(existing, record.lsn, pos, bytes);
          return false;
        }
        this.add({
          id: fields.id,
          payload: fields.payload.slice(),
          order: fields.order,
          attempts: fields.attempts,
          lastFailure: fields.failure,
          basisLsn: record.lsn,
          basisPos: pos,
          basisBytes: bytes,
        });
        // Its push lies below the checkpoint: later pushes may already be in the map.
        return true;
      }
    }
  }

  /** Re-sorts the push order after a replay inserted carried entries out of order. */
  restorePushOrder(): void {
    const sorted = [...this.#byId.values()].sort((a, b) => a.order - b.order);
    this.#byId = new Map(sorted.map((entry) => [entry.id, entry]));
  }
}
