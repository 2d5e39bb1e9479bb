/**
 * `npm start`: the factstore demo on an embedded database in data/demo.
 * Part 1 runs a small course-subscription domain; part 2 keeps a projection (a read model in a
 * Map) with a durable consumer: rebuilt from the history, then following live appends; part 3
 * shows the write-ahead log surviving a SIGKILL of the process that was appending to it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FactStore, isFactError, Query, Wal } from '../src/index.js';

const DATABASE_PATH = 'data/demo';
const CRASH_WAL_PATH = 'data/demo-wal';

async function courseSubscriptions(): Promise<void> {
  console.log(`== 1. an event store in ${DATABASE_PATH}`);
  await using db = await FactStore.open(DATABASE_PATH);
  console.log(`opened; ${await db.head()} events already stored`);

  // Caller-chosen ids make the setup idempotent: on a second run these appends are retries
  // that return the original result and write nothing.
  const course = await db.appendStream('course-c1', { id: 'demo-course-c1', type: 'CourseDefined', data: { title: 'Event sourcing 101', capacity: 2 }, tags: ['course:c1'] });
  console.log(`course-c1 defined at position ${course.position}`);
  for (const student of ['s1', 's2', 's3']) {
    await db.appendStream(`student-${student}`, { id: `demo-student-${student}`, type: 'StudentRegistered', data: { name: student.toUpperCase() }, tags: [`student:${student}`] });
  }

  // A subscription decision: read the course stream, decide, append with the version we saw.
  for (const student of ['s1', 's2', 's3']) {
    const version = await db.streamVersion('course-c1');
    const events = await db.read({ stream: 'course-c1' }).toArray();
    const capacity = (events.find((event) => event.type === 'CourseDefined')?.data as { capacity: number }).capacity;
    const subscribed = events.filter((event) => event.type === 'StudentSubscribed').map((event) => (event.data as { student: string }).student);
    if (subscribed.includes(student)) {
      console.log(`${student} is already subscribed`);
      continue;
    }
    if (subscribed.length >= capacity) {
      console.log(`${student} not subscribed: course-c1 is full (${subscribed.length}/${capacity})`);
      continue;
    }
    const result = await db.appendStream('course-c1', { type: 'StudentSubscribed', data: { student }, tags: ['course:c1', `student:${student}`] }, { expect: version });
    console.log(`${student} subscribed: position ${result.position}, course-c1 version ${result.streamPosition}`);
  }

  // Optimistic concurrency: a writer that decided on an old version is refused.
  try {
    await db.appendStream('course-c1', { type: 'CourseCapacityChanged', data: { capacity: 10 } }, { expect: 0 });
  } catch (error) {
    if (!isFactError(error, 'FACT_CONCURRENCY')) throw error;
    console.log(`stale writer refused: ${error.code} (${error.message})`);
  }

  console.log('course-c1 stream:');
  for await (const event of db.read({ stream: 'course-c1' })) {
    console.log(`  #${event.streamPosition} @${event.position} ${event.type} ${JSON.stringify(event.data)}`);
  }
  const registrations = await db.read({ type: 'StudentRegistered' }).toArray();
  console.log(`StudentRegistered events: ${registrations.map((event) => (event.data as { name: string }).name).join(', ')}`);
  console.log(`streams in category 'student': ${(await db.streams({ category: 'student' }).toArray()).join(', ')}`);
  const latest = await db.read('all', { direction: 'backward', limit: 1 }).toArray();
  console.log(`head ${await db.head()}; newest event: ${latest[0]?.type ?? 'none'}`);
  // A DCB decision: a username is unique across the store, with no stream to lock. Five
  // concurrent claims read the same state; the condition lets exactly one of them commit.
  const username = `ada-${await db.head()}`;
  const claimed = Query.tags(`username:${username}`);
  const seen = await db.read({ query: claimed }).toArray();
  const after = seen.at(-1)?.position ?? (await db.head());
  const claims = await Promise.allSettled(
    ['u1', 'u2', 'u3', 'u4', 'u5'].map((user) =>
      db.append({ type: 'UsernameClaimed', data: { user, username }, tags: [`username:${username}`, `user:${user}`] }, { failIfEventsMatch: claimed, after }),
    ),
  );
  const winners = claims.filter((claim) => claim.status === 'fulfilled').length;
  console.log(`5 concurrent claims of username '${username}': ${winners} won, ${claims.length - winners} refused with FACT_CONCURRENCY`);
  const owner = await db.read({ query: claimed }, { direction: 'backward', limit: 1 }).toArray();
  console.log(`owner: ${(owner[0]?.data as { user: string }).user}`);

  const report = await db.verify();
  console.log(`verify: ${report.ok ? 'ok' : report.problems.join('; ')} (${report.events} events, ${report.indexEntries} index entries)`);
}

async function projection(): Promise<void> {
  console.log(`\n== 2. a projection kept by a durable consumer (${DATABASE_PATH})`);
  await using db = await FactStore.open(DATABASE_PATH);
  // Seats taken per course, in a Map: rebuilt from the beginning at every start (reset to 0).
  const seats = new Map<string, number>();
  if ((await db.consumers()).some((info) => info.name === 'demo-seats')) await db.resetConsumer('demo-seats', 0);
  const consumer = db.consumer('demo-seats', { type: 'StudentSubscribed' });
  let live = false;
  void consumer.caughtUp.then(() => (live = true));
  const following = (async () => {
    for await (const event of consumer) {
      const course = event.tags.find((tag) => tag.startsWith('course:')) ?? 'course:?';
      seats.set(course, (seats.get(course) ?? 0) + 1);
      if (live) console.log(`  live: position ${event.position} ${event.type} → ${course} has ${seats.get(course)} seats taken`);
    }
  })();
  const caughtUpAt = await consumer.caughtUp;
  console.log(`rebuilt from the history up to position ${caughtUpAt}: ${JSON.stringify(Object.fromEntries(seats))}`);
  const course = `course:live-${caughtUpAt}`;
  for (const student of ['s1', 's2', 's3']) {
    await db.append({ type: 'StudentSubscribed', data: { student }, tags: [course, `student:${student}`] });
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await consumer.close();
  await following;
  const [info] = (await db.consumers()).filter((consumerInfo) => consumerInfo.name === 'demo-seats');
  console.log(`consumer demo-seats acknowledged position ${info?.position} (lag ${info?.lag}); a restart resumes right after it`);
}

async function walCrash(): Promise<void> {
  console.log(`\n== 3. the write-ahead log survives kill -9 (${CRASH_WAL_PATH})`);
  const before = await Wal.open(CRASH_WAL_PATH);
  const lastBefore = before.lastLsn;
  await before.close();
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--wal-child', CRASH_WAL_PATH], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let acknowledged = lastBefore;
  let buffered = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) acknowledged = Math.max(acknowledged, Number(line));
      if (acknowledged - lastBefore >= 500 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    child.on('exit', () => resolve());
  });
  console.log(`child appended with sync 'always' and was killed with SIGKILL after acknowledging LSN ${acknowledged}`);
  await using wal = await Wal.open(CRASH_WAL_PATH);
  const { recovery } = wal;
  console.log(`recovered: segments ${recovery.segments}, last LSN ${recovery.lastLsn}, checkpoint ${recovery.checkpointLsn}, torn tail bytes removed ${recovery.truncatedBytes}`);
  let present = 0;
  for await (const record of wal.replay({ from: Math.max(wal.firstLsn, lastBefore + 1) })) {
    if (record.lsn <= acknowledged) present++;
  }
  const expected = acknowledged - Math.max(wal.firstLsn - 1, lastBefore);
  console.log(`every acknowledged record is there: ${present === expected ? 'yes' : 'NO'} (${present} of ${expected} acknowledged in this run)`);
  await wal.checkpoint(wal.lastLsn);
}

async function walChild(dir: string): Promise<void> {
  const wal = await Wal.open(dir, { sync: 'always', segmentSizeBytes: 64 * 1024, retainSegments: 1 });
  const payload = new TextEncoder().encode('an acknowledged record');
  // Eight concurrent writers share fdatasyncs (group commit); each LSN is printed once durable.
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (;;) process.stdout.write(`${await wal.append(payload)}\n`);
    }),
  );
}

if (process.argv[2] === '--wal-child') {
  await walChild(process.argv[3]!);
} else {
  await courseSubscriptions();
  await projection();
  await walCrash();
}
