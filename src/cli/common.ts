/** What every command shares: opening a database, failing with one line and an exit code, progress bars, stdout writes. */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { FactStore, isFactError, type FactStoreOptions } from '../index.js';

/** Exit codes: 0 ok, 1 failure, 2 usage error. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A failure the command reports as one line (`factstore: <command>: <message>`) with its exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILURE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Opens the database at `path`; commands that only look at one never create it. */
export async function openStore(path: string, options: { create?: boolean } = {}): Promise<FactStore> {
  const open: FactStoreOptions = { createIfMissing: options.create ?? false };
  try {
    return await FactStore.open(path, open);
  } catch (error) {
    if (isFactError(error) && error.code === 'FACT_NOT_FOUND') throw new CliError(`${path}: not a factstore database (no ${path}/wal)`);
    if (isFactError(error) && error.code === 'FACT_LOCKED') throw new CliError(`${path}: the database is in use by another process (${error.message})`);
    throw error;
  }
}

/** Runs `work` with the database open and closes it whatever happens; a close failure is reported unless work failed first. */
export async function withStore<T>(path: string, options: { create?: boolean }, work: (db: FactStore) => Promise<T>): Promise<T> {
  const db = await openStore(path, options);
  let result: T;
  try {
    result = await work(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  await db.close();
  return result;
}

/** A whole-number option ≥ `min` (commander's argParser: its error is a usage error). */
export function integerOption(min = 0): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < min) throw new InvalidArgumentError(`expected an integer ≥ ${min}`);
    return number;
  };
}

export interface Progress {
  update(value: number, total?: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update: () => undefined, stop: () => undefined };

/** A progress bar on stderr when it is a terminal or `forced` (--progress); never on stdout, so piping stays clean. */
export function progressBar(label: string, total: number, forced: boolean | undefined, unit = 'events'): Progress {
  if (!forced && !process.stderr.isTTY) return NO_PROGRESS;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% {value}/{total} ${unit} | {eta_formatted} left`, noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 1000, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(Math.max(total, 1), 0);
  let stopped = false;
  return {
    update: (value, newTotal) => {
      if (newTotal !== undefined) bar.setTotal(Math.max(newTotal, 1));
      bar.update(value);
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/** Writes text to a stream, waiting for 'drain' when its buffer is full (an export does not fill memory). */
export async function write(stream: Writable, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, 'drain');
}
