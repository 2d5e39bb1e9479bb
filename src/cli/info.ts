/** factstore info: what a database holds and how it is laid out on disk. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FactStore } from '../index.js';
import { withStore } from './common.js';

/** A WAL segment's name (docs/wal-format.md, "Files"). */
const SEGMENT_NAME = /^wal-\d{20}\.log$/;
/** The checkpoint file's layout (docs/wal-format.md, "Checkpoint file"): the LSN is the u64 LE at offset 12. */
const CHECKPOINT_SIZE_BYTES = 24;
const CHECKPOINT_LSN_OFFSET = 12;

export interface InfoReport {
  path: string;
  head: number;
  events: number;
  streams: number;
  /** Distinct types and tags: counted only with --counts (a full scan of the ledger). */
  types: number | null;
  tags: number | null;
  wal: { segments: number; bytes: number; checkpointLsn: number | null };
  ledgerBytes: number;
  /** The declared data-field indexes: the public API does not expose them (null). */
  dataIndexes: string[] | null;
  consumers: { name: string; position: number; lag: number }[];
}

async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function checkpointLsn(walDir: string): Promise<number | null> {
  const bytes = await readFile(join(walDir, 'CHECKPOINT')).catch(() => null);
  if (bytes === null || bytes.length !== CHECKPOINT_SIZE_BYTES) return null;
  return Number(bytes.readBigUInt64LE(CHECKPOINT_LSN_OFFSET));
}

async function distinctTypesAndTags(db: FactStore): Promise<{ types: number; tags: number }> {
  const types = new Set<string>();
  const tags = new Set<string>();
  for await (const event of db.read('all')) {
    types.add(event.type);
    for (const tag of event.tags) tags.add(tag);
  }
  return { types: types.size, tags: tags.size };
}

export async function info(path: string, options: { counts?: boolean }): Promise<InfoReport> {
  const report = await withStore(path, {}, async (db) => {
    const head = await db.head();
    let streams = 0;
    for await (const stream of db.streams()) if (stream !== '') streams++;
    const counted = options.counts ? await distinctTypesAndTags(db) : null;
    const consumers = (await db.consumers()).map(({ name, position, lag }) => ({ name, position, lag }));
    return { head, streams, counted, consumers };
  });
  // After close: the final checkpoint is on disk, and the WAL holds what it left.
  const walDir = join(path, 'wal');
  const segments = (await readdir(walDir, { withFileTypes: true })).filter((entry) => entry.isFile() && SEGMENT_NAME.test(entry.name));
  let walBytes = 0;
  for (const segment of segments) walBytes += (await stat(join(walDir, segment.name))).size;
  return {
    path,
    head: report.head,
    events: report.head,
    streams: report.streams,
    types: report.counted?.types ?? null,
    tags: report.counted?.tags ?? null,
    wal: { segments: segments.length, bytes: walBytes, checkpointLsn: await checkpointLsn(walDir) },
    ledgerBytes: await bytesUnder(join(path, 'ledger')).catch(() => 0),
    dataIndexes: null,
    consumers: report.consumers,
  };
}

export function formatInfo(report: InfoReport): string {
  const lines = [
    `database      ${report.path}`,
    `head          ${report.head}`,
    `events        ${report.events}`,
    `streams       ${report.streams}`,
    `types         ${report.types ?? '(--counts to count)'}`,
    `tags          ${report.tags ?? '(--counts to count)'}`,
    `wal           ${report.wal.segments} segment(s), ${report.wal.bytes} bytes`,
    `checkpoint    ${report.wal.checkpointLsn === null ? 'none' : `LSN ${report.wal.checkpointLsn}`}`,
    `ledger        ${report.ledgerBytes} bytes (LevelDB)`,
    `data indexes  ${report.dataIndexes === null ? '(not exposed by the API; declared with FactStore.open({ indexes }))' : report.dataIndexes.join(', ')}`,
    `consumers     ${report.consumers.length === 0 ? 'none' : ''}`,
    ...report.consumers.map(({ name, position, lag }) => `  ${name}  position ${position}  lag ${lag}`),
  ];
  return lines.join('\n') + '\n';
}
