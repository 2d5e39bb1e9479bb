import { describe, expect, it } from 'vitest';
import { FactError } from '../src/errors.js';
import type { FileHandle } from '../src/wal/file-system.js';
import { SimCrashError, SimFileSystem } from '../src/wal/sim-file-system.js';

const SEEDS = Array.from({ length: 300 }, (_, i) => i);

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function text(data: Uint8Array | null): string | null {
  return data === null ? null : new TextDecoder().decode(data);
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  return ((await errorOf(promise)) as { code?: unknown }).code;
}

/** A file '/d/f' holding `synced` durably (content and entry). */
async function syncedFile(seed: number, synced: string): Promise<{ fs: SimFileSystem; file: FileHandle }> {
  const fs = new SimFileSystem({ seed });
  await fs.mkdir('/d');
  const file = await fs.open('/d/f', 'create');
  await file.write(bytes(synced), 0);
  await file.datasync();
  await fs.syncDir('/d');
  return { fs, file };
}

/** Every content a crash may leave: from `base`, each write dropped, kept, or a prefix (length ≥ 1) kept. */
function possibleOutcomes(base: Uint8Array, writes: { position: number; data: Uint8Array }[]): Set<string> {
  let states = [base];
  for (const { position, data } of writes) {
    const next: Uint8Array[] = [];
    for (const state of states) {
      next.push(state);
      for (let length = 1; length <= data.length; length++) {
        const end = Math.max(state.length, position + length);
        const grown = new Uint8Array(end);
        grown.set(state);
        grown.set(data.subarray(0, length), position);
        next.push(grown);
      }
    }
    states = next;
  }
  return new Set(states.map((state) => Buffer.from(state).toString('hex')));
}

describe('SimFileSystem namespace', () => {
  it('creates, lists, reads and removes like a file system', async () => {
    const fs = new SimFileSystem();
    expect(await codeOf(fs.open('/nope/f', 'create'))).toBe('ENOENT');
    await fs.mkdir('/a/b//c/');
    expect(await fs.exists('/a/b/c')).toBe(true);
    const file = await fs.open('/a/b/z', 'create');
    await file.write(bytes('hi'), 3);
    expect(Array.from((await fs.readFile('/a/b/z')) ?? [])).toEqual([0, 0, 0, 104, 105]);
    expect(await codeOf(fs.open('/a/b/z', 'create'))).toBe('EEXIST');
    expect(await codeOf(fs.open('/a/b/y', 'read'))).toBe('ENOENT');
    expect(await codeOf(fs.open('/a/b/y', 'readwrite'))).toBe('ENOENT');
    expect(await fs.readdir('/a/b/')).toEqual(['c', 'z']);
    expect(await fs.readdir('/missing')).toEqual([]);
    expect(await fs.readFile('/a/b/y')).toBeNull();
    await fs.unlink('/a/b/y');
    await fs.unlink('/a/b/z');
    expect(await fs.exists('/a/b/z')).toBe(false);
    expect(await file.sizeBytes()).toBe(5); // the handle keeps the inode, like a Unix fd

    const again = await fs.open('/a/b/w', 'overwrite');
    await again.write(bytes('abc'), 0);
    await fs.open('/a/b/w', 'overwrite');
    expect(await again.sizeBytes()).toBe(0);

    await fs.mkdir('rel/dir');
    expect(await fs.readdir('.')).toEqual(['rel']);
    expect(await fs.readdir('/')).toEqual(['a']);
  });

  it('mkdir is durable at once', async () => {
    const fs = new SimFileSystem({ seed: 3 });
    await fs.mkdir('/x/y');
    fs.crash();
    expect(await fs.readdir('/x')).toEqual(['y']);
  });
});

describe('SimFileSystem crashes', () => {
  it('keeps written and datasynced data in a synced directory across power loss', async () => {
    for (const seed of SEEDS.slice(0, 50)) {
      const { fs } = await syncedFile(seed, 'durable');
      fs.crash();
      expect(text(await fs.readFile('/d/f'))).toBe('durable');
    }
  });

  it('keeps, drops or tears unsynced writes, and only ever leaves a valid outcome', async () => {
    const writes = [
      { position: 4, data: bytes('abcd') },
      { position: 10, data: bytes('xyz') },
      { position: 2, data: bytes('QQ') },
    ];
    const allowed = possibleOutcomes(bytes('HEAD'), writes);
    const seen = { kept: 0, dropped: 0, torn: 0 };
    const contents = new Set<string>();
    for (const seed of SEEDS) {
      const { fs, file } = await syncedFile(seed, 'HEAD');
      for (const { position, data } of writes) await file.write(data, position);
      const report = fs.crash();
      seen.kept += report.writesKept;
      seen.dropped += report.writesDropped;
      seen.torn += report.writesTorn;
      const content = Buffer.from((await fs.readFile('/d/f')) ?? []).toString('hex');
      expect(allowed.has(content)).toBe(true);
      expect(fs.durableContent('/d/f')).toEqual(await fs.readFile('/d/f'));
      contents.add(content);
    }
    expect(seen.kept).toBeGreaterThan(0);
    expect(seen.dropped).toBeGreaterThan(0);
    expect(seen.torn).toBeGreaterThan(0);
    expect(contents.has(Buffer.from('HEAD').toString('hex'))).toBe(true); // all dropped
    expect(contents.size).toBeGreaterThan(10);
  });

  it('may drop an unsynced truncate', async () => {
    const sizes = new Set<number | null>();
    for (const seed of SEEDS.slice(0, 50)) {
      const { fs, file } = await syncedFile(seed, 'twelve bytes');
      await file.truncate(4);
      fs.crash();
      sizes.add(fs.durableSizeBytes('/d/f'));
    }
    expect([...sizes].sort()).toEqual([12, 4]);
  });

  it('process crash keeps everything written, durable or not', async () => {
    const fs = new SimFileSystem({ seed: 1 });
    await fs.mkdir('/d');
    const file = await fs.open('/d/f', 'create');
    await file.write(bytes('unsynced'), 0);
    const report = fs.crash({ mode: 'process' });
    expect(report).toMatchObject({ mode: 'process', writesKept: 1, dirOpsKept: 1, handlesClosed: 1 });
    expect(text(await fs.readFile('/d/f'))).toBe('unsynced');
    expect(fs.durableContent('/d/f')).toBeNull(); // still not durable: a power loss can lose it
    expect(await codeOf(file.read(new Uint8Array(1), 0, 1, 0))).toBe('EBADF');
  });

  it('loses a file creation that was not followed by syncDir on some seeds, never when synced', async () => {
    const outcomes = new Set<boolean>();
    for (const seed of SEEDS.slice(0, 50)) {
      const fs = new SimFileSystem({ seed });
      await fs.mkdir('/d');
      const file = await fs.open('/d/f', 'create');
      await file.write(bytes('data'), 0);
      await file.datasync();
      fs.crash();
      const exists = await fs.exists('/d/f');
      outcomes.add(exists);
      if (exists) expect(text(await fs.readFile('/d/f'))).toBe('data');
      else expect(await fs.readdir('/d')).toEqual([]);
    }
    expect([...outcomes].sort()).toEqual([false, true]);
  });

  it('makes a rename durable with syncDir, and atomic without it', async () => {
    const unsynced = new Set<string>();
    for (const seed of SEEDS.slice(0, 50)) {
      for (const sync of [true, false]) {
        const { fs } = await syncedFile(seed, 'v1');
        const tmp = await fs.open('/d/f.tmp', 'create');
        await tmp.write(bytes('v2'), 0);
        await tmp.datasync();
        await fs.syncDir('/d');
        await fs.rename('/d/f.tmp', '/d/f');
        if (sync) await fs.syncDir('/d');
        fs.crash();
        const state = `${(await fs.readdir('/d')).join(',')}:${text(await fs.readFile('/d/f'))}`;
        if (sync) expect(state).toBe('f:v2');
        else unsynced.add(state);
      }
    }
    expect([...unsynced].sort()).toEqual(['f,f.tmp:v1', 'f:v2']);
  });

  it('keeps a cross-directory rename in both directories or in neither', async () => {
    const outcomes = new Set<string>();
    for (const seed of SEEDS.slice(0, 80)) {
      const fs = new SimFileSystem({ seed });
      await fs.mkdir('/a');
      await fs.mkdir('/b');
      const file = await fs.open('/a/f', 'create');
      await file.datasync();
      await fs.syncDir('/a');
      await fs.open('/b/before', 'create');
      await fs.rename('/a/f', '/b/f');
      await fs.open('/a/after', 'create');
      fs.crash();
      const state = `${(await fs.readdir('/a')).join(',')}|${(await fs.readdir('/b')).join(',')}`;
      outcomes.add(state);
    }
    // A rename never leaves two names or none; journal order: 'before' precedes the rename.
    expect([...outcomes].sort()).toEqual(['after|before,f', 'f|', 'f|before', '|before,f']);
  });

  it('commits a cross-directory rename, and what preceded it, when either directory is synced', async () => {
    for (const seed of SEEDS.slice(0, 30)) {
      const fs = new SimFileSystem({ seed });
      await fs.mkdir('/a');
      await fs.mkdir('/b');
      await fs.open('/a/f', 'create');
      await fs.syncDir('/a');
      await fs.open('/b/before', 'create');
      await fs.rename('/a/f', '/b/f');
      await fs.syncDir('/a');
      fs.crash();
      expect(await fs.readdir('/a')).toEqual([]);
      expect(await fs.readdir('/b')).toEqual(['before', 'f']);
    }
  });

  it('kills handles at a crash, and closed handles', async () => {
    const { fs, file } = await syncedFile(1, 'x');
    const report = fs.crash();
    expect(report.handlesClosed).toBe(1);
    expect(await codeOf(file.read(new Uint8Array(1), 0, 1, 0))).toBe('EBADF');
    expect(await codeOf(file.write(bytes('y'), 0))).toBe('EBADF');
    expect(await codeOf(file.datasync())).toBe('EBADF');
    expect(await codeOf(file.sizeBytes())).toBe('EBADF');
    expect(await codeOf(file.close())).toBe('EBADF');

    const reopened = await fs.open('/d/f', 'read');
    expect(await codeOf(reopened.write(bytes('y'), 0))).toBe('EBADF'); // read-only
    await reopened.close();
    expect(await codeOf(reopened.sizeBytes())).toBe('EBADF');
  });

  it('is deterministic: same seed and same operations give the same state', async () => {
    async function run(seed: number): Promise<unknown> {
      const fs = new SimFileSystem({ seed });
      await fs.mkdir('/d');
      const results: unknown[] = [];
      for (let round = 0; round < 5; round++) {
        const file = await fs.open(`/d/f${round}`, 'create');
        for (let i = 0; i < 20; i++) await file.write(bytes(`record ${round}.${i};`), i * 12);
        if (round % 2 === 0) await file.datasync();
        results.push(fs.crash());
        const names = await fs.readdir('/d');
        for (const name of names) results.push(name, text(await fs.readFile(`/d/${name}`)));
      }
      return results;
    }
    expect(await run(7)).toEqual(await run(7));
    expect(await run(7)).not.toEqual(await run(8));
  });

  it('clone explores crashes independently from the same state', async () => {
    const { fs, file } = await syncedFile(11, 'base');
    for (let i = 0; i < 10; i++) await file.write(bytes('more'), 4 + i * 4);
    const copy = fs.clone();
    const reseeded = fs.clone();
    reseeded.reseed(99);
    // The clone has the disk and the PRNG state, not the handle.
    expect({ ...fs.crash(), handlesClosed: 0 }).toEqual(copy.crash());
    expect(await copy.readFile('/d/f')).toEqual(await fs.readFile('/d/f'));
    await (await copy.open('/d/g', 'create')).close();
    expect(await fs.exists('/d/g')).toBe(false);
    reseeded.crash();
    expect(await reseeded.exists('/d/f')).toBe(true);
  });
});

describe('SimFileSystem faults', () => {
  it('fails datasync with EIO and then loses the writes it covered, even after a later successful datasync', async () => {
    for (const seed of SEEDS.slice(0, 30)) {
      const { fs, file } = await syncedFile(seed, 'HEAD');
      await file.write(bytes('lost'), 4);
      fs.injectFault({ op: 'datasync', error: 'EIO' });
      const error = await errorOf(file.datasync());
      expect(error).toBeInstanceOf(Error);
      expect((error as { code?: unknown }).code).toBe('EIO');
      expect(fs.durableContent('/d/f')).toEqual(bytes('HEAD'));

      await file.write(bytes('kept'), 8);
      await file.datasync(); // "succeeds", as Linux's fsync does after the pages were marked clean
      expect(text(await fs.readFile('/d/f'))).toBe('HEADlostkept');
      fs.crash();
      expect(Array.from((await fs.readFile('/d/f')) ?? [])).toEqual([...bytes('HEAD'), 0, 0, 0, 0, ...bytes('kept')]);
    }
  });

  it('fails a write with ENOSPC, leaving nothing or a prefix of the data', async () => {
    const lengths = new Set<number>();
    for (const seed of SEEDS.slice(0, 60)) {
      const fs = new SimFileSystem({ seed });
      const file = await fs.open('f', 'create');
      fs.injectFault({ op: 'write', error: 'ENOSPC', path: 'f', after: 1 });
      await file.write(bytes('ok'), 0); // skipped by `after`
      expect(await codeOf(file.write(bytes('0123456789'), 2))).toBe('ENOSPC');
      const content = text(await fs.readFile('f')) ?? '';
      expect(`ok0123456789`.startsWith(content)).toBe(true);
      lengths.add(content.length);
      await file.write(bytes('!'), 12); // times defaults to 1
    }
    expect(lengths.has(2)).toBe(true);
    expect(lengths.has(12)).toBe(true);
    expect(lengths.size).toBeGreaterThan(5);
  });

  it('matches faults by path substring and honours times', async () => {
    const fs = new SimFileSystem();
    await fs.mkdir('/w');
    fs.injectFault({ op: 'open', error: 'EIO', path: '.wal', times: 2 });
    fs.injectFault({ op: 'rename', error: 'EIO', path: '/w/b', times: Infinity });
    await (await fs.open('/w/a.idx', 'create')).close();
    expect(await codeOf(fs.open('/w/a.wal', 'create'))).toBe('EIO');
    expect(await codeOf(fs.open('/w/b.wal', 'create'))).toBe('EIO');
    await (await fs.open('/w/b.wal', 'create')).close();
    for (let i = 0; i < 3; i++) expect(await codeOf(fs.rename('/w/a.idx', '/w/b.idx'))).toBe('EIO');
    fs.clearFaults();
    await fs.rename('/w/a.idx', '/w/b.idx');
    expect(await fs.readdir('/w')).toEqual(['b.idx', 'b.wal']);
  });

  it('crashAfterOps(n) rejects the (n+1)-th mutating operation and everything after it until crash()', async () => {
    async function scenario(fs: SimFileSystem): Promise<void> {
      await fs.mkdir('/d'); // 1
      const file = await fs.open('/d/f', 'create'); // 2
      await file.write(bytes('a'), 0); // 3
      await file.read(new Uint8Array(1), 0, 1, 0); // not counted
      await file.datasync(); // 4
      await fs.syncDir('/d'); // 5
      await fs.rename('/d/f', '/d/g'); // 6
      await fs.unlink('/d/g'); // 7
    }
    const counter = new SimFileSystem();
    await scenario(counter);
    expect(counter.opCount).toBe(7);

    for (let n = 0; n <= 7; n++) {
      const fs = new SimFileSystem({ seed: n });
      fs.crashAfterOps(n);
      if (n === 7) {
        await scenario(fs);
        expect(await codeOf(fs.syncDir('/d'))).toBe('SIM_CRASHED');
      } else {
        const error = await errorOf(scenario(fs));
        expect(error).toBeInstanceOf(SimCrashError);
        expect((error as SimCrashError).code).toBe('SIM_CRASHED');
      }
      expect(fs.opCount).toBe(n);
      expect(await errorOf(fs.readdir('/'))).toBeInstanceOf(SimCrashError);
      fs.crash();
      expect(await fs.readdir('/')).toEqual(n === 0 ? [] : ['d']);
      await fs.mkdir('/e');
    }
  });
});

describe('SimFileSystem bit rot and locks', () => {
  it('flipBit flips one bit of durable and current content', async () => {
    const { fs } = await syncedFile(1, 'AB');
    fs.flipBit('/d/f', 1, 0);
    expect(text(await fs.readFile('/d/f'))).toBe('AC');
    expect(text(fs.durableContent('/d/f'))).toBe('AC');
    fs.crash();
    expect(text(await fs.readFile('/d/f'))).toBe('AC');
    expect(fs.durableSizeBytes('/d/f')).toBe(2);
    expect(fs.durableContent('/d/missing')).toBeNull();
    expect(() => fs.flipBit('/d/f', 2, 0)).toThrow(FactError);
  });

  it('locks exclusively, releases, relocks, and a crash releases every lock', async () => {
    const fs = new SimFileSystem();
    await fs.mkdir('/db');
    const lock = await fs.lock('/db/LOCK');
    const error = await errorOf(fs.lock('/db/LOCK'));
    expect(error).toBeInstanceOf(FactError);
    expect(error).toMatchObject({ code: 'FACT_LOCKED', details: { pid: process.pid } });
    expect(await fs.readdir('/db')).toEqual([]);
    await lock.release();
    const again = await fs.lock('/db/LOCK');
    const report = fs.crash();
    expect(report.locksReleased).toBe(1);
    const afterCrash = await fs.lock('/db/LOCK');
    await again.release(); // a stale lock must not free the new holder's lock
    expect(await codeOf(fs.lock('/db/LOCK'))).toBe('FACT_LOCKED');
    await afterCrash.release();
  });
});
