/**
 * Decision reads (db.decide): the events matching a query, from memory where that is exact.
 * Per tag, the complete list of committed positions (loaded from the tag index once, then kept
 * up to date as groups become durable); per position, the event, decoded once and frozen. A
 * query whose every item names a tag is answered from these without a LevelDB iterator: the
 * candidates are the positions of each item's shortest tag list, filtered with matchesQuery.
 *
 * Exactness: lists are loaded only by the writer while it plans a group, when no group can
 * become durable, from a tail snapshot taken before the index is read (as MergedReads does);
 * afterwards every durable chunk is noted in commit order, so a list always holds every
 * committed position with its tag. A rebuild of the indexes drops them (forget).
 */
import { utf8 } from '../bytes.js';
import { openChunk, recordedEventOf } from '../model/chunk.js';
import type { GeneratedIds } from '../model/ids.js';
import { matchesQuery, type Query } from '../model/query.js';
import type { RecordedEvent } from '../model/types.js';
import type { IndexHit } from '../indexes/entries.js';
import { KeySpace } from '../storage/keys.js';
import type { LedgerReader } from './ledger-reader.js';
import type { MergedReads } from './merged-reads.js';
import type { TailChunk, TailSnapshot, UnappliedTail } from './tail.js';

/** A tag with more events than this is not listed: its decisions read the indexes. */
export const DECISION_TAG_POSITIONS_MAX = 4096;
/** Positions held over all listed tags; beyond it the least recently used lists are dropped. */
export const DECISION_POSITIONS_MAX = 1_000_000;
/** Decoded events kept for decisions; beyond it the least recently used are dropped. */
export const DECISION_EVENTS_MAX = 100_000;

/** Marks a tag known to have more than DECISION_TAG_POSITIONS_MAX events. */
const TOO_MANY: readonly IndexHit[] = Object.freeze([]);

export class DecisionReads {
  readonly #reader: LedgerReader;
  readonly #reads: MergedReads;
  readonly #tail: UnappliedTail;
  readonly #appliedHead: () => number;
  readonly #ids: GeneratedIds;
  /** Tag → every committed hit with it, in position order (or TOO_MANY). Map order: least recently used first. */
  readonly #lists = new Map<string, IndexHit[] | typeof TOO_MANY>();
  #listedPositions = 0;
  /** Position → its event, frozen; only events whose values can all be frozen. */
  readonly #events = new Map<number, RecordedEvent>();

  constructor(reader: LedgerReader, reads: MergedReads, tail: UnappliedTail, appliedHead: () => number, ids: GeneratedIds) {
    this.#reader = reader;
    this.#reads = reads;
    this.#tail = tail;
    this.#appliedHead = appliedHead;
    this.#ids = ids;
  }

  /**
   * The committed events matching `query` up to `head`, in position order, read-only. Only the
   * writer calls it (while planning), so lists it loads miss no group.
   */
  async matching(query: Query, head: number): Promise<RecordedEvent[]> {
    const items = query.compiled;
    if (items === 'all' || items.some((item) => item.tags.length === 0)) return this.#fromIndexes(query);
    const tail = this.#tail.snapshot(this.#appliedHead());
    // Lists not held yet load together: each costs LevelDB round trips, concurrent ones overlap.
    const unlisted = new Set<string>();
    for (const item of items) for (const tag of item.tags) if (!this.#lists.has(tag)) unlisted.add(tag);
    const loaded = new Map<string, IndexHit[] | typeof TOO_MANY>();
    if (unlisted.size > 0) await Promise.all([...unlisted].map(async (tag) => loaded.set(tag, await this.#load(tag, tail))));
    const candidates: IndexHit[][] = [];
    for (const item of items) {
      let shortest: IndexHit[] | null = null;
      for (const tag of item.tags) {
        // A list loaded here may have been evicted meanwhile; this read still has it.
        const list = this.#lists.get(tag) ?? loaded.get(tag)!;
        if (list === TOO_MANY) continue;
        if (shortest === null || list.length < shortest.length) shortest = list as IndexHit[];
        if (shortest.length === 0) break;
      }
      if (shortest === null) return this.#fromIndexes(query);
      candidates.push(shortest);
    }
    const hits = candidates.length === 1 ? candidates[0]! : mergeHits(candidates);
    const events: RecordedEvent[] = [];
    const missing: IndexHit[] = [];
    for (const hit of hits) {
      if (hit.position > head) break;
      const event = this.#events.get(hit.position) ?? (hit.position > tail.appliedHead ? this.#fromTail(tail, hit.position) : undefined);
      if (event === undefined) missing.push(hit);
      else events.push(event);
    }
    if (missing.length > 0) {
      const stored = this.#reader.readsSync ? this.#reader.eventsSync(missing) : await this.#reader.events(missing);
      for (const event of stored) events.push(this.#keep(event));
      events.sort((a, b) => a.position - b.position);
    }
    return events.filter((event) => matchesQuery(query, event));
  }

  /** Keeps the lists complete as a group becomes durable (called in commit order, before it resolves). */
  noteDurable(chunks: readonly TailChunk[]): void {
    if (this.#lists.size === 0) return;
    for (const chunk of chunks) {
      const tuples = chunk.planned.tuples;
      for (let index = 0; index < tuples.length; index++) {
        for (const tag of tuples[index]![4]) {
          const list = this.#lists.get(tag);
          if (list === undefined || list === TOO_MANY) continue;
          if (list.length >= DECISION_TAG_POSITIONS_MAX) {
            this.#listedPositions -= list.length;
            this.#lists.set(tag, TOO_MANY);
            continue;
          }
          (list as IndexHit[]).push({ position: chunk.firstPosition + index, chunk: chunk.firstPosition });
          this.#listedPositions++;
        }
      }
    }
  }

  /** Drops the lists (a rebuild rewrote the entries they came from). Events stay: positions never change. */
  forget(): void {
    this.#lists.clear();
    this.#listedPositions = 0;
  }

  /** The tag's list from the index up to the snapshot's applied head, then the snapshot's tail. */
  async #load(tag: string, tail: TailSnapshot): Promise<IndexHit[] | typeof TOO_MANY> {
    const list: IndexHit[] = [];
    let tooMany = false;
    const scan = { from: undefined, direction: 'forward' as const, limit: DECISION_TAG_POSITIONS_MAX + 1, signal: undefined };
    outer: for await (const batch of this.#reader.scanIndexHits(KeySpace.tag, utf8(tag), scan)) {
      for (const hit of batch) {
        // Beyond the snapshot's applied head the tail is the source (the apply may have moved more).
        if (hit.position > tail.appliedHead) break outer;
        if (list.length >= DECISION_TAG_POSITIONS_MAX) {
          tooMany = true;
          break outer;
        }
        list.push(hit);
      }
    }
    if (!tooMany) {
      for (const chunk of tail.chunks()) {
        chunk.planned.tuples.forEach((tuple, index) => {
          if (tuple[4].includes(tag)) list.push({ position: chunk.firstPosition + index, chunk: chunk.firstPosition });
        });
      }
      tooMany = list.length > DECISION_TAG_POSITIONS_MAX;
    }
    const result = tooMany ? TOO_MANY : list;
    this.#lists.set(tag, result);
    this.#listedPositions += result.length;
    this.#evictLists();
    return result;
  }

  #evictLists(): void {
    for (const [tag, list] of this.#lists) {
      if (this.#listedPositions <= DECISION_POSITIONS_MAX) return;
      this.#lists.delete(tag);
      this.#listedPositions -= list.length;
    }
  }

  #fromTail(tail: TailSnapshot, position: number): RecordedEvent | undefined {
    const chunk = tail.chunkAt(position);
    if (chunk === undefined) return undefined;
    const view = openChunk(chunk.bytes, chunk.firstPosition, `ledger chunk ${chunk.firstPosition} (not yet applied)`);
    const index = position - chunk.firstPosition;
    return this.#keep(recordedEventOf(view, view.tuple(index), chunk.firstPosition, index, this.#ids));
  }

  /** Freezes the event; keeps it when every value in it could be frozen (typed arrays, Maps, Dates cannot). */
  #keep(event: RecordedEvent): RecordedEvent {
    if (!freezeEvent(event)) return event;
    if (this.#events.size >= DECISION_EVENTS_MAX) {
      // Map order is insertion order: the oldest entries go first.
      for (const position of this.#events.keys()) {
        this.#events.delete(position);
        if (this.#events.size < DECISION_EVENTS_MAX * 0.9) break;
      }
    }
    this.#events.set(event.position, event);
    return event;
  }

  async #fromIndexes(query: Query): Promise<RecordedEvent[]> {
    const events = await this.#reads.readAll(query, { from: undefined, direction: 'forward', limit: Number.POSITIVE_INFINITY, signal: undefined });
    for (const event of events) freezeEvent(event);
    return events;
  }
}

/** The hits of several ascending lists, ascending, each position once. */
function mergeHits(lists: readonly IndexHit[][]): IndexHit[] {
  let merged = lists[0]!;
  for (let index = 1; index < lists.length; index++) merged = mergeTwo(merged, lists[index]!);
  return merged;
}

function mergeTwo(left: readonly IndexHit[], right: readonly IndexHit[]): IndexHit[] {
  const merged: IndexHit[] = [];
  let l = 0;
  let r = 0;
  while (l < left.length && r < right.length) {
    const a = left[l]!;
    const b = right[r]!;
    if (a.position < b.position) {
      merged.push(a);
      l++;
    } else if (b.position < a.position) {
      merged.push(b);
      r++;
    } else {
      merged.push(a);
      l++;
      r++;
    }
  }
  while (l < left.length) merged.push(left[l++]!);
  while (r < right.length) merged.push(right[r++]!);
  return merged;
}

/** Makes an event read-only (as far as freezing can: see deepFreeze); true when all of it is. */
export function freezeEvent(event: RecordedEvent): boolean {
  return deepFreeze(event);
}

/**
 * Freezes plain objects and arrays all the way down; true when nothing else was met (a typed
 * array cannot be frozen, a Map or a Date can still be changed when frozen).
 */
function deepFreeze(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    let plain = true;
    for (const element of value) if (!deepFreeze(element)) plain = false;
    Object.freeze(value);
    return plain;
  }
  if (prototype !== Object.prototype && prototype !== null) return false;
  let plain = true;
  for (const key of Object.keys(value)) if (!deepFreeze((value as Record<string, unknown>)[key])) plain = false;
  Object.freeze(value);
  return plain;
}
