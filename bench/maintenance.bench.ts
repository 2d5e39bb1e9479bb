/**
 * Append latency while maintenance runs (`npm run bench:maintenance`): one writer appends
 * 1-event appends back to back, first alone (the baseline, same process, same database), then
 * while `rebuildIndexes()` runs over the whole store, then while `verify()` runs. Reports
 * p50 / p99 / max latency and appends per second in each phase, the longest gap between two
 * resolved appends (how long appends were held back at most), and the maintenance's duration.
 *
 * factstore with its defaults (classic-level on disk, WAL sync 'always'); the store is loaded
 * with BENCH_MAINTENANCE_EVENTS events (default 1,000,000) in 1000-event appends (2 tags, a small
 * data object, 10 streams). Results: bench/results/maintenance.json and a table on stdout.
 */
import { performance } from 'node:perf_hooks';
import * as path from 'node:path';
import { FactStore } from '../src/index.js';
import { fmtInt, fmtMs, freshDir, latency, log, machine, removeDir, writeResults } from './support.js';

const EVENTS = Number(process.env.BENCH_MAINTENANCE_EVENTS ?? 1_000_000);
const BASELINE_MS = 3000;

interface Phase {
  name: string;
  appends: number;
  appendsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Longest time between two consecutive resolved appends. */
  longestGapMs: number;
  durationMs: number;
}

/** Appends 1-event appends until `done()` says stop; returns the phase's numbers. */
async function appendWhile(db: FactStore, name: string, done: () => boolean): Promise<Phase> {
  const samples: number[] = [];
  const start = performance.now();
  let last = start;
  let longestGapMs = 0;
  while (!done()) {
    const before = performance.now();
    await db.append({ type: 'Probe', tags: ['probe'], data: { n: samples.length } });
    const after = performance.now();
    samples.push(after - before);
    longestGapMs = Math.max(longestGapMs, after - last);
    last = after;
  }
  const durationMs = performance.now() - start;
  const { p50Ms, p99Ms } = latency(samples);
  return {
    name,
    appends: samples.length,
    appendsPerSecond: (samples.length / durationMs) * 1000,
    p50Ms,
    p99Ms,
    maxMs: samples.reduce((max, sample) => Math.max(max, sample), 0),
    longestGapMs,
    durationMs,
  };
}

async function main(): Promise<void> {
  const dir = freshDir('factstore-bench-maintenance-');
  try {
    const dbPath = path.join(dir, 'db');
    const db = await FactStore.open(dbPath);
    const loadStart = performance.now();
    for (let first = 0; first < EVENTS; first += 1000) {
      const count = Math.min(1000, EVENTS - first);
      await db.appendStream(
        `order-${(first / 1000) % 10}`,
        Array.from({ length: count }, (_, index) => ({
          type: index % 3 === 0 ? 'OrderPlaced' : 'ItemAdded',
          tags: [`customer:${(first + index) % 5000}`, `sku:${(first + index) % 997}`],
          data: { quantity: index % 7, price: (first + index) % 1000 },
        })),
      );
    }
    log(`loaded ${fmtInt(EVENTS)} events in ${fmtInt(performance.now() - loadStart)} ms`);
    await db.verify(); // the apply is done, the page cache warm

    const baselineEnd = performance.now() + BASELINE_MS;
    const phases: Phase[] = [await appendWhile(db, 'alone (baseline)', () => performance.now() >= baselineEnd)];
    for (const [name, run] of [
      ['during rebuildIndexes()', () => db.rebuildIndexes()],
      ['during verify()', () => db.verify()],
    ] as const) {
      let finished = false;
      const maintenance = (run() as Promise<unknown>).then(() => (finished = true));
      phases.push(await appendWhile(db, name, () => finished));
      await maintenance;
    }
    const report = await db.verify();
    if (!report.ok) throw new Error(`verify after the bench: ${report.problems.join('; ')}`);
    await db.close();

    const lines = [
      `Append latency during maintenance, ${fmtInt(EVENTS)} events, one writer of 1-event appends (sync 'always')`,
      '',
      '| phase | duration ms | appends | appends/s | p50 ms | p99 ms | max ms | longest gap ms |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...phases.map(
        (phase) =>
          `| ${phase.name} | ${fmtInt(phase.durationMs)} | ${fmtInt(phase.appends)} | ${fmtInt(phase.appendsPerSecond)} | ${fmtMs(phase.p50Ms)} | ${fmtMs(phase.p99Ms)} | ${fmtMs(phase.maxMs)} | ${fmtMs(phase.longestGapMs)} |`,
      ),
    ];
    console.log(lines.join('\n'));
    const file = writeResults('maintenance', { machine: machine(), events: EVENTS, phases });
    log(`results: ${file}`);
  } finally {
    removeDir(dir);
  }
}

await main();
