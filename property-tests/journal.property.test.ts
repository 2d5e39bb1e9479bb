/**
 * Model-based crash tests of the Journal (src/wal/journal.ts, docs/journal.md) on the
 * SimFileSystem. fast-check generates epochs; each epoch is a sequence of steps (one or several
 * push / ack / fail / clear issued without awaiting each other), a compaction configuration and
 * an optional crash (power loss or process, after n storage operations, with a seeded PRNG).
 * After every crash the journal is reopened and checked against the model:
 *
 * 1. recover() equals the model after some prefix of the issued ops that contains every op whose
 *    promise resolved: a resolved push is never lost, a resolved ack never resurrected, failures
 *    and attempts are exact, and push order is kept (also for carried entries);
 * 2. recovery is deterministic: a second open of the same disk recovers identical entries;
 * 3. the next epoch continues from the recovered state, so carry records, checkpoints and
 *    segment deletion from earlier epochs are replayed too.
 *
 * Replay a failure with the seed and path fast-check prints:
 *   FACT_SEED=<seed> FACT_PATH=<path> npx vitest run property-tests/journal.property.test.ts
 * Heavier run: FACT_PROPERTY_RUNS=500 npx vitest run property-tests/journal.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Journal } from '../src/wal/journal.js';
import type { JournalEntry, JournalOptions } from '../src/wal/journal.js';
import type { SimCrashMode } from '../src/wal/sim-file-system.js';
import { SimFileSystem } from '../src/wal/sim-file-system.js';
import { expectCrashRejection, expectRecoveredPrefix, JournalModel, runSteps, snapshotOf } from '../test/journal-model.js';
import type { JournalOp } from '../test/journal-model.js';
import { propertyParams, propertyTimeoutMs } from './settings.js';

const DEFAULT_RUNS = 30;
const DIR = '/q';
const ID_POOL = 10;
const STICKY_IDS = new Set(['id-0', 'id-1']);

type RawOp =
  | { kind: 'push'; id: number; size: number; fill: number }
  /** `sticky`: may ack a long-lived id (id-0, id-1); other acks leave them live, so they get carried. */
  | { kind: 'ack'; pick: number; sticky: boolean }
  /** `asError`: fail with an Error of that name and code (string or integer) instead of the string. */
  | { kind: 'fail'; pick: number; error: string; retryAtMs: number; asError: { name: string; code: string | number | null } | null }
  | { kind: 'clear' };

interface Epoch {
  steps: RawOp[][];
  options: Pick<JournalOptions, 'segmentSizeBytes' | 'retainSegments' | 'carryAfterBytes' | 'checkpointEveryBytes'>;
  /** null: no crash, the epoch ends with a clean close. */
  crash: { afterOps: number; mode: SimCrashMode; seed: number } | null;
}

const rawOp: fc.Arbitrary<RawOp> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ kind: fc.constant('push' as const), id: fc.nat(ID_POOL - 1), size: fc.nat(120), fill: fc.nat(255) }) },
  { weight: 16, arbitrary: fc.record({ kind: fc.constant('ack' as const), pick: fc.nat(), sticky: fc.oneof({ weight: 1, arbitrary: fc.constant(true) }, { weight: 9, arbitrary: fc.constant(false) }) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('fail' as const),
      pick: fc.nat(),
      error: fc.string({ maxLength: 20 }),
      retryAtMs: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      asError: fc.option(
        fc.record({ name: fc.constantFrom('Error', 'TypeError', 'FactError'), code: fc.option(fc.oneof(fc.string({ maxLength: 8 }), fc.integer())) }),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

const epoch: fc.Arbitrary<Epoch> = fc.record({
  steps: fc.array(fc.array(rawOp, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 80, size: 'medium' }),
  options: fc.record({
    segmentSizeBytes: fc.constantFrom(1024, 2048),
    retainSegments: fc.constantFrom(0, 1),
    carryAfterBytes: fc.constantFrom(256, 1024, 4096),
    checkpointEveryBytes: fc.constantFrom(0, 512, 2048),
  }),
  crash: fc.option(
    fc.record({ afterOps: fc.oneof(fc.nat(40), fc.nat(400)), mode: fc.constantFrom<SimCrashMode>('power-loss', 'power-loss', 'process'), seed: fc.nat() }),
    { freq: 4 },
  ),
});

function errorOf(message: string, { name, code }: { name: string; code: string | number | null }): Error {
  const error = new Error(message);
  error.name = name;
  return code === null ? error : Object.assign(error, { code: code === 0 ? 0 : code }); // -0 is stored as 0
}

/** Turns raw ops into ops that are valid when issued in order, starting from `model`. */
function concretise(steps: RawOp[][], model: JournalModel): JournalOp[][] {
  return steps.map((step) =>
    step.flatMap((raw): JournalOp[] => {
      const live = model.liveIds();
      let op: JournalOp | null = null;
      if (raw.kind === 'push') {
        const id = `id-${raw.id}`;
        if (!model.has(id)) op = { kind: 'push', id, payload: new Uint8Array(raw.size).fill(raw.fill) };
      } else if (raw.kind === 'ack') {
        const candidates = raw.sticky ? live : live.filter((id) => !STICKY_IDS.has(id));
        if (candidates.length > 0) op = { kind: 'ack', id: candidates[raw.pick % candidates.length]! };
      } else if (raw.kind === 'fail') {
        const retryAtMs = raw.retryAtMs === 0 ? 0 : raw.retryAtMs; // -0 is stored as 0
        const error = raw.asError === null ? raw.error : errorOf(raw.error, raw.asError);
        if (live.length > 0) op = { kind: 'fail', id: live[raw.pick % live.length]!, error, retryAtMs };
      } else {
        op = { kind: 'clear' };
      }
      if (op === null) return [];
      model.apply(op);
      return [op];
    }),
  );
}

describe('Journal under crashes (property)', () => {
  it(
    'recovers a prefix of the issued ops containing every resolved one, deterministically, epoch after epoch',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.nat(), fc.array(epoch, { minLength: 1, maxLength: 4 }), async (fsSeed, epochs) => {
          const fs = new SimFileSystem({ seed: fsSeed });
          let recovered: JournalEntry[] = [];
          for (const { steps, options, crash } of epochs) {
            const journal = await Journal.open(DIR, { ...options, fs });
            expect(snapshotOf(journal.recover())).toBe(snapshotOf(recovered));
            const ops = concretise(steps, JournalModel.from(recovered));
            if (crash !== null) fs.crashAfterOps(crash.afterOps);
            const outcomes = await runSteps(journal, ops, fs);
            expectCrashRejection(outcomes);
            // Every op settles, even when the disk stopped under it.
            expect(outcomes.filter((outcome) => outcome.status === 'pending')).toEqual([]);
            if (crash === null) {
              expect(outcomes.every((outcome) => outcome.status === 'resolved')).toBe(true);
              await journal.close();
            } else {
              fs.reseed(crash.seed);
              fs.crash({ mode: crash.mode });
            }
            // Reopen twice (on a copy of the disk): both recover the same entries.
            const copy = fs.clone();
            const reopened = await Journal.open(DIR, { ...options, fs });
            const entries = reopened.recover();
            expectRecoveredPrefix(entries, outcomes, recovered);
            await reopened.close();
            const again = await Journal.open(DIR, { ...options, fs: copy });
            expect(again.recover()).toEqual(entries);
            await again.close();
            recovered = entries;
          }
        }),
        propertyParams(DEFAULT_RUNS),
      );
    },
    propertyTimeoutMs(DEFAULT_RUNS, 500),
  );
});
