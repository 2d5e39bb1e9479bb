/**
 * What the two fuzzers (fuzz-files, fuzz-calls) share: an independent rendering of read results
 * (no production encoder as the oracle), canonical dumps of LevelDB and of the WAL's files, a
 * per-case timeout that turns a hang into a failure, and the heavy-mode scale.
 */
import { MemoryLevel } from 'memory-level';
import type { LevelDatabase } from '../src/storage/level.js';
import type { SimFileSystem } from '../src/testing/index.js';
import { isFactError } from '../src/errors.js';

/**
 * FACT_FUZZ_SCALE multiplies the fuzzers' default case counts (heavy mode: 100). FACT_PROPERTY_RUNS,
 * when set, wins (it is the exact number of cases of each property, as in the other property tests).
 */
export function fuzzScale(): number {
  const raw = process.env.FACT_FUZZ_SCALE;
  if (raw === undefined || raw.trim() === '') return 1;
  const scale = Number(raw);
  if (!Number.isSafeInteger(scale) || scale < 1) throw new Error(`FACT_FUZZ_SCALE must be an integer ≥ 1, got ${JSON.stringify(raw)}`);
  return scale;
}

/** A case that has not settled after this long hangs: it fails with its seed and path. */
export const FUZZ_CASE_TIMEOUT_MS = 10_000;

export class HangError extends Error {}

/** `work()`, or a HangError naming `what` after `ms`. */
export async function withinTime<T>(what: string, work: () => Promise<T>, ms = FUZZ_CASE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HangError(`hang: ${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work(), hang]);
  } finally {
    clearTimeout(timer);
  }
}

export function newMemoryLevel(): MemoryLevel<Uint8Array, Uint8Array> {
  return new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Every LevelDB entry, in key order. */
export async function levelEntries(db: LevelDatabase): Promise<[Uint8Array, Uint8Array][]> {
  const entries: [Uint8Array, Uint8Array][] = [];
  for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' })) entries.push([Uint8Array.from(key), Uint8Array.from(value)]);
  return entries;
}

export async function levelDump(db: LevelDatabase): Promise<string> {
  return (await levelEntries(db)).map(([key, value]) => `${hex(key)}=${hex(value)}`).join('\n');
}

/** Every file of a directory of the simulated disk with its bytes (names sorted). */
export async function filesDump(fs: SimFileSystem, dir: string): Promise<string> {
  const lines: string[] = [];
  for (const name of await fs.readdir(dir)) {
    const bytes = await fs.readFile(`${dir}/${name}`);
    lines.push(`${name}:${bytes === null ? '-' : hex(bytes)}`);
  }
  return lines.join('\n');
}

/**
 * A value as text that tells apart everything a read can return (types, -0, NaN, own keys in
 * order with `__proto__` as a key, undefined members, typed arrays by kind), written from the
 * JavaScript values, not from factstore's encoder.
 */
export function show(value: unknown, depth = 0): string {
  if (depth > 200) return '…';
  if (value === null) return 'null';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'boolean':
      return String(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return `${value}n`;
    case 'string':
      return JSON.stringify(value);
    case 'symbol':
    case 'function':
      return `<${typeof value}>`;
    default:
      break;
  }
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${hex(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))})`;
  if (value instanceof Date) return `Date(${value.getTime()})`;
  if (value instanceof Map) return `Map{${[...value].map(([k, v]) => `${show(k, depth + 1)}=>${show(v, depth + 1)}`).join(',')}}`;
  if (value instanceof Set) return `Set{${[...value].map((v) => show(v, depth + 1)).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map((v) => show(v, depth + 1)).join(',')}]`;
  const object = value as Record<string, unknown>;
  const proto = Object.getPrototypeOf(object) as object | null;
  const kind = proto === Object.prototype || proto === null ? '' : ((proto as { constructor?: { name?: string } }).constructor?.name ?? '?');
  const keys = Object.getOwnPropertyNames(object);
  return `${kind}{${keys.map((key) => `${JSON.stringify(key)}:${show(object[key], depth + 1)}`).join(',')}}`;
}

/** A thrown value as one line: FactErrors by code and message, anything else by constructor. */
export function describeError(error: unknown): string {
  if (isFactError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.constructor.name} (not a FactError): ${error.message}\n${error.stack ?? ''}`;
  return `a thrown ${typeof error} (not an Error): ${String(error)}`;
}

/** "kind → outcome → count" as a table for console.log. */
export class Tally {
  readonly #counts = new Map<string, Map<string, number>>();

  add(kind: string, outcome: string): void {
    let row = this.#counts.get(kind);
    if (row === undefined) this.#counts.set(kind, (row = new Map<string, number>()));
    row.set(outcome, (row.get(outcome) ?? 0) + 1);
  }

  get total(): number {
    let total = 0;
    for (const row of this.#counts.values()) for (const count of row.values()) total += count;
    return total;
  }

  format(title: string): string {
    const lines = [`${title}: ${this.total} cases`];
    for (const [kind, row] of [...this.#counts].sort(([a], [b]) => a.localeCompare(b))) {
      const parts = [...row].sort(([a], [b]) => a.localeCompare(b)).map(([outcome, count]) => `${outcome} ${count}`);
      lines.push(`  ${kind.padEnd(28)} ${parts.join(', ')}`);
    }
    return lines.join('\n');
  }
}
