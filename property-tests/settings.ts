/**
 * Shared settings of the property tests, from the environment, so that every failure can be
 * replayed and a heavy run needs no code change:
 *
 * - FACT_PROPERTY_RUNS: runs per property (each file picks a default that keeps it fast);
 * - FACT_SEED: the seed fast-check printed for a failure;
 * - FACT_PATH: the path fast-check printed for a failure (replays only the failing case);
 * - FACT_END_ON_FAILURE=1: stop at the first failure without shrinking (quick diagnosis).
 *
 * Example: FACT_SEED=-1234 FACT_PATH="7:1:0" npx vitest run property-tests/wal.property.test.ts
 */
import fc from 'fast-check';

function integerFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** Runs per property: FACT_PROPERTY_RUNS when set (≥ 1), else `defaultRuns`. */
export function propertyRuns(defaultRuns: number): number {
  const runs = integerFromEnv('FACT_PROPERTY_RUNS');
  if (runs === undefined) return defaultRuns;
  if (runs < 1) throw new Error(`FACT_PROPERTY_RUNS must be at least 1, got ${runs}`);
  return runs;
}

export interface PropertyParams {
  numRuns: number;
  seed?: number;
  path?: string;
  endOnFailure?: boolean;
  /** Per run, ms: a run that hangs fails with its seed and path instead of timing out the test. */
  timeout: number;
}

/** Generous: runs take milliseconds; only a hang (an operation that never settles) reaches it. */
export const PROPERTY_RUN_TIMEOUT_MS = 30_000;

/** Parameters for fc.assert: runs, plus seed and path to replay a reported failure. */
export function propertyParams(defaultRuns: number): PropertyParams {
  const params: PropertyParams = { numRuns: propertyRuns(defaultRuns), timeout: PROPERTY_RUN_TIMEOUT_MS };
  const seed = integerFromEnv('FACT_SEED');
  if (seed !== undefined) params.seed = seed;
  const path = process.env.FACT_PATH;
  if (path !== undefined && path.trim() !== '') params.path = path.trim();
  if (process.env.FACT_END_ON_FAILURE === '1') params.endOnFailure = true;
  return params;
}

/** A test timeout that grows with the number of runs (vitest's default would cut heavy runs). */
export function propertyTimeoutMs(defaultRuns: number, msPerRun: number, minimumMs = 60_000): number {
  return Math.max(minimumMs, propertyRuns(defaultRuns) * msPerRun);
}

/**
 * fc.assert, with a one-line replay command appended to a failure's message (the seed and path
 * fast-check reports, as the environment variables above, and the test file).
 */
export async function assertReplayable<Ts>(property: fc.IAsyncProperty<Ts>, params: fc.Parameters<Ts>, testFile: string): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (error) {
    if (error instanceof Error) {
      const found = /seed: (-?\d+), path: "([^"]*)"/.exec(error.message);
      if (found !== null) error.message += `\nreplay: FACT_SEED=${found[1]} FACT_PATH="${found[2]}" npx vitest run ${testFile}`;
    }
    throw error;
  }
}
