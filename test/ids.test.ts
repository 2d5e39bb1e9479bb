/** Generated event ids (src/ledger/ids.ts): UUID v8 from the id seed and the position, invertible. */
import { describe, expect, it } from 'vitest';
import { GeneratedIds, ID_SEED_SIZE_BYTES, newIdSeed } from '../src/ledger/ids.js';

const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function idsOf(seed: Uint8Array): GeneratedIds {
  const ids = new GeneratedIds();
  ids.useSeed(seed);
  return ids;
}

describe('GeneratedIds', () => {
  const seed = Uint8Array.from({ length: ID_SEED_SIZE_BYTES }, (_, index) => (index * 37 + 11) & 0xff);
  const ids = idsOf(seed);

  it('makes version-8 UUIDs that invert to their position, at the edges of the position range too', () => {
    const positions = [1, 2, 3, 255, 256, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER];
    for (let n = 0; n < 2000; n++) positions.push(1 + Math.floor(Math.random() * (Number.MAX_SAFE_INTEGER - 1)));
    for (const position of positions) {
      const id = ids.id(position);
      expect(id, String(position)).toMatch(UUID_V8);
      expect(ids.position(id), id).toBe(position);
    }
  });

  it('gives consecutive positions unrelated-looking, distinct ids that share the database prefix', () => {
    const made = Array.from({ length: 10_000 }, (_, index) => ids.id(index + 1));
    expect(new Set(made).size).toBe(made.length);
    const prefix = made[0]!.slice(0, 19);
    for (const id of made) expect(id.slice(0, 19)).toBe(prefix);
    // Neighbours differ in most of their last 12 hex digits, not just the final one.
    const differing = [...made[0]!.slice(24)].filter((digit, index) => digit !== made[1]!.slice(24)[index]).length;
    expect(differing).toBeGreaterThan(4);
  });

  it('recognises only its own lowercase ids of positions that can exist', () => {
    const id = ids.id(42);
    expect(ids.position(id.toUpperCase())).toBeNull();
    expect(ids.position(id.slice(0, 35))).toBeNull();
    expect(ids.position(`${id}0`)).toBeNull();
    expect(ids.position(id.replace(/-/g, '_'))).toBeNull();
    expect(ids.position('not an id')).toBeNull();
    // Another database's id of the same position.
    const other = idsOf(newIdSeed());
    expect(other.id(42)).not.toBe(id);
    expect(ids.position(other.id(42))).toBeNull();
    // The same prefix but a variant other than 10.
    expect(ids.position(`${id.slice(0, 19)}0${id.slice(20)}`)).toBeNull();
    // Bits that invert to a position beyond 2^53 − 1: some ids of the prefix map to none.
    let unmapped = 0;
    for (let n = 0; n < 64; n++) {
      const tail = Array.from({ length: 15 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
      if (ids.position(`${id.slice(0, 19)}8${tail.slice(0, 3)}-${tail.slice(3)}`) === null) unmapped++;
    }
    expect(unmapped).toBeGreaterThan(32);
  });

  it('is deterministic for a seed and refuses use before the seed is set', () => {
    expect(idsOf(seed).id(7)).toBe(ids.id(7));
    expect(() => new GeneratedIds().id(1)).toThrow(/seed/);
  });
});
