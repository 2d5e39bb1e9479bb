/**
 * Model-based crash test of the whole store (src/store.ts): a FactStore on a SimMachine
 * (src/testing/sim-machine.ts), that is a SimFileSystem (WAL, sync 'always', small segments,
 * frequent checkpoints and segment deletions) and a LossyLevel (LevelDB that loses unsynced
 * batches at a crash, with holes) crashed at one instant. fast-check generates commands:
 * appends, stream appends with right or wrong expectations, concurrent appends, idempotent
 * retries by id, clean reopens, power losses (also with appends in flight, at any microtask)
 * and crashes inside recovery.
 *
 * The model is the list of ACKNOWLEDGED appends (resolved before the crash) with their positions
 * and content. Appends in flight at a crash may or may not survive; if one does, it is there
 * exactly once, whole, at consecutive positions, with its content — and from then on it counts
 * as acknowledged (a later crash must not lose it); if it does not, it never appears later.
 *
 * After every crash + reopen (and every clean reopen, and at the end):
 * 1. every acknowledged event is at its position with identical id, type, data, metadata, tags,
 *    stream, stream position and timestamp (ids and timestamps the store chose are pinned the
 *    first time they are read in the process that appended them);
 * 2. no phantom: every event is an acknowledged one or one of the appends in flight at the crash;
 *    positions are gapless 1..head; the head is the number of events;
 * 3. stream positions are gapless per stream, each surviving stream append met its expectation,
 *    and streamVersion / streams() equal the model's;
 * 4. verify() is ok; every index key space is byte-identical to a rebuild from the ledger;
 * 5. read by type, tag, stream and category equals a brute-force filter of read('all').
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/store-crash.property.test.ts
 * Heavier run: FACT_PROPERTY_RUNS=500 npx vitest run property-tests/store-crash.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isFactError } from '../src/errors.js';
import { FactStore } from '../src/store.js';
import type { EventInput, RecordedEvent, StreamAppendResult, StreamExpectation } from '../src/model/types.js';
import type { SimCrashMode } from '../src/wal/sim-file-system.js';
import { SimCrashError } from '../src/wal/sim-file-system.js';
import { SimMachine } from '../src/testing/index.js';
import { dumpLevel } from './level-dump.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';
import { categoryOf, expectationHolds, expectedRead as oracleRead } from './oracle/dcb-oracle.js';

const DB = '/db';
const DEFAULT_RUNS = 80;
/** Time allowed for the appends of a crashed process to settle. */
const SETTLE_TIMEOUT_MS = 5_000;

const TYPES = ['Created', 'Renamed', 'Closed'] as const;
const TAGS = ['t:a', 't:b', 'u:1'] as const;
const STREAMS = ['order-1', 'order-2', 'user-7', 'misc'] as const;
const CATEGORIES = ['order', 'user', 'misc'] as const;

// ------------------------------------------------------------------------------------ commands

interface Config {
  /** Seeds the SimMachine (its file system and its LevelDB double). */
  seed: number;
  segmentSizeBytes: number;
  checkpointEveryBytes: number;
  retainSegments: number;
}

interface EventSpec {
  type: string;
  /** May hold duplicates: the store keeps the first of each. */
  tags: string[];
  data: unknown;
}

type ExpectSpec = 'right' | 'wrong' | 'any' | 'none' | 'exists';

interface WriteSpec {
  /** '' for append(), else appendStream(stream). */
  stream: string;
  events: EventSpec[];
  callerIds: boolean;
  expect: ExpectSpec;
  wrongBy: number;
}

interface RecoveryCrash {
  /** Mutating fs calls recovery may make before the process dies. */
  ops: number;
  /** Seeds what that crash keeps, of the disk and of LevelDB. */
  seed: number;
}

/**
 * Where the process dies. 'ops': at its n-th mutating fs call from now (a WAL write, fdatasync,
 * rename, unlink… of the appends or of a background checkpoint), or when all is idle if it makes
 * fewer; the appends settle first (whatever the dead process could still do without the disk is
 * a valid ordering). 'time': after this many event-loop turns and then microtask hops, frozen at
 * once (appends not settled by then are in flight).
 */
type CrashPoint = { kind: 'ops'; ops: number } | { kind: 'time'; ticks: number; microtasks: number };

type Command =
  | { c: 'write'; write: WriteSpec }
  | { c: 'concurrent'; writes: WriteSpec[] }
  | { c: 'retry'; pick: number }
  | { c: 'reopen' }
  | {
      c: 'crash';
      inFlight: WriteSpec[];
      at: CrashPoint;
      mode: SimCrashMode;
      /** Seeds what the crash keeps, of the disk and of LevelDB. */
      seed: number;
      /** Crashes inside the following recoveries, before the open that succeeds. */
      recovery: RecoveryCrash[];
    };

const seedArb = fc.integer({ min: 0, max: 0xffff_ffff });

const dataArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.boolean(),
  fc.string({ maxLength: 12 }),
  fc.string({ minLength: 50, maxLength: 300 }),
  fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 5 }),
  fc.record({ name: fc.string({ maxLength: 10 }), count: fc.nat(), nested: fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }) }),
);

const eventArb: fc.Arbitrary<EventSpec> = fc.record({
  type: fc.constantFrom(...TYPES),
  tags: fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
  data: dataArb,
});

const writeArb: fc.Arbitrary<WriteSpec> = fc.record({
  stream: fc.oneof({ weight: 2, arbitrary: fc.constant('') }, { weight: 3, arbitrary: fc.constantFrom(...STREAMS) }),
  events: fc.array(eventArb, { minLength: 1, maxLength: 5 }),
  callerIds: fc.boolean(),
  expect: fc.constantFrom<ExpectSpec>('right', 'right', 'wrong', 'any', 'none', 'exists'),
  wrongBy: fc.integer({ min: 1, max: 3 }),
});

const recoveryCrashArb: fc.Arbitrary<RecoveryCrash> = fc.record({ ops: fc.oneof(fc.nat({ max: 3 }), fc.nat({ max: 12 })), seed: seedArb });

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 9, arbitrary: fc.record({ c: fc.constant('write' as const), write: writeArb }) },
  { weight: 3, arbitrary: fc.record({ c: fc.constant('concurrent' as const), writes: fc.array(writeArb, { minLength: 2, maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('retry' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('reopen' as const) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      c: fc.constant('crash' as const),
      inFlight: fc.array(writeArb, { maxLength: 4 }),
      at: fc.oneof(
        { weight: 3, arbitrary: fc.record({ kind: fc.constant('ops' as const), ops: fc.oneof(fc.nat({ max: 3 }), fc.nat({ max: 24 })) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('time' as const), ticks: fc.nat({ max: 3 }), microtasks: fc.nat({ max: 200 }) }) },
      ),
      mode: fc.oneof({ weight: 9, arbitrary: fc.constant<SimCrashMode>('power-loss') }, { weight: 1, arbitrary: fc.constant<SimCrashMode>('process') }),
      seed: seedArb,
      recovery: fc.oneof({ weight: 3, arbitrary: fc.constant<RecoveryCrash[]>([]) }, { weight: 1, arbitrary: fc.array(recoveryCrashArb, { minLength: 1, maxLength: 3 }) }),
    }),
  },
);

const configArb: fc.Arbitrary<Config> = fc.record({
  seed: seedArb,
  segmentSizeBytes: fc.constantFrom(1024, 2048),
  checkpointEveryBytes: fc.integer({ min: 512, max: 8192 }),
  retainSegments: fc.integer({ min: 0, max: 2 }),
});

// ------------------------------------------------------------------------------------ model

interface MEvent {
  serial: number;
  type: string;
  data: unknown;
  tags: string[];
  /** Caller-chosen, or the store's once read back (pinned). */
  id: string | undefined;
  append: MAppend;
}

interface MAppend {
  stream: string;
  expect: StreamExpectation;
  callerIds: boolean;
  events: MEvent[];
  /**
   * acked: resolved (or survived a crash); pending: in flight at a crash, outcome unknown;
   * refused: rejected with FACT_CONCURRENCY, or lost at a crash — never in the store.
   */
  state: 'new' | 'acked' | 'pending' | 'refused';
  firstPosition: number;
  firstStreamPosition: number;
  /** Pinned at the first read; bounded by the clock around the call until then. */
  timestamp: number | undefined;
  submittedAt: number;
  settledBy: number;
}

interface Model {
  events: Map<number, MEvent>;
  appends: MAppend[];
  /** Acknowledged events by position − 1. */
  ledger: MEvent[];
  versions: Map<string, number>;
  nextSerial: number;
  trace: string[];
}

function newModel(): Model {
  return { events: new Map(), appends: [], ledger: [], versions: new Map(), nextSerial: 1, trace: [] };
}

function violation(expect: StreamExpectation, version: number): boolean {
  return !expectationHolds(expect, version);
}

/** Turns a spec into an append of the model; `versions` is the predicted state at the call, updated on predicted success. */
function planAppend(m: Model, spec: WriteSpec, versions: Map<string, number>): { append: MAppend; ok: boolean } {
  const version = versions.get(spec.stream) ?? 0;
  let expect: StreamExpectation = 'any';
  if (spec.stream !== '') {
    expect = spec.expect === 'right' ? version : spec.expect === 'wrong' ? version + spec.wrongBy : spec.expect;
  }
  const append: MAppend = {
    stream: spec.stream,
    expect,
    callerIds: spec.callerIds,
    events: [],
    state: 'new',
    firstPosition: 0,
    firstStreamPosition: 0,
    timestamp: undefined,
    submittedAt: 0,
    settledBy: Number.POSITIVE_INFINITY,
  };
  for (const event of spec.events) {
    const serial = m.nextSerial++;
    const modelEvent: MEvent = { serial, type: event.type, data: event.data, tags: [...new Set(event.tags)], id: spec.callerIds ? `ev-${serial}` : undefined, append };
    append.events.push(modelEvent);
    m.events.set(serial, modelEvent);
  }
  m.appends.push(append);
  const ok = spec.stream === '' || !violation(expect, version);
  if (ok && spec.stream !== '') versions.set(spec.stream, version + spec.events.length);
  return { append, ok };
}

function submit(store: FactStore, append: MAppend): Promise<StreamAppendResult> {
  const inputs: EventInput[] = append.events.map((event) => {
    const input: EventInput = { type: event.type, data: event.data, metadata: { n: event.serial }, tags: event.tags };
    if (append.callerIds) input.id = event.id!;
    return input;
  });
  append.submittedAt = Date.now();
  append.settledBy = Number.POSITIVE_INFINITY;
  // Both kinds settle after the same number of promise reactions, so a crash cut between two
  // microtasks never sees a later append of a group acknowledged before an earlier one.
  if (append.stream === '') return store.append(inputs).then((result) => ({ ...result, streamPosition: 0 }));
  return store.appendStream(append.stream, inputs, { expect: append.expect }).then((result) => result);
}

function describeAppend(append: MAppend): string {
  const serials = append.events.map((event) => event.serial);
  const target = append.stream === '' ? 'append' : `appendStream(${append.stream}, expect ${String(append.expect)})`;
  return `${target} #${serials[0]}..${serials[serials.length - 1]}`;
}

/** An append resolved: it must land right after everything acknowledged. */
function acknowledge(m: Model, append: MAppend, result: StreamAppendResult): void {
  const count = append.events.length;
  const where = `${describeAppend(append)} resolved with ${JSON.stringify(result)}`;
  expect(result.count, where).toBe(count);
  expect(result.position, `${where}: positions follow the acknowledged head ${m.ledger.length}`).toBe(m.ledger.length + count);
  append.state = 'acked';
  append.firstPosition = result.position - count + 1;
  append.settledBy = Date.now();
  for (const event of append.events) m.ledger.push(event);
  if (append.stream !== '') {
    const version = m.versions.get(append.stream) ?? 0;
    expect(violation(append.expect, version), `${where}: expectation held at version ${version}`).toBe(false);
    expect(result.streamPosition, `${where}: stream position`).toBe(version + count);
    append.firstStreamPosition = version + 1;
    m.versions.set(append.stream, version + count);
  } else {
    expect(result.streamPosition).toBe(0);
  }
}

function refuse(append: MAppend, error: unknown): void {
  expect(isFactError(error, 'FACT_CONCURRENCY'), `${describeAppend(append)} rejected with ${String(error)}`).toBe(true);
  append.state = 'refused';
}

/** Compares a read event with the model; pins the id and timestamp the store chose. */
function checkEvent(event: RecordedEvent, modelEvent: MEvent, position: number, streamPosition: number): void {
  const append = modelEvent.append;
  const where = `position ${position} (event #${modelEvent.serial} of ${describeAppend(append)})`;
  expect(event.position, where).toBe(position);
  expect(event.type, `${where}: type`).toBe(modelEvent.type);
  expect(event.data, `${where}: data`).toEqual(modelEvent.data);
  expect(event.metadata, `${where}: metadata`).toEqual({ n: modelEvent.serial });
  expect(event.tags, `${where}: tags`).toEqual(modelEvent.tags);
  expect(event.stream ?? '', `${where}: stream`).toBe(append.stream);
  expect(event.streamPosition ?? 0, `${where}: stream position`).toBe(append.stream === '' ? 0 : streamPosition);
  if (modelEvent.id === undefined) modelEvent.id = event.id;
  expect(event.id, `${where}: id`).toBe(modelEvent.id);
  if (append.timestamp === undefined) {
    expect(event.timestamp, `${where}: timestamp within the call`).toBeGreaterThanOrEqual(append.submittedAt);
    expect(event.timestamp, `${where}: timestamp within the call`).toBeLessThanOrEqual(append.settledBy);
    append.timestamp = event.timestamp;
  }
  expect(event.timestamp, `${where}: timestamp`).toBe(append.timestamp);
}

/** Reads back (in the process that appended them) the acknowledged events from `from` on. */
async function pinFrom(store: FactStore, m: Model, from: number): Promise<void> {
  if (from > m.ledger.length) return;
  const events = await store.read('all', { from, limit: m.ledger.length - from + 1 }).toArray();
  expect(events.length, `acknowledged events ${from}..${m.ledger.length} are readable`).toBe(m.ledger.length - from + 1);
  for (const event of events) {
    const modelEvent = m.ledger[event.position - 1]!;
    const append = modelEvent.append;
    checkEvent(event, modelEvent, event.position, append.firstStreamPosition + append.events.indexOf(modelEvent));
  }
}

// ------------------------------------------------------------------------------------ harness

interface World {
  config: Config;
  /** The WAL's SimFileSystem and the LossyLevel, crashed together. */
  machine: SimMachine;
  store: FactStore;
  model: Model;
}

/** Whether an error comes from the simulated crash (directly or as a cause). */
function isSimCrash(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof SimCrashError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${SETTLE_TIMEOUT_MS} ms`)), SETTLE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function openStore(w: Pick<World, 'config' | 'machine'>): Promise<FactStore> {
  return FactStore.open(DB, {
    ...w.machine.storeOptions(),
    wal: { sync: 'always', segmentSizeBytes: w.config.segmentSizeBytes, retainSegments: w.config.retainSegments },
    checkpointEveryBytes: w.config.checkpointEveryBytes,
  });
}

/** Runs appends together (one group commit or several) and checks each outcome against the prediction. */
async function runWrites(w: World, specs: readonly WriteSpec[]): Promise<void> {
  const m = w.model;
  const versions = new Map(m.versions);
  const planned = specs.map((spec) => planAppend(m, spec, versions));
  const headBefore = m.ledger.length;
  const results = await withTimeout(Promise.allSettled(planned.map(({ append }) => submit(w.store, append))), 'appends');
  for (const [index, { append, ok }] of planned.entries()) {
    const result = results[index]!;
    m.trace.push(`${describeAppend(append)} → ${result.status}`);
    if (result.status === 'fulfilled') {
      expect(ok, `${describeAppend(append)} succeeded; the model predicted FACT_CONCURRENCY`).toBe(true);
      acknowledge(m, append, result.value);
    } else {
      expect(ok, `${describeAppend(append)} failed (${String(result.reason)}); the model predicted success`).toBe(false);
      refuse(append, result.reason);
    }
  }
  await pinFrom(w.store, m, headBefore + 1);
  expect(await w.store.head(), 'head after appends').toBe(m.ledger.length);
}

/** Re-appends an earlier append with the same ids: a no-op returning the original result if it is stored, else a new append. */
async function retry(w: World, pick: number): Promise<void> {
  const m = w.model;
  const candidates = m.appends.filter((append) => append.callerIds && (append.state === 'acked' || append.state === 'refused'));
  const append = candidates[pick % Math.max(1, candidates.length)];
  if (append === undefined) return;
  const count = append.events.length;
  if (append.state === 'acked') {
    m.trace.push(`retry of stored ${describeAppend(append)}`);
    const result = await submit(w.store, append);
    expect(result, `retry of ${describeAppend(append)} returns the original result`).toEqual({
      position: append.firstPosition + count - 1,
      count,
      streamPosition: append.stream === '' ? 0 : append.firstStreamPosition + count - 1,
    });
    expect(await w.store.head(), 'a retry appends nothing').toBe(m.ledger.length);
    return;
  }
  m.trace.push(`retry of refused/lost ${describeAppend(append)}`);
  const ok = append.stream === '' || !violation(append.expect, m.versions.get(append.stream) ?? 0);
  const headBefore = m.ledger.length;
  append.timestamp = undefined;
  const outcome = await Promise.allSettled([submit(w.store, append)]);
  const result = outcome[0];
  if (result.status === 'fulfilled') {
    expect(ok, `retry of ${describeAppend(append)} succeeded; the model predicted FACT_CONCURRENCY`).toBe(true);
    acknowledge(m, append, result.value);
  } else {
    expect(ok, `retry of ${describeAppend(append)} failed (${String(result.reason)}); the model predicted success`).toBe(false);
    refuse(append, result.reason);
  }
  await pinFrom(w.store, m, headBefore + 1);
}

/**
 * The process dies at a chosen moment while `inFlight` appends run: from then on no storage call
 * succeeds (fs halted, LevelDB's fate decided), the old store only settles its promises, then the
 * machine loses power (or only the process died). Recovery may itself crash, several times.
 */
async function crash(w: World, cmd: Extract<Command, { c: 'crash' }>): Promise<void> {
  const m = w.model;
  const versions = new Map(m.versions);
  let dead = false;
  const flights = cmd.inFlight.map((spec) => {
    const { append, ok } = planAppend(m, spec, versions);
    const flight = { append, ok, outcome: undefined as PromiseSettledResult<StreamAppendResult> | undefined, promise: submit(w.store, append) };
    void flight.promise.then(
      (value) => {
        if (!dead) flight.outcome = { status: 'fulfilled', value };
      },
      (reason: unknown) => {
        if (!dead) flight.outcome = { status: 'rejected', reason };
      },
    );
    return flight;
  });
  if (cmd.at.kind === 'ops') {
    w.machine.fs.crashAfterOps(cmd.at.ops);
    await withTimeout(Promise.allSettled(flights.map(({ promise }) => promise)), 'appends racing a crash');
    // A background checkpoint may still be running into the crash.
    for (let i = 0; i < 3; i++) await tick();
  } else {
    for (let i = 0; i < cmd.at.ticks; i++) await tick();
    for (let i = 0; i < cmd.at.microtasks; i++) await Promise.resolve();
  }

  // ---- the process dies here, synchronously: the disk and LevelDB are frozen as they are now.
  dead = true;
  const levelReport = w.machine.halt({ mode: cmd.mode, seed: cmd.seed });
  const headBefore = m.ledger.length;
  for (const { append, ok, outcome } of flights) {
    if (outcome === undefined) {
      append.state = 'pending';
      append.settledBy = Date.now();
    } else if (outcome.status === 'rejected' && !isFactError(outcome.reason, 'FACT_CONCURRENCY')) {
      // The crash failed it: outcome unknown (its WAL record may be on disk).
      expect(cmd.at.kind, `${describeAppend(append)} failed before the crash: ${String(outcome.reason)}`).toBe('ops');
      expect(isSimCrash(outcome.reason), `${describeAppend(append)} failed with ${String(outcome.reason)}, not because of the crash`).toBe(true);
      append.state = 'pending';
      append.settledBy = Date.now();
    } else if (outcome.status === 'fulfilled') {
      expect(ok, `${describeAppend(append)} succeeded before the crash; the model predicted FACT_CONCURRENCY`).toBe(true);
      acknowledge(m, append, outcome.value);
    } else {
      expect(ok, `${describeAppend(append)} failed before the crash (${String(outcome.reason)}); the model predicted success`).toBe(false);
      refuse(append, outcome.reason);
    }
  }
  m.trace.push(
    `crash (${cmd.mode}, ${JSON.stringify(cmd.at)}) with ${flights.length} in flight: ` +
      flights.map(({ append }) => `${describeAppend(append)} ${append.state}`).join('; ') +
      `; LevelDB ${JSON.stringify(levelReport)}`,
  );
  // Read back what the dead process acknowledged (its LevelDB still holds it in memory).
  await pinFrom(w.store, m, headBefore + 1);
  await withTimeout(Promise.allSettled(flights.map(({ promise }) => promise)), 'appends of the crashed process');
  await withTimeout(w.store.close().catch(() => undefined), 'close of the crashed store');
  w.machine.restart();

  for (const [index, recovery] of cmd.recovery.entries()) {
    w.machine.fs.crashAfterOps(recovery.ops);
    let opened: FactStore | undefined;
    let failure: unknown;
    try {
      opened = await openStore(w);
    } catch (error) {
      // Only the simulated crash may stop recovery; anything else is a finding.
      if (!isSimCrash(error)) throw error;
      failure = error;
    }
    // The process dies during (or right after) recovery.
    const levelReport = w.machine.halt({ seed: recovery.seed });
    m.trace.push(
      `recovery crash ${index + 1} after ${recovery.ops} fs ops: ${opened ? 'open succeeded' : `open failed (${String(failure)})`}; LevelDB ${JSON.stringify(levelReport)}`,
    );
    if (opened) await withTimeout(opened.close().catch(() => undefined), 'close after a recovery crash');
    w.machine.restart();
  }
  w.store = await openStore(w);
  await checkRecovered(w);
  await checkConsistency(w);
}

// ------------------------------------------------------------------------------------ checks

/** After an open: acknowledged events intact, no phantoms, in-flight appends whole or absent; promotes survivors. */
async function checkRecovered(w: World): Promise<void> {
  const m = w.model;
  const all = await w.store.read('all').toArray();
  expect(await w.store.head(), 'head = number of events').toBe(all.length);
  all.forEach((event, index) => expect(event.position, 'positions are gapless from 1').toBe(index + 1));

  const found = new Map<number, RecordedEvent>();
  for (const event of all) {
    const serial = (event.metadata as { n?: unknown }).n;
    const modelEvent = typeof serial === 'number' ? m.events.get(serial) : undefined;
    expect(modelEvent, `phantom event at position ${event.position}: ${JSON.stringify(event)}`).toBeDefined();
    expect(found.has(serial as number), `event #${String(serial)} appears twice (again at position ${event.position})`).toBe(false);
    found.set(serial as number, event);
  }
  for (const append of m.appends) {
    const present = append.events.filter((event) => found.has(event.serial)).length;
    const count = append.events.length;
    const where = describeAppend(append);
    if (append.state === 'acked') {
      expect(present, `acknowledged ${where} lost ${count - present} of ${count} events`).toBe(count);
      append.events.forEach((event, k) => expect(found.get(event.serial)!.position, `acknowledged ${where}: position of event ${k}`).toBe(append.firstPosition + k));
    } else if (append.state === 'pending') {
      expect([0, count], `in-flight ${where} survived partly (${present} of ${count} events)`).toContain(present);
      if (present === count) {
        const first = found.get(append.events[0]!.serial)!.position;
        append.events.forEach((event, k) => expect(found.get(event.serial)!.position, `surviving ${where}: consecutive positions`).toBe(first + k));
        append.firstPosition = first;
      }
    } else {
      expect(present, `${where} (${append.state}) must not be in the store`).toBe(0);
    }
  }

  // Walk the ledger: stream positions, expectations, content; rebuild the model's view.
  const versions = new Map<string, number>();
  const ledger: MEvent[] = [];
  for (const event of all) {
    const modelEvent = m.events.get((event.metadata as { n: number }).n)!;
    const append = modelEvent.append;
    const k = append.events.indexOf(modelEvent);
    if (append.stream !== '' && k === 0) {
      const version = versions.get(append.stream) ?? 0;
      expect(violation(append.expect, version), `${describeAppend(append)} is stored although the stream was at version ${version}`).toBe(false);
      if (append.state === 'acked') expect(append.firstStreamPosition, `${describeAppend(append)}: stream position`).toBe(version + 1);
      append.firstStreamPosition = version + 1;
      versions.set(append.stream, version + append.events.length);
    }
    checkEvent(event, modelEvent, ledger.length + 1, append.firstStreamPosition + k);
    ledger.push(modelEvent);
  }
  for (const append of m.appends) {
    if (append.state === 'pending') append.state = found.has(append.events[0]!.serial) ? 'acked' : 'refused';
  }
  m.ledger = ledger;
  m.versions = versions;
}

/** verify(), index = rebuild, reads by index = brute-force filters, stream versions and lists. */
async function checkConsistency(w: World): Promise<void> {
  const m = w.model;
  const store = w.store;
  const report = await store.verify();
  expect(report.problems, 'verify() problems').toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.events).toBe(m.ledger.length);

  const before = await dumpLevel(w.machine.level);
  const rebuilt = await store.rebuildIndexes();
  expect(rebuilt.events).toBe(m.ledger.length);
  const after = await dumpLevel(w.machine.level);
  expect(after.indexes, 'indexes equal a rebuild from the ledger').toEqual(before.indexes);
  expect(after.rest, 'a rebuild changes nothing outside the index key spaces').toEqual(before.rest);

  const all = await store.read('all').toArray();
  expect(all.length).toBe(m.ledger.length);
  const positions = (events: RecordedEvent[]) => events.map((event) => event.position);
  for (const type of TYPES) {
    const read = await store.read({ type }).toArray();
    expect(positions(read), `read({ type: ${type} })`).toEqual(positions(all.filter((event) => event.type === type)));
    expect(read).toEqual(all.filter((event) => event.type === type));
  }
  for (const tag of TAGS) {
    const read = await store.read({ tag }).toArray();
    expect(read, `read({ tag: ${tag} })`).toEqual(all.filter((event) => event.tags.includes(tag)));
  }
  for (const stream of STREAMS) {
    const read = await store.read({ stream }).toArray();
    expect(read, `read({ stream: ${stream} })`).toEqual(all.filter((event) => event.stream === stream));
    expect(await store.streamVersion(stream), `streamVersion(${stream})`).toBe(m.versions.get(stream) ?? 0);
  }
  for (const category of CATEGORIES) {
    const read = await store.read({ category }).toArray();
    expect(read, `read({ category: ${category} })`).toEqual(oracleRead(all, { category }));
    const expected = [...m.versions.keys()].filter((stream) => categoryOf(stream) === category).sort();
    expect(await store.streams({ category }).toArray(), `streams({ category: ${category} })`).toEqual(expected);
  }
  expect(await store.streams().toArray(), 'streams()').toEqual([...m.versions.keys()].sort());
}

// ------------------------------------------------------------------------------------ run

async function runCommands(config: Config, commands: readonly Command[]): Promise<void> {
  const machine = new SimMachine({ seed: config.seed });
  const model = newModel();
  const w: World = { config, machine, model, store: await openStore({ config, machine }) };
  try {
    for (const command of commands) {
      switch (command.c) {
        case 'write':
          await runWrites(w, [command.write]);
          break;
        case 'concurrent':
          await runWrites(w, command.writes);
          break;
        case 'retry':
          await retry(w, command.pick);
          break;
        case 'reopen':
          model.trace.push('close + reopen');
          await w.store.close();
          w.store = await openStore(w);
          await checkRecovered(w);
          await checkConsistency(w);
          break;
        case 'crash':
          await crash(w, command);
          break;
      }
    }
    await checkRecovered(w);
    await checkConsistency(w);
  } catch (error) {
    if (error instanceof Error) error.message += `\ntrace:\n  ${model.trace.slice(-40).join('\n  ')}`;
    throw error;
  } finally {
    await w.store.close().catch(() => undefined);
  }
}

describe('FactStore crash injection: SimFileSystem + LossyLevel (fast-check)', () => {
  it(
    'keeps every acknowledged event through power losses, LevelDB holes and crashes in recovery; invents none; indexes equal a rebuild',
    async () => {
      await fc.assert(
        fc.asyncProperty(configArb, fc.array(commandArb, { minLength: 1, maxLength: 30, size: 'medium' }), async (config, commands) => {
          await runCommands(config, commands);
        }),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 1_000),
  );
});
