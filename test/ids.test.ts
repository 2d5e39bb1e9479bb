/** Generated event ids (src/model/ids.ts): UUID v8 from the id seed and the position, invertible. */
import { describe, expect, it } from 'vitest';
import { GeneratedIds, ID_SEED_SIZE_BYTES, newIdSeed } from '../src/model/ids.js';

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

/**
 * Fixed vectors, computed once from src/model/ids.ts: ids are stored nowhere, so a change of
 * the derivation would silently change the id of every event of every existing database.
 */
const VECTOR_POSITIONS = [1, 2, 255, 256, 2 ** 31 - 1, 2 ** 31, 2 ** 53 - 1];
const VECTORS: { seedHex: string; ids: string[] }[] = [
  {
    seedHex: '00000000000000000000000000000000',
    ids: [
      '00000000-0000-8000-b730-c3b700ad298f',
      '00000000-0000-8000-a4a6-64a5c95fc30e',
      '00000000-0000-8000-8e08-a76705e15d43',
      '00000000-0000-8000-8271-c01abb49225c',
      '00000000-0000-8000-b8a4-3365d4285fa8',
      '00000000-0000-8000-a60e-985f0c4820ef',
      '00000000-0000-8000-84e4-0f3f70fd8a2d',
    ],
  },
  {
    seedHex: 'ffffffffffffffffffffffffffffffff',
    ids: [
      'ffffffff-ffff-8fff-9205-de37b68e95d3',
      'ffffffff-ffff-8fff-8f90-4b60aca8877c',
      'ffffffff-ffff-8fff-9797-09c131c310ac',
      'ffffffff-ffff-8fff-b260-77ae1cf0eb98',
      'ffffffff-ffff-8fff-86bd-e1578e9f2732',
      'ffffffff-ffff-8fff-af11-f3e9af323ccf',
      'ffffffff-ffff-8fff-80b5-97da06a87beb',
    ],
  },
  {
    seedHex: '000102030405060708090a0b0c0d0e0f',
    ids: [
      '00010203-0405-8607-b319-15a673ae784a',
      '00010203-0405-8607-a4df-eeac55390116',
      '00010203-0405-8607-ae65-754610e09cc4',
      '00010203-0405-8607-b9c5-05591c95a032',
      '00010203-0405-8607-90fe-5bc263fb8067',
      '00010203-0405-8607-8756-6e1b319447a6',
      '00010203-0405-8607-87d1-532b2a92e207',
    ],
  },
  {
    seedHex: '0b30557a9fc4e90e33587da2c7ec1136',
    ids: [
      '0b30557a-9fc4-890e-90f6-6176d1df72eb',
      '0b30557a-9fc4-890e-9a5a-4cfeac766e06',
      '0b30557a-9fc4-890e-81c9-e62291b6f679',
      '0b30557a-9fc4-890e-b447-7d053617145e',
      '0b30557a-9fc4-890e-b78d-daf260f7dc8c',
      '0b30557a-9fc4-890e-ac34-94ab4df52198',
      '0b30557a-9fc4-890e-8d52-dda48bdd9e34',
    ],
  },
];

/**
 * The derivation as docs/storage-format.md ("Generated ids") states it, written from that text
 * alone (BigInt arithmetic, no code shared with src/model/ids.ts), so doc and code cannot drift.
 */
const spec = {
  mod32: (value: bigint) => value & 0xffffffffn,
  mask31: (value: bigint) => value & 0x7fffffffn,
  keys(seed: Uint8Array): bigint[] {
    const u32 = (offset: number) => seed.slice(offset, offset + 4).reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);
    const [a, b] = [u32(8), u32(12)];
    return [a, b, a ^ 0x5bd1e995n, b ^ 0x1b873593n].map(spec.mask31);
  },
  round(x: bigint, k: bigint): bigint {
    let m = spec.mod32((x ^ k) * 0x9e3779b1n);
    m ^= m >> 15n;
    m = spec.mod32(m * 0x85ebca6bn);
    m ^= m >> 13n;
    return spec.mask31(m);
  },
  prefix(seed: Uint8Array): string {
    const bytes = [...seed.slice(0, 8)];
    bytes[6] = 0x80 | (bytes[6]! & 0x0f);
    const hex = bytes.map((byte) => byte.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-`;
  },
  id(seed: Uint8Array, position: number): string {
    let high = BigInt(position) / 2n ** 31n;
    let low = BigInt(position) % 2n ** 31n;
    for (const key of spec.keys(seed)) [high, low] = [low, high ^ spec.round(low, key)];
    const tail = ((1n << 63n) | (high << 31n) | low).toString(16);
    return `${spec.prefix(seed)}${tail.slice(0, 4)}-${tail.slice(4)}`;
  },
  position(seed: Uint8Array, id: string): number | null {
    if (id.length !== 36 || !id.startsWith(spec.prefix(seed)) || !/^[0-9a-f]{4}-[0-9a-f]{12}$/.test(id.slice(19))) return null;
    const tail = BigInt(`0x${id.slice(19, 23)}${id.slice(24)}`);
    if (tail >> 62n !== 0b10n) return null;
    let high = (tail >> 31n) & 0x7fffffffn;
    let low = tail & 0x7fffffffn;
    for (const key of spec.keys(seed).reverse()) [high, low] = [low ^ spec.round(high, key), high];
    const position = high * 2n ** 31n + low;
    return high < 2n ** 22n && position >= 1n ? Number(position) : null;
  },
};

describe('GeneratedIds test vectors', () => {
  it('derives exactly the recorded ids, and inverts them, for seeds including all-zero and all-0xff', () => {
    for (const { seedHex, ids: expected } of VECTORS) {
      const ids = idsOf(Uint8Array.from(Buffer.from(seedHex, 'hex')));
      expect(VECTOR_POSITIONS.map((position) => ids.id(position)), seedHex).toEqual(expected);
      expect(expected.map((id) => ids.position(id)), seedHex).toEqual(VECTOR_POSITIONS);
    }
  });

  it('agrees with a reimplementation from the text of docs/storage-format.md', () => {
    for (const { seedHex, ids: expected } of VECTORS) {
      const seed = Uint8Array.from(Buffer.from(seedHex, 'hex'));
      expect(VECTOR_POSITIONS.map((position) => spec.id(seed, position)), seedHex).toEqual(expected);
      expect(expected.map((id) => spec.position(seed, id)), seedHex).toEqual(VECTOR_POSITIONS);
    }
    // The recognition rule too: both refuse and accept the same strings.
    const seed = Uint8Array.from(Buffer.from(VECTORS[3]!.seedHex, 'hex'));
    const ids = idsOf(seed);
    const probes = [ids.id(77), ids.id(77).toUpperCase(), `${ids.id(77).slice(0, 19)}4${ids.id(77).slice(20)}`];
    for (let n = 0; n < 200; n++) {
      const tail = Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
      probes.push(`${ids.id(1).slice(0, 19)}${tail.slice(0, 4)}-${tail.slice(4)}`);
    }
    for (const probe of probes) expect(spec.position(seed, probe), probe).toBe(ids.position(probe));
  });
});
