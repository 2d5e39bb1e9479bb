/**
 * Byte-level tests of src/wal/format.ts and src/wal/segment-scan.ts against docs/wal-format.md:
 * every field of every structure, and every clause of the validity rules, one test per case.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { isFactError } from '../src/errors.js';
import {
  CHECKPOINT_FILE,
  CHECKPOINT_SIZE_BYTES,
  decodeCheckpoint,
  decodeRecordAt,
  decodeSegmentHeader,
  encodeCheckpoint,
  encodeRecord,
  encodeRecordInto,
  encodeSegmentHeader,
  encodedRecordSizeBytes,
  FORMAT_VERSION,
  LOCK_FILE,
  LSN_LIMIT,
  parseSegmentFileName,
  RECORD_HEADER_SIZE_BYTES,
  RECORD_PAYLOAD_SIZE_BYTES_LIMIT,
  RECORD_TYPE_MAX,
  SEGMENT_HEADER_SIZE_BYTES,
  segmentFileName,
  TEMP_SUFFIX,
  type RecordFields,
} from '../src/wal/format.js';
import { endOfNonZero, findAttestingRecord, scanSegment } from '../src/wal/segment-scan.js';

const SPEC_PATH = new URL('../docs/wal-format.md', import.meta.url);
const TWO_TO_32 = 2 ** 32;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function setU64(bytes: Uint8Array, offset: number, value: number): void {
  const v = view(bytes);
  v.setUint32(offset, value % TWO_TO_32, true);
  v.setUint32(offset + 4, Math.floor(value / TWO_TO_32), true);
}

/** Recomputes the CRC of the record at `offset`, so a test can break exactly one other rule. */
function resealRecord(bytes: Uint8Array, offset = 0): void {
  const length = view(bytes).getUint32(offset + 4, true);
  const end = Math.min(bytes.length, offset + RECORD_HEADER_SIZE_BYTES + length);
  view(bytes).setUint32(offset, crc32(bytes.subarray(offset + 4, end)), true);
}

function resealHeader(bytes: Uint8Array): void {
  view(bytes).setUint32(28, crc32(bytes.subarray(0, 28)), true);
}

function resealCheckpoint(bytes: Uint8Array): void {
  view(bytes).setUint32(20, crc32(bytes.subarray(0, 20)), true);
}

function record(lsn: number, overrides: Partial<RecordFields> = {}): RecordFields {
  return { lsn, durableLsn: lsn - 1, batchRemaining: 0, type: 1, payload: Buffer.from(`payload ${lsn}`), ...overrides };
}

/** A segment image: header, then `records` in order, then zero fill up to `sizeBytes`. */
function segmentImage(firstLsn: number, records: RecordFields[], sizeBytes = 1024): Uint8Array {
  const bytes = new Uint8Array(sizeBytes);
  bytes.set(encodeSegmentHeader(firstLsn), 0);
  let offset = SEGMENT_HEADER_SIZE_BYTES;
  for (const fields of records) offset = encodeRecordInto(bytes, offset, fields);
  return bytes;
}

/** Offset of the `index`-th record in a segment image built from `records`. */
function offsetOf(records: RecordFields[], index: number): number {
  let offset = SEGMENT_HEADER_SIZE_BYTES;
  for (let i = 0; i < index; i++) offset += encodedRecordSizeBytes(records[i]!.payload.length);
  return offset;
}

function expectAssertion(run: () => unknown): void {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(isFactError(thrown, 'FACT_ASSERTION')).toBe(true);
}

describe('file names', () => {
  it('segment file name is wal-<first LSN in 20 decimal digits>.log and parses back', () => {
    expect(segmentFileName(1)).toBe('wal-00000000000000000001.log');
    expect(segmentFileName(LSN_LIMIT)).toBe('wal-00009007199254740991.log');
    for (const lsn of [1, 2, 99, 12_345_678_901, LSN_LIMIT]) {
      expect(segmentFileName(lsn)).toHaveLength(28);
      expect(parseSegmentFileName(segmentFileName(lsn))).toBe(lsn);
    }
  });

  it('sorting segment names sorts by first LSN', () => {
    const lsns = [1, 10, 9, 100, 2, 1_000_000_000_000];
    const byName = lsns.map(segmentFileName).sort();
    expect(byName.map((name) => parseSegmentFileName(name))).toEqual([...lsns].sort((a, b) => a - b));
  });

  it('other names are not segments: temp files, checkpoint, lock, wrong digit count, LSN 0, beyond 2^53 - 1', () => {
    for (const name of [
      segmentFileName(5) + TEMP_SUFFIX,
      CHECKPOINT_FILE,
      CHECKPOINT_FILE + TEMP_SUFFIX,
      LOCK_FILE,
      'wal-0000000000000000001.log',
      'wal-000000000000000000001.log',
      'wal-00000000000000000000.log',
      'wal-99999999999999999999.log',
      'wal-0000000000000000000a.log',
      'xwal-00000000000000000001.log',
      'wal-00000000000000000001.log.bak',
    ]) {
      expect(parseSegmentFileName(name), name).toBeNull();
    }
    expect(TEMP_SUFFIX).toBe('.tmp');
    expect(CHECKPOINT_FILE).toBe('CHECKPOINT');
    expect(LOCK_FILE).toBe('LOCK');
  });
});

describe('segment header', () => {
  it('constants are as the spec states', () => {
    expect(FORMAT_VERSION).toBe(1);
    expect(SEGMENT_HEADER_SIZE_BYTES).toBe(32);
    expect(RECORD_HEADER_SIZE_BYTES).toBe(32);
    expect(CHECKPOINT_SIZE_BYTES).toBe(24);
    expect(RECORD_PAYLOAD_SIZE_BYTES_LIMIT).toBe(1024 ** 3);
    expect(LSN_LIMIT).toBe(2 ** 53 - 1);
    expect(RECORD_TYPE_MAX).toBe(255);
  });

  it('round trips the first LSN, including values above 2^32', () => {
    for (const lsn of [1, 2, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, LSN_LIMIT]) {
      const bytes = encodeSegmentHeader(lsn);
      expect(bytes).toHaveLength(SEGMENT_HEADER_SIZE_BYTES);
      expect(decodeSegmentHeader(bytes)).toEqual({ firstLsn: lsn });
    }
  });

  it('every field sits at its documented offset', () => {
    const bytes = encodeSegmentHeader(0x0102030405);
    expect(Buffer.from(bytes.subarray(0, 8)).toString('hex')).toBe('4641435457414c00');
    expect(view(bytes).getUint16(8, true)).toBe(1);
    expect(view(bytes).getUint16(10, true)).toBe(32);
    expect(view(bytes).getUint32(12, true)).toBe(0);
    expect(Buffer.from(bytes.subarray(16, 24)).toString('hex')).toBe('0504030201000000');
    expect(view(bytes).getUint32(24, true)).toBe(0);
    expect(view(bytes).getUint32(28, true)).toBe(crc32(bytes.subarray(0, 28)));
  });

  it('the magic bytes are those listed in the spec', () => {
    const spec = readFileSync(SPEC_PATH, 'utf8');
    const listed = /magic `FACTWAL` followed by one zero byte \(`([0-9a-f ]+)`\)/.exec(spec)?.[1];
    expect(listed).toBeDefined();
    expect(Buffer.from(encodeSegmentHeader(1).subarray(0, 8)).toString('hex')).toBe(listed!.replaceAll(' ', ''));
  });

  it('refuses to encode a first LSN below 1 or not a safe integer', () => {
    for (const lsn of [0, -1, 1.5, LSN_LIMIT + 1, Number.NaN]) expectAssertion(() => encodeSegmentHeader(lsn));
  });

  it('invalid: shorter than 32 bytes', () => {
    expect(decodeSegmentHeader(encodeSegmentHeader(1).subarray(0, 31))).toHaveProperty('invalid');
    expect(decodeSegmentHeader(new Uint8Array(0))).toHaveProperty('invalid');
  });

  it('invalid: any single bit flipped anywhere in the header', () => {
    const good = encodeSegmentHeader(77);
    for (let byte = 0; byte < SEGMENT_HEADER_SIZE_BYTES; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = good.slice();
        bad[byte]! ^= 1 << bit;
        expect(decodeSegmentHeader(bad), `byte ${byte} bit ${bit}`).toHaveProperty('invalid');
      }
    }
  });

  it('invalid: bad magic even with a matching CRC', () => {
    const bad = encodeSegmentHeader(1);
    bad[7] = 0x21;
    resealHeader(bad);
    expect(decodeSegmentHeader(bad)).toEqual({ invalid: 'bad magic' });
  });

  it('invalid: format version other than 1 even with a matching CRC', () => {
    const bad = encodeSegmentHeader(1);
    view(bad).setUint16(8, 2, true);
    resealHeader(bad);
    expect(decodeSegmentHeader(bad)).toHaveProperty('invalid', 'unsupported format version 2');
  });

  it('invalid: header size other than 32 even with a matching CRC', () => {
    const bad = encodeSegmentHeader(1);
    view(bad).setUint16(10, 40, true);
    resealHeader(bad);
    expect(decodeSegmentHeader(bad)).toEqual({ invalid: 'bad header size' });
  });

  it('invalid: reserved bytes 12–15 or 24–27 not zero even with a matching CRC', () => {
    for (const offset of [12, 13, 14, 15, 24, 25, 26, 27]) {
      const bad = encodeSegmentHeader(1);
      bad[offset] = 1;
      resealHeader(bad);
      expect(decodeSegmentHeader(bad), `offset ${offset}`).toEqual({ invalid: 'reserved bytes not zero' });
    }
  });

  it('invalid: first LSN 0 or beyond 2^53 − 1 even with a matching CRC', () => {
    for (const lsn of [0, LSN_LIMIT + 1, 2 ** 60]) {
      const bad = encodeSegmentHeader(1);
      setU64(bad, 16, lsn);
      resealHeader(bad);
      expect(decodeSegmentHeader(bad), `lsn ${lsn}`).toHaveProperty('invalid');
    }
  });

  it('decodes a header at the start of a longer buffer (a whole segment file)', () => {
    const segment = segmentImage(42, [record(42)]);
    expect(decodeSegmentHeader(segment)).toEqual({ firstLsn: 42 });
    expect(decodeSegmentHeader(segment.subarray(0))).toEqual({ firstLsn: 42 });
  });
});

describe('record', () => {
  it('round trips every field', () => {
    const cases: RecordFields[] = [
      { lsn: 1, durableLsn: 0, batchRemaining: 0, type: 0, payload: new Uint8Array(0) },
      { lsn: 2, durableLsn: 1, batchRemaining: 3, type: 255, payload: Buffer.from('abc') },
      { lsn: 2 ** 40 + 17, durableLsn: 2 ** 33 + 5, batchRemaining: 2 ** 32 - 1, type: 128, payload: new Uint8Array(1000).fill(0xab) },
      { lsn: LSN_LIMIT, durableLsn: LSN_LIMIT - 1, batchRemaining: 0, type: 7, payload: Buffer.from([0]) },
    ];
    for (const fields of cases) {
      const bytes = encodeRecord(fields);
      expect(bytes).toHaveLength(RECORD_HEADER_SIZE_BYTES + fields.payload.length);
      const decoded = decodeRecordAt(bytes, 0);
      expect(decoded).toEqual({
        lsn: fields.lsn,
        durableLsn: fields.durableLsn,
        batchRemaining: fields.batchRemaining,
        type: fields.type,
        payloadOffset: RECORD_HEADER_SIZE_BYTES,
        payloadLength: fields.payload.length,
        end: bytes.length,
      });
      expect(bytes.subarray(decoded!.payloadOffset, decoded!.end)).toEqual(new Uint8Array(fields.payload));
    }
  });

  it('every field sits at its documented offset', () => {
    const payload = Buffer.from('xyz');
    const bytes = encodeRecord({ lsn: 0x0a0b0c0d0e, durableLsn: 0x0102030405, batchRemaining: 0x11223344, type: 0x99, payload });
    const v = view(bytes);
    expect(v.getUint32(0, true)).toBe(crc32(bytes.subarray(4)));
    expect(v.getUint32(4, true)).toBe(3);
    expect(Buffer.from(bytes.subarray(8, 16)).toString('hex')).toBe('0e0d0c0b0a000000');
    expect(Buffer.from(bytes.subarray(16, 24)).toString('hex')).toBe('0504030201000000');
    expect(v.getUint32(24, true)).toBe(0x11223344);
    expect(bytes[28]).toBe(0x99);
    expect(Array.from(bytes.subarray(29, 32))).toEqual([0, 0, 0]);
    expect(Buffer.from(bytes.subarray(32)).toString()).toBe('xyz');
  });

  it('encodeRecordInto writes at an offset, leaves the rest alone, and returns the end', () => {
    const target = new Uint8Array(100).fill(0xee);
    const end = encodeRecordInto(target, 10, record(5, { payload: Buffer.from('hello') }));
    expect(end).toBe(10 + 32 + 5);
    expect(target.subarray(0, 10).every((b) => b === 0xee)).toBe(true);
    expect(target.subarray(end).every((b) => b === 0xee)).toBe(true);
    expect(decodeRecordAt(target, 10)).toMatchObject({ lsn: 5, payloadOffset: 42, payloadLength: 5, end });
  });

  it('decodes from a subarray view (non-zero byteOffset)', () => {
    const backing = new Uint8Array(200);
    const bytes = encodeRecord(record(3));
    backing.set(bytes, 17);
    expect(decodeRecordAt(backing.subarray(17), 0)).toMatchObject({ lsn: 3, durableLsn: 2 });
  });

  it('refuses to encode out-of-range fields: durable LSN ≥ LSN, LSN 0, type outside 0–255, record larger than the target', () => {
    expectAssertion(() => encodeRecord(record(5, { durableLsn: 5 })));
    expectAssertion(() => encodeRecord(record(5, { durableLsn: 6 })));
    expectAssertion(() => encodeRecord(record(5, { durableLsn: -1 })));
    expectAssertion(() => encodeRecord(record(0, { durableLsn: 0 })));
    expectAssertion(() => encodeRecord(record(LSN_LIMIT + 1)));
    expectAssertion(() => encodeRecord(record(5, { type: 256 })));
    expectAssertion(() => encodeRecord(record(5, { type: -1 })));
    expectAssertion(() => encodeRecord(record(5, { type: 1.5 })));
    expectAssertion(() => encodeRecordInto(new Uint8Array(40), 0, record(5)));
  });

  it('the worked example of docs/wal-format.md is exactly what the encoder produces', () => {
    const spec = readFileSync(SPEC_PATH, 'utf8');
    const match = /<!-- worked-example: ([^>]*) -->\s*```\n([\s\S]*?)```/.exec(spec);
    expect(match).not.toBeNull();
    const params = new Map(match![1]!.trim().split(/\s+/).map((pair) => pair.split('=') as [string, string]));
    const hexLines = match![2]!.split('\n').filter((line) => line.trim() !== '');
    const documented = Buffer.from(
      hexLines.map((line) => line.split(/\s{2,}/)[0]!.replaceAll(' ', '')).join(''),
      'hex',
    );
    const fields: RecordFields = {
      lsn: Number(params.get('lsn')),
      durableLsn: Number(params.get('durableLsn')),
      batchRemaining: Number(params.get('batchRemaining')),
      type: Number(params.get('type')),
      payload: Buffer.from(params.get('payload')!, 'hex'),
    };
    expect(fields).toEqual({ lsn: 1, durableLsn: 0, batchRemaining: 0, type: 7, payload: Buffer.from('hi') });
    expect(documented).toHaveLength(34);
    expect(Buffer.from(encodeRecord(fields)).toString('hex')).toBe(documented.toString('hex'));
    // And it decodes as the first record of segment 1 at offset 32, as the spec says.
    const segment = new Uint8Array(1024);
    segment.set(encodeSegmentHeader(1), 0);
    segment.set(documented, SEGMENT_HEADER_SIZE_BYTES);
    expect(scanSegment(segment, 1)).toMatchObject({ lastLsn: 1, endOffset: 66 });
    // The prose states the size too.
    expect(spec).toContain(`The ${documented.length} bytes are:`);
    expect(spec).toContain(`CRC-32 of the ${documented.length - 4} bytes that follow`);
  });
});

describe('record validity rule (decodeRecordAt)', () => {
  it('valid: durable LSN exactly LSN − 1, and durable LSN 0', () => {
    expect(decodeRecordAt(encodeRecord(record(9, { durableLsn: 8 })), 0)).not.toBeNull();
    expect(decodeRecordAt(encodeRecord(record(9, { durableLsn: 0 })), 0)).not.toBeNull();
  });

  it('invalid: bad CRC (any single bit flipped in any byte of header or payload)', () => {
    const good = encodeRecord(record(4, { payload: Buffer.from('abcd'), batchRemaining: 1 }));
    for (let byte = 0; byte < good.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = good.slice();
        bad[byte]! ^= 1 << bit;
        expect(decodeRecordAt(bad, 0), `byte ${byte} bit ${bit}`).toBeNull();
      }
    }
  });

  it('invalid: zero fill (LSN 0) never reads as a record', () => {
    expect(decodeRecordAt(new Uint8Array(64), 0)).toBeNull();
    expect(decodeRecordAt(new Uint8Array(64), 32)).toBeNull();
  });

  it('invalid: LSN 0 even with a matching CRC', () => {
    const bad = encodeRecord(record(1, { durableLsn: 0 }));
    setU64(bad, 8, 0);
    resealRecord(bad);
    expect(decodeRecordAt(bad, 0)).toBeNull();
  });

  it('invalid: LSN beyond 2^53 − 1 even with a matching CRC', () => {
    const bad = encodeRecord(record(1, { durableLsn: 0 }));
    setU64(bad, 8, 2 ** 60);
    resealRecord(bad);
    expect(decodeRecordAt(bad, 0)).toBeNull();
  });

  it('invalid: durable LSN equal to or above the LSN even with a matching CRC', () => {
    for (const durableLsn of [10, 11, 2 ** 40]) {
      const bad = encodeRecord(record(10));
      setU64(bad, 16, durableLsn);
      resealRecord(bad);
      expect(decodeRecordAt(bad, 0), `durable ${durableLsn}`).toBeNull();
    }
  });

  it('invalid: reserved bytes 29–31 not zero even with a matching CRC', () => {
    for (const offset of [29, 30, 31]) {
      const bad = encodeRecord(record(10));
      bad[offset] = 0x80;
      resealRecord(bad);
      expect(decodeRecordAt(bad, 0), `offset ${offset}`).toBeNull();
    }
  });

  it('invalid: header or payload extends beyond the file (or the given limit)', () => {
    const bytes = encodeRecord(record(3, { payload: Buffer.from('0123456789') }));
    expect(decodeRecordAt(bytes, 0)).not.toBeNull();
    expect(decodeRecordAt(bytes.subarray(0, bytes.length - 1), 0)).toBeNull();
    expect(decodeRecordAt(bytes.subarray(0, RECORD_HEADER_SIZE_BYTES - 1), 0)).toBeNull();
    expect(decodeRecordAt(bytes, 0, bytes.length - 1)).toBeNull();
    expect(decodeRecordAt(bytes, 0, bytes.length)).not.toBeNull();
    expect(decodeRecordAt(bytes, 1)).toBeNull();
  });

  it('invalid: length above 1 GiB even with a matching CRC over what is there', () => {
    const bytes = encodeRecord(record(3, { payload: new Uint8Array(0) }));
    view(bytes).setUint32(4, RECORD_PAYLOAD_SIZE_BYTES_LIMIT + 1, true);
    view(bytes).setUint32(0, crc32(bytes.subarray(4)), true);
    expect(decodeRecordAt(bytes, 0, Number.MAX_SAFE_INTEGER)).toBeNull();
  });
});

describe('segment scan (LSN sequence and unit rules)', () => {
  it('reads consecutive records from offset 32 and ends at the zero fill', () => {
    const records = [record(5), record(6), record(7)];
    const scan = scanSegment(segmentImage(5, records), 5);
    expect(scan.records.map((r) => r.lsn)).toEqual([5, 6, 7]);
    expect(scan.lastLsn).toBe(7);
    expect(scan.endOffset).toBe(offsetOf(records, 3));
  });

  it('an empty segment has last LSN first − 1 and ends at offset 32', () => {
    expect(scanSegment(segmentImage(12, []), 12)).toEqual({ records: [], lastLsn: 11, endOffset: 32 });
  });

  it('LSN mismatch: a first record whose LSN is not the segment first LSN ends the log', () => {
    const scan = scanSegment(segmentImage(5, [record(6, { durableLsn: 0 })]), 5);
    expect(scan).toEqual({ records: [], lastLsn: 4, endOffset: 32 });
  });

  it('LSN mismatch: a gap or a repeat in the sequence ends the log there', () => {
    const gap = [record(1), record(2), record(4, { durableLsn: 2 })];
    expect(scanSegment(segmentImage(1, gap), 1)).toMatchObject({ lastLsn: 2, endOffset: offsetOf(gap, 2) });
    const repeat = [record(1), record(2), record(2)];
    expect(scanSegment(segmentImage(1, repeat), 1)).toMatchObject({ lastLsn: 2, endOffset: offsetOf(repeat, 2) });
  });

  it('a batch (unit) counts down its batch remaining and is kept whole', () => {
    const records = [record(1), record(2, { batchRemaining: 2 }), record(3, { batchRemaining: 1 }), record(4, { batchRemaining: 0 }), record(5)];
    const scan = scanSegment(segmentImage(1, records), 1);
    expect(scan.records.map((r) => [r.lsn, r.batchRemaining])).toEqual([[1, 0], [2, 2], [3, 1], [4, 0], [5, 0]]);
    expect(scan.endOffset).toBe(offsetOf(records, 5));
  });

  it('an incomplete unit at the end is not part of the log: the end is the unit start', () => {
    const records = [record(1), record(2, { batchRemaining: 2 }), record(3, { batchRemaining: 1 })];
    const scan = scanSegment(segmentImage(1, records), 1);
    expect(scan.records.map((r) => r.lsn)).toEqual([1]);
    expect(scan).toMatchObject({ lastLsn: 1, endOffset: offsetOf(records, 1) });
  });

  it('a damaged record inside a unit drops the whole unit', () => {
    const records = [record(1), record(2, { batchRemaining: 2 }), record(3, { batchRemaining: 1 }), record(4, { batchRemaining: 0 })];
    const image = segmentImage(1, records);
    image[offsetOf(records, 3) + 40]! ^= 1;
    expect(scanSegment(image, 1)).toMatchObject({ lastLsn: 1, endOffset: offsetOf(records, 1) });
  });

  it('batch remaining that does not count down by one ends the log at the unit start', () => {
    // The previous record has batch remaining 2, so the next one must have 1.
    for (const next of [0, 2, 5]) {
      const records = [record(1, { batchRemaining: 2 }), record(2, { batchRemaining: next })];
      expect(scanSegment(segmentImage(1, records), 1)).toMatchObject({ records: [], lastLsn: 0, endOffset: 32 });
    }
  });

  it('respects the limit: nothing past limitBytes is read', () => {
    const records = [record(1), record(2)];
    const image = segmentImage(1, records);
    expect(scanSegment(image, 1, offsetOf(records, 2) - 1)).toMatchObject({ lastLsn: 1, endOffset: offsetOf(records, 1) });
  });

  it('endOfNonZero finds one past the last non-zero byte, or `from` when all are zero', () => {
    const bytes = new Uint8Array(100);
    expect(endOfNonZero(bytes, 32)).toBe(32);
    bytes[70] = 1;
    expect(endOfNonZero(bytes, 32)).toBe(71);
    expect(endOfNonZero(bytes, 80)).toBe(80);
    expect(endOfNonZero(bytes, 32, 60)).toBe(32);
    bytes[99] = 9;
    expect(endOfNonZero(bytes, 32)).toBe(100);
  });

  it('endOfNonZero over a segment-sized buffer: the same answer at and around its 64 KiB blocks, and `from` and the limit respected', () => {
    const size = 1 << 20;
    const bytes = new Uint8Array(size);
    expect(endOfNonZero(bytes, 32)).toBe(32);
    for (const at of [32, 65535, 65536, 65537, size - 65537, size - 65536, size - 1]) {
      bytes.fill(0);
      bytes[at] = 7;
      expect(endOfNonZero(bytes, 32)).toBe(at + 1);
      expect(endOfNonZero(bytes, at + 1)).toBe(at + 1);
      expect(endOfNonZero(bytes, 0, at)).toBe(0);
    }
  });

  it('findAttestingRecord finds a valid later record whose durable LSN covers the first lost LSN, at any alignment', () => {
    const records = [record(1), record(2, { durableLsn: 1 }), record(3, { durableLsn: 2 })];
    const image = segmentImage(1, records);
    image[offsetOf(records, 1) + 8]! ^= 0xff; // record 2 damaged
    const from = offsetOf(records, 1);
    const tailEnd = endOfNonZero(image, from);
    expect(findAttestingRecord(image, from, tailEnd, 2)).toMatchObject({ lsn: 3, durableLsn: 2 });
    // Shift record 3 by 5 bytes: still found.
    const shifted = new Uint8Array(image.length);
    shifted.set(image.subarray(0, offsetOf(records, 2)));
    shifted.set(encodeRecord(records[2]!), offsetOf(records, 2) + 5);
    expect(findAttestingRecord(shifted, from, endOfNonZero(shifted, from), 2)).toMatchObject({ lsn: 3 });
  });

  it('findAttestingRecord finds the last record of the tail even when it ends in zero bytes (beyond the last non-zero byte)', () => {
    const records = [record(1), record(2, { durableLsn: 1 }), record(3, { durableLsn: 2, type: 0, payload: new Uint8Array(0) })];
    const image = segmentImage(1, records);
    image[offsetOf(records, 1) + 35]! ^= 0x01; // record 2 damaged
    const from = offsetOf(records, 1);
    const tailEnd = endOfNonZero(image, from);
    expect(tailEnd).toBeLessThan(offsetOf(records, 3)); // the attesting record's zeros lie beyond the tail end
    expect(findAttestingRecord(image, from, tailEnd, 2)).toMatchObject({ lsn: 3, durableLsn: 2 });
  });

  it('findAttestingRecord ignores later records whose durable LSN is below the first lost LSN, and damaged ones', () => {
    const records = [record(1), record(2, { durableLsn: 1 }), record(3, { durableLsn: 1 })];
    const image = segmentImage(1, records);
    image[offsetOf(records, 1) + 8]! ^= 0xff;
    const from = offsetOf(records, 1);
    expect(findAttestingRecord(image, from, endOfNonZero(image, from), 2)).toBeNull();
    const attesting = [record(1), record(2, { durableLsn: 1 }), record(3, { durableLsn: 2 })];
    const damaged = segmentImage(1, attesting);
    damaged[offsetOf(attesting, 1) + 8]! ^= 0xff;
    damaged[offsetOf(attesting, 2) + 33]! ^= 0x01; // the attesting record's payload too
    expect(findAttestingRecord(damaged, from, endOfNonZero(damaged, from), 2)).toBeNull();
  });
});

describe('checkpoint file', () => {
  it('round trips the checkpoint LSN, including 0 and values above 2^32', () => {
    for (const lsn of [0, 1, 2 ** 32, 2 ** 45 + 9, LSN_LIMIT]) {
      const bytes = encodeCheckpoint(lsn);
      expect(bytes).toHaveLength(CHECKPOINT_SIZE_BYTES);
      expect(decodeCheckpoint(bytes)).toEqual({ lsn });
    }
  });

  it('every field sits at its documented offset', () => {
    const bytes = encodeCheckpoint(0x0102030405);
    expect(Buffer.from(bytes.subarray(0, 8)).toString('latin1')).toBe('FACTCKP\0');
    expect(view(bytes).getUint16(8, true)).toBe(1);
    expect(view(bytes).getUint16(10, true)).toBe(0);
    expect(Buffer.from(bytes.subarray(12, 20)).toString('hex')).toBe('0504030201000000');
    expect(view(bytes).getUint32(20, true)).toBe(crc32(bytes.subarray(0, 20)));
  });

  it('refuses to encode a negative or non-integer LSN', () => {
    for (const lsn of [-1, 0.5, LSN_LIMIT + 1]) expectAssertion(() => encodeCheckpoint(lsn));
  });

  it('invalid: wrong size (shorter, longer, empty)', () => {
    const good = encodeCheckpoint(5);
    expect(decodeCheckpoint(good.subarray(0, 23))).toHaveProperty('invalid');
    expect(decodeCheckpoint(new Uint8Array([...good, 0]))).toHaveProperty('invalid');
    expect(decodeCheckpoint(new Uint8Array(0))).toHaveProperty('invalid');
  });

  it('invalid: any single bit flipped anywhere', () => {
    const good = encodeCheckpoint(5);
    for (let byte = 0; byte < CHECKPOINT_SIZE_BYTES; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = good.slice();
        bad[byte]! ^= 1 << bit;
        expect(decodeCheckpoint(bad), `byte ${byte} bit ${bit}`).toHaveProperty('invalid');
      }
    }
  });

  it('invalid: bad magic, version, reserved bytes or LSN beyond 2^53 − 1 even with a matching CRC', () => {
    const cases: [string, (bytes: Uint8Array) => void][] = [
      ['magic', (b) => (b[0] = 0x47)],
      ['version', (b) => view(b).setUint16(8, 2, true)],
      ['reserved 10', (b) => (b[10] = 1)],
      ['reserved 11', (b) => (b[11] = 1)],
      ['lsn', (b) => setU64(b, 12, 2 ** 60)],
    ];
    for (const [name, damage] of cases) {
      const bad = encodeCheckpoint(5);
      damage(bad);
      resealCheckpoint(bad);
      expect(decodeCheckpoint(bad), name).toHaveProperty('invalid');
    }
  });
});
