/**
 * Fuzzing the files (issue 14, invariant 8): a small valid database, then ONE mutation per case
 * of a WAL segment, the checkpoint file or a LevelDB value (bit flip, truncation, splice of bytes
 * from elsewhere, a length field set huge, a zeroed range, a deleted file or key), then open +
 * reads + queries + verify(). Acceptable:
 * - a FactError with a FACT_* code (at open, at a read, or from verify()); WAL corruption names
 *   the file, ledger corruption the chunk;
 * - everything read byte-identical to the undamaged database (rendered by fuzz-support's `show`,
 *   not by factstore's encoder), with verify() reporting the damage when it hit acknowledged
 *   bytes (a WAL record, a ledger chunk, an index entry);
 * - a database that lost only events of the newest WAL unit when the damage is in that unit or
 *   after it and LevelDB had not applied it: docs/wal-format.md's known residual (torn tail).
 * Never: a throw that is not a FactError, a hang (per-case timeout), different data returned
 * without an error (decoded damage), a shorter ledger when acknowledged data was damaged.
 *
 * Bases (built once, cloned per case): 'checkpointed' (clean close: most events only in LevelDB,
 * their segments deleted, the checkpoint at the last LSN) and 'wal-tail' (as after a power loss
 * that took LevelDB's later apply batches: the WAL holds every record after an early checkpoint,
 * LevelDB only the first half of the events).
 *
 * Replay: FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/fuzz-files.property.test.ts
 * Heavy: FACT_FUZZ_SCALE=100 npx vitest run property-tests/fuzz-files.property.test.ts
 * Regressions (property-tests/regressions/fuzz-files.json) run first, on every run.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isFactError } from '../src/errors.js';
import { FactStore } from '../src/store.js';
import { Query } from '../src/model/query.js';
import type { FactStoreOptions } from '../src/store.js';
import type { EventInput, ReadSource } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import { KeySpace, metaKey } from '../src/storage/keys.js';
import { describeError, fuzzScale, HangError, hex, levelEntries, newMemoryLevel, show, Tally, withinTime } from './fuzz-support.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';

const DB = '/db';
const WAL_DIR = `${DB}/wal`;
/** Cases per base; two bases: ≥ 1,000 fuzzed files in npm test. */
const DEFAULT_CASES_PER_BASE = 540 * fuzzScale();
/** What npm test promises (issue 14): fuzzed files, unchanged ones (a splice of equal bytes) not counted. */
const FUZZED_FILES_MIN = 1000;
const SEGMENT_SIZE_BYTES = 1024;

type BaseName = 'checkpointed' | 'wal-tail';

interface Base {
  name: BaseName;
  fs: SimFileSystem;
  entries: [Uint8Array, Uint8Array][];
  files: string[];
  /** Per WAL file: its records [start, end) and where its newest unit starts. */
  records: Map<string, { start: number; end: number; lsn: number }[]>;
  newestSegment: string;
  /** The position in LevelDB's `M applied`: events through it need no WAL record to be read. */
  appliedPosition: number;
  /** The LSN in the CHECKPOINT file (0 without one). */
  checkpointLsn: number;
  /** Start offset of the newest record of the newest segment. */
  lastUnit: { start: number };
  expected: Observation;
  options: Omit<FactStoreOptions, 'fs' | 'level'>;
}

interface Observation {
  /** One rendered event per line, in position order. */
  all: string[];
  /** Every other read, rendered. */
  rest: string;
  /** Whether every consumer's position is at most the head. */
  headOk: boolean;
}

// ------------------------------------------------------------------------- the data

const enc = new TextEncoder();

function eventsFor(round: number): EventInput[] {
  const proto = Object.defineProperty({}, '__proto__', { value: { round }, enumerable: true, configurable: true, writable: true });
  const datas: unknown[] = [
    { kind: 'plain', n: round, s: 'zß水🎉', f: 0.1 + round },
    new Map<unknown, unknown>([[1, 'one'], ['k', [round, -0.5]]]),
    { kind: 'typed', at: new Date(1_700_000_000_000 + round), big: 2n ** 70n + BigInt(round), bytes: enc.encode(`b${round}`) },
    proto,
    [null, true, undefined, Number.NaN, -Infinity, { nested: { deeper: [round] } }],
    `a string of some length ${'x'.repeat(round % 40)}`,
  ];
  const count = 1 + (round % 3);
  return Array.from({ length: count }, (_, index) => ({
    type: ['Created', 'Renamed', 'Closed'][(round + index) % 3]!,
    data: datas[(round + index) % datas.length],
    metadata: { round, index },
    tags: [`t:${(round + index) % 4}`, ...(index === 0 ? ['first'] : [])],
    ...(round % 4 === 0 ? { id: `ev-${round}-${index}` } : {}),
  }));
}

const STREAMS = ['order-1', 'order-2', 'user-7'];

async function writeWorkload(db: FactStore, from: number, to: number): Promise<void> {
  for (let round = from; round < to; round++) {
    if (round % 3 === 0) await db.append(eventsFor(round));
    else {
      const stream = STREAMS[round % STREAMS.length]!;
      await db.appendStream(stream, eventsFor(round), { expect: await db.streamVersion(stream) });
    }
    if (round % 7 === 3) await db.append({ type: 'Projected', data: { round } }, undefined, { ack: { consumer: 'proj', position: await db.head() } });
    if (round % 11 === 5) await db.resetConsumer('other', 1);
  }
}

// ------------------------------------------------------------------------- observing

const SOURCES: ReadSource[] = [
  { stream: 'order-1' },
  { stream: 'user-7' },
  { type: 'Created' },
  { tag: 't:1' },
  { category: 'order' },
  { query: Query.items({ types: ['Renamed'], tags: ['first'] }) },
  { query: Query.data({ kind: 'plain' }) },
];

/** Reads everything a user could; throws what the store throws. */
async function observe(db: FactStore): Promise<Observation> {
  const all = (await db.read('all').toArray()).map((event) => show(event));
  const rest: string[] = [`head ${await db.head()}`];
  rest.push(`backward ${(await db.read('all', { direction: 'backward', limit: 4 }).toArray()).map((event) => event.position).join(',')}`);
  for (const source of SOURCES) rest.push(`${show(source)}: ${(await db.read(source).toArray()).map((event) => show(event)).join(' | ')}`);
  for (const stream of STREAMS) rest.push(`version ${stream} ${await db.streamVersion(stream)}`);
  rest.push(`streams ${(await db.streams().toArray()).join(',')}`);
  const consumers = await db.consumers();
  rest.push(`consumers ${show(consumers)}`);
  return { all, rest: rest.join('\n'), headOk: consumers.every((consumer) => consumer.lag >= 0) };
}

// ------------------------------------------------------------------------- building the bases

/** The records of a (valid) segment, parsed from docs/wal-format.md's layout. */
function parseSegment(bytes: Uint8Array): { start: number; end: number; lsn: number; remaining: number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: { start: number; end: number; lsn: number; remaining: number }[] = [];
  let offset = 32;
  while (offset + 32 <= bytes.length) {
    const length = view.getUint32(offset + 4, true);
    const lsn = Number(view.getBigUint64(offset + 8, true));
    if (lsn === 0 || offset + 32 + length > bytes.length) break;
    records.push({ start: offset, end: offset + 32 + length, lsn, remaining: view.getUint32(offset + 24, true) });
    offset += 32 + length;
  }
  return records;
}

async function snapshotBase(name: BaseName, fs: SimFileSystem, entries: [Uint8Array, Uint8Array][], options: Base['options']): Promise<Base> {
  const files = (await fs.readdir(WAL_DIR)).filter((file) => file !== 'LOCK');
  const records = new Map<string, { start: number; end: number; lsn: number }[]>();
  const segments = files.filter((file) => file.endsWith('.log'));
  for (const file of segments) records.set(file, parseSegment((await fs.readFile(`${WAL_DIR}/${file}`))!));
  const newestSegment = segments.at(-1)!;
  const newest = records.get(newestSegment)!;
  const last = newest.at(-1);
  const lastUnit = { start: last?.start ?? Number.POSITIVE_INFINITY };
  const checkpoint = await fs.readFile(`${WAL_DIR}/CHECKPOINT`);
  const checkpointLsn = checkpoint === null ? 0 : Number(new DataView(checkpoint.buffer, checkpoint.byteOffset).getBigUint64(12, true));
  const applied = entries.find(([key]) => hex(key) === hex(metaKey('applied')))?.[1];
  const appliedPosition = applied === undefined ? 0 : Number(new DataView(applied.buffer, applied.byteOffset).getBigUint64(0));
  const base: Base = { name, fs, entries, files, records, newestSegment, checkpointLsn, appliedPosition, lastUnit, expected: { all: [], rest: '', headOk: true }, options };
  const reference = await openCase(base, fs.clone(), entries);
  base.expected = await observe(reference);
  const report = await reference.verify();
  expect(report.problems).toEqual([]);
  await reference.close();
  return base;
}

const OPTIONS: Base['options'] = { wal: { segmentSizeBytes: SEGMENT_SIZE_BYTES, retainSegments: 1 }, checkpointEveryBytes: 1500, indexes: { data: ['kind'] } };

async function buildCheckpointed(): Promise<Base> {
  const fs = new SimFileSystem({ seed: 1 });
  const level = newMemoryLevel();
  const db = await FactStore.open(DB, { ...OPTIONS, fs, level, levelDurability: 'volatile' });
  await writeWorkload(db, 0, 30);
  await db.close();
  return snapshotBase('checkpointed', fs, await levelEntries(level), OPTIONS);
}

const TAIL_OPTIONS: Base['options'] = { wal: { segmentSizeBytes: SEGMENT_SIZE_BYTES, retainSegments: 'all' }, checkpointEveryBytes: 1 << 30, indexes: { data: ['kind'] } };

async function buildWalTail(): Promise<Base> {
  // Deterministic (no timing decides what LevelDB holds): LevelDB as it was after round 8, the
  // WAL as it is after round 16 with its checkpoint from the first open.
  const fs = new SimFileSystem({ seed: 7 });
  const level = newMemoryLevel();
  const db = await FactStore.open(DB, { ...TAIL_OPTIONS, fs, level, levelDurability: 'volatile' });
  await writeWorkload(db, 0, 8);
  await db.verify(); // drains the unapplied tail: LevelDB holds rounds 0–7
  const entries = await levelEntries(level);
  await writeWorkload(db, 8, 16);
  await db.verify();
  const disk = fs.clone();
  await db.close();
  return snapshotBase('wal-tail', disk, entries, TAIL_OPTIONS);
}

async function openCase(base: Base, fs: SimFileSystem, entries: [Uint8Array, Uint8Array][]): Promise<FactStore> {
  const level = newMemoryLevel();
  await level.open();
  await level.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value })));
  return FactStore.open(DB, { ...base.options, fs, level, levelDurability: 'volatile' });
}

// ------------------------------------------------------------------------- mutations

/** Numbers are raw draws, reduced modulo what they index when the case runs (shrinks well). */
type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'truncate'; at: number }
  | { op: 'zero'; at: number; length: number }
  | { op: 'splice'; from: number; fromTarget: number; at: number; length: number }
  | { op: 'huge'; at: number; value: number }
  | { op: 'delete' };

interface FileCase {
  base: number;
  /** 'wal': a WAL file (segment or CHECKPOINT); 'level': a LevelDB value. */
  target: 'wal' | 'level';
  /** Picks the file or the key. */
  which: number;
  /** Regressions name their target instead (a WAL file name, or a LevelDB key in hex): stable across data changes. */
  name?: string;
  /** Draws the offset inside a record (or a chunk header) rather than anywhere. */
  focused: boolean;
  mutation: Mutation;
}

const HUGE_VALUES = [0xffff_ffff, 0x4000_0001, 0x8000_0000, 0xffff, 0x7fff_ffff, 0x100];

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('zero' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('splice' as const), from: fc.nat(), fromTarget: fc.nat(), at: fc.nat(), length: fc.integer({ min: 1, max: 48 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('huge' as const), at: fc.nat(), value: fc.nat({ max: HUGE_VALUES.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const) }) },
);

const caseArb = (base: number): fc.Arbitrary<FileCase> =>
  fc.record({
    base: fc.constant(base),
    target: fc.constantFrom<'wal' | 'level'>('wal', 'level'),
    which: fc.nat(),
    focused: fc.boolean(),
    mutation: mutationArb,
  });

/** A mutated copy of `bytes`, or null to delete it. `other` is the source of a splice. */
function mutate(bytes: Uint8Array, mutation: Mutation, focus: { start: number; end: number } | null, other: Uint8Array, lengthFields: number[]): Uint8Array | null {
  const span = focus ?? { start: 0, end: bytes.length };
  const width = Math.max(1, span.end - span.start);
  const pick = (raw: number) => Math.min(bytes.length, span.start + (raw % width));
  const copy = Uint8Array.from(bytes);
  switch (mutation.op) {
    case 'delete':
      return null;
    case 'flip': {
      if (bytes.length === 0) return copy;
      const at = Math.min(bytes.length - 1, pick(mutation.at));
      copy[at]! ^= 1 << mutation.bit;
      return copy;
    }
    case 'truncate':
      return copy.subarray(0, pick(mutation.at));
    case 'zero': {
      const at = pick(mutation.at);
      copy.fill(0, at, Math.min(bytes.length, at + mutation.length));
      return copy;
    }
    case 'splice': {
      if (other.length === 0) return copy;
      const from = mutation.from % other.length;
      const piece = other.subarray(from, Math.min(other.length, from + mutation.length));
      const at = pick(mutation.at);
      const result = new Uint8Array(Math.max(bytes.length, at + piece.length));
      result.set(bytes);
      result.set(piece, at);
      return result.subarray(0, Math.max(bytes.length, at + piece.length));
    }
    case 'huge': {
      // A length field (when the layout has one here) or any 4 bytes, set to a huge value.
      const fields = lengthFields.filter((offset) => offset + 4 <= bytes.length);
      const at = fields.length > 0 ? fields[mutation.at % fields.length]! : Math.max(0, Math.min(bytes.length - 4, pick(mutation.at)));
      if (at + 4 > copy.length) return copy;
      new DataView(copy.buffer, copy.byteOffset, copy.byteLength).setUint32(at, HUGE_VALUES[mutation.value]!, fields.length > 0 && fields.includes(at) ? lengthFieldLittleEndian : true);
      return copy;
    }
  }
}

/** WAL record length fields are little-endian; LevelDB value fields big-endian (set per call). */
let lengthFieldLittleEndian = true;

/** Length-like fields of a ledger chunk (docs/storage-format.md "Format-4 chunks"): stream id length, count, end offsets. */
function chunkLengthFields(value: Uint8Array): number[] {
  if (value.length < 21) return [];
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const n = view.getUint16(17);
  // The u16 fields (n, c) get a u32 write from two bytes before them: their value becomes 0xffff or so.
  const fields = [15, 17 + n];
  const count = 19 + n + 2 <= value.length ? view.getUint16(19 + n) : 0;
  for (let i = 0; i < Math.min(count, 8); i++) fields.push(21 + n + 4 * i);
  return fields;
}

// ------------------------------------------------------------------------- one case

type Verdict = { outcome: string } | { failure: string };

const tally = new Tally();

function targetName(base: Base, fileCase: FileCase): { kind: string; name: string } {
  if (fileCase.target === 'wal') {
    const file = base.files[fileCase.which % base.files.length]!;
    return { kind: file === 'CHECKPOINT' ? 'checkpoint' : 'wal-segment', name: file };
  }
  const [key] = base.entries[fileCase.which % base.entries.length]!;
  const space = String.fromCharCode(key[0]!);
  const kind = key[0] === KeySpace.ledger ? 'ledger-chunk' : key[0] === KeySpace.meta ? 'meta' : key[0] === KeySpace.consumer ? 'consumer' : 'index';
  return { kind: `level-${kind}`, name: `${space} ${hex(key)}` };
}

async function runCase(base: Base, named: FileCase): Promise<Verdict> {
  let fileCase = named;
  if (named.name !== undefined) {
    const which = named.target === 'wal' ? base.files.indexOf(named.name) : base.entries.findIndex(([key]) => hex(key) === named.name);
    if (which < 0) throw new Error(`regression target ${named.name} is not in base ${base.name}`);
    fileCase = { ...named, which };
  }
  const fs = base.fs.clone();
  let entries = base.entries;
  const { kind, name } = targetName(base, fileCase);
  let touchedAcknowledged = false;
  let tailOnly = false;
  let mutatedKey = '';
  let mutatedValue: Uint8Array | null = null;
  if (fileCase.target === 'wal') {
    const path = `${WAL_DIR}/${name}`;
    const bytes = (await fs.readFile(path))!;
    const records = base.records.get(name) ?? [];
    const record = records.length > 0 ? records[fileCase.which % records.length]! : null;
    const focus = fileCase.focused && record !== null ? record : null;
    const otherFile = base.files[(fileCase.which + (fileCase.mutation.op === 'splice' ? fileCase.mutation.fromTarget : 0)) % base.files.length]!;
    const other = (await fs.readFile(`${WAL_DIR}/${otherFile}`))!;
    lengthFieldLittleEndian = true;
    const lengthFields = records.map((r) => r.start + 4);
    const mutated = mutate(bytes, fileCase.mutation, focus, other, lengthFields);
    if (mutated !== null && hex(mutated) === hex(bytes)) return { outcome: 'unchanged' };
    if (mutated === null) {
      await fs.unlink(path);
      await fs.syncDir(WAL_DIR);
    } else {
      const handle = await fs.open(path, 'readwrite');
      await handle.truncate(0);
      await handle.write(mutated, 0);
      await handle.datasync();
      await handle.close();
    }
    // Which bytes changed: acknowledged when inside a record (or the checkpoint, or a whole file).
    const changed = firstDifference(bytes, mutated);
    const lastChanged = lastDifference(bytes, mutated);
    // The oldest segment, all of it checkpointed, is a retained copy: deleting it is what a checkpoint does.
    const retainedCopy = name === base.files.find((file) => file.endsWith('.log')) && name !== base.newestSegment && records.every((r) => r.lsn <= base.checkpointLsn);
    touchedAcknowledged = name === 'CHECKPOINT' || (mutated === null ? !retainedCopy : records.some((r) => changed < r.end && lastChanged >= r.start));
    // Nothing intact after the damage in the newest segment: no record is left to attest what was lost.
    tailOnly = name === base.newestSegment && (mutated === null || !records.some((r) => r.start > lastChanged));
  } else {
    const index = fileCase.which % base.entries.length;
    const [key, value] = base.entries[index]!;
    const otherIndex = (index + (fileCase.mutation.op === 'splice' ? fileCase.mutation.fromTarget : 0)) % base.entries.length;
    const other = base.entries[otherIndex]![1];
    lengthFieldLittleEndian = false;
    const isChunk = key[0] === KeySpace.ledger;
    const focus = fileCase.focused && isChunk ? { start: 0, end: Math.min(value.length, 40) } : null;
    const mutated = mutate(value, fileCase.mutation, focus, other, isChunk ? chunkLengthFields(value) : []);
    if (mutated !== null && hex(mutated) === hex(value)) return { outcome: 'unchanged' };
    entries = mutated === null ? base.entries.filter((_, i) => i !== index) : base.entries.map((entry, i) => (i === index ? [key, mutated] : entry));
    // The replay rewrites what the WAL's records after the checkpoint hold: damage there may heal.
    touchedAcknowledged = base.name === 'checkpointed';
    mutatedKey = hex(key);
    mutatedValue = mutated;
  }
  const verdict = await judge(base, fs, entries, kind, name, touchedAcknowledged, tailOnly, undetectable(base, mutatedKey, mutatedValue));
  tally.add(`${base.name}/${kind}/${fileCase.mutation.op}`, 'outcome' in verdict ? verdict.outcome : 'FAILURE');
  return verdict;
}

function firstDifference(a: Uint8Array, b: Uint8Array | null): number {
  if (b === null) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return length;
}

function lastDifference(a: Uint8Array, b: Uint8Array | null): number {
  if (b === null) return a.length;
  for (let i = Math.max(a.length, b.length) - 1; i >= 0; i--) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * Values the format gives no checksum, whose damage no check can tell from data when it stays in
 * range: `O` positions (8 bytes, at most the head; a deleted `O` key reads as deleteConsumer) and,
 * once its WAL record is checkpointed away, `M idSeed` (16 bytes). Returns the reason, or null.
 */
function undetectable(base: Base, key: string, value: Uint8Array | null): string | null {
  if (value === null) return key.startsWith(KeySpace.consumer.toString(16)) ? 'O key deleted (nothing else lists the consumers)' : null;
  if (key.startsWith(KeySpace.consumer.toString(16)) && value.length === 8) return 'O position (no checksum)';
  if (key === hex(metaKey('idSeed')) && value.length === 16 && base.name === 'checkpointed') return 'M idSeed (no checksum, its WAL record checkpointed)';
  return null;
}

async function judge(
  base: Base,
  fs: SimFileSystem,
  entries: [Uint8Array, Uint8Array][],
  kind: string,
  name: string,
  touchedAcknowledged: boolean,
  tailOnly: boolean,
  undetectableReason: string | null,
): Promise<Verdict> {
  const refusedAs = (stage: string, error: unknown): Verdict => {
    if (!isFactError(error)) return { failure: `${stage} threw ${describeError(error)}` };
    if (error.code === 'FACT_WAL_CORRUPTION' && kind !== 'level-meta' && !/wal-\d{20}\.log|CHECKPOINT|segment|LSN/.test(error.message)) {
      return { failure: `${stage}: FACT_WAL_CORRUPTION without a file or position in its message: ${error.message}` };
    }
    // No I/O fails here: FACT_IO would be damage mislabelled (a foreign error wrapped at open).
    if (error.code === 'FACT_IO' || error.code === 'FACT_ASSERTION') return { failure: `${stage}: damage reported as ${error.code}: ${error.message}; cause: ${describeError(error.cause)}` };
    return { outcome: `${stage}-refused ${error.code}` };
  };
  let db: FactStore;
  if (process.env.FACT_FUZZ_DEBUG === '1') {
    const sizes = await Promise.all((await fs.readdir(WAL_DIR)).map(async (file) => `${file}:${(await fs.readFile(`${WAL_DIR}/${file}`))?.length}`));
    console.log(`[debug] ${base.name} ${kind} ${name}; base files ${base.files.join(',')}; checkpoint ${base.checkpointLsn}; now ${sizes.join(' ')}`);
  }
  try {
    db = await openCase(base, fs, entries);
  } catch (error) {
    return refusedAs('open', error);
  }
  let observation: Observation | null = null;
  let verdict: Verdict | null = null;
  try {
    observation = await observe(db);
  } catch (error) {
    verdict = refusedAs('read', error);
  }
  let verified: { ok: boolean; problems: string[] } | null = null;
  try {
    verified = await db.verify();
  } catch (error) {
    if (!isFactError(error)) verdict = { failure: `verify() threw ${describeError(error)}` };
  }
  try {
    await db.close();
  } catch (error) {
    if (!isFactError(error)) verdict = { failure: `close() threw ${describeError(error)}` };
  }
  if (verdict !== null) return verdict;
  const reported = verified === null || !verified.ok;
  const expected = base.expected;
  const sameAll = observation!.all.join('\n') === expected.all.join('\n');
  const same = sameAll && observation!.rest === expected.rest;
  if (same) {
    if (reported) return { outcome: 'identical, verify reports' };
    if (touchedAcknowledged && kind !== 'level-meta' && kind !== 'level-consumer') {
      return { failure: `damage to acknowledged bytes of ${name} (${kind}) read back identical and verify() found nothing` };
    }
    return { outcome: 'identical' };
  }
  // Different data without an error: allowed only as the known residual (the newest unit, unapplied, dropped as a torn tail).
  const isPrefix = observation!.all.length < expected.all.length && observation!.all.every((line, i) => line === expected.all[i]);
  if (kind === 'wal-segment' && tailOnly && isPrefix && observation!.all.length >= base.appliedPosition) return { outcome: 'torn tail truncated (known residual)' };
  if (kind === 'level-index' && reported) return { outcome: 'index damage, verify reports' };
  if (undetectableReason !== null && observation!.headOk) return { outcome: `undetectable by the format: ${undetectableReason}` };
  const diff = firstLineDiff(expected, observation!);
  return { failure: `decoded damage: ${name} (${kind}) mutated, reads differ without an error${reported ? ' (verify reports it, reads do not)' : ' and verify() is ok'}: ${diff}` };
}

function firstLineDiff(expected: Observation, actual: Observation): string {
  const a = [...expected.all, ...expected.rest.split('\n')];
  const b = [...actual.all, ...actual.rest.split('\n')];
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `expected ${a[i] ?? '(nothing)'}\n  got ${b[i] ?? '(nothing)'}`;
  return '(no line differs)';
}

// ------------------------------------------------------------------------- the tests

const REGRESSIONS_FILE = new URL('./regressions/fuzz-files.json', import.meta.url);

interface Regression {
  name: string;
  case: FileCase;
}

function loadRegressions(): Regression[] {
  try {
    return JSON.parse(readFileSync(REGRESSIONS_FILE, 'utf8')) as Regression[];
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return [];
    throw error;
  }
}

describe('fuzzed files: WAL segments, checkpoint, LevelDB values (only FACT_* errors, never decoded damage)', () => {
  const bases: Base[] = [];
  const getBase = async (index: number): Promise<Base> => {
    if (bases.length === 0) bases.push(await buildCheckpointed(), await buildWalTail());
    return bases[index]!;
  };
  afterAll(() => {
    console.log(tally.format('fuzz-files (base/target/mutation: outcome count)'));
  });
  const fullRun = process.env.FACT_PROPERTY_RUNS === undefined && process.env.FACT_PATH === undefined;

  it('replays the regression corpus', async () => {
    for (const regression of loadRegressions()) {
      const verdict = await withinTime(regression.name, async () => runCase(await getBase(regression.case.base), regression.case));
      expect('failure' in verdict ? `${regression.name}: ${verdict.failure}` : 'ok').toBe('ok');
    }
  });

  for (const [index, label] of [[0, 'checkpointed'], [1, 'wal-tail']] as const) {
    it(
      `base '${label}': one mutation per case`,
      async () => {
        const base = await getBase(index);
        await fc.assert(
          fc.asyncProperty(caseArb(index), async (fileCase) => {
            let verdict: Verdict;
            try {
              verdict = await withinTime(`case ${JSON.stringify(fileCase)}`, () => runCase(base, fileCase));
            } catch (error) {
              if (error instanceof HangError) throw error;
              verdict = { failure: `the harness threw ${describeError(error)}` };
            }
            if ('failure' in verdict) throw new Error(`${verdict.failure}\ncase: ${JSON.stringify(fileCase)}`);
          }),
          propertyParams(DEFAULT_CASES_PER_BASE),
        );
      },
      propertyTimeoutMs(DEFAULT_CASES_PER_BASE, 60),
    );
  }

  it.runIf(fullRun)(`fuzzed at least ${FUZZED_FILES_MIN} files`, () => {
    expect(tally.total).toBeGreaterThanOrEqual(FUZZED_FILES_MIN * fuzzScale());
  });
});
