/**
 * docs/storage-format.md's worked example, checked against what the store writes: the doc's
 * key/value lines are parsed (letter = key space, `·` = 0x00, 16 hex digits = u64, other words
 * = UTF-8) and must equal the LevelDB contents after the example's append, byte for byte.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { FactStore } from '../src/index.js';
import { CHUNK_KIND_APPEND_FIRST, CHUNK_KIND_CHECKSUMMED_OFFSET, decodeChunk } from '../src/model/chunk.js';
import { metaKey } from '../src/storage/keys.js';
import { SimFileSystem } from '../src/wal/sim-file-system.js';
import { hex, newMemoryLevel } from './support/backends.js';

const doc = readFileSync(fileURLToPath(new URL('../docs/storage-format.md', import.meta.url)), 'utf8');
const example = /### Worked example[\s\S]*?\n```\n(L [\s\S]*?)```/.exec(doc)![1]!;
/** The example's chunk, spelled out in hex: the first column of its lines (the rest is commentary). */
const exampleChunk = /### Worked example[\s\S]*?\n```chunk\n([\s\S]*?)```/.exec(doc)![1]!
  .trim()
  .split('\n')
  .map((line) => /^((?:[0-9a-f]{2,}\s?)+?)\s{2,}/.exec(line)![1]!.replace(/\s/g, ''))
  .join('');
const EXAMPLE_CLOCK_MS = 1767225600000;

function bytesOf(words: string[], ids: readonly string[]): Buffer {
  return Buffer.concat(
    words.map((word) => {
      if (word === '·') return Buffer.of(0);
      if (/^[0-9a-f]{16}$/.test(word)) return Buffer.from(word, 'hex');
      if (/^#[0-9a-f]{2}$/.test(word)) return Buffer.from(word.slice(1), 'hex');
      const id = /^<id(\d+)>$/.exec(word);
      if (id) return Buffer.from(ids[Number(id[1]) - 1]!);
      return Buffer.from(word);
    }),
  );
}

describe('docs/storage-format.md', () => {
  it('the worked example lists exactly the keys and values the store writes', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(EXAMPLE_CLOCK_MS);
    const level = newMemoryLevel();
    const db = await FactStore.open('/db', { fs: new SimFileSystem(), level, levelDurability: 'volatile' });
    await db.appendStream('course-c1', [
      { type: 'CourseDefined', tags: ['course:c1'] },
      { type: 'SeatsAdded', tags: ['course:c1'] },
      { type: 'SeatsAdded', tags: ['course:c1'] },
    ]);
    const events = await db.read().toArray();
    const ids = events.map((event) => event.id);
    await db.close();
    vi.restoreAllMocks();

    const stored = new Map<string, Buffer>();
    for await (const [key, value] of level.iterator()) stored.set(hex(key), Buffer.from(value));
    // Written at open, not by the append.
    stored.delete(hex(metaKey('format')));
    stored.delete(hex(metaKey('idSeed')));

    const lines = example.trim().split('\n');
    expect(exampleChunk.length).toBe(2 * 160);
    expect(lines.length).toBe(stored.size);
    for (const line of lines) {
      const [keyText, valueText] = line.split('→').map((part) => part.trim()) as [string, string];
      const [space, ...rest] = keyText.split(/\s+/);
      const key = Buffer.concat([Buffer.from(space!), bytesOf(rest, ids)]);
      const actual = stored.get(hex(key));
      expect(actual, `key of "${line}"`).toBeDefined();
      if (valueText.startsWith('chunk')) {
        // Byte for byte, checksums included; and what it decodes to.
        expect(hex(actual!)).toBe(exampleChunk);
        const chunk = decodeChunk(actual!, 1);
        expect(actual![0]).toBe(CHUNK_KIND_APPEND_FIRST + CHUNK_KIND_CHECKSUMMED_OFFSET);
        expect({ timestamp: chunk.timestamp, stream: chunk.stream, first: chunk.firstStreamPosition }).toEqual({ timestamp: EXAMPLE_CLOCK_MS, stream: 'course-c1', first: 1 });
        expect(chunk.tuples).toEqual([
          [null, 'CourseDefined', null, {}, ['course:c1']],
          [null, 'SeatsAdded', null, {}, ['course:c1']],
          [null, 'SeatsAdded', null, {}, ['course:c1']],
        ]);
      } else {
        const expected = valueText === '(empty)' ? Buffer.alloc(0) : bytesOf(valueText.split(/\s+/), ids);
        expect(hex(actual!), `value of "${line}"`).toBe(hex(expected));
      }
    }
  });
});
