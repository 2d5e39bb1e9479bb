/**
 * Real-process crash test of the WAL: a child process (test/fixtures/wal-kill-child.ts) appends
 * with sync 'always' from concurrent writers and reports every acknowledged LSN; the parent kills
 * it with SIGKILL at a random moment, reopens the WAL in-process (through the dead child's stale
 * LOCK) and checks that every acknowledged record is there with its exact bytes, that LSNs are
 * gapless, and that nothing exists the child did not try to append. Then the next child continues
 * the same log.
 *
 * FACT_SEED=<n> replays the random choices (kill delays, record shapes; not the OS timing).
 * FACT_KILL_RUNS=<n> sets the number of kills (default 20).
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isFactError } from '../src/errors.js';
import { Wal } from '../src/wal/index.js';
import type { WalRecoveryReport } from '../src/wal/index.js';
import type { RecordId } from './fixtures/wal-kill-payload.js';
import { KILL_SEGMENT_SIZE_BYTES, decodePayload, idKey, unitCount, unitType } from './fixtures/wal-kill-payload.js';
import { mulberry32 } from '../src/wal/prng.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const childScript = join(here, 'fixtures', 'wal-kill-child.ts');

const KILL_RUNS = Number.parseInt(process.env.FACT_KILL_RUNS ?? '20', 10);
const SEED = process.env.FACT_SEED !== undefined ? Number.parseInt(process.env.FACT_SEED, 10) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
/** Kills per WAL directory; each reopen verifies the whole log, so this bounds its growth. */
const KILL_RUNS_PER_DIR = 25;
const KILL_DELAY_MIN_MS = 20;
const KILL_DELAY_MAX_MS = 150;
const READY_TIMEOUT_MS = 20_000;
/** Generous: a kill round takes ~1 s on a laptop (child start-up with tsx, appends, reopen). */
const KILL_TEST_TIMEOUT_MS = 60_000 + KILL_RUNS * 3_000;


interface Ready {
  pid: number;
  lastLsn: number;
  truncatedBytes: number;
}

interface Ack {
  writer: number;
  seq: number;
  lastLsn: number;
}

/** One child process and what it said; only complete lines count (a partial last line is dropped). */
class Child {
  readonly process: ChildProcessWithoutNullStreams;
  readonly acks: Ack[] = [];
  readonly ready: Promise<Ready>;
  /** Resolves after the process exited and its stdout/stderr are fully read. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  readonly protocolErrors: string[] = [];
  #partial = '';

  constructor(dir: string, run: number) {
    this.process = spawn(process.execPath, ['--import', 'tsx', childScript, dir, String(run), String(SEED)], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this);
    let onReady!: (ready: Ready) => void;
    let onNotReady!: (error: Error) => void;
    this.ready = new Promise<Ready>((resolve, reject) => {
      onReady = resolve;
      onNotReady = reject;
    });
    this.ready.catch(() => undefined);
    this.process.stdout.setEncoding('utf8');
    this.process.stderr.setEncoding('utf8');
    this.process.stderr.on('data', (chunk: string) => (this.stderr += chunk));
    this.process.stdout.on('data', (chunk: string) => {
      const lines = (this.#partial + chunk).split('\n');
      this.#partial = lines.pop()!;
      for (const line of lines) {
        const fields = line.split(' ');
        const numbers = fields.slice(1).map(Number);
        if (fields[0] === 'ready' && numbers.length === 3) {
          onReady({ pid: numbers[0]!, lastLsn: numbers[1]!, truncatedBytes: numbers[2]! });
        } else if (fields[0] === 'ack' && numbers.length === 3) {
          this.acks.push({ writer: numbers[0]!, seq: numbers[1]!, lastLsn: numbers[2]! });
        } else {
          this.protocolErrors.push(`child ${run} printed an unexpected line: ${JSON.stringify(line)}`);
          onNotReady(new Error(this.protocolErrors[0]));
        }
      }
    });
    this.closed = new Promise((resolve) => {
      this.process.on('close', (code, signal) => {
        live.delete(this);
        onNotReady(new Error(`child ${run} exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${this.stderr}`));
        resolve({ code, signal });
      });
    });
  }

  async waitReady(): Promise<Ready> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`child not ready after ${READY_TIMEOUT_MS} ms; stderr:\n${this.stderr}`)), READY_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL, then wait until it is reaped (so its pid is dead) and its output is read. */
  async kill(): Promise<void> {
    this.process.kill('SIGKILL');
    const { code, signal } = await this.closed;
    if (signal !== 'SIGKILL') {
      throw new Error(`child ended by itself before the kill (code ${code}, signal ${signal}); stderr:\n${this.stderr}`);
    }
    if (this.protocolErrors.length > 0) throw new Error(this.protocolErrors.join('\n'));
  }
}

const live = new Set<Child>();
const tempDirs: string[] = [];

afterEach(async () => {
  for (const child of live) {
    child.process.kill('SIGKILL');
    await child.closed;
  }
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'factstore-wal-kill-'));
  tempDirs.push(dir);
  return dir;
}

function openOptions() {
  return { sync: 'always' as const, segmentSizeBytes: KILL_SEGMENT_SIZE_BYTES };
}

/** What the parent knows about the log in its directory, across kills. */
class Model {
  /** Identity key of the record at LSN i + 1, as last verified. */
  log: string[] = [];
  /** Every acknowledged LSN ever reported, and the identity it was acknowledged for. */
  readonly acked = new Map<number, string>();
  ackedUnits = 0;
  tornTails = 0;
  truncatedBytes = 0;
  removedTempFiles = 0;
  unacknowledgedButPresent = 0;
  segments = 0;

  /** Keeps the running statistics of a previous directory's model. */
  carryStatsFrom(other: Model): void {
    this.ackedUnits = other.ackedUnits;
    this.tornTails = other.tornTails;
    this.truncatedBytes = other.truncatedBytes;
    this.removedTempFiles = other.removedTempFiles;
    this.unacknowledgedButPresent = other.unacknowledgedButPresent;
  }

  /** Records what child `run` acknowledged; returns the highest acknowledged seq per writer. */
  addAcks(run: number, startLsn: number, acks: Ack[]): Map<number, number> {
    const maxSeq = new Map<number, number>();
    for (const ack of acks) {
      const count = unitCount(SEED, run, ack.writer, ack.seq);
      const firstLsn = ack.lastLsn - count + 1;
      expect(firstLsn, `ack ${JSON.stringify(ack)} of run ${run} is at or below the log it started from (${startLsn})`).toBeGreaterThan(startLsn);
      for (let index = 0; index < count; index++) {
        const key = idKey({ run, writer: ack.writer, seq: ack.seq, index, count });
        const lsn = firstLsn + index;
        const earlier = this.acked.get(lsn);
        if (earlier !== undefined && earlier !== key) throw new Error(`LSN ${lsn} acknowledged twice: for ${earlier} and for ${key}`);
        this.acked.set(lsn, key);
      }
      maxSeq.set(ack.writer, Math.max(maxSeq.get(ack.writer) ?? -1, ack.seq));
      this.ackedUnits++;
    }
    return maxSeq;
  }

  /**
   * Reopens the WAL in this process and checks it against everything known. `run` is the child
   * that wrote since the last verification (null for none), `startLsn` the last LSN it started from.
   */
  async verify(dir: string, run: number | null, startLsn: number, maxAckedSeq: Map<number, number>): Promise<WalRecoveryReport> {
    const wal = await Wal.open(dir, openOptions());
    try {
      const recovery = wal.recovery;
      expect(recovery.firstLsn).toBe(1);
      expect(recovery.checkpointLsn).toBe(0);
      expect(recovery.repair).toBeNull();
      expect(recovery.lastLsn, 'the log shrank below what an earlier reopen verified').toBeGreaterThanOrEqual(this.log.length);
      if (recovery.tornTail) this.tornTails++;
      this.truncatedBytes += recovery.truncatedBytes;
      this.removedTempFiles += recovery.removedTempFiles.length;

      const keys: string[] = [];
      const seen = new Set<string>();
      /** Per writer of `run`: the unit being read and where the next record of it must be. */
      const cursor = new Map<number, { seq: number; index: number; count: number; lsn: number }>();
      for await (const record of wal.replay({ from: 1 })) {
        const lsn = keys.length + 1;
        expect(record.lsn, 'LSNs are gapless from 1').toBe(lsn);
        const id: RecordId | string = decodePayload(SEED, record.payload);
        if (typeof id === 'string') throw new Error(`LSN ${lsn}: garbage payload (${record.payload.length} bytes): ${id}`);
        const key = idKey(id);
        expect(record.type, `LSN ${lsn} (${key}): record type`).toBe(unitType(SEED, id.run, id.writer, id.seq));
        if (seen.has(key)) throw new Error(`LSN ${lsn}: ${key} is in the log twice`);
        seen.add(key);
        keys.push(key);

        if (lsn <= this.log.length) {
          if (this.log[lsn - 1] !== key) throw new Error(`LSN ${lsn} was ${this.log[lsn - 1]} at the previous reopen, now ${key}`);
          continue;
        }
        // A record beyond what was verified before: written by `run`, in its writer's order.
        if (id.run !== run) throw new Error(`LSN ${lsn}: ${key} is from run ${id.run}, but only run ${run} wrote since LSN ${this.log.length}`);
        const at = cursor.get(id.writer);
        const expected =
          at === undefined ? { seq: 0, index: 0 } : at.index + 1 < at.count ? { seq: at.seq, index: at.index + 1 } : { seq: at.seq + 1, index: 0 };
        if (id.seq !== expected.seq || id.index !== expected.index || (at !== undefined && id.index > 0 && at.lsn !== lsn - 1)) {
          throw new Error(
            `LSN ${lsn}: ${key} out of order: writer ${id.writer} of run ${run} should continue with seq ${expected.seq} record ${expected.index}` +
              (at ? ` (its previous record is at LSN ${at.lsn})` : ''),
          );
        }
        if (id.seq > (maxAckedSeq.get(id.writer) ?? -1) + 1) {
          throw new Error(`LSN ${lsn}: ${key} was never tried: writer ${id.writer} only had seq ${maxAckedSeq.get(id.writer) ?? -1} acknowledged`);
        }
        cursor.set(id.writer, { seq: id.seq, index: id.index, count: id.count, lsn });
        if (!this.acked.has(lsn)) this.unacknowledgedButPresent++;
      }
      expect(keys.length, 'replay ends at recovery.lastLsn').toBe(recovery.lastLsn);
      for (const [writer, at] of cursor) {
        if (at.index + 1 !== at.count) throw new Error(`writer ${writer} of run ${run}: unit seq ${at.seq} is torn (${at.index + 1} of ${at.count} records)`);
      }
      for (const [lsn, key] of this.acked) {
        if (lsn > keys.length) throw new Error(`acknowledged LSN ${lsn} (${key}) is lost: the log ends at LSN ${keys.length}`);
        if (keys[lsn - 1] !== key) throw new Error(`acknowledged LSN ${lsn} should be ${key}, is ${keys[lsn - 1]}`);
      }
      expect(startLsn).toBeLessThanOrEqual(keys.length);
      this.log = keys;
      this.segments = recovery.segments;
      return recovery;
    } finally {
      await wal.close();
    }
  }
}

function withSeed<T>(body: () => Promise<T>): () => Promise<T> {
  return async () => {
    try {
      return await body();
    } catch (error) {
      if (error instanceof Error) error.message = `${error.message}\n[wal-kill seed ${SEED}: replay with FACT_SEED=${SEED}]`;
      throw error;
    }
  };
}

describe('WAL under SIGKILL (real processes)', () => {
  it(
    `keeps every acknowledged record across ${KILL_RUNS} kills of a process appending concurrently (seed ${SEED})`,
    withSeed(async () => {
      const random = mulberry32(SEED);
      let dir = '';
      let lockPath = '';
      let model = new Model();
      let runsWithAcks = 0;
      const totals = { ackedRecords: 0, records: 0, segments: 0 };
      const finishDir = async () => {
        // A final clean reopen sees exactly the same log.
        const lastLsn = model.log.length;
        await model.verify(dir, null, lastLsn, new Map());
        expect(model.log.length).toBe(lastLsn);
        expect(model.segments, 'segments rotated during the test').toBeGreaterThan(1);
        totals.ackedRecords += model.acked.size;
        totals.records += lastLsn;
        totals.segments += model.segments;
      };

      for (let run = 1; run <= KILL_RUNS; run++) {
        // Verification rereads the whole log, so a long run starts a new log now and then.
        if ((run - 1) % KILL_RUNS_PER_DIR === 0) {
          if (run > 1) await finishDir();
          const stats = model;
          dir = await tempDir();
          lockPath = join(dir, 'LOCK');
          model = new Model();
          model.carryStatsFrom(stats);
        }
        const child = new Child(dir, run);
        const ready = await child.waitReady();
        expect(ready.pid, 'the child is the process we spawned (no wrapper)').toBe(child.process.pid);
        expect(ready.lastLsn, 'the child starts where the last clean close left the log').toBe(model.log.length);
        expect(ready.truncatedBytes).toBe(0);

        const delayMs = KILL_DELAY_MIN_MS + Math.floor(random() * (KILL_DELAY_MAX_MS - KILL_DELAY_MIN_MS + 1));
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        await child.kill();

        // The dead child's lock is still there: reopening must treat it as stale.
        expect(readFileSync(lockPath, 'utf8'), 'the killed child left its LOCK behind').toBe(`${ready.pid}\n`);
        const maxAckedSeq = model.addAcks(run, ready.lastLsn, child.acks);
        if (child.acks.length > 0) runsWithAcks++;
        await model.verify(dir, run, ready.lastLsn, maxAckedSeq);
        expect(existsSync(lockPath), 'close releases the lock').toBe(false);
      }

      await finishDir();

      console.log(
        `wal-kill seed ${SEED}: ${KILL_RUNS} kills, ${runsWithAcks} with acks, ${model.ackedUnits} units / ${totals.ackedRecords} records acknowledged, ` +
          `${totals.records} records in ${totals.segments} segments, ${model.unacknowledgedButPresent} present but unacknowledged, ` +
          `${model.tornTails} torn tails (${model.truncatedBytes} bytes), ${model.removedTempFiles} temp files removed`,
      );
      expect(runsWithAcks, 'most kills happen while the child is acknowledging appends').toBeGreaterThan(KILL_RUNS / 2);
    }),
    KILL_TEST_TIMEOUT_MS,
  );

  it(
    'refuses a second process while the child holds the WAL (FACT_LOCKED naming its pid), then takes over its stale lock',
    withSeed(async () => {
      const dir = await tempDir();
      const lockPath = join(dir, 'LOCK');
      const child = new Child(dir, 1);
      const ready = await child.waitReady();

      let error: unknown;
      try {
        const wal = await Wal.open(dir, openOptions());
        await wal.close();
      } catch (caught) {
        error = caught;
      }
      expect(isFactError(error, 'FACT_LOCKED'), `expected FACT_LOCKED, got ${String(error)}`).toBe(true);
      if (!isFactError(error)) throw new Error('unreachable');
      expect(error.message).toMatch(new RegExp(`\\b${ready.pid}\\b`));
      expect(error.details.pid).toBe(ready.pid);
      // The refused open left the child's lock alone, and the child kept running.
      expect(readFileSync(lockPath, 'utf8')).toBe(`${ready.pid}\n`);
      expect(child.process.exitCode).toBeNull();

      await child.kill();
      const model = new Model();
      const maxAckedSeq = model.addAcks(1, 0, child.acks);
      await model.verify(dir, 1, 0, maxAckedSeq);
      expect(existsSync(lockPath)).toBe(false);
    }),
  );
});
