/**
 * Bulk-append throughput as the store grows, and open time at several sizes (`npm run bench:growth`;
 * issue 11: LevelDB's compactions grow with the store).
 *
 * One factstore database (FactStore.open(dir) defaults, WAL sync 'always') on a temp dir: 1000-event
 * append() calls, BENCH_GROWTH_IN_FLIGHT (8) in flight, each event ≈ 150 B of data with 2 tags drawn
 * uniformly from BENCH_GROWTH_TAGS (100,000) distinct tags, until BENCH_GROWTH_EVENTS (10,000,000).
 * Events are generated per append from a seeded PRNG (same workload every run).
 *
 * Reports events/s per window of BENCH_GROWTH_WINDOW_EVENTS (1,000,000), the ratio last window / first
 * window (target ≥ 0.7), and open time (close, then FactStore.open + head(), median of
 * OPEN_REPETITIONS opens) at 10k, 1M and the end (target < 50 ms). Time spent closing and reopening
 * is not counted in any window. Each window also reports the process's CPU time and the bytes it
 * had written to storage per event, which the machine's other load disturbs far less than events/s. LevelDB's table-file count is logged with each window.
 * Results: bench/results/growth.json and a Markdown table on stdout; a missed target is printed,
 * never turned into a failing exit code.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FactStore } from '../src/index.js';
import type { EventInput } from '../src/index.js';
import { diskBytes, fmtInt, fmtMs, fmtRatio, freshDir, judge, log, machine, median, prng, removeDir, rssMB, targetTable, writeResults } from './support.js';

const BATCH_EVENTS = 1000;
const IN_FLIGHT = Number(process.env.BENCH_GROWTH_IN_FLIGHT ?? 8);
const TAGS = Number(process.env.BENCH_GROWTH_TAGS ?? 100_000);
const WINDOW_EVENTS = Number(process.env.BENCH_GROWTH_WINDOW_EVENTS ?? 1_000_000);
const TOTAL_EVENTS = Math.max(WINDOW_EVENTS, Math.round(Number(process.env.BENCH_GROWTH_EVENTS ?? 10_000_000) / WINDOW_EVENTS) * WINDOW_EVENTS);
/** Sizes (events) at which the store is closed and reopened; the end is always one. */
const OPEN_AT_EVENTS = [10_000, 1_000_000].filter((events) => events < TOTAL_EVENTS);
const OPEN_REPETITIONS = 3;
const RATIO_TARGET = 0.7;
const OPEN_TARGET_MS = 50;

const TYPES = ['OrderPlaced', 'ItemAdded', 'ItemRemoved', 'OrderShipped'] as const;
const random = prng(11);
const pick = (count: number) => Math.floor(random() * count);

/** One event: ≈ 150 B of CBOR data and metadata, 2 distinct tags of TAGS. */
function makeEvent(index: number): EventInput {
  const first = pick(TAGS);
  const second = (first + 1 + pick(TAGS - 1)) % TAGS;
  return {
    type: TYPES[index % TYPES.length]!,
    data: {
      orderId: `o-${first}`,
      sku: `SKU-${(index * 7919) % 100000}`,
      quantity: 1 + (index % 7),
      priceCents: 199 + ((index * 31) % 10000),
      currency: 'EUR',
      note: index % 3 === 0 ? 'gift wrap, leave at the door' : null,
    },
    metadata: { correlationId: `c-${index}` },
    tags: [`t:${first}`, `t:${second}`],
  };
}

function makeBatch(firstIndex: number): EventInput[] {
  return Array.from({ length: BATCH_EVENTS }, (_, offset) => makeEvent(firstIndex + offset));
}

interface Window {
  fromEvents: number;
  toEvents: number;
  seconds: number;
  eventsPerSec: number;
  /** Process CPU (main thread, LevelDB's compaction thread, the thread pool) per event: less noisy than events/s on a shared machine. */
  cpuMicrosPerEvent: number;
  /** Bytes the process passed to write calls per event (/proc/self/io wchar; NaN elsewhere): WAL plus LevelDB's write amplification. */
  writtenBytesPerEvent: number;
  tables: number;
}

/** Bytes this process has passed to write calls so far (Linux: wchar, which counts them whether or not the page cache has written them back yet), else NaN. */
function writtenBytes(): number {
  try {
    const match = /^wchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'));
    return match ? Number(match[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const cpuMicros = () => {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
};

interface OpenSample {
  events: number;
  closeMs: number;
  openMs: number[];
  medianOpenMs: number;
  diskBytesPerEvent: number;
  /** LevelDB's table files and .log bytes after the close: what its open reads and replays. */
  tables: number;
  logBytes: number;
}

const open = (dir: string) => FactStore.open(dir, { wal: { sync: 'always' } });

/** LevelDB's table files and the size of its current .log (its memtable's content), for the log lines. */
function ledgerFiles(dir: string): { tables: number; logBytes: number } {
  const ledger = path.join(dir, 'ledger');
  const names = fs.readdirSync(ledger);
  const logBytes = names.filter((name) => name.endsWith('.log')).reduce((sum, name) => sum + diskBytes(path.join(ledger, name)), 0);
  return { tables: names.filter((name) => name.endsWith('.ldb')).length, logBytes };
}

async function measureOpen(dir: string, db: FactStore, events: number): Promise<{ db: FactStore; sample: OpenSample }> {
  let start = performance.now();
  await db.close();
  const closeMs = performance.now() - start;
  const files = ledgerFiles(dir);
  const openMs: number[] = [];
  for (let repetition = 0; repetition < OPEN_REPETITIONS; repetition++) {
    start = performance.now();
    db = await open(dir);
    const head = await db.head();
    openMs.push(performance.now() - start);
    if (head !== events) throw new Error(`reopened with head ${head}, expected ${events}`);
    if (repetition < OPEN_REPETITIONS - 1) await db.close();
  }
  const sample = { events, closeMs, openMs, medianOpenMs: median(openMs), diskBytesPerEvent: diskBytes(dir) / events, ...files };
  log(`open at ${fmtInt(events)} events: close ${fmtMs(closeMs)} ms, opens ${openMs.map(fmtMs).join(' / ')} ms, ${fmtInt(sample.diskBytesPerEvent)} B/event on disk, ${files.tables} tables, .log ${fmtInt(files.logBytes)} B`);
  return { db, sample };
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = os.loadavg()[0]!;
  const dir = path.join(freshDir('growthbench'), 'db');
  const windows: Window[] = [];
  const opens: OpenSample[] = [];
  try {
    let db = await open(dir);
    let submitted = 0;
    let appended = 0;
    let windowStart = performance.now();
    let windowFrom = 0;
    let windowCpu = cpuMicros();
    let windowWritten = writtenBytes();
    /** Appends until `until` events, IN_FLIGHT calls at a time; closes windows on the way. */
    const appendUntil = async (until: number) => {
      const loop = async () => {
        while (submitted < until) {
          const batch = makeBatch(submitted);
          submitted += BATCH_EVENTS;
          await db.append(batch);
          appended += BATCH_EVENTS;
          if (appended % WINDOW_EVENTS === 0) {
            const now = performance.now();
            const seconds = (now - windowStart) / 1000;
            const events = appended - windowFrom;
            const cpu = cpuMicros();
            const written = writtenBytes();
            const window = {
              fromEvents: windowFrom,
              toEvents: appended,
              seconds,
              eventsPerSec: events / seconds,
              cpuMicrosPerEvent: (cpu - windowCpu) / events,
              writtenBytesPerEvent: (written - windowWritten) / events,
              tables: ledgerFiles(dir).tables,
            };
            windows.push(window);
            log(
              `${fmtInt(windowFrom)}–${fmtInt(appended)}: ${fmtInt(window.eventsPerSec)} events/s (${seconds.toFixed(1)} s), ` +
                `${window.cpuMicrosPerEvent.toFixed(1)} µs CPU/event, ${fmtInt(window.writtenBytesPerEvent)} B written/event, ${window.tables} tables, RSS ${rssMB().toFixed(0)} MB`,
            );
            windowStart = now;
            windowFrom = appended;
            windowCpu = cpu;
            windowWritten = written;
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, loop));
    };
    for (const at of [...OPEN_AT_EVENTS, TOTAL_EVENTS]) {
      await appendUntil(at);
      // The pause for close + reopen belongs to no window.
      const paused = performance.now();
      const measured = await measureOpen(dir, db, at);
      db = measured.db;
      opens.push(measured.sample);
      windowStart += performance.now() - paused;
      windowCpu = cpuMicros();
      windowWritten = writtenBytes();
    }
    await db.close();
  } finally {
    removeDir(path.dirname(dir));
  }

  const first = windows[0]!;
  const last = windows[windows.length - 1]!;
  const ratio = last.eventsPerSec / first.eventsPerSec;
  const targets = judge([
    { name: `bulk appends ${fmtInt(last.fromEvents)}–${fmtInt(last.toEvents)} ≥ ${RATIO_TARGET}× the first ${fmtInt(WINDOW_EVENTS)}`, measured: ratio, unit: 'ratio', target: RATIO_TARGET, kind: 'min' },
    ...opens.map((sample) => ({ name: `open at ${fmtInt(sample.events)} events < ${OPEN_TARGET_MS} ms`, measured: sample.medianOpenMs, unit: 'ms' as const, target: OPEN_TARGET_MS, kind: 'max' as const })),
  ]);
  const lines = [
    `Growth bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${machine().cpu.model} × ${machine().cpu.count}; ` +
      `${BATCH_EVENTS}-event append() calls, ${IN_FLIGHT} in flight, 2 tags per event of ${fmtInt(TAGS)}; WAL sync 'always'; ` +
      `1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end.`,
    '',
    '| events | events/s | × first window | CPU µs/event | written B/event |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...windows.map(
      (w) =>
        `| ${fmtInt(w.fromEvents)}–${fmtInt(w.toEvents)} | ${fmtInt(w.eventsPerSec)} | ${fmtRatio(w.eventsPerSec / first.eventsPerSec)} | ${w.cpuMicrosPerEvent.toFixed(1)} | ${fmtInt(w.writtenBytesPerEvent)} |`,
    ),
    '',
    '| open at | close ms | open ms (median of 3) | disk B/event |',
    '| ---: | ---: | ---: | ---: |',
    ...opens.map((o) => `| ${fmtInt(o.events)} | ${fmtMs(o.closeMs)} | ${fmtMs(o.medianOpenMs)} | ${fmtInt(o.diskBytesPerEvent)} |`),
    '',
    ...targetTable(targets),
  ];
  console.log(lines.join('\n'));
  const file = writeResults('growth', {
    ...machine(),
    loadAverageAtStart: loadAtStart,
    config: { batchEvents: BATCH_EVENTS, inFlight: IN_FLIGHT, tags: TAGS, windowEvents: WINDOW_EVENTS, totalEvents: TOTAL_EVENTS, eventExample: makeEvent(1) },
    windows,
    ratioLastToFirst: ratio,
    opens,
    targets,
    durationSec: (performance.now() - started) / 1000,
  });
  log(`wrote ${file} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
