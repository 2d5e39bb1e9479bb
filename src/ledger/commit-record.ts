/**
 * The WAL record of one group commit (docs/storage-format.md, "WAL records"):
 * u64 first position, u32 chunk count, then per chunk u32 length and the chunk bytes —
 * exactly the values stored under the ledger keys, so applying copies bytes.
 */
import { FactError } from '../errors.js';
import { readU64, writeU64 } from './keys.js';

export const WAL_RECORD_COMMIT = 1;

export function encodeCommit(firstPosition: number, chunks: readonly Uint8Array[]): Uint8Array {
  let size = 12;
  for (const chunk of chunks) size += 4 + chunk.length;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  writeU64(bytes, 0, firstPosition);
  view.setUint32(8, chunks.length);
  let offset = 12;
  for (const chunk of chunks) {
    view.setUint32(offset, chunk.length);
    bytes.set(chunk, offset + 4);
    offset += 4 + chunk.length;
  }
  return bytes;
}

export function decodeCommit(bytes: Uint8Array, lsn: number): { firstPosition: number; chunks: Uint8Array[] } {
  const bad = () => new FactError('FACT_CORRUPTION', `WAL record ${lsn} is not a valid commit record`, { details: { lsn } });
  if (bytes.length < 12) throw bad();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const firstPosition = readU64(bytes, 0);
  const count = view.getUint32(8);
  const chunks: Uint8Array[] = [];
  let offset = 12;
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
