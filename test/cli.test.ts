/**
 * The `factstore` command end to end: each test runs the real command in a child process
 * (node --import tsx src/cli/main.ts, so no build is needed) and checks its stdout, stderr, exit
 * code and the database it leaves.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FactStore, type RecordedEvent } from '../src/index.js';
import { utf8 } from '../src/bytes.js';
import { indexKey, KeySpace } from '../src/storage/keys.js';
import { VIEW } from '../src/storage/level.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(root, 'src/cli/main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function factstore(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

const lines = (text: string) => text.split('\n').filter((line) => line.length > 0);
const ndjson = (events: object[]) => events.map((event) => JSON.stringify(event)).join('\n') + '\n';
const parsed = (run: Run) => lines(run.stdout).map((line) => JSON.parse(line) as Record<string, unknown>);

let work: string;
let counter = 0;
const fresh = () => join(work, `db-${++counter}`);

async function readAll(path: string): Promise<RecordedEvent[]> {
  const db = await FactStore.open(path, { createIfMissing: false });
  try {
    return await db.read().toArray();
  } finally {
    await db.close();
  }
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'factstore-cli-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('factstore command line', { timeout: 30_000 }, () => {
  describe('backup and restore', () => {
    it('backs up a database, refuses to restore over one without --force, and restores it with --force', async () => {
      const path = fresh();
      const db = await FactStore.open(path);
      await db.append([{ type: 'A', data: { bytes: Uint8Array.of(1, 2) } }, { type: 'B' }]);
      await db.close();
      const backupPath = join(work, `backup-${++counter}`);
      const backup = await factstore(['backup', path, backupPath]);
      expect(backup.stderr).toBe('');
      expect(backup.code).toBe(0);
      expect(backup.stdout).toMatch(/^backed up the events through position 2 to /);
      expect((await factstore(['backup', path, backupPath])).code).toBe(1); // the destination exists
      const reopened = await FactStore.open(path);
      await reopened.append({ type: 'C' });
      await reopened.close();
      const refused = await factstore(['restore', backupPath, path]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('force');
      const restored = await factstore(['restore', backupPath, path, '--force']);
      expect(restored.code, restored.stderr).toBe(0);
      expect((await readAll(path)).map((event) => event.type)).toEqual(['A', 'B']);
      expect((await factstore(['verify', path])).code).toBe(0);
      expect((await factstore(['restore', join(work, 'no-such-backup'), fresh()])).code).toBe(1);
    });
  });

  describe('usage', () => {
    it('--help lists every command and exits 0; a command has its own --help', async () => {
      const help = await factstore(['--help']);
      expect(help.code).toBe(0);
      for (const command of ['info', 'read', 'append', 'export', 'import', 'backup', 'restore', 'verify', 'rebuild-indexes']) expect(help.stdout).toContain(command);
      const readHelp = await factstore(['read', '--help']);
      expect(readHelp.code).toBe(0);
      expect(readHelp.stdout).toContain('--follow');
    });

    it('usage errors exit 2: an unknown command, a missing path, a bad number, two sources', async () => {
      const unknown = await factstore(['frobnicate']);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("unknown command 'frobnicate'");
      expect((await factstore(['read'])).code).toBe(2);
      const badFrom = await factstore(['read', fresh(), '--from', 'x']);
      expect(badFrom.code).toBe(2);
      expect(badFrom.stderr).toContain('--from');
      const two = await factstore(['read', fresh(), '--type', 'A', '--tag', 'b']);
      expect(two.code).toBe(2);
      expect(two.stderr).toContain('give one of');
      expect((await factstore(['append', fresh(), '--expect', 'soon'], '')).code).toBe(2);
    });
  });

  describe('bad input', () => {
    it('a path that is not a database: exit 1 naming it, and nothing is created', async () => {
      const path = fresh();
      for (const command of ['info', 'read', 'export', 'verify', 'rebuild-indexes']) {
        const run = await factstore([command, path]);
        expect(run.code, command).toBe(1);
        expect(run.stderr).toBe(`factstore: ${command}: ${path}: not a factstore database (no ${path}/wal)\n`);
      }
      expect(existsSync(path)).toBe(false);
    });

    it('a database another process holds: exit 1, "in use"', async () => {
      const path = fresh();
      const db = await FactStore.open(path);
      try {
        const run = await factstore(['info', path]);
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(new RegExp(`^factstore: info: ${path}: the database is in use by another process .*\\n$`));
      } finally {
        await db.close();
      }
    });
  });

  describe('append', () => {
    it('appends NDJSON to a stream with --expect, and a JSON array; prints the positions', async () => {
      const path = fresh();
      const first = await factstore(['append', path, '--stream', 'cart-1', '--expect', 'none'], ndjson([{ type: 'A', tags: ['t'] }, { type: 'B', data: { at: { $date: '2024-01-01T00:00:00.000Z' } } }]));
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout)).toEqual({ count: 2, firstPosition: 1, lastPosition: 2, streamPosition: 2 });
      const second = await factstore(['append', path], JSON.stringify([{ type: 'C', id: 'my-id' }]));
      expect(JSON.parse(second.stdout)).toEqual({ count: 1, firstPosition: 3, lastPosition: 3 });
      const events = await readAll(path);
      expect(events.map((event) => [event.position, event.type, event.stream])).toEqual([
        [1, 'A', 'cart-1'],
        [2, 'B', 'cart-1'],
        [3, 'C', undefined],
      ]);
      expect(events[1]!.data).toEqual({ at: new Date('2024-01-01T00:00:00.000Z') });
      expect(events[2]!.id).toBe('my-id');
    });

    it('a malformed line: exit 1 naming it, nothing of its batch written; a failed --expect: exit 1', async () => {
      const path = fresh();
      await factstore(['append', path], ndjson([{ type: 'Seed' }]));
      const bad = await factstore(['append', path], `${JSON.stringify({ type: 'A' })}\n\n{"type": "B",\n`);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^factstore: append: line 3: malformed JSON: .*nothing of its batch \(line 1–line 3\) was written, nothing was appended/);
      const noType = await factstore(['append', path], ndjson([{ type: 'A' }, { tipe: 'B' }]));
      expect(noType.code).toBe(1);
      expect(noType.stderr).toContain('line 2: unknown field "tipe"');
      const conflict = await factstore(['append', path, '--stream', 's', '--expect', '3'], ndjson([{ type: 'A' }]));
      expect(conflict.code).toBe(1);
      expect(conflict.stderr).toContain('FACT_CONCURRENCY');
      expect((await readAll(path)).map((event) => event.type)).toEqual(['Seed']);
    });

    it('appends in batches of 1000: a bad line in the second keeps the first and says where to go on', async () => {
      const path = fresh();
      const input = Array.from({ length: 1500 }, (_, n) => (n === 1199 ? '{"type": oops}' : JSON.stringify({ type: 'N', data: { n } })));
      const run = await factstore(['append', path, '--stream', 'big', '--expect', 'none'], input.join('\n') + '\n');
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^factstore: append: line 1200: malformed JSON: .*; nothing of its batch \(line 1001–line 1500\) was written, 1000 event\(s\) before it were appended \(positions 1–1000\); fix it and append again from line 1001\n$/);
      const events = await readAll(path);
      expect(events.length).toBe(1000);
      expect(events[999]!.streamPosition).toBe(1000);
    });
  });

  describe('read and info', () => {
    let path: string;
    beforeAll(async () => {
      path = fresh();
      const db = await FactStore.open(path);
      await db.appendStream('cart-1', [{ type: 'Added', tags: ['item:1'] }, { type: 'Removed', tags: ['item:1'] }]);
      await db.appendStream('cart-2', { type: 'Added', tags: ['item:2'] });
      await db.appendStream('order-1', { type: 'Placed', tags: ['order:1'] });
      await db.append({ type: 'Added', tags: ['item:3'] });
      await db.resetConsumer('projection', 2);
      await db.close();
    });

    it('reads every source as NDJSON, with --from, --backward and --limit', async () => {
      const positions = async (...args: string[]) => {
        const run = await factstore(['read', path, ...args]);
        expect(run.code, args.join(' ')).toBe(0);
        return parsed(run).map((event) => event.position);
      };
      expect(await positions()).toEqual([1, 2, 3, 4, 5]);
      expect(await positions('--stream', 'cart-1')).toEqual([1, 2]);
      expect(await positions('--type', 'Added')).toEqual([1, 3, 5]);
      expect(await positions('--tag', 'item:1')).toEqual([1, 2]);
      expect(await positions('--category', 'cart')).toEqual([1, 2, 3]);
      expect(await positions('--query', '[{"types":["Placed"]},{"tags":["item:2"]}]')).toEqual([3, 4]);
      expect(await positions('--from', '2', '--limit', '2')).toEqual([2, 3]);
      expect(await positions('--backward', '--limit', '2')).toEqual([5, 4]);
      const [event] = parsed(await factstore(['read', path, '--limit', '1']));
      expect(Object.keys(event!)).toEqual(['position', 'id', 'type', 'timestamp', 'stream', 'streamPosition', 'tags', 'data', 'metadata']);
      const badQuery = await factstore(['read', path, '--query', '[{"types":[]']);
      expect(badQuery.code).toBe(2);
      expect(badQuery.stderr).toContain('--query: malformed JSON');
    });

    it('info: head, counts, WAL, checkpoint, LevelDB size, consumers with lag; --json', async () => {
      const text = await factstore(['info', path, '--counts']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^head +5$/m);
      expect(text.stdout).toMatch(/^streams +3$/m);
      expect(text.stdout).toMatch(/^types +3$/m);
      expect(text.stdout).toMatch(/^tags +4$/m);
      expect(text.stdout).toMatch(/^ +projection +position 2 +lag 3$/m);
      const run = await factstore(['info', path, '--json']);
      const report = JSON.parse(run.stdout) as Record<string, unknown> & { wal: { segments: number; bytes: number; checkpointLsn: number } };
      expect(report).toMatchObject({ head: 5, events: 5, streams: 3, types: null, tags: null, consumers: [{ name: 'projection', position: 2, lag: 3 }] });
      expect(report.wal.segments).toBeGreaterThanOrEqual(1);
      expect(report.wal.bytes).toBeGreaterThan(0);
      expect(report.wal.checkpointLsn).toBeGreaterThan(0);
      expect(report.ledgerBytes).toBeGreaterThan(0);
    });

    // A live append cannot come from another process: the follower holds the database's lock (FactStore is one process's).
    it('read --follow prints the history, keeps waiting for live events, and exits 0 on SIGINT (closing the database)', async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'read', path, '--follow', '--from', '4'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await new Promise<void>((resolve) => {
        child.stdout.setEncoding('utf8').on('data', (text: string) => {
          stdout += text;
          if (lines(stdout).length >= 2) resolve();
        });
      });
      expect(lines(stdout).map((line) => (JSON.parse(line) as RecordedEvent).position)).toEqual([4, 5]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(child.exitCode).toBe(null);
      const append = await factstore(['append', path], ndjson([{ type: 'Live' }]));
      expect(append.code).toBe(1);
      expect(append.stderr).toContain('in use by another process');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(stderr).toBe('');
      // Closed cleanly: the database opens at once and holds what it held.
      expect((await readAll(path)).length).toBe(5);
    });
  });

  describe('export and import', () => {
    const awkward = {
      bytes: new Uint8Array([0, 1, 2, 254, 255]),
      at: new Date('2024-02-29T12:34:56.789Z'),
      big: -123456789012345678901234567890n,
      map: new Map<unknown, unknown>([['k', 1], [2, new Set(['x'])]]),
      nothing: undefined,
      nan: Number.NaN,
      inf: Number.NEGATIVE_INFINITY,
      dollar: { $bytes: 'not a tag' },
      floats: new Float64Array([1.5, -2]),
      nested: [{ deep: [new Uint8Array([9])] }],
      plain: 'text with "quotes" and \n newline',
    };

    it('round-trips every field and non-JSON values; the export of the import is byte-identical', async () => {
      const source = fresh();
      const db = await FactStore.open(source);
      await db.appendStream('s-1', [{ type: 'A', data: awkward, metadata: { who: 'me', when: new Date(0) }, tags: ['t1', 't2'] }, { type: 'B' }]);
      await db.append([{ type: 'C', id: 'own-id', data: [1, 'two', null] }, { type: 'D', data: 'scalar' }]);
      await db.appendStream('s-2', { type: 'E', data: { $object: 'looks like the escape' } });
      const original = await db.read().toArray();
      await db.close();
      const file = join(work, 'round-trip.ndjson');
      const exported = await factstore(['export', source, '--out', file]);
      expect(exported.code).toBe(0);
      expect(exported.stderr).toContain('exported 5 events');
      const target = fresh();
      const imported = await factstore(['import', target, '--in', file]);
      expect(imported.code).toBe(0);
      expect(JSON.parse(imported.stdout)).toEqual({ count: 5, firstPosition: 1, lastPosition: 5, skipped: 0 });
      const again = await factstore(['export', target]);
      expect(again.stdout).toBe(readFileSync(file, 'utf8'));
      const copy = await readAll(target);
      expect(copy).toEqual(original);
      expect(copy[0]!.data).toEqual(awkward);
      expect((copy[0]!.data as typeof awkward).bytes).toBeInstanceOf(Uint8Array);
      expect((copy[0]!.data as typeof awkward).floats).toBeInstanceOf(Float64Array);
      // The tags as documented in the README.
      const line = lines(readFileSync(file, 'utf8'))[0]!;
      expect(line).toContain('"bytes":{"$bytes":"AAEC/v8="}');
      expect(line).toContain('"dollar":{"$object":{"$bytes":"not a tag"}}');
      expect(line).toContain('"big":{"$bigint":"-123456789012345678901234567890"}');
    });

    it('import from stdin; refuses a database whose head is not where the file starts; --resume skips what it holds', async () => {
      const source = fresh();
      const db = await FactStore.open(source);
      for (let n = 0; n < 5; n++) await db.append({ type: 'N', data: { n } });
      await db.close();
      const all = (await factstore(['export', source])).stdout;
      const target = fresh();
      const firstThree = lines(all).slice(0, 3).join('\n') + '\n';
      expect((await factstore(['import', target], firstThree)).code).toBe(0);
      const refused = await factstore(['import', target], all);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("line 1: the file's events start at position 1, but the database's head is 3");
      expect(refused.stderr).toContain('--resume');
      const resumed = await factstore(['import', target, '--resume'], all);
      expect(resumed.code).toBe(0);
      expect(JSON.parse(resumed.stdout)).toEqual({ count: 2, firstPosition: 4, lastPosition: 5, skipped: 3 });
      expect((await factstore(['export', target])).stdout).toBe(all);
    });

    it('a malformed line: exit 1 naming it, nothing of its batch written, how to resume; an unwritable --out', async () => {
      const source = fresh();
      const db = await FactStore.open(source);
      await db.append([{ type: 'A' }, { type: 'B' }]);
      await db.close();
      const [one, two] = lines((await factstore(['export', source])).stdout);
      const target = fresh();
      const bad = await factstore(['import', target], `${one}\n${two!.slice(0, 20)}\n`);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^factstore: import: line 2: malformed JSON: .* nothing of lines 1–2 was written; nothing was imported \(the database head is 0\)\n$/);
      expect(await readAll(target)).toEqual([]);
      // An event the store refuses: the import stops there; the events after it do not take its position.
      const three = [one!, JSON.stringify({ ...JSON.parse(two!), type: '', timestamp: 1 }), JSON.stringify({ ...JSON.parse(two!), position: 3, id: 'third', timestamp: 2 })];
      const invalidTarget = fresh();
      const invalid = await factstore(['import', invalidTarget], three.join('\n') + '\n');
      expect(invalid.code).toBe(1);
      expect(invalid.stderr).toMatch(/^factstore: import: line 2: FACT_INVALID_ARGUMENT: .*positions up to 1 are imported; run the same import with --resume/);
      expect((await readAll(invalidTarget)).map((event) => event.position)).toEqual([1]);
      const gap = await factstore(['import', fresh()], `${one}\n${one}\n`);
      expect(gap.code).toBe(1);
      expect(gap.stderr).toContain('line 2: position 1, expected 2');
      const out = join(work, 'no-such-dir', 'x.ndjson');
      const unwritable = await factstore(['export', source, '--out', out]);
      expect(unwritable.code).toBe(1);
      expect(unwritable.stderr).toMatch(new RegExp(`^factstore: export: cannot write ${out}: ENOENT`));
    });
  });

  describe('verify and rebuild-indexes', () => {
    it('verify: exit 0 when clean; exit 1 naming a damaged index; --repair rebuilds and says what it fixed', async () => {
      const path = fresh();
      const db = await FactStore.open(path);
      await db.append([{ type: 'A', tags: ['x'] }, { type: 'B' }]);
      await db.close();
      const clean = await factstore(['verify', path]);
      expect(clean.code).toBe(0);
      expect(clean.stdout).toMatch(/^ok: 2 events, \d+ index entries, \d+ WAL records checked\n$/);
      const level = new Level<Uint8Array, Uint8Array>(join(path, 'ledger'), VIEW);
      await level.open();
      await level.del<Uint8Array>(indexKey(KeySpace.type, utf8('A'), 1), { keyEncoding: 'view' });
      await level.close();
      const damaged = await factstore(['verify', path]);
      expect(damaged.code).toBe(1);
      expect(damaged.stdout).toMatch(/^PROBLEMS: .*\n {2}problem: index entry [0-9a-f]+ is missing/);
      const repaired = await factstore(['verify', path, '--repair', '--json']);
      expect(repaired.code).toBe(0);
      const outcome = JSON.parse(repaired.stdout) as { report: { ok: boolean }; repair: { rebuilt: { events: number }; problemsFixed: string[]; after: { ok: boolean } } };
      expect(outcome.report.ok).toBe(false);
      expect(outcome.repair.rebuilt).toEqual({ events: 2 });
      expect(outcome.repair.problemsFixed.join('\n')).toContain('is missing');
      expect(outcome.repair.after.ok).toBe(true);
      expect((await factstore(['verify', path])).code).toBe(0);
    });

    it('rebuild-indexes: progress on stderr with --progress, none without; stdout says how many events', async () => {
      const path = fresh();
      const db = await FactStore.open(path);
      await db.append(Array.from({ length: 50 }, (_, n) => ({ type: 'N', tags: [`n:${n}`] })));
      await db.close();
      const quiet = await factstore(['rebuild-indexes', path]);
      expect(quiet).toEqual({ code: 0, stdout: 'rebuilt the indexes of 50 events\n', stderr: '' });
      const loud = await factstore(['rebuild-indexes', path, '--progress']);
      expect(loud.code).toBe(0);
      expect(loud.stderr).toContain('rebuild-indexes [');
      expect(loud.stderr).toContain('50/50 events');
      expect(loud.stdout).toBe('rebuilt the indexes of 50 events\n');
    });
  });

});
