/**
 * Reading a segment's bytes by the validity rule of docs/wal-format.md: which units are
 * complete, where the log ends, and what the bytes after the end mean.
 */
import { decodeRecordAt, SEGMENT_HEADER_SIZE_BYTES, type DecodedRecord } from './format.js';

export interface SegmentScan {
  /** Records of complete units, in LSN order. */
  records: DecodedRecord[];
  /** Last LSN of the last complete unit (firstLsn − 1 when there is none). */
  lastLsn: number;
  /** Offset just after the last complete unit: where the log ends in this segment. */
  endOffset: number;
}

/** Reads complete units from the segment start until the first record that is not valid. */
export function scanSegment(bytes: Uint8Array, firstLsn: number, limitBytes = bytes.length): SegmentScan {
  const records: DecodedRecord[] = [];
  let offset = SEGMENT_HEADER_SIZE_BYTES;
  let expectedLsn = firstLsn;
  let unit: DecodedRecord[] = [];
  let unitStart = offset;
  for (;;) {
    const record = decodeRecordAt(bytes, offset, limitBytes);
    const previous = unit[unit.length - 1];
    if (
      record === null ||
      record.lsn !== expectedLsn ||
      (previous !== undefined && record.batchRemaining !== previous.batchRemaining - 1)
    ) {
      break;
    }
    unit.push(record);
    expectedLsn++;
    offset = record.end;
    if (record.batchRemaining === 0) {
      for (const complete of unit) records.push(complete);
      unit = [];
      unitStart = offset;
    }
  }
  const last = records[records.length - 1];
  return { records, lastLsn: last ? last.lsn : firstLsn - 1, endOffset: unitStart };
}

/** Bytes endOfNonZero compares with zeros at once. */
const ZERO_BLOCK_SIZE_BYTES = 64 * 1024;
const ZERO_BLOCK = new Uint8Array(ZERO_BLOCK_SIZE_BYTES);

/** One past the last non-zero byte at or after `from`, or `from` when all are zero. */
export function endOfNonZero(bytes: Uint8Array, from: number, limitBytes = bytes.length): number {
  let end = limitBytes;
  // Whole zero blocks first, by a native compare: byte by byte, the zeros after the log in a
  // 16 MiB segment cost ≈ 40 ms of every open (bench/growth.bench.ts), blocks ≈ 1 ms.
  while (end - from >= ZERO_BLOCK_SIZE_BYTES && Buffer.compare(bytes.subarray(end - ZERO_BLOCK_SIZE_BYTES, end), ZERO_BLOCK) === 0) {
    end -= ZERO_BLOCK_SIZE_BYTES;
  }
  while (end > from && bytes[end - 1] === 0) end--;
  return end;
}

/**
 * Looks in the tail [from, tailEnd) for a frame-valid record that attests, by its durable LSN,
 * that `firstLostLsn` had been durable: proof that the damage at `from` is in acknowledged data.
 */
export function findAttestingRecord(
  bytes: Uint8Array,
  from: number,
  tailEnd: number,
  firstLostLsn: number,
): DecodedRecord | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // A record in the tail cannot carry an LSN further from the first lost one than records fit.
  const lsnCeiling = firstLostLsn + Math.ceil((tailEnd - from) / 32);
  // tailEnd is one past the last non-zero byte, so the last record's own trailing zeros (reserved
  // bytes, a payload ending in zeros) lie beyond it: records start before tailEnd but are read to
  // the end of the segment.
  for (let offset = from; offset < tailEnd && offset + 32 <= bytes.length; offset++) {
    const lsn = view.getUint32(offset + 8, true) + view.getUint32(offset + 12, true) * 2 ** 32;
    if (lsn < firstLostLsn || lsn > lsnCeiling) continue;
    const durableLsn = view.getUint32(offset + 16, true) + view.getUint32(offset + 20, true) * 2 ** 32;
    if (durableLsn < firstLostLsn || durableLsn >= lsn) continue;
    const record = decodeRecordAt(bytes, offset);
    if (record !== null) return record;
  }
  return null;
}
