/**
 * Reading the log back in LSN order. Retained segments were only header-checked at open, so
 * every segment is checked again here by the validity rule of docs/wal-format.md.
 */
import { FactError, ioError } from '../errors.js';
import type { FileSystem } from './file-system.js';
import { decodeSegmentHeader } from './format.js';
import { readPrefix, type SegmentLog, walCorruption } from './segment-files.js';
import { scanSegment } from './segment-scan.js';

export interface WalRecord {
  lsn: number;
  type: number;
  payload: Uint8Array;
}

/**
 * Records with `from` ≤ LSN ≤ `until`. The log is looked at when iteration starts; the active
 * segment is read up to the writer's offset at the moment replay reaches it.
 */
export async function* replayLog(fs: FileSystem, log: SegmentLog, from: number, until: number): AsyncIterableIterator<WalRecord> {
  // Nothing to read (every open after a clean close: from = checkpoint + 1 = last + 1). Without
  // this the active segment would be read and checked again for no record, ≈ 20-40 ms per open.
  if (from > until) return;
  const segments = [...log.segments];
  const active = log.active;
  for (let index = 0; index < segments.length; index++) {
    const segment = segments[index]!;
    const next = segments[index + 1];
    if (next && next.firstLsn <= from) continue;
    if (segment.firstLsn > until) break;
    const isActive = segment === active.segment;
    const bytes = isActive
      ? await readPrefix(fs, segment, active.offsetBytes)
      : await fs.readFile(segment.path).catch((error: unknown) => {
          if ((error as { code?: unknown }).code === 'ENOENT' && !log.segments.includes(segment)) return null;
          throw ioError('read', segment.path, error);
        });
    if (bytes === null) {
      throw new FactError('FACT_OUT_OF_RANGE', `replay: segment ${segment.name} was deleted by a checkpoint during replay`, {
        details: { segment: segment.name },
      });
    }
    const header = decodeSegmentHeader(bytes);
    if ('invalid' in header || header.firstLsn !== segment.firstLsn) {
      throw walCorruption(`segment ${segment.path}: invalid header (${'invalid' in header ? header.invalid : 'first LSN differs from its name'})`, {
        segment: segment.name,
        offsetBytes: 0,
      });
    }
    const scan = scanSegment(bytes, segment.firstLsn);
    const expectedLast = next ? next.firstLsn - 1 : until;
    if (scan.lastLsn < Math.min(expectedLast, until)) {
      throw walCorruption(
        `segment ${segment.path}: damaged record at offset ${scan.endOffset} (LSN ${scan.lastLsn + 1} expected, log continues to ${expectedLast})`,
        { segment: segment.name, offsetBytes: scan.endOffset, lsn: scan.lastLsn + 1 },
      );
    }
    for (const record of scan.records) {
      if (record.lsn < from) continue;
      if (record.lsn > until) return;
      yield {
        lsn: record.lsn,
        type: record.type,
        payload: bytes.slice(record.payloadOffset, record.payloadOffset + record.payloadLength),
      };
    }
  }
}
