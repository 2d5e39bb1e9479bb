/**
 * db.subscribe(source, { from, signal }): history, then live events, each matching event once in
 * position order, on memory-level (WAL on SimFileSystem) and classic-level (real files), with
 * concurrent appends, slow readers and maintenance.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore, Query, SUBSCRIPTION_BATCH_EVENTS, UNAPPLIED_EVENTS_MAX } from '../src/index.js';
import type { EventInput, FactStoreOptions, ReadSource, RecordedEvent, Subscription } from '../src/index.js';
import { classicBackend, expectFactError, memoryBackend, positionsOf, type OptionsFor } from './support/backends.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The next `count` events of a subscription. */
async function take(subscription: Subscription, count: number): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  while (events.length < count) {
    const step = await subscription.next();
    if (step.done) break;
    events.push(step.value);
  }
  return events;
}

/** Events with a type, a stream-like tag and a data field, varied by `index`. */
function event(index: number): EventInput {
  return { type: index % 3 === 0 ? 'Ping' : 'Pong', data: { n: index, colour: index % 2 === 0 ? 'red' : 'blue' }, tags: [`t${index % 5}`] };
}

function describeSubscribe(name: string, makeBackend: () => OptionsFor) {
  describe(`subscribe() — ${name}`, () => {
    let dir: string;
    let optionsFor: OptionsFor;
    let db: FactStore;
    const open = (options: FactStoreOptions = {}) => FactStore.open(join(dir, 'db'), { ...optionsFor(join(dir, 'db')), ...options });

    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'factstore-subscribe-'));
      optionsFor = makeBackend();
      db = await open({ indexes: { data: ['colour'] } });
    });
    afterEach(async () => {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('delivers 1..N exactly once, in order, while another task appends, and caughtUp resolves once', async () => {
      for (let index = 0; index < 300; index++) await db.append(event(index));
      const subscription = db.subscribe();
      let caughtUpCalls = 0;
      const caughtUp = subscription.caughtUp.then((position) => {
        caughtUpCalls++;
        return position;
      });
      const total = 3000;
      const writer = (async () => {
        for (let index = 300; index < total; index += 10) {
          await Promise.all(Array.from({ length: 10 }, (_, offset) => db.append(event(index + offset))));
        }
      })();
      const received = await take(subscription, total);
      await writer;
      // caughtUp waits for the reader to run out of events: asking for the next one gets it there.
      const pending = subscription.next();
      expect(positionsOf(received)).toEqual(Array.from({ length: total }, (_, index) => index + 1));
      expect(received).toEqual(await db.read('all').toArray());
      const position = await caughtUp;
      expect(position).toBeGreaterThanOrEqual(300);
      expect(caughtUpCalls).toBe(1);
      expect(subscription.position).toBe(total);
      await subscription.close();
      expect(await pending).toEqual({ value: undefined, done: true });
      expect(await subscription.next()).toEqual({ value: undefined, done: true });
    });

    it('starts at an inclusive position, or at a stream position for a stream', async () => {
      for (let index = 0; index < 20; index++) await db.appendStream(index % 2 === 0 ? 'order-a' : 'order-b', { type: 'Step', data: { index } });
      const fromTen = db.subscribe('all', { from: 10 });
      expect(positionsOf(await take(fromTen, 11))).toEqual(Array.from({ length: 11 }, (_, index) => index + 10));
      const stream = db.subscribe({ stream: 'order-b' }, { from: 4 });
      const events = await take(stream, 7);
      expect(events.map((recorded) => recorded.streamPosition)).toEqual([4, 5, 6, 7, 8, 9, 10]);
      expect(events.every((recorded) => recorded.stream === 'order-b')).toBe(true);
      await Promise.all([fromTen.close(), stream.close()]);
    });

    it("'end' receives only events committed after subscribing, for the ledger and for a stream", async () => {
      for (let index = 0; index < 10; index++) await db.appendStream('cart-1', { type: 'Added', data: { index } });
      const all = db.subscribe('all', { from: 'end' });
      const stream = db.subscribe({ stream: 'cart-1' }, { from: 'end' });
      const allNext = all.next();
      const streamNext = stream.next();
      await db.append({ type: 'Elsewhere' });
      await db.appendStream('cart-1', { type: 'Added', data: { index: 10 } });
      expect((await allNext).value).toMatchObject({ position: 11, type: 'Elsewhere' });
      expect((await streamNext).value).toMatchObject({ position: 12, streamPosition: 11 });
      expect(await all.caughtUp).toBe(10);
      await Promise.all([all.close(), stream.close()]);
    });

    it('delivers, for every kind of source, exactly the events the same read returns', async () => {
      const sources: ReadSource[] = [
        'all',
        { type: 'Ping' },
        { tag: 't3' },
        { category: 'order' },
        { stream: 'order-7' },
        { query: Query.items({ types: ['Pong'], tags: ['t1'] }, { types: ['Ping'] }) },
        { query: Query.items({ data: { colour: 'red' } }) },
      ];
      const append = (index: number) => (index % 4 === 0 ? db.appendStream(`order-${index % 9}`, event(index)) : db.append(event(index)));
      for (let index = 0; index < 400; index++) await append(index);
      const subscriptions = sources.map((source) => db.subscribe(source));
      const writer = (async () => {
        for (let index = 400; index < 1200; index += 8) await Promise.all(Array.from({ length: 8 }, (_, offset) => append(index + offset)));
      })();
      const firsts = await Promise.all(subscriptions.map((subscription) => take(subscription, 1)));
      await writer;
      for (const [index, source] of sources.entries()) {
        const expected = await db.read(source).toArray();
        const received = [...firsts[index]!, ...(await take(subscriptions[index]!, expected.length - 1))];
        expect(received, JSON.stringify(source)).toEqual(expected);
        // Nothing more: the next event is the one appended after this.
        const pending = subscriptions[index]!.next();
        expect(await Promise.race([pending.then(() => 'event'), tick().then(() => 'waiting')])).toBe('waiting');
        await subscriptions[index]!.close();
        expect(await pending).toEqual({ value: undefined, done: true });
      }
    });

    it.each<ReadSource>([{ tag: 't2' }, 'all'])('a reader far behind the writers reads from the store, then follows live, missing nothing (%j)', async (source) => {
      const subscription = db.subscribe(source);
      const first = subscription.next();
      // Many times the unapplied tail while the reader is stalled: it holds no queue of them.
      const total = UNAPPLIED_EVENTS_MAX * 2 + 3 * SUBSCRIPTION_BATCH_EVENTS;
      const batch = 500;
      for (let index = 0; index < total; index += batch) await db.append(Array.from({ length: batch }, (_, offset) => event(index + offset)));
      const expected = await db.read(source).toArray();
      const received = [(await first).value as RecordedEvent, ...(await take(subscription, expected.length - 1))];
      expect(positionsOf(received)).toEqual(positionsOf(expected));
      // Then live: an event appended now comes in the same turn as the append resolves.
      const pending = subscription.next();
      const { position } = await db.append({ type: 'Late', tags: ['t2'] });
      const late = await Promise.race([pending, tick().then(() => null)]);
      expect(late?.value).toMatchObject({ type: 'Late', position });
      await subscription.close();
    });

    it('close(), break, the signal and db.close() end the iteration cleanly', async () => {
      await db.append([event(0), event(1)]);
      const closed = db.subscribe();
      const pending = (async () => {
        const seen: number[] = [];
        for await (const recorded of closed) seen.push(recorded.position);
        return seen;
      })();
      await tick();
      await closed.close();
      expect(await pending).toEqual([1, 2]);
      await expect(closed.caughtUp).resolves.toBe(2);

      const broken = db.subscribe();
      for await (const recorded of broken) if (recorded.position === 1) break;
      expect(await broken.next()).toEqual({ value: undefined, done: true });

      const controller = new AbortController();
      const aborted = db.subscribe('all', { from: 'end', signal: controller.signal });
      const waiting = aborted.next();
      controller.abort();
      expect(await waiting).toEqual({ value: undefined, done: true });
      const preAborted = db.subscribe('all', { signal: AbortSignal.abort() });
      expect(await preAborted.next()).toEqual({ value: undefined, done: true });
      await expectFactError(() => preAborted.caughtUp, 'FACT_CLOSED');

      const byClose = db.subscribe('all', { from: 'end' });
      const waitingForClose = byClose.next();
      await tick(); // it waits for live events: caught up at once ('end')
      await db.close();
      expect(await waitingForClose).toEqual({ value: undefined, done: true });
      await expect(byClose.caughtUp).resolves.toBe(2);
      expect(() => db.subscribe()).toThrow(/closed/);
      db = await open();
    });

    it('leaves nothing behind that keeps the process alive', async () => {
      await db.append([event(0), event(1)]);
      const before = process.getActiveResourcesInfo().length;
      const subscriptions = [db.subscribe(), db.subscribe({ tag: 't1' }), db.subscribe('all', { from: 'end' })];
      await Promise.all(subscriptions.map((subscription) => subscription.next().then(() => undefined, () => undefined)).slice(0, 2));
      const waiting = subscriptions[2]!.next();
      await Promise.all(subscriptions.map((subscription) => subscription.close()));
      await waiting;
      await tick();
      expect(process.getActiveResourcesInfo().length).toBeLessThanOrEqual(before);
    });

    it('a waiting subscription keeps the process alive until its event comes (a pending promise alone would not)', () => {
      if (name !== 'classic-level') return;
      const script = join(dir, 'wait.mts');
      const main = new URL('../src/index.ts', import.meta.url).pathname;
      writeFileSync(
        script,
        `import { FactStore } from ${JSON.stringify(main)};
const db = await FactStore.open(${JSON.stringify(join(dir, 'child'))});
const subscription = db.subscribe('all', { from: 'end' });
// An unref'ed timer: only the subscription can keep the process alive until it fires.
setTimeout(() => void db.append({ type: 'Late' }), 200).unref();
for await (const event of subscription) { console.log(event.type); break; }
await db.close();
`,
      );
      const child = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 30_000 });
      expect(child.stderr).toBe('');
      expect({ status: child.status, stdout: child.stdout }).toEqual({ status: 0, stdout: 'Late\n' });
    });

    it('a failed read of the batch read ahead fails the iteration when it gets there, not the process meanwhile', async () => {
      if (name !== 'memory-level') return;
      for (let index = 0; index < 3 * SUBSCRIPTION_BATCH_EVENTS; index += 512) await db.append(Array.from({ length: 512 }, () => ({ type: 'E', tags: ['t1'] })));
      await db.close();
      db = await open(); // all in LevelDB: the subscription reads the store, with a batch read ahead
      const level = optionsFor(join(dir, 'db')).level as unknown as { _getMany: (...args: unknown[]) => Promise<unknown> };
      const getMany = level._getMany.bind(level);
      let calls = 0;
      level._getMany = (...args: unknown[]) => (++calls >= 2 ? Promise.reject(new Error('disk gone')) : getMany(...args));
      const subscription = db.subscribe({ tag: 't1' });
      await take(subscription, 1);
      await tick(); // the read ahead fails meanwhile
      await tick();
      await expect(take(subscription, 2 * SUBSCRIPTION_BATCH_EVENTS)).rejects.toThrow(/disk gone/);
      expect(calls).toBeGreaterThanOrEqual(2);
      level._getMany = getMany;
    });

    it('refuses bad arguments with FACT_INVALID_ARGUMENT and subscribes to nothing', async () => {
      await expectFactError(() => db.subscribe('all', { from: -1 }), 'FACT_INVALID_ARGUMENT', /subscribe: from/);
      await expectFactError(() => db.subscribe('all', { from: 'later' as 'end' }), 'FACT_INVALID_ARGUMENT', /subscribe: from/);
      await expectFactError(() => db.subscribe('all', { signal: {} as AbortSignal }), 'FACT_INVALID_ARGUMENT', /signal/);
      await expectFactError(() => db.subscribe({ tag: '' }), 'FACT_INVALID_ARGUMENT');
      await expectFactError(() => db.subscribe('all', null as unknown as object), 'FACT_INVALID_ARGUMENT');
      const subscription = db.subscribe();
      expect(() => subscription[Symbol.asyncIterator]()).not.toThrow();
      expect(() => subscription[Symbol.asyncIterator]()).toThrow(TypeError);
      await subscription.close();
    });

    it('sees the same events while indexes are rebuilt and the database checkpoints', async () => {
      for (let index = 0; index < 500; index++) await db.append(event(index));
      const subscription = db.subscribe({ tag: 't4' });
      const writer = (async () => {
        for (let index = 500; index < 2500; index += 50) await db.append(Array.from({ length: 50 }, (_, offset) => event(index + offset)));
      })();
      const rebuild = db.rebuildIndexes();
      const received: RecordedEvent[] = await take(subscription, 100);
      await Promise.all([writer, rebuild]);
      const expected = await db.read({ tag: 't4' }).toArray();
      received.push(...(await take(subscription, expected.length - received.length)));
      expect(received).toEqual(expected);
      await subscription.close();
    });
  });
}

describeSubscribe('memory-level', memoryBackend);
describeSubscribe('classic-level', classicBackend);
