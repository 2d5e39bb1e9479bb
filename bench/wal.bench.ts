/**
 * WAL throughput and latency against a same-run baseline (`npm run bench:wal`).
 *
 * Baseline: a plain loop of `fs.writeSync` + `fs.fdatasyncSync` of one framed record (32 B header +
 * 200 B payload) appended to a growing file. Every case runs for a fixed time in a fresh temp dir
 * (default 16 MiB segments, so zero-fill and rotation costs are included), in ROUNDS interleaved
 * rounds; the table shows medians over rounds. Ratios are paired: each round's value divided by
 * the same round's baseline (or one-writer) value, then the median is taken, which cancels most
 * of this machine's ±30 % drift. Results go to bench/results/wal.json and a Markdown table to stdout.
 * A missed target is printed, never turned into a failing exit code: benches are not tests.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { median, quantileSorted } from 'simple-statistics';
import { Wal } from '../src/wal/index.js';
import { encodeRecord, RECORD_HEADER_SIZE_BYTES } from '../src/wal/format.js';
import { writeResults } from './support.js';

const PAYLOAD_SIZE_BYTES = 200;
const RECORD_SIZE_BYTES = RECORD_HEADER_SIZE_BYTES + PAYLOAD_SIZE_BYTES;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Scales every case's duration (e.g. 0.3 for a smoke run). */
const TIME_SCALE = Number(process.env.BENCH_TIME_SCALE ?? 1);
const CASE_MS = 1500 * TIME_SCALE;
const SHORT_CASE_MS = 1000 * TIME_SCALE;
const CONCURRENCIES = [1, 4, 16, 64] as const;
const BATCH_SIZES = [1, 10, 100, 1000] as const;
const NONE_CONCURRENCY = 4;
const NONE_BATCH_SIZE = 1000;

const payload = new Uint8Array(PAYLOAD_SIZE_BYTES);
for (let index = 0; index < payload.length; index++) payload[index] = (index * 131 + 7) & 0xff;

interface Sample {
  records: number;
  elapsedMs: number;
  /** Latency of each awaited call (one record, or one batch), ms. */
  latenciesMs: number[];
}

interface RoundResult {
  recordsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  payloadMBps: number;
}

interface CaseDef {
  id: string;
  label: string;
  /** What a latency sample is. */
  latencyOf: 'record' | 'batch';
  run: (dir: string) => Promise<Sample>;
}

function summarize(sample: Sample): RoundResult {
  const sorted = Float64Array.from(sample.latenciesMs).sort();
  const values = Array.from(sorted);
  const seconds = sample.elapsedMs / 1000;
  return {
    recordsPerSec: sample.records / seconds,
    p50Ms: values.length > 0 ? quantileSorted(values, 0.5) : Number.NaN,
    p99Ms: values.length > 0 ? quantileSorted(values, 0.99) : Number.NaN,
    payloadMBps: (sample.records * PAYLOAD_SIZE_BYTES) / seconds / 1e6,
  };
}

function freshDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'factstore-walbench-'));
}

// ------------------------------------------------------------------------------------- cases

/** The baseline: writeSync + fdatasyncSync of one 232-byte framed record per iteration. */
function runBaseline(dir: string, durationMs: number): Sample {
  const record = encodeRecord({ lsn: 1, durableLsn: 0, batchRemaining: 0, type: 0, payload });
  if (record.length !== RECORD_SIZE_BYTES) throw new Error('baseline record size differs from the WAL record');
  const fd = fs.openSync(path.join(dir, 'baseline.log'), 'w');
  const latenciesMs: number[] = [];
  let position = 0;
  try {
    const start = performance.now();
    const end = start + durationMs;
    let now = start;
    while (now < end) {
      fs.writeSync(fd, record, 0, record.length, position);
      fs.fdatasyncSync(fd);
      position += record.length;
      const after = performance.now();
      latenciesMs.push(after - now);
      now = after;
    }
    return { records: latenciesMs.length, elapsedMs: now - start, latenciesMs };
  } finally {
    fs.closeSync(fd);
  }
}

/** `appenders` loops, each awaiting its own `append` (or `appendBatch` of `batchSize`). */
async function runWal(
  dir: string,
  options: { sync: 'always' | 'none'; appenders: number; batchSize: number | null; durationMs: number },
): Promise<Sample> {
  const wal = await Wal.open(dir, { sync: options.sync });
  const batch = options.batchSize === null ? null : Array.from({ length: options.batchSize }, () => payload);
  const perCall = batch?.length ?? 1;
  const latenciesMs: number[] = [];
  let records = 0;
  try {
    const start = performance.now();
    const end = start + options.durationMs;
    const loop = async () => {
      for (;;) {
        const before = performance.now();
        if (before >= end) return;
        if (batch) await wal.appendBatch(batch);
        else await wal.append(payload);
        latenciesMs.push(performance.now() - before);
        records += perCall;
      }
    };
    await Promise.all(Array.from({ length: options.appenders }, loop));
    return { records, elapsedMs: performance.now() - start, latenciesMs };
  } finally {
    await wal.close();
  }
}

const BASELINE: CaseDef = {
  id: 'baseline',
  label: 'baseline: writeSync + fdatasyncSync, growing file',
  latencyOf: 'record',
  run: (dir) => Promise.resolve(runBaseline(dir, CASE_MS)),
};

const ONE_WRITER: CaseDef = {
  id: 'one-writer',
  label: "one writer, sync 'always'",
  latencyOf: 'record',
  run: (dir) => runWal(dir, { sync: 'always', appenders: 1, batchSize: null, durationMs: CASE_MS }),
};

const concurrentCase = (n: number): CaseDef => ({
  id: `concurrent-${n}`,
  label: `${n} concurrent appenders, 'always'`,
  latencyOf: 'record',
  run: (dir) => runWal(dir, { sync: 'always', appenders: n, batchSize: null, durationMs: n === 64 ? CASE_MS : SHORT_CASE_MS }),
});

const batchCase = (size: number): CaseDef => ({
  id: `batch-${size}`,
  label: `appendBatch(${size}), one writer, 'always'`,
  latencyOf: 'batch',
  run: (dir) => runWal(dir, { sync: 'always', appenders: 1, batchSize: size, durationMs: SHORT_CASE_MS }),
});

const NONE: CaseDef = {
  id: 'none-throughput',
  label: `sync 'none', ${NONE_CONCURRENCY} × appendBatch(${NONE_BATCH_SIZE})`,
  latencyOf: 'batch',
  run: (dir) => runWal(dir, { sync: 'none', appenders: NONE_CONCURRENCY, batchSize: NONE_BATCH_SIZE, durationMs: SHORT_CASE_MS }),
};

/** One round, in this order; baseline and one writer first so their pairing is tight. */
const ROUND: CaseDef[] = [BASELINE, ONE_WRITER, ...CONCURRENCIES.map(concurrentCase), ...BATCH_SIZES.map(batchCase), NONE];

async function runCase(def: CaseDef): Promise<RoundResult> {
  const dir = freshDir();
  try {
    return summarize(await def.run(dir));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------- report

const fmtInt = (value: number) => Math.round(value).toLocaleString('en-US');
const fmtMs = (value: number) => (Number.isFinite(value) ? value.toFixed(3) : '–');
const fmtRatio = (value: number) => `${value.toFixed(2)}×`;
const fmtMB = (value: number) => value.toFixed(1);

function cpuModel(): string {
  return os.cpus()[0]?.model.trim() ?? 'unknown';
}

async function main(): Promise<void> {
  const started = performance.now();
  const perRound = new Map<string, RoundResult[]>(ROUND.map((def) => [def.id, []]));

  // Warm-up (JIT, page cache, first segment creation path); results discarded.
  await runCase({ ...ONE_WRITER, run: (dir) => runWal(dir, { sync: 'always', appenders: 8, batchSize: null, durationMs: 300 * TIME_SCALE }) });
  await runCase({ ...BASELINE, run: (dir) => Promise.resolve(runBaseline(dir, 200 * TIME_SCALE)) });

  for (let round = 1; round <= ROUNDS; round++) {
    for (const def of ROUND) {
      const result = await runCase(def);
      perRound.get(def.id)!.push(result);
      process.stderr.write(
        `round ${round}/${ROUNDS} ${def.id.padEnd(16)} ${fmtInt(result.recordsPerSec).padStart(10)} rec/s  p50 ${fmtMs(result.p50Ms)} ms  p99 ${fmtMs(result.p99Ms)} ms\n`,
      );
    }
  }

  const baselineRounds = perRound.get(BASELINE.id)!;
  const oneWriterRounds = perRound.get(ONE_WRITER.id)!;
  /** Median over rounds of (case / reference) paired within each round. */
  const pairedRatio = (rounds: RoundResult[], reference: RoundResult[]) =>
    median(rounds.map((result, index) => result.recordsPerSec / reference[index]!.recordsPerSec));

  const cases = ROUND.map((def) => {
    const rounds = perRound.get(def.id)!;
    return {
      id: def.id,
      label: def.label,
      latencyOf: def.latencyOf,
      recordsPerSec: median(rounds.map((r) => r.recordsPerSec)),
      p50Ms: median(rounds.map((r) => r.p50Ms)),
      p99Ms: median(rounds.map((r) => r.p99Ms)),
      payloadMBps: median(rounds.map((r) => r.payloadMBps)),
      ratioToBaseline: pairedRatio(rounds, baselineRounds),
      rounds,
    };
  });

  const targets = [
    {
      name: 'one writer ≥ 1.0× baseline',
      ratio: pairedRatio(oneWriterRounds, baselineRounds),
      target: 1.0,
    },
    {
      name: '64 concurrent ≥ 20× one writer',
      ratio: pairedRatio(perRound.get('concurrent-64')!, oneWriterRounds),
      target: 20,
    },
  ].map((t) => ({ ...t, pass: t.ratio >= t.target }));

  const lines = [
    `WAL bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpuModel()} × ${os.cpus().length}; ` +
      `${PAYLOAD_SIZE_BYTES} B payloads (${RECORD_SIZE_BYTES} B framed), 16 MiB segments, median of ${ROUNDS} rounds; ` +
      `× baseline = median of per-round ratios; batch/'none' latencies are per call.`,
    '',
    '| case | records/s | p50 ms | p99 ms | payload MB/s | × baseline |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...cases.map(
      (c) =>
        `| ${c.label} | ${fmtInt(c.recordsPerSec)} | ${fmtMs(c.p50Ms)} | ${fmtMs(c.p99Ms)} | ${fmtMB(c.payloadMBps)} | ${fmtRatio(c.ratioToBaseline)} |`,
    ),
    '',
    '| target | measured | result |',
    '| --- | ---: | --- |',
    ...targets.map((t) => `| ${t.name} | ${fmtRatio(t.ratio)} | ${t.pass ? 'PASS' : 'MISS'} |`),
  ];
  console.log(lines.join('\n'));

  const report = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: { model: cpuModel(), count: os.cpus().length },
    config: {
      payloadSizeBytes: PAYLOAD_SIZE_BYTES,
      recordSizeBytes: RECORD_SIZE_BYTES,
      segmentSizeBytes: 16 * 1024 * 1024,
      rounds: ROUNDS,
      caseMs: CASE_MS,
      shortCaseMs: SHORT_CASE_MS,
      tmpdir: os.tmpdir(),
      statistics: 'simple-statistics (quantileSorted, median)',
      ratioMethod: 'median over rounds of the ratio to the same round\'s reference',
    },
    cases,
    targets,
    durationSec: (performance.now() - started) / 1000,
  };
  const file = writeResults('wal', report);
  process.stderr.write(`wrote ${file} in ${report.durationSec.toFixed(1)} s\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
