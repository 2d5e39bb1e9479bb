/**
 * Stream versions as planned (committed plus the group in flight), for expectations: a bounded
 * cache, filled from the tail or LevelDB, with a read-ahead started when an append is validated.
 */
import { readU64BE, utf8 } from '../bytes.js';
import { storedStreamVersion } from '../query/merged-reads.js';
import type { UnappliedTail } from '../query/tail.js';
import { KeySpace, nameKey } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import type { AppendRequest, VersionPrefetch } from './requests.js';

export const STREAM_VERSION_CACHE_ENTRIES_MAX = 100_000;

export class StreamVersions {
  readonly #db: LevelDatabase;
  readonly #tail: UnappliedTail;
  readonly #versions = new Map<string, number>();
  /** Bumped whenever the cache drops entries (see prefetch). */
  #epoch = 0;

  constructor(db: LevelDatabase, tail: UnappliedTail) {
    this.#db = db;
    this.#tail = tail;
  }

  has(stream: string): boolean {
    return this.#versions.has(stream);
  }

  /** The planned version (0: no stream); `load` has run for the group's streams. */
  get(stream: string): number {
    return this.#versions.get(stream) ?? 0;
  }

  set(stream: string, version: number): void {
    this.#versions.set(stream, version);
  }

  /**
   * Starts reading the stored version of a stream that is neither cached nor in the unapplied
   * tail, so the writer need not wait for LevelDB when it plans the append (validating a large
   * append takes longer than the read). Sound while no cached version is dropped meanwhile: then
   * every write to the stream after this read is in the cache when the append is planned, and
   * every write before it was applied, so the read saw it.
   */
  prefetch(stream: string): VersionPrefetch | null {
    if (this.#versions.has(stream) || this.#tail.streamVersion(stream) !== undefined) return null;
    const version = storedStreamVersion(this.#db, stream).catch(() => undefined); // the writer reads again and reports the error
    return { version, epoch: this.#epoch };
  }

  /** Caches the version of every stream of the group: from the tail, a valid prefetch, else LevelDB. */
  async load(group: readonly AppendRequest[]): Promise<void> {
    const missing: string[] = [];
    const prefetched: { stream: string; version: Promise<number | undefined> }[] = [];
    const seen = new Set<string>();
    for (const { stream, versionPrefetch } of group) {
      if (stream === '' || seen.has(stream) || this.#versions.has(stream)) continue;
      seen.add(stream);
      const inTail = this.#tail.streamVersion(stream);
      if (inTail !== undefined) this.#versions.set(stream, inTail);
      else if (versionPrefetch !== null && versionPrefetch.epoch === this.#epoch) prefetched.push({ stream, version: versionPrefetch.version });
      else missing.push(stream);
    }
    for (const { stream, version } of prefetched) {
      const value = await version;
      if (value === undefined) missing.push(stream);
      else this.#versions.set(stream, value);
    }
    if (missing.length === 0) return;
    const values = await this.#db.getMany<Uint8Array, Uint8Array>(
      missing.map((stream) => nameKey(KeySpace.streamVersions, utf8(stream))),
      VIEW,
    );
    for (const [index, stream] of missing.entries()) {
      const value = values[index];
      this.#versions.set(stream, value === undefined ? 0 : readU64BE(value, 0));
    }
  }

  /** Drops every cached version (they may be ahead of what was committed, or read from entries a rebuild changed). */
  forget(): void {
    this.#versions.clear();
    this.#epoch++;
  }

  /** Keeps the cache bounded; between groups every cached version is committed, so any entry may go. */
  trim(): void {
    if (this.#versions.size <= STREAM_VERSION_CACHE_ENTRIES_MAX) return;
    let excess = this.#versions.size - STREAM_VERSION_CACHE_ENTRIES_MAX / 2;
    this.#epoch++;
    for (const stream of this.#versions.keys()) {
      if (excess-- <= 0) break;
      this.#versions.delete(stream);
    }
  }
}
