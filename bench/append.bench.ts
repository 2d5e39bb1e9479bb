/**
 * Append throughput, full-ledger scan, stream reads and open time of factstore against a
 * same-run SQLite baseline (`npm run bench:append`).
 *
 * factstore: FactStore.open(dir) with its defaults (classic-level on disk, WAL sync 'always').
 * Baseline: better-sqlite3 (SQLite in WAL mode, synchronous=FULL), table
 * events(position INTEGER PRIMARY KEY, id, type, stream, stream_position, data BLOB,
 * UNIQUE(stream, stream_position)), `data` = cbor-x encoding of the same event object, one
 * transaction per append. Everything runs on temp dirs under os.tmpdir(), deleted afterwards.
 *
 * Append cases run for a fixed time each, in a fresh dir, in BENCH_ROUNDS interleaved rounds
 * (SQLite first); the table shows medians over rounds, and ratios are paired (each round's value
 * divided by the same round's SQLite value, then the median), which cancels most of this
 * machine's drift. The scan and stream-read cases load BENCH_SCAN_EVENTS events (default 1M) into
 * both, 1000 events per commit (10 streams × 100 events: one SQLite transaction; 10 concurrent
 * appendStream calls that factstore group-commits together), then alternate the two systems.
 * Results: bench/results/append.json and a Markdown table on stdout. A missed target is printed,
 * never turned into a failing exit code.
 *
 * Knobs: BENCH_ROUNDS (3), BENCH_TIME_SCALE (1; scales append-case durations), BENCH_SCAN_EVENTS
 * (1000000), BENCH_STREAM_READS (1000 random stream reads per system per round),
 * BENCH_SCAN=0 skips the load/scan/stream-read/open part.
 */
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { decode, encode } from 'cbor-x';
import { FactStore } from '../src/index.js';
import type { EventInput } from '../src/index.js';
import {
  collectGarbage,
  diskBytes,
  fmtInt,
  fmtMB,
  fmtMs,
  fmtRatio,
  freshDir,
  judge,
  latency,
  log,
  machine,
  median,
  openSqlite,
  pairedRatio,
  prng,
  removeDir,
  rssMB,
  targetTable,
  writeResults,
  type SqliteDatabase,
  orderEvent,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TIME_SCALE = Number(process.env.BENCH_TIME_SCALE ?? 1);
const CASE_MS = 1500 * TIME_SCALE;
const CONCURRENCY = 64;
const BATCH_EVENTS = 1000;
const STREAM_EVENTS = 100;
const STREAMS_PER_COMMIT = BATCH_EVENTS / STREAM_EVENTS;
const SCAN_EVENTS = Math.max(BATCH_EVENTS, Math.round(Number(process.env.BENCH_SCAN_EVENTS ?? 1_000_000) / BATCH_EVENTS) * BATCH_EVENTS);
const STREAM_READS = Number(process.env.BENCH_STREAM_READS ?? 1000);
const WITH_SCAN = process.env.BENCH_SCAN !== '0';
const OPEN_REPETITIONS = 5;

// ------------------------------------------------------------------------------------- events

/** A typical small event (≈ 200 B of CBOR): the same objects go to both systems. */
const makeEvent = (index: number): EventInput => orderEvent(index, [`order:o-${index % 5000}`, `customer:u-${index % 977}`]);

const POOL = Array.from({ length: BATCH_EVENTS }, (_, index) => makeEvent(index));
const streamSlices = Array.from({ length: STREAMS_PER_COMMIT }, (_, index) => POOL.slice(index * STREAM_EVENTS, (index + 1) * STREAM_EVENTS));

// ------------------------------------------------------------------------------------- SQLite baseline

interface SqliteStore {
  db: SqliteDatabase;
  /** One transaction appending `events` to `stream` from stream position `first`. */
  appendStream(stream: string, first: number, events: readonly EventInput[]): void;
  /** One transaction appending several streams' events. */
  appendStreams(appends: readonly { stream: string; first: number; events: readonly EventInput[] }[]): void;
}

function openSqliteStore(dir: string): SqliteStore {
  const db = openSqlite(path.join(dir, 'events.sqlite'));
  db.exec(
    'CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, stream TEXT NOT NULL, ' +
      'stream_position INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (stream, stream_position))',
  );
  const insert = db.prepare('INSERT INTO events (id, type, stream, stream_position, data) VALUES (?, ?, ?, ?, ?)');
  const insertAll = (stream: string, first: number, events: readonly EventInput[]) => {
    for (let index = 0; index < events.length; index++) {
      const event = events[index]!;
      insert.run(randomUUID(), event.type, stream, first + index, encode(event));
    }
  };
  const one = db.transaction(insertAll);
  const many = db.transaction((appends: readonly { stream: string; first: number; events: readonly EventInput[] }[]) => {
    for (const append of appends) insertAll(append.stream, append.first, append.events);
  });
  return { db, appendStream: (stream, first, events) => one(stream, first, events), appendStreams: (appends) => many(appends) };
}

// ------------------------------------------------------------------------------------- append cases

interface Sample {
  events: number;
  elapsedMs: number;
  latenciesMs: number[];
}

interface RoundResult {
  eventsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

interface CaseDef {
  id: string;
  system: 'SQLite' | 'factstore';
  label: string;
  /** The SQLite case this one is compared with. */
  reference: string;
  run: (dir: string, durationMs: number) => Promise<Sample>;
}

function timedSqlite(dir: string, durationMs: number, step: (store: SqliteStore, iteration: number) => number): Sample {
  const store = openSqliteStore(dir);
  const latenciesMs: number[] = [];
  let events = 0;
  try {
    const start = performance.now();
    const end = start + durationMs;
    let now = start;
    for (let iteration = 0; now < end; iteration++) {
      events += step(store, iteration);
      const after = performance.now();
      latenciesMs.push(after - now);
      now = after;
    }
    return { events, elapsedMs: now - start, latenciesMs };
  } finally {
    store.db.close();
  }
}

async function timedFactstore(
  dir: string,
  durationMs: number,
  loops: number,
  step: (db: FactStore, loop: number, iteration: number) => Promise<number>,
): Promise<Sample> {
  const db = await FactStore.open(path.join(dir, 'db'), { wal: { sync: 'always' } });
  const latenciesMs: number[] = [];
  let events = 0;
  try {
    const start = performance.now();
    const end = start + durationMs;
    const loop = async (loopIndex: number) => {
      for (let iteration = 0; ; iteration++) {
        const before = performance.now();
        if (before >= end) return;
        // Not `events += await …`: that reads `events` before the await and loses other loops' counts.
        const appended = await step(db, loopIndex, iteration);
        events += appended;
        latenciesMs.push(performance.now() - before);
      }
    };
    await Promise.all(Array.from({ length: loops }, (_, index) => loop(index)));
    return { events, elapsedMs: performance.now() - start, latenciesMs };
  } finally {
    await db.close();
  }
}

const CASES: CaseDef[] = [
  {
    id: 'sqlite-single',
    system: 'SQLite',
    label: 'single-event transactions, one writer',
    reference: 'sqlite-single',
    run: (dir, ms) =>
      Promise.resolve(
        timedSqlite(dir, ms, (store, iteration) => {
          store.appendStream('account-1', iteration + 1, [POOL[iteration % POOL.length]!]);
          return 1;
        }),
      ),
  },
  {
    id: 'factstore-single',
    system: 'factstore',
    label: "appendStream(1 event, expect: version), one writer, sync 'always'",
    reference: 'sqlite-single',
    run: (dir, ms) =>
      timedFactstore(dir, ms, 1, async (db, _loop, iteration) => {
        await db.appendStream('account-1', POOL[iteration % POOL.length]!, { expect: iteration });
        return 1;
      }),
  },
  {
    id: 'factstore-concurrent-64',
    system: 'factstore',
    label: `${CONCURRENCY} concurrent appendStream(1 event, expect: version), own streams`,
    reference: 'sqlite-single',
    run: (dir, ms) =>
      timedFactstore(dir, ms, CONCURRENCY, async (db, loop, iteration) => {
        await db.appendStream(`account-${loop}`, POOL[(loop * 131 + iteration) % POOL.length]!, { expect: iteration });
        return 1;
      }),
  },
  {
    id: 'sqlite-batch-1000',
    system: 'SQLite',
    label: `${BATCH_EVENTS}-row transactions`,
    reference: 'sqlite-batch-1000',
    run: (dir, ms) =>
      Promise.resolve(
        timedSqlite(dir, ms, (store, iteration) => {
          store.appendStream(`batch-${iteration}`, 1, POOL);
          return POOL.length;
        }),
      ),
  },
  {
    id: 'factstore-batch-1000',
    system: 'factstore',
    label: `appendStream(${BATCH_EVENTS} events, expect: 'none')`,
    reference: 'sqlite-batch-1000',
    run: (dir, ms) =>
      timedFactstore(dir, ms, 1, async (db, _loop, iteration) => {
        await db.appendStream(`batch-${iteration}`, POOL, { expect: 'none' });
        return POOL.length;
      }),
  },
];

async function runCase(def: CaseDef, durationMs: number): Promise<RoundResult> {
  const dir = freshDir('appendbench');
  try {
    const sample = await def.run(dir, durationMs);
    return { eventsPerSec: sample.events / (sample.elapsedMs / 1000), ...latency(sample.latenciesMs) };
  } finally {
    removeDir(dir);
  }
}

// ------------------------------------------------------------------------------------- scan, stream reads, open

const streamName = (index: number) => `order-${index}`;

async function loadFactstore(db: FactStore, events: number): Promise<void> {
  for (let stream = 0; stream < events / STREAM_EVENTS; stream += STREAMS_PER_COMMIT) {
    // Submitted in one tick, so the writer cuts them as one group: one WAL record, one LevelDB batch.
    await Promise.all(streamSlices.map((slice, index) => db.appendStream(streamName(stream + index), slice, { expect: 'none' })));
  }
}

function loadSqlite(store: SqliteStore, events: number): void {
  for (let stream = 0; stream < events / STREAM_EVENTS; stream += STREAMS_PER_COMMIT) {
    store.appendStreams(streamSlices.map((slice, index) => ({ stream: streamName(stream + index), first: 1, events: slice })));
  }
}

interface ScanResult {
  events: number;
  checksum: number;
  ms: number;
  /** Peak RSS above the RSS at the start, sampled every RSS_SAMPLE_EVENTS events (a timer cannot fire during SQLite's synchronous scan). */
  peakRssDeltaMB: number;
}

const RSS_SAMPLE_EVENTS = 16384;

function scanSqlite(db: SqliteDatabase): ScanResult {
  const select = db.prepare('SELECT position, id, type, stream, stream_position, data FROM events ORDER BY position');
  const startRss = rssMB();
  let peakRss = startRss;
  let events = 0;
  let checksum = 0;
  const start = performance.now();
  for (const row of select.iterate() as Iterable<{ position: number; id: string; type: string; stream: string; stream_position: number; data: Uint8Array }>) {
    const event = decode(row.data) as { data: { quantity: number } };
    checksum += event.data.quantity + row.stream_position;
    if (++events % RSS_SAMPLE_EVENTS === 0) peakRss = Math.max(peakRss, rssMB());
  }
  const ms = performance.now() - start;
  return { events, checksum, ms, peakRssDeltaMB: Math.max(peakRss, rssMB()) - startRss };
}

async function scanFactstore(db: FactStore): Promise<ScanResult> {
  const startRss = rssMB();
  let peakRss = startRss;
  let events = 0;
  let checksum = 0;
  const start = performance.now();
  for await (const event of db.read('all')) {
    checksum += (event.data as { quantity: number }).quantity + event.streamPosition!;
    if (++events % RSS_SAMPLE_EVENTS === 0) peakRss = Math.max(peakRss, rssMB());
  }
  const ms = performance.now() - start;
  return { events, checksum, ms, peakRssDeltaMB: Math.max(peakRss, rssMB()) - startRss };
}

interface ScanReport {
  events: number;
  load: { sqliteEventsPerSec: number; factstoreEventsPerSec: number; sqliteSec: number; factstoreSec: number };
  diskBytesPerEvent: { sqlite: number; factstore: number };
  open: { factstoreMs: number[]; factstoreMedianMs: number; factstoreRssDeltaMB: number; sqliteMedianMs: number };
  scanRounds: { sqliteEventsPerSec: number; factstoreEventsPerSec: number; sqlitePeakRssDeltaMB: number; factstorePeakRssDeltaMB: number }[];
  streamReadRounds: { sqlite: { p50Ms: number; p99Ms: number }; factstore: { p50Ms: number; p99Ms: number } }[];
  rssMB: { start: number; afterLoad: number; end: number };
}

async function runScanPart(rssStart: number): Promise<ScanReport> {
  const sqliteDir = freshDir('appendbench-sqlite');
  const factstoreDir = freshDir('appendbench-factstore');
  const factstorePath = path.join(factstoreDir, 'db');
  try {
    // ---- load
    let sqlite = openSqliteStore(sqliteDir);
    let started = performance.now();
    loadSqlite(sqlite, SCAN_EVENTS);
    const sqliteLoadMs = performance.now() - started;
    log(`load: SQLite ${fmtInt(SCAN_EVENTS)} events in ${(sqliteLoadMs / 1000).toFixed(1)} s`);
    let db = await FactStore.open(factstorePath, { wal: { sync: 'always' } });
    started = performance.now();
    await loadFactstore(db, SCAN_EVENTS);
    const factstoreLoadMs = performance.now() - started;
    log(`load: factstore ${fmtInt(SCAN_EVENTS)} events in ${(factstoreLoadMs / 1000).toFixed(1)} s`);
    if ((await db.head()) !== SCAN_EVENTS) throw new Error(`factstore head ${await db.head()} after loading ${SCAN_EVENTS}`);
    await db.close();
    sqlite.db.close();
    const diskBytesPerEvent = { sqlite: diskBytes(sqliteDir) / SCAN_EVENTS, factstore: diskBytes(factstorePath) / SCAN_EVENTS };
    collectGarbage();
    const rssAfterLoad = rssMB();

    // ---- open (must not scan): median of several opens of the closed database
    const factstoreOpenMs: number[] = [];
    let openRssDelta = Number.NaN;
    for (let repetition = 0; repetition < OPEN_REPETITIONS; repetition++) {
      collectGarbage();
      const before = rssMB();
      const start = performance.now();
      db = await FactStore.open(factstorePath, { wal: { sync: 'always' } });
      const head = await db.head();
      factstoreOpenMs.push(performance.now() - start);
      if (repetition === 0) openRssDelta = rssMB() - before;
      if (head !== SCAN_EVENTS) throw new Error(`factstore reopened with head ${head}`);
      if (repetition < OPEN_REPETITIONS - 1) await db.close();
    }
    const sqliteOpenMs: number[] = [];
    for (let repetition = 0; repetition < OPEN_REPETITIONS; repetition++) {
      const start = performance.now();
      const reopened = openSqliteStore(sqliteDir);
      reopened.db.prepare('SELECT max(position) AS head FROM events').get();
      sqliteOpenMs.push(performance.now() - start);
      if (repetition < OPEN_REPETITIONS - 1) reopened.db.close();
      else sqlite = reopened;
    }
    log(`open: factstore median ${fmtMs(median(factstoreOpenMs))} ms, SQLite ${fmtMs(median(sqliteOpenMs))} ms`);

    // ---- scans and stream reads, alternating systems
    const scanRounds: ScanReport['scanRounds'] = [];
    const streamReadRounds: ScanReport['streamReadRounds'] = [];
    const streams = SCAN_EVENTS / STREAM_EVENTS;
    const selectStream = sqlite.db.prepare('SELECT position, id, type, stream, stream_position, data FROM events WHERE stream = ? ORDER BY stream_position');
    const random = prng(42);
    for (let round = 1; round <= ROUNDS; round++) {
      collectGarbage();
      const sqliteScan = scanSqlite(sqlite.db);
      collectGarbage();
      const factstoreScan = await scanFactstore(db);
      if (sqliteScan.events !== SCAN_EVENTS || factstoreScan.events !== SCAN_EVENTS) {
        throw new Error(`scan counts ${sqliteScan.events} / ${factstoreScan.events}, expected ${SCAN_EVENTS}`);
      }
      if (sqliteScan.checksum !== factstoreScan.checksum) throw new Error('scan checksums differ');
      const result = {
        sqliteEventsPerSec: SCAN_EVENTS / (sqliteScan.ms / 1000),
        factstoreEventsPerSec: SCAN_EVENTS / (factstoreScan.ms / 1000),
        sqlitePeakRssDeltaMB: sqliteScan.peakRssDeltaMB,
        factstorePeakRssDeltaMB: factstoreScan.peakRssDeltaMB,
      };
      scanRounds.push(result);
      log(
        `round ${round}/${ROUNDS} scan: SQLite ${fmtInt(result.sqliteEventsPerSec)} ev/s, factstore ${fmtInt(result.factstoreEventsPerSec)} ev/s ` +
          `(peak RSS +${fmtMB(result.factstorePeakRssDeltaMB)} MB)`,
      );

      const picks = Array.from({ length: STREAM_READS }, () => streamName(Math.floor(random() * streams)));
      const sqliteLatencies: number[] = [];
      for (const stream of picks) {
        const start = performance.now();
        const rows = selectStream.all(stream) as { data: Uint8Array }[];
        const events = rows.map((row) => ({ ...(row as object), data: decode(row.data) as unknown }));
        sqliteLatencies.push(performance.now() - start);
        if (events.length !== STREAM_EVENTS) throw new Error(`SQLite stream ${stream} has ${events.length} events`);
      }
      const factstoreLatencies: number[] = [];
      for (const stream of picks) {
        const start = performance.now();
        const events = await db.read({ stream }).toArray();
        factstoreLatencies.push(performance.now() - start);
        if (events.length !== STREAM_EVENTS) throw new Error(`factstore stream ${stream} has ${events.length} events`);
      }
      const reads = { sqlite: latency(sqliteLatencies), factstore: latency(factstoreLatencies) };
      streamReadRounds.push(reads);
      log(
        `round ${round}/${ROUNDS} stream reads: SQLite p50 ${fmtMs(reads.sqlite.p50Ms)} ms, factstore p50 ${fmtMs(reads.factstore.p50Ms)} ms ` +
          `(p99 ${fmtMs(reads.sqlite.p99Ms)} / ${fmtMs(reads.factstore.p99Ms)})`,
      );
    }
    await db.close();
    sqlite.db.close();
    return {
      events: SCAN_EVENTS,
      load: {
        sqliteEventsPerSec: SCAN_EVENTS / (sqliteLoadMs / 1000),
        factstoreEventsPerSec: SCAN_EVENTS / (factstoreLoadMs / 1000),
        sqliteSec: sqliteLoadMs / 1000,
        factstoreSec: factstoreLoadMs / 1000,
      },
      diskBytesPerEvent,
      open: {
        factstoreMs: factstoreOpenMs,
        factstoreMedianMs: median(factstoreOpenMs),
        factstoreRssDeltaMB: openRssDelta,
        sqliteMedianMs: median(sqliteOpenMs),
      },
      scanRounds,
      streamReadRounds,
      rssMB: { start: rssStart, afterLoad: rssAfterLoad, end: rssMB() },
    };
  } finally {
    removeDir(sqliteDir);
    removeDir(factstoreDir);
  }
}

// ------------------------------------------------------------------------------------- report

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = os.loadavg()[0]!;
  const rssStart = rssMB();
  const perRound = new Map<string, RoundResult[]>(CASES.map((def) => [def.id, []]));

  // Warm-up (JIT, native modules, first-file paths); results discarded.
  for (const def of CASES) await runCase(def, 250 * TIME_SCALE);

  for (let round = 1; round <= ROUNDS; round++) {
    for (const def of CASES) {
      const result = await runCase(def, CASE_MS);
      perRound.get(def.id)!.push(result);
      log(
        `round ${round}/${ROUNDS} ${def.id.padEnd(24)} ${fmtInt(result.eventsPerSec).padStart(10)} ev/s  p50 ${fmtMs(result.p50Ms)} ms  p99 ${fmtMs(result.p99Ms)} ms`,
      );
    }
  }
  const rssAfterAppends = rssMB();

  const cases = CASES.map((def) => {
    const rounds = perRound.get(def.id)!;
    return {
      id: def.id,
      system: def.system,
      label: def.label,
      reference: def.reference,
      eventsPerSec: median(rounds.map((r) => r.eventsPerSec)),
      p50Ms: median(rounds.map((r) => r.p50Ms)),
      p99Ms: median(rounds.map((r) => r.p99Ms)),
      ratioToSqlite: pairedRatio(
        rounds.map((r) => r.eventsPerSec),
        perRound.get(def.reference)!.map((r) => r.eventsPerSec),
      ),
      rounds,
    };
  });
  const ratioOf = (id: string) => cases.find((c) => c.id === id)!.ratioToSqlite;

  const scan = WITH_SCAN ? await runScanPart(rssStart) : null;

  const targets = judge([
    { name: "one writer, 1-event appendStream ≥ 1.0× SQLite 1-row transactions", measured: ratioOf('factstore-single'), unit: 'ratio', target: 1.0, kind: 'min' },
    { name: `${CONCURRENCY} concurrent 1-event appenders ≥ 8× SQLite 1-row transactions`, measured: ratioOf('factstore-concurrent-64'), unit: 'ratio', target: 8, kind: 'min' },
    { name: `${BATCH_EVENTS}-event appends ≥ 0.8× SQLite ${BATCH_EVENTS}-row transactions`, measured: ratioOf('factstore-batch-1000'), unit: 'ratio', target: 0.8, kind: 'min' },
    ...(scan
      ? ([
          {
            name: `full scan + decode of ${fmtInt(scan.events)} events ≥ 2× SQLite`,
            measured: pairedRatio(
              scan.scanRounds.map((r) => r.factstoreEventsPerSec),
              scan.scanRounds.map((r) => r.sqliteEventsPerSec),
            ),
            unit: 'ratio',
            target: 2,
            kind: 'min',
          },
          {
            name: `${STREAM_EVENTS}-event stream read p50 ≤ 1.5× SQLite's`,
            measured: pairedRatio(
              scan.streamReadRounds.map((r) => r.factstore.p50Ms),
              scan.streamReadRounds.map((r) => r.sqlite.p50Ms),
            ),
            unit: 'ratio',
            target: 1.5,
            kind: 'max',
          },
          { name: `open of the ${fmtInt(scan.events)}-event database (no scan) ≤ 100 ms`, measured: scan.open.factstoreMedianMs, unit: 'ms', target: 100, kind: 'max' },
        ] as const)
      : []),
  ]);

  const lines = [
    `Append bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${machine().cpu.model} × ${machine().cpu.count}; ` +
      `factstore (classic-level, WAL sync 'always') vs better-sqlite3 (WAL, synchronous=FULL), one transaction per append; ` +
      `median of ${ROUNDS} rounds; 1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end; × SQLite = median of per-round ratios; latencies are per call.`,
    '',
    '| case | system | events/s | p50 ms | p99 ms | × SQLite |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
    ...cases.map((c) => `| ${c.label} | ${c.system} | ${fmtInt(c.eventsPerSec)} | ${fmtMs(c.p50Ms)} | ${fmtMs(c.p99Ms)} | ${fmtRatio(c.ratioToSqlite)} |`),
  ];
  if (scan) {
    const med = (values: number[]) => median(values);
    const scanSqlite = med(scan.scanRounds.map((r) => r.sqliteEventsPerSec));
    const scanFactstore = med(scan.scanRounds.map((r) => r.factstoreEventsPerSec));
    const readSqlite = { p50: med(scan.streamReadRounds.map((r) => r.sqlite.p50Ms)), p99: med(scan.streamReadRounds.map((r) => r.sqlite.p99Ms)) };
    const readFactstore = { p50: med(scan.streamReadRounds.map((r) => r.factstore.p50Ms)), p99: med(scan.streamReadRounds.map((r) => r.factstore.p99Ms)) };
    lines.push(
      `| load ${fmtInt(scan.events)} events, ${BATCH_EVENTS} per commit (${STREAMS_PER_COMMIT} streams × ${STREAM_EVENTS}) | SQLite | ${fmtInt(scan.load.sqliteEventsPerSec)} | | | 1.00× |`,
      `| load ${fmtInt(scan.events)} events, ${BATCH_EVENTS} per commit (${STREAMS_PER_COMMIT} concurrent appendStream × ${STREAM_EVENTS}) | factstore | ${fmtInt(scan.load.factstoreEventsPerSec)} | | | ${fmtRatio(scan.load.factstoreEventsPerSec / scan.load.sqliteEventsPerSec)} (1 run) |`,
      `| full scan + decode, ORDER BY position | SQLite | ${fmtInt(scanSqlite)} | | | 1.00× |`,
      `| full scan + decode, read('all') | factstore | ${fmtInt(scanFactstore)} | | | ${fmtRatio(targets.find((t) => t.name.startsWith('full scan'))!.measured)} |`,
      `| read a ${STREAM_EVENTS}-event stream (random of ${fmtInt(scan.events / STREAM_EVENTS)}) | SQLite | | ${fmtMs(readSqlite.p50)} | ${fmtMs(readSqlite.p99)} | 1.00× |`,
      `| read a ${STREAM_EVENTS}-event stream, read({ stream }) | factstore | | ${fmtMs(readFactstore.p50)} | ${fmtMs(readFactstore.p99)} | ${fmtRatio(targets.find((t) => t.name.includes('stream read'))!.measured)} (p50 latency) |`,
      '',
      `Open of the ${fmtInt(scan.events)}-event database: factstore ${fmtMs(scan.open.factstoreMedianMs)} ms (median of ${OPEN_REPETITIONS}; ` +
        `RSS +${fmtMB(scan.open.factstoreRssDeltaMB)} MB), SQLite ${fmtMs(scan.open.sqliteMedianMs)} ms. ` +
        `Disk: factstore ${fmtInt(scan.diskBytesPerEvent.factstore)} B/event, SQLite ${fmtInt(scan.diskBytesPerEvent.sqlite)} B/event. ` +
        `Peak RSS growth during a full scan (first / median of rounds): factstore +${fmtMB(scan.scanRounds[0]!.factstorePeakRssDeltaMB)} / ` +
        `+${fmtMB(med(scan.scanRounds.map((r) => r.factstorePeakRssDeltaMB)))} MB, SQLite +${fmtMB(scan.scanRounds[0]!.sqlitePeakRssDeltaMB)} / ` +
        `+${fmtMB(med(scan.scanRounds.map((r) => r.sqlitePeakRssDeltaMB)))} MB. ` +
        `Process RSS: ${fmtMB(scan.rssMB.start)} MB at start, ${fmtMB(rssAfterAppends)} MB after the append cases, ` +
        `${fmtMB(scan.rssMB.afterLoad)} MB after loading, ${fmtMB(scan.rssMB.end)} MB at the end.`,
    );
  }
  lines.push('', ...targetTable(targets));
  console.log(lines.join('\n'));

  const file = writeResults('append', {
    ...machine(),
    loadAverageAtStart: loadAtStart,
    config: {
      rounds: ROUNDS,
      caseMs: CASE_MS,
      concurrency: CONCURRENCY,
      batchEvents: BATCH_EVENTS,
      scanEvents: WITH_SCAN ? SCAN_EVENTS : 0,
      streamEvents: STREAM_EVENTS,
      streamReadsPerRound: STREAM_READS,
      eventExample: POOL[1],
      eventCborBytes: encode(POOL[1]).length,
      factstore: "FactStore.open(dir, { wal: { sync: 'always' } }) — classic-level on disk",
      sqlite: 'better-sqlite3, journal_mode=WAL, synchronous=FULL, one transaction per append',
      statistics: 'simple-statistics (quantileSorted, median)',
      ratioMethod: "median over rounds of the ratio to the same round's SQLite value",
    },
    cases,
    scan,
    targets,
    durationSec: (performance.now() - started) / 1000,
  });
  log(`wrote ${file} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
