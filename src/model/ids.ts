/**
 * Event ids the store generates (docs/storage-format.md, "Generated ids"): a UUID of version 8
 * made of the database's random id prefix and the event's position, the position mixed by a
 * keyed permutation so that ids of consecutive events do not look consecutive. The ledger stores
 * no id for such an event and the id index holds no entry for it: the id is derived when the
 * event is read, and an id lookup inverts it. Ids of other stores, and ids callers chose, are
 * stored and indexed as given.
 */
import { randomBytes } from 'node:crypto';
import { assert } from '../errors.js';

/** Random bytes decided when a database is created: 8 for the id prefix, 8 for the permutation keys. */
export const ID_SEED_SIZE_BYTES = 16;
/** Positions fit 53 bits: 22 in the permutation's high half, 31 in its low half. */
const HALF_BITS = 31;
const HALF_RANGE = 2 ** HALF_BITS;
const HIGH_HALF_MAX = 2 ** 22;
const ROUNDS = 4;
const UUID_LENGTH = 36;

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

export function newIdSeed(): Uint8Array {
  return new Uint8Array(randomBytes(ID_SEED_SIZE_BYTES));
}

/**
 * A Feistel round function on 31-bit halves: a keyed multiply–xorshift mix (murmur3-like, not
 * murmur3's finaliser). Every existing id depends on these constants: test/ids.test.ts pins them.
 */
function round(half: number, key: number): number {
  let mixed = Math.imul(half ^ key, 0x9e3779b1);
  mixed ^= mixed >>> 15;
  mixed = Math.imul(mixed, 0x85ebca6b);
  mixed ^= mixed >>> 13;
  return mixed & (HALF_RANGE - 1);
}

function hexByte(text: string, offset: number): number {
  const high = hexDigit(text.charCodeAt(offset));
  const low = hexDigit(text.charCodeAt(offset + 1));
  return high < 0 || low < 0 ? -1 : (high << 4) | low;
}

/** Lowercase hex only: generated ids are lowercase, so an uppercase id is another id. */
function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/** Byte offsets of the 16 UUID bytes in its 8-4-4-4-12 text form. */
const BYTE_OFFSETS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/**
 * The ids of one database. Recovery learns the seed (from LevelDB or the WAL, or makes one) after
 * the store's readers exist, so it is set once with `useSeed`, before any event is read.
 */
export class GeneratedIds {
  #prefixText = '';
  #keys: number[] = [];
  #seed: Uint8Array | null = null;

  get seed(): Uint8Array | null {
    return this.#seed;
  }

  useSeed(seed: Uint8Array): void {
    assert(this.#seed === null, 'the id seed is set once');
    assert(seed.length === ID_SEED_SIZE_BYTES, 'an id seed has ID_SEED_SIZE_BYTES bytes');
    // Copies (a Buffer's slice would be a view into the caller's bytes).
    this.#seed = Uint8Array.from(seed);
    // UUID bytes 0–7, the same for every id of the database, with the version nibble 8.
    const prefix = Uint8Array.from(seed.subarray(0, 8));
    prefix[6] = 0x80 | (prefix[6]! & 0x0f);
    const view = new DataView(seed.buffer, seed.byteOffset + 8, 8);
    const first = view.getUint32(0);
    const second = view.getUint32(4);
    this.#keys = [first, second, first ^ 0x5bd1e995, second ^ 0x1b873593].map((key) => key & (HALF_RANGE - 1));
    const hex = Array.from(prefix, (byte) => HEX[byte]!);
    this.#prefixText = `${hex.slice(0, 4).join('')}-${hex.slice(4, 6).join('')}-${hex.slice(6, 8).join('')}-`;
  }

  /** The id of the event at `position` (1 … 2^53 − 1). */
  id(position: number): string {
    assert(this.#seed !== null, 'ids are derived only once the seed is known');
    let high = Math.floor(position / HALF_RANGE);
    let low = position % HALF_RANGE;
    for (let index = 0; index < ROUNDS; index++) {
      const next = high ^ round(low, this.#keys[index]!);
      high = low;
      low = next;
    }
    // Bytes 8–15: the variant bits 10, then high (31 bits) and low (31 bits).
    return (
      this.#prefixText +
      HEX[0x80 | (high >>> 25)]! +
      HEX[(high >>> 17) & 0xff]! +
      '-' +
      HEX[(high >>> 9) & 0xff]! +
      HEX[(high >>> 1) & 0xff]! +
      HEX[((high & 1) << 7) | (low >>> 24)]! +
      HEX[(low >>> 16) & 0xff]! +
      HEX[(low >>> 8) & 0xff]! +
      HEX[low & 0xff]!
    );
  }

  /** The position whose generated id `id` is, or null when `id` is not one this database generates. */
  position(id: string): number | null {
    assert(this.#seed !== null, 'ids are looked up only once the seed is known');
    if (id.length !== UUID_LENGTH || !id.startsWith(this.#prefixText)) return null;
    const bytes: number[] = [];
    for (let index = 8; index < 16; index++) {
      const byte = hexByte(id, BYTE_OFFSETS[index]!);
      if (byte < 0) return null;
      bytes.push(byte);
    }
    if (id[23] !== '-' || (bytes[0]! & 0xc0) !== 0x80) return null;
    let high = ((bytes[0]! & 0x3f) << 25) | (bytes[1]! << 17) | (bytes[2]! << 9) | (bytes[3]! << 1) | (bytes[4]! >>> 7);
    let low = ((bytes[4]! & 0x7f) << 24) | (bytes[5]! << 16) | (bytes[6]! << 8) | bytes[7]!;
    for (let index = ROUNDS - 1; index >= 0; index--) {
      const previous = low ^ round(high, this.#keys[index]!);
      low = high;
      high = previous;
    }
    if (high >= HIGH_HALF_MAX) return null;
    const position = high * HALF_RANGE + low;
    return position >= 1 ? position : null;
  }
}
