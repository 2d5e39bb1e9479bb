/**
 * Segment files as files: finding them in the directory, creating them with a zero-filled prefix
 * and extending that fill (docs/wal-format.md, "Files"), reading a prefix, checking a header. What their records mean is
 * segment-scan.ts's concern.
 */
import { FactError, ioError } from '../errors.js';
import type { FileHandle, FileSystem } from './file-system.js';
import { joinPath } from './file-system.js';
import { decodeSegmentHeader, encodeSegmentHeader, parseSegmentFileName, SEGMENT_HEADER_SIZE_BYTES, segmentFileName, TEMP_SUFFIX } from './format.js';

const ZERO_FILL_CHUNK_SIZE_BYTES = 1024 * 1024;

export interface Segment {
  firstLsn: number;
  name: string;
  path: string;
}

/** The segment appends go to; the writer advances `offsetBytes` after each write. */
export interface ActiveSegment {
  segment: Segment;
  handle: FileHandle;
  offsetBytes: number;
  /** Logical size: the writer rotates when the next unit would end beyond it. */
  capacityBytes: number;
  /**
   * File length, zero-filled (or written) and fdatasync'ed: writes below it overwrite allocated
   * blocks, so their fdatasync need not journal a new file size. Records never land beyond it,
   * except with sync 'none' (no extensions: records grow the file).
   */
  filledBytes: number;
}

/** The log as replay and retention see it: live views, which the writer changes as it goes. */
export interface SegmentLog {
  /** Every segment in LSN order; the last one is the active segment. */
  readonly segments: readonly Segment[];
  readonly active: ActiveSegment;
}

export function walCorruption(message: string, details: Record<string, unknown>): FactError {
  return new FactError('FACT_WAL_CORRUPTION', message, { details });
}

/** The segment files among a directory's entry names, sorted by first LSN. */
export function segmentsIn(dir: string, names: readonly string[]): Segment[] {
  const segments: Segment[] = [];
  for (const name of names) {
    const firstLsn = parseSegmentFileName(name);
    if (firstLsn !== null) segments.push({ firstLsn, name, path: joinPath(dir, name) });
  }
  segments.sort((a, b) => a.firstLsn - b.firstLsn);
  return segments;
}

let zeroFill: Uint8Array | undefined;
function zeros(): Uint8Array {
  zeroFill ??= new Uint8Array(ZERO_FILL_CHUNK_SIZE_BYTES);
  return zeroFill;
}

async function writeZeros(handle: FileHandle, from: number, to: number): Promise<void> {
  for (let offset = from; offset < to; offset += ZERO_FILL_CHUNK_SIZE_BYTES) {
    await handle.write(zeros().subarray(0, Math.min(ZERO_FILL_CHUNK_SIZE_BYTES, to - offset)), offset);
  }
}

/**
 * Header + zero fill up to `fillBytes` (at most `capacityBytes`) into a temp file, fdatasync,
 * rename, directory fsync (docs/wal-format.md): a crash leaves no half-made segment under a
 * segment's name. The writer extends the fill later (extendFill).
 */
export async function createSegment(
  fs: FileSystem,
  dir: string,
  firstLsn: number,
  capacityBytes: number,
  fillBytes: number,
): Promise<ActiveSegment> {
  const filledBytes = Math.max(SEGMENT_HEADER_SIZE_BYTES, Math.min(capacityBytes, fillBytes));
  const name = segmentFileName(firstLsn);
  const path = joinPath(dir, name);
  const tempPath = path + TEMP_SUFFIX;
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(tempPath, 'overwrite');
    await handle.write(encodeSegmentHeader(firstLsn), 0);
    await writeZeros(handle, SEGMENT_HEADER_SIZE_BYTES, filledBytes);
    await handle.datasync();
    await fs.rename(tempPath, path);
    await fs.syncDir(dir);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    throw ioError('create segment', path, error);
  }
  return { segment: { firstLsn, name, path }, handle, offsetBytes: SEGMENT_HEADER_SIZE_BYTES, capacityBytes, filledBytes };
}

/**
 * Grows the active segment's zero fill to `toBytes`: zeros after the current end of the file,
 * then fdatasync (which also makes every record written before it durable). A crash midway
 * leaves a shorter file or zeros past the log's end: both read as the end of the log.
 */
export async function extendFill(active: ActiveSegment, toBytes: number): Promise<void> {
  if (toBytes <= active.filledBytes) return;
  try {
    await writeZeros(active.handle, active.filledBytes, toBytes);
    await active.handle.datasync();
  } catch (error) {
    throw ioError('extend zero fill', active.segment.path, error);
  }
  active.filledBytes = toBytes;
}

/** Overwrites [from, to) of a segment with zeros and fdatasyncs it. */
export async function zeroRange(fs: FileSystem, segment: Segment, from: number, to: number): Promise<void> {
  const handle = await fs.open(segment.path, 'readwrite');
  try {
    await writeZeros(handle, from, to);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** The first `lengthBytes` of a segment (fewer if it is shorter), or null when it does not exist. */
export async function readPrefix(fs: FileSystem, segment: Segment, lengthBytes: number): Promise<Uint8Array | null> {
  let handle: FileHandle;
  try {
    handle = await fs.open(segment.path, 'read');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return null;
    throw ioError('open', segment.path, error);
  }
  try {
    const bytes = new Uint8Array(lengthBytes);
    let offset = 0;
    while (offset < lengthBytes) {
      const read = await handle.read(bytes, offset, lengthBytes - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    return bytes.subarray(0, offset);
  } catch (error) {
    throw ioError('read', segment.path, error);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Row 4 of the recovery table: a segment whose header is invalid (or that vanished) is corruption. */
export function checkSegmentHeader(segment: Segment, bytes: Uint8Array | null): asserts bytes is Uint8Array {
  const header = bytes === null ? { invalid: 'file vanished' } : decodeSegmentHeader(bytes);
  if ('invalid' in header || header.firstLsn !== segment.firstLsn) {
    throw walCorruption(
      `segment ${segment.path}: invalid header (${'invalid' in header ? header.invalid : `first LSN ${header.firstLsn} differs from its name`})`,
      { segment: segment.name, offsetBytes: 0 },
    );
  }
}
