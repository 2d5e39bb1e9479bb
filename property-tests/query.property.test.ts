/**
 * DCB queries and conditional appends against a brute-force model (fast-check).
 *
 * A FactStore on memory-level + SimFileSystem gets random commands: appends (random types from a
 * small set, random tag subsets, small data objects whose values collide by design — 1 and '1',
 * 1 and 1n, an array and its element — and non-object data), reads by random queries (1–3 items
 * of types, tags and data criteria, or Query.all()) with random from, direction and limit,
 * conditional appends with random `after` in [0, head + 3], and bursts of concurrent
 * (conditional) appends. Data fields are declared at open or indexed on first use, mid-run.
 *
 * Laws:
 * 1. read({ query }, options) equals read('all') filtered by the independent oracle (oracle/dcb-oracle.ts,
 *    written from the DCB spec, sharing no code with the production matcher), with from (inclusive),
 *    direction and limit applied;
 * 2. a conditional append succeeds exactly when no event after `after` matches; a failure is
 *    FACT_CONCURRENCY { expected: after, actual: the latest matching position } and writes nothing;
 * 3. concurrent appends are planned in call order: each sees exactly the events before the burst
 *    and the successful appends called before it — its success or its conflict is decided by them;
 * 4. read('all') equals the appended events, verify() is ok;
 * 5. db.decide() hands its decider exactly the brute-force matches of its query (synchronous
 *    ones in a burst: those before it in call order) and appends what it returns, never conflicting.
 * Some runs hold a few hundred events, beyond the read and index-cursor batch sizes.
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/query.property.test.ts
 * Heavier run: FACT_PROPERTY_RUNS=500 npx vitest run property-tests/query.property.test.ts
 */
import fc from 'fast-check';
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { FactError, FactStore, Query } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import type { AppendResult, EventInput, QueryItem, ReadOptions, RecordedEvent } from '../src/index.js';
import { VIEW } from '../src/storage/level.js';
import { conflictingPosition, expectedRead as oracleRead, queryMatches } from './oracle/dcb-oracle.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';

const DEFAULT_RUNS_READS = 40;
const DEFAULT_RUNS_CONDITIONS = 60;

const TYPES = ['A', 'B', 'C', 'D'] as const;
const TAGS = ['t1', 't2', 't3', 't4'] as const;
/** 'k' and 'n' may be declared at open; 'm' is always indexed on first use. */
const FIELDS = ['k', 'n', 'm'] as const;
/** Values that collide in JavaScript or JSON but not in CBOR. */
const VALUES: readonly unknown[] = [0, 1, '1', 2, '2', 1n, true, null, 'x', [1], [1, '1']];

// ------------------------------------------------------------------------------------ arbitraries

const valueArb = fc.constantFrom(...VALUES);
const nonObjectDataArb = fc.constantFrom<unknown>('k', 5, [1], null, new Map([['k', 1]]), new Date(0), undefined);
const objectDataArb = fc.dictionary(fc.constantFrom(...FIELDS, 'other'), valueArb, { maxKeys: 3 });
const dataArb = fc.oneof({ weight: 5, arbitrary: objectDataArb }, { weight: 1, arbitrary: nonObjectDataArb });

const eventArb: fc.Arbitrary<EventInput> = fc
  .record({ type: fc.constantFrom(...TYPES), tags: fc.subarray([...TAGS]), data: dataArb })
  .map(({ type, tags, data }) => (data === undefined ? { type, tags } : { type, tags, data }));

/** A value, alternatives, or a wrapped array (to match an array value). */
const queryValueArb = fc.oneof(valueArb, fc.array(valueArb, { minLength: 1, maxLength: 3 }), valueArb.map((value) => [value]));

const itemArb: fc.Arbitrary<QueryItem> = fc
  .record({
    types: fc.option(fc.subarray([...TYPES], { minLength: 1, maxLength: 3 }), { nil: undefined }),
    tags: fc.option(fc.subarray([...TAGS], { minLength: 1, maxLength: 2 }), { nil: undefined }),
    data: fc.option(fc.dictionary(fc.constantFrom(...FIELDS), queryValueArb, { minKeys: 1, maxKeys: 2 }), { nil: undefined, freq: 3 }),
  })
  .filter((item) => item.types !== undefined || item.tags !== undefined || item.data !== undefined)
  .map((item) => Object.fromEntries(Object.entries(item).filter(([, value]) => value !== undefined)) as QueryItem);

type QuerySpec = 'all' | QueryItem[];
const querySpecArb: fc.Arbitrary<QuerySpec> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<'all'>('all') },
  { weight: 15, arbitrary: fc.array(itemArb, { minLength: 1, maxLength: 3 }) },
);

const toQuery = (spec: QuerySpec): Query => (spec === 'all' ? Query.all() : Query.items(...spec));

interface ReadCommand {
  kind: 'read';
  query: QuerySpec;
  /** Reduced modulo head + 3 at run time. */
  from: number | undefined;
  direction: 'forward' | 'backward';
  limit: number | undefined;
}
interface AppendCommand {
  kind: 'append';
  events: EventInput[];
}
interface ConditionalSpec {
  /** A synchronous db.decide() on `query` returning `events`, instead of a conditional append. */
  decide?: boolean;
  query: QuerySpec | null;
  /** Reduced modulo head + 3 at run time; undefined: no `after`. */
  after: number | undefined;
  events: EventInput[];
}
interface ConditionalCommand extends ConditionalSpec {
  kind: 'conditional';
}
interface BurstCommand {
  kind: 'burst';
  appends: ConditionalSpec[];
}
/** db.decide(query, decider): the decider records what it saw and returns `events` (or none). */
interface DecideCommand {
  kind: 'decide';
  query: QuerySpec;
  events: EventInput[];
  asynchronous: boolean;
}
type Command = ReadCommand | AppendCommand | ConditionalCommand | BurstCommand | DecideCommand;

const readArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constant('read' as const),
  query: querySpecArb,
  from: fc.option(fc.nat(), { nil: undefined }),
  direction: fc.constantFrom('forward' as const, 'backward' as const),
  limit: fc.option(fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 100, max: 400 })), { nil: undefined }),
});
const appendArb: fc.Arbitrary<Command> = fc.record({ kind: fc.constant('append' as const), events: fc.array(eventArb, { minLength: 1, maxLength: 20 }) });
const conditionalSpecArb: fc.Arbitrary<ConditionalSpec> = fc.record({
  query: querySpecArb,
  after: fc.option(fc.nat(), { nil: undefined, freq: 4 }),
  events: fc.array(eventArb, { minLength: 1, maxLength: 3 }),
});
const decideArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constant('decide' as const),
  query: querySpecArb,
  events: fc.array(eventArb, { maxLength: 3 }),
  asynchronous: fc.boolean(),
});
const conditionalArb: fc.Arbitrary<Command> = conditionalSpecArb.map((spec) => ({ kind: 'conditional' as const, ...spec }));
const burstArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constant('burst' as const),
  appends: fc.array(
    fc.oneof(
      { weight: 4, arbitrary: conditionalSpecArb },
      { weight: 1, arbitrary: fc.array(eventArb, { minLength: 1, maxLength: 3 }).map((events) => ({ query: null, after: undefined, events })) },
      { weight: 2, arbitrary: conditionalSpecArb.map((spec) => ({ ...spec, decide: true })) },
    ),
    { minLength: 2, maxLength: 10 },
  ),
});

interface Scenario {
  declared: string[];
  initial: EventInput[];
  /** Sizes of the appends the initial events are split into. */
  batchSize: number;
  commands: Command[];
}

function scenarioArb(options: { large: boolean; weights: { read: number; append: number; conditional: number; burst: number; decide?: number } }): fc.Arbitrary<Scenario> {
  const initial = options.large
    ? fc.oneof({ weight: 2, arbitrary: fc.array(eventArb, { maxLength: 30 }) }, { weight: 1, arbitrary: fc.array(eventArb, { minLength: 150, maxLength: 450 }) })
    : fc.array(eventArb, { maxLength: 20 });
  const { weights } = options;
  return fc.record({
    declared: fc.subarray(['k', 'n']),
    initial,
    batchSize: fc.integer({ min: 1, max: 300 }),
    commands: fc.array(
      fc.oneof(
        { weight: weights.read, arbitrary: readArb },
        { weight: weights.append, arbitrary: appendArb },
        { weight: weights.conditional, arbitrary: conditionalArb },
        { weight: weights.burst, arbitrary: burstArb },
        { weight: weights.decide ?? 0, arbitrary: decideArb },
      ),
      { minLength: 1, maxLength: 15 },
    ),
  });
}

// ------------------------------------------------------------------------------------ the model

/** What read({ query }, options) must return: the oracle's filter of read('all'). */
function expectedRead(all: readonly RecordedEvent[], query: QuerySpec, options: { from: number | undefined; direction: 'forward' | 'backward'; limit: number | undefined }): number[] {
  return oracleRead(all, { query }, options).map((event) => event.position);
}

/** The latest position > after among `events` matching the query, or 0 (the oracle's verdict). */
function latestConflict(events: readonly RecordedEvent[], query: QuerySpec, after: number): number {
  return conflictingPosition(events, { failIfEventsMatch: query, after });
}

const sameContent = (event: RecordedEvent) => ({ type: event.type, tags: event.tags, data: event.data });
const inputContent = (event: EventInput) => ({ type: event.type, tags: [...new Set(event.tags ?? [])], data: event.data === undefined ? null : event.data });

async function runScenario(scenario: Scenario): Promise<void> {
  const level = new MemoryLevel<Uint8Array, Uint8Array>(VIEW);
  const db = await FactStore.open('/db', { level, levelDurability: 'volatile', fs: new SimFileSystem(), indexes: { data: scenario.declared } });
  /** Every event appended, in position order (position = index + 1). */
  const model: EventInput[] = [];
  /** Data fields with an index: declared, or used by a query before. */
  const indexed = new Set<string>(scenario.declared);
  try {
    for (let start = 0; start < scenario.initial.length; start += scenario.batchSize) {
      const batch = scenario.initial.slice(start, start + scenario.batchSize);
      await db.append(batch);
      model.push(...batch);
    }
    for (const command of scenario.commands) {
      const head = await db.head();
      expect(head).toBe(model.length);
      switch (command.kind) {
        case 'append': {
          expect(await db.append(command.events)).toEqual({ position: head + command.events.length, count: command.events.length });
          model.push(...command.events);
          break;
        }
        case 'read': {
          const query = toQuery(command.query);
          const options: ReadOptions = { direction: command.direction };
          const from = command.from === undefined ? undefined : command.from % (head + 3);
          if (from !== undefined) options.from = from;
          if (command.limit !== undefined) options.limit = command.limit;
          const actual = await db.read({ query }, options).toArray();
          for (const field of query.dataFields) indexed.add(field);
          const all = await db.read('all').toArray();
          expect(actual.map((event) => event.position)).toEqual(expectedRead(all, command.query, { from, direction: command.direction, limit: command.limit }));
          // The events themselves are the ledger's.
          for (const event of actual) expect(event).toEqual(all[event.position - 1]);
          // toArray() reads in one batch; iterating streams: both read the same.
          const streamed = [];
          for await (const event of db.read({ query }, options)) streamed.push(event);
          expect(streamed).toEqual(actual);
          break;
        }
        case 'conditional': {
          const query = toQuery(command.query ?? 'all');
          const after = command.after === undefined ? undefined : command.after % (head + 3);
          const all = await db.read('all').toArray();
          const conflict = latestConflict(all, command.query ?? 'all', after ?? 0);
          const outcome = await db.append(command.events, { failIfEventsMatch: query, ...(after === undefined ? {} : { after }) }).catch((error: unknown) => error);
          for (const field of query.dataFields) indexed.add(field);
          if (conflict === 0) {
            expect(outcome).toEqual({ position: head + command.events.length, count: command.events.length });
            model.push(...command.events);
          } else {
            expect(outcome).toBeInstanceOf(FactError);
            expect(outcome).toMatchObject({ code: 'FACT_CONCURRENCY', details: { expected: after ?? 0, actual: conflict } });
            expect(await db.head()).toBe(head);
          }
          break;
        }
        case 'burst': {
          await runBurst(db, head, command.appends, model, indexed);
          break;
        }
        case 'decide': {
          const query = toQuery(command.query);
          const all = await db.read('all').toArray();
          let seen: RecordedEvent[] | null = null;
          const decider = (events: readonly RecordedEvent[]) => {
            seen = [...events];
            return command.events;
          };
          const result = await db.decide(query, command.asynchronous ? (events) => Promise.resolve(decider(events)) : decider);
          for (const field of query.dataFields) indexed.add(field);
          // Alone, no conflict: the decider saw every match, in order, as the ledger holds it.
          expect(seen!.map((event) => event.position)).toEqual(expectedRead(all, command.query, { from: undefined, direction: 'forward', limit: undefined }));
          for (const event of seen!) expect(event).toEqual(all[event.position - 1]);
          expect(result.decidedAt).toBe(head);
          expect(result.attempts).toBe(1);
          if (command.events.length === 0) {
            expect(result.appended).toBeNull();
          } else {
            expect(result.appended).toEqual({ position: head + command.events.length, count: command.events.length });
            model.push(...command.events);
          }
          break;
        }
      }
    }
    const all = await db.read('all').toArray();
    expect(all.map((event) => event.position)).toEqual(model.map((_, index) => index + 1));
    expect(all.map(sameContent)).toEqual(model.map(inputContent));
    const report = await db.verify();
    expect(report.problems).toEqual([]);
  } finally {
    await db.close();
    await level.close();
  }
}

/**
 * Concurrent appends, all issued before any is awaited. The writer plans them in call order, so
 * each one sees the events before the burst and the successful appends called before it. An
 * append whose condition needs a data index that does not exist yet is queued only once the
 * index is built, after appends called later: then only commit order is checked.
 */
async function runBurst(db: FactStore, head: number, appends: readonly ConditionalSpec[], model: EventInput[], indexed: Set<string>): Promise<void> {
  const before = await db.read('all').toArray();
  const calls = appends.map((spec) => {
    const query = spec.query === null ? null : toQuery(spec.query);
    const after = spec.after === undefined ? undefined : spec.after % (head + 3);
    // A decision whose query needs an index build waits for it: out of call order, so not here.
    if (spec.decide && query !== null && spec.events.length > 0 && query.dataFields.every((field) => indexed.has(field))) {
      const decision = { seen: null as RecordedEvent[] | null };
      const promise = db
        .decide(query, (events) => {
          decision.seen = [...events];
          return spec.events;
        })
        .then((result) => result.appended!);
      return { spec, query, after: 0, promise, decision };
    }
    const promise =
      query === null ? db.append(spec.events) : db.append(spec.events, { failIfEventsMatch: query, ...(after === undefined ? {} : { after }) });
    return { spec, query, after: after ?? 0, promise, decision: null };
  });
  const buildsIndex = calls.some((call) => call.query?.dataFields.some((field) => !indexed.has(field)) ?? false);
  for (const call of calls) for (const field of call.query?.dataFields ?? []) indexed.add(field);
  const outcomes = await Promise.allSettled(calls.map((call) => call.promise));
  const all = await db.read('all').toArray();
  const succeeded = calls
    .map((call, index) => ({ call, index, outcome: outcomes[index]! }))
    .filter((entry): entry is typeof entry & { outcome: PromiseFulfilledResult<AppendResult> } => entry.outcome.status === 'fulfilled');
  for (const [index, call] of calls.entries()) {
    const outcome = outcomes[index]!;
    if (outcome.status === 'rejected') {
      expect(outcome.reason, `burst append ${index}`).toMatchObject({ code: 'FACT_CONCURRENCY', details: { expected: call.after } });
    }
  }
  // Commit order: the successes fill (head, new head] with their events, each consistent with what came before it.
  succeeded.sort((a, b) => a.outcome.value.position - b.outcome.value.position);
  let nextPosition = head + 1;
  for (const { call, index, outcome } of succeeded) {
    const count = call.spec.events.length;
    expect(outcome.value, `burst append ${index}`).toEqual({ position: nextPosition + count - 1, count });
    expect(all.slice(nextPosition - 1, nextPosition - 1 + count).map(sameContent)).toEqual(call.spec.events.map(inputContent));
    if (call.query !== null && call.decision === null) expect(latestConflict(all.slice(0, nextPosition - 1), call.spec.query!, call.after), `burst append ${index}`).toBe(0);
    model.push(...call.spec.events);
    nextPosition += count;
  }
  expect(await db.head()).toBe(nextPosition - 1);
  if (buildsIndex) {
    // Each failure names a real conflict.
    for (const [index, call] of calls.entries()) {
      const outcome = outcomes[index]!;
      if (outcome.status === 'fulfilled') continue;
      const actual = ((outcome.reason as FactError).details as { actual: number }).actual;
      expect(actual, `burst append ${index}`).toBeGreaterThan(call.after);
      expect(queryMatches(call.spec.query!, all[actual - 1]!), `burst append ${index}: the conflict matches`).toBe(true);
    }
    return;
  }
  // Call order, exactly: what each append saw decides its outcome and its conflict.
  const visible: RecordedEvent[] = [...before];
  let position = head + 1;
  for (const [index, call] of calls.entries()) {
    const outcome = outcomes[index]!;
    if (call.decision !== null) {
      // A synchronous decision runs in the writer's turn: it sees exactly what came before it and never conflicts.
      expect(outcome.status, `burst decision ${index} succeeds`).toBe('fulfilled');
      expect(call.decision.seen!.map((event) => event.position), `burst decision ${index} saw every match before it`).toEqual(
        expectedRead(visible, call.spec.query!, { from: undefined, direction: 'forward', limit: undefined }),
      );
      expect((outcome as PromiseFulfilledResult<AppendResult>).value.position, `burst decision ${index} is planned in call order`).toBe(position + call.spec.events.length - 1);
      visible.push(...all.slice(position - 1, position - 1 + call.spec.events.length));
      position += call.spec.events.length;
      continue;
    }
    const conflict = call.spec.query === null ? 0 : latestConflict(visible, call.spec.query, call.after);
    if (conflict === 0) {
      expect(outcome.status, `burst append ${index} should succeed`).toBe('fulfilled');
      expect((outcome as PromiseFulfilledResult<AppendResult>).value.position, `burst append ${index} is planned in call order`).toBe(position + call.spec.events.length - 1);
      visible.push(...all.slice(position - 1, position - 1 + call.spec.events.length));
      position += call.spec.events.length;
    } else {
      expect(outcome.status, `burst append ${index} should fail`).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'FACT_CONCURRENCY', details: { expected: call.after, actual: conflict } });
    }
  }
}

// ------------------------------------------------------------------------------------ properties

describe('DCB queries and conditions against a brute-force model (fast-check)', () => {
  it(
    'read({ query }, { from, direction, limit }) equals the brute-force filter of read("all"), also across batch sizes',
    async () => {
      const arb = scenarioArb({ large: true, weights: { read: 6, append: 2, conditional: 1, burst: 1, decide: 2 } });
      await fc.assert(
        fc.asyncProperty(arb, (scenario) => runScenario(scenario)),
        propertyParams(DEFAULT_RUNS_READS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS_READS, 1_000),
  );

  it(
    'conditional appends succeed exactly when no event after `after` matches, alone and in concurrent bursts',
    async () => {
      const arb = scenarioArb({ large: false, weights: { read: 1, append: 1, conditional: 4, burst: 3, decide: 2 } });
      await fc.assert(
        fc.asyncProperty(arb, (scenario) => runScenario(scenario)),
        propertyParams(DEFAULT_RUNS_CONDITIONS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS_CONDITIONS, 1_000),
  );
});
