import type { AbstractLevel } from 'abstract-level';

/**
 * Any abstract-level database (classic-level, memory-level, …) whatever its default encodings:
 * factstore passes 'view' encodings on every call, so the defaults never matter. The `any`s are
 * abstract-level's encoding parameters, which vary by instance and are not observed here.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LevelDatabase = AbstractLevel<string | Buffer | Uint8Array, any, any>;

export const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/**
 * LevelDB's memtable (and its .log): 32 MiB instead of 4. Each flush makes one level-0 table that
 * spans every key space (an apply batch writes ledger, tag and meta keys), and merging it into
 * level 1 rewrites all of level 1: fewer, larger flushes mean fewer such rewrites (docs/
 * storage-format.md, "LevelDB options"). A checkpoint flushes the memtable anyway, so
 * DEFAULT_CHECKPOINT_EVERY_BYTES is set to match. Costs: up to two memtables in native memory,
 * and after a crash up to this much of LevelDB's log to replay at open (a clean close flushes).
 */
export const LEVEL_WRITE_BUFFER_SIZE_BYTES = 32 * 1024 * 1024;
/** Table files of 8 MiB instead of 2: a quarter as many files and per-compaction overheads as the store grows. */
export const LEVEL_MAX_FILE_SIZE_BYTES = 8 * 1024 * 1024;

/** What factstore opens its own classic-level with; the rest are LevelDB's defaults (snappy, 4 KiB blocks, 8 MiB cache). */
export const LEVEL_OPEN_OPTIONS = { ...VIEW, writeBufferSize: LEVEL_WRITE_BUFFER_SIZE_BYTES, maxFileSize: LEVEL_MAX_FILE_SIZE_BYTES } as const;

export type Bytes = Uint8Array;

/** A chained batch of byte keys and values. */
export interface ByteBatch {
  put(key: Uint8Array, value: Uint8Array): void;
  del(key: Uint8Array): void;
  /** Operations added so far. */
  readonly length: number;
  write(): Promise<void>;
}

export type BatchFactory = () => ByteBatch;

interface NativeChainedBatch {
  _put(key: Uint8Array, value: Uint8Array): void;
}

/**
 * Batches for `db`. abstract-level's public chained `put` spends ≈ 4 µs per call on option
 * objects and encoding look-ups (bench/append.bench.ts); with `native` (only for the ClassicLevel
 * that factstore opened itself, so no hooks or sublevels are involved) every put after the
 * first goes straight to the binding's batch, ≈ 0.6 µs. The first put stays public so that
 * abstract-level counts the batch as non-empty and write() runs.
 */
export function batchFactory(db: LevelDatabase, native: boolean): BatchFactory {
  return () => {
    const batch = db.batch();
    let length = 0;
    return {
      put(key, value) {
        if (native && length > 0) (batch as unknown as NativeChainedBatch)._put(key, value);
        else batch.put<Uint8Array, Uint8Array>(key, value, VIEW);
        length++;
      },
      del(key) {
        batch.del<Uint8Array>(key, { keyEncoding: 'view' });
        length++;
      },
      get length() {
        return length;
      },
      write: () => (length === 0 ? batch.close() : batch.write()),
    };
  };
}

/** Block size of a ByteArena: one allocation serves ≈ 2,000 index keys. */
export const ARENA_BLOCK_SIZE_BYTES = 64 * 1024;

/**
 * Key and value bytes for a batch's puts, carved from large blocks. V8 keeps a typed array of up
 * to 64 bytes on its heap and must move it off the heap when native code asks for its bytes, so a
 * fresh small key costs about twice as much to put as a view into a block (bench/append.bench.ts
 * profiles: ≈ 0.9 vs ≈ 0.45 µs, plus the garbage). Blocks are never reused: a view stays valid as
 * long as it is referenced.
 */
export class ByteArena {
  #block = new Uint8Array(ARENA_BLOCK_SIZE_BYTES);
  #offsetBytes = 0;

  readonly allocate = (sizeBytes: number): Uint8Array => {
    if (this.#offsetBytes + sizeBytes > this.#block.length) {
      this.#block = new Uint8Array(Math.max(ARENA_BLOCK_SIZE_BYTES, sizeBytes));
      this.#offsetBytes = 0;
    }
    const bytes = this.#block.subarray(this.#offsetBytes, this.#offsetBytes + sizeBytes);
    this.#offsetBytes += sizeBytes;
    return bytes;
  };
}
