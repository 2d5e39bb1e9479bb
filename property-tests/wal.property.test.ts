/**
 * Model-based crash-injection tests of the WAL (src/wal/wal.ts) on the SimFileSystem, in the
 * spirit of SQLite's crash VFS, FoundationDB's simulation and TigerBeetle's VOPR: fast-check
 * generates sequences of commands (appends, batches, concurrent appends, syncs, checkpoints,
 * clean reopens, power-loss and process crashes — also while appends are in flight and inside
 * recovery —, injected EIO/ENOSPC on write and fdatasync, bit flips in acknowledged data), runs
 * them against a Wal on a SimFileSystem and against a model of what was ACKNOWLEDGED, and after
 * every reopen checks the invariants of docs/wal-format.md:
 *
 * 1. every acknowledged record above the checkpoint is replayed with exactly its bytes and type
 *    (and retained older ranges too, through replay({ from }));
 * 2. nothing that was never appended appears: each replayed record is the acknowledged record
 *    at its LSN, or the record most recently issued at that LSN (an unacknowledged append);
 * 3. LSNs are gapless and monotonic; recovery.lastLsn ≥ the highest acknowledged LSN;
 *    checkpointLsn ≥ the last acknowledged checkpoint;
 * 4. a torn tail is reported (truncatedBytes > 0 ⇔ tornTail, in the newest segment) and
 *    recovery leaves no garbage after the last complete unit;
 * 5. replay is deterministic;
 * 6. damage inside acknowledged data that a later record attests is FACT_WAL_CORRUPTION naming
 *    segment and offset, never skipped; `repair: true` drops exactly from that unit on.
 *
 * What recovery replays becomes part of the log (the WAL reports it as durable), so the model
 * promotes it to acknowledged: a later crash must not lose it either.
 *
 * A crash "while appends are in flight" is simulated faithfully: the process dies at a storage
 * call (crashAfterOps), so the old Wal instance can do nothing more; its promises settle with
 * errors (or resolve, if they completed before the fatal call), then the power goes out.
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/wal.property.test.ts
 * Heavier run: FACT_PROPERTY_RUNS=2000 npx vitest run property-tests/wal.property.test.ts
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSegmentFileName, SEGMENT_FILL_STEP_BYTES, SEGMENT_HEADER_SIZE_BYTES, TEMP_SUFFIX } from '../src/wal/format.js';
import { endOfNonZero, scanSegment } from '../src/wal/segment-scan.js';
import type { FileHandle, FileSystem } from '../src/wal/file-system.js';
import type { SimCrashMode, SimCrashReport, SimFaultErrno } from '../src/wal/sim-file-system.js';
import { SimCrashError, SimFileSystem } from '../src/wal/sim-file-system.js';
import type { SyncMode, WalOptions, WalRecord } from '../src/wal/wal.js';
import { Wal } from '../src/wal/wal.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';

const DIR = '/db/wal';
/** About 8 s on a 2-core machine; FACT_PROPERTY_RUNS=2000 for a heavy run. */
const DEFAULT_RUNS = 200;
/** Time allowed for in-flight operations to settle once the simulated process has died. */
const SETTLE_TIMEOUT_MS = 5_000;
const SYNC_INTERVAL_MS = 10;

/** FACT_WAL_STATS=1 prints how often each situation came up (to check the generators reach them). */
const stats = new Map<string, number>();
function count(event: string): void {
  stats.set(event, (stats.get(event) ?? 0) + 1);
}

// ------------------------------------------------------------------------------------ model

interface Config {
  fsSeed: number;
  /** Every storage call takes an event-loop turn, so that appends and syncs interleave with writes. */
  slowFs: boolean;
  segmentSizeBytes: number;
  /** Small steps make the writer extend a segment's zero fill often: crashes and faults land in extensions. */
  segmentFillStepBytes: number;
  retainSegments: number | 'all';
  sync: SyncMode;
}

interface Rec {
  type: number;
  payload: Uint8Array;
}

interface Model {
  config: Config;
  /** LSN → record, for every acknowledged record (resolved append, covered by sync/checkpoint/close, or replayed after a reopen). */
  acked: Map<number, Rec>;
  /** LSN → the record most recently issued at that LSN (acknowledged or not); nothing above the log's end after a reopen. */
  issued: Map<number, Rec>;
  maxAcked: number;
  /** The last acknowledged checkpoint (or the one a recovery reported). */
  checkpoint: number;
  /** A corruption test ended the run. */
  ended: boolean;
  trace: string[];
}

interface Real {
  fs: SimFileSystem;
  wal: Wal;
}

type Op =
  | { kind: 'append'; payload: Uint8Array; type: number }
  | { kind: 'batch'; payloads: Uint8Array[]; type: number }
  | { kind: 'sync' }
  /** checkpoint(floor(fraction × wal.lastLsn at the call)): may name LSNs still in flight. */
  | { kind: 'checkpoint'; fraction: number };

interface Started {
  op: Op;
  /** Appends: the LSNs handed out (first > last when the call was refused synchronously). */
  first: number;
  last: number;
  /** sync: wal.lastLsn at the call; checkpoint: the LSN. */
  upTo: number;
  status: 'pending' | 'resolved' | 'rejected';
  value: unknown;
  error: unknown;
  settled: Promise<void>;
}

function newModel(config: Config): Model {
  return { config, acked: new Map(), issued: new Map(), maxAcked: 0, checkpoint: 0, ended: false, trace: [] };
}

function ack(m: Model, lsn: number, rec: Rec): void {
  m.acked.set(lsn, rec);
  if (lsn > m.maxAcked) m.maxAcked = lsn;
}

/** Everything issued at or below `upTo` is acknowledged (a sync, checkpoint or close covered it). */
function ackUpTo(m: Model, upTo: number): void {
  for (const [lsn, rec] of m.issued) {
    if (lsn <= upTo && !m.acked.has(lsn)) ack(m, lsn, rec);
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function describeOp(op: Op): string {
  switch (op.kind) {
    case 'append':
      return `append(${op.payload.length}B,t${op.type})`;
    case 'batch':
      return `batch([${op.payloads.map((p) => p.length).join(',')}]B,t${op.type})`;
    case 'sync':
      return 'sync';
    case 'checkpoint':
      return `checkpoint(${op.fraction.toFixed(2)}×last)`;
  }
}

// ------------------------------------------------------------------------------ harness

/** The SimFileSystem behind a door where every call first waits one event-loop turn. */
function slowed(fs: SimFileSystem): FileSystem {
  const later = async <T>(call: () => Promise<T>): Promise<T> => {
    await tick();
    return call();
  };
  const wrap = (handle: FileHandle): FileHandle => ({
    read: (buffer, offset, length, position) => later(() => handle.read(buffer, offset, length, position)),
    write: (data, position) => later(() => handle.write(data, position)),
    datasync: () => later(() => handle.datasync()),
    truncate: (sizeBytes) => later(() => handle.truncate(sizeBytes)),
    sizeBytes: () => later(() => handle.sizeBytes()),
    close: () => later(() => handle.close()),
  });
  return {
    open: async (path, mode) => wrap(await later(() => fs.open(path, mode))),
    readFile: (path) => later(() => fs.readFile(path)),
    readdir: (path) => later(() => fs.readdir(path)),
    mkdir: (path) => later(() => fs.mkdir(path)),
    rename: (from, to) => later(() => fs.rename(from, to)),
    unlink: (path) => later(() => fs.unlink(path)),
    exists: (path) => later(() => fs.exists(path)),
    syncDir: (path) => later(() => fs.syncDir(path)),
    lock: (path) => later(() => fs.lock(path)),
  };
}

function walOptions(config: Config, fs: SimFileSystem, extra: Partial<WalOptions> = {}): WalOptions {
  return {
    fs: config.slowFs ? slowed(fs) : fs,
    segmentSizeBytes: config.segmentSizeBytes,
    segmentFillStepBytes: config.segmentFillStepBytes,
    retainSegments: config.retainSegments,
    sync: config.sync,
    syncIntervalMs: SYNC_INTERVAL_MS,
    ...extra,
  };
}

function isSimCrash(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof SimCrashError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : JSON.stringify(error);
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Operations started one after the other without awaiting them, with a pause after each:
 * 0 none, 1–9 that many microtask turns (to land inside the Wal's chain of awaits: a group
 * being written, a sync in progress), 10 one event-loop turn.
 */
interface SpacedOp<O extends Op = Op> {
  op: O;
  gap: number;
}

async function pause(gap: number): Promise<void> {
  if (gap >= 10) await tick();
  else for (let i = 0; i < gap; i++) await Promise.resolve();
}

function describeSpaced(ops: readonly SpacedOp[]): string {
  return ops.map(({ op, gap }) => describeOp(op) + (gap === 0 ? '' : gap >= 10 ? '~' : `+${gap}`)).join(' ');
}

async function startSpaced(m: Model, r: Real, ops: readonly SpacedOp[]): Promise<Started[]> {
  const started: Started[] = [];
  for (const { op, gap } of ops) {
    started.push(startOp(m, r, op));
    await pause(gap);
  }
  return started;
}

/** Starts `op` on the Wal without awaiting it; the returned record tracks how it settles. */
function startOp(m: Model, r: Real, op: Op): Started {
  const wal = r.wal;
  const before = wal.lastLsn;
  let promise: Promise<unknown>;
  let upTo = before;
  switch (op.kind) {
    case 'append':
      promise = wal.append(op.payload, { type: op.type });
      break;
    case 'batch':
      promise = wal.appendBatch(op.payloads, { type: op.type });
      break;
    case 'sync':
      promise = wal.sync();
      break;
    case 'checkpoint':
      upTo = Math.floor(op.fraction * before);
      promise = wal.checkpoint(upTo);
      break;
  }
  const after = wal.lastLsn;
  const started: Started = { op, first: before + 1, last: after, upTo, status: 'pending', value: undefined, error: undefined, settled: Promise.resolve() };
  if (op.kind === 'append' || op.kind === 'batch') {
    const payloads = op.kind === 'append' ? [op.payload] : op.payloads;
    if (after !== before) {
      expect(after - before, `${describeOp(op)} hands out one LSN per record`).toBe(payloads.length);
      for (let index = 0; index < payloads.length; index++) {
        const lsn = before + 1 + index;
        expect(m.acked.has(lsn), `LSN ${lsn} was acknowledged before and is handed out again`).toBe(false);
        m.issued.set(lsn, { type: op.type, payload: payloads[index]! });
      }
    }
  } else {
    expect(after, `${op.kind} hands out no LSN`).toBe(before);
  }
  started.settled = promise.then(
    (value) => {
      started.status = 'resolved';
      started.value = value;
    },
    (error: unknown) => {
      started.status = 'rejected';
      started.error = error;
    },
  );
  return started;
}

/** Updates the model for a resolved operation (and checks what it resolved with). */
function applyResolved(m: Model, s: Started): void {
  if (s.status !== 'resolved') return;
  switch (s.op.kind) {
    case 'append':
      expect(s.value, 'append resolves with its LSN').toBe(s.last);
      if (m.config.sync !== 'none') for (let lsn = s.first; lsn <= s.last; lsn++) ack(m, lsn, m.issued.get(lsn)!);
      break;
    case 'batch':
      expect(s.value, 'appendBatch resolves with its LSNs').toEqual(Array.from({ length: s.last - s.first + 1 }, (_, i) => s.first + i));
      if (m.config.sync !== 'none') for (let lsn = s.first; lsn <= s.last; lsn++) ack(m, lsn, m.issued.get(lsn)!);
      break;
    case 'sync':
      ackUpTo(m, s.upTo);
      break;
    case 'checkpoint':
      // checkpoint(lsn) first makes the log durable up to lsn.
      ackUpTo(m, s.upTo);
      m.checkpoint = Math.max(m.checkpoint, s.upTo);
      break;
  }
}

async function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = SETTLE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function settleAll(started: Started[], what: string): Promise<void> {
  await withTimeout(Promise.all(started.map((s) => s.settled)), `${what} (${started.map((s) => describeOp(s.op)).join(' ')})`);
}

async function collect(iterable: AsyncIterable<WalRecord>): Promise<WalRecord[]> {
  const records: WalRecord[] = [];
  for await (const record of iterable) records.push(record);
  return records;
}

async function segmentsOnDisk(fs: SimFileSystem): Promise<{ name: string; firstLsn: number }[]> {
  const names = await fs.readdir(DIR);
  const segments: { name: string; firstLsn: number }[] = [];
  for (const name of names) {
    const firstLsn = parseSegmentFileName(name);
    if (firstLsn !== null) segments.push({ name, firstLsn });
  }
  return segments.sort((a, b) => a.firstLsn - b.firstLsn);
}

/** What a crash left after the last complete unit of the newest segment (what recovery must report as torn). */
async function tailOnDisk(fs: SimFileSystem): Promise<{ segment: string; offsetBytes: number; bytes: number } | null> {
  const newest = (await segmentsOnDisk(fs)).at(-1);
  if (newest === undefined) return null;
  const bytes = await fs.readFile(`${DIR}/${newest.name}`);
  if (bytes === null || bytes.length < SEGMENT_HEADER_SIZE_BYTES) return null;
  const scan = scanSegment(bytes, newest.firstLsn);
  const tailEnd = endOfNonZero(bytes, scan.endOffset);
  return tailEnd > scan.endOffset ? { segment: newest.name, offsetBytes: scan.endOffset, bytes: tailEnd - scan.endOffset } : null;
}

/** Cleanly closes the Wal; unless it was poisoned, close flushed and synced every append made. */
async function closeWal(m: Model, r: Real, poisoned: boolean): Promise<void> {
  const upTo = r.wal.lastLsn;
  await withTimeout(r.wal.close(), 'close');
  if (!poisoned) ackUpTo(m, upTo);
}

/**
 * The process dies: the storage call after `crashAfterOps` more mutating calls fails, and so
 * does every later one; in-flight operations settle (those that completed before resolve and are
 * acknowledged), then the machine loses power (or only the process died: mode 'process').
 */
async function crashWithInflight(
  m: Model,
  r: Real,
  inflight: readonly SpacedOp[],
  crashAfterOps: number,
  seed: number,
  mode: SimCrashMode,
): Promise<SimCrashReport> {
  r.fs.crashAfterOps(crashAfterOps);
  const started = await startSpaced(m, r, inflight);
  await settleAll(started, 'in-flight operations at a crash');
  for (const s of started) {
    count(`in flight at a crash: ${s.op.kind} ${s.status}`);
    if (s.status === 'resolved') applyResolved(m, s);
    else {
      const code = codeOf(s.error);
      expect(['FACT_WAL_POISONED', 'FACT_IO'], `${describeOp(s.op)} rejected at a crash with ${String(s.error)}`).toContain(code);
    }
  }
  // From here on the process is dead: the old Wal's close only settles its last promises.
  r.fs.crashAfterOps(0);
  await withTimeout(r.wal.close(), 'close of the crashed Wal');
  r.fs.reseed(seed);
  return r.fs.crash({ mode });
}

function reportText(report: SimCrashReport): string {
  return `${report.mode}: writes kept ${report.writesKept} torn ${report.writesTorn} dropped ${report.writesDropped}, dir ops kept ${report.dirOpsKept} dropped ${report.dirOpsDropped}`;
}

/**
 * The invariants after every open. Updates the model: maybe-records beyond the log are
 * discarded, and everything the log now holds is acknowledged (the WAL replays it as durable).
 */
async function verifyReopened(m: Model, r: Real, context: string): Promise<void> {
  const { wal, fs } = r;
  const recovery = wal.recovery;
  const lastLsn = recovery.lastLsn;
  const checkpointLsn = wal.checkpointLsn;
  count('reopen verified');
  if (recovery.tornTail) count('torn tail reported');
  if (recovery.removedTempFiles.length > 0) count('temp files removed');
  if (recovery.firstLsn > 1) count('segments deleted by checkpoints');
  if (recovery.firstLsn < Math.min(m.checkpoint, wal.checkpointLsn) + 1) count('retained range replayed');
  if ([...m.issued.keys()].some((lsn) => lsn <= recovery.lastLsn && !m.acked.has(lsn))) count('unacknowledged record kept by recovery');
  if ([...m.issued.keys()].some((lsn) => lsn > recovery.lastLsn)) count('unacknowledged record dropped by recovery');
  m.trace.push(
    `  open: lastLsn ${lastLsn}, checkpoint ${checkpointLsn}, segments ${recovery.segments}, firstLsn ${recovery.firstLsn}, torn ${JSON.stringify(recovery.tornTail)}, tmp [${recovery.removedTempFiles.join(',')}]`,
  );
  const at = (what: string) => `${context}: ${what}`;

  expect(wal.lastLsn, at('wal.lastLsn = recovery.lastLsn')).toBe(lastLsn);
  expect(recovery.checkpointLsn, at('recovery.checkpointLsn')).toBe(checkpointLsn);
  expect(lastLsn, at('recovery.lastLsn ≥ highest acknowledged LSN (an acknowledged record was lost)')).toBeGreaterThanOrEqual(m.maxAcked);
  expect(checkpointLsn, at('checkpointLsn ≥ last acknowledged checkpoint')).toBeGreaterThanOrEqual(m.checkpoint);
  expect(checkpointLsn, at('checkpointLsn ≤ lastLsn')).toBeLessThanOrEqual(lastLsn);

  // Files: no temp file left, the segments the report counts, contiguous from firstLsn.
  const names = await fs.readdir(DIR);
  expect(names.filter((name) => name.endsWith(TEMP_SUFFIX)), at('temp files are removed at open')).toEqual([]);
  const segments = await segmentsOnDisk(fs);
  expect(segments.length, at('recovery.segments')).toBe(recovery.segments);
  const newest = segments[segments.length - 1]!;
  expect(recovery.firstLsn, at('recovery.firstLsn is the oldest segment')).toBe(segments[0]!.firstLsn);
  expect(recovery.firstLsn, at('no segment holding an LSN above the checkpoint is gone')).toBeLessThanOrEqual(checkpointLsn + 1);
  if (m.config.retainSegments === 'all') expect(recovery.firstLsn, at("retainSegments 'all' keeps segment 1")).toBe(1);

  // Torn tail: reported in the newest segment, and nothing but whole units remains.
  expect(recovery.truncatedBytes > 0, at('truncatedBytes > 0 ⇔ tornTail')).toBe(recovery.tornTail !== null);
  if (recovery.tornTail !== null) {
    expect(recovery.tornTail.segment, at('torn tail is in the newest segment')).toBe(newest.name);
    expect(recovery.tornTail.bytes, at('tornTail.bytes')).toBe(recovery.truncatedBytes);
  }
  const newestBytes = await fs.readFile(`${DIR}/${newest.name}`);
  expect(newestBytes, at('newest segment readable')).not.toBeNull();
  const scan = scanSegment(newestBytes!, newest.firstLsn);
  expect(scan.lastLsn, at('the newest segment ends at lastLsn')).toBe(lastLsn);
  expect(endOfNonZero(newestBytes!, scan.endOffset), at('only zeros after the last complete unit of the newest segment')).toBe(scan.endOffset);

  // Maybe-records beyond the end of the log are gone: their LSNs will be handed out again.
  for (const lsn of [...m.issued.keys()]) if (lsn > lastLsn) m.issued.delete(lsn);

  const checkRecords = (records: WalRecord[], from: number, what: string) => {
    expect(records.length, at(`${what}: LSNs ${from}..${lastLsn}, gapless (got ${records.map((x) => x.lsn).join(',')})`)).toBe(lastLsn - from + 1);
    records.forEach((record, index) => {
      expect(record.lsn, at(`${what}: LSNs gapless and monotonic`)).toBe(from + index);
      const acked = m.acked.get(record.lsn);
      const expected = acked ?? m.issued.get(record.lsn);
      expect(expected, at(`${what}: record at LSN ${record.lsn} was never appended`)).toBeDefined();
      const kind = acked ? 'acknowledged' : 'unacknowledged';
      expect(record.type, at(`${what}: type of ${kind} LSN ${record.lsn}`)).toBe(expected!.type);
      expect(hex(record.payload), at(`${what}: bytes of ${kind} LSN ${record.lsn}`)).toBe(hex(expected!.payload));
    });
  };

  // From the older of the two checkpoints: records in between must be present too.
  const from = Math.max(recovery.firstLsn, Math.min(m.checkpoint, checkpointLsn) + 1);
  const first = await collect(wal.replay({ from }));
  const second = await collect(wal.replay({ from }));
  checkRecords(first, from, `replay({from: ${from}})`);
  expect(second.map((x) => [x.lsn, x.type, hex(x.payload)]), at('replay is deterministic')).toEqual(first.map((x) => [x.lsn, x.type, hex(x.payload)]));
  const byDefault = await collect(wal.replay());
  expect(byDefault.map((x) => x.lsn), at('replay() starts after the checkpoint')).toEqual(first.filter((x) => x.lsn > checkpointLsn).map((x) => x.lsn));

  // Retained older ranges.
  if (recovery.firstLsn < from) {
    const older = await collect(wal.replay({ from: recovery.firstLsn }));
    checkRecords(older, recovery.firstLsn, `replay of retained range from ${recovery.firstLsn}`);
    for (const record of older) {
      if (record.lsn < from) expect(m.acked.has(record.lsn), at(`retained LSN ${record.lsn} ≤ checkpoint is acknowledged`)).toBe(true);
    }
  }
  if (recovery.firstLsn > 1) {
    let code: unknown;
    try {
      await collect(wal.replay({ from: recovery.firstLsn - 1 }));
    } catch (error) {
      code = codeOf(error);
    }
    expect(code, at('replay below the oldest segment')).toBe('FACT_OUT_OF_RANGE');
  }

  // What the log holds is now acknowledged; the checkpoint the WAL reports is the checkpoint.
  for (const record of first) if (!m.acked.has(record.lsn)) ack(m, record.lsn, m.issued.get(record.lsn)!);
  m.checkpoint = checkpointLsn;
}

async function openWal(m: Model, r: Real, extra: Partial<WalOptions> = {}): Promise<void> {
  r.wal = await Wal.open(DIR, walOptions(m.config, r.fs, extra));
}

async function expectRejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`${what}: expected a rejection`);
}

// ------------------------------------------------------------------------------ commands

type Cmd = fc.AsyncCommand<Model, Real>;

abstract class WalCommand implements Cmd {
  check(m: Readonly<Model>): boolean {
    return !m.ended;
  }

  async run(m: Model, r: Real): Promise<void> {
    m.trace.push(this.toString());
    try {
      await this.exec(m, r);
    } catch (error) {
      if (error instanceof Error && !error.message.includes('\ntrace (last steps):')) {
        error.message += `\ntrace (last steps):\n${m.trace.slice(-40).join('\n')}`;
      }
      throw error;
    }
  }

  abstract exec(m: Model, r: Real): Promise<void>;
  abstract toString(): string;
}

class AppendCommand extends WalCommand {
  constructor(readonly op: Op & { kind: 'append' | 'batch' }) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    const started = startOp(m, r, this.op);
    await settleAll([started], 'append');
    expect(started.status, `${this.toString()} rejected: ${String(started.error)}`).toBe('resolved');
    applyResolved(m, started);
  }

  toString(): string {
    return describeOp(this.op);
  }
}

class ConcurrentCommand extends WalCommand {
  constructor(readonly ops: SpacedOp[]) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    const started = await startSpaced(m, r, this.ops);
    await settleAll(started, 'concurrent operations');
    for (const s of started) {
      expect(s.status, `${describeOp(s.op)} rejected: ${String(s.error)}`).toBe('resolved');
      applyResolved(m, s);
    }
  }

  toString(): string {
    return `concurrent[${describeSpaced(this.ops)}]`;
  }
}

class SyncCommand extends WalCommand {
  async exec(m: Model, r: Real): Promise<void> {
    const started = startOp(m, r, { kind: 'sync' });
    await settleAll([started], 'sync');
    expect(started.status, `sync rejected: ${String(started.error)}`).toBe('resolved');
    applyResolved(m, started);
  }

  toString(): string {
    return 'sync';
  }
}

class CheckpointCommand extends WalCommand {
  constructor(readonly fraction: number) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    const lsn = Math.floor(this.fraction * m.maxAcked);
    const before = r.wal.checkpointLsn;
    m.trace.push(`  checkpoint(${lsn})`);
    await withTimeout(r.wal.checkpoint(lsn), 'checkpoint');
    m.checkpoint = Math.max(m.checkpoint, lsn);
    expect(r.wal.checkpointLsn, 'checkpointLsn after checkpoint').toBe(m.checkpoint);
    // A checkpoint at or below the current one changes nothing (segments included).
    if (lsn <= before) return;
    // Retention: sealed segments wholly at or below the checkpoint, at most retainSegments of them.
    const segments = await segmentsOnDisk(r.fs);
    let covered = 0;
    while (covered + 1 < segments.length && segments[covered + 1]!.firstLsn - 1 <= m.checkpoint) covered++;
    const retain = m.config.retainSegments === 'all' ? Number.POSITIVE_INFINITY : m.config.retainSegments;
    expect(covered, 'segments kept at or below the checkpoint ≤ retainSegments').toBeLessThanOrEqual(retain);
    expect(segments[0]!.firstLsn, 'no segment above the checkpoint deleted').toBeLessThanOrEqual(m.checkpoint + 1);
  }

  toString(): string {
    return `checkpoint(${this.fraction.toFixed(2)}×acked)`;
  }
}

class ReopenCommand extends WalCommand {
  async exec(m: Model, r: Real): Promise<void> {
    await closeWal(m, r, false);
    await openWal(m, r);
    await verifyReopened(m, r, 'clean reopen');
  }

  toString(): string {
    return 'close+reopen';
  }
}

class CrashCommand extends WalCommand {
  constructor(
    readonly mode: SimCrashMode,
    readonly inflight: SpacedOp[],
    readonly crashAfterOps: number,
    readonly seed: number,
    /** Crash again inside the next recovery, after this many storage calls. */
    readonly recoveryCrash: { afterOps: number; seed: number } | null,
  ) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    const report = await crashWithInflight(m, r, this.inflight, this.crashAfterOps, this.seed, this.mode);
    m.trace.push(`  crash ${reportText(report)}`);
    count(`crash ${this.mode}`);
    if (report.writesTorn > 0) count('crash tore a write');
    let tail = await tailOnDisk(r.fs);
    if (this.recoveryCrash) {
      r.fs.crashAfterOps(this.recoveryCrash.afterOps);
      let failure: unknown = null;
      try {
        await openWal(m, r);
      } catch (error) {
        failure = error;
      }
      if (failure === null) {
        // Recovery needed fewer storage calls: it finished; disarm the crash.
        r.fs.crashAfterOps(Number.MAX_SAFE_INTEGER);
        m.trace.push('  recovery finished before the armed crash');
        count('recovery finished before the armed crash');
      } else {
        expect(isSimCrash(failure), `open during a crash must fail with the simulated crash, got ${errorText(failure)}`).toBe(true);
        r.fs.reseed(this.recoveryCrash.seed);
        const second = r.fs.crash();
        count('crash inside recovery');
        m.trace.push(`  crash inside recovery, then ${reportText(second)}`);
        tail = await tailOnDisk(r.fs);
        await openWal(m, r);
      }
    } else {
      await openWal(m, r);
    }
    // Rows 6–7 of the decision table: bytes after the last complete unit are a torn tail.
    expect(r.wal.recovery.tornTail, `after ${this.toString()}: the torn tail on disk is reported exactly`).toEqual(tail);
    if (tail !== null) count(`torn tail after a crash${report.writesTorn > 0 ? ' that tore a write' : ''}`);
    await verifyReopened(m, r, `after ${this.toString()}`);
  }

  toString(): string {
    const recovery = this.recoveryCrash ? ` then crash in recovery after ${this.recoveryCrash.afterOps} ops (seed ${this.recoveryCrash.seed})` : '';
    return `crash(${this.mode}, seed ${this.seed}, after ${this.crashAfterOps} ops, in flight [${describeSpaced(this.inflight)}])${recovery}`;
  }
}

class FaultCommand extends WalCommand {
  constructor(
    readonly op: 'write' | 'datasync',
    readonly error: SimFaultErrno,
    readonly after: number,
    readonly ops: SpacedOp<Op & { kind: 'append' | 'batch' }>[],
  ) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    r.fs.injectFault({ op: this.op, error: this.error, after: this.after });
    const started = await startSpaced(m, r, this.ops);
    started.push(startOp(m, r, { kind: 'sync' }));
    await settleAll(started, 'operations under an injected fault');
    r.fs.clearFaults();
    const rejected = started.filter((s) => s.status === 'rejected');
    for (const s of rejected) {
      expect(codeOf(s.error), `${describeOp(s.op)} after a failed ${this.op} rejects with FACT_WAL_POISONED (${String(s.error)})`).toBe('FACT_WAL_POISONED');
    }
    for (const s of started) applyResolved(m, s);
    const poisoned = rejected.length > 0;
    // The sync came last: it is rejected if and only if the fault fired.
    expect(started[started.length - 1]!.status, 'the final sync fails exactly when an operation did').toBe(poisoned ? 'rejected' : 'resolved');
    const probe = startOp(m, r, { kind: 'append', payload: new Uint8Array([0xfa, 0x17]), type: 9 });
    await settleAll([probe], 'append after the fault');
    // The writer extends a segment's zero fill ahead of time, after the group it follows has
    // resolved: a fault there poisons the WAL with every operation above settled.
    const poisonedInBackground =
      !poisoned && probe.status === 'rejected' && codeOf(probe.error) === 'FACT_WAL_POISONED';
    if (poisoned) {
      expect(probe.status, 'a later append is refused').toBe('rejected');
      expect(codeOf(probe.error), 'a later append rejects with FACT_WAL_POISONED').toBe('FACT_WAL_POISONED');
      m.trace.push('  poisoned');
      count(`fault fired: ${this.op}`);
    } else if (poisonedInBackground) {
      expect((probe.error as { cause?: { code?: unknown } }).cause?.code, 'the poison is the injected fault').toBe(this.error);
      m.trace.push('  poisoned by a zero-fill extension after the operations settled');
      count(`fault fired in a fill extension: ${this.op}`);
    } else {
      expect(probe.status, `append after an unfired fault: ${String(probe.error)}`).toBe('resolved');
      applyResolved(m, probe);
      m.trace.push('  fault did not fire');
      count(`fault did not fire: ${this.op}`);
    }
    await closeWal(m, r, poisoned || poisonedInBackground);
    await openWal(m, r);
    await verifyReopened(m, r, `reopen after ${this.toString()}`);
  }

  toString(): string {
    return `fault(${this.op} ${this.error} after ${this.after}) [${describeSpaced(this.ops)}] sync`;
  }
}

interface Unit {
  start: number;
  end: number;
  firstLsn: number;
}

function unitsOf(bytes: Uint8Array, firstLsn: number): { units: Unit[]; records: ReturnType<typeof scanSegment>['records'] } {
  const scan = scanSegment(bytes, firstLsn);
  const units: Unit[] = [];
  let current: Unit | null = null;
  for (const record of scan.records) {
    const start = record.payloadOffset - SEGMENT_HEADER_SIZE_BYTES;
    current ??= { start, end: start, firstLsn: record.lsn };
    current.end = record.end;
    if (record.batchRemaining === 0) {
      units.push(current);
      current = null;
    }
  }
  return { units, records: scan.records };
}

class BitFlipCommand extends WalCommand {
  constructor(
    readonly pick: number,
    readonly byte: number,
    readonly bit: number,
    readonly inHeader: boolean,
    readonly seed: number,
  ) {
    super();
  }

  async exec(m: Model, r: Real): Promise<void> {
    const checkpointLsn = r.wal.checkpointLsn;
    await closeWal(m, r, false);
    const segments = await segmentsOnDisk(r.fs);
    const contents = segments.map((segment) => r.fs.durableContent(`${DIR}/${segment.name}`)!);

    if (this.inHeader) {
      const index = this.pick % segments.length;
      const segment = segments[index]!;
      r.fs.flipBit(`${DIR}/${segment.name}`, this.byte % SEGMENT_HEADER_SIZE_BYTES, this.bit);
      r.fs.reseed(this.seed);
      r.fs.crash();
      for (const repair of [false, true]) {
        const error = await expectRejection(Wal.open(DIR, walOptions(m.config, r.fs, { repair })), 'open with a damaged segment header');
        expect(codeOf(error), `damaged header: ${String(error)}`).toBe('FACT_WAL_CORRUPTION');
        expect((error as Error).message, 'the error names the segment').toContain(segment.name);
      }
      count('bit flip: segment header');
      m.ended = true;
      return;
    }

    // Units whose damage is provably in acknowledged data (see the known residual): in a sealed
    // segment, attested by a later record's durable LSN, or at or below the checkpoint.
    const candidates: { segment: number; unit: Unit; kind: 'needed' | 'retained' | 'checkpointed' }[] = [];
    segments.forEach((segment, index) => {
      const { units, records } = unitsOf(contents[index]!, segment.firstLsn);
      const next = segments[index + 1];
      if (next) {
        const kind = next.firstLsn - 1 > checkpointLsn ? 'needed' : 'retained';
        for (const unit of units) candidates.push({ segment: index, unit, kind });
      } else {
        for (const unit of units) {
          if (records.some((record) => record.lsn > unit.firstLsn && record.payloadOffset > unit.end && record.durableLsn >= unit.firstLsn)) {
            candidates.push({ segment: index, unit, kind: 'needed' });
          } else if (unit.firstLsn <= checkpointLsn) {
            // Row 9: the log would end below the checkpoint.
            candidates.push({ segment: index, unit, kind: 'checkpointed' });
          }
        }
      }
    });
    if (candidates.length === 0) {
      m.trace.push('  no attested record to damage');
      count('bit flip: no candidate');
      await openWal(m, r);
      await verifyReopened(m, r, 'reopen (no bit flip)');
      return;
    }
    const target = candidates[this.pick % candidates.length]!;
    count(`bit flip: ${target.kind} ${target.segment === segments.length - 1 ? 'newest' : 'sealed'} segment`);
    const segment = segments[target.segment]!;
    const offset = target.unit.start + (this.byte % (target.unit.end - target.unit.start));
    m.trace.push(`  flip bit ${this.bit} of byte ${offset} in ${segment.name} (unit at ${target.unit.start}, LSN ${target.unit.firstLsn}, ${target.kind})`);
    r.fs.flipBit(`${DIR}/${segment.name}`, offset, this.bit);
    r.fs.reseed(this.seed);
    r.fs.crash();

    const expectNamed = (error: unknown, what: string) => {
      expect(codeOf(error), `${what}: ${String(error)}`).toBe('FACT_WAL_CORRUPTION');
      const message = (error as Error).message;
      expect(message, `${what}: names the segment`).toContain(segment.name);
      expect(message, `${what}: names the offset`).toContain(`offset ${target.unit.start}`);
      expect((error as { details?: Record<string, unknown> }).details, `${what}: details`).toMatchObject({ segment: segment.name, offsetBytes: target.unit.start });
    };

    if (target.kind === 'retained') {
      // Retained segments are checked when replay reads them.
      await openWal(m, r);
      const error = await expectRejection(collect(r.wal.replay({ from: segment.firstLsn })), 'replay over a damaged retained segment');
      expectNamed(error, 'replay over a damaged retained segment');
      await r.wal.close();
      m.ended = true;
      return;
    }

    const error = await expectRejection(Wal.open(DIR, walOptions(m.config, r.fs)), 'open with damaged acknowledged data');
    if (target.kind === 'checkpointed') {
      expect(codeOf(error), `open: ${String(error)}`).toBe('FACT_WAL_CORRUPTION');
      expect((error as { details?: Record<string, unknown> }).details, 'row 9 details').toEqual({ lastLsn: target.unit.firstLsn - 1, checkpointLsn });
      const bytes = await r.fs.readFile(`${DIR}/${segment.name}`);
      expect(hex(bytes!), 'row 9 without repair leaves the segment as it is').toBe(hex(r.fs.durableContent(`${DIR}/${segment.name}`)!));
      expect(bytes![offset], 'the damaged byte is still there').not.toBe(contents[target.segment]![offset]);
    } else {
      expectNamed(error, 'open');
    }
    await openWal(m, r, { repair: true });
    const repair = r.wal.recovery.repair;
    expect(repair, 'repair report').not.toBeNull();
    expect(repair!.segment, 'repair.segment').toBe(segment.name);
    expect(repair!.offsetBytes, 'repair.offsetBytes').toBe(target.unit.start);
    expect(repair!.droppedFromLsn, 'repair.droppedFromLsn').toBe(target.unit.firstLsn);
    expect(repair!.droppedBytes, 'repair.droppedBytes').toBeGreaterThan(0);
    expect([...repair!.deletedSegments].sort(), 'repair.deletedSegments').toEqual(segments.slice(target.segment + 1).map((s) => s.name));
    const lowered = checkpointLsn >= target.unit.firstLsn;
    if (lowered) count('bit flip: repair lowered the checkpoint');
    expect(repair!.checkpointLoweredFrom, 'repair.checkpointLoweredFrom').toBe(lowered ? checkpointLsn : null);
    // The model loses everything from the damaged unit on.
    for (const lsn of [...m.issued.keys()]) if (lsn >= target.unit.firstLsn) m.issued.delete(lsn);
    for (const lsn of [...m.acked.keys()]) if (lsn >= target.unit.firstLsn) m.acked.delete(lsn);
    m.maxAcked = Math.min(m.maxAcked, target.unit.firstLsn - 1);
    m.checkpoint = Math.min(m.checkpoint, target.unit.firstLsn - 1);
    await verifyReopened(m, r, 'after repair');
    // The repaired log opens cleanly without repair.
    await closeWal(m, r, false);
    await openWal(m, r);
    expect(r.wal.recovery.repair, 'no repair needed after a repair').toBeNull();
    await verifyReopened(m, r, 'reopen after repair');
  }

  toString(): string {
    return this.inHeader
      ? `bitflip(header of segment #${this.pick}, byte ${this.byte}, bit ${this.bit}, seed ${this.seed})`
      : `bitflip(unit #${this.pick}, byte ${this.byte}, bit ${this.bit}, seed ${this.seed})`;
  }
}

// ----------------------------------------------------------------------------- arbitraries

const typeArb = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) }, { weight: 1, arbitrary: fc.constant(0) });
// Empty and zero-heavy payloads too: zeros at the end of the log must not read as the end.
const payloadArb = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 300, size: 'max' }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 1, arbitrary: fc.uint8Array({ max: 1, maxLength: 300, size: 'max' }) },
);
const appendOpArb = fc.record({ kind: fc.constant('append' as const), payload: payloadArb, type: typeArb });
const batchOpArb = fc.record({
  kind: fc.constant('batch' as const),
  payloads: fc.array(payloadArb, { minLength: 1, maxLength: 8, size: 'max' }),
  type: typeArb,
});
const fractionArb = fc
  .oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 100 }) }, { weight: 1, arbitrary: fc.constant(100) })
  .map((percent) => percent / 100);
const writeOpArb = fc.oneof({ weight: 3, arbitrary: appendOpArb }, { weight: 1, arbitrary: batchOpArb });
const anyOpArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: appendOpArb },
  { weight: 3, arbitrary: batchOpArb },
  { weight: 1, arbitrary: fc.constant({ kind: 'sync' as const }) },
  { weight: 1, arbitrary: fractionArb.map((fraction) => ({ kind: 'checkpoint' as const, fraction })) },
);
const seedArb = fc.integer({ min: 0, max: 0x7fffffff });
function spacedArb<O extends Op>(opArb: fc.Arbitrary<O>): fc.Arbitrary<SpacedOp<O>> {
  const gapArb = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 9 }) }, { weight: 1, arbitrary: fc.constant(10) });
  return fc.record({ op: opArb, gap: gapArb });
}

const commandArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: writeOpArb.map((op) => new AppendCommand(op)) },
  {
    weight: 6,
    arbitrary: fc
      .array(spacedArb(anyOpArb), { minLength: 2, maxLength: 16, size: 'max' })
      .map((ops) => new ConcurrentCommand(ops)),
  },
  { weight: 2, arbitrary: fc.constant(null).map(() => new SyncCommand()) },
  { weight: 3, arbitrary: fractionArb.map((fraction) => new CheckpointCommand(fraction)) },
  { weight: 2, arbitrary: fc.constant(null).map(() => new ReopenCommand()) },
  {
    weight: 5,
    arbitrary: fc
      .record({
        mode: fc.oneof({ weight: 3, arbitrary: fc.constant('power-loss' as const) }, { weight: 1, arbitrary: fc.constant('process' as const) }),
        inflight: fc.array(spacedArb(anyOpArb), { maxLength: 8, size: 'max' }),
        crashAfterOps: fc.integer({ min: 0, max: 12 }),
        seed: seedArb,
      })
      .map(({ mode, inflight, crashAfterOps, seed }) => new CrashCommand(mode, inflight, crashAfterOps, seed, null)),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        inflight: fc.array(spacedArb(anyOpArb), { maxLength: 8, size: 'max' }),
        crashAfterOps: fc.integer({ min: 0, max: 12 }),
        seed: seedArb,
        afterOps: fc.integer({ min: 0, max: 6 }),
        recoverySeed: seedArb,
      })
      .map(
        ({ inflight, crashAfterOps, seed, afterOps, recoverySeed }) =>
          new CrashCommand('power-loss', inflight, crashAfterOps, seed, { afterOps, seed: recoverySeed }),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        op: fc.constantFrom('write' as const, 'datasync' as const),
        error: fc.constantFrom('EIO' as const, 'ENOSPC' as const),
        after: fc.integer({ min: 0, max: 3 }),
        ops: fc.array(spacedArb(writeOpArb), { minLength: 1, maxLength: 6, size: 'max' }),
      })
      .map(({ op, error, after, ops }) => new FaultCommand(op, op === 'datasync' ? 'EIO' : error, after, ops)),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        pick: fc.nat(1000),
        byte: fc.nat(100_000),
        bit: fc.integer({ min: 0, max: 7 }),
        inHeader: fc.oneof({ weight: 1, arbitrary: fc.constant(true) }, { weight: 5, arbitrary: fc.constant(false) }),
        seed: seedArb,
      })
      .map(({ pick, byte, bit, inHeader, seed }) => new BitFlipCommand(pick, byte, bit, inHeader, seed)),
  },
);

const configArb: fc.Arbitrary<Config> = fc.record({
  fsSeed: seedArb,
  slowFs: fc.boolean(),
  segmentSizeBytes: fc.integer({ min: 1024, max: 4096 }),
  segmentFillStepBytes: fc.oneof(fc.integer({ min: 64, max: 1024 }), fc.constant(SEGMENT_FILL_STEP_BYTES)),
  retainSegments: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant('all' as const)),
  sync: fc.oneof(
    { weight: 6, arbitrary: fc.constant('always' as const) },
    { weight: 2, arbitrary: fc.constant('interval' as const) },
    { weight: 2, arbitrary: fc.constant('none' as const) },
  ),
});

// ----------------------------------------------------------------------------------- tests

describe('WAL model-based crash injection (fast-check)', () => {
  afterAll(() => {
    if (process.env.FACT_WAL_STATS === '1') {
      console.log([...stats].sort(([a], [b]) => a.localeCompare(b)).map(([event, n]) => `${String(n).padStart(6)}  ${event}`).join('\n'));
    }
  });

  it(
    'keeps every acknowledged record through crashes, faults and reopens; never invents one; reports damage',
    async () => {
      await fc.assert(
        fc.asyncProperty(configArb, fc.commands([commandArb], { maxCommands: 30, size: 'max' }), async (config, commands) => {
          const model = newModel(config);
          const real: Real = { fs: new SimFileSystem({ seed: config.fsSeed }), wal: undefined as unknown as Wal };
          model.trace.push(`config ${JSON.stringify(config)}`);
          try {
            await fc.asyncModelRun(async () => {
              await openWal(model, real);
              await verifyReopened(model, real, 'first open');
              return { model, real };
            }, commands);
            if (!model.ended) {
              // Finally: close, lose power, and everything acknowledged is still there.
              await closeWal(model, real, false);
              real.fs.reseed(config.fsSeed);
              real.fs.crash();
              await openWal(model, real);
              await verifyReopened(model, real, 'final reopen after power loss');
            }
          } finally {
            await real.wal?.close().catch(() => undefined);
          }
        }),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 1_000),
  );
});

// ------------------------------------------------------- crash at every storage call site

const EXHAUSTIVE_CONFIG: Config = { fsSeed: 1, slowFs: false, segmentSizeBytes: 1024, segmentFillStepBytes: 128, retainSegments: 1, sync: 'always' };
const EXHAUSTIVE_CRASH_SEEDS = [1, 2, 3, 4, 5, 6];

/** What the fixed scenario got acknowledged before it died. */
interface ScenarioLog {
  wal: Wal | null;
  issued: Map<number, Rec>;
  acked: Map<number, Rec>;
  checkpoint: number;
}

/** Deterministic payloads of varied sizes; every fifth ends in zeros. */
function scenarioPayload(index: number): Uint8Array {
  const payload = new Uint8Array(40 + ((index * 67) % 230));
  for (let i = 0; i < payload.length; i++) payload[i] = (index * 31 + i * 7 + 1) & 0xff;
  if (index % 5 === 0) payload.fill(0, payload.length - 8);
  return payload;
}

/** Open, appends and batches (some concurrent) over several segments, two checkpoints that delete segments, close. */
async function runScenario(fs: SimFileSystem, log: ScenarioLog): Promise<void> {
  const wal = await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, fs));
  log.wal = wal;
  let next = 0;
  // One unit: all its records have one type.
  const issue = (count: number) => {
    const records: Rec[] = [];
    const type = (next * 13) % 256;
    for (let i = 0; i < count; i++) records.push({ type, payload: scenarioPayload(next++) });
    const first = wal.lastLsn + 1;
    records.forEach((record, i) => log.issued.set(first + i, record));
    return { first, records };
  };
  const append = async () => {
    const { first, records } = issue(1);
    const lsn = await wal.append(records[0]!.payload, { type: records[0]!.type });
    expect(lsn).toBe(first);
    log.acked.set(lsn, records[0]!);
  };
  const batch = async (count: number) => {
    const { first, records } = issue(count);
    const lsns = await wal.appendBatch(
      records.map((record) => record.payload),
      { type: records[0]!.type },
    );
    expect(lsns[0]).toBe(first);
    lsns.forEach((lsn, i) => log.acked.set(lsn, records[i]!));
  };
  const checkpoint = async (lsn: number) => {
    await wal.checkpoint(lsn);
    log.checkpoint = Math.max(log.checkpoint, lsn);
  };
  for (let i = 0; i < 4; i++) await append();
  await batch(3);
  await Promise.all([append(), append(), batch(2), append()]);
  await checkpoint(5);
  for (let i = 0; i < 4; i++) await append();
  await batch(4);
  await checkpoint(wal.lastLsn - 2);
  await Promise.all([append(), batch(3)]);
  await wal.sync();
  await wal.close();
}

function modelOf(log: ScenarioLog): Model {
  const model = newModel(EXHAUSTIVE_CONFIG);
  for (const [lsn, rec] of log.issued) model.issued.set(lsn, rec);
  for (const [lsn, rec] of log.acked) ack(model, lsn, rec);
  model.checkpoint = log.checkpoint;
  return model;
}

describe('WAL: crash at every storage call site of a fixed scenario', () => {
  it(
    'recovers every acknowledged record, after power loss (several seeds), process crash, and a crash inside recovery',
    async () => {
      const baseline = new SimFileSystem({ seed: 1 });
      const clean: ScenarioLog = { wal: null, issued: new Map(), acked: new Map(), checkpoint: 0 };
      await runScenario(baseline, clean);
      const total = baseline.opCount;
      expect(total, 'the scenario makes storage calls').toBeGreaterThan(50);
      expect((await segmentsOnDisk(baseline)).length, 'checkpoints deleted segments, rotation made new ones').toBeGreaterThan(1);

      for (let n = 0; n <= total; n++) {
        const fs = new SimFileSystem({ seed: 1 });
        fs.crashAfterOps(n);
        const log: ScenarioLog = { wal: null, issued: new Map(), acked: new Map(), checkpoint: 0 };
        let failure: unknown = null;
        try {
          await runScenario(fs, log);
        } catch (error) {
          failure = error;
        }
        const where = `crash before storage call #${n} of ${total}`;
        if (failure !== null) expect(isSimCrash(failure), `${where}: the scenario fails only by the crash: ${errorText(failure)}`).toBe(true);
        fs.crashAfterOps(0);
        if (log.wal) await withTimeout(log.wal.close(), `${where}: close of the crashed Wal`);

        for (const seed of EXHAUSTIVE_CRASH_SEEDS) {
          const disk = fs.clone();
          disk.reseed(seed);
          disk.crash();
          const model = modelOf(log);
          const real: Real = { fs: disk, wal: await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, disk)) };
          await verifyReopened(model, real, `${where}, power loss seed ${seed}`);
          await real.wal.close();
        }

        // Only the process died; then (no new sync) one more append, and the power goes out.
        {
          const disk = fs.clone();
          disk.crash({ mode: 'process' });
          const model = modelOf(log);
          const real: Real = { fs: disk, wal: await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, disk)) };
          await verifyReopened(model, real, `${where}, process crash`);
          const extra = { type: 7, payload: scenarioPayload(999) };
          const lsn = await real.wal.append(extra.payload, { type: extra.type });
          model.issued.set(lsn, extra);
          ack(model, lsn, extra);
          disk.reseed(n + 1);
          disk.crash();
          real.wal = await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, disk));
          await verifyReopened(model, real, `${where}, process crash, append, then power loss`);
          await real.wal.close();
        }

        // A crash inside recovery, at each of its storage calls, then power loss again.
        for (let k = 0; k < 32; k++) {
          const disk = fs.clone();
          disk.reseed(n + 7);
          disk.crash();
          disk.crashAfterOps(k);
          const model = modelOf(log);
          const real: Real = { fs: disk, wal: undefined as unknown as Wal };
          let opened = true;
          try {
            real.wal = await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, disk));
          } catch (error) {
            expect(isSimCrash(error), `${where}, crash in recovery after ${k} calls: ${String(error)}`).toBe(true);
            opened = false;
            disk.reseed(k + 11);
            disk.crash();
            real.wal = await Wal.open(DIR, walOptions(EXHAUSTIVE_CONFIG, disk));
          }
          if (opened) disk.crashAfterOps(Number.MAX_SAFE_INTEGER);
          await verifyReopened(model, real, `${where}, crash in recovery after ${k} calls`);
          await real.wal.close();
          if (opened) break;
        }
      }
    },
    120_000,
  );
});
