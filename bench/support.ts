/**
 * Helpers shared by bench/append.bench.ts and bench/query.bench.ts: temp dirs, the SQLite
 * baseline connection, statistics, RSS sampling, formatting and the results file. Benches
 * report; they never fail on a missed target.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { median, quantileSorted } from 'simple-statistics';
import type { EventInput } from '../src/index.js';

export type SqliteDatabase = Database.Database;

/** Opens a SQLite baseline database: WAL journal, synchronous=FULL (fsync at every commit). */
export function openSqlite(file: string): SqliteDatabase {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}

export function freshDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `factstore-${prefix}-`));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Bytes under a directory (or one file). */
export function diskBytes(target: string): number {
  const stat = fs.statSync(target, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return stat.size;
  return fs.readdirSync(target).reduce((sum, name) => sum + diskBytes(path.join(target, name)), 0);
}

export interface Latency {
  p50Ms: number;
  p99Ms: number;
}

export function latency(samplesMs: readonly number[]): Latency {
  if (samplesMs.length === 0) return { p50Ms: Number.NaN, p99Ms: Number.NaN };
  const sorted = Array.from(Float64Array.from(samplesMs).sort());
  return { p50Ms: quantileSorted(sorted, 0.5), p99Ms: quantileSorted(sorted, 0.99) };
}

/** Median over rounds of (value / reference) paired within each round. */
export function pairedRatio(values: readonly number[], references: readonly number[]): number {
  return median(values.map((value, index) => value / references[index]!));
}

export { median };

/** A collectable heap (V8 flag set at run time, so `tsx` needs no --expose-gc). */
let gcFunction: (() => void) | null = null;
export function collectGarbage(): void {
  if (gcFunction === null) {
    v8.setFlagsFromString('--expose-gc');
    gcFunction = vm.runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
}

export const rssMB = () => process.memoryUsage.rss() / 2 ** 20;

/** A small seeded PRNG (mulberry32), so both systems see the same workload. */
export { mulberry32 as prng } from '../src/wal/prng.js';

export const fmtInt = (value: number) => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–');
export const fmtMs = (value: number) => (Number.isFinite(value) ? value.toFixed(3) : '–');
export const fmtRatio = (value: number) => (Number.isFinite(value) ? `${value.toFixed(2)}×` : '–');
export const fmtMB = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : '–');

export function cpuModel(): string {
  return os.cpus()[0]?.model.trim() ?? 'unknown';
}

export function machine() {
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: { model: cpuModel(), count: os.cpus().length },
    loadAverage: os.loadavg(),
    tmpdir: os.tmpdir(),
  };
}

export interface Target {
  name: string;
  measured: number;
  /** How the measured value is shown. */
  unit: 'ratio' | 'ms' | 'bytes';
  target: number;
  /** 'min': measured ≥ target passes; 'max': measured ≤ target passes. */
  kind: 'min' | 'max';
}

export function judge(targets: Target[]): (Target & { pass: boolean })[] {
  return targets.map((t) => ({ ...t, pass: Number.isFinite(t.measured) && (t.kind === 'min' ? t.measured >= t.target : t.measured <= t.target) }));
}

export function targetTable(targets: (Target & { pass: boolean })[]): string[] {
  const show = (t: Target) => (t.unit === 'ratio' ? fmtRatio(t.measured) : t.unit === 'bytes' ? `${fmtInt(t.measured)} B` : `${fmtMs(t.measured)} ms`);
  return ['| target | measured | result |', '| --- | ---: | --- |', ...targets.map((t) => `| ${t.name} | ${show(t)} | ${t.pass ? 'PASS' : 'MISS'} |`)];
}

export function writeResults(name: string, report: object): string {
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  return file;
}

export const log = (line: string) => process.stderr.write(`${line}\n`);

const ORDER_EVENT_TYPES = ['OrderPlaced', 'ItemAdded', 'ItemRemoved', 'OrderShipped'] as const;

/** The benches' typical small event (≈ 200 B of CBOR) with the given tags: the same objects go to every system compared. */
export function orderEvent(index: number, tags: string[]): EventInput {
  return {
    type: ORDER_EVENT_TYPES[index % ORDER_EVENT_TYPES.length]!,
    data: {
      orderId: `o-${index % 5000}`,
      sku: `SKU-${(index * 7919) % 100000}`,
      quantity: 1 + (index % 7),
      priceCents: 199 + ((index * 31) % 10000),
      currency: 'EUR',
      note: index % 3 === 0 ? 'gift wrap, leave at the door' : null,
    },
    metadata: { correlationId: `c-${index}`, userId: `u-${index % 977}` },
    tags,
  };
}
