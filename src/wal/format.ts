/**
 * Byte layout of segments, records and the checkpoint file. The spec is docs/wal-format.md;
 * every constant here is named there.
 */
import * as zlib from 'node:zlib';
import { readU64LE, writeU64LE } from '../bytes.js';
import { assert } from '../errors.js';
import { unsupportedRuntime } from '../runtime.js';

// Checked at import: on an older Node.js every WAL would otherwise fail at its first checksum.
if (typeof zlib.crc32 !== 'function') throw unsupportedRuntime('crc32 of node:zlib');
const { crc32 } = zlib;

export const FORMAT_VERSION = 1;
export const SEGMENT_HEADER_SIZE_BYTES = 32;
export const RECORD_HEADER_SIZE_BYTES = 32;
export const CHECKPOINT_SIZE_BYTES = 24;
export const RECORD_PAYLOAD_SIZE_BYTES_LIMIT = 1024 * 1024 * 1024;
export const LSN_LIMIT = Number.MAX_SAFE_INTEGER;
export const RECORD_TYPE_MAX = 255;
/** Zero fill of a new segment, and the first extension step (docs/wal-format.md, "Files"). */
export const SEGMENT_FILL_STEP_BYTES = 256 * 1024;
/** Largest extension of a segment's zero fill; steps double up to it. */
export const SEGMENT_FILL_STEP_MAX_BYTES = 4 * 1024 * 1024;

const SEGMENT_MAGIC = Buffer.from('FACTWAL\0', 'latin1');
const CHECKPOINT_MAGIC = Buffer.from('FACTCKP\0', 'latin1');
const SEGMENT_NAME_PATTERN = /^wal-(\d{20})\.log$/;

export const CHECKPOINT_FILE = 'CHECKPOINT';
export const LOCK_FILE = 'LOCK';
export const TEMP_SUFFIX = '.tmp';

export function segmentFileName(firstLsn: number): string {
  return `wal-${String(firstLsn).padStart(20, '0')}.log`;
}

/** The first LSN named by a segment file name, or null for any other name. */
export function parseSegmentFileName(name: string): number | null {
  const match = SEGMENT_NAME_PATTERN.exec(name);
  if (!match?.[1]) return null;
  const lsn = Number(match[1]);
  return Number.isSafeInteger(lsn) && lsn >= 1 ? lsn : null;
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeSegmentHeader(firstLsn: number): Uint8Array {
  assert(Number.isSafeInteger(firstLsn) && firstLsn >= 1, 'segment first LSN is a positive safe integer');
  const bytes = new Uint8Array(SEGMENT_HEADER_SIZE_BYTES);
  bytes.set(SEGMENT_MAGIC, 0);
  const view = viewOf(bytes);
  view.setUint16(8, FORMAT_VERSION, true);
  view.setUint16(10, SEGMENT_HEADER_SIZE_BYTES, true);
  writeU64LE(view, 16, firstLsn);
  view.setUint32(28, crc32(bytes.subarray(0, 28)), true);
  return bytes;
}

/** The first LSN of a valid header, or a reason why it is not valid. */
export function decodeSegmentHeader(bytes: Uint8Array): { firstLsn: number } | { invalid: string } {
  if (bytes.length < SEGMENT_HEADER_SIZE_BYTES) return { invalid: 'file shorter than the segment header' };
  const view = viewOf(bytes);
  if (!Buffer.from(bytes.buffer, bytes.byteOffset, 8).equals(SEGMENT_MAGIC)) return { invalid: 'bad magic' };
  if (view.getUint32(28, true) !== crc32(bytes.subarray(0, 28))) return { invalid: 'header checksum mismatch' };
  if (view.getUint16(8, true) !== FORMAT_VERSION) return { invalid: `unsupported format version ${view.getUint16(8, true)}` };
  if (view.getUint16(10, true) !== SEGMENT_HEADER_SIZE_BYTES) return { invalid: 'bad header size' };
  if (view.getUint32(12, true) !== 0 || view.getUint32(24, true) !== 0) return { invalid: 'reserved bytes not zero' };
  const firstLsn = readU64LE(view, 16);
  if (firstLsn < 1 || firstLsn > LSN_LIMIT) return { invalid: `bad first LSN ${firstLsn}` };
  return { firstLsn };
}

export interface RecordFields {
  lsn: number;
  durableLsn: number;
  batchRemaining: number;
  type: number;
  payload: Uint8Array;
}

export function encodedRecordSizeBytes(payloadSizeBytes: number): number {
  return RECORD_HEADER_SIZE_BYTES + payloadSizeBytes;
}

/** Writes one framed record into `target` at `offset`; returns the offset after it. */
export function encodeRecordInto(target: Uint8Array, offset: number, record: RecordFields): number {
  const { lsn, durableLsn, batchRemaining, type, payload } = record;
  assert(lsn >= 1 && lsn <= LSN_LIMIT && durableLsn < lsn && durableLsn >= 0, 'record LSNs in range');
  assert(type >= 0 && type <= RECORD_TYPE_MAX && Number.isInteger(type), 'record type is a byte');
  assert(payload.length <= RECORD_PAYLOAD_SIZE_BYTES_LIMIT, 'payload within the format limit');
  const end = offset + RECORD_HEADER_SIZE_BYTES + payload.length;
  assert(end <= target.length, 'record fits the target buffer');
  const view = new DataView(target.buffer, target.byteOffset + offset, RECORD_HEADER_SIZE_BYTES);
  view.setUint32(4, payload.length, true);
  writeU64LE(view, 8, lsn);
  writeU64LE(view, 16, durableLsn);
  view.setUint32(24, batchRemaining, true);
  view.setUint8(28, type);
  view.setUint8(29, 0);
  view.setUint16(30, 0, true);
  target.set(payload, offset + RECORD_HEADER_SIZE_BYTES);
  view.setUint32(0, crc32(target.subarray(offset + 4, end)), true);
  return end;
}

export function encodeRecord(record: RecordFields): Uint8Array {
  const bytes = new Uint8Array(encodedRecordSizeBytes(record.payload.length));
  encodeRecordInto(bytes, 0, record);
  return bytes;
}

export interface DecodedRecord {
  lsn: number;
  durableLsn: number;
  batchRemaining: number;
  type: number;
  payloadOffset: number;
  payloadLength: number;
  /** Offset just after the record. */
  end: number;
}

/**
 * Decodes the record at `offset` if its frame is intact (length in bounds, CRC, reserved bytes,
 * durable LSN below LSN). The caller checks the LSN sequence and batch rules of the validity rule.
 */
export function decodeRecordAt(bytes: Uint8Array, offset: number, limitBytes = bytes.length): DecodedRecord | null {
  if (offset + RECORD_HEADER_SIZE_BYTES > limitBytes) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, RECORD_HEADER_SIZE_BYTES);
  const payloadLength = view.getUint32(4, true);
  if (payloadLength > RECORD_PAYLOAD_SIZE_BYTES_LIMIT) return null;
  const end = offset + RECORD_HEADER_SIZE_BYTES + payloadLength;
  if (end > limitBytes) return null;
  const lsn = readU64LE(view, 8);
  // Cheap rejections first: zero fill has LSN 0.
  if (lsn < 1 || lsn > LSN_LIMIT) return null;
  const durableLsn = readU64LE(view, 16);
  if (durableLsn >= lsn) return null;
  if (view.getUint8(29) !== 0 || view.getUint16(30, true) !== 0) return null;
  if (view.getUint32(0, true) !== crc32(bytes.subarray(offset + 4, end))) return null;
  return {
    lsn,
    durableLsn,
    batchRemaining: view.getUint32(24, true),
    type: view.getUint8(28),
    payloadOffset: offset + RECORD_HEADER_SIZE_BYTES,
    payloadLength,
    end,
  };
}

export function encodeCheckpoint(lsn: number): Uint8Array {
  assert(Number.isSafeInteger(lsn) && lsn >= 0, 'checkpoint LSN is a non-negative safe integer');
  const bytes = new Uint8Array(CHECKPOINT_SIZE_BYTES);
  bytes.set(CHECKPOINT_MAGIC, 0);
  const view = viewOf(bytes);
  view.setUint16(8, FORMAT_VERSION, true);
  writeU64LE(view, 12, lsn);
  view.setUint32(20, crc32(bytes.subarray(0, 20)), true);
  return bytes;
}

export function decodeCheckpoint(bytes: Uint8Array): { lsn: number } | { invalid: string } {
  if (bytes.length !== CHECKPOINT_SIZE_BYTES) return { invalid: `size ${bytes.length}, expected ${CHECKPOINT_SIZE_BYTES}` };
  const view = viewOf(bytes);
  if (!Buffer.from(bytes.buffer, bytes.byteOffset, 8).equals(CHECKPOINT_MAGIC)) return { invalid: 'bad magic' };
  if (view.getUint32(20, true) !== crc32(bytes.subarray(0, 20))) return { invalid: 'checksum mismatch' };
  if (view.getUint16(8, true) !== FORMAT_VERSION) return { invalid: `unsupported format version ${view.getUint16(8, true)}` };
  if (view.getUint16(10, true) !== 0) return { invalid: 'reserved bytes not zero' };
  const lsn = readU64LE(view, 12);
  if (lsn > LSN_LIMIT) return { invalid: `bad LSN ${lsn}` };
  return { lsn };
}
