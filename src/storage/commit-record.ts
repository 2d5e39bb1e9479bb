/**
 * The WAL record of one group commit (docs/storage-format.md, "WAL records"):
 * u64 first position, u32 chunk count, then per chunk u32 length and the chunk bytes —
 * exactly the values stored under the ledger keys, so applying copies bytes.
 */
import { FactError } from '../errors.js';
import { chunkSizeBytes, writeChunk, type ChunkHeader, type EncodedEvents } from '../model/chunk.js';
import { freshBytes, KeySpace, nameKey, u64, type Allocate } from './keys.js';
import type { ByteBatch } from './level.js';
import { readU64BE, utf8, writeU64BE } from '../bytes.js';

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

/** A group that acknowledges consumers (docs/storage-format.md, "WAL records", type 3). */
export const WAL_RECORD_COMMIT_ACKS = 3;
export const CONSUMER_NAME_SIZE_BYTES_MAX = 200;
const ACK_OP_SET = 1;
const ACK_OP_DELETE = 2;
/** u8 op, u16 name length, u64 position, besides the name. */
const ACK_FIXED_SIZE_BYTES = 11;
/** u32 commit part size and u32 ack count. */
const ACKS_HEADER_SIZE_BYTES = 8;

/** A consumer's acknowledged position set (`position`), or the consumer deleted (`position` null). */
export interface ConsumerAck {
  name: string;
  position: number | null;
}

export function ackSizeBytes(ack: ConsumerAck): number {
  return ACK_FIXED_SIZE_BYTES + Buffer.byteLength(ack.name);
}

/**
 * The size of a group's WAL record from what its chunks add (commitChunkSizeBytes) and its acks
 * add (ackSizeBytes): type 1 without acks, type 3 with (its header, and a commit part only when
 * there are chunks).
 */
export function recordSizeBytes(chunksSizeBytes: number, acksSizeBytes: number): number {
  if (acksSizeBytes === 0) return commitSizeBytes(chunksSizeBytes);
  return ACKS_HEADER_SIZE_BYTES + (chunksSizeBytes === 0 ? 0 : commitSizeBytes(chunksSizeBytes)) + acksSizeBytes;
}

/**
 * The type-3 record of a group: its commit part (none when `chunks` is empty) as in
 * encodeCommitChunks, whose chunk views point into the same payload, then the acks.
 */
export function encodeCommitWithAcks(
  firstPosition: number,
  chunks: readonly CommitChunk[],
  acks: readonly ConsumerAck[],
  allocate: Allocate = freshBytes,
): { payload: Uint8Array; chunkBytes: Uint8Array[] } {
  let commitSize = 0;
  if (chunks.length > 0) {
    commitSize = COMMIT_HEADER_SIZE_BYTES;
    for (const chunk of chunks) commitSize += commitChunkSizeBytes(chunk.streamBytes.length, chunk.events.ends.length, chunk.events.bytes.length);
  }
  let acksSize = 0;
  for (const ack of acks) acksSize += ackSizeBytes(ack);
  const payload = allocate(ACKS_HEADER_SIZE_BYTES + commitSize + acksSize);
  writeU32(payload, 0, commitSize);
  const chunkBytes = chunks.length === 0 ? [] : encodeCommitChunks(firstPosition, chunks, (size) => payload.subarray(4, 4 + size)).chunkBytes;
  let offset = 4 + commitSize;
  writeU32(payload, offset, acks.length);
  offset += 4;
  for (const ack of acks) {
    const name = Buffer.from(ack.name, 'utf8');
    payload[offset] = ack.position === null ? ACK_OP_DELETE : ACK_OP_SET;
    payload[offset + 1] = name.length >>> 8;
    payload[offset + 2] = name.length & 0xff;
    payload.set(name, offset + 3);
    writeU64BE(payload, offset + 3 + name.length, ack.position ?? 0);
    offset += ACK_FIXED_SIZE_BYTES + name.length;
  }
  return { payload, chunkBytes };
}

/** A type-3 record: its commit part (null when it appends nothing) and its acks, in order. */
export function decodeCommitWithAcks(bytes: Uint8Array, lsn: number): { commit: { firstPosition: number; chunks: Uint8Array[] } | null; acks: ConsumerAck[] } {
  const bad = (why: string) => new FactError('FACT_CORRUPTION', `WAL record ${lsn} is not a valid commit-with-acks record: ${why}`, { details: { lsn } });
  if (bytes.length < ACKS_HEADER_SIZE_BYTES) throw bad('too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const commitSize = view.getUint32(0);
  if (4 + commitSize + 4 > bytes.length) throw bad('its commit part runs past its end');
  const commit = commitSize === 0 ? null : decodeCommit(bytes.subarray(4, 4 + commitSize), lsn);
  let offset = 4 + commitSize;
  const count = view.getUint32(offset);
  offset += 4;
  const acks: ConsumerAck[] = [];
  for (let index = 0; index < count; index++) {
    if (offset + ACK_FIXED_SIZE_BYTES > bytes.length) throw bad(`ack ${index} runs past its end`);
    const op = bytes[offset]!;
    const nameSize = view.getUint16(offset + 1);
    if (op !== ACK_OP_SET && op !== ACK_OP_DELETE) throw bad(`ack ${index} has op ${op}`);
    if (nameSize < 1 || nameSize > CONSUMER_NAME_SIZE_BYTES_MAX || offset + ACK_FIXED_SIZE_BYTES + nameSize > bytes.length) throw bad(`ack ${index} has a name of ${nameSize} bytes`);
    const name = Buffer.from(bytes.buffer, bytes.byteOffset + offset + 3, nameSize).toString('utf8');
    const position = readU64BE(bytes, offset + 3 + nameSize);
    acks.push({ name, position: op === ACK_OP_SET ? position : null });
    offset += ACK_FIXED_SIZE_BYTES + nameSize;
  }
  if (offset !== bytes.length) throw bad('bytes after its last ack');
  return { commit, acks };
}

/** Writes acks as applying their record does: `O name` set or deleted, in order. */
export function putAcks(batch: ByteBatch, acks: readonly ConsumerAck[]): void {
  for (const ack of acks) {
    const key = nameKey(KeySpace.consumer, utf8(ack.name));
    if (ack.position === null) batch.del(key);
    else batch.put(key, u64(ack.position));
  }
}
