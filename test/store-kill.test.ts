/**
 * Real-process crash test of the whole database: a child process (test/fixtures/store-kill-child.ts,
 * bundled once with esbuild and run with plain node) runs FactStore on classic-level and the real
 * file system with small segments and frequent checkpoints: concurrent appends, appendStream
 * with right and wrong expectations, DCB conditional appends, decide(), idempotent retries by
 * caller id (also of units from earlier, killed children), appends with a consumer's ack, a
 * durable consumer, and now and then rebuildIndexes() or verify(). It reports each submission
 * before making it and each result once it settled. The parent kills it with SIGKILL at a random
 * moment (while it opens, a random time after, or after a random amount of progress); 1 to
 * KILLS_PER_CHECK_MAX children in a row, each recovering from the kill before, then the parent
 * reopens in-process and checks the issue's invariants 1–7 and the consumers' positions against
 * everything those children said. Two kill chains run in parallel directories; the next child of
 * a chain is spawned while the current one runs, so its start-up is off the critical path.
 *
 * Every sync mode keeps what it acknowledged here: SIGKILL kills the process, not the machine, so
 * the page cache survives and 'none' (which resolves after the write to it) loses nothing either.
 * Power loss is the simulated suites' job (property-tests/store-crash.property.test.ts).
 *
 * FACT_SEED=<n> replays the random choices (kill delays, workloads; not the OS timing).
 * FACT_STORE_KILL_RUNS=<n> sets the number of kills (default 100).
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Level } from 'level';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FactStore, Query, isFactError } from '../src/index.js';
import type { RecordedEvent, StreamExpectation } from '../src/index.js';
import { Mulberry32 } from '../src/wal/prng.js';
import type { ChildLine, GoMessage, KillSyncMode, UnitShape } from './fixtures/store-kill-workload.js';
import {
  CHECKED_TAGS,
  CHECKED_TYPES,
  KILL_CONSUMER,
  KILL_DATA_FIELD,
  KILL_STORE_WRITERS,
  K_QUERY_VALUES,
  expectedEvent,
  hash,
  oracleMatches,
  parseEventKey,
  readEvent,
  shapeOfKey,
  slotTag,
  storeOptions,
  toQuery,
} from './fixtures/store-kill-workload.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const childSource = join(here, 'fixtures', 'store-kill-child.ts');

const KILL_RUNS = Number.parseInt(process.env.FACT_STORE_KILL_RUNS ?? '100', 10);
const SEED = process.env.FACT_SEED !== undefined ? Number.parseInt(process.env.FACT_SEED, 10) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const REPLAY = `FACT_SEED=${SEED} npx vitest run test/store-kill.test.ts`;
/** Kill chains run in parallel, each in its own directories. */
const CHAINS = 2;
/** Kills per database directory: each check rereads the whole store, so this bounds its growth. */
const KILLS_PER_DIR = 10;
/** Kills between two checks by the parent: each child after the first recovers from the kill before it. */
const KILLS_PER_CHECK_MAX = 4;
/** How a kill is timed: from the go message (it may land while the child opens or recovers the store)… */
const EARLY_KILL_SHARE = 0.15;
const EARLY_KILL_MAX_MS = 50;
/** …a random time after the store is open… */
const TIMED_KILL_SHARE = 0.45;
const KILL_AFTER_READY_MIN_MS = 5;
const KILL_AFTER_READY_MAX_MS = 120;
/** …or once the child has reported a random number of lines (so a busy machine still sees work), plus a little. */
const PROGRESS_KILL_LINES_MAX = 200;
const PROGRESS_KILL_JITTER_MS = 10;
const PROGRESS_KILL_TIMEOUT_MS = 3_000;
const READY_TIMEOUT_MS = 20_000;
/** Retries of earlier units handed to each child (spread over its writers). */
const RETRIES_PER_CHILD = 12;
const KILL_TEST_TIMEOUT_MS = 60_000 + KILL_RUNS * 2_000;

let bundle = '';
let bundleDir = '';
const tempDirs: string[] = [];

beforeAll(async () => {
  bundleDir = await mkdtemp(join(tmpdir(), 'factstore-store-kill-bundle-'));
  bundle = join(bundleDir, 'store-kill-child.mjs');
  // Packages stay external (classic-level's addon is found from its own folder): resolved through this link.
  await symlink(join(repoRoot, 'node_modules'), join(bundleDir, 'node_modules'), 'dir');
  await build({ entryPoints: [childSource], outfile: bundle, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error' });
});

afterAll(async () => {
  if (bundleDir !== '') await rm(bundleDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------ the child

const live = new Set<Child>();
let childCount = 0;

class Child {
  readonly id = ++childCount;
  readonly process: ChildProcessWithoutNullStreams;
  readonly lines: ChildLine[] = [];
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<void>;
  stderr = '';
  protocolError: string | null = null;
  goAt = 0;
  readyAt: number | null = null;
  killedAt = 0;
  go: GoMessage | null = null;
  #partial = '';
  #lineWaiters: { count: number; resolve: () => void }[] = [];

  constructor() {
    this.process = spawn(process.execPath, [bundle], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    let onReady!: () => void;
    let onNotReady!: (error: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onNotReady = reject;
    });
    this.ready.catch(() => undefined);
    // A child killed (or dead) before it read its go line: its death is reported by close.
    this.process.stdin.on('error', () => undefined);
    this.process.stdout.setEncoding('utf8');
    this.process.stderr.setEncoding('utf8');
    this.process.stderr.on('data', (chunk: string) => (this.stderr += chunk));
    this.process.stdout.on('data', (chunk: string) => {
      const lines = (this.#partial + chunk).split('\n');
      this.#partial = lines.pop()!;
      for (const text of lines) {
        let line: ChildLine;
        try {
          line = JSON.parse(text) as ChildLine;
        } catch {
          this.protocolError ??= `child ${this.id} printed a line that is not JSON: ${JSON.stringify(text)}`;
          continue;
        }
        this.lines.push(line);
        this.#lineWaiters = this.#lineWaiters.filter((waiter) => (this.lines.length >= waiter.count ? (waiter.resolve(), false) : true));
        if (line.t === 'ready') {
          this.readyAt = performance.now() - this.goAt;
          onReady();
        }
      }
    });
    this.closed = new Promise((resolve) => {
      this.process.on('close', (code, signal) => {
        live.delete(this);
        onNotReady(new Error(`child ${this.id} exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${this.stderr}`));
        resolve({ code, signal });
      });
    });
  }

  start(go: GoMessage): void {
    this.go = go;
    this.goAt = performance.now();
    this.process.stdin.write(`${JSON.stringify(go)}\n`);
  }

  async waitReady(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`child ${this.id} not ready after ${READY_TIMEOUT_MS} ms; stderr:\n${this.stderr}`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves once the child has reported `count` lines, or after `timeoutMs`, or when it exits. */
  async waitLines(count: number, timeoutMs: number): Promise<void> {
    if (this.lines.length >= count) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#lineWaiters.push({ count, resolve })),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      this.closed,
    ]);
    clearTimeout(timer);
  }

  /** SIGKILL, then wait until it is reaped and its output is read. */
  async kill(): Promise<void> {
    this.killedAt = performance.now() - this.goAt;
    this.process.kill('SIGKILL');
    const { code, signal } = await this.closed;
    const failure = this.lines.find((line) => line.t === 'fail');
    if (failure !== undefined) throw new Error(`child ${this.id} failed: ${failure.message}`);
    if (signal !== 'SIGKILL') throw new Error(`child ${this.id} ended by itself before the kill (code ${code}, signal ${signal}); stderr:\n${this.stderr}`);
    if (this.protocolError !== null) throw new Error(this.protocolError);
  }

  describe(): string {
    const ready = this.readyAt === null ? 'not yet open' : `open after ${this.readyAt.toFixed(0)} ms`;
    return `child ${this.id} (round ${this.go?.round}, sync '${this.go?.sync}', ${ready}) killed ${this.killedAt.toFixed(0)} ms after go, ${this.lines.length} lines`;
  }
}

afterEach(async () => {
  for (const child of live) {
    child.process.kill('SIGKILL');
    await child.closed;
  }
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------ LevelDB dumps

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Every key and value of the closed database's LevelDB, read with classic-level itself. */
async function dumpLevel(dir: string): Promise<string[]> {
  const db = new Level<Uint8Array, Uint8Array>(join(dir, 'ledger'), { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false });
  await db.open();
  try {
    const entries: string[] = [];
    for await (const [key, value] of db.iterator()) entries.push(`${hex(key)}=${hex(value)}`);
    return entries;
  } finally {
    await db.close();
  }
}

function expectSameDump(before: string[], after: string[], what: string): void {
  if (before.length === after.length && before.every((entry, index) => entry === after[index])) return;
  const a = new Set(before);
  const b = new Set(after);
  const lost = before.filter((entry) => !b.has(entry)).slice(0, 5);
  const gained = after.filter((entry) => !a.has(entry)).slice(0, 5);
  throw new Error(`${what}: LevelDB contents differ (${before.length} → ${after.length} entries); gone: ${lost.join(' ')}; new: ${gained.join(' ')}`);
}

// ------------------------------------------------------------------------------ the model

type Outcome = 'pending' | 'acked' | 'refused' | 'decided';

interface Submission {
  child: number;
  n: number;
  epoch: number;
  retry: boolean;
  expect?: StreamExpectation;
  after?: number | null;
  ackPos?: number;
  outcome: Outcome;
  ack?: { position: number; count: number; streamPosition?: number };
  refusal?: { code: string; details: Record<string, unknown> };
  decided?: { appended: { position: number; count: number } | null; decidedAt: number; attempts: number };
}

interface Unit {
  shape: UnitShape;
  subs: Submission[];
  /** Its first position at the last check, or 0 when it was absent. */
  verifiedFirst: number;
  expected: string[] | null;
}

interface Stats {
  kills: number;
  earlyKills: number;
  killsBeforeReady: number;
  recoveryKills: number;
  progressKills: number;
  bySync: Record<KillSyncMode, number>;
  checks: number;
  ackedUnits: number;
  ackedEventsChecked: number;
  unackedPresent: number;
  unackedAbsent: number;
  refusalsChecked: number;
  decisions: number;
  retriesChecked: number;
  consumerAcks: number;
  maintenance: number;
  maxEvents: number;
  dirs: number;
  checkMs: number;
  readyMs: number[];
}

const stats: Stats = {
  kills: 0,
  earlyKills: 0,
  killsBeforeReady: 0,
  recoveryKills: 0,
  progressKills: 0,
  bySync: { always: 0, interval: 0, none: 0 },
  checks: 0,
  ackedUnits: 0,
  ackedEventsChecked: 0,
  unackedPresent: 0,
  unackedAbsent: 0,
  refusalsChecked: 0,
  decisions: 0,
  retriesChecked: 0,
  consumerAcks: 0,
  maintenance: 0,
  maxEvents: 0,
  dirs: 0,
  checkMs: 0,
  readyMs: [],
};

/** A plain check for hot loops (an expect() per event costs more than the rest of the check). */
function ensure(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message());
}

function violates(expect: StreamExpectation, version: number): boolean {
  if (expect === 'any') return false;
  if (expect === 'none') return version !== 0;
  if (expect === 'exists') return version === 0;
  return version !== expect;
}

function positions(events: readonly RecordedEvent[]): number[] {
  return events.map((event) => event.position);
}

/** One database directory and everything the parent knows about it, across kills. */
class DirModel {
  readonly dir: string;
  readonly seed: number;
  readonly rng: Mulberry32;
  epoch = 0;
  readonly units = new Map<string, Unit>();
  /** Every event as read at the last check (position, id, timestamp, stream position and content). */
  log: string[] = [];
  versions = new Map<string, number>();
  consumers = new Map<string, number>();
  /** Children killed since the last check, in order. */
  children: Child[] = [];

  constructor(dir: string, seed: number) {
    this.dir = dir;
    this.seed = seed;
    this.rng = new Mulberry32(hash(seed, 0xd1));
  }

  /** Retries of earlier units for the next child: present ones (must return their result) and absent ones (append anew). */
  retries(): string[][] {
    const candidates = [...this.units.entries()].filter(([, unit]) => unit.shape.callerIds && unit.shape.kind !== 'decide' && unit.shape.kind !== 'ackAppend');
    const chosen: string[][] = Array.from({ length: KILL_STORE_WRITERS }, () => []);
    for (let index = 0; index < RETRIES_PER_CHILD && candidates.length > 0; index++) {
      const [key] = candidates.splice(this.rng.int(candidates.length), 1)[0]!;
      chosen[index % KILL_STORE_WRITERS]!.push(key);
    }
    return chosen;
  }

  /** Takes in what a killed child said. */
  ingest(child: Child): void {
    const go = child.go!;
    const subs = new Map<number, { unit: Unit; sub: Submission }>();
    const retryKeys = new Set(go.retries.flat());
    for (const line of child.lines) {
      switch (line.t) {
        case 'sub': {
          const shape = shapeOfKey(this.seed, line.u);
          if (shape === null) throw new Error(`child ${child.id} submitted unknown unit ${line.u}`);
          const own = shape.round === go.round;
          if (!own && !(line.retry && retryKeys.has(line.u))) throw new Error(`child ${child.id} submitted ${line.u}, neither its own nor a retry it was given`);
          let unit = this.units.get(line.u);
          if (unit === undefined) {
            if (!own) throw new Error(`child ${child.id} retried ${line.u}, which was never submitted`);
            unit = { shape, subs: [], verifiedFirst: 0, expected: null };
            this.units.set(line.u, unit);
          }
          const sub: Submission = { child: child.id, n: line.n, epoch: this.epoch, retry: line.retry === true, outcome: 'pending' };
          if (line.expect !== undefined) sub.expect = line.expect as StreamExpectation;
          if (line.after !== undefined) sub.after = line.after;
          if (line.ackPos !== undefined) sub.ackPos = line.ackPos;
          unit.subs.push(sub);
          subs.set(line.n, { unit, sub });
          break;
        }
        case 'ack':
        case 'ref':
        case 'dec': {
          const entry = subs.get(line.n);
          if (entry === undefined || entry.sub.outcome !== 'pending') throw new Error(`child ${child.id}: result for submission ${line.n}, which is not pending`);
          if (line.t === 'ack') {
            entry.sub.outcome = 'acked';
            entry.sub.ack = { position: line.position, count: line.count, ...(line.streamPosition === undefined ? {} : { streamPosition: line.streamPosition }) };
          } else if (line.t === 'ref') {
            entry.sub.outcome = 'refused';
            entry.sub.refusal = { code: line.code, details: line.details };
          } else {
            entry.sub.outcome = 'decided';
            entry.sub.decided = { appended: line.appended, decidedAt: line.decidedAt, attempts: line.attempts };
          }
          break;
        }
        case 'maint':
          stats.maintenance++;
          expect(line.problems, `child ${child.id}: verify() while appending`).toEqual([]);
          break;
        default:
          break;
      }
    }
  }

  /** Reopens, checks invariants 1–7, and updates the model. */
  async check(): Promise<void> {
    const started = performance.now();
    const options = storeOptions('always');
    // The first open recovers from the kills; close, and take LevelDB's contents.
    await (await FactStore.open(this.dir, options)).close();
    const recovered = await dumpLevel(this.dir);
    const store = await FactStore.open(this.dir, options);
    try {
      await this.checkStore(store);
    } finally {
      await store.close();
    }
    // 6: a second open (replay deterministic and idempotent) and 5: verify(), rebuildIndexes()
    // (the indexes equal a rebuild) and the refused probes of 7 changed nothing in LevelDB.
    expectSameDump(recovered, await dumpLevel(this.dir), 'a second open, with verify(), rebuildIndexes() and refused probes (invariants 5 and 6)');
    stats.checks++;
    stats.checkMs += performance.now() - started;
    this.epoch++;
    this.children = [];
  }

  async checkStore(store: FactStore): Promise<void> {
    const all = await store.read('all').toArray();
    const head = all.length;
    stats.maxEvents = Math.max(stats.maxEvents, head);
    expect(await store.head(), 'head = number of events').toBe(head);
    all.forEach((event, index) => ensure(event.position === index + 1, () => `positions are gapless from 1 (invariant 4): event ${index} is at ${event.position}`));

    // 1: what an earlier check saw is still there, byte for byte (ids, timestamps, positions too).
    const log = all.map((event) => `${event.position} ${event.id} ${event.timestamp} ${event.streamPosition ?? '-'} ${readEvent(event, true)}`);
    expect(head, 'the store shrank below what the last check saw').toBeGreaterThanOrEqual(this.log.length);
    for (let index = 0; index < this.log.length; index++) {
      if (log[index] !== this.log[index]) throw new Error(`position ${index + 1} changed since the last check:\n  was ${this.log[index]}\n  now ${log[index]}`);
    }

    // 2: every event belongs to a unit some child submitted, whole, in order, byte-identical.
    const present = new Map<string, RecordedEvent[]>();
    for (const event of all) {
      const id = parseEventKey(event.metadata.k);
      if (id === null) throw new Error(`phantom at position ${event.position}: metadata.k ${JSON.stringify(event.metadata.k)}`);
      const unit = this.units.get(id.key);
      if (unit === undefined) throw new Error(`phantom at position ${event.position}: unit ${id.key} was never submitted`);
      const events = present.get(id.key) ?? [];
      if (events.length !== id.index) throw new Error(`position ${event.position}: event ${id.index} of unit ${id.key} follows ${events.length} of its events`);
      events.push(event);
      present.set(id.key, events);
    }
    const versions = new Map<string, number>();
    const slots = new Map<number, number>();
    for (const event of all) {
      if (event.stream !== undefined) {
        const version = (versions.get(event.stream) ?? 0) + 1;
        ensure(event.streamPosition === version, () => `position ${event.position}: stream position ${event.streamPosition} in ${event.stream}, expected ${version} (gapless per stream, invariant 4)`);
        versions.set(event.stream, version);
      }
      if (event.type === 'SlotClaimed') {
        const slot = (event.data as { slot: number }).slot;
        if (slots.has(slot)) throw new Error(`slot ${slot} claimed twice by decide(): at ${slots.get(slot)} and ${event.position} (invariant 7)`);
        slots.set(slot, event.position);
      }
    }

    for (const [key, unit] of this.units) {
      const events = present.get(key);
      const { shape } = unit;
      const where = `unit ${key} (${shape.kind}${shape.stream === '' ? '' : ` to ${shape.stream}`}, ${shape.events.length} events)`;
      const acked = unit.subs.filter((sub) => sub.outcome === 'acked' || (sub.outcome === 'decided' && sub.decided!.appended !== null));
      const current = unit.subs.filter((sub) => sub.epoch === this.epoch);
      if (events === undefined) {
        // 1: an acknowledged append is never lost.
        if (acked.length > 0) throw new Error(`${where} was acknowledged (${JSON.stringify(acked[0])}) but is not in the store`);
        if (unit.verifiedFirst > 0) throw new Error(`${where} was at position ${unit.verifiedFirst} at the last check, now it is gone`);
        if (current.some((sub) => sub.outcome === 'pending')) stats.unackedAbsent++;
        unit.verifiedFirst = 0;
        continue;
      }
      // 3: all or nothing.
      expect(events.length, `${where}: events present (all or nothing, invariant 3)`).toBe(shape.events.length);
      const first = events[0]!.position;
      const last = events.at(-1)!;
      events.forEach((event, index) => {
        ensure(event.position === first + index, () => `${where}: event ${index} at ${event.position}, not consecutive from ${first}`);
        ensure(event.timestamp === events[0]!.timestamp, () => `${where}: event ${index} has another timestamp than the first (one per append)`);
        ensure(event.streamPosition === undefined || event.streamPosition === events[0]!.streamPosition! + index, () => `${where}: stream positions not consecutive`);
      });
      if (unit.verifiedFirst === 0) {
        unit.expected ??= shape.events.map((_, index) => expectedEvent(shape, index));
        events.forEach((event, index) => {
          const actual = readEvent(event, shape.callerIds);
          if (actual !== unit.expected![index]) throw new Error(`${where}: event ${index} at position ${event.position} differs from what was appended:\n  appended ${unit.expected![index]}\n  read     ${actual}`);
        });
        // 2: only a submission since the last check can have put it there.
        const authors = current.filter((sub) => sub.outcome === 'pending' || sub.outcome === 'acked' || (sub.outcome === 'decided' && sub.decided!.appended !== null));
        if (authors.length === 0) throw new Error(`${where} is at position ${first}, but no submission since the last check could have appended it: ${JSON.stringify(unit.subs)}`);
        if (acked.length === 0) stats.unackedPresent++;
        else stats.ackedEventsChecked += events.length;
        // 7: the expectation or condition of the submission that appended it held (when that one is known).
        if (authors.length === 1 && !authors[0]!.retry) this.checkAuthor(unit, authors[0]!, all, first, where);
      } else {
        expect(first, `${where}: position since the last check`).toBe(unit.verifiedFirst);
      }
      // 1 and 7: every acknowledgement (retries included) names exactly these positions.
      for (const sub of acked) {
        const result = sub.ack ?? { ...sub.decided!.appended! };
        const expected: { position: number; count: number; streamPosition?: number } = { position: last.position, count: events.length };
        if (sub.ack !== undefined && shape.stream !== '') expected.streamPosition = last.streamPosition!;
        expect(result, `${where}: result of submission ${sub.n} of child ${sub.child}${sub.retry ? ' (a retry)' : ''}`).toEqual(expected);
        if (sub.epoch === this.epoch) {
          stats.ackedUnits++;
          if (sub.retry) stats.retriesChecked++;
        }
      }
      unit.verifiedFirst = first;
    }

    // Refusals and decisions since the last check.
    for (const [key, unit] of this.units) {
      for (const sub of unit.subs) {
        if (sub.epoch !== this.epoch) continue;
        if (sub.outcome === 'refused') this.checkRefusal(unit, sub, all, versions, `unit ${key}`);
        if (sub.outcome === 'decided') {
          stats.decisions++;
          expect(sub.decided!.decidedAt, `unit ${key}: decidedAt`).toBeLessThanOrEqual(head);
          if (sub.decided!.appended === null) {
            const claim = slots.get(unit.shape.slot);
            if (claim === undefined || claim > sub.decided!.decidedAt) {
              throw new Error(`unit ${key}: decide() on slot ${unit.shape.slot} appended nothing at ${sub.decided!.decidedAt}, but the slot's claim is at ${claim ?? 'no position'}`);
            }
          }
        }
      }
    }

    // 4: stream versions and lists agree with the ledger.
    for (const stream of new Set([...versions.keys(), ...this.versions.keys()])) {
      expect(await store.streamVersion(stream), `streamVersion(${stream}) (invariant 4)`).toBe(versions.get(stream) ?? 0);
    }
    expect(await store.streams().toArray(), 'streams()').toEqual([...versions.keys()].sort());
    expect(await store.streams({ category: 'shared' }).toArray(), "streams({ category: 'shared' })").toEqual([...versions.keys()].filter((stream) => stream.startsWith('shared-')).sort());

    await this.checkConsumers(store, all, head);

    // 5: verify() is clean and the indexes answer like a brute-force filter.
    const report = await store.verify();
    expect(report.problems, 'verify() (invariant 5)').toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.events).toBe(head);
    const reads: [string, Parameters<FactStore['read']>[0], (event: RecordedEvent) => boolean][] = [];
    for (const tag of this.sample(CHECKED_TAGS, 3)) reads.push([`tag ${tag}`, { tag }, (event) => event.tags.includes(tag)]);
    for (const type of this.sample(CHECKED_TYPES, 2)) reads.push([`type ${type}`, { type }, (event) => event.type === type]);
    for (const value of this.sample(K_QUERY_VALUES, 2)) {
      const items = [{ data: { [KILL_DATA_FIELD]: value } }];
      reads.push([`data ${KILL_DATA_FIELD} = ${JSON.stringify(value)}`, { query: toQuery(items) }, (event) => oracleMatches(items, event)]);
    }
    for (const stream of this.sample([...versions.keys()], 2)) reads.push([`stream ${stream}`, { stream }, (event) => event.stream === stream]);
    for (const [what, source, filter] of reads) {
      expect(positions(await store.read(source).toArray()), `read(${what}) (invariant 5)`).toEqual(positions(all.filter(filter)));
    }
    const rebuilt = await store.rebuildIndexes();
    expect(rebuilt.events).toBe(head);

    await this.probe(store, all, versions, slots, present);
    expect(await store.head(), 'the probes appended nothing').toBe(head);

    this.log = log;
    this.versions = versions;
  }

  sample<T>(values: readonly T[], count: number): T[] {
    const pool = [...values];
    const chosen: T[] = [];
    while (chosen.length < count && pool.length > 0) chosen.push(pool.splice(this.rng.int(pool.length), 1)[0]!);
    return chosen;
  }

  /** A unit appended since the last check by one known submission: its expectation or condition held when it was planned. */
  checkAuthor(unit: Unit, sub: Submission, all: readonly RecordedEvent[], first: number, where: string): void {
    const { shape } = unit;
    if (shape.kind === 'stream') {
      const before = all[first - 1]!.streamPosition! - 1;
      if (violates(sub.expect!, before)) throw new Error(`${where}: appended at stream version ${before} although it expected ${String(sub.expect)} (invariant 7)`);
    }
    if (shape.kind === 'cond') {
      const after = sub.after ?? 0;
      for (let position = after + 1; position < first; position++) {
        const event = all[position - 1]!;
        if (oracleMatches(shape.query!, event)) {
          throw new Error(`${where}: appended at ${first} although the event at ${position} matches its condition ${JSON.stringify(shape.query)} after ${after} (invariant 7)`);
        }
      }
    }
    if (shape.kind === 'ackAppend') expect(sub.ackPos!, `${where}: ack position`).toBeLessThan(first);
  }

  /** A refusal since the last check: FACT_CONCURRENCY, and justified by the store's events. */
  checkRefusal(unit: Unit, sub: Submission, all: readonly RecordedEvent[], versions: Map<string, number>, where: string): void {
    const { shape } = unit;
    const details = sub.refusal!.details;
    expect(sub.retry, `${where}: a retry (no expectation, no condition) was refused: ${JSON.stringify(sub.refusal)}`).toBe(false);
    if (shape.kind === 'stream') {
      expect(details.stream, `${where}: refusal names the stream`).toBe(shape.stream);
      expect(details.expected, `${where}: refusal names the expectation`).toBe(sub.expect);
      const actual = details.actual as number;
      if (!violates(sub.expect!, actual)) throw new Error(`${where}: refused with actual version ${actual}, which satisfies ${String(sub.expect)}`);
      expect(actual, `${where}: the refusal's version is one the stream had`).toBeGreaterThanOrEqual(this.versions.get(shape.stream) ?? 0);
      expect(actual).toBeLessThanOrEqual(versions.get(shape.stream) ?? 0);
    } else if (shape.kind === 'cond') {
      const after = sub.after ?? 0;
      expect(details.expected, `${where}: refusal names after`).toBe(after);
      const actual = details.actual as number;
      expect(actual, `${where}: the conflicting event came after ${after}`).toBeGreaterThan(after);
      const event = all[actual - 1];
      if (event === undefined || !oracleMatches(shape.query!, event)) {
        throw new Error(`${where}: refused for the event at ${actual}, which ${event === undefined ? 'does not exist' : 'does not match'} ${JSON.stringify(shape.query)}`);
      }
    } else {
      throw new Error(`${where}: a ${shape.kind} without expectation or condition was refused: ${JSON.stringify(sub.refusal)}`);
    }
    stats.refusalsChecked++;
  }

  /** Consumer positions: 'proj' is one it acknowledged (at least its last durable ack); each c-w<n> is the ack of its last append. */
  async checkConsumers(store: FactStore, all: readonly RecordedEvent[], head: number): Promise<void> {
    const listed = new Map((await store.consumers()).map((info) => [info.name, info.position]));
    const previous = this.consumers.get(KILL_CONSUMER) ?? 0;
    const allowed = new Set([previous]);
    let durable = previous;
    for (const child of this.children) {
      let start: number | null = null;
      for (const line of child.lines) {
        if (line.t === 'cstart') {
          start = line.acked;
          if (!allowed.has(start) || start < durable) throw new Error(`child ${child.id}: consumer started after ${start}, not after its last durable ack (${durable}; possible: ${[...allowed].join(', ')})`);
        } else if (line.t === 'cfirst') {
          expect(line.position, `child ${child.id}: the consumer resumed right after its ack`).toBe(start! + 1);
        } else if (line.t === 'cto') {
          expect(line.position, `child ${child.id}: a delivered event is durable`).toBeLessThanOrEqual(head);
          allowed.add(line.position);
        } else if (line.t === 'cack') {
          durable = line.position;
          stats.consumerAcks++;
        }
      }
    }
    const position = listed.get(KILL_CONSUMER) ?? 0;
    if (!allowed.has(position) || position < durable) {
      throw new Error(`consumer ${KILL_CONSUMER} is at ${position}: not its last durable ack ${durable} or a later one it made (${[...allowed].join(', ')})`);
    }
    // An append with an ack: the consumer's position is the ack of its last append present, and nothing else.
    const expected = new Map<string, number>();
    for (const event of all) {
      const id = parseEventKey(event.metadata.k)!;
      const unit = this.units.get(id.key)!;
      if (unit.shape.kind !== 'ackAppend' || id.index !== 0) continue;
      const author = unit.subs.find((sub) => sub.ackPos !== undefined)!;
      expected.set(`c-w${unit.shape.writer}`, author.ackPos!);
    }
    if (listed.has(KILL_CONSUMER) || previous > 0) expected.set(KILL_CONSUMER, position);
    expect(Object.fromEntries(listed), 'consumer positions (exactly-once append + ack)').toEqual(Object.fromEntries(expected));
    this.consumers = listed;
  }

  /** 7: idempotent retries, conditions, expectations and decisions hold after the restart; all refused or no-ops. */
  async probe(store: FactStore, all: readonly RecordedEvent[], versions: Map<string, number>, slots: Map<number, number>, present: Map<string, RecordedEvent[]>): Promise<void> {
    const retriable = [...present.keys()].filter((key) => {
      const shape = this.units.get(key)!.shape;
      return shape.callerIds && shape.kind !== 'ackAppend';
    });
    for (const key of this.sample(retriable, 2)) {
      const shape = this.units.get(key)!.shape;
      const events = present.get(key)!;
      const fresh = shapeOfKey(this.seed, key)!.events;
      const result = shape.stream === '' ? await store.append(fresh) : await store.appendStream(shape.stream, fresh, { expect: 'any' });
      expect(result.position, `retry of ${key} after the restart returns its position`).toBe(events.at(-1)!.position);
      expect(result.count).toBe(events.length);
      stats.retriesChecked++;
    }
    const probeEvent = { type: 'Probe', metadata: { k: 'probe' } };
    const tagged = all.filter((event) => event.tags.length > 0);
    if (tagged.length > 0) {
      const event = tagged[this.rng.int(tagged.length)]!;
      const tag = event.tags[this.rng.int(event.tags.length)]!;
      const latest = all.filter((candidate) => candidate.tags.includes(tag)).at(-1)!.position;
      await expectConcurrency(store.append(probeEvent, { failIfEventsMatch: Query.tags(tag), after: event.position - 1 }), { expected: event.position - 1, actual: latest }, `condition on ${tag} after ${event.position - 1}`);
    }
    const streams = [...versions.entries()];
    if (streams.length > 0) {
      const [stream, version] = streams[this.rng.int(streams.length)]!;
      const expectation: StreamExpectation = this.rng.next() < 0.5 ? 'none' : version - 1;
      await expectConcurrency(store.appendStream(stream, probeEvent, { expect: expectation }), { stream, expected: expectation, actual: version }, `appendStream(${stream}, expect ${expectation})`);
    }
    const claimed = [...slots.entries()];
    if (claimed.length > 0) {
      const [slot, position] = claimed[this.rng.int(claimed.length)]!;
      let seen: number[] = [];
      const decided = await store.decide(Query.tags(slotTag(slot)), (events) => {
        seen = positions(events);
        return events.length === 0 ? probeEvent : null;
      });
      expect(decided.appended, `decide() on claimed slot ${slot} after the restart`).toBeNull();
      expect(seen, `decide() on slot ${slot} saw its claim`).toEqual([position]);
    }
  }
}

async function expectConcurrency(promise: Promise<unknown>, details: Record<string, unknown>, what: string): Promise<void> {
  let error: unknown = null;
  try {
    await promise;
  } catch (caught) {
    error = caught;
  }
  if (!isFactError(error, 'FACT_CONCURRENCY')) throw new Error(`${what} after the restart: expected FACT_CONCURRENCY, got ${error === null ? 'success' : error instanceof Error ? error.message : typeof error} (invariant 7)`);
  for (const [key, value] of Object.entries(details)) expect(error.details[key], `${what}: details.${key}`).toBe(value);
  stats.refusalsChecked++;
}

// ------------------------------------------------------------------------------ the chains

async function newDir(chain: number, index: number): Promise<DirModel> {
  const dir = await mkdtemp(join(tmpdir(), 'factstore-store-kill-'));
  tempDirs.push(dir);
  stats.dirs++;
  return new DirModel(dir, hash(SEED, chain, index));
}

function pickSync(rng: Mulberry32): KillSyncMode {
  const roll = rng.next();
  return roll < 0.7 ? 'always' : roll < 0.85 ? 'interval' : 'none';
}

/** Set when a chain fails: the other one stops at its next kill instead of running on. */
let stopped = false;

async function runChain(chain: number, total: number): Promise<void> {
  const rng = new Mulberry32(hash(SEED, chain, 0xc4a1));
  let spare: Child | null = null;
  const next = () => {
    const child = spare ?? new Child();
    spare = new Child();
    return child;
  };
  let model: DirModel | null = null;
  let dirIndex = 0;
  let killsInDir = 0;
  let round = 0;
  try {
    for (let done = 0; done < total && !stopped; ) {
      if (model === null || killsInDir >= KILLS_PER_DIR) {
        model = await newDir(chain, dirIndex++);
        killsInDir = 0;
      }
      const m: DirModel = model;
      const describeRound = () => `chain ${chain}, dir ${dirIndex} (${m.dir}), after kills of: ${m.children.map((child) => child.describe()).join('; ')}`;
      try {
        const kills = Math.min(total - done, 1 + rng.int(KILLS_PER_CHECK_MAX));
        for (let kill = 0; kill < kills; kill++) {
          const child = next();
          const sync = pickSync(rng);
          child.start({ dir: m.dir, seed: m.seed, round: ++round, sync, retries: m.retries() });
          m.children.push(child);
          const timing = rng.next();
          if (timing < EARLY_KILL_SHARE) {
            stats.earlyKills++;
            await sleep(rng.next() * EARLY_KILL_MAX_MS);
          } else if (timing < EARLY_KILL_SHARE + TIMED_KILL_SHARE) {
            await child.waitReady();
            await sleep(KILL_AFTER_READY_MIN_MS + rng.next() * (KILL_AFTER_READY_MAX_MS - KILL_AFTER_READY_MIN_MS));
          } else {
            stats.progressKills++;
            await child.waitReady();
            await child.waitLines(child.lines.length + rng.int(PROGRESS_KILL_LINES_MAX), PROGRESS_KILL_TIMEOUT_MS);
            await sleep(rng.next() * PROGRESS_KILL_JITTER_MS);
          }
          await child.kill();
          countKill(child, sync);
          if (kill > 0) stats.recoveryKills++;
          m.ingest(child);
          done++;
          killsInDir++;
        }
        await m.check();
      } catch (error) {
        stopped = true;
        if (error instanceof Error) error.message = `${error.message}\n[store-kill seed ${SEED}, ${describeRound()}; replay: ${REPLAY}]`;
        throw error;
      }
    }
  } finally {
    const unused = spare as Child | null;
    unused?.process.kill('SIGKILL');
  }
}

function countKill(child: Child, sync: KillSyncMode): void {
  stats.kills++;
  stats.bySync[sync]++;
  if (child.readyAt === null) stats.killsBeforeReady++;
  else stats.readyMs.push(child.readyAt);
}

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)]!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('FactStore under SIGKILL (real processes, classic-level, the real file system)', () => {
  it(
    `keeps every acknowledged append, and the store consistent, across ${KILL_RUNS} kills (seed ${SEED})`,
    async () => {
      const perChain = Array.from({ length: CHAINS }, (_, chain) => Math.floor(KILL_RUNS / CHAINS) + (chain < KILL_RUNS % CHAINS ? 1 : 0));
      stopped = false;
      const cpuBefore = process.cpuUsage();
      await Promise.all(perChain.map((kills, chain) => runChain(chain, kills)));
      console.log(
        `store-kill seed ${SEED}: ${stats.kills} kills (${stats.bySync.always} 'always', ${stats.bySync.interval} 'interval', ${stats.bySync.none} 'none'; ` +
          `${stats.killsBeforeReady} before the store was open, ${stats.recoveryKills} of a child that had recovered from a kill, ${stats.progressKills} timed by the child's progress), ${stats.checks} reopen checks in ${stats.dirs} directories; ` +
          `${stats.ackedUnits} acknowledged results checked (${stats.ackedEventsChecked} events byte for byte), ${stats.unackedPresent} unacknowledged units present and ${stats.unackedAbsent} absent, ` +
          `${stats.refusalsChecked} refusals, ${stats.decisions} decisions, ${stats.retriesChecked} retries, ${stats.consumerAcks} consumer acks, ${stats.maintenance} rebuilds/verifies; largest store ${stats.maxEvents} events; ` +
          `checks took ${(stats.checkMs / Math.max(1, stats.checks)).toFixed(0)} ms each, a child's open ${median(stats.readyMs).toFixed(0)} ms (median); this process used ${(cpuMs(process.cpuUsage(cpuBefore)) / 1000).toFixed(1)} s of CPU`,
      );
      expect(stats.kills).toBe(KILL_RUNS);
      expect(stats.ackedUnits, 'the kills hit children that were acknowledging').toBeGreaterThan(KILL_RUNS);
    },
    KILL_TEST_TIMEOUT_MS,
  );
});
