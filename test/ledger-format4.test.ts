/**
 * Storage format 4 (docs/storage-format.md, "Format-4 chunks", recovery rows 5–5c): every
 * event decodes alone and is checksummed; damage is FACT_CORRUPTION naming the position on
 * read and in verify(); a format 1/2/3 database is rewritten at open, crash-safely.
 */
import { describe, expect, it } from 'vitest';
import { FactStore, type FactStoreOptions, type LevelDatabase, type RecordedEvent } from '../src/index.js';
import {
  CHUNK_KIND_APPEND_CONTINUED,
  CHUNK_KIND_APPEND_FIRST,
  CHUNK_KIND_UNMARKED,
  decodeChunk,
  encodeTuples,
  isChecksummedChunk,
  openChunk,
  upgradeChunk,
} from '../src/model/chunk.js';
import { readU64BE, utf8, writeU64BE } from '../src/bytes.js';
import { KeySpace, ledgerKey, metaKey, spaceRange, u64 } from '../src/storage/keys.js';
import { VIEW } from '../src/storage/level.js';
import { LossyLevel, mulberry32, SimFileSystem } from '../src/testing/index.js';
import { expectFactError, newMemoryLevel } from './support/backends.js';
import { FactError } from '../src/errors.js';
import { Wal } from '../src/wal/index.js';
import { exactDump } from '../property-tests/exact-dump.js';
import { WAL_RECORD_COMMIT } from '../src/storage/commit-record.js';

const memoryOptions = (fs: SimFileSystem, level: LevelDatabase): FactStoreOptions => ({ fs, level, levelDurability: 'volatile' });

/** Values of every type the README promises to round-trip. */
function richData(index: number): unknown {
  return {
    n: index,
    big: 2n ** 70n + BigInt(index),
    f: index + 0.5,
    when: new Date(1_700_000_000_000 + index),
    bytes: new Uint8Array([index & 0xff, 1, 2]),
    map: new Map<unknown, unknown>([['k', index], [1, 'one']]),
    set: new Set([index, 'x']),
    nested: [{ a: { b: [index, null, true] } }, 'é'.repeat(index % 5)],
    floats: new Float64Array([index, 1.25]),
  };
}

async function populate(db: FactStore): Promise<void> {
  await db.appendStream('order-1', [{ type: 'Placed', data: richData(0), tags: ['order:1'] }, { type: 'Paid', data: richData(1), metadata: { by: 'u' } }]);
  // 600 events: three chunks (256, 256, 88), kinds first, continued, continued.
  await db.append(Array.from({ length: 600 }, (_, index) => ({ type: index % 2 ? 'Odd' : 'Even', data: richData(index), tags: [`t${index % 7}`] })));
  await db.append([{ type: 'Solo', id: 'solo-1', data: 'plain' }]);
  await db.appendStream('order-2', { type: 'Placed', data: { items: [1, 2, 3] }, tags: ['order:2'] });
}

async function everything(db: FactStore) {
  return {
    all: await db.read().toArray(),
    backward: await db.read('all', { direction: 'backward', limit: 300 }).toArray(),
    stream: await db.read({ stream: 'order-1' }).toArray(),
    type: await db.read({ type: 'Odd' }, { from: 200, limit: 50 }).toArray(),
    tag: await db.read({ tag: 't3' }).toArray(),
    category: await db.read({ category: 'order' }).toArray(),
    head: await db.head(),
  };
}

/** The ledger's values, first position → bytes. */
async function ledger(level: LevelDatabase): Promise<Map<number, Uint8Array>> {
  const chunks = new Map<number, Uint8Array>();
  for await (const [key, value] of level.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.ledger) })) chunks.set(readU64BE(key, 1), value);
  return chunks;
}

/** What format `format` (1–3) stored for the chunk: the old header, kind 1 for formats 1/2, and one CBOR array of the tuples. */
function oldLayout(bytes: Uint8Array, first: number, format: number): Uint8Array {
  const chunk = decodeChunk(bytes, first);
  const stream = utf8(chunk.stream);
  const header = new Uint8Array(19 + stream.length);
  header[0] = format === 3 ? chunk.kind : CHUNK_KIND_UNMARKED;
  writeU64BE(header, 1, chunk.timestamp);
  writeU64BE(header, 9, chunk.firstStreamPosition);
  header[17] = stream.length >>> 8;
  header[18] = stream.length & 0xff;
  header.set(stream, 19);
  return Buffer.concat([header, encodeTuples(chunk.tuples)]);
}

/** Turns a closed database into what format `format` would have stored (same events). */
async function downgrade(level: LevelDatabase, format: number): Promise<void> {
  for (const [first, bytes] of await ledger(level)) await level.put<Uint8Array, Uint8Array>(ledgerKey(first), oldLayout(bytes, first, format), VIEW);
  await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(format), VIEW);
}

function flipped(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[bit >>> 3]! ^= 1 << (bit & 7);
  return copy;
}

describe('format-4 chunks', () => {
  it('each event decodes alone, from its own bytes, as the whole chunk decodes it', async () => {
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', memoryOptions(new SimFileSystem(), level));
    await populate(db);
    await db.close();
    const chunks = await ledger(level);
    expect([...chunks.values()].map((bytes) => decodeChunk(bytes, 0 + readFirst(chunks, bytes)).kind)).toEqual([
      CHUNK_KIND_APPEND_FIRST,
      CHUNK_KIND_APPEND_FIRST,
      CHUNK_KIND_APPEND_CONTINUED,
      CHUNK_KIND_APPEND_CONTINUED,
      CHUNK_KIND_APPEND_FIRST,
      CHUNK_KIND_APPEND_FIRST,
    ]);
    for (const [first, bytes] of chunks) {
      expect(isChecksummedChunk(bytes)).toBe(true);
      const whole = decodeChunk(bytes, first).tuples;
      const view = openChunk(bytes, first);
      // Backward, so no event relies on one decoded before it.
      for (let index = view.count - 1; index >= 0; index--) expect(view.tuple(index)).toEqual(whole[index]);
    }
  });

  it('a flipped bit anywhere in a chunk is FACT_CORRUPTION (exhaustive over every bit), naming the event when it is an event\'s', async () => {
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', memoryOptions(new SimFileSystem(), level));
    await db.appendStream('s-1', [{ type: 'A', data: { x: 1 }, tags: ['t'] }, { type: 'B', data: [1, 'two'] }, { type: 'C' }]);
    await db.close();
    const bytes = (await ledger(level)).get(1)!;
    const view = openChunk(bytes, 1);
    const eventsAt = bytes.length - (view.count > 0 ? eventAreaSize(bytes) : 0);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const damaged = flipped(bytes, bit);
      const error = catchError(() => decodeChunk(damaged, 1));
      expect(error?.code, `bit ${bit}`).toBe('FACT_CORRUPTION');
      expect(error!.message).toMatch(/ledger chunk 1\b/);
      if (bit >>> 3 >= eventsAt) {
        // In an event's bytes: reading that event alone fails, naming its position.
        const index = eventIndexAt(bytes, (bit >>> 3) - eventsAt);
        const alone = catchError(() => openChunk(damaged, 1).tuple(index));
        expect(alone?.details, `bit ${bit}`).toEqual({ chunk: 1, position: 1 + index });
        expect(alone!.message).toContain(`the event at position ${1 + index} fails its checksum`);
      }
    }
  });

  it('an intact chunk under another key fails its header checksum', async () => {
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', memoryOptions(new SimFileSystem(), level));
    await db.append([{ type: 'A' }, { type: 'B' }]);
    await db.append([{ type: 'A' }, { type: 'B' }]);
    await db.close();
    const chunks = await ledger(level);
    expect(() => decodeChunk(chunks.get(1)!, 3)).toThrow(/ledger chunk 3: the header checksum does not match/);
    expect(() => openChunk(chunks.get(3)!, 1)).toThrow(FactError);
  });

  it('damage in LevelDB is FACT_CORRUPTION naming the position on point reads and scans, and verify() reports every damaged event', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    let db = await FactStore.open('/db', memoryOptions(fs, level));
    await populate(db);
    await db.close();
    const chunks = await ledger(level);
    // One bit of event 2 of the stream chunk (position 2) and of the event at position 300.
    const damage = async (first: number, position: number) => {
      const bytes = chunks.get(first)!;
      const offset = bytes.length - eventAreaSize(bytes) + eventStart(bytes, position - first) + 1;
      await level.put<Uint8Array, Uint8Array>(ledgerKey(first), flipped(bytes, offset * 8 + 3), VIEW);
    };
    await damage(1, 2);
    await damage(259, 300);
    db = await FactStore.open('/db', memoryOptions(fs, level));
    // Point reads decode only what they are asked for: position 1 is intact.
    expect((await db.read({ stream: 'order-1' }, { limit: 1 }).toArray()).map((event) => event.position)).toEqual([1]);
    await expectFactError(() => db.read({ stream: 'order-1' }).toArray(), 'FACT_CORRUPTION', /ledger chunk 1: the event at position 2 fails its checksum/);
    await expectFactError(() => db.read({ type: 'Odd' }, { from: 299 }).toArray(), 'FACT_CORRUPTION', /ledger chunk 259: the event at position 300/);
    await expectFactError(() => db.read().toArray(), 'FACT_CORRUPTION', /position 2 fails its checksum/);
    const report = await db.verify();
    expect(report.ok).toBe(false);
    expect(report.problems.filter((problem) => /fails its checksum/.test(problem))).toEqual([
      'ledger chunk 1: the event at position 2 fails its checksum',
      'ledger chunk 259: the event at position 300 fails its checksum',
    ]);
    await db.close();
  });

  it('verify() reports a chunk whose header is damaged and goes on', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    let db = await FactStore.open('/db', memoryOptions(fs, level));
    await populate(db);
    await db.close();
    const chunks = await ledger(level);
    await level.put<Uint8Array, Uint8Array>(ledgerKey(3), flipped(chunks.get(3)!, 8 * 5), VIEW);
    await level.put<Uint8Array, Uint8Array>(ledgerKey(603), flipped(chunks.get(603)!, 8 * chunks.get(603)!.length - 1), VIEW);
    db = await FactStore.open('/db', memoryOptions(fs, level));
    const report = await db.verify();
    expect(report.problems).toContain('ledger chunk 3: the header checksum does not match (damaged, or not the chunk of position 3)');
    expect(report.problems).toContain('ledger chunk 603: the event at position 603 fails its checksum');
    await db.close();
  });
});

describe('upgrade from formats 1, 2 and 3 (recovery rows 5, 5a, 5c)', () => {
  for (const format of [3, 2, 1]) {
    it(`a format-${format} database reads identically before and after, and every chunk is rewritten with checksums`, async () => {
      const fs = new SimFileSystem();
      const level = newMemoryLevel();
      let db = await FactStore.open('/db', memoryOptions(fs, level));
      await populate(db);
      const before = await everything(db);
      await db.close();
      const current = await ledger(level);
      await downgrade(level, format);
      // The old layout reads the same events (a store reading it as it is, before the upgrade).
      for (const [first, bytes] of await ledger(level)) {
        expect(isChecksummedChunk(bytes)).toBe(false);
        expect(decodeChunk(bytes, first).tuples).toEqual(decodeChunk(current.get(first)!, first).tuples);
      }
      db = await FactStore.open('/db', memoryOptions(fs, level));
      expect(await everything(db)).toEqual(before);
      // The WAL still holds what this version logged (kinds 5/6) where formats 1/2 stored kind 1:
      // a test artifact (an older version would have logged kind 1, which verify() upgrades alike).
      const artifact = (problem: string) => format < 3 && /^WAL record \d+: ledger chunk at position \d+ differs from the WAL$/.test(problem);
      expect((await db.verify()).problems.filter((problem) => !artifact(problem))).toEqual([]);
      await db.close();
      const upgraded = await ledger(level);
      expect([...upgraded.values()].every(isChecksummedChunk)).toBe(true);
      if (format === 3) expect([...upgraded.entries()].map(([first, bytes]) => [first, Buffer.from(bytes).toString('hex')])).toEqual([...current.entries()].map(([first, bytes]) => [first, Buffer.from(bytes).toString('hex')]));
      expect(readU64BE((await level.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW))!, 0)).toBe(5);
      expect(await level.get<Uint8Array, Uint8Array>(metaKey('upgrading'), VIEW)).toBeUndefined();
      // Retries still judge append boundaries: the unmarked kind of formats 1/2 stays unmarked.
      db = await FactStore.open('/db', memoryOptions(fs, level));
      expect(await db.append([{ type: 'Solo', id: 'solo-1', data: 'plain' }])).toEqual({ position: 603, count: 1 });
      await db.close();
    });
  }

  it('upgradeChunk is deterministic and keeps a format-4 chunk as it is', async () => {
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', memoryOptions(new SimFileSystem(), level));
    await populate(db);
    await db.close();
    for (const [first, bytes] of await ledger(level)) {
      expect(upgradeChunk(bytes, first)).toBe(bytes);
      const old = oldLayout(bytes, first, 3);
      expect(Buffer.from(upgradeChunk(old, first)).equals(Buffer.from(upgradeChunk(old, first)))).toBe(true);
      expect(decodeChunk(upgradeChunk(old, first), first)).toEqual(decodeChunk(bytes, first));
    }
  });

  it('a power loss at any write of the upgrade: the next open finishes it and reads identically', async () => {
    const fs = new SimFileSystem();
    const prepared = new LossyLevel();
    const db = await FactStore.open('/db', { fs, level: prepared });
    await populate(db);
    // More than one rewrite batch (UPGRADE_BATCH_EVENTS).
    for (let batch = 0; batch < 9; batch++) await db.append(Array.from({ length: 1000 }, (_, index) => ({ type: 'Bulk', data: { batch, index } })));
    const before = await everything(db);
    await db.close();
    await downgrade(prepared, 3);
    await prepared.compactRange();
    const snapshot = await ledger(prepared);
    const meta = await prepared.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW);
    expect(readU64BE(meta!, 0)).toBe(3);
    const rng = mulberry32(11);
    let crashedAt = 0;
    for (let writes = 0; ; writes++) {
      // A fresh copy of the format-3 database, whose (writes + 1)-th write fails, then power loss.
      const level = new LossyLevel();
      await level.open();
      await level.batch([...snapshot.entries()].map(([first, bytes]) => ({ type: 'put' as const, key: ledgerKey(first), value: bytes })), VIEW);
      for await (const [key, value] of prepared.iterator<Uint8Array, Uint8Array>({ ...VIEW, gte: Uint8Array.of(0), lt: Uint8Array.of(KeySpace.ledger) })) await level.put(key, value, VIEW);
      for await (const [key, value] of prepared.iterator<Uint8Array, Uint8Array>({ ...VIEW, gt: Uint8Array.of(KeySpace.ledger + 1) })) await level.put(key, value, VIEW);
      await level.compactRange();
      level.failWrite({ code: 'EIO', after: writes, sticky: true });
      let opened: FactStore | null = null;
      try {
        opened = await FactStore.open('/db', { fs, level });
      } catch (error) {
        expect((error as FactError).code).toBe('FACT_IO');
      }
      if (opened !== null) {
        await opened.close().catch(() => undefined);
        break;
      }
      crashedAt++;
      const reopened = await FactStore.open('/db', { fs, level: level.crash(rng) });
      expect(exactDump(await everything(reopened)), `crash at write ${writes}`).toBe(exactDump(before));
      expect((await reopened.verify()).ok).toBe(true);
      await reopened.close();
    }
    // The marker batch, its barrier, three rewrite batches, their barrier, the marker's delete at least.
    expect(crashedAt).toBeGreaterThanOrEqual(6);
  });

  it('a WAL record an older version logged (a chunk without checksums) is replayed as its format-4 rewrite (row 7)', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    let db = await FactStore.open('/db', memoryOptions(fs, level));
    await populate(db);
    const before = await everything(db);
    await db.close();
    // What a format-3 version would have logged next, appending one event, and crashed before applying it.
    const donor = newMemoryLevel();
    const other = await FactStore.open('/donor', memoryOptions(new SimFileSystem(), donor));
    await other.append(Array.from({ length: 604 }, () => ({ type: 'Pad' })));
    await other.appendStream('order-9', { type: 'Late', data: richData(9), tags: ['order:9'] });
    await other.close();
    const old = oldLayout((await ledger(donor)).get(605)!, 605, 3);
    const payload = Buffer.alloc(12 + 4 + old.length);
    writeU64BE(payload, 0, 605);
    payload.writeUInt32BE(1, 8);
    payload.writeUInt32BE(old.length, 12);
    payload.set(old, 16);
    const wal = await Wal.open('/db/wal', { fs });
    await wal.append(payload, { type: WAL_RECORD_COMMIT });
    await wal.sync();
    await wal.close();

    db = await FactStore.open('/db', memoryOptions(fs, level));
    const stored = (await ledger(level)).get(605)!;
    expect(isChecksummedChunk(stored)).toBe(true);
    expect(Buffer.from(stored).equals(Buffer.from(upgradeChunk(old, 605)))).toBe(true);
    const late = await db.read({ stream: 'order-9' }).toArray();
    expect(late.map(({ type, data, position, streamPosition }) => ({ type, data, position, streamPosition }))).toEqual([{ type: 'Late', data: richData(9), position: 605, streamPosition: 1 }]);
    expect((await db.read('all', { limit: 604 }).toArray())).toEqual(before.all);
    // verify() compares the old record with its rewrite.
    expect((await db.verify()).problems).toEqual([]);
    await db.close();
  });

  it('a store refuses a format it does not know, as an older version refuses the newer format (row 5b)', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    await (await FactStore.open('/db', memoryOptions(fs, level))).close();
    await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(6), VIEW);
    await expectFactError(() => FactStore.open('/db', memoryOptions(fs, level)), 'FACT_CORRUPTION', /storage format 6; this version reads 5/);
  });

  it('a format-4 store opens as format 5 with nothing else changed (row 5d)', async () => {
    const fs = new SimFileSystem();
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', memoryOptions(fs, level));
    await db.append([{ type: 'A', tags: ['t'] }, { type: 'B', data: { n: 1 } }]);
    await db.close();
    await level.put<Uint8Array, Uint8Array>(metaKey('format'), u64(4), VIEW);
    const before = new Map<string, string>();
    for await (const [key, value] of level.iterator({ keyEncoding: 'view', valueEncoding: 'view' })) before.set(Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'));
    const reopened = await FactStore.open('/db', memoryOptions(fs, level));
    expect(readU64BE((await level.get<Uint8Array, Uint8Array>(metaKey('format'), VIEW))!, 0)).toBe(5);
    expect((await reopened.read().toArray()).map((event) => event.type)).toEqual(['A', 'B']);
    await reopened.close();
    const after = new Map<string, string>();
    for await (const [key, value] of level.iterator({ keyEncoding: 'view', valueEncoding: 'view' })) after.set(Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'));
    const formatKey = Buffer.from(metaKey('format')).toString('hex');
    const appliedKey = Buffer.from(metaKey('applied')).toString('hex');
    for (const key of [formatKey, appliedKey]) {
      before.delete(key);
      after.delete(key);
    }
    expect(after).toEqual(before);
  });
});

function catchError(action: () => unknown): FactError | undefined {
  try {
    action();
  } catch (error) {
    return error as FactError;
  }
  return undefined;
}

/** Layout helpers, from the spec's table: n at 17, c at 19 + n, ends at 21 + n. */
function layout(bytes: Uint8Array) {
  const n = (bytes[17]! << 8) | bytes[18]!;
  const count = (bytes[19 + n]! << 8) | bytes[20 + n]!;
  const ends = Array.from({ length: count }, (_, index) => readU64BE(Uint8Array.of(0, 0, 0, 0, ...bytes.subarray(21 + n + 4 * index, 25 + n + 4 * index)), 0));
  return { ends, eventsAt: 25 + n + 8 * count };
}
function eventAreaSize(bytes: Uint8Array): number {
  return bytes.length - layout(bytes).eventsAt;
}
function eventStart(bytes: Uint8Array, index: number): number {
  return index === 0 ? 0 : layout(bytes).ends[index - 1]!;
}
function eventIndexAt(bytes: Uint8Array, offset: number): number {
  return layout(bytes).ends.findIndex((end) => offset < end);
}
function readFirst(chunks: Map<number, Uint8Array>, bytes: Uint8Array): number {
  for (const [first, value] of chunks) if (value === bytes) return first;
  throw new Error('not in the ledger');
}
export type { RecordedEvent };
