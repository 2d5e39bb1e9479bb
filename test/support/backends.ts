/**
 * What the suites that run once per LevelDB backend share: the backends (memory-level with the
 * WAL on SimFileSystem, classic-level on real files) and small assertion helpers.
 */
import { MemoryLevel } from 'memory-level';
import { expect } from 'vitest';
import { FactError } from '../../src/index.js';
import { SimFileSystem } from '../../src/testing/index.js';
import type { FactErrorCode, FactStoreOptions, LevelDatabase, RecordedEvent } from '../../src/index.js';

/** Options to open the database at a path; the same path gets the same storage on every open. */
export type OptionsFor = (dbPath: string) => FactStoreOptions;

export function newMemoryLevel(): MemoryLevel<Uint8Array, Uint8Array> {
  return new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
}

/** memory-level ledger, WAL on one SimFileSystem; a path keeps its MemoryLevel across opens. */
export function memoryBackend(): OptionsFor {
  const fs = new SimFileSystem();
  const levels = new Map<string, LevelDatabase>();
  return (dbPath) => {
    let level = levels.get(dbPath);
    if (level === undefined) {
      level = newMemoryLevel();
      levels.set(dbPath, level);
    }
    // memory-level keeps nothing across a restart: it needs no durability barrier.
    return { level, fs, levelDurability: 'volatile' };
  };
}

/** classic-level at `<path>/ledger`, WAL on real files: FactStore's defaults. */
export function classicBackend(): OptionsFor {
  return () => ({});
}

/** Runs `action` and checks it fails with a FactError of `code` (and a message matching). */
export async function expectFactError(action: () => unknown, code: FactErrorCode, message?: RegExp): Promise<FactError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(FactError);
  const error = caught as FactError;
  expect(error.code, error.message).toBe(code);
  if (message) expect(error.message).toMatch(message);
  return error;
}

export const positionsOf = (events: readonly RecordedEvent[]) => events.map((event) => event.position);
export const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
