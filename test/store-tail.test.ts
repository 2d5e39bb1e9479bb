/**
 * The unapplied tail: an append resolves once its WAL record is durable, and LevelDB gets it
 * later, in the background. These tests hold LevelDB's writes at a gate, so every read path,
 * check and retry must answer from the tail merged with LevelDB, and compare the answers with
 * a brute-force model before and after the gate opens.
 */
import { MemoryLevel } from 'memory-level';
import { describe, expect, it } from 'vitest';
import { FactStore, Query } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import type { EventInput, ReadOptions, ReadSource, RecordedEvent } from '../src/index.js';
import { APPLY_DELAY_MS } from '../src/ledger/applier.js';
import { UNAPPLIED_EVENTS_MAX, UNAPPLIED_SIZE_BYTES_MAX } from '../src/ledger/writer.js';
import { expectFactError, positionsOf } from './support/backends.js';

type BatchOps = readonly { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[];
interface PrivateBatch {
  _batch(operations: BatchOps, options: object): Promise<void>;
}
const memoryLevel = MemoryLevel.prototype as unknown as PrivateBatch;

/** A memory-level whose batch writes wait at a gate while it is closed, or fail. */
class GatedLevel extends MemoryLevel<Uint8Array, Uint8Array> {
  #gate: Promise<void> | null = null;
  #open: (() => void) | null = null;
  failing = false;
  batchesWritten = 0;
  batchesFailed = 0;

  constructor() {
    super({ keyEncoding: 'view', valueEncoding: 'view' });
  }

  closeGate(): void {
    this.#gate ??= new Promise((resolve) => (this.#open = resolve));
  }

  openGate(): void {
    this.#open?.();
    this.#gate = null;
    this.#open = null;
  }

  async _batch(operations: BatchOps, options: object): Promise<void> {
    if (this.#gate) await this.#gate;
    if (this.failing) {
      this.batchesFailed++;
      throw new Error('simulated LevelDB write failure');
    }
    this.batchesWritten++;
    return memoryLevel._batch.call(this, operations, options);
  }

  async keyCount(): Promise<number> {
    return (await this.keys<Uint8Array>({ keyEncoding: 'view' }).all()).length;
  }
}

const DB = '/data/tail';
const NO_CHECKPOINTS = 1 << 30;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits past the apply delay, so a closed gate is what keeps LevelDB behind, not the timer. */
const pastApplyDelay = () => sleep(APPLY_DELAY_MS * 5);

function batchFor(round: string): { stream: string; events: EventInput[] }[] {
  return [
    { stream: `order-${round}`, events: [{ type: 'Placed', tags: [`order:${round}`], data: { round, n: 1 } }, { type: 'Paid', tags: [`order:${round}`] }] },
    { stream: `cart-${round}`, events: [{ type: 'Added', tags: ['cart', `order:${round}`], data: { round, n: 2 } }] },
    { stream: '', events: [{ type: 'Audit', tags: ['audit'], data: { round } }, { type: 'Placed', tags: ['audit', `order:${round}`] }] },
  ];
}

async function appendRound(db: FactStore, round: string): Promise<void> {
  // Concurrent, so several appends share a group commit.
  await Promise.all(batchFor(round).map(({ stream, events }) => (stream === '' ? db.append(events) : db.appendStream(stream, events))));
}

/** Reads whose results are compared with the model of read('all'). */
function readCases(head: number): { source: ReadSource; options: ReadOptions; filter: (event: RecordedEvent) => boolean }[] {
  const cases: { source: ReadSource; filter: (event: RecordedEvent) => boolean }[] = [
    { source: 'all', filter: () => true },
    { source: { stream: 'order-b' }, filter: (event) => event.stream === 'order-b' },
    { source: { type: 'Placed' }, filter: (event) => event.type === 'Placed' },
    { source: { tag: 'order:b' }, filter: (event) => event.tags.includes('order:b') },
    { source: { category: 'cart' }, filter: (event) => event.stream?.startsWith('cart-') ?? false },
    { source: { query: Query.tags('audit').or(Query.types('Paid')) }, filter: (event) => event.tags.includes('audit') || event.type === 'Paid' },
    { source: { query: Query.data({ round: 'b' }) }, filter: (event) => (event.data as { round?: string } | null)?.round === 'b' },
  ];
  const options: ReadOptions[] = [
    {},
    { direction: 'backward' },
    { limit: 3 },
    { direction: 'backward', limit: 4 },
    { from: Math.max(1, head - 4) },
    { from: Math.max(1, head - 6), direction: 'backward', limit: 5 },
  ];
  return cases.flatMap((entry) => options.map((option) => ({ ...entry, options: option })));
}

function expected(all: readonly RecordedEvent[], source: ReadSource, options: ReadOptions, filter: (event: RecordedEvent) => boolean): number[] {
  const forward = options.direction !== 'backward';
  const isStream = typeof source === 'object' && 'stream' in source;
  let events = all.filter(filter);
  if (options.from !== undefined) {
    const from = options.from;
    events = events.filter((event) => {
      const number = isStream ? event.streamPosition! : event.position;
      return forward ? number >= from : number <= from;
    });
  }
  if (!forward) events = [...events].reverse();
  return positionsOf(events.slice(0, options.limit ?? Number.POSITIVE_INFINITY));
}

describe('FactStore unapplied tail (LevelDB writes held at a gate)', () => {
  it('every read, version, stream list, check and retry sees resolved appends before LevelDB has them', async () => {
    const fs = new SimFileSystem();
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS, indexes: { data: ['round'] } });
    await appendRound(db, 'a');
    await db.verify(); // drains the apply: round a is in LevelDB
    const keysApplied = await level.keyCount();

    level.closeGate();
    await appendRound(db, 'b');
    await db.appendStream('order-b', { type: 'Shipped', id: 'shipped-b', tags: ['order:b'] }, { expect: 2 });
    await pastApplyDelay();
    // The test only means something if LevelDB really is behind.
    expect(await level.keyCount()).toBe(keysApplied);

    const head = await db.head();
    const all = await db.read().toArray();
    expect(positionsOf(all)).toEqual(Array.from({ length: head }, (_, index) => index + 1));
    const answers = async () => ({
      reads: await Promise.all(readCases(head).map(async ({ source, options }) => positionsOf(await db.read(source, options).toArray()))),
      versions: [await db.streamVersion('order-b'), await db.streamVersion('cart-b'), await db.streamVersion('order-a'), await db.streamVersion('none')],
      streams: [await db.streams().toArray(), await db.streams({ category: 'order' }).toArray()],
    });
    const whileHeld = await answers();
    expect(whileHeld.reads).toEqual(readCases(head).map(({ source, options, filter }) => expected(all, source, options, filter)));
    expect(whileHeld.versions).toEqual([3, 1, 2, 0]);
    expect(whileHeld.streams).toEqual([['cart-a', 'cart-b', 'order-a', 'order-b'], ['order-a', 'order-b']]);

    // Checks and retries in the writer see the tail too.
    await expectFactError(() => db.appendStream('order-b', { type: 'Late' }, { expect: 2 }), 'FACT_CONCURRENCY');
    const shippedAt = all.find((event) => event.id === 'shipped-b')!;
    await expectFactError(
      () => db.append({ type: 'Late' }, { failIfEventsMatch: Query.tags('order:b'), after: shippedAt.position - 1 }),
      'FACT_CONCURRENCY',
      new RegExp(`position ${shippedAt.position}`),
    );
    await expectFactError(() => db.append({ type: 'Late' }, { failIfEventsMatch: Query.types('Shipped'), after: 0 }), 'FACT_CONCURRENCY');
    expect(await db.appendStream('order-b', { type: 'Shipped', id: 'shipped-b', tags: ['order:b'] })).toEqual({
      position: shippedAt.position,
      streamPosition: 3,
      count: 1,
    });
    await expectFactError(() => db.append({ type: 'Other', id: 'shipped-b' }), 'FACT_DUPLICATE_EVENT_ID');
    expect(await db.head()).toBe(head);

    level.openGate();
    await db.verify(); // drains, then checks LevelDB against the WAL
    expect(await level.keyCount()).toBeGreaterThan(keysApplied);
    expect(await answers()).toEqual(whileHeld);
    await db.close();
  });

  it('a read that starts while the apply moves chunks into LevelDB returns each event once', async () => {
    const fs = new SimFileSystem();
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS });
    level.closeGate();
    for (const round of ['a', 'b', 'c']) await appendRound(db, round);
    await pastApplyDelay();
    const reads = [db.read().toArray(), db.read({ tag: 'audit' }, { direction: 'backward' }).toArray(), db.read({ stream: 'order-c' }).toArray()];
    level.openGate();
    const [all, audit, order] = await Promise.all(reads);
    expect(positionsOf(all!)).toEqual(Array.from({ length: await db.head() }, (_, index) => index + 1));
    expect(audit!.map((event) => event.tags.includes('audit'))).toEqual([true, true, true, true, true, true]);
    expect(positionsOf(audit!)).toEqual([...positionsOf(audit!)].sort((a, b) => b - a));
    expect(order!.map((event) => event.streamPosition)).toEqual([1, 2]);
    await db.close();
  });

  it('a subscription switches from LevelDB to the tail exactly after the applied head: it skips and repeats nothing', async () => {
    const fs = new SimFileSystem();
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS });
    for (const round of ['a', 'b']) await appendRound(db, round);
    await db.verify(); // drains the tail: LevelDB holds 1..applied
    const applied = await db.head();
    level.closeGate();
    await appendRound(db, 'c');
    await pastApplyDelay();
    const all = await db.read().toArray();
    expect(all.length).toBeGreaterThan(applied);
    const sources: { source: ReadSource; filter: (event: RecordedEvent) => boolean }[] = [
      { source: 'all', filter: () => true },
      { source: { tag: 'audit' }, filter: (event) => event.tags.includes('audit') },
    ];
    // Starting just below, at and just after the applied head: from LevelDB, at the switch, from the tail.
    for (const from of [applied - 1, applied, applied + 1]) {
      for (const { source, filter } of sources) {
        const wanted = positionsOf(all.filter((event) => event.position >= from && filter(event)));
        const received: number[] = [];
        for await (const event of db.subscribe(source, { from })) {
          received.push(event.position);
          if (event.position >= wanted.at(-1)!) break;
        }
        expect(received, `subscribe(${JSON.stringify(source)}, { from: ${from} }), applied head ${applied}`).toEqual(wanted);
      }
    }
    level.openGate();
    await db.close();
  });

  it('returns what the ledger holds, not the objects the caller appended', async () => {
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs: new SimFileSystem(), level, levelDurability: 'volatile' });
    level.closeGate();
    const data = { items: ['a'] };
    await db.append({ type: 'Changed', data });
    data.items.push('changed after append');
    const [event] = await db.read().toArray();
    expect(event!.data).toEqual({ items: ['a'] });
    level.openGate();
    await db.close();
  });

  it('events a reader changes do not change what later reads return, from the tail or from LevelDB', async () => {
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs: new SimFileSystem(), level, levelDurability: 'volatile', indexes: { data: ['n'] } });
    const original = (n: number) => ({ n, nested: { list: [n] } });
    const sources: ReadSource[] = ['all', { stream: 'box-1' }, { type: 'Put' }, { tag: 'box' }, { category: 'box' }, { query: Query.items({ types: ['Put'], data: { n: 2 } }) }];
    const vandalise = (events: RecordedEvent[]) => {
      for (const event of events) {
        const data = event.data as { n: number; nested: { list: number[] } };
        data.n = -1;
        data.nested.list.push(-1);
        event.tags.push('vandal');
        event.metadata.vandal = true;
      }
    };
    const expectPristine = async () => {
      for (const source of sources) {
        const events = await db.read(source).toArray();
        expect(events.length, JSON.stringify(source)).toBeGreaterThan(0);
        for (const event of events) {
          expect(event.data).toEqual(original((event.data as { n: number }).n));
          expect(event.tags).toEqual(['box']);
          expect(event.metadata).toEqual({});
        }
        vandalise(events);
      }
    };
    level.closeGate();
    await db.appendStream('box-1', [1, 2, 3].map((n) => ({ type: 'Put', data: original(n), tags: ['box'] })));
    await pastApplyDelay();
    await expectPristine(); // from the tail
    await expectPristine();
    level.openGate();
    expect((await db.verify()).ok).toBe(true);
    await expectPristine(); // from LevelDB
    await expectPristine();
    await db.close();
  });

  /**
   * With LevelDB's writes held, `fills` appends of `events` fill the tail: the next append waits
   * (never fails) and resolves once the apply catches up.
   */
  async function expectNextAppendWaits(events: EventInput[], fills: number): Promise<void> {
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs: new SimFileSystem(), level, levelDurability: 'volatile' });
    level.closeGate();
    for (let round = 0; round < fills; round++) await db.append(events);
    let settled = false;
    const waiting = db.append({ type: 'AfterFull' }).finally(() => (settled = true));
    await sleep(50);
    expect(settled).toBe(false);
    level.openGate();
    expect(await waiting).toEqual({ position: fills * events.length + 1, count: 1 });
    await db.close();
  }

  // 16 events of 64 KiB: about 1 MiB per append, far below the event bound.
  const large = Array.from({ length: 16 }, (_, n) => ({ type: 'Large', data: { n, blob: new Uint8Array(64 * 1024).fill(n) } }));
  const largeAppendSizeBytes = 16 * 64 * 1024;

  it('appends wait (never fail) while the tail is full, and continue once the apply catches up', async () => {
    const bulk = Array.from({ length: 1000 }, (_, n) => ({ type: 'Bulk', data: { n } }));
    await expectNextAppendWaits(bulk, Math.ceil(UNAPPLIED_EVENTS_MAX / bulk.length));
  });

  it('appends wait while the tail holds UNAPPLIED_SIZE_BYTES_MAX bytes, however few events that is', async () => {
    await expectNextAppendWaits(large, Math.ceil(UNAPPLIED_SIZE_BYTES_MAX / largeAppendSizeBytes));
  });

  it('concurrent appends join a group only while the tail stays within UNAPPLIED_SIZE_BYTES_MAX', async () => {
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs: new SimFileSystem(), level, levelDurability: 'volatile' });
    level.closeGate();
    const appendSizeBytes = largeAppendSizeBytes;
    const appends = 2 * Math.ceil(UNAPPLIED_SIZE_BYTES_MAX / appendSizeBytes);
    let resolved = 0;
    const all = Array.from({ length: appends }, () => db.append(large).then(() => resolved++));
    await all[0];
    await sleep(50);
    // Resolved appends are in the tail: within the bound, plus the one append that crossed it.
    expect(resolved).toBeLessThanOrEqual(Math.floor(UNAPPLIED_SIZE_BYTES_MAX / appendSizeBytes) + 1);
    level.openGate();
    await Promise.all(all);
    expect(await db.head()).toBe(appends * large.length);
    await db.close();
  });

  it('a closed loop of appends still gives timers and I/O their turns (the writer yields to the event loop)', async () => {
    const db = await FactStore.open(DB, { fs: new SimFileSystem(), level: new GatedLevel(), levelDurability: 'volatile' });
    let timerFired = false;
    setTimeout(() => (timerFired = true), 0);
    let appends = 0;
    // On SimFileSystem every append settles in microtasks: only the writer's own turns let the timer in.
    while (!timerFired && appends < 20_000) {
      await db.append({ type: 'Loop' });
      appends++;
    }
    expect(timerFired).toBe(true);
    expect(appends).toBeLessThan(20_000);
    await db.close();
  });

  it('a failed apply loses nothing: later appends fail with FACT_IO, and reopening applies the logged events', async () => {
    const fs = new SimFileSystem();
    const level = new GatedLevel();
    const db = await FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS });
    await db.append({ type: 'Applied' });
    await db.verify();
    level.failing = true;
    expect(await db.appendStream('order-1', [{ type: 'Placed' }, { type: 'Paid' }])).toEqual({ position: 3, streamPosition: 2, count: 2 });
    // The apply runs in the background: a fixed delay is not enough on a busy machine.
    while (level.batchesFailed === 0) await sleep(1);
    await expectFactError(() => db.append({ type: 'Rejected' }), 'FACT_IO', /LevelDB failed to apply/);
    // What resolved stays readable from the tail.
    expect((await db.read().toArray()).map((event) => event.type)).toEqual(['Applied', 'Placed', 'Paid']);
    await db.close();

    level.failing = false;
    const reopened = await FactStore.open(DB, { fs, level, levelDurability: 'volatile', checkpointEveryBytes: NO_CHECKPOINTS });
    expect((await reopened.read().toArray()).map((event) => event.type)).toEqual(['Applied', 'Placed', 'Paid']);
    expect(await reopened.streamVersion('order-1')).toBe(2);
    expect((await reopened.verify()).ok).toBe(true);
    await reopened.close();
  });
});
