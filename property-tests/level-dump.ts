/** LevelDB's whole content as hex `key=value` lines, the index key spaces apart from the rest (for byte-for-byte comparisons). */
import { expect } from 'vitest';
import { INDEX_KEY_SPACES, spaceRange } from '../src/storage/keys.js';
import type { LossyLevel } from '../src/testing/index.js';
import { hex } from '../test/support/backends.js';

export async function dumpLevel(level: LossyLevel): Promise<{ indexes: string[]; rest: string[] }> {
  const indexes: string[] = [];
  const rest: string[] = [];
  const spaces = new Set<number>(INDEX_KEY_SPACES);
  for await (const [key, value] of level.iterator<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' })) {
    (spaces.has(key[0]!) ? indexes : rest).push(`${hex(key)}=${hex(value)}`);
  }
  // Sanity: the index spaces hold what spaceRange says they do.
  let inRanges = 0;
  for (const space of INDEX_KEY_SPACES) {
    for await (const key of level.keys<Uint8Array>({ keyEncoding: 'view', ...spaceRange(space) })) {
      void key;
      inRanges++;
    }
  }
  expect(inRanges, 'index key spaces hold what spaceRange says').toBe(indexes.length);
  return { indexes, rest };
}
