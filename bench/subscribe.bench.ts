/**
 * db.subscribe(source, { from, signal }) (`npm run bench:subscribe`), on classic-level (the
 * default FactStore.open(dir)).
 *
 * 1. Catch-up: BENCH_EVENTS (1M) typical events (≈ 250 B, 1-2 tags; every 10th carries
 *    `bucket:hot`) are loaded in bulk appends of 1000 (several in flight); the store is closed and
 *    reopened; then per round, a plain full scan `for await (… of db.read('all'))` (the baseline)
 *    and `db.subscribe('all')` delivering every event from history, and `db.subscribe({ tag:
 *    'bucket:hot' })` (~10% of events). Events/s, median of ROUNDS rounds; ratio paired per round.
 * 2. Live lag: 1 and 16 subscribers from 'end' while 4 writer loops each `await db.append(one)`
 *    for BENCH_LAG_SECONDS; lag = from just after the append's promise resolves (keyed by its
 *    position) to a subscriber receiving that position. p50/p99 over all (subscriber, event) pairs.
 * 3. Stalled subscriber: one subscriber from 'start' takes one event then stops calling next()
 *    while BENCH_EVENTS events are appended in bulk; RSS and heap before/after (after GC); then it
 *    resumes and must receive every event in order. A subscription keeps no queue: a stalled one
 *    holds at most about 2 × SUBSCRIPTION_BATCH_EVENTS events (its batch and one prefetch).
 *
 * Results: bench/results/subscribe.json and a Markdown table on stdout. A missed target is
 * printed, never turned into a failing exit code.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FactStore, SUBSCRIPTION_BATCH_EVENTS } from '../src/index.js';
import type { EventInput, ReadSource } from '../src/index.js';
import {
  collectGarbage,
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
  pairedRatio,
  removeDir,
  rssMB,
  targetTable,
  writeResults,
  orderEvent,
} from './support.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LOAD_BATCH_EVENTS = 1000;
const LOAD_IN_FLIGHT = 4;
const WRITERS = 4;
const HOT_TAG = 'bucket:hot';
const HOT_EVERY = 10;
const CATCH_UP_EVENTS_PER_S_TARGET = 400_000;
const LAG_P99_MS_TARGET = 2;

/** A typical small event (≈ 250 B): 1 tag, 2 for every HOT_EVERY-th. */
function makeEvent(index: number): EventInput {
  const order = `order:o-${index % 5000}`;
  return orderEvent(index, index % HOT_EVERY === 0 ? [order, HOT_TAG] : [order]);
}

const POOL = Array.from({ length: LOAD_BATCH_EVENTS }, (_, index) => makeEvent(index));

/** Appends `count` events in bulk appends of LOAD_BATCH_EVENTS, LOAD_IN_FLIGHT in flight. */
async function load(db: FactStore, count: number): Promise<void> {
  let next = 0;
  const loader = async () => {
    while (next < count) {
      const size = Math.min(LOAD_BATCH_EVENTS, count - next);
      next += size;
      await db.append(size === LOAD_BATCH_EVENTS ? POOL : POOL.slice(0, size));
    }
  };
  await Promise.all(Array.from({ length: LOAD_IN_FLIGHT }, loader));
}

// ------------------------------------------------------------------------------------- 1. catch-up

interface Timed {
  events: number;
  ms: number;
}

async function timeScan(db: FactStore): Promise<Timed> {
  const started = performance.now();
  let events = 0;
  for await (const event of db.read('all')) if (event.position > 0) events++;
  return { events, ms: performance.now() - started };
}

/** Subscribes from 'start' and takes events until the one at `lastPosition`. */
async function timeCatchUp(db: FactStore, source: ReadSource, lastPosition: number): Promise<Timed> {
  const started = performance.now();
  const subscription = db.subscribe(source);
  let events = 0;
  for await (const event of subscription) {
    events++;
    if (event.position >= lastPosition) break;
  }
  const ms = performance.now() - started;
  await subscription.close();
  return { events, ms };
}

const perSecond = (t: Timed) => (t.events * 1000) / t.ms;

async function catchUp(root: string) {
  const dir = path.join(root, 'catch-up');
  let db = await FactStore.open(dir);
  const loadStarted = performance.now();
  await load(db, EVENTS);
  const loadMs = performance.now() - loadStarted;
  await db.close();
  log(`catch-up: loaded ${fmtInt(EVENTS)} events in ${fmtInt(loadMs)} ms`);
  db = await FactStore.open(dir);
  try {
    const hotLast = Math.floor((EVENTS - 1) / HOT_EVERY) * HOT_EVERY + 1;
    const scans: Timed[] = [];
    const alls: Timed[] = [];
    const tags: Timed[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      scans.push(await timeScan(db));
      alls.push(await timeCatchUp(db, 'all', EVENTS));
      tags.push(await timeCatchUp(db, { tag: HOT_TAG }, hotLast));
      log(
        `catch-up round ${round + 1}: scan ${fmtInt(perSecond(scans.at(-1)!))}/s, subscribe('all') ${fmtInt(perSecond(alls.at(-1)!))}/s, ` +
          `{ tag } ${fmtInt(perSecond(tags.at(-1)!))}/s`,
      );
    }
    const complete = alls.every((t) => t.events === EVENTS) && scans.every((t) => t.events === EVENTS);
    return {
      loadMs,
      loadEventsPerS: (EVENTS * 1000) / loadMs,
      complete,
      scanEventsPerS: median(scans.map(perSecond)),
      allEventsPerS: median(alls.map(perSecond)),
      tagEventsPerS: median(tags.map(perSecond)),
      tagEvents: tags[0]!.events,
      ratioToScan: pairedRatio(alls.map(perSecond), scans.map(perSecond)),
      rounds: { scans, alls, tags },
    };
  } finally {
    await db.close();
  }
}

// ------------------------------------------------------------------------------------- 2. live lag

async function liveLag(root: string, subscribers: number) {
  const db = await FactStore.open(path.join(root, `lag-${subscribers}`));
  try {
    const appendedAt = new Map<number, number>();
    const lagsMs: number[] = [];
    let stop = false;
    let appends = 0;
    const subscriptions = Array.from({ length: subscribers }, () => db.subscribe('all', { from: 'end' }));
    const readers = subscriptions.map(async (subscription) => {
      for await (const event of subscription) {
        const now = performance.now();
        const at = appendedAt.get(event.position);
        // An event delivered before its append's continuation ran: lag counted as 0.
        lagsMs.push(at === undefined ? 0 : now - at);
      }
    });
    const started = performance.now();
    const writer = async (id: number) => {
      for (let index = 0; !stop; index++) {
        const { position } = await db.append(makeEvent(id * 1_000_000 + index));
        appendedAt.set(position, performance.now());
        appends++;
      }
    };
    const timer = setTimeout(() => {
      stop = true;
    }, LAG_SECONDS * 1000);
    await Promise.all(Array.from({ length: WRITERS }, (_, id) => writer(id)));
    const elapsedMs = performance.now() - started;
    clearTimeout(timer);
    // Let every subscriber reach the last append, then end them.
    const last = await db.head();
    while (subscriptions.some((s) => s.position < last)) await new Promise((resolve) => setTimeout(resolve, 5));
    await Promise.all(subscriptions.map((s) => s.close()));
    await Promise.all(readers);
    return { subscribers, appends, appendsPerS: (appends * 1000) / elapsedMs, deliveries: lagsMs.length, ...latency(lagsMs) };
  } finally {
    await db.close();
  }
}

// ------------------------------------------------------------------------------------- 3. stalled subscriber

async function stalled(root: string) {
  const db = await FactStore.open(path.join(root, 'stalled'));
  try {
    await db.append(makeEvent(0));
    const subscription = db.subscribe('all', { from: 'start' });
    const first = await subscription.next();
    collectGarbage();
    const before = { rssMB: rssMB(), heapUsedMB: process.memoryUsage().heapUsed / 2 ** 20 };
    const started = performance.now();
    await load(db, EVENTS);
    const appendMs = performance.now() - started;
    collectGarbage();
    const after = { rssMB: rssMB(), heapUsedMB: process.memoryUsage().heapUsed / 2 ** 20 };
    // Resume: every event 2..EVENTS+1 in order.
    let expected = 2;
    let ok = !first.done && first.value.position === 1;
    const total = EVENTS + 1;
    while (expected <= total) {
      const step = await subscription.next();
      if (step.done || step.value.position !== expected) {
        ok = false;
        break;
      }
      expected++;
    }
    await subscription.close();
    return { before, after, appendMs, received: expected - 1, ok };
  } finally {
    await db.close();
  }
}

// ------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const loadAtStart = os.loadavg()[0]!;
  const root = freshDir('subscribe');
  try {
    const caught = await catchUp(root);
    const lag1 = await liveLag(root, 1);
    log(`lag 1 subscriber: p50 ${fmtMs(lag1.p50Ms)} p99 ${fmtMs(lag1.p99Ms)} ms`);
    const lag16 = await liveLag(root, 16);
    log(`lag 16 subscribers: p50 ${fmtMs(lag16.p50Ms)} p99 ${fmtMs(lag16.p99Ms)} ms`);
    const stall = await stalled(root);
    const targets = judge([
      {
        name: `subscribe('all') catch-up ≥ ${fmtInt(CATCH_UP_EVENTS_PER_S_TARGET)} events/s (as a ratio to the target)`,
        measured: caught.allEventsPerS / CATCH_UP_EVENTS_PER_S_TARGET,
        unit: 'ratio',
        target: 1,
        kind: 'min',
      },
      { name: `live lag p99 ≤ ${LAG_P99_MS_TARGET} ms with 16 subscribers`, measured: lag16.p99Ms, unit: 'ms', target: LAG_P99_MS_TARGET, kind: 'max' },
    ]);
    const lagRow = (l: typeof lag1) => `| ${l.subscribers} | ${fmtMs(l.p50Ms)} | ${fmtMs(l.p99Ms)} | ${fmtInt(l.appendsPerS)} | ${fmtInt(l.deliveries)} |`;
    const lines = [
      `Subscribe bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${machine().cpu.model} × ${machine().cpu.count}; ` +
        `classic-level defaults; ${fmtInt(EVENTS)} events; 1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end.`,
      '',
      `| catch-up (median of ${ROUNDS}) | events | events/s |`,
      '| --- | ---: | ---: |',
      `| read('all') full scan (baseline) | ${fmtInt(EVENTS)} | ${fmtInt(caught.scanEventsPerS)} |`,
      `| subscribe('all') history | ${fmtInt(EVENTS)} | ${fmtInt(caught.allEventsPerS)} |`,
      `| subscribe({ tag: '${HOT_TAG}' }) history | ${fmtInt(caught.tagEvents)} | ${fmtInt(caught.tagEventsPerS)} |`,
      '',
      `subscribe('all') / full scan: ${fmtRatio(caught.ratioToScan)}; every event delivered: ${caught.complete ? 'yes' : 'NO'}. ` +
        `Load: ${fmtInt(caught.loadEventsPerS)} events/s.`,
      '',
      `| live, ${WRITERS} writers × await append(1), ${LAG_SECONDS} s: subscribers | lag p50 ms | lag p99 ms | appends/s | deliveries |`,
      '| ---: | ---: | ---: | ---: | ---: |',
      lagRow(lag1),
      lagRow(lag16),
      '',
      `Stalled subscriber (took 1 event, then ${fmtInt(EVENTS)} events appended in bulk; bound ≈ 2 × SUBSCRIPTION_BATCH_EVENTS = ` +
        `${fmtInt(2 * SUBSCRIPTION_BATCH_EVENTS)} events held): RSS ${fmtMB(stall.before.rssMB)} → ${fmtMB(stall.after.rssMB)} MB, ` +
        `heap used ${fmtMB(stall.before.heapUsedMB)} → ${fmtMB(stall.after.heapUsedMB)} MB; resumed and received ${fmtInt(stall.received)} events in order: ` +
        `${stall.ok ? 'ok' : 'FAILED'}.`,
      '',
      ...targetTable(targets),
    ];
    const file = writeResults('subscribe', {
      machine: machine(),
      events: EVENTS,
      rounds: ROUNDS,
      subscriptionBatchEvents: SUBSCRIPTION_BATCH_EVENTS,
      catchUp: caught,
      liveLag: [lag1, lag16],
      stalled: stall,
      targets,
    });
    console.log(lines.join('\n'));
    log(`results: ${file}`);
  } finally {
    removeDir(root);
  }
}

await main();
