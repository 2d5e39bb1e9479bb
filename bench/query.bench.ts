/**
 * DCB decisions and tag queries (`npm run bench:query`).
 *
 * 1. The dcb.events "course subscription" workload. Every case starts from a fresh store holding
 *    COURSES CourseDefined {courseId, capacity} [course:C] and STUDENTS StudentRegistered
 *    {studentId} [student:S] events, then runs BENCH_DECISIONS decisions on (student, course)
 *    pairs drawn from a seeded PRNG (the same sequence for every case). A decision reads its
 *    decision model with one query
 *      Query.items({ types: [CourseDefined, CourseCapacityChanged, StudentSubscribedToCourse], tags: [course:C] },
 *                  { types: [StudentSubscribedToCourse], tags: [student:S] })
 *    notes the last position seen, decides (course exists and has capacity, not yet subscribed,
 *    student below STUDENT_LIMIT subscriptions) and appends StudentSubscribedToCourse
 *    [course:C, student:S] with { failIfEventsMatch: query, after: lastPosition }; a
 *    FACT_CONCURRENCY conflict re-runs the decision (counted as a retry).
 *    factstore: defaults (classic-level, WAL sync 'always'); sequential, and CLIENTS concurrent
 *    clients sharing the decision sequence.
 *    SQLite baseline (better-sqlite3, WAL, synchronous=FULL): events(position INTEGER PRIMARY KEY,
 *    id, type, data BLOB = cbor-x of the event object) with an index on (type, position), and
 *    tags(tag, event_position) as a WITHOUT ROWID B-tree keyed (tag, event_position); one
 *    BEGIN IMMEDIATE transaction per decision doing the same read (one SELECT, a UNION of the two
 *    items through the tags index), decision and insert. better-sqlite3 is synchronous, so
 *    concurrent clients on one connection would run exactly like the sequential case: the
 *    concurrent factstore case is compared with SQLite's sequential rate.
 * 2. Tag-query latency: read({ query: Query.tags(tag) }) of random tags with exactly 10 matches
 *    each (spread over the whole store), on a store of BENCH_TAG_SMALL (100k) and one of
 *    BENCH_TAG_LARGE (1M) events, alternating between the two stores in every round.
 *
 * Rounds are interleaved (SQLite first); medians over BENCH_ROUNDS rounds; ratios paired per
 * round. Results: bench/results/query.json and a Markdown table on stdout. A missed target is
 * printed, never turned into a failing exit code.
 *
 * Knobs: BENCH_ROUNDS (3), BENCH_DECISIONS (2000 per case per round), BENCH_TAG_SMALL (100000),
 * BENCH_TAG_LARGE (1000000), BENCH_TAG_QUERIES (2000 per store per round), BENCH_TAGS=0 skips part 2,
 * BENCH_CASES=id,id runs only those decision cases (and SQLite's).
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { decode, encode } from 'cbor-x';
import { FactStore, Query, isFactError } from '../src/index.js';
import type { EventInput } from '../src/index.js';
import {
  collectGarbage,
  diskBytes,
  fmtInt,
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
  targetTable,
  writeResults,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 2000);
const STUDENTS = 1000;
const COURSES = 200;
const STUDENT_LIMIT = 5;
const CLIENTS = 16;
const MAX_ATTEMPTS = 50;
const TAG_SMALL = Number(process.env.BENCH_TAG_SMALL ?? 100_000);
const TAG_LARGE = Number(process.env.BENCH_TAG_LARGE ?? 1_000_000);
const TAG_QUERIES = Number(process.env.BENCH_TAG_QUERIES ?? 2000);
const TAG_MATCHES = 10;
const LOAD_BATCH_EVENTS = 1000;
const WITH_TAGS = process.env.BENCH_TAGS !== '0';

const DECISION_TYPES = ['CourseDefined', 'CourseCapacityChanged', 'StudentSubscribedToCourse'];
const courseId = (index: number) => `c${index}`;
const studentId = (index: number) => `s${index}`;
const capacityOf = (course: number) => 5 + ((course * 7) % 26);

/** The events every decision case starts from. */
function initialEvents(): EventInput[] {
  return [
    ...Array.from({ length: COURSES }, (_, course) => ({
      type: 'CourseDefined',
      data: { courseId: courseId(course), capacity: capacityOf(course) },
      tags: [`course:${courseId(course)}`],
    })),
    ...Array.from({ length: STUDENTS }, (_, student) => ({
      type: 'StudentRegistered',
      data: { studentId: studentId(student), name: `Student ${student}` },
      tags: [`student:${studentId(student)}`],
    })),
  ];
}

/** The (student, course) pairs decided, the same for every case. */
const decisionPairs: { student: string; course: string }[] = (() => {
  const random = prng(7);
  return Array.from({ length: DECISIONS }, () => ({ student: studentId(Math.floor(random() * STUDENTS)), course: courseId(Math.floor(random() * COURSES)) }));
})();

// ------------------------------------------------------------------------------------- the decision

interface ModelEvent {
  position: number;
  type: string;
  data: unknown;
  tags: readonly string[];
}

type Verdict = 'subscribe' | 'no-course' | 'full' | 'already' | 'limit';

/** The decision model of (student, course) from the events the query returned, and the verdict. */
function decide(events: readonly ModelEvent[], student: string, course: string): { verdict: Verdict; lastPosition: number } {
  const courseTag = `course:${course}`;
  const studentTag = `student:${student}`;
  let capacity = -1;
  let courseSubscriptions = 0;
  let studentSubscriptions = 0;
  let already = false;
  let lastPosition = 0;
  for (const event of events) {
    lastPosition = Math.max(lastPosition, event.position);
    if (event.type === 'CourseDefined' || event.type === 'CourseCapacityChanged') {
      capacity = (event.data as { capacity: number }).capacity;
    } else if (event.type === 'StudentSubscribedToCourse') {
      const forCourse = event.tags.includes(courseTag);
      const forStudent = event.tags.includes(studentTag);
      if (forCourse) courseSubscriptions++;
      if (forStudent) studentSubscriptions++;
      if (forCourse && forStudent) already = true;
    }
  }
  const verdict: Verdict =
    capacity < 0 ? 'no-course' : already ? 'already' : courseSubscriptions >= capacity ? 'full' : studentSubscriptions >= STUDENT_LIMIT ? 'limit' : 'subscribe';
  return { verdict, lastPosition };
}

const subscription = (student: string, course: string): EventInput => ({
  type: 'StudentSubscribedToCourse',
  data: { studentId: student, courseId: course },
  tags: [`course:${course}`, `student:${student}`],
});

interface Outcomes {
  decisions: number;
  subscribed: number;
  rejected: number;
  /** Conditional appends that failed with FACT_CONCURRENCY and were decided again. */
  conflicts: number;
}

interface DecisionSample extends Outcomes {
  elapsedMs: number;
  latenciesMs: number[];
}

// ------------------------------------------------------------------------------------- factstore

async function factstoreDecision(db: FactStore, student: string, course: string, outcomes: Outcomes): Promise<void> {
  const query = Query.items({ types: DECISION_TYPES, tags: [`course:${course}`] }, { types: ['StudentSubscribedToCourse'], tags: [`student:${student}`] });
  for (let attempt = 1; ; attempt++) {
    const events = await db.read({ query }).toArray();
    const { verdict, lastPosition } = decide(events, student, course);
    if (verdict !== 'subscribe') {
      outcomes.rejected++;
      return;
    }
    try {
      await db.append(subscription(student, course), { failIfEventsMatch: query, after: lastPosition });
      outcomes.subscribed++;
      return;
    } catch (error) {
      if (!isFactError(error) || error.code !== 'FACT_CONCURRENCY' || attempt >= MAX_ATTEMPTS) throw error;
      outcomes.conflicts++;
    }
  }
}

/** The same decision with db.decide(): a synchronous decider, run in the writer's turn. */
async function factstoreDecide(db: FactStore, student: string, course: string, outcomes: Outcomes): Promise<void> {
  const query = Query.items({ types: DECISION_TYPES, tags: [`course:${course}`] }, { types: ['StudentSubscribedToCourse'], tags: [`student:${student}`] });
  let verdict: Verdict = 'subscribe';
  const { attempts } = await db.decide(query, (events) => {
    verdict = decide(events, student, course).verdict;
    return verdict === 'subscribe' ? subscription(student, course) : null;
  });
  outcomes.conflicts += attempts - 1;
  if (verdict === 'subscribe') outcomes.subscribed++;
  else outcomes.rejected++;
}

async function runFactstoreDecisions(dir: string, clients: number, decision = factstoreDecision): Promise<DecisionSample> {
  const db = await FactStore.open(path.join(dir, 'db'), { wal: { sync: 'always' } });
  try {
    await db.append(initialEvents());
    const outcomes: Outcomes = { decisions: 0, subscribed: 0, rejected: 0, conflicts: 0 };
    const latenciesMs: number[] = [];
    let next = 0;
    const start = performance.now();
    const client = async () => {
      while (next < decisionPairs.length) {
        const { student, course } = decisionPairs[next++]!;
        const before = performance.now();
        await decision(db, student, course, outcomes);
        latenciesMs.push(performance.now() - before);
        outcomes.decisions++;
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    return { ...outcomes, elapsedMs: performance.now() - start, latenciesMs };
  } finally {
    await db.close();
  }
}

// ------------------------------------------------------------------------------------- SQLite

function openSqliteDcb(file: string) {
  const db = openSqlite(file);
  db.exec(`
    CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL);
    CREATE INDEX events_by_type ON events (type, position);
    CREATE TABLE tags (tag TEXT NOT NULL, event_position INTEGER NOT NULL, PRIMARY KEY (tag, event_position)) WITHOUT ROWID;
  `);
  const insertEvent = db.prepare('INSERT INTO events (id, type, data) VALUES (?, ?, ?)');
  const insertTag = db.prepare('INSERT INTO tags (tag, event_position) VALUES (?, ?)');
  const typeList = DECISION_TYPES.map((type) => `'${type}'`).join(', ');
  const selectModel = db.prepare(`
    SELECT e.position, e.data FROM events e WHERE e.position IN (
      SELECT t.event_position FROM tags t JOIN events x ON x.position = t.event_position WHERE t.tag = @course AND x.type IN (${typeList})
      UNION
      SELECT t.event_position FROM tags t JOIN events x ON x.position = t.event_position WHERE t.tag = @student AND x.type = 'StudentSubscribedToCourse'
    ) ORDER BY e.position`);
  const appendEvents = (events: readonly EventInput[]) => {
    for (const event of events) {
      const position = Number(insertEvent.run(randomUUID(), event.type, encode(event)).lastInsertRowid);
      for (const tag of event.tags ?? []) insertTag.run(tag, position);
    }
  };
  const append = db.transaction(appendEvents);
  const decision = db.transaction((student: string, course: string): Verdict => {
    const rows = selectModel.all({ course: `course:${course}`, student: `student:${student}` }) as { position: number; data: Uint8Array }[];
    const events = rows.map((row) => {
      const event = decode(row.data) as EventInput;
      return { position: row.position, type: event.type, data: event.data, tags: event.tags ?? [] };
    });
    const { verdict } = decide(events, student, course);
    if (verdict === 'subscribe') appendEvents([subscription(student, course)]);
    return verdict;
  });
  return { db, append, decide: (student: string, course: string) => decision.immediate(student, course), plan: selectModel };
}

function runSqliteDecisions(dir: string): DecisionSample {
  const store = openSqliteDcb(path.join(dir, 'dcb.sqlite'));
  try {
    store.append(initialEvents());
    const outcomes: Outcomes = { decisions: 0, subscribed: 0, rejected: 0, conflicts: 0 };
    const latenciesMs: number[] = [];
    const start = performance.now();
    let now = start;
    for (const { student, course } of decisionPairs) {
      if (store.decide(student, course) === 'subscribe') outcomes.subscribed++;
      else outcomes.rejected++;
      outcomes.decisions++;
      const after = performance.now();
      latenciesMs.push(after - now);
      now = after;
    }
    return { ...outcomes, elapsedMs: now - start, latenciesMs };
  } finally {
    store.db.close();
  }
}

/** The SQLite query plan of the decision read (printed once, so a full scan would show). */
function sqlitePlan(): string[] {
  const dir = freshDir('querybench-plan');
  try {
    const store = openSqliteDcb(path.join(dir, 'plan.sqlite'));
    const rows = store.db.prepare(`EXPLAIN QUERY PLAN ${store.plan.source}`).all({ course: 'course:c1', student: 'student:s1' }) as { detail: string }[];
    store.db.close();
    return rows.map((row) => row.detail);
  } finally {
    removeDir(dir);
  }
}

// ------------------------------------------------------------------------------------- decision cases

interface CaseDef {
  id: string;
  system: 'SQLite' | 'factstore' | 'disk';
  label: string;
  run: (dir: string) => Promise<DecisionSample>;
}

const CASES: CaseDef[] = [
  { id: 'sqlite-sequential', system: 'SQLite', label: 'sequential decisions (BEGIN IMMEDIATE … COMMIT each)', run: (dir) => Promise.resolve(runSqliteDecisions(dir)) },
  { id: 'factstore-sequential', system: 'factstore', label: 'sequential decisions (query read + conditional append)', run: (dir) => runFactstoreDecisions(dir, 1) },
  { id: `factstore-concurrent-${CLIENTS}`, system: 'factstore', label: `${CLIENTS} concurrent clients (query read + conditional append)`, run: (dir) => runFactstoreDecisions(dir, CLIENTS) },
  { id: 'decide-sequential', system: 'factstore', label: 'sequential decisions, db.decide()', run: (dir) => runFactstoreDecisions(dir, 1, factstoreDecide) },
  { id: `decide-concurrent-${CLIENTS}`, system: 'factstore', label: `${CLIENTS} concurrent clients, db.decide()`, run: (dir) => runFactstoreDecisions(dir, CLIENTS, factstoreDecide) },
  { id: 'disk-fdatasync', system: 'disk', label: 'ceiling: one 4 KiB in-place write + fdatasync per decision, nothing else', run: (dir) => Promise.resolve(runDiskCeiling(dir)) },
];

/** What this disk allows sequentially: a write into a preallocated, synced file and its fdatasync. */
function runDiskCeiling(dir: string): DecisionSample {
  const file = path.join(dir, 'ceiling.bin');
  const block = Buffer.alloc(4096, 1);
  const fd = fs.openSync(file, 'w+');
  try {
    fs.writeSync(fd, Buffer.alloc(DECISIONS * block.length));
    fs.fsyncSync(fd);
    const latenciesMs: number[] = [];
    const start = performance.now();
    let now = start;
    for (let index = 0; index < DECISIONS; index++) {
      fs.writeSync(fd, block, 0, block.length, index * block.length);
      fs.fdatasyncSync(fd);
      const after = performance.now();
      latenciesMs.push(after - now);
      now = after;
    }
    return { decisions: DECISIONS, subscribed: 0, rejected: 0, conflicts: 0, elapsedMs: now - start, latenciesMs };
  } finally {
    fs.closeSync(fd);
  }
}

interface RoundResult extends Outcomes {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

async function runCase(def: CaseDef): Promise<RoundResult> {
  const dir = freshDir('querybench');
  try {
    const sample = await def.run(dir);
    const { decisions, subscribed, rejected, conflicts } = sample;
    return { decisions, subscribed, rejected, conflicts, opsPerSec: decisions / (sample.elapsedMs / 1000), ...latency(sample.latenciesMs) };
  } finally {
    removeDir(dir);
  }
}

// ------------------------------------------------------------------------------------- tag queries

/** Event `index` of the tag-query stores: its `k:` tag has exactly TAG_MATCHES events, spread over the store. */
function tagEvent(index: number, groups: number, prefix: string): EventInput {
  return {
    type: index % 2 === 0 ? 'ItemAdded' : 'ItemRemoved',
    data: { sku: `SKU-${(index * 7919) % 100000}`, quantity: 1 + (index % 7), priceCents: 199 + ((index * 31) % 10000) },
    tags: [`${prefix}${index % groups}`, `customer:u-${index % 977}`],
  };
}

/**
 * Loads `events` events: the first TAG_SMALL carry tags a:0 … a:(TAG_SMALL/10 − 1), the rest
 * b:0 …, so every k-tag of both stores matches exactly TAG_MATCHES events.
 */
async function loadTagStore(db: FactStore, events: number): Promise<string[]> {
  const smallGroups = TAG_SMALL / TAG_MATCHES;
  const largeGroups = (events - TAG_SMALL) / TAG_MATCHES;
  for (let first = 0; first < events; first += LOAD_BATCH_EVENTS) {
    const batch: EventInput[] = [];
    for (let index = first; index < Math.min(events, first + LOAD_BATCH_EVENTS); index++) {
      batch.push(index < TAG_SMALL ? tagEvent(index, smallGroups, 'a:') : tagEvent(index - TAG_SMALL, largeGroups, 'b:'));
    }
    await db.append(batch);
  }
  return [
    ...Array.from({ length: smallGroups }, (_, group) => `a:${group}`),
    ...Array.from({ length: largeGroups }, (_, group) => `b:${group}`),
  ];
}

interface TagRound {
  small: { p50Ms: number; p99Ms: number };
  large: { p50Ms: number; p99Ms: number };
}

async function measureTagQueries(db: FactStore, tags: readonly string[], random: () => number): Promise<{ p50Ms: number; p99Ms: number }> {
  const latenciesMs: number[] = [];
  for (let query = 0; query < TAG_QUERIES; query++) {
    const tag = tags[Math.floor(random() * tags.length)]!;
    const start = performance.now();
    const events = await db.read({ query: Query.tags(tag) }).toArray();
    latenciesMs.push(performance.now() - start);
    if (events.length !== TAG_MATCHES) throw new Error(`tag ${tag} matched ${events.length} events, expected ${TAG_MATCHES}`);
  }
  return latency(latenciesMs);
}

async function runTagPart() {
  if (TAG_SMALL % (TAG_MATCHES * LOAD_BATCH_EVENTS) !== 0 || TAG_LARGE <= TAG_SMALL || (TAG_LARGE - TAG_SMALL) % TAG_MATCHES !== 0) {
    throw new Error('BENCH_TAG_SMALL must be a multiple of 10000 and BENCH_TAG_LARGE a larger multiple of 10');
  }
  const smallDir = freshDir('querybench-small');
  const largeDir = freshDir('querybench-large');
  try {
    const small = await FactStore.open(path.join(smallDir, 'db'));
    const large = await FactStore.open(path.join(largeDir, 'db'));
    let started = performance.now();
    const smallTags = await loadTagStore(small, TAG_SMALL);
    const smallLoadSec = (performance.now() - started) / 1000;
    log(`tag store: ${fmtInt(TAG_SMALL)} events loaded in ${smallLoadSec.toFixed(1)} s`);
    started = performance.now();
    const largeTags = await loadTagStore(large, TAG_LARGE);
    const largeLoadSec = (performance.now() - started) / 1000;
    log(`tag store: ${fmtInt(TAG_LARGE)} events loaded in ${largeLoadSec.toFixed(1)} s`);
    // Both stores reopened, as an application would find them after a restart.
    await small.close();
    await large.close();
    const smallDb = await FactStore.open(path.join(smallDir, 'db'));
    const largeDb = await FactStore.open(path.join(largeDir, 'db'));
    const random = prng(11);
    await measureTagQueries(smallDb, smallTags, random);
    await measureTagQueries(largeDb, largeTags, random);
    const rounds: TagRound[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      collectGarbage();
      const smallResult = await measureTagQueries(smallDb, smallTags, random);
      const largeResult = await measureTagQueries(largeDb, largeTags, random);
      rounds.push({ small: smallResult, large: largeResult });
      log(
        `round ${round}/${ROUNDS} tag query: ${fmtInt(TAG_SMALL)} p50 ${fmtMs(smallResult.p50Ms)} ms p99 ${fmtMs(smallResult.p99Ms)} ms; ` +
          `${fmtInt(TAG_LARGE)} p50 ${fmtMs(largeResult.p50Ms)} ms p99 ${fmtMs(largeResult.p99Ms)} ms`,
      );
    }
    await smallDb.close();
    await largeDb.close();
    return {
      smallEvents: TAG_SMALL,
      largeEvents: TAG_LARGE,
      matchesPerTag: TAG_MATCHES,
      queriesPerRound: TAG_QUERIES,
      loadEventsPerSec: { small: TAG_SMALL / smallLoadSec, large: TAG_LARGE / largeLoadSec },
      diskBytesPerEvent: { small: diskBytes(smallDir) / TAG_SMALL, large: diskBytes(largeDir) / TAG_LARGE },
      rounds,
    };
  } finally {
    removeDir(smallDir);
    removeDir(largeDir);
  }
}

// ------------------------------------------------------------------------------------- report

async function main(): Promise<void> {
  const started = performance.now();
  const loadAtStart = os.loadavg()[0]!;
  const plan = sqlitePlan();
  log(`SQLite decision read plan: ${plan.join(' | ')}`);
  const perRound = new Map<string, RoundResult[]>(CASES.map((def) => [def.id, []]));
  // BENCH_CASES picks cases (SQLite always runs: the ratios need it), e.g. for a profile.
  const picked = process.env.BENCH_CASES?.split(',');
  const selected = CASES.filter((def) => picked === undefined || def.id === 'sqlite-sequential' || picked.includes(def.id));

  // Warm-up; results discarded.
  for (const def of selected) await runCase(def);

  for (let round = 1; round <= ROUNDS; round++) {
    for (const def of selected) {
      const result = await runCase(def);
      perRound.get(def.id)!.push(result);
      log(
        `round ${round}/${ROUNDS} ${def.id.padEnd(24)} ${fmtInt(result.opsPerSec).padStart(7)} ops/s  p50 ${fmtMs(result.p50Ms)} ms  p99 ${fmtMs(result.p99Ms)} ms  ` +
          `subscribed ${result.subscribed} rejected ${result.rejected} conflicts ${result.conflicts}`,
      );
    }
  }
  const sqliteRounds = perRound.get('sqlite-sequential')!;
  const cases = selected.map((def) => {
    const rounds = perRound.get(def.id)!;
    return {
      id: def.id,
      system: def.system,
      label: def.label,
      opsPerSec: median(rounds.map((r) => r.opsPerSec)),
      p50Ms: median(rounds.map((r) => r.p50Ms)),
      p99Ms: median(rounds.map((r) => r.p99Ms)),
      subscribed: median(rounds.map((r) => r.subscribed)),
      rejected: median(rounds.map((r) => r.rejected)),
      conflicts: median(rounds.map((r) => r.conflicts)),
      ratioToSqlite: pairedRatio(
        rounds.map((r) => r.opsPerSec),
        sqliteRounds.map((r) => r.opsPerSec),
      ),
      rounds,
    };
  });

  const tags = WITH_TAGS ? await runTagPart() : null;

  const targets = judge([
    {
      name: 'sequential decisions (db.decide) ≥ 1.5× SQLite',
      measured: cases.find((c) => c.id === 'decide-sequential')?.ratioToSqlite ?? Number.NaN,
      unit: 'ratio',
      target: 1.5,
      kind: 'min',
    },
    {
      name: `${CLIENTS} concurrent clients (db.decide) ≥ 3× SQLite's one connection`,
      measured: cases.find((c) => c.id === `decide-concurrent-${CLIENTS}`)?.ratioToSqlite ?? Number.NaN,
      unit: 'ratio',
      target: 3,
      kind: 'min',
    },
    ...(tags
      ? ([
          {
            name: `${TAG_MATCHES}-match tag query at ${fmtInt(tags.largeEvents)} events, p50 ≤ 0.2 ms`,
            measured: median(tags.rounds.map((r) => r.large.p50Ms)),
            unit: 'ms',
            target: 0.2,
            kind: 'max',
          },
          {
            name: `${TAG_MATCHES}-match tag query at ${fmtInt(tags.largeEvents)} events, p99 ≤ 2 ms`,
            measured: median(tags.rounds.map((r) => r.large.p99Ms)),
            unit: 'ms',
            target: 2,
            kind: 'max',
          },
          {
            name: `tag query p50 flat: ${fmtInt(tags.largeEvents)} / ${fmtInt(tags.smallEvents)} events ≤ 1.5×`,
            measured: pairedRatio(
              tags.rounds.map((r) => r.large.p50Ms),
              tags.rounds.map((r) => r.small.p50Ms),
            ),
            unit: 'ratio',
            target: 1.5,
            kind: 'max',
          },
        ] as const)
      : []),
  ]);

  const lines = [
    `Query bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${machine().cpu.model} × ${machine().cpu.count}; ` +
      `DCB course subscription, ${fmtInt(DECISIONS)} decisions per case on ${STUDENTS} students × ${COURSES} courses (limit ${STUDENT_LIMIT}); ` +
      `factstore (classic-level, WAL sync 'always') vs better-sqlite3 (WAL, synchronous=FULL, one BEGIN IMMEDIATE transaction per decision); ` +
      `median of ${ROUNDS} rounds; 1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end; × SQLite = median of per-round ratios to SQLite's sequential rate; latency per decision incl. retries.`,
    '',
    '| case | system | decisions/s | p50 ms | p99 ms | subscribed / rejected | conflicts (retried; db.decide: asynchronous re-decisions) | × SQLite |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...cases.map(
      (c) =>
        `| ${c.label} | ${c.system} | ${fmtInt(c.opsPerSec)} | ${fmtMs(c.p50Ms)} | ${fmtMs(c.p99Ms)} | ${c.subscribed} / ${c.rejected} | ${c.conflicts} | ${fmtRatio(c.ratioToSqlite)} |`,
    ),
  ];
  if (tags) {
    const med = (values: number[]) => median(values);
    const ratio = (pick: (r: TagRound) => number, ref: (r: TagRound) => number) =>
      pairedRatio(
        tags.rounds.map((r) => pick(r)),
        tags.rounds.map((r) => ref(r)),
      );
    lines.push(
      '',
      `| tag query (Query.tags, ${TAG_MATCHES} matches, random tag) | p50 ms | p99 ms |`,
      '| --- | ---: | ---: |',
      `| store of ${fmtInt(tags.smallEvents)} events | ${fmtMs(med(tags.rounds.map((r) => r.small.p50Ms)))} | ${fmtMs(med(tags.rounds.map((r) => r.small.p99Ms)))} |`,
      `| store of ${fmtInt(tags.largeEvents)} events | ${fmtMs(med(tags.rounds.map((r) => r.large.p50Ms)))} | ${fmtMs(med(tags.rounds.map((r) => r.large.p99Ms)))} |`,
      `| ratio ${fmtInt(tags.largeEvents)} / ${fmtInt(tags.smallEvents)} | ${fmtRatio(ratio((r) => r.large.p50Ms, (r) => r.small.p50Ms))} | ${fmtRatio(ratio((r) => r.large.p99Ms, (r) => r.small.p99Ms))} |`,
    );
  }
  lines.push('', ...targetTable(targets));
  console.log(lines.join('\n'));

  const file = writeResults('query', {
    ...machine(),
    loadAverageAtStart: loadAtStart,
    config: {
      rounds: ROUNDS,
      decisions: DECISIONS,
      students: STUDENTS,
      courses: COURSES,
      studentLimit: STUDENT_LIMIT,
      clients: CLIENTS,
      factstore: "FactStore.open(dir, { wal: { sync: 'always' } }) — classic-level on disk",
      sqlite: 'better-sqlite3, journal_mode=WAL, synchronous=FULL, BEGIN IMMEDIATE per decision; events + tags (WITHOUT ROWID, PK (tag, event_position)) + index events(type, position)',
      sqliteDecisionPlan: plan,
      statistics: 'simple-statistics (quantileSorted, median)',
      ratioMethod: "median over rounds of the ratio to the same round's reference",
    },
    cases,
    tags,
    targets,
    durationSec: (performance.now() - started) / 1000,
  });
  log(`wrote ${file} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
