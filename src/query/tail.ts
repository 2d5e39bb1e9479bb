/**
 * The unapplied tail (docs/storage-format.md, "Write path"): chunks whose WAL record is durable
 * and whose appends have resolved, but which the background apply has not yet written to
 * LevelDB. Reads, expectation checks and conditions merge it with LevelDB, so an append is
 * visible from the moment it resolves. Replay never needs it: the WAL holds every chunk in it.
 */
import { matchesQuery, type Query } from '../model/query.js';
import type { RecordedEvent } from '../model/types.js';
import type { GeneratedIds } from '../model/ids.js';
import { decodeChunk, recordedEvent, streamCategory, type DecodedChunk, type EventTuple } from '../model/chunk.js';

export interface TailChunk {
  readonly firstPosition: number;
  /** The bytes stored under the ledger key. */
  readonly bytes: Uint8Array;
  /** What the writer planned: the stream, types, tags and ids are exactly what the bytes hold. */
  readonly planned: DecodedChunk;
  /** WAL record that logged the chunk. */
  readonly lsn: number;
}

/** Which events of a tail a read wants; `stream` reads count `from` in stream positions. */
export type TailSource =
  | { kind: 'all' }
  | { kind: 'stream'; name: string }
  | { kind: 'type'; name: string }
  | { kind: 'tag'; name: string }
  | { kind: 'category'; name: string }
  | { kind: 'query'; query: Query };

/**
 * What the ledger holds, decoded from a chunk's bytes (not the appending caller's objects, which
 * it may change). This copy only serves matching on data; events handed out are decoded afresh
 * for every read, since a reader may change them too.
 */
const decodedChunks = new WeakMap<TailChunk, DecodedChunk>();

function decode(chunk: TailChunk): DecodedChunk {
  return decodeChunk(chunk.bytes, chunk.firstPosition, `ledger chunk ${chunk.firstPosition} (not yet applied)`);
}

function stored(chunk: TailChunk): DecodedChunk {
  let decoded = decodedChunks.get(chunk);
  if (decoded === undefined) {
    decoded = decode(chunk);
    decodedChunks.set(chunk, decoded);
  }
  return decoded;
}

/** An immutable view of the tail taken when a read or check starts: chunks[0, end). */
export class TailSnapshot {
  readonly #chunks: readonly TailChunk[];
  readonly #end: number;
  /** Every position up to here is in LevelDB; the tail holds the positions after it. */
  readonly appliedHead: number;

  readonly #ids: GeneratedIds;

  constructor(chunks: readonly TailChunk[], end: number, appliedHead: number, ids: GeneratedIds) {
    this.#ids = ids;
    this.#chunks = chunks;
    this.#end = end;
    this.appliedHead = appliedHead;
  }

  get isEmpty(): boolean {
    return this.#end === 0;
  }

  /** Events of `source` from `from` (inclusive) in the direction, up to `limit`. */
  *events(source: TailSource, forward: boolean, from: number | undefined, limit: number): Generator<RecordedEvent> {
    if (limit <= 0) return;
    let remaining = limit;
    for (let step = 0; step < this.#end; step++) {
      const chunk = this.#chunks[forward ? step : this.#end - 1 - step]!;
      if (!chunkMayMatch(source, chunk.planned)) continue;
      const tuples = chunk.planned.tuples;
      const size = tuples.length;
      let handedOut: DecodedChunk | null = null;
      for (let eventStep = 0; eventStep < size; eventStep++) {
        const index = forward ? eventStep : size - 1 - eventStep;
        const number = source.kind === 'stream' ? chunk.planned.firstStreamPosition + index : chunk.firstPosition + index;
        if (from !== undefined && (forward ? number < from : number > from)) continue;
        if (!tupleMatches(source, chunk, index, tuples[index]!)) continue;
        handedOut ??= decode(chunk);
        yield recordedEvent(handedOut, chunk.firstPosition, index, this.#ids);
        if (--remaining <= 0) return;
      }
    }
  }

  /** The newest position whose event has this type (or tag), 0 when the tail has none. */
  newestWith(kind: 'type' | 'tag', name: string): number {
    for (let step = this.#end - 1; step >= 0; step--) {
      const chunk = this.#chunks[step]!;
      const tuples = chunk.planned.tuples;
      for (let index = tuples.length - 1; index >= 0; index--) {
        const [, type, , , tags] = tuples[index]!;
        if (kind === 'type' ? type === name : tags.includes(name)) return chunk.firstPosition + index;
      }
    }
    return 0;
  }

  /** The newest position matching the query, 0 when none. */
  newestMatch(query: Query): number {
    for (const event of this.events({ kind: 'query', query }, false, undefined, 1)) return event.position;
    return 0;
  }

  /** The snapshot's chunks, oldest first. */
  *chunks(): Generator<TailChunk> {
    for (let step = 0; step < this.#end; step++) yield this.#chunks[step]!;
  }

  /** The chunk holding `position`, if the tail has it. */
  chunkAt(position: number): TailChunk | undefined {
    // Chunks are in position order: a binary search (a full tail holds thousands).
    let low = 0;
    let high = this.#end - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const chunk = this.#chunks[middle]!;
      if (position < chunk.firstPosition) high = middle - 1;
      else if (position >= chunk.firstPosition + chunk.planned.tuples.length) low = middle + 1;
      else return chunk;
    }
    return undefined;
  }

  /** Positions of those of `ids` that the tail holds. */
  idPositions(ids: ReadonlySet<string>): Map<string, number> {
    const found = new Map<string, number>();
    for (let step = 0; step < this.#end; step++) {
      const chunk = this.#chunks[step]!;
      chunk.planned.tuples.forEach(([id], index) => {
        if (id !== null && ids.has(id)) found.set(id, chunk.firstPosition + index);
      });
    }
    return found;
  }

  /** Streams created in the tail (their first event is in it), optionally of one category. */
  newStreams(category: string | undefined): string[] {
    const streams: string[] = [];
    for (let step = 0; step < this.#end; step++) {
      const { planned } = this.#chunks[step]!;
      if (planned.stream !== '' && planned.firstStreamPosition === 1 && (category === undefined || streamCategory(planned.stream) === category)) {
        streams.push(planned.stream);
      }
    }
    return streams;
  }
}

function chunkMayMatch(source: TailSource, chunk: DecodedChunk): boolean {
  if (source.kind === 'stream') return chunk.stream === source.name;
  if (source.kind === 'category') return chunk.stream !== '' && streamCategory(chunk.stream) === source.name;
  return true;
}

function tupleMatches(source: TailSource, chunk: TailChunk, index: number, [, type, , , tags]: EventTuple): boolean {
  switch (source.kind) {
    case 'type':
      return type === source.name;
    case 'tag':
      return tags.includes(source.name);
    case 'query': {
      if (source.query.dataFields.length === 0) return matchesQuery(source.query, { type, tags, data: null });
      // Data criteria compare what the ledger holds.
      const [, , data] = stored(chunk).tuples[index]!;
      return matchesQuery(source.query, { type, tags, data });
    }
    default:
      return true;
  }
}

/**
 * The writer's side: chunks are added in position order and dropped once applied. The array
 * only grows until the apply replaces it by one without the applied chunks (never changing it
 * otherwise), so a snapshot is O(1).
 */
export class UnappliedTail {
  readonly #ids: GeneratedIds;
  #chunks: TailChunk[] = [];
  #events = 0;
  #sizeBytes = 0;
  /** Newest version of each stream with events in the tail. */
  readonly #streamVersions = new Map<string, number>();

  constructor(ids: GeneratedIds) {
    this.#ids = ids;
  }

  get events(): number {
    return this.#events;
  }

  /** Bytes of the chunks waiting (what the ledger will store; the decoded tuples are in proportion). */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get chunkCount(): number {
    return this.#chunks.length;
  }

  /** Chunks waiting for the apply, oldest first. */
  get chunks(): readonly TailChunk[] {
    return this.#chunks.slice();
  }

  add(chunks: readonly TailChunk[]): void {
    for (const chunk of chunks) {
      this.#chunks.push(chunk);
      this.#events += chunk.planned.tuples.length;
      this.#sizeBytes += chunk.bytes.length;
      if (chunk.planned.stream !== '') this.#streamVersions.set(chunk.planned.stream, chunk.planned.firstStreamPosition + chunk.planned.tuples.length - 1);
    }
  }

  /** The first `count` chunks are now in LevelDB. */
  dropApplied(count: number): void {
    const applied = this.#chunks.slice(0, count);
    // A new array at every apply: snapshots taken earlier keep theirs, and nothing else keeps the
    // applied chunks (their bytes, the caller's decoded events) alive, however fast appends come.
    this.#chunks = this.#chunks.slice(count);
    for (const { planned, bytes } of applied) {
      this.#events -= planned.tuples.length;
      this.#sizeBytes -= bytes.length;
      const last = planned.firstStreamPosition + planned.tuples.length - 1;
      if (planned.stream !== '' && this.#streamVersions.get(planned.stream) === last) this.#streamVersions.delete(planned.stream);
    }
  }

  /** A stream's newest version if the tail has events of it. */
  streamVersion(stream: string): number | undefined {
    return this.#streamVersions.get(stream);
  }

  snapshot(appliedHead: number): TailSnapshot {
    return new TailSnapshot(this.#chunks, this.#chunks.length, appliedHead, this.#ids);
  }
}
