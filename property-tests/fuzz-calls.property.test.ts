/**
 * Fuzzing the API (issue 14): malformed arguments for every public method of FactStore (and the
 * Query builders, consumers and open options): wrong types, huge strings and arrays (bounded),
 * data nested 10,000 deep, NUL bytes and lone surrogates in names, `__proto__` / `constructor`
 * keys, NaN / ±Infinity / -0 / fractional / negative / huge numbers, bigints, symbols,
 * functions, cyclic objects, already-aborted AbortSignals. Each call must either succeed (the
 * input was valid after all) or throw / reject with a FactError (a FACT_* code), or, for a call
 * given an aborted signal, with that signal's reason (README: the documented convention). Never
 * a TypeError or RangeError from inside, never a hang (per-call timeout), and a refused call
 * writes nothing: a canonical dump of LevelDB, the head and a digest of every WAL file are the
 * same before and after it.
 *
 * Replay: FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/fuzz-calls.property.test.ts
 * Heavy: FACT_FUZZ_SCALE=100 npx vitest run property-tests/fuzz-calls.property.test.ts
 * Regressions (property-tests/regressions/fuzz-calls.ts) run first, on every run.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFactError } from '../src/errors.js';
import { FactStore } from '../src/store.js';
import { Query } from '../src/model/query.js';
import type { FactStoreOptions } from '../src/store.js';
import type { LevelDatabase } from '../src/storage/level.js';
import { SimFileSystem } from '../src/testing/index.js';
import { describeError, fuzzScale, HangError, levelDump, newMemoryLevel, Tally, withinTime } from './fuzz-support.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';
import { CALL_REGRESSIONS } from './regressions/fuzz-calls.js';

const DB = '/db';
const DEFAULT_CALLS = 1100 * fuzzScale();
/** What npm test promises (issue 14). */
const CALLS_MIN = 1000;
const FRESH_STORE_EVERY_CALLS = 500;
/** Bounded so that a case stays fast and memory sane. */
const HUGE_STRING_LENGTH = 200_000;
const HUGE_ARRAY_LENGTH = 100_001; // APPEND_EVENTS_MAX + 1
const DEEP_NESTING = 10_000;
/** How long a live subscription's first next() may wait before the case closes it. */
const LIVE_WAIT_MS = 5;

// ------------------------------------------------------------------------- nasty values

function nested(depth: number, wrap: (inner: unknown) => unknown): unknown {
  let value: unknown = 0;
  for (let i = 0; i < depth; i++) value = wrap(value);
  return value;
}

const cyclicObject: Record<string, unknown> = { a: 1 };
cyclicObject.self = cyclicObject;
const cyclicArray: unknown[] = [1];
cyclicArray.push(cyclicArray);
const protoKey = JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as Record<string, unknown>;
class Custom {
  type = 'T';
}

/** Built once: cases pick them by index (so a counterexample prints and shrinks as a number). */
const NASTY: readonly { label: string; value: () => unknown }[] = [
  { label: 'undefined', value: () => undefined },
  { label: 'null', value: () => null },
  { label: 'true', value: () => true },
  { label: '0', value: () => 0 },
  { label: '-1', value: () => -1 },
  { label: '1.5', value: () => 1.5 },
  { label: '-0', value: () => -0 },
  { label: 'NaN', value: () => Number.NaN },
  { label: 'Infinity', value: () => Number.POSITIVE_INFINITY },
  { label: '-Infinity', value: () => Number.NEGATIVE_INFINITY },
  { label: '2^53', value: () => 2 ** 53 },
  { label: '2^64', value: () => 2 ** 64 },
  { label: 'MAX_VALUE', value: () => Number.MAX_VALUE },
  { label: '1n', value: () => 1n },
  { label: '2^64n', value: () => 2n ** 64n },
  { label: "''", value: () => '' },
  { label: "'x'", value: () => 'x' },
  { label: "'\\0'", value: () => '\0' },
  { label: "'a\\0b'", value: () => 'a\0b' },
  { label: "'\\uD800'", value: () => 'x\uD800y' },
  { label: 'huge string', value: () => 'h'.repeat(HUGE_STRING_LENGTH) },
  { label: "'__proto__'", value: () => '__proto__' },
  { label: "'constructor'", value: () => 'constructor' },
  { label: "'start'", value: () => 'start' },
  { label: "'end'", value: () => 'end' },
  { label: "'all'", value: () => 'all' },
  { label: 'symbol', value: () => Symbol('s') },
  { label: 'function', value: () => () => undefined },
  { label: 'class instance', value: () => new Custom() },
  { label: 'invalid Date', value: () => new Date(Number.NaN) },
  { label: 'Map', value: () => new Map([['k', 1]]) },
  { label: 'Set', value: () => new Set([1]) },
  { label: 'Uint8Array', value: () => Uint8Array.of(1, 2) },
  { label: '[]', value: () => [] },
  { label: '[[]]', value: () => [[]] },
  { label: '{}', value: () => ({}) },
  { label: "{'__proto__' own key}", value: () => protoKey },
  { label: 'Object.create(null)', value: () => Object.create(null) as object },
  { label: '{constructor: 1}', value: () => ({ constructor: 1 }) },
  { label: 'cyclic object', value: () => cyclicObject },
  { label: 'cyclic array', value: () => cyclicArray },
  { label: 'array nested 10k', value: () => nested(DEEP_NESTING, (inner) => [inner]) },
  { label: 'object nested 10k', value: () => nested(DEEP_NESTING, (inner) => ({ a: inner })) },
  { label: 'Map nested 10k', value: () => nested(DEEP_NESTING, (inner) => new Map([['a', inner]])) },
  { label: 'huge array', value: () => Array.from({ length: HUGE_ARRAY_LENGTH }, () => ({ type: 'T' })) },
  // eslint-disable-next-line no-sparse-arrays -- a hole where an event should be
  { label: 'sparse array', value: () => [, { type: 'T' }] },
  { label: 'aborted signal', value: () => AbortSignal.abort() },
  { label: 'aborted signal (reason 7)', value: () => AbortSignal.abort(7) },
  { label: 'live signal', value: () => new AbortController().signal },
  { label: 'Query.all()', value: () => Query.all() },
  { label: 'Promise', value: () => Promise.resolve(1) },
  { label: 'Error', value: () => new Error('e') },
  { label: 'RegExp', value: () => /x/ },
  { label: "{type: 'T'}", value: () => ({ type: 'T' }) },
  { label: "{type: 'T', __proto__ own key}", value: () => Object.assign(JSON.parse('{"__proto__": {"type": 1}}') as object, { type: 'T' }) },
  { label: "{type: '\\0'}", value: () => ({ type: '\0' }) },
];

/** A slot is either a plausible value (from `valid`) or a nasty one. */
function slot(valid: readonly unknown[]): fc.Arbitrary<Arg> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.integer({ min: 0, max: Math.max(0, valid.length - 1) }).map((index): Arg => ({ valid: index })) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: NASTY.length - 1 }).map((index): Arg => ({ nasty: index })) },
  );
}

type Arg = { valid: number } | { nasty: number } | { fields: Record<string, Arg> } | { list: Arg[] };

function build(arg: Arg, valid: readonly unknown[] = []): unknown {
  if ('nasty' in arg) return NASTY[arg.nasty]!.value();
  if ('valid' in arg) return valid[arg.valid];
  if ('list' in arg) return arg.list.map((item) => build(item, valid));
  const object: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(arg.fields)) {
    const built = build(value, VALID[key] ?? []);
    if (built !== undefined) object[key] = built;
  }
  return object;
}

function label(arg: Arg, valid: readonly unknown[] = []): string {
  if ('nasty' in arg) return NASTY[arg.nasty]!.label;
  if ('valid' in arg) return `valid ${String(valid[arg.valid] instanceof Query ? 'Query' : typeof valid[arg.valid])}`;
  if ('list' in arg) return `[${arg.list.map((item) => label(item, valid)).join(', ')}]`;
  return `{${Object.entries(arg.fields).map(([key, value]) => `${key}: ${label(value, VALID[key] ?? [])}`).join(', ')}}`;
}

/** Valid values of the named fields (and of the named arguments below). */
const VALID: Record<string, readonly unknown[]> = {
  type: ['Created', 'Renamed'],
  tags: [['t:1'], ['t:1', 't:2'], []],
  data: [{ kind: 'a', n: 1 }, null, [1, 'x'], new Map([[1, 2]])],
  metadata: [{}, { by: 'fuzz' }],
  id: ['fuzz-id-1', 'fuzz-id-2'],
  stream: ['order-1', 'user-2'],
  expect: ['any', 'none', 'exists', 0, 1],
  from: [0, 1, 'start', 'end'],
  direction: ['forward', 'backward'],
  limit: [1, 5],
  signal: [undefined],
  category: ['order'],
  tag: ['t:1'],
  consumer: ['proj', 'other'],
  position: [0, 1],
  after: [0, 1],
  query: [Query.all(), Query.types('Created')],
  autoAck: [true, false],
  maxAttempts: [1, 3],
  timestamp: [1_700_000_000_000],
  types: [['Created']],
  createIfMissing: [true],
  checkpointEveryBytes: [1 << 20],
  force: [false],
  onProgress: [undefined],
  onIndexBuild: [undefined],
  segmentSizeBytes: [1 << 16],
  sync: ['always', 'none'],
  retainSegments: [0, 'all'],
  syncIntervalMs: [10],
  maxRecordSizeBytes: [1 << 20],
};

const fieldsArb = (names: readonly string[]): fc.Arbitrary<Arg> =>
  fc
    .subarray([...names])
    .chain((chosen) => fc.tuple(...chosen.map((name) => slot(VALID[name] ?? []))).map((args) => ({ fields: Object.fromEntries(chosen.map((name, i) => [name, args[i]!])) })));

const orNasty = (arbitrary: fc.Arbitrary<Arg>): fc.Arbitrary<Arg> => fc.oneof({ weight: 3, arbitrary }, { weight: 1, arbitrary: slot([]) });

/** Mostly valid: one field at most is nasty, so the nasty value reaches the check of that field. */
const mostlyValidEventArb: fc.Arbitrary<Arg> = fc
  .tuple(fc.constantFrom('type', 'data', 'metadata', 'tags', 'id'), slot([]), fc.boolean())
  .map(([field, nasty, tagged]) => ({ fields: { type: { valid: 0 }, ...(tagged ? { tags: { valid: 0 } } : {}), [field]: nasty } }));
const eventArb = fc.oneof(orNasty(fieldsArb(['type', 'data', 'metadata', 'tags', 'id'])), mostlyValidEventArb);
const eventsArb = fc.oneof(eventArb, fc.array(eventArb, { maxLength: 3 }).map((list): Arg => ({ list })));
const conditionArb = orNasty(fieldsArb(['query', 'after']));
const ackArb = orNasty(fieldsArb(['consumer', 'position']));
const sourceArb: fc.Arbitrary<Arg> = fc.oneof(
  slot(['all']),
  fieldsArb(['stream']),
  fieldsArb(['type']),
  fieldsArb(['tag']),
  fieldsArb(['category']),
  fieldsArb(['query']),
  fieldsArb(['stream', 'type']),
);
const readOptionsArb = orNasty(fieldsArb(['from', 'direction', 'limit', 'signal']));

// ------------------------------------------------------------------------- calls

type Call =
  | { m: 'append'; events: Arg; condition: Arg; options: Arg; ack: Arg }
  | { m: 'appendStream'; stream: Arg; events: Arg; options: Arg; condition: Arg; ack: Arg }
  | { m: 'read'; source: Arg; options: Arg; iterate: boolean }
  | { m: 'subscribe'; source: Arg; options: Arg }
  | { m: 'consumer'; name: Arg; source: Arg; options: Arg; ack: Arg }
  | { m: 'decide'; query: Arg; decider: number; output: Arg; options: Arg }
  | { m: 'query'; builder: 'items' | 'types' | 'tags' | 'data' | 'or'; args: Arg[] }
  | { m: 'streamVersion'; stream: Arg }
  | { m: 'streams'; options: Arg }
  | { m: 'resetConsumer'; name: Arg; position: Arg }
  | { m: 'deleteConsumer'; name: Arg }
  | { m: 'rebuildIndexes'; options: Arg }
  | { m: 'backup'; dest: Arg; options: Arg }
  | { m: 'restore'; from: Arg; to: Arg; options: Arg }
  | { m: 'open'; path: Arg; options: Arg; wal: Arg; indexes: Arg };

/** Only invalid paths for backup/restore: a valid one would touch the real file system. */
const INVALID_PATH = NASTY.map((entry, index) => ({ entry, index })).filter(({ entry }) => entry.label !== "'x'" && entry.label !== "'a\\0b'" && entry.label !== "'\\uD800'" && !/^'(__proto__|constructor|start|end|all)'$/.test(entry.label) && entry.label !== 'huge string' && entry.label !== "'\\0'");
const invalidPathArb = fc.constantFrom(...INVALID_PATH.map(({ index }): Arg => ({ nasty: index })));

const callArb: fc.Arbitrary<Call> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ m: fc.constant('append' as const), events: eventsArb, condition: fc.oneof(slot([undefined]), conditionArb), options: orNasty(fieldsArb(['timestamp'])), ack: fc.oneof(slot([undefined]), ackArb) }) },
  {
    weight: 4,
    arbitrary: fc.record({ m: fc.constant('appendStream' as const), stream: slot(VALID.stream!), events: eventsArb, options: orNasty(fieldsArb(['expect', 'timestamp'])), condition: fc.oneof(slot([undefined]), conditionArb), ack: fc.oneof(slot([undefined]), ackArb) }),
  },
  { weight: 3, arbitrary: fc.record({ m: fc.constant('read' as const), source: sourceArb, options: fc.oneof(slot([undefined]), readOptionsArb), iterate: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('subscribe' as const), source: sourceArb, options: fc.oneof(slot([undefined]), orNasty(fieldsArb(['from', 'signal']))) }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('consumer' as const), name: slot(VALID.consumer!), source: sourceArb, options: fc.oneof(slot([undefined]), orNasty(fieldsArb(['autoAck', 'signal']))), ack: slot(VALID.position!) }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('decide' as const), query: slot(VALID.query!), decider: fc.nat({ max: 4 }), output: eventsArb, options: fc.oneof(slot([undefined]), orNasty(fieldsArb(['maxAttempts', 'signal']))) }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('query' as const), builder: fc.constantFrom('items', 'types', 'tags', 'data', 'or'), args: fc.array(fc.oneof(slot([]), fieldsArb(['types', 'tags', 'data'])), { maxLength: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('streamVersion' as const), stream: slot(VALID.stream!) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('streams' as const), options: orNasty(fieldsArb(['category'])) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('resetConsumer' as const), name: slot(VALID.consumer!), position: slot(VALID.position!) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('deleteConsumer' as const), name: slot(VALID.consumer!) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('rebuildIndexes' as const), options: orNasty(fieldsArb(['onProgress'])) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('backup' as const), dest: invalidPathArb, options: slot([undefined]) }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('restore' as const), from: invalidPathArb, to: slot(['/tmp/never-used']), options: orNasty(fieldsArb(['force'])) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('open' as const),
      path: slot(['/other']),
      options: orNasty(fieldsArb(['createIfMissing', 'checkpointEveryBytes', 'onIndexBuild'])),
      wal: fc.oneof(slot([undefined]), orNasty(fieldsArb(['segmentSizeBytes', 'sync', 'retainSegments', 'syncIntervalMs', 'maxRecordSizeBytes']))),
      indexes: fc.oneof(slot([undefined]), slot([{ data: ['kind'] }, { data: [] }]), fieldsArb(['data'])),
    }),
  },
);

// ------------------------------------------------------------------------- running a call

const DECIDER_ERROR = new Error('the decider failed');

interface Ctx {
  db: FactStore;
  fs: SimFileSystem;
  level: LevelDatabase;
  /** The reasons of the AbortSignals this case passed, and its decider's error: rejecting with one is the documented outcome. */
  reasons: unknown[];
}

function withAck(options: unknown, ack: unknown): unknown {
  if (ack === undefined || typeof options !== 'object' || options === null) return options;
  return { ...(options), ack };
}

function withCondition(options: unknown, condition: unknown): unknown {
  if (condition === undefined || typeof options !== 'object' || options === null) return options;
  return { ...(options), condition };
}

/** Collects the reasons of every aborted signal inside a built argument (shallow: where signals go). */
function collectReasons(value: unknown, reasons: unknown[]): void {
  if (value instanceof AbortSignal) {
    if (value.aborted) reasons.push(value.reason);
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const inner of Object.values(value)) if (inner instanceof AbortSignal && inner.aborted) reasons.push(inner.reason);
  }
}

async function drain(iterable: AsyncIterable<unknown>, max = 1000): Promise<void> {
  let count = 0;
  for await (const _ of iterable) if (++count >= max) break;
}

/** Performs the call; resolves when it succeeded, throws what it threw. `wrote` tells whether success may have written. */
async function perform(call: Call, ctx: Ctx): Promise<void> {
  const { db } = ctx;
  const b = (arg: Arg, valid: readonly unknown[] = []) => {
    const value = build(arg, valid);
    collectReasons(value, ctx.reasons);
    return value;
  };
  switch (call.m) {
    case 'append': {
      const events = b(call.events);
      const options = withAck(b(call.options), b(call.ack));
      await (db.append as (...args: unknown[]) => Promise<unknown>)(events, b(call.condition), options);
      return;
    }
    case 'appendStream': {
      const options = withCondition(withAck(b(call.options), b(call.ack)), b(call.condition));
      await (db.appendStream as (...args: unknown[]) => Promise<unknown>)(b(call.stream, VALID.stream), b(call.events), options);
      return;
    }
    case 'read': {
      const reader = (db.read as (...args: unknown[]) => AsyncIterable<unknown> & { toArray(): Promise<unknown[]> })(b(call.source, ['all']), b(call.options));
      if (call.iterate) await drain(reader);
      else await reader.toArray();
      return;
    }
    case 'subscribe': {
      const subscription = (db.subscribe as (...args: unknown[]) => AsyncIterator<unknown> & { close(): Promise<void> })(b(call.source, ['all']), b(call.options));
      await firstThenClose(subscription);
      return;
    }
    case 'consumer': {
      const consumer = (db.consumer as (...args: unknown[]) => AsyncIterator<unknown> & { close(): Promise<void>; ack(position?: unknown): Promise<void> })(
        b(call.name, VALID.consumer),
        b(call.source, ['all']),
        b(call.options),
      );
      try {
        await withinTime('consumer.next()', () => consumer.next(), LIVE_WAIT_MS * 20).catch((error: unknown) => {
          if (!(error instanceof HangError)) throw error;
        });
        await consumer.ack(b(call.ack, VALID.position));
      } finally {
        await consumer.close();
      }
      return;
    }
    case 'decide': {
      const output = b(call.output);
      // The caller's own decider failing: decide() rejects with its error (README, "Decisions").
      ctx.reasons.push(DECIDER_ERROR);
      const deciders = [
        () => output,
        () => Promise.resolve(output),
        () => {
          throw DECIDER_ERROR;
        },
        () => [output, output],
        output,
      ];
      await (db.decide as (...args: unknown[]) => Promise<unknown>)(b(call.query, VALID.query), deciders[call.decider], b(call.options));
      return;
    }
    case 'query': {
      const args = call.args.map((arg) => b(arg));
      if (call.builder === 'or') (Query.all().or as (...args: unknown[]) => unknown)(...args);
      else (Query[call.builder] as (...args: unknown[]) => unknown)(...args);
      return;
    }
    case 'streamVersion':
      await (db.streamVersion as (...args: unknown[]) => Promise<unknown>)(b(call.stream, VALID.stream));
      return;
    case 'streams':
      await (db.streams as (...args: unknown[]) => { toArray(): Promise<unknown> })(b(call.options)).toArray();
      return;
    case 'resetConsumer':
      await (db.resetConsumer as (...args: unknown[]) => Promise<unknown>)(b(call.name, VALID.consumer), b(call.position, VALID.position));
      return;
    case 'deleteConsumer':
      await (db.deleteConsumer as (...args: unknown[]) => Promise<unknown>)(b(call.name, VALID.consumer));
      return;
    case 'rebuildIndexes':
      await (db.rebuildIndexes as (...args: unknown[]) => Promise<unknown>)(b(call.options));
      return;
    case 'backup':
      await (db.backup as (...args: unknown[]) => Promise<unknown>)(b(call.dest), b(call.options));
      return;
    case 'restore':
      await (FactStore.restore as (...args: unknown[]) => Promise<unknown>)(b(call.from), b(call.to, ['/tmp/never-used']), b(call.options));
      return;
    case 'open': {
      const options = b(call.options);
      const wal = b(call.wal);
      const indexes = b(call.indexes, [{ data: ['kind'] }, { data: [] }]);
      const full = typeof options === 'object' && options !== null ? { ...(options), ...(wal === undefined ? {} : { wal }), ...(indexes === undefined ? {} : { indexes }) } : options;
      const opened = await openOther(b(call.path, ['/other']), full, ctx);
      await opened.close();
      return;
    }
  }
}

/** Opens another database on this case's disk, with its own LevelDB: only the open's validation is under test. */
function openOther(path: unknown, options: unknown, ctx: Ctx): Promise<FactStore> {
  // Never the real disk: no options at all would open `path` with classic-level in the working directory.
  const simulated = { fs: ctx.fs, level: newMemoryLevel(), levelDurability: 'volatile' as const };
  const placed = options === undefined ? simulated : typeof options === 'object' && options !== null ? { ...(options as FactStoreOptions), ...simulated } : options;
  return (FactStore.open as (...args: unknown[]) => Promise<FactStore>)(path, placed);
}

async function firstThenClose(subscription: AsyncIterator<unknown> & { close(): Promise<void> }): Promise<void> {
  try {
    await withinTime('subscription.next()', () => subscription.next(), LIVE_WAIT_MS * 20).catch((error: unknown) => {
      if (!(error instanceof HangError)) throw error;
    });
  } finally {
    await subscription.close();
  }
}

// ------------------------------------------------------------------------- the store and its dump

async function walDigest(fs: SimFileSystem, dir: string): Promise<string> {
  const lines: string[] = [];
  for (const name of await fs.readdir(dir)) {
    if (name === 'LOCK') continue;
    const bytes = await fs.readFile(`${dir}/${name}`);
    lines.push(`${name}:${bytes === null ? '-' : createHash('sha1').update(bytes).digest('hex')}`);
  }
  return lines.join(',');
}

/** Everything a refused call must leave as it was. */
async function storeDump(ctx: Ctx): Promise<string> {
  const other = await ctx.fs.readdir('/other');
  return [`head ${await ctx.db.head()}`, `wal ${await walDigest(ctx.fs, `${DB}/wal`)}`, `other ${other.join(',')}`, await levelDump(ctx.level)].join('\n');
}

/** Waits until background work (the apply, a fill extension) has settled, so a dump is stable. */
async function settle(ctx: Ctx): Promise<string> {
  await ctx.db.verify();
  let previous = await storeDump(ctx);
  for (let attempt = 0; attempt < 20; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    const current = await storeDump(ctx);
    if (current === previous) return current;
    previous = current;
  }
  return previous;
}

const tally = new Tally();

type Verdict = { outcome: string } | { failure: string };

async function runCall(call: Call, ctx: Ctx, before: string): Promise<{ verdict: Verdict; after: string }> {
  ctx.reasons = [];
  let error: unknown = null;
  let succeeded = false;
  try {
    await withinTime(`${call.m}`, () => perform(call, ctx));
    succeeded = true;
  } catch (caught) {
    if (caught instanceof HangError) return { verdict: { failure: caught.message }, after: before };
    error = caught;
  }
  if (succeeded) return { verdict: { outcome: 'ok' }, after: await settle(ctx) };
  if (!isFactError(error) && !ctx.reasons.some((reason) => reason === error)) {
    return { verdict: { failure: `${call.m} threw ${describeError(error)}` }, after: before };
  }
  // A refused call writes nothing. (Give a write it started a moment to land before comparing.)
  await new Promise((resolve) => setTimeout(resolve, 1));
  const after = await storeDump(ctx);
  const outcome = isFactError(error) ? error.code : error === DECIDER_ERROR ? 'the decider’s error' : 'the signal’s reason';
  if (after !== before) return { verdict: { failure: `${call.m} was refused (${describeError(error)}) but wrote:\n${firstDiff(before, after)}` }, after };
  return { verdict: { outcome }, after };
}

function firstDiff(before: string, after: string): string {
  const a = before.split('\n');
  const b = after.split('\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `before: ${a[i] ?? '(nothing)'}\nafter:  ${b[i] ?? '(nothing)'}`;
  return '(no line differs)';
}

describe('fuzzed calls: malformed arguments to every public method (only FACT_* errors, no write when refused)', () => {
  const ctx = {} as Ctx;
  let baseline = '';

  let calls = 0;
  const freshStore = async () => {
    ctx.fs = new SimFileSystem({ seed: 11 });
    ctx.level = newMemoryLevel();
    ctx.db = await FactStore.open(DB, { fs: ctx.fs, level: ctx.level, levelDurability: 'volatile', wal: { segmentSizeBytes: 1 << 16 }, indexes: { data: ['kind'] } });
    for (let i = 0; i < 10; i++) await ctx.db.appendStream(i % 2 === 0 ? 'order-1' : 'user-2', [{ type: i % 3 === 0 ? 'Created' : 'Renamed', tags: ['t:1'], data: { kind: 'a', n: i } }]);
    await ctx.db.resetConsumer('proj', 3);
    await ctx.fs.mkdir('/other');
    baseline = await settle(ctx);
  };
  beforeAll(freshStore);

  afterAll(async () => {
    console.log(tally.format('fuzz-calls (method: outcome count)'));
    await ctx.db.close();
  });

  const check = async (call: Call, name: string) => {
    // A new store now and then: the dumps compared per call stay small however long the run.
    if (++calls % FRESH_STORE_EVERY_CALLS === 0) {
      await ctx.db.close();
      await freshStore();
    }
    const { verdict, after } = await runCall(call, ctx, baseline);
    baseline = after;
    tally.add(call.m, 'outcome' in verdict ? verdict.outcome : 'FAILURE');
    if ('failure' in verdict) throw new Error(`${verdict.failure}\ncall ${name}: ${JSON.stringify(call)}\nargs: ${describeCall(call)}`);
  };

  const fullRun = process.env.FACT_PROPERTY_RUNS === undefined && process.env.FACT_PATH === undefined;

  it('replays the regression corpus', async () => {
    for (const regression of CALL_REGRESSIONS) await check(regression.call as Call, regression.name);
  });

  it(
    'every call succeeds or fails with a FactError, and a refused one writes nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(callArb, async (call) => {
          await check(call, 'generated');
        }),
        propertyParams(DEFAULT_CALLS),
      );
    },
    propertyTimeoutMs(DEFAULT_CALLS, 40),
  );

  it.runIf(fullRun)(`made at least ${CALLS_MIN} calls`, () => {
    expect(tally.total).toBeGreaterThanOrEqual(CALLS_MIN * fuzzScale());
  });
});

function describeCall(call: Call): string {
  return Object.entries(call)
    .filter(([key]) => key !== 'm')
    .map(([key, value]) => `${key}=${Array.isArray(value) ? `[${(value as Arg[]).map((arg) => label(arg)).join(', ')}]` : typeof value === 'object' && value !== null ? label(value as Arg) : String(value)}`)
    .join(' ');
}
