/**
 * Unit tests of the Wal (src/wal/wal.ts): its API, and every row of the recovery decision
 * table of docs/wal-format.md, one named test per case (in the style of LevelDB's log_test.cc).
 * Damaged logs are crafted by writing bytes directly; crash and fault cases use SimFileSystem.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FactError, isFactError, type FactErrorCode } from '../src/errors.js';
import type { FileHandle, FileLock, FileSystem, OpenMode } from '../src/wal/file-system.js';
import {
  CHECKPOINT_FILE,
  decodeCheckpoint,
  decodeRecordAt,
  encodeCheckpoint,
  encodeRecord,
  encodeSegmentHeader,
  LOCK_FILE,
  parseSegmentFileName,
  SEGMENT_FILL_STEP_BYTES,
  SEGMENT_HEADER_SIZE_BYTES,
  segmentFileName,
} from '../src/wal/format.js';
import { NodeFileSystem } from '../src/wal/node-file-system.js';
import { endOfNonZero, scanSegment } from '../src/wal/segment-scan.js';
import { SimFileSystem } from '../src/wal/sim-file-system.js';
import { Wal, type SyncMode, type WalOptions, type WalRecord } from '../src/wal/wal.js';

// ------------------------------------------------------------------------------ helpers

/** Every payload in these tests is 10 bytes, so every record is 42 bytes. */
const RECORD_BYTES = 42;
const SMALL_SEGMENT_BYTES = 1024;
/** Records per 1024-byte segment: floor((1024 − 32) / 42). */
const PER_SEGMENT = 23;
const SIM_DIR = '/wal';

function p(lsn: number): Buffer {
  return Buffer.from(`rec-${String(lsn).padStart(6, '0')}`);
}

/** Offset of `lsn` in a segment starting at `firstLsn` holding only 10-byte payloads. */
function recordOffset(firstLsn: number, lsn: number): number {
  return SEGMENT_HEADER_SIZE_BYTES + (lsn - firstLsn) * RECORD_BYTES;
}

const tempDirs: string[] = [];
const openWals: Wal[] = [];

function tempDir(): string {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'factstore-'));
  tempDirs.push(dir);
  return dir;
}

async function open(dir: string, options: WalOptions = {}): Promise<Wal> {
  const wal = await Wal.open(dir, options);
  openWals.push(wal);
  return wal;
}

afterEach(async () => {
  vi.useRealTimers();
  for (const wal of openWals.splice(0)) await wal.close().catch(() => undefined);
  for (const dir of tempDirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

async function errorOf(run: Promise<unknown> | (() => unknown)): Promise<FactError> {
  try {
    await (typeof run === 'function' ? run() : run);
  } catch (error) {
    expect(error).toBeInstanceOf(FactError);
    return error as FactError;
  }
  throw new Error('expected a FactError, but it succeeded');
}

async function expectCode(run: Promise<unknown> | (() => unknown), code: FactErrorCode): Promise<FactError> {
  const error = await errorOf(run);
  expect(error.code, error.message).toBe(code);
  return error;
}

async function collect(records: AsyncIterable<WalRecord>): Promise<[number, number, string][]> {
  const out: [number, number, string][] = [];
  for await (const record of records) out.push([record.lsn, record.type, Buffer.from(record.payload).toString()]);
  return out;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** What replay should yield for LSNs from..to appended with payload p(lsn) and type 0. */
function expected(from: number, to: number): [number, number, string][] {
  return range(from, to).map((lsn) => [lsn, 0, p(lsn).toString()]);
}

/** A short stand-in for file content: comparing large buffers with toEqual is very slow. */
function digest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function segmentNames(dir: string): string[] {
  return nodeFs.readdirSync(dir).filter((name) => parseSegmentFileName(name) !== null).sort();
}

function segmentPath(dir: string, firstLsn: number): string {
  return path.join(dir, segmentFileName(firstLsn));
}

function readSegment(dir: string, firstLsn: number): Buffer {
  return nodeFs.readFileSync(segmentPath(dir, firstLsn));
}

/** XORs one byte of a file in place. */
function flipByte(file: string, offset: number, mask = 0x01): void {
  const bytes = nodeFs.readFileSync(file);
  bytes[offset]! ^= mask;
  nodeFs.writeFileSync(file, bytes);
}

function patchFile(file: string, offset: number, data: Uint8Array): void {
  const fd = nodeFs.openSync(file, 'r+');
  try {
    nodeFs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    nodeFs.closeSync(fd);
  }
}

/** A WAL in `dir` holding LSNs 1..count (payload p(lsn)), each appended and acknowledged in turn. */
async function buildLog(dir: string, count: number, options: WalOptions = {}): Promise<void> {
  const wal = await Wal.open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 'all', ...options });
  for (let lsn = 1; lsn <= count; lsn++) expect(await wal.append(p(lsn))).toBe(lsn);
  await wal.close();
}

/** Wraps a FileSystem and counts fdatasyncs of files. */
class CountingFileSystem implements FileSystem {
  datasyncs = 0;
  /** readFile calls and reads through handles. */
  reads = 0;
  readonly datasyncPaths: string[] = [];
  /** While set, writes to segment files wait for it. */
  gate: Promise<void> | null = null;

  constructor(readonly inner: FileSystem) {}

  async open(file: string, mode: OpenMode): Promise<FileHandle> {
    const handle = await this.inner.open(file, mode);
    return {
      read: (buffer, offset, length, position) => {
        this.reads++;
        return handle.read(buffer, offset, length, position);
      },
      write: async (data, position) => {
        if (this.gate && file.includes('wal-')) await this.gate;
        await handle.write(data, position);
      },
      datasync: async () => {
        this.datasyncs++;
        this.datasyncPaths.push(file);
        await handle.datasync();
      },
      truncate: (sizeBytes) => handle.truncate(sizeBytes),
      sizeBytes: () => handle.sizeBytes(),
      close: () => handle.close(),
    };
  }

  readFile(file: string): Promise<Uint8Array | null> {
    this.reads++;
    return this.inner.readFile(file);
  }

  readdir(dir: string): Promise<string[]> {
    return this.inner.readdir(dir);
  }

  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }

  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }

  unlink(file: string): Promise<void> {
    return this.inner.unlink(file);
  }

  exists(file: string): Promise<boolean> {
    return this.inner.exists(file);
  }

  syncDir(dir: string): Promise<void> {
    return this.inner.syncDir(dir);
  }

  lock(file: string): Promise<FileLock> {
    return this.inner.lock(file);
  }
}

/** Lets the WAL's I/O loop (setImmediate + promise-based SimFileSystem) run until `done()`. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !done(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
  expect(done()).toBe(true);
}

async function settleIo(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function simSegment(firstLsn: number): string {
  return `${SIM_DIR}/${segmentFileName(firstLsn)}`;
}

/** Does `content` hold record `lsn` with payload p(lsn) at its place in segment `firstLsn`? */
function holdsRecord(content: Uint8Array | null, firstLsn: number, lsn: number): boolean {
  if (content === null) return false;
  const record = decodeRecordAt(content, recordOffset(firstLsn, lsn));
  return record !== null && record.lsn === lsn && Buffer.from(content.subarray(record.payloadOffset, record.end)).equals(p(lsn));
}

// ------------------------------------------------------------------------------ API

describe('Wal API: LSNs and appends', () => {
  it('a new WAL hands out LSNs gapless from 1, for appends and batches alike', async () => {
    const wal = await open(tempDir());
    expect(wal.lastLsn).toBe(0);
    expect(await wal.append(p(1))).toBe(1);
    expect(await wal.appendBatch([p(2), p(3), p(4)])).toEqual([2, 3, 4]);
    expect(await wal.append(p(5))).toBe(5);
    expect(await Promise.all([wal.append(p(6)), wal.appendBatch([p(7), p(8)]), wal.append(p(9))])).toEqual([6, [7, 8], 9]);
    expect(wal.lastLsn).toBe(9);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 9));
  });

  it('LSNs continue after reopen, and nothing is lost', async () => {
    const dir = tempDir();
    let wal = await open(dir);
    for (let lsn = 1; lsn <= 5; lsn++) await wal.append(p(lsn));
    await wal.close();
    wal = await open(dir);
    expect(wal.lastLsn).toBe(5);
    expect(wal.recovery.lastLsn).toBe(5);
    expect(await wal.append(p(6))).toBe(6);
    await wal.close();
    wal = await open(dir);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 6));
  });

  it('the record type is stored and replayed; default 0', async () => {
    const wal = await open(tempDir());
    await wal.append(p(1));
    await wal.append(p(2), { type: 255 });
    await wal.appendBatch([p(3), p(4)], { type: 9 });
    expect((await collect(wal.replay({ from: 1 }))).map(([lsn, type]) => [lsn, type])).toEqual([
      [1, 0],
      [2, 255],
      [3, 9],
      [4, 9],
    ]);
  });

  it('rejects a bad type or a payload that is not a Uint8Array with FACT_INVALID_ARGUMENT, handing out no LSN', async () => {
    const wal = await open(tempDir());
    for (const type of [-1, 256, 1.5, Number.NaN]) await expectCode(wal.append(p(1), { type }), 'FACT_INVALID_ARGUMENT');
    await expectCode(wal.append('text' as unknown as Uint8Array), 'FACT_INVALID_ARGUMENT');
    await expectCode(wal.appendBatch([p(1), 'x' as unknown as Uint8Array]), 'FACT_INVALID_ARGUMENT');
    await expectCode(wal.appendBatch([]), 'FACT_INVALID_ARGUMENT');
    await expectCode(wal.appendBatch('ab' as unknown as Uint8Array[]), 'FACT_INVALID_ARGUMENT');
    expect(wal.lastLsn).toBe(0);
    expect(await wal.append(p(1))).toBe(1);
  });

  it('a payload above maxRecordSizeBytes rejects with FACT_WAL_RECORD_TOO_LARGE and nothing is written', async () => {
    const dir = tempDir();
    const wal = await open(dir, { maxRecordSizeBytes: 10 });
    const before = readSegment(dir, 1);
    const error = await expectCode(wal.append(new Uint8Array(11)), 'FACT_WAL_RECORD_TOO_LARGE');
    expect(error.details).toMatchObject({ sizeBytes: 11, maxRecordSizeBytes: 10 });
    // One oversized payload rejects the whole batch.
    await expectCode(wal.appendBatch([p(1), new Uint8Array(11), p(2)]), 'FACT_WAL_RECORD_TOO_LARGE');
    expect(wal.lastLsn).toBe(0);
    await wal.sync();
    expect(digest(readSegment(dir, 1))).toBe(digest(before));
    expect(await wal.append(p(1))).toBe(1); // exactly the limit is accepted
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 1));
  });

  it('maxRecordSizeBytes 0 accepts only empty payloads, which round trip', async () => {
    const wal = await open(tempDir(), { maxRecordSizeBytes: 0 });
    await expectCode(wal.append(new Uint8Array(1)), 'FACT_WAL_RECORD_TOO_LARGE');
    expect(await wal.append(new Uint8Array(0), { type: 3 })).toBe(1);
    expect(await collect(wal.replay({ from: 1 }))).toEqual([[1, 3, '']]);
  });

  it('the payload is copied: changing the caller buffer after append does not change the record', async () => {
    const dir = tempDir();
    let wal = await open(dir);
    const buffer = Buffer.from('original!!');
    const pending = wal.append(buffer);
    buffer.write('CHANGED!!!');
    const batchBuffer = Buffer.from('batch-one!');
    const batch = wal.appendBatch([batchBuffer]);
    batchBuffer.fill(0);
    await Promise.all([pending, batch]);
    expect((await collect(wal.replay({ from: 1 }))).map(([, , text]) => text)).toEqual(['original!!', 'batch-one!']);
    await wal.close();
    wal = await open(dir);
    expect((await collect(wal.replay({ from: 1 }))).map(([, , text]) => text)).toEqual(['original!!', 'batch-one!']);
  });

  it('a Uint8Array view into a larger buffer stores only the viewed bytes', async () => {
    const wal = await open(tempDir());
    const backing = Buffer.from('xxxxrec-000001yyyy');
    await wal.append(backing.subarray(4, 14));
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 1));
  });

  it('appendBatch writes one unit: batch remaining counts down to 0 and all records share one write', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    await wal.append(p(1));
    await wal.appendBatch([p(2), p(3), p(4)]);
    const bytes = readSegment(dir, 1);
    const fields = [1, 2, 3, 4].map((lsn) => decodeRecordAt(bytes, recordOffset(1, lsn)));
    expect(fields.map((r) => [r?.lsn, r?.batchRemaining])).toEqual([
      [1, 0],
      [2, 2],
      [3, 1],
      [4, 0],
    ]);
    // One unit, one durable LSN: every record of the batch carries the same stamp.
    expect(fields.slice(1).map((r) => r?.durableLsn)).toEqual([1, 1, 1]);
  });

  it('each record carries the durable LSN at its write: the last LSN covered by a completed fdatasync', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    await wal.append(p(1));
    await wal.append(p(2));
    await Promise.all([wal.append(p(3)), wal.append(p(4))]);
    const bytes = readSegment(dir, 1);
    expect([1, 2, 3, 4].map((lsn) => decodeRecordAt(bytes, recordOffset(1, lsn))?.durableLsn)).toEqual([0, 1, 2, 2]);
    expect(wal.durableLsn).toBe(4);
  });

  it('with sync none nothing is stamped durable until a sync', async () => {
    const dir = tempDir();
    const wal = await open(dir, { sync: 'none' });
    await wal.append(p(1));
    await wal.append(p(2));
    await wal.sync();
    await wal.append(p(3));
    const bytes = readSegment(dir, 1);
    expect([1, 2, 3].map((lsn) => decodeRecordAt(bytes, recordOffset(1, lsn))?.durableLsn)).toEqual([0, 0, 2]);
  });
});

describe('Wal API: segments', () => {
  it('a new segment is created whole: header plus zero fill up to segmentSizeBytes', async () => {
    const dir = tempDir();
    await open(dir, { segmentSizeBytes: 4096 });
    const bytes = readSegment(dir, 1);
    expect(bytes).toHaveLength(4096);
    expect(bytes.subarray(0, 32)).toEqual(Buffer.from(encodeSegmentHeader(1)));
    expect(endOfNonZero(bytes, 32)).toBe(32);
  });

  it('rotates when the next unit would not fit segmentSizeBytes; sealed segments hold consecutive LSNs', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 'all' });
    for (let lsn = 1; lsn <= 60; lsn++) await wal.append(p(lsn));
    expect(PER_SEGMENT).toBe(Math.floor((SMALL_SEGMENT_BYTES - SEGMENT_HEADER_SIZE_BYTES) / RECORD_BYTES));
    expect(segmentNames(dir)).toEqual([1, 1 + PER_SEGMENT, 1 + 2 * PER_SEGMENT].map(segmentFileName));
    for (const [first, last] of [
      [1, 23],
      [24, 46],
      [47, 60],
    ] as const) {
      const bytes = readSegment(dir, first);
      expect(bytes).toHaveLength(SMALL_SEGMENT_BYTES);
      const scan = scanSegment(bytes, first);
      expect(scan.records.map((r) => r.lsn)).toEqual(range(first, last));
      expect(endOfNonZero(bytes, scan.endOffset)).toBe(scan.endOffset);
    }
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 60));
  });

  it('one group that crosses the segment boundary is split between segments, units whole', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    const lsns = await Promise.all(range(1, 30).map((lsn) => wal.append(p(lsn))));
    expect(lsns).toEqual(range(1, 30));
    expect(segmentNames(dir)).toEqual([1, 24].map(segmentFileName));
    expect(scanSegment(readSegment(dir, 1), 1).lastLsn).toBe(23);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 30));
  });

  it('a unit larger than a segment gets a segment of its own, sized to fit', async () => {
    const dir = tempDir();
    let wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    await wal.append(p(1));
    const big = new Uint8Array(2000).fill(0x5a);
    expect(await wal.append(big)).toBe(2);
    expect(await wal.append(p(3))).toBe(3);
    expect(segmentNames(dir)).toEqual([1, 2, 3].map(segmentFileName));
    const own = readSegment(dir, 2);
    expect(own.length).toBeGreaterThanOrEqual(32 + 32 + 2000);
    expect(scanSegment(own, 2).records.map((r) => r.lsn)).toEqual([2]);
    await wal.close();
    wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    const records = await collect(wal.replay({ from: 1 }));
    expect(records.map(([lsn]) => lsn)).toEqual([1, 2, 3]);
    expect(records[1]![2]).toBe(Buffer.from(big).toString());
  });

  it('a batch larger than a segment is never split across segments', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    await wal.append(p(1));
    const payloads = range(2, 11).map(() => new Uint8Array(100).fill(7));
    expect(await wal.appendBatch(payloads)).toEqual(range(2, 11));
    expect(segmentNames(dir)).toEqual([1, 2].map(segmentFileName));
    expect(scanSegment(readSegment(dir, 2), 2).records.map((r) => r.lsn)).toEqual(range(2, 11));
    expect(await wal.append(p(12))).toBe(12);
    expect(segmentNames(dir)).toEqual([1, 2, 12].map(segmentFileName));
  });
});

describe('Wal API: zero fill in steps (docs/wal-format.md, "Files")', () => {
  /** A small fill step in a larger segment, so that every step shows in a few appends. */
  const FILL: WalOptions = { segmentSizeBytes: 8192, segmentFillStepBytes: 256 };

  it('a new segment is zero-filled only up to the fill step (default 256 KiB), not to its capacity', async () => {
    const dir = tempDir();
    await open(dir);
    expect(readSegment(dir, 1)).toHaveLength(SEGMENT_FILL_STEP_BYTES);
    const small = tempDir();
    await open(small, FILL);
    const bytes = readSegment(small, 1);
    expect(bytes).toHaveLength(256);
    expect(bytes.subarray(0, 32)).toEqual(Buffer.from(encodeSegmentHeader(1)));
    expect(endOfNonZero(bytes, 32)).toBe(32);
  });

  it('the fill grows ahead of the writer, doubling, before the write position passes half of it, and stops at capacity', async () => {
    const dir = tempDir();
    const wal = await open(dir, { ...FILL, retainSegments: 'all' });
    const lengths: number[] = [];
    const perSegment = Math.floor((8192 - SEGMENT_HEADER_SIZE_BYTES) / RECORD_BYTES);
    for (let lsn = 1; lsn <= perSegment; lsn++) {
      await wal.append(p(lsn));
      await wal.sync(); // waits for the writer's loop, so an extension ahead of time has run
      const length = readSegment(dir, 1).length;
      const end = recordOffset(1, lsn + 1);
      expect(length, `after LSN ${lsn}`).toBeGreaterThanOrEqual(end);
      if (length < 8192) expect(end * 2, `after LSN ${lsn}`).toBeLessThanOrEqual(length);
      if (lengths[lengths.length - 1] !== length) lengths.push(length);
    }
    expect(lengths).toEqual([256, 512, 1024, 2048, 4096, 8192]);
    expect(await wal.append(p(perSegment + 1))).toBe(perSegment + 1);
    expect(segmentNames(dir)).toEqual([1, perSegment + 1].map(segmentFileName));
    const sealed = readSegment(dir, 1);
    expect(sealed).toHaveLength(8192);
    expect(scanSegment(sealed, 1).lastLsn).toBe(perSegment);
    expect(readSegment(dir, perSegment + 1)).toHaveLength(256);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, perSegment + 1));
  });

  it("sync 'none' never extends the fill (no fdatasync): records grow the file", async () => {
    const sim = new SimFileSystem({ seed: 21 });
    const fs = new CountingFileSystem(sim);
    const wal = await open(SIM_DIR, { ...FILL, fs, sync: 'none' });
    const before = fs.datasyncs;
    for (let lsn = 1; lsn <= 40; lsn++) expect(await wal.append(p(lsn))).toBe(lsn);
    expect(fs.datasyncs).toBe(before);
    expect((await sim.readFile(simSegment(1)))!.length).toBe(recordOffset(1, 41));
    await wal.sync();
    expect(fs.datasyncs).toBe(before + 1);
    expect(scanSegment(sim.durableContent(simSegment(1))!, 1).lastLsn).toBe(40);
  });

  it('a group larger than the fill is written after the fill is extended to hold it', async () => {
    const dir = tempDir();
    const wal = await open(dir, FILL);
    expect(await Promise.all(range(1, 40).map((lsn) => wal.append(p(lsn))))).toEqual(range(1, 40));
    await wal.sync();
    const bytes = readSegment(dir, 1);
    expect(bytes.length).toBeGreaterThanOrEqual(recordOffset(1, 41));
    expect(bytes.length).toBeLessThanOrEqual(8192);
    expect(scanSegment(bytes, 1).lastLsn).toBe(40);
  });

  it('a unit larger than a segment gets its own segment, filled to fit', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: 1024, segmentFillStepBytes: 128 });
    await wal.append(p(1));
    const big = new Uint8Array(5000).fill(0x5a);
    expect(await wal.append(big)).toBe(2);
    expect(await wal.append(p(3))).toBe(3);
    expect(segmentNames(dir)).toEqual([1, 2, 3].map(segmentFileName));
    expect(readSegment(dir, 2)).toHaveLength(32 + 32 + 5000);
    expect((await collect(wal.replay({ from: 1 }))).map(([lsn]) => lsn)).toEqual([1, 2, 3]);
  });

  it('row 6a: a newest segment that ends before its capacity (an extension lost) opens clean and is extended again', async () => {
    const dir = tempDir();
    await buildLog(dir, 5, FILL);
    const file = segmentPath(dir, 1);
    expect(nodeFs.statSync(file).size).toBe(512);
    nodeFs.truncateSync(file, recordOffset(1, 6)); // the file ends right after the last record
    let wal = await open(dir, FILL);
    expect(wal.recovery.tornTail).toBeNull();
    expect(wal.lastLsn).toBe(5);
    for (let lsn = 6; lsn <= 30; lsn++) expect(await wal.append(p(lsn))).toBe(lsn);
    await wal.close();
    expect(nodeFs.statSync(file).size).toBeGreaterThanOrEqual(recordOffset(1, 31));
    wal = await open(dir, FILL);
    expect(wal.recovery.tornTail).toBeNull();
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 30));
  });

  it('row 6a: a sealed segment that ends before its capacity is not corruption', async () => {
    const dir = tempDir();
    await buildLog(dir, 30, { segmentFillStepBytes: 128 });
    nodeFs.truncateSync(segmentPath(dir, 1), recordOffset(1, 24));
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 'all' });
    expect(wal.recovery.repair).toBeNull();
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 30));
  });

  it('row 6a + 7: a torn extension (the file ends in bytes that are not zeros) is a torn tail, zeroed and reported', async () => {
    const dir = tempDir();
    await buildLog(dir, 5, FILL);
    const file = segmentPath(dir, 1);
    nodeFs.truncateSync(file, 300);
    patchFile(file, 300, new Uint8Array(40).fill(0xee)); // a torn, garbled extension past the log end
    const wal = await open(dir, FILL);
    expect(wal.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 6), bytes: 340 - recordOffset(1, 6) });
    expect(await wal.append(p(6))).toBe(6);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 6));
  });
});

describe('Wal API: replay', () => {
  it('replay({from}) yields records with LSN ≥ from, in LSN order, across segments', async () => {
    const dir = tempDir();
    await buildLog(dir, 50);
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 50));
    expect(await collect(wal.replay({ from: 23 }))).toEqual(expected(23, 50));
    expect(await collect(wal.replay({ from: 24 }))).toEqual(expected(24, 50));
    expect(await collect(wal.replay({ from: 50 }))).toEqual(expected(50, 50));
    expect(await collect(wal.replay({ from: 51 }))).toEqual([]);
    expect(await collect(wal.replay({ from: 1000 }))).toEqual([]);
  });

  it('replay is deterministic: twice the same records', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    for (let lsn = 1; lsn <= 40; lsn++) await wal.append(p(lsn), { type: lsn % 5 });
    const first = await collect(wal.replay({ from: 3 }));
    const second = await collect(wal.replay({ from: 3 }));
    expect(first).toHaveLength(38);
    expect(second).toEqual(first);
  });

  it('replay without from starts after the checkpoint', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 10; lsn++) await wal.append(p(lsn));
    expect(await collect(wal.replay())).toEqual(expected(1, 10));
    await wal.checkpoint(6);
    expect(await collect(wal.replay())).toEqual(expected(7, 10));
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 10));
  });

  it('replay stops at what was acknowledged when it was called', async () => {
    const wal = await open(tempDir());
    await wal.append(p(1));
    const iterator = wal.replay({ from: 1 });
    const pending = wal.append(p(2)); // not durable when replay was called
    await pending;
    expect(await collect(iterator)).toEqual(expected(1, 1));
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 2));
  });

  it('with sync none replay includes records written but not yet synced', async () => {
    const wal = await open(tempDir(), { sync: 'none' });
    await wal.append(p(1));
    await wal.append(p(2));
    expect(wal.durableLsn).toBe(0);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 2));
  });

  it('replay rejects a from that is not a positive integer with FACT_INVALID_ARGUMENT', async () => {
    const wal = await open(tempDir());
    for (const from of [0, -1, 1.5, Number.NaN]) {
      await expectCode(() => wal.replay({ from }), 'FACT_INVALID_ARGUMENT');
    }
  });

  it('replay of a deleted range throws FACT_OUT_OF_RANGE', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 0 });
    for (let lsn = 1; lsn <= 60; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(60);
    expect(segmentNames(dir)).toEqual([segmentFileName(47)]);
    const error = await expectCode(() => wal.replay({ from: 1 }), 'FACT_OUT_OF_RANGE');
    expect(error.details).toMatchObject({ from: 1, oldest: 47 });
    await expectCode(() => wal.replay({ from: 46 }), 'FACT_OUT_OF_RANGE');
    expect(await collect(wal.replay({ from: 47 }))).toEqual(expected(47, 60));
  });
});

describe('Wal API: checkpoint', () => {
  async function walWithSegments(dir: string, retainSegments: number | 'all'): Promise<Wal> {
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments });
    for (let lsn = 1; lsn <= 100; lsn++) await wal.append(p(lsn));
    expect(segmentNames(dir)).toEqual([1, 24, 47, 70, 93].map(segmentFileName));
    return wal;
  }

  it('checkpoint writes the CHECKPOINT file and reopen reports it', async () => {
    const dir = tempDir();
    let wal = await open(dir);
    for (let lsn = 1; lsn <= 5; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(3);
    expect(wal.checkpointLsn).toBe(3);
    expect(decodeCheckpoint(nodeFs.readFileSync(path.join(dir, CHECKPOINT_FILE)))).toEqual({ lsn: 3 });
    expect(nodeFs.existsSync(path.join(dir, CHECKPOINT_FILE + '.tmp'))).toBe(false);
    await wal.close();
    wal = await open(dir);
    expect(wal.checkpointLsn).toBe(3);
    expect(wal.recovery).toMatchObject({ checkpointLsn: 3, lastLsn: 5, firstLsn: 1, segments: 1 });
  });

  it('checkpoint deletes covered segments beyond retainSegments, oldest first', async () => {
    const dir = tempDir();
    const wal = await walWithSegments(dir, 2);
    await wal.checkpoint(100);
    expect(segmentNames(dir)).toEqual([47, 70, 93].map(segmentFileName));
    expect(await collect(wal.replay({ from: 47 }))).toEqual(expected(47, 100));
  });

  it("retainSegments 'all' keeps every segment", async () => {
    const dir = tempDir();
    const wal = await walWithSegments(dir, 'all');
    await wal.checkpoint(100);
    expect(segmentNames(dir)).toEqual([1, 24, 47, 70, 93].map(segmentFileName));
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 100));
  });

  it('retainSegments 0 keeps none but the active segment', async () => {
    const dir = tempDir();
    const wal = await walWithSegments(dir, 0);
    await wal.checkpoint(100);
    expect(segmentNames(dir)).toEqual([segmentFileName(93)]);
    await wal.close();
    const reopened = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 0 });
    expect(reopened.recovery).toMatchObject({ segments: 1, firstLsn: 93, lastLsn: 100, checkpointLsn: 100 });
    expect(await reopened.append(p(101))).toBe(101);
  });

  it('the default retainSegments is 4', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    for (let lsn = 1; lsn <= 120; lsn++) await wal.append(p(lsn));
    expect(segmentNames(dir)).toHaveLength(6);
    await wal.checkpoint(120);
    expect(segmentNames(dir)).toEqual([24, 47, 70, 93, 116].map(segmentFileName));
  });

  it('a segment that holds any LSN above the checkpoint is never deleted', async () => {
    const dir = tempDir();
    const wal = await walWithSegments(dir, 0);
    await wal.checkpoint(50); // segment 47 holds 47..69: not covered
    expect(segmentNames(dir)).toEqual([47, 70, 93].map(segmentFileName));
    await wal.checkpoint(69);
    expect(segmentNames(dir)).toEqual([70, 93].map(segmentFileName));
  });

  it('deletes segments one durable unlink at a time: each is fsynced before the next, all before checkpoint resolves', async () => {
    const sim = new SimFileSystem({ seed: 1 });
    const unlinked: string[] = [];
    /** At each unlink: whether the previous unlinked segment still had a durable directory entry. */
    const previousStillDurable: boolean[] = [];
    const fs = new (class extends CountingFileSystem {
      override unlink(file: string): Promise<void> {
        const previous = unlinked.at(-1);
        if (previous !== undefined) previousStillDurable.push(sim.durableContent(previous) !== null);
        unlinked.push(file);
        return super.unlink(file);
      }
    })(sim);
    const wal = await Wal.open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 0 });
    for (let lsn = 1; lsn <= 100; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(100);
    expect(unlinked).toEqual([1, 24, 47, 70].map(simSegment));
    expect(previousStillDurable).toEqual([false, false, false]);
    for (const file of unlinked) expect(sim.durableContent(file), `${file} durably gone`).toBeNull();
    await wal.close();
    sim.crash();
    const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 0 });
    expect(reopened.recovery).toMatchObject({ segments: 1, firstLsn: 93, lastLsn: 100, checkpointLsn: 100 });
    await reopened.close();
  });

  it('checkpoint rejects an LSN above the last LSN, negative or fractional, with FACT_INVALID_ARGUMENT', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    await wal.append(p(1));
    for (const lsn of [2, -1, 0.5, Number.NaN]) await expectCode(wal.checkpoint(lsn), 'FACT_INVALID_ARGUMENT');
    expect(nodeFs.existsSync(path.join(dir, CHECKPOINT_FILE))).toBe(false);
    expect(wal.checkpointLsn).toBe(0);
  });

  it('checkpoint never moves backwards', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 10; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(8);
    await wal.checkpoint(5);
    expect(wal.checkpointLsn).toBe(8);
    expect(decodeCheckpoint(nodeFs.readFileSync(path.join(dir, CHECKPOINT_FILE)))).toEqual({ lsn: 8 });
  });

  it('checkpoint first makes the log durable up to its LSN (sync none)', async () => {
    const sim = new SimFileSystem({ seed: 1 });
    const wal = await open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'none' });
    await wal.append(p(1));
    await wal.append(p(2));
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 2)).toBe(false);
    await wal.checkpoint(2);
    expect(wal.durableLsn).toBe(2);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 2)).toBe(true);
    expect(decodeCheckpoint(sim.durableContent(`${SIM_DIR}/${CHECKPOINT_FILE}`)!)).toEqual({ lsn: 2 });
  });
});

describe('Wal API: options', () => {
  const bad: [string, WalOptions][] = [
    ['segmentSizeBytes below 1024', { segmentSizeBytes: 1023 }],
    ['segmentSizeBytes fractional', { segmentSizeBytes: 2048.5 }],
    ['segmentSizeBytes NaN', { segmentSizeBytes: Number.NaN }],
    ['segmentSizeBytes a string', { segmentSizeBytes: '4096' as unknown as number }],
    ['sync unknown', { sync: 'sometimes' as SyncMode }],
    ['syncIntervalMs negative', { syncIntervalMs: -1 }],
    ['syncIntervalMs NaN', { syncIntervalMs: Number.NaN }],
    ['syncIntervalMs infinite', { syncIntervalMs: Number.POSITIVE_INFINITY }],
    ['syncIntervalMs a string', { syncIntervalMs: '50' as unknown as number }],
    ['retainSegments negative', { retainSegments: -1 }],
    ['retainSegments fractional', { retainSegments: 1.5 }],
    ['retainSegments an unknown word', { retainSegments: 'some' as unknown as number }],
    ['maxRecordSizeBytes negative', { maxRecordSizeBytes: -1 }],
    ['maxRecordSizeBytes above 1 GiB', { maxRecordSizeBytes: 1024 ** 3 + 1 }],
    ['maxRecordSizeBytes fractional', { maxRecordSizeBytes: 10.5 }],
    ['segmentFillStepBytes below 64', { segmentFillStepBytes: 63 }],
    ['segmentFillStepBytes fractional', { segmentFillStepBytes: 1000.5 }],
  ];
  for (const [name, options] of bad) {
    it(`rejects ${name} with FACT_INVALID_ARGUMENT before touching the disk`, async () => {
      const dir = path.join(tempDir(), 'wal');
      await expectCode(Wal.open(dir, options), 'FACT_INVALID_ARGUMENT');
      expect(nodeFs.existsSync(dir)).toBe(false);
    });
  }

  it('rejects an empty or non-string dir with FACT_INVALID_ARGUMENT', async () => {
    await expectCode(Wal.open(''), 'FACT_INVALID_ARGUMENT');
    await expectCode(Wal.open(undefined as unknown as string), 'FACT_INVALID_ARGUMENT');
  });

  it('accepts the boundary values of every option', async () => {
    const wal = await open(tempDir(), {
      segmentSizeBytes: 1024,
      segmentFillStepBytes: 64,
      sync: 'interval',
      syncIntervalMs: 0,
      retainSegments: 0,
      maxRecordSizeBytes: 1024 ** 3,
      repair: true,
    });
    expect(wal.syncMode).toBe('interval');
    const defaults = await open(tempDir());
    expect(defaults.syncMode).toBe('always');
  });

  it('creates the directory and its missing parents', async () => {
    const dir = path.join(tempDir(), 'a', 'b', 'wal');
    const wal = await open(dir);
    expect(segmentNames(dir)).toEqual([segmentFileName(1)]);
    expect(await wal.append(p(1))).toBe(1);
  });
});

describe('Wal API: sync modes', () => {
  it("sync 'always' resolves an append only after the fdatasync that covers it", async () => {
    const sim = new SimFileSystem({ seed: 2 });
    const fs = new CountingFileSystem(sim);
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    const before = fs.datasyncs;
    expect(await wal.append(p(1))).toBe(1);
    expect(fs.datasyncs).toBe(before + 1);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 1)).toBe(true);
    expect(wal.durableLsn).toBe(1);
  });

  it("sync 'none' resolves after the write, before any fdatasync; sync() then makes it durable", async () => {
    const sim = new SimFileSystem({ seed: 3 });
    const fs = new CountingFileSystem(sim);
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'none' });
    const before = fs.datasyncs;
    expect(await wal.append(p(1))).toBe(1);
    expect(await wal.appendBatch([p(2), p(3)])).toEqual([2, 3]);
    expect(fs.datasyncs).toBe(before);
    expect(holdsRecord(await sim.readFile(simSegment(1)), 1, 3)).toBe(true);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 1)).toBe(false);
    expect(wal.durableLsn).toBe(0);
    await wal.sync();
    expect(fs.datasyncs).toBe(before + 1);
    expect(wal.durableLsn).toBe(3);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 3)).toBe(true);
  });

  it('sync() waits for appends made while a write was in progress', async () => {
    const sim = new SimFileSystem({ seed: 15 });
    const fs = new CountingFileSystem(sim);
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'none' });
    let release = () => {};
    fs.gate = new Promise<void>((resolve) => (release = resolve));
    const first = wal.append(p(1));
    await settleIo(); // the loop cut the group [1] and waits in its write
    const second = wal.append(p(2));
    const synced = wal.sync();
    fs.gate = null;
    release();
    await Promise.all([first, second, synced]);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 2)).toBe(true);
    expect(wal.durableLsn).toBe(2);
  });

  it('sync() with nothing new to sync resolves without an fdatasync', async () => {
    const fs = new CountingFileSystem(new SimFileSystem({ seed: 4 }));
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    await wal.append(p(1));
    const before = fs.datasyncs;
    await wal.sync();
    await wal.sync();
    expect(fs.datasyncs).toBe(before);
  });

  it("sync 'interval' resolves an append after the timed fdatasync (default 200 ms), not before", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const sim = new SimFileSystem({ seed: 5 });
    const fs = new CountingFileSystem(sim);
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'interval' });
    const before = fs.datasyncs;
    let resolved = false;
    const appended = wal.append(p(1)).then((lsn) => {
      resolved = true;
      return lsn;
    });
    await until(() => vi.getTimerCount() === 1); // written, sync timer armed
    expect(holdsRecord(await sim.readFile(simSegment(1)), 1, 1)).toBe(true);
    vi.advanceTimersByTime(199);
    await settleIo();
    expect(resolved).toBe(false);
    expect(fs.datasyncs).toBe(before);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 1)).toBe(false);
    vi.advanceTimersByTime(1);
    expect(await appended).toBe(1);
    expect(fs.datasyncs).toBe(before + 1);
    expect(holdsRecord(sim.durableContent(simSegment(1)), 1, 1)).toBe(true);
  });

  it("sync 'interval': one timed fdatasync covers every append made during the interval", async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const fs = new CountingFileSystem(new SimFileSystem({ seed: 6 }));
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'interval', syncIntervalMs: 50 });
    const before = fs.datasyncs;
    const first = wal.append(p(1));
    await until(() => vi.getTimerCount() === 1);
    const second = wal.append(p(2));
    await settleIo();
    vi.advanceTimersByTime(50);
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(fs.datasyncs).toBe(before + 1);
  });

  it('syncIntervalMs below 10 is clamped to 10', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const fs = new CountingFileSystem(new SimFileSystem({ seed: 7 }));
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'interval', syncIntervalMs: 1 });
    const before = fs.datasyncs;
    let resolved = false;
    const appended = wal.append(p(1)).then(() => (resolved = true));
    await until(() => vi.getTimerCount() === 1);
    vi.advanceTimersByTime(9);
    await settleIo();
    expect(resolved).toBe(false);
    expect(fs.datasyncs).toBe(before);
    vi.advanceTimersByTime(1);
    await appended;
    expect(fs.datasyncs).toBe(before + 1);
  });

  it('a full segment is fdatasynced before the next one starts, whatever the sync mode', async () => {
    const sim = new SimFileSystem({ seed: 8 });
    const wal = await open(SIM_DIR, { fs: sim, sync: 'none', segmentSizeBytes: SMALL_SEGMENT_BYTES });
    for (let lsn = 1; lsn <= 30; lsn++) await wal.append(p(lsn));
    expect(await sim.readdir(SIM_DIR)).toContain(segmentFileName(24));
    const sealed = sim.durableContent(simSegment(1));
    for (let lsn = 1; lsn <= 23; lsn++) expect(holdsRecord(sealed, 1, lsn)).toBe(true);
    expect(holdsRecord(sim.durableContent(simSegment(24)), 24, 25)).toBe(false);
  });
});

describe('Wal API: group commit', () => {
  it('64 concurrent appends share far fewer fdatasyncs than appends', async () => {
    const fs = new CountingFileSystem(new NodeFileSystem());
    const wal = await open(tempDir(), { fs });
    const before = fs.datasyncs;
    const lsns = await Promise.all(range(1, 64).map((lsn) => wal.append(p(lsn))));
    expect(lsns).toEqual(range(1, 64));
    const syncs = fs.datasyncs - before;
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThan(64 / 4);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 64));
  });

  it('callers woken by a flush join the next group: 8 writers × 8 sequential appends', async () => {
    const fs = new CountingFileSystem(new SimFileSystem({ seed: 9 }));
    const wal = await open(SIM_DIR, { fs, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    const before = fs.datasyncs;
    const acked: number[] = [];
    await Promise.all(
      range(1, 8).map(async () => {
        for (let i = 0; i < 8; i++) acked.push(await wal.append(p(wal.lastLsn + 1)));
      }),
    );
    expect([...acked].sort((a, b) => a - b)).toEqual(range(1, 64));
    expect(fs.datasyncs - before).toBeLessThan(64 / 4);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 64));
  });
});

describe('Wal API: close and lock', () => {
  it('close is idempotent, and every call after close rejects with FACT_CLOSED', async () => {
    const wal = await open(tempDir());
    await wal.append(p(1));
    await wal.close();
    await wal.close();
    await Promise.all([wal.close(), wal.close()]);
    await expectCode(wal.append(p(2)), 'FACT_CLOSED');
    await expectCode(wal.appendBatch([p(2)]), 'FACT_CLOSED');
    await expectCode(wal.sync(), 'FACT_CLOSED');
    await expectCode(wal.checkpoint(1), 'FACT_CLOSED');
    await expectCode(() => wal.replay({ from: 1 }), 'FACT_CLOSED');
  });

  it('close flushes appends still pending, and appends after close() was called reject with FACT_CLOSED', async () => {
    const dir = tempDir();
    let wal = await open(dir, { sync: 'interval', syncIntervalMs: 60_000 });
    const pending = wal.append(p(1));
    const closing = wal.close();
    await expectCode(wal.append(p(2)), 'FACT_CLOSED');
    await expectCode(wal.checkpoint(0), 'FACT_CLOSED');
    await closing;
    expect(await pending).toBe(1);
    wal = await open(dir);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 1));
  });

  it('await using closes the WAL at the end of the block', async () => {
    const dir = tempDir();
    let outer: Wal | undefined;
    {
      await using wal = await Wal.open(dir);
      outer = wal;
      await wal.append(p(1));
    }
    await expectCode(outer.append(p(2)), 'FACT_CLOSED');
    expect(nodeFs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const again = await open(dir);
    expect(again.lastLsn).toBe(1);
  });

  it('a second open in the same process rejects with FACT_LOCKED naming the pid', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    const error = await expectCode(Wal.open(dir), 'FACT_LOCKED');
    expect(error.details.pid).toBe(process.pid);
    expect(error.message).toContain(String(process.pid));
    expect(nodeFs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    await wal.close();
    expect(nodeFs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    await open(dir);
  });

  it('a LOCK held by another live process rejects with FACT_LOCKED naming that pid', async () => {
    const dir = tempDir();
    await buildLog(dir, 1);
    nodeFs.writeFileSync(path.join(dir, LOCK_FILE), `${process.ppid}\n`);
    const error = await expectCode(Wal.open(dir), 'FACT_LOCKED');
    expect(error.details.pid).toBe(process.ppid);
    expect(error.message).toContain(String(process.ppid));
  });

  it('a stale LOCK file left by a dead process does not block', async () => {
    const dir = tempDir();
    await buildLog(dir, 2);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    expect(dead).toBeGreaterThan(0);
    nodeFs.writeFileSync(path.join(dir, LOCK_FILE), `${dead}\n`);
    const wal = await open(dir);
    expect(wal.lastLsn).toBe(2);
    expect(nodeFs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
  });

  it('a failed open releases the lock', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    const file = segmentPath(dir, 1);
    flipByte(file, 0);
    await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(nodeFs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    flipByte(file, 0);
    expect((await open(dir)).lastLsn).toBe(3);
  });
});

// ------------------------------------------------------------------------------ recovery table

describe('recovery decision table (docs/wal-format.md)', () => {
  it('row 1: temp files are deleted and reported', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    const tempSegment = segmentFileName(4) + '.tmp';
    nodeFs.writeFileSync(path.join(dir, tempSegment), encodeSegmentHeader(4));
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE + '.tmp'), encodeCheckpoint(3));
    const wal = await open(dir);
    expect([...wal.recovery.removedTempFiles].sort()).toEqual([CHECKPOINT_FILE + '.tmp', tempSegment].sort());
    expect(nodeFs.readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(wal.recovery).toMatchObject({ lastLsn: 3, checkpointLsn: 0, tornTail: null, repair: null });
  });

  it('row 1: a temp checkpoint is never taken for the checkpoint', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE + '.tmp'), encodeCheckpoint(99));
    const wal = await open(dir);
    expect(wal.checkpointLsn).toBe(0);
  });

  it('row 2: no segment and no checkpoint is a new WAL with segment 1', async () => {
    const dir = tempDir();
    const wal = await open(dir, { segmentSizeBytes: 2048 });
    expect(segmentNames(dir)).toEqual([segmentFileName(1)]);
    expect(wal.recovery).toEqual({
      segments: 1,
      firstLsn: 1,
      lastLsn: 0,
      checkpointLsn: 0,
      truncatedBytes: 0,
      tornTail: null,
      removedTempFiles: [],
      repair: null,
    });
    expect(readSegment(dir, 1)).toHaveLength(2048);
  });

  it('row 2: a checkpoint of 0 and no segment is also a new WAL', async () => {
    const dir = tempDir();
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(0));
    const wal = await open(dir);
    expect(wal.recovery).toMatchObject({ segments: 1, lastLsn: 0, checkpointLsn: 0 });
  });

  it('row 3: no segment but a checkpoint above 0 refuses to open with FACT_WAL_CORRUPTION (segments missing)', async () => {
    const dir = tempDir();
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(5));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ checkpointLsn: 5 });
    expect(segmentNames(dir)).toEqual([]); // no segment 1 was created
  });

  it('row 3: oldest needed segment starting after checkpoint + 1 refuses to open (segments missing)', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(10));
    nodeFs.unlinkSync(segmentPath(dir, 1));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ checkpointLsn: 10, segment: segmentFileName(24) });
    expect(error.message).toContain(segmentFileName(24));
  });

  it('row 3: a first segment missing with no checkpoint refuses to open', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    nodeFs.unlinkSync(segmentPath(dir, 1));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ checkpointLsn: 0, segment: segmentFileName(24) });
  });

  it('row 3: missing segment below the needed range opens; replay of the gap reports FACT_WAL_CORRUPTION', async () => {
    const dir = tempDir();
    await buildLog(dir, 80);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(69)); // 1, 24, 47 retained
    nodeFs.unlinkSync(segmentPath(dir, 24));
    const wal = await open(dir, { segmentSizeBytes: SMALL_SEGMENT_BYTES });
    expect(wal.recovery).toMatchObject({ firstLsn: 1, lastLsn: 80, checkpointLsn: 69, segments: 3 });
    expect(await collect(wal.replay())).toEqual(expected(70, 80));
    expect(await collect(wal.replay({ from: 47 }))).toEqual(expected(47, 80));
    const error = await expectCode(() => collect(wal.replay({ from: 1 })), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1) });
  });

  it('row 3/5: missing segment inside the needed range refuses to open naming where the log breaks', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    nodeFs.unlinkSync(segmentPath(dir, 24));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 24), lsn: 24 });
  });

  it('row 4: invalid segment header refuses to open with FACT_WAL_CORRUPTION naming the file', async () => {
    const damages: [string, (file: string) => void][] = [
      ['bad magic', (file) => flipByte(file, 2)],
      ['bad header CRC', (file) => flipByte(file, 29)],
      ['bad version', (file) => flipByte(file, 8, 0x02)],
      ['first LSN differs from the name', (file) => patchFile(file, 0, encodeSegmentHeader(2))],
      ['file shorter than the header', (file) => nodeFs.truncateSync(file, 20)],
    ];
    for (const [name, damage] of damages) {
      const dir = tempDir();
      await buildLog(dir, 3);
      damage(segmentPath(dir, 1));
      const before = nodeFs.readFileSync(segmentPath(dir, 1));
      const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
      expect(error.details, name).toMatchObject({ segment: segmentFileName(1), offsetBytes: 0 });
      expect(error.message, name).toContain(segmentFileName(1));
      expect(digest(nodeFs.readFileSync(segmentPath(dir, 1))), name).toBe(digest(before));
    }
  });

  it('row 4: invalid header of a sealed segment refuses to open', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    flipByte(segmentPath(dir, 24), 20);
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(24), offsetBytes: 0 });
  });

  it('row 4: invalid header of a retained segment below the checkpoint refuses to open', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(50));
    flipByte(segmentPath(dir, 1), 17);
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: 0 });
  });

  it('row 4: invalid checkpoint file refuses to open with FACT_WAL_CORRUPTION naming CHECKPOINT', async () => {
    const damages: [string, Uint8Array][] = [
      ['garbage', Buffer.from('not a checkpoint at all!')],
      ['empty', new Uint8Array(0)],
      ['truncated', encodeCheckpoint(2).subarray(0, 20)],
      [
        'bad CRC',
        (() => {
          const bytes = encodeCheckpoint(2);
          bytes[13]! ^= 1;
          return bytes;
        })(),
      ],
    ];
    for (const [name, bytes] of damages) {
      const dir = tempDir();
      await buildLog(dir, 3);
      nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), bytes);
      const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
      expect(error.details, name).toMatchObject({ file: CHECKPOINT_FILE });
      expect(error.message, name).toContain(CHECKPOINT_FILE);
    }
  });

  it('row 4: repair: true does not repair an invalid header or checkpoint', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    flipByte(segmentPath(dir, 1), 3);
    await expectCode(Wal.open(dir, { repair: true }), 'FACT_WAL_CORRUPTION');
    flipByte(segmentPath(dir, 1), 3);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), Buffer.from('junk'));
    await expectCode(Wal.open(dir, { repair: true }), 'FACT_WAL_CORRUPTION');
  });

  it('row 5: damaged record in a sealed segment refuses to open with FACT_WAL_CORRUPTION naming segment and offset', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    const offset = recordOffset(1, 5);
    flipByte(segmentPath(dir, 1), offset + 35); // a payload byte of LSN 5
    const before = segmentNames(dir).map((name) => digest(nodeFs.readFileSync(path.join(dir, name))));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: offset, lsn: 5 });
    expect(error.message).toContain(segmentFileName(1));
    expect(error.message).toContain(String(offset));
    // Nothing was changed on disk.
    expect(segmentNames(dir).map((name) => digest(nodeFs.readFileSync(path.join(dir, name))))).toEqual(before);
  });

  it('row 5: damage in the last record of a sealed segment is corruption too (the next segment proves it was durable)', async () => {
    const dir = tempDir();
    await buildLog(dir, 30);
    flipByte(segmentPath(dir, 1), recordOffset(1, 23) + 12); // LSN field of LSN 23
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 23), lsn: 23 });
  });

  it('row 5: a sealed segment holding more LSNs than up to the next segment start refuses to open', async () => {
    const dir = tempDir();
    await buildLog(dir, 30);
    // Rename segment 24 to 20: segment 1 (1..23) now overlaps it.
    const bytes = readSegment(dir, 24);
    bytes.set(encodeSegmentHeader(20), 0);
    nodeFs.writeFileSync(segmentPath(dir, 20), bytes);
    nodeFs.unlinkSync(segmentPath(dir, 24));
    await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    await expectCode(Wal.open(dir, { repair: true }), 'FACT_WAL_CORRUPTION');
  });

  it('row 6: a clean end opens without changes or reports', async () => {
    const dir = tempDir();
    await buildLog(dir, 30);
    const before = segmentNames(dir).map((name) => digest(nodeFs.readFileSync(path.join(dir, name))));
    const wal = await open(dir);
    expect(wal.recovery).toEqual({
      segments: 2,
      firstLsn: 1,
      lastLsn: 30,
      checkpointLsn: 0,
      truncatedBytes: 0,
      tornTail: null,
      removedTempFiles: [],
      repair: null,
    });
    expect(segmentNames(dir).map((name) => digest(nodeFs.readFileSync(path.join(dir, name))))).toEqual(before);
  });

  it('row 6: an empty newest segment after a sealed one is a clean end', async () => {
    const dir = tempDir();
    await buildLog(dir, 23);
    nodeFs.writeFileSync(segmentPath(dir, 24), Buffer.concat([encodeSegmentHeader(24), Buffer.alloc(SMALL_SEGMENT_BYTES - 32)]));
    const wal = await open(dir);
    expect(wal.recovery).toMatchObject({ segments: 2, lastLsn: 23, tornTail: null });
    expect(await wal.append(p(24))).toBe(24);
  });

  it('row 7: torn tail in the newest segment is zeroed and reported', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    const end = recordOffset(1, 4);
    patchFile(segmentPath(dir, 1), end, Buffer.alloc(50, 0xab));
    const wal = await open(dir);
    expect(wal.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: end, bytes: 50 });
    expect(wal.recovery.truncatedBytes).toBe(50);
    expect(wal.recovery.lastLsn).toBe(3);
    expect(endOfNonZero(readSegment(dir, 1), end)).toBe(end);
    expect(await wal.append(p(4))).toBe(4);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 4));
  });

  it('row 7: a torn batch is dropped whole on recovery and its LSNs are handed out again', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 5; lsn++) await wal.append(p(lsn));
    await wal.appendBatch([p(6), p(7), p(8)]);
    await wal.close();
    const file = segmentPath(dir, 1);
    patchFile(file, recordOffset(1, 8) + 32, Buffer.alloc(10)); // LSN 8's payload lost
    const bytes = nodeFs.readFileSync(file);
    const tailEnd = endOfNonZero(bytes, recordOffset(1, 6));
    const reopened = await open(dir);
    expect(reopened.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 6), bytes: tailEnd - recordOffset(1, 6) });
    expect(reopened.lastLsn).toBe(5);
    expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, 5));
    expect(await reopened.append(p(6))).toBe(6);
  });

  it('row 7: later records that do not attest durability leave tail damage a torn tail', async () => {
    const dir = tempDir();
    await buildLog(dir, 10, { sync: 'none' }); // every record has durable LSN 0
    flipByte(segmentPath(dir, 1), recordOffset(1, 5) + 35);
    const wal = await open(dir);
    expect(wal.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 5), bytes: 6 * RECORD_BYTES });
    expect(wal.lastLsn).toBe(4);
  });

  it('row 7 (known residual): damage to the last record, which nothing later attests, is a torn tail', async () => {
    const dir = tempDir();
    await buildLog(dir, 10);
    flipByte(segmentPath(dir, 1), recordOffset(1, 10) + 35);
    const wal = await open(dir);
    expect(wal.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 10), bytes: RECORD_BYTES });
    expect(wal.lastLsn).toBe(9);
  });

  it('row 8: later record attesting durability turns tail damage into corruption', async () => {
    const dir = tempDir();
    await buildLog(dir, 10);
    const offset = recordOffset(1, 5);
    flipByte(segmentPath(dir, 1), offset + 35);
    const before = readSegment(dir, 1);
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: offset, lsn: 5 });
    expect(error.message).toContain(segmentFileName(1));
    expect(error.message).toContain(String(offset));
    expect(digest(readSegment(dir, 1))).toBe(digest(before));
  });

  it('row 8: the last record attests even when it ends in zero bytes (empty payload, type 0)', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 9; lsn++) await wal.append(p(lsn));
    expect(await wal.append(new Uint8Array(0))).toBe(10); // durable LSN 9, then only zeros after byte 16
    await wal.close();
    flipByte(segmentPath(dir, 1), recordOffset(1, 9) + 35);
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 9), lsn: 9 });
  });

  it('row 8: a zeroed acknowledged record followed by an attesting one is corruption', async () => {
    const dir = tempDir();
    await buildLog(dir, 10);
    patchFile(segmentPath(dir, 1), recordOffset(1, 4), Buffer.alloc(RECORD_BYTES));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ offsetBytes: recordOffset(1, 4), lsn: 4 });
  });

  it('row 9: log ending below the checkpoint refuses to open with FACT_WAL_CORRUPTION', async () => {
    const dir = tempDir();
    await buildLog(dir, 5);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(8));
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ lastLsn: 5, checkpointLsn: 8 });
  });

  it('row 9: a lost checkpointed record at the end of the newest segment is corruption, and the segment is left untouched', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 10; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(10);
    await wal.close();
    flipByte(segmentPath(dir, 1), recordOffset(1, 10) + 35);
    const before = readSegment(dir, 1);
    const error = await expectCode(Wal.open(dir), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ lastLsn: 9, checkpointLsn: 10 });
    expect(digest(readSegment(dir, 1))).toBe(digest(before));
  });

  it('row 10: repair: true drops from the damaged unit in a sealed segment and reports exactly what', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    const offset = recordOffset(1, 5);
    flipByte(segmentPath(dir, 1), offset + 35);
    const dropped =
      endOfNonZero(readSegment(dir, 1), offset) - offset + [24, 47].reduce((sum, first) => sum + endOfNonZero(readSegment(dir, first), 32) - 32, 0);
    expect(dropped).toBe(56 * RECORD_BYTES);
    const wal = await open(dir, { repair: true, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    const repair = wal.recovery.repair;
    expect(repair).not.toBeNull();
    expect({ ...repair!, reason: undefined, deletedSegments: [...repair!.deletedSegments].sort() }).toEqual({
      segment: segmentFileName(1),
      offsetBytes: offset,
      reason: undefined,
      droppedFromLsn: 5,
      droppedBytes: dropped,
      deletedSegments: [segmentFileName(24), segmentFileName(47)],
      checkpointLoweredFrom: null,
    });
    expect(repair!.reason).toContain(segmentFileName(1));
    expect(wal.recovery).toMatchObject({ segments: 1, lastLsn: 4, tornTail: null });
    expect(segmentNames(dir)).toEqual([segmentFileName(1)]);
    expect(endOfNonZero(readSegment(dir, 1), offset)).toBe(offset);
    // LSNs from the first dropped one are handed out again.
    expect(await wal.append(p(5))).toBe(5);
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 5));
    await wal.close();
    const reopened = await open(dir);
    expect(reopened.recovery).toMatchObject({ lastLsn: 5, repair: null, tornTail: null });
  });

  it('row 10: repair: true drops from the damaged unit in the newest segment (row 8) and reports exactly what', async () => {
    const dir = tempDir();
    await buildLog(dir, 10);
    const offset = recordOffset(1, 5);
    flipByte(segmentPath(dir, 1), offset + 35);
    const wal = await open(dir, { repair: true });
    expect(wal.recovery.repair).toMatchObject({
      segment: segmentFileName(1),
      offsetBytes: offset,
      droppedFromLsn: 5,
      droppedBytes: 6 * RECORD_BYTES,
      deletedSegments: [],
      checkpointLoweredFrom: null,
    });
    expect(wal.recovery).toMatchObject({ lastLsn: 4, tornTail: null, truncatedBytes: 0 });
    expect(endOfNonZero(readSegment(dir, 1), offset)).toBe(offset);
    expect(await wal.append(p(5))).toBe(5);
  });

  it('row 10: repair: true lowers a checkpoint above the end of the log (row 9)', async () => {
    const dir = tempDir();
    await buildLog(dir, 5);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(8));
    const wal = await open(dir, { repair: true });
    expect(wal.recovery.repair).toMatchObject({ droppedFromLsn: 6, droppedBytes: 0, deletedSegments: [], checkpointLoweredFrom: 8 });
    expect(wal.checkpointLsn).toBe(5);
    expect(wal.recovery.checkpointLsn).toBe(5);
    expect(decodeCheckpoint(nodeFs.readFileSync(path.join(dir, CHECKPOINT_FILE)))).toEqual({ lsn: 5 });
    expect(await collect(wal.replay({ from: 1 }))).toEqual(expected(1, 5));
  });

  it('row 10: repair: true drops a damaged checkpointed record and lowers the checkpoint below it', async () => {
    const dir = tempDir();
    const wal = await open(dir);
    for (let lsn = 1; lsn <= 10; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(10);
    await wal.close();
    flipByte(segmentPath(dir, 1), recordOffset(1, 10) + 35);
    const repaired = await open(dir, { repair: true });
    expect(repaired.recovery.repair).toMatchObject({
      segment: segmentFileName(1),
      offsetBytes: recordOffset(1, 10),
      droppedFromLsn: 10,
      droppedBytes: RECORD_BYTES,
      checkpointLoweredFrom: 10,
    });
    expect(repaired.recovery).toMatchObject({ lastLsn: 9, checkpointLsn: 9 });
    expect(endOfNonZero(readSegment(dir, 1), recordOffset(1, 10))).toBe(recordOffset(1, 10));
  });

  it('row 10: repair: true leaves a healthy log and a torn tail alone (repair stays null)', async () => {
    const dir = tempDir();
    await buildLog(dir, 3);
    patchFile(segmentPath(dir, 1), recordOffset(1, 4), Buffer.alloc(10, 0xcd));
    const wal = await open(dir, { repair: true });
    expect(wal.recovery.repair).toBeNull();
    expect(wal.recovery.tornTail).toEqual({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 4), bytes: 10 });
  });

  it('replay checks retained segments: a damaged record below the checkpoint surfaces as FACT_WAL_CORRUPTION', async () => {
    const dir = tempDir();
    await buildLog(dir, 60);
    nodeFs.writeFileSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(50));
    flipByte(segmentPath(dir, 1), recordOffset(1, 7) + 35);
    const wal = await open(dir); // segment 1 is retained, not needed: only its header is read
    expect(await collect(wal.replay())).toEqual(expected(51, 60));
    const error = await expectCode(() => collect(wal.replay({ from: 1 })), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(1), offsetBytes: recordOffset(1, 7), lsn: 7 });
  });
});

// ------------------------------------------------------------------------------ faults and crashes

describe('faults (SimFileSystem)', () => {
  it('EIO on fdatasync poisons the WAL: pending and later calls reject with FACT_WAL_POISONED; close works; reopen recovers what is durable', async () => {
    for (const seed of range(1, 20)) {
      const sim = new SimFileSystem({ seed });
      const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
      expect(await wal.append(p(1))).toBe(1);
      sim.injectFault({ op: 'datasync', error: 'EIO', path: 'wal-' });
      const pending = [wal.append(p(2)), wal.append(p(3)), wal.appendBatch([p(4), p(5)])];
      for (const call of pending) {
        const error = await expectCode(call, 'FACT_WAL_POISONED');
        expect((error.cause as { code?: string } | undefined)?.code).toBe('EIO');
      }
      await expectCode(wal.append(p(6)), 'FACT_WAL_POISONED');
      await expectCode(wal.appendBatch([p(6)]), 'FACT_WAL_POISONED');
      await expectCode(wal.sync(), 'FACT_WAL_POISONED');
      await expectCode(wal.checkpoint(1), 'FACT_WAL_POISONED');
      await wal.close();
      await expectCode(wal.append(p(6)), 'FACT_CLOSED');
      sim.crash();
      const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
      const records = await collect(reopened.replay({ from: 1 }));
      expect(records[0]).toEqual(expected(1, 1)[0]);
      expect(records).toEqual(expected(1, reopened.lastLsn));
      expect(reopened.lastLsn).toBeLessThanOrEqual(5);
      const next = reopened.lastLsn + 1;
      expect(await reopened.append(p(next))).toBe(next);
      await reopened.close();
    }
  });

  it('ENOSPC on write poisons the WAL the same way, and reopen recovers the acknowledged records', async () => {
    for (const seed of range(1, 20)) {
      const sim = new SimFileSystem({ seed });
      const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
      expect(await wal.append(p(1))).toBe(1);
      expect(await wal.append(p(2))).toBe(2);
      sim.injectFault({ op: 'write', error: 'ENOSPC', path: 'wal-' });
      const error = await expectCode(wal.append(p(3)), 'FACT_WAL_POISONED');
      expect((error.cause as { code?: string } | undefined)?.code).toBe('ENOSPC');
      await expectCode(wal.append(p(3)), 'FACT_WAL_POISONED');
      await wal.close();
      const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES }); // process restart, page cache intact
      expect(reopened.lastLsn).toBeGreaterThanOrEqual(2);
      expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, reopened.lastLsn));
      await reopened.close();
    }
  });

  it('sync() rejects with FACT_WAL_POISONED when its fdatasync fails, and poisons the WAL', async () => {
    const sim = new SimFileSystem({ seed: 13 });
    const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'none' });
    expect(await wal.append(p(1))).toBe(1);
    sim.injectFault({ op: 'datasync', error: 'EIO', path: 'wal-' });
    const error = await expectCode(wal.sync(), 'FACT_WAL_POISONED');
    expect((error.cause as { code?: string } | undefined)?.code).toBe('EIO');
    await expectCode(wal.append(p(2)), 'FACT_WAL_POISONED');
    await wal.close();
  });

  it('close resolves even when its final fdatasync fails', async () => {
    const sim = new SimFileSystem({ seed: 14 });
    const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES, sync: 'none' });
    expect(await wal.append(p(1))).toBe(1);
    sim.injectFault({ op: 'datasync', error: 'EIO', path: 'wal-' });
    await wal.close();
    await expectCode(wal.append(p(2)), 'FACT_CLOSED');
    const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES }); // the lock was released
    expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, reopened.lastLsn));
    await reopened.close();
  });

  it('a failed segment creation at rotation poisons the WAL; reopen recovers every acknowledged record', async () => {
    const sim = new SimFileSystem({ seed: 11 });
    const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    for (let lsn = 1; lsn <= 23; lsn++) await wal.append(p(lsn));
    sim.injectFault({ op: 'rename', error: 'EIO' });
    await expectCode(wal.append(p(24)), 'FACT_WAL_POISONED');
    await wal.close();
    sim.crash();
    const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, 23));
    expect(await reopened.append(p(24))).toBe(24);
    await reopened.close();
  });

  for (const fault of [
    { op: 'datasync', error: 'EIO' },
    { op: 'write', error: 'ENOSPC' },
  ] as const) {
    it(`${fault.error} on the ${fault.op} of a fill extension poisons the WAL; reopen recovers every acknowledged record`, async () => {
      const options: WalOptions = { segmentSizeBytes: 8192, segmentFillStepBytes: 256 };
      for (const seed of range(1, 5)) {
        const sim = new SimFileSystem({ seed });
        const wal = await Wal.open(SIM_DIR, { ...options, fs: sim });
        expect(await wal.append(p(1))).toBe(1);
        expect(await wal.append(p(2))).toBe(2);
        // LSN 3 crosses half of the 256-byte fill: its own write and fdatasync pass, the extension's fails.
        sim.injectFault({ ...fault, path: 'wal-', after: 1 });
        expect(await wal.append(p(3))).toBe(3);
        const error = await expectCode(wal.append(p(4)), 'FACT_WAL_POISONED');
        expect((error.cause as { code?: string } | undefined)?.code).toBe(fault.error);
        await wal.close();
        sim.crash();
        const reopened = await Wal.open(SIM_DIR, { ...options, fs: sim });
        expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, 3));
        expect(await reopened.append(p(4))).toBe(4);
        await reopened.close();
      }
    });
  }

  it('bit flip in a sealed segment refuses to open with FACT_WAL_CORRUPTION', async () => {
    const sim = new SimFileSystem({ seed: 12 });
    const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
    for (let lsn = 1; lsn <= 50; lsn++) await wal.append(p(lsn));
    await wal.close();
    sim.crash();
    sim.flipBit(simSegment(24), recordOffset(24, 30) + 33, 4);
    const error = await expectCode(Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES }), 'FACT_WAL_CORRUPTION');
    expect(error.details).toMatchObject({ segment: segmentFileName(24), offsetBytes: recordOffset(24, 30), lsn: 30 });
  });

  it('records recovered from the page cache are made durable at open, before new records attest them', async () => {
    for (const seed of range(1, 40)) {
      const sim = new SimFileSystem({ seed });
      const options = { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES };
      const wal = await Wal.open(SIM_DIR, { ...options, sync: 'none' });
      for (let lsn = 1; lsn <= 3; lsn++) await wal.append(p(lsn)); // written, never synced
      sim.crash({ mode: 'process' }); // kill -9: the page cache survives
      const reopened = await Wal.open(SIM_DIR, { ...options, sync: 'none' });
      expect(reopened.lastLsn).toBe(3);
      expect(await reopened.append(p(4))).toBe(4); // written with durable LSN 3, not synced
      await settleIo();
      sim.crash(); // power loss before any fdatasync of record 4
      const final = await Wal.open(SIM_DIR, options);
      expect(final.lastLsn, `seed ${seed}`).toBeGreaterThanOrEqual(3);
      expect(await collect(final.replay({ from: 1 })), `seed ${seed}`).toEqual(expected(1, final.lastLsn));
      await final.close();
    }
  });

  it('after a failed fdatasync, reopening without a reboot does not let new records attest never-durable ones', async () => {
    for (const seed of range(1, 40)) {
      const sim = new SimFileSystem({ seed });
      const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
      await wal.append(p(1));
      sim.injectFault({ op: 'datasync', error: 'EIO', path: 'wal-' });
      await expectCode(wal.append(p(2)), 'FACT_WAL_POISONED');
      await wal.close();
      const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES }); // reads record 2 from the page cache
      const next = reopened.lastLsn + 1;
      expect(await reopened.append(p(next))).toBe(next);
      await reopened.close();
      sim.crash();
      const final = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
      expect(await collect(final.replay({ from: 1 })), `seed ${seed}`).toEqual(expected(1, next));
      await final.close();
    }
  });
});

interface Tracker {
  /** LSNs whose append resolved. */
  acked: Set<number>;
  /** Highest checkpoint that resolved. */
  checkpointed: number;
  /** Highest checkpoint asked for. */
  checkpointAsked: number;
}

async function appendTracked(wal: Wal, tracker: Tracker, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const lsn = wal.lastLsn + 1;
    expect(await wal.append(p(lsn))).toBe(lsn);
    tracker.acked.add(lsn);
  }
}

async function groupTracked(wal: Wal, tracker: Tracker, count: number): Promise<void> {
  const base = wal.lastLsn;
  const lsns = await Promise.all(range(base + 1, base + count).map((lsn) => wal.append(p(lsn))));
  for (const lsn of lsns) tracker.acked.add(lsn);
}

async function batchTracked(wal: Wal, tracker: Tracker, count: number): Promise<void> {
  const base = wal.lastLsn;
  const lsns = await wal.appendBatch(range(base + 1, base + count).map(p));
  expect(lsns).toEqual(range(base + 1, base + count));
  for (const lsn of lsns) tracker.acked.add(lsn);
}

async function checkpointTracked(wal: Wal, tracker: Tracker, lsn: number): Promise<void> {
  tracker.checkpointAsked = Math.max(tracker.checkpointAsked, lsn);
  await wal.checkpoint(lsn);
  tracker.checkpointed = Math.max(tracker.checkpointed, lsn);
}

/** The invariants every recovery must meet, whatever crashed where. */
async function checkRecovered(wal: Wal, tracker: Tracker): Promise<void> {
  const { firstLsn, lastLsn, checkpointLsn } = wal.recovery;
  expect(checkpointLsn).toBeGreaterThanOrEqual(tracker.checkpointed);
  expect(checkpointLsn).toBeLessThanOrEqual(tracker.checkpointAsked);
  expect(checkpointLsn).toBeLessThanOrEqual(lastLsn);
  expect(firstLsn).toBeLessThanOrEqual(checkpointLsn + 1); // the log after the checkpoint is all there
  expect(await collect(wal.replay({ from: firstLsn }))).toEqual(expected(firstLsn, lastLsn));
  for (const lsn of tracker.acked) {
    if (lsn >= firstLsn) expect(lsn, `acknowledged LSN ${lsn}`).toBeLessThanOrEqual(lastLsn);
    else expect(lsn, `acknowledged LSN ${lsn} deleted`).toBeLessThanOrEqual(checkpointLsn);
  }
}

interface SweepCase {
  options: WalOptions;
  /** Acknowledged before the crash is armed. */
  setup: (wal: Wal, tracker: Tracker) => Promise<void>;
  /** Runs with the crash armed. */
  work: (wal: Wal, tracker: Tracker) => Promise<void>;
}

/**
 * For every n from 0 to the number of mutating operations of `work` (and a few beyond): crash
 * after n of them, then recover and check the invariants; then append, close, lose power,
 * recover and check again (so whatever recovery read from the page cache must be durable).
 */
async function crashSweep(sweep: SweepCase, seeds: number[], firstCrash: 'power-loss' | 'process'): Promise<number> {
  const dry = new SimFileSystem({ seed: 0 });
  const dryWal = await Wal.open(SIM_DIR, { ...sweep.options, fs: dry });
  const dryTracker: Tracker = { acked: new Set(), checkpointed: 0, checkpointAsked: 0 };
  await sweep.setup(dryWal, dryTracker);
  const start = dry.opCount;
  await sweep.work(dryWal, dryTracker);
  const workOps = dry.opCount - start;
  await dryWal.close();

  for (let n = 0; n <= workOps + 2; n++) {
    for (const seed of seeds) {
      const context = `crash after ${n} of ${workOps} ops, seed ${seed}, ${firstCrash}`;
      try {
        const sim = new SimFileSystem({ seed });
        const options = { ...sweep.options, fs: sim };
        const tracker: Tracker = { acked: new Set(), checkpointed: 0, checkpointAsked: 0 };
        const wal = await Wal.open(SIM_DIR, options);
        await sweep.setup(wal, tracker);
        sim.crashAfterOps(n);
        await sweep.work(wal, tracker).catch((error: unknown) => {
          if (!isFactError(error)) throw error;
        });
        await wal.close();
        sim.crash({ mode: firstCrash });

        const recovered = await Wal.open(SIM_DIR, options);
        await checkRecovered(recovered, tracker);
        await appendTracked(recovered, tracker, 1);
        await recovered.close();
        sim.crash();

        const again = await Wal.open(SIM_DIR, options);
        await checkRecovered(again, tracker);
        await again.close();
      } catch (error) {
        throw new Error(`${context}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
    }
  }
  return workOps;
}

describe('crashes (SimFileSystem, crashAfterOps over every step)', () => {
  const rotation: SweepCase = {
    options: { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 'all' },
    setup: (wal, tracker) => appendTracked(wal, tracker, 20),
    work: async (wal, tracker) => {
      await appendTracked(wal, tracker, 6); // rotation at 24
      await groupTracked(wal, tracker, 8);
      await batchTracked(wal, tracker, 5);
      await appendTracked(wal, tracker, 12); // rotation at 47
    },
  };

  const checkpointing: SweepCase = {
    options: { segmentSizeBytes: SMALL_SEGMENT_BYTES, retainSegments: 0 },
    setup: (wal, tracker) => appendTracked(wal, tracker, 60),
    work: async (wal, tracker) => {
      await checkpointTracked(wal, tracker, 50); // deletes segments 1 and 24
      await appendTracked(wal, tracker, 12); // rotation at 70
      await checkpointTracked(wal, tracker, 72); // deletes segment 47
    },
  };

  // Segments filled in 128-byte steps: extensions (zeros, then fdatasync) before and after writes, and at rotation.
  const filling: SweepCase = {
    options: { segmentSizeBytes: 2048, segmentFillStepBytes: 128, retainSegments: 'all' },
    setup: (wal, tracker) => appendTracked(wal, tracker, 2),
    work: async (wal, tracker) => {
      await appendTracked(wal, tracker, 12);
      await groupTracked(wal, tracker, 16); // larger than the fill: extended before the write
      await batchTracked(wal, tracker, 5);
      await appendTracked(wal, tracker, 20); // rotation at 48, then the new segment's first steps
    },
  };

  it('crash mid-extension of the zero fill opens and replays correctly (power loss)', async () => {
    expect(await crashSweep(filling, [1, 2, 3], 'power-loss')).toBeGreaterThan(60);
  });

  it('crash mid-extension of the zero fill opens and replays correctly (process crash, then power loss)', async () => {
    await crashSweep(filling, [4, 5], 'process');
  });

  it('crash mid-rotation opens and replays correctly (power loss)', async () => {
    expect(await crashSweep(rotation, [1, 2, 3], 'power-loss')).toBeGreaterThan(40);
  });

  it('crash mid-rotation opens and replays correctly (process crash, then power loss)', async () => {
    await crashSweep(rotation, [4, 5], 'process');
  });

  it('crash mid-checkpoint and mid-segment-deletion opens and replays correctly (power loss)', async () => {
    expect(await crashSweep(checkpointing, [1, 2, 3], 'power-loss')).toBeGreaterThan(20);
  });

  it('crash mid-checkpoint and mid-segment-deletion opens and replays correctly (process crash, then power loss)', async () => {
    await crashSweep(checkpointing, [4, 5], 'process');
  });

  it('recovery is idempotent: a crash at any step of recovery is recovered by the next open', async () => {
    for (const repair of [false, true]) {
      // A torn tail to zero (and with repair, damage to drop): crash recovery itself at every step.
      for (let n = 0; n < 20; n++) {
        const sim = new SimFileSystem({ seed: n });
        const wal = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
        for (let lsn = 1; lsn <= 30; lsn++) await wal.append(p(lsn));
        await wal.close();
        sim.crash();
        const file = simSegment(24);
        const content = (await sim.readFile(file))!;
        const tail = recordOffset(24, 31);
        const handle = await sim.open(file, 'readwrite');
        await handle.write(encodeRecord({ lsn: 31, durableLsn: 30, batchRemaining: 0, type: 0, payload: p(31) }).subarray(0, 30), tail);
        await handle.datasync();
        await handle.close();
        if (repair) sim.flipBit(file, recordOffset(24, 26) + 35, 0); // damage attested by 27..30
        expect(content.length).toBe(SMALL_SEGMENT_BYTES);
        sim.crashAfterOps(n);
        await Wal.open(SIM_DIR, { fs: sim, repair }).then(
          (opened) => opened.close(),
          (error: unknown) => {
            if (!repair) expect(isFactError(error, 'FACT_IO'), String(error)).toBe(true);
          },
        );
        sim.crash();
        if (!repair) {
          const reopened = await Wal.open(SIM_DIR, { fs: sim, segmentSizeBytes: SMALL_SEGMENT_BYTES });
          expect(reopened.lastLsn).toBe(30);
          expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, 30));
          await reopened.close();
        } else {
          const reopened = await Wal.open(SIM_DIR, { fs: sim, repair: true });
          expect(reopened.lastLsn).toBe(25);
          expect(await collect(reopened.replay({ from: 1 }))).toEqual(expected(1, 25));
          await reopened.close();
        }
      }
    }
  });
});

describe('NodeFileSystem.readFile', () => {
  it('reads a file larger than a read chunk byte for byte, an empty file as empty, a missing one as null', async () => {
    const dir = tempDir();
    const fs = new NodeFileSystem();
    const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, index) => (index * 131 + (index >> 12)) & 0xff);
    nodeFs.writeFileSync(path.join(dir, 'big'), big);
    nodeFs.writeFileSync(path.join(dir, 'empty'), new Uint8Array(0));
    expect(Buffer.from((await fs.readFile(path.join(dir, 'big')))!).equals(Buffer.from(big))).toBe(true);
    expect((await fs.readFile(path.join(dir, 'empty')))!.length).toBe(0);
    expect(await fs.readFile(path.join(dir, 'missing'))).toBeNull();
  });
});

describe('Wal API: replay of nothing', () => {
  it('replay() after a checkpoint of every record yields nothing and reads no segment (every open after a clean close does this)', async () => {
    const dir = tempDir();
    let wal = await open(dir);
    for (let lsn = 1; lsn <= 5; lsn++) await wal.append(p(lsn));
    await wal.checkpoint(5);
    await wal.close();
    const fs = new CountingFileSystem(new NodeFileSystem());
    wal = await open(dir, { fs });
    const before = fs.reads;
    expect(await collect(wal.replay())).toEqual([]);
    expect(fs.reads).toBe(before);
    expect(await collect(wal.replay({ from: 4 }))).toEqual(expected(4, 5));
    expect(fs.reads).toBeGreaterThan(before);
    await wal.close();
  });
});
