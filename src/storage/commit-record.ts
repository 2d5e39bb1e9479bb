/**
 * The WAL record of one group commit (docs/storage-format.md, "WAL records"):
 * u64 first position, u32 chunk count, then per chunk u32 length and the chunk bytes —
 * exactly the values stored under the ledger keys, so applying copies bytes.
 */
import { FactError } from '../errors.js';
import { chunkSizeBytes, writeChunk, type ChunkHeader, type EncodedEvents } from '../model/chunk.js';
import { freshBytes, type Allocate } from './keys.js';
import { readU64BE, writeU64BE } from '../bytes.js';

function writeU32(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value >>> 24;
  target[offset + 1] = (value >>> 16) & 0xff;
  target[offset + 2] = (value >>> 8) & 0xff;
  target[offset + 3] = value & 0xff;
}

export const WAL_RECORD_COMMIT = 1;
/** The database's id seed (ids.ts): logged once, before the first event with a generated id. */
export const WAL_RECORD_ID_SEED = 2;
/** u64 first position, u32 chunk count. */
const COMMIT_HEADER_SIZE_BYTES = 12;
/** Each chunk's u32 length. */
const CHUNK_LENGTH_SIZE_BYTES = 4;

export interface CommitChunk {
  header: ChunkHeader;
  /** utf8(header.stream) */
  streamBytes: Uint8Array;
  events: EncodedEvents;
}

/**
 * The commit record of chunks not yet encoded, and each chunk's bytes as a view into it: the
 * values the ledger stores, with no copy of their own.
 */
export function encodeCommitChunks(
  firstPosition: number,
  chunks: readonly CommitChunk[],
  allocate: Allocate = freshBytes,
): { payload: Uint8Array; chunkBytes: Uint8Array[] } {
  let size = COMMIT_HEADER_SIZE_BYTES;
  for (const chunk of chunks) size += commitChunkSizeBytes(chunk.streamBytes.length, chunk.events.ends.length, chunk.events.bytes.length);
  const payload = allocate(size);
  writeU64BE(payload, 0, firstPosition);
  writeU32(payload, 8, chunks.length);
  const chunkBytes: Uint8Array[] = [];
  let offset = COMMIT_HEADER_SIZE_BYTES;
  let position = firstPosition;
  for (const chunk of chunks) {
    const length = chunkSizeBytes(chunk.streamBytes.length, chunk.events.ends.length, chunk.events.bytes.length);
    writeU32(payload, offset, length);
    const start = offset + CHUNK_LENGTH_SIZE_BYTES;
    writeChunk(payload, start, chunk.header, chunk.streamBytes, chunk.events, position);
    chunkBytes.push(payload.subarray(start, start + length));
    offset = start + length;
    position += chunk.events.ends.length;
  }
  return { payload, chunkBytes };
}

/** What one chunk adds to a commit record: its length and the chunk. */
export function commitChunkSizeBytes(streamSizeBytes: number, eventCount: number, eventsSizeBytes: number): number {
  return CHUNK_LENGTH_SIZE_BYTES + chunkSizeBytes(streamSizeBytes, eventCount, eventsSizeBytes);
}

/** The size of a commit record whose chunks add `chunksSizeBytes` (see commitChunkSizeBytes). */
export function commitSizeBytes(chunksSizeBytes: number): number {
  return COMMIT_HEADER_SIZE_BYTES + chunksSizeBytes;
}

export function decodeCommit(bytes: Uint8Array, lsn: number): { firstPosition: number; chunks: Uint8Array[] } {
  const bad = () => new FactError('FACT_CORRUPTION', `WAL record ${lsn} is not a valid commit record`, { details: { lsn } });
  if (bytes.length < COMMIT_HEADER_SIZE_BYTES) throw bad();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const firstPosition = readU64BE(bytes, 0);
  const count = view.getUint32(8);
  const chunks: Uint8Array[] = [];
  let offset = COMMIT_HEADER_SIZE_BYTES;
  for (let index = 0; index < count; index++) {
    if (offset + 4 > bytes.length) throw bad();
    const length = view.getUint32(offset);
    if (offset + 4 + length > bytes.length) throw bad();
    chunks.push(bytes.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  if (offset !== bytes.length || firstPosition < 1) throw bad();
  return { firstPosition, chunks };
}
