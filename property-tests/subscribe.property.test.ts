/**
 * db.subscribe(source, { from, signal }) under fast-check's scheduler: random interleavings of
 * appends (append and appendStream, single events and batches, some concurrent), subscriptions to
 * random sources with random `from`, slow consumers, close()/abort at random moments and
 * concurrent rebuildIndexes(); some runs flood a stalled subscriber with more than
 * UNAPPLIED_EVENTS_MAX events so that it must read from the store.
 *
 * Law: a subscriber receives exactly the events of its source from its start, in position order,
 * nothing missing or repeated (a prefix of them when closed early). The oracle filters
 * read('all') with its own matching, not the production matcher. 'end' starts after the head
 * taken synchronously at subscribe: db.head() resolves the head of the call's own turn.
 *
 * Replay: FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/subscribe.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FactStore, Query, UNAPPLIED_EVENTS_MAX } from '../src/index.js';
import type { EventInput, ReadSource, RecordedEvent } from '../src/index.js';
import { memoryBackend } from '../test/support/backends.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';

const DEFAULT_RUNS = 40;
const TYPES = ['A', 'B', 'C'] as const;
const TAGS = ['t1', 't2', 't3'] as const;
const STREAMS = ['cart-1', 'cart-2', 'order-1'] as const;
const COLOURS = ['red', 'blue'] as const;
/** Events per append of a flood (a few appends push a stalled subscriber past the tail). */
const FLOOD_BATCH_EVENTS = 4096;
/** Real time a finished subscriber gets to deliver the rest (only a missing event reaches it). */
const DRAIN_DEADLINE_MS = 5_000;

type SourceSpec =
  | { kind: 'all' }
  | { kind: 'type'; name: string }
  | { kind: 'tag'; name: string }
  | { kind: 'stream'; name: string }
  | { kind: 'category'; name: string }
  | { kind: 'query'; items: { types?: string[]; tags?: string[]; colour?: string }[] };

const eventArb: fc.Arbitrary<EventInput> = fc.record({
  type: fc.constantFrom(...TYPES),
  tags: fc.subarray([...TAGS]),
  data: fc.record({ colour: fc.constantFrom(...COLOURS), n: fc.nat(9) }),
});
const sourceArb: fc.Arbitrary<SourceSpec> = fc.oneof(
  fc.constant({ kind: 'all' as const }),
  fc.constantFrom(...TYPES).map((name) => ({ kind: 'type' as const, name })),
  fc.constantFrom(...TAGS).map((name) => ({ kind: 'tag' as const, name })),
  fc.constantFrom(...STREAMS).map((name) => ({ kind: 'stream' as const, name })),
  fc.constantFrom('cart', 'order').map((name) => ({ kind: 'category' as const, name })),
  fc
    .array(
      fc
        .record({
          types: fc.option(fc.subarray([...TYPES], { minLength: 1 }), { nil: undefined }),
          tags: fc.option(fc.subarray([...TAGS], { minLength: 1, maxLength: 2 }), { nil: undefined }),
          colour: fc.option(fc.constantFrom(...COLOURS), { nil: undefined, freq: 3 }),
        })
        .filter((item) => item.types !== undefined || item.tags !== undefined || item.colour !== undefined),
      { minLength: 1, maxLength: 2 },
    )
    .map((items) => ({ kind: 'query' as const, items })),
);

type Step =
  | { kind: 'append'; stream: string | null; events: EventInput[] }
  | { kind: 'burst'; appends: { stream: string | null; events: EventInput[] }[] }
  | { kind: 'subscribe'; source: SourceSpec; from: 'start' | 'end' | number; slow: boolean }
  | { kind: 'close'; which: number; abort: boolean }
  | { kind: 'rebuild' };

const appendSpecArb = fc.record({
  stream: fc.option(fc.constantFrom(...STREAMS), { nil: null }),
  events: fc.array(eventArb, { minLength: 1, maxLength: 4 }),
});
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: appendSpecArb.map((spec) => ({ kind: 'append' as const, ...spec })) },
  { weight: 2, arbitrary: fc.array(appendSpecArb, { minLength: 2, maxLength: 4 }).map((appends) => ({ kind: 'burst' as const, appends })) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('subscribe' as const),
      source: sourceArb,
      from: fc.oneof(fc.constant('start' as const), fc.constant('end' as const), fc.nat(30)),
      slow: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), which: fc.nat(), abort: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'rebuild' as const }) },
);

interface Scenario {
  /** Independent actors: each runs its steps in order, the scheduler interleaves them. */
  actors: Step[][];
  /** Flood a stalled subscriber with more than UNAPPLIED_EVENTS_MAX events. */
  flood: boolean;
}
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  actors: fc.array(fc.array(stepArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 4 }),
  flood: fc.nat(7).map((n) => n === 0),
});

function toSource(spec: SourceSpec): ReadSource {
  switch (spec.kind) {
    case 'all':
      return 'all';
    case 'type':
      return { type: spec.name };
    case 'tag':
      return { tag: spec.name };
    case 'stream':
      return { stream: spec.name };
    case 'category':
      return { category: spec.name };
    case 'query':
      return {
        query: Query.items(
          ...spec.items.map((item) => ({
            ...(item.types === undefined ? {} : { types: item.types }),
            ...(item.tags === undefined ? {} : { tags: item.tags }),
            ...(item.colour === undefined ? {} : { data: { colour: item.colour } }),
          })),
        ),
      };
  }
}

/** The oracle's own matching. */
function matches(spec: SourceSpec, event: RecordedEvent): boolean {
  switch (spec.kind) {
    case 'all':
      return true;
    case 'type':
      return event.type === spec.name;
    case 'tag':
      return event.tags.includes(spec.name);
    case 'stream':
      return event.stream === spec.name;
    case 'category':
      return event.stream !== undefined && event.stream.split('-')[0] === spec.name;
    case 'query':
      return spec.items.some(
        (item) =>
          (item.types === undefined || item.types.includes(event.type)) &&
          (item.tags === undefined || item.tags.every((tag) => event.tags.includes(tag))) &&
          (item.colour === undefined || (event.data as { colour?: string }).colour === item.colour),
      );
  }
}

interface Subscriber {
  label: string;
  spec: SourceSpec;
  from: 'start' | 'end' | number;
  headAtSubscribe: number;
  received: RecordedEvent[];
  closedEarly: boolean;
  close: (abort: boolean) => Promise<void>;
  done: Promise<void>;
}

async function runScenario(s: fc.Scheduler, scenario: Scenario): Promise<void> {
  const db = await FactStore.open('/db', memoryBackend()('/db'));
  const subscribers: Subscriber[] = [];
  const gate = (label: string) => s.schedule(Promise.resolve(label), label);
  const doAppend = (spec: { stream: string | null; events: EventInput[] }) =>
    spec.stream === null ? db.append(spec.events) : db.appendStream(spec.stream, spec.events);
  let release: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => {
    release = resolve;
  });
  try {
    const subscribe = (step: Extract<Step, { kind: 'subscribe' }>, stall: boolean) => {
      const controller = new AbortController();
      // The same turn: db.head() resolves the head the subscription starts after for 'end'.
      const head = db.head();
      const subscription = db.subscribe(toSource(step.source), { from: step.from, signal: controller.signal });
      const subscriber: Subscriber = {
        label: `#${subscribers.length} ${JSON.stringify(step.source)} from ${step.from}${step.slow ? ' slow' : ''}${stall ? ' stalled' : ''}`,
        spec: step.source,
        from: step.from,
        headAtSubscribe: -1,
        received: [],
        closedEarly: false,
        close: async (abort) => {
          subscriber.closedEarly = true;
          if (abort) controller.abort();
          else await subscription.close();
        },
        done: Promise.resolve(),
      };
      subscriber.done = (async () => {
        subscriber.headAtSubscribe = await head;
        if (stall) await stalled;
        for await (const event of subscription) {
          subscriber.received.push(event);
          if (step.slow) await gate(`${subscriber.label} handles ${event.position}`);
        }
      })();
      subscribers.push(subscriber);
    };
    if (scenario.flood) subscribe({ kind: 'subscribe', source: { kind: 'tag', name: 't2' }, from: 'start', slow: false }, true);
    const actor = async (steps: Step[], index: number) => {
      for (const [stepIndex, step] of steps.entries()) {
        await gate(`actor ${index} step ${stepIndex} ${step.kind}`);
        if (step.kind === 'append') await doAppend(step);
        else if (step.kind === 'burst') await Promise.all(step.appends.map((spec) => gate(`burst of actor ${index}`).then(() => doAppend(spec))));
        else if (step.kind === 'subscribe') subscribe(step, false);
        else if (step.kind === 'close') {
          if (subscribers.length > 0) await subscribers[step.which % subscribers.length]!.close(step.abort);
        } else await db.rebuildIndexes();
      }
    };
    const flood = async () => {
      if (!scenario.flood) return;
      const batches = Math.ceil((UNAPPLIED_EVENTS_MAX + 1) / FLOOD_BATCH_EVENTS) + 1;
      for (let batch = 0; batch < batches; batch++) {
        await gate(`flood ${batch}`);
        await db.append(Array.from({ length: FLOOD_BATCH_EVENTS }, (_, n) => ({ type: 'F', tags: n % 3 === 0 ? ['t2'] : ['t1'], data: { colour: 'red', n } })));
      }
      release();
    };
    await s.waitFor(Promise.all([...scenario.actors.map(actor), flood()]));
    release();

    // Drain: every subscriber not closed gets the rest of its events (then nothing more comes).
    const all = await db.read('all').toArray();
    const expectedOf = (subscriber: Subscriber) =>
      all.filter((event) => {
        if (!matches(subscriber.spec, event)) return false;
        if (subscriber.from === 'end') return event.position > subscriber.headAtSubscribe;
        if (subscriber.from === 'start') return true;
        return subscriber.spec.kind === 'stream' ? event.streamPosition! >= subscriber.from : event.position >= subscriber.from;
      });
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    for (const subscriber of subscribers) {
      if (subscriber.closedEarly) continue;
      const expectedLength = expectedOf(subscriber).length;
      while (subscriber.received.length < expectedLength && Date.now() < deadline) {
        await s.waitAll();
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    await Promise.all(subscribers.map((subscriber) => subscriber.close(false)));
    await s.waitFor(Promise.all(subscribers.map((subscriber) => subscriber.done)));
    for (const subscriber of subscribers) {
      const expected = expectedOf(subscriber).map((event) => event.position);
      const received = subscriber.received.map((event) => event.position);
      if (subscriber.closedEarly) expect(received, `${subscriber.label}: a prefix`).toEqual(expected.slice(0, received.length));
      else expect(received, `${subscriber.label}: exactly its events`).toEqual(expected);
      expect(subscriber.received, subscriber.label).toEqual(all.filter((event) => received.includes(event.position)));
    }
  } finally {
    release();
    await db.close();
  }
}

describe('subscribe() under a scheduler (fast-check)', () => {
  it(
    'each subscriber receives exactly the events of its source from its start, in order, once',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.scheduler(), scenarioArb, (s, scenario) => runScenario(s, scenario)),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 1_500),
  );
});
