/**
 * LossyLevel behaves like the real classic-level when nothing crashes: fast-check runs the same
 * random sequence of operations (put, del, array and chained batches, clear with gt/gte/lt/lte,
 * limit and reverse, get, getMany, iterators, keys and values with ranges, reverse and limit,
 * nextv in small steps, compactRange) on a LossyLevel and on a ClassicLevel in a temporary
 * directory, and asserts that every result and the final contents are identical, also after a
 * reopen (classic-level closed and opened again; the LossyLevel after a process crash, which
 * replays its unsynced batches). Keys are short, over bytes that sort around each other (0x00,
 * 0x01, 'a', 0xff), so ranges often hit, miss and touch their bounds.
 *
 * Heavier run: FACT_PROPERTY_RUNS=1000 npx vitest run test/lossy-level-differential.test.ts
 * Replay: FACT_SEED=<seed> FACT_PATH=<path> npx vitest run test/lossy-level-differential.test.ts
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES, LossyLevel, mulberry32 } from '../src/testing/index.js';
import { propertyParams, propertyTimeoutMs } from '../property-tests/settings.js';

const DEFAULT_RUNS = 60;
const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

type Bytes = Uint8Array;
interface Range {
  gt?: Bytes;
  gte?: Bytes;
  lt?: Bytes;
  lte?: Bytes;
  limit?: number;
  reverse?: boolean;
}
type BatchOp = { type: 'put'; key: Bytes; value: Bytes } | { type: 'del'; key: Bytes };
type Op =
  | { kind: 'put'; key: Bytes; value: Bytes; sync: boolean }
  | { kind: 'del'; key: Bytes; sync: boolean }
  | { kind: 'batch'; ops: BatchOp[]; sync: boolean }
  | { kind: 'chained'; ops: BatchOp[]; sync: boolean }
  | { kind: 'clear'; range: Range }
  | { kind: 'get'; key: Bytes }
  | { kind: 'getMany'; keys: Bytes[] }
  | { kind: 'iterator' | 'keys' | 'values'; range: Range }
  | { kind: 'nextv'; range: Range; step: number }
  | { kind: 'compactRange'; start: Bytes; end: Bytes };

/** Non-empty keys (factstore never writes an empty one) of 1–3 bytes that sort around each other. */
const keyArb = fc.array(fc.constantFrom(0x00, 0x01, 0x61, 0xff), { minLength: 1, maxLength: 3 }).map((bytes) => Uint8Array.from(bytes));
const valueArb = fc.uint8Array({ maxLength: 4 });
const rangeArb: fc.Arbitrary<Range> = fc
  .record({
    lower: fc.option(fc.tuple(fc.constantFrom('gt' as const, 'gte' as const), keyArb), { nil: undefined, freq: 2 }),
    upper: fc.option(fc.tuple(fc.constantFrom('lt' as const, 'lte' as const), keyArb), { nil: undefined, freq: 2 }),
    limit: fc.option(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 6 })), { nil: undefined }),
    reverse: fc.option(fc.boolean(), { nil: undefined }),
  })
  // One lower and one upper bound at most, as callers write them.
  .map(({ lower, upper, limit, reverse }) => {
    const range: Range = {};
    if (lower !== undefined) range[lower[0]] = lower[1];
    if (upper !== undefined) range[upper[0]] = upper[1];
    if (limit !== undefined) range.limit = limit;
    if (reverse !== undefined) range.reverse = reverse;
    return range;
  });
const batchOpArb: fc.Arbitrary<BatchOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ type: fc.constant('put' as const), key: keyArb, value: valueArb }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('del' as const), key: keyArb }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('put' as const), key: keyArb, value: valueArb, sync: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('del' as const), key: keyArb, sync: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('batch' as const), ops: fc.array(batchOpArb, { maxLength: 6 }), sync: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('chained' as const), ops: fc.array(batchOpArb, { maxLength: 6 }), sync: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('clear' as const), range: rangeArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('getMany' as const), keys: fc.array(keyArb, { maxLength: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constantFrom('iterator' as const, 'keys' as const, 'values' as const), range: rangeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('nextv' as const), range: rangeArb, step: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compactRange' as const), start: keyArb, end: keyArb }) },
);

/** What both are: abstract-level databases of byte keys and values, with LevelDB's compactRange. */
type Db = AbstractLevel<Bytes, Bytes, Bytes> & { compactRange(start: Bytes, end: Bytes, options: { keyEncoding: 'view' }): Promise<void> };

const hex = (bytes: Bytes | undefined): string | null => (bytes === undefined ? null : Buffer.from(bytes).toString('hex'));

/** One operation's observable result, as plain data (hex strings), so results compare with toEqual. */
async function run(db: Db, op: Op): Promise<unknown> {
  // LevelDB's write option (abstract-level's types do not list it).
  const synced = { ...VIEW, sync: 'sync' in op && op.sync };
  switch (op.kind) {
    case 'put':
      return db.put(op.key, op.value, synced);
    case 'del':
      return db.del(op.key, synced);
    case 'batch':
      return db.batch(op.ops, synced);
    case 'chained': {
      const batch = db.batch();
      for (const entry of op.ops) {
        if (entry.type === 'put') batch.put(entry.key, entry.value, VIEW);
        else batch.del(entry.key, VIEW);
      }
      const length = batch.length;
      await batch.write(synced);
      return length;
    }
    case 'clear':
      return db.clear({ ...VIEW, ...op.range });
    case 'get':
      return hex(await db.get(op.key, VIEW));
    case 'getMany':
      return (await db.getMany(op.keys, VIEW)).map(hex);
    case 'iterator':
      return (await db.iterator({ ...VIEW, ...op.range }).all()).map(([key, value]) => [hex(key), hex(value)]);
    case 'keys':
      return (await db.keys({ ...VIEW, ...op.range }).all()).map(hex);
    case 'values':
      return (await db.values({ ...VIEW, ...op.range }).all()).map(hex);
    case 'nextv': {
      const iterator = db.iterator({ ...VIEW, ...op.range });
      const steps: unknown[] = [];
      try {
        for (;;) {
          const entries = await iterator.nextv(op.step);
          steps.push(entries.map(([key, value]) => [hex(key), hex(value)]));
          if (entries.length === 0) break;
        }
      } finally {
        await iterator.close();
      }
      return steps;
    }
    case 'compactRange':
      return db.compactRange(op.start, op.end, { keyEncoding: 'view' });
  }
}

async function contents(db: Db): Promise<[string | null, string | null][]> {
  return (await db.iterator(VIEW).all()).map(([key, value]) => [hex(key), hex(value)]);
}

describe('LossyLevel against a real classic-level (no crashes)', () => {
  let dir = '';
  let serial = 0;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'factstore-lossy-differential-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'gives identical results and identical contents for random operation sequences',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb, { minLength: 1, maxLength: 50 }),
          fc.constantFrom(0, 1, 3, CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES),
          fc.integer(),
          async (ops, clearBatchSizeBytes, seed) => {
            const location = join(dir, `db-${serial++}`);
            let classic = new ClassicLevel<Bytes, Bytes>(location, VIEW);
            const lossy = new LossyLevel({ clearBatchSizeBytes });
            await classic.open();
            await lossy.open();
            try {
              for (const [index, op] of ops.entries()) {
                const expected = await run(classic as unknown as Db, op);
                const actual = await run(lossy as unknown as Db, op);
                expect(actual, `operation ${index} (${op.kind})`).toEqual(expected);
              }
              const expected = await contents(classic as unknown as Db);
              expect(await contents(lossy as unknown as Db), 'final contents').toEqual(expected);
              // After a reopen: classic-level from its files, LossyLevel from a process crash (its unsynced batches replayed).
              await classic.close();
              classic = new ClassicLevel<Bytes, Bytes>(location, VIEW);
              await classic.open();
              const reopened = lossy.crash(mulberry32(seed), 'process');
              await reopened.open();
              expect(await contents(classic as unknown as Db), 'classic-level after a reopen').toEqual(expected);
              expect(await contents(reopened as unknown as Db), 'LossyLevel after a process crash').toEqual(expected);
              await reopened.close();
            } finally {
              await classic.close();
              await lossy.close();
              await rm(location, { recursive: true, force: true });
            }
          },
        ),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 500),
  );
});
