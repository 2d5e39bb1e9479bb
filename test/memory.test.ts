/**
 * Memory is bounded whatever the store's size: a child process (test/fixtures/memory-child.ts)
 * with a small V8 heap limit bulk-loads events from 8 concurrent 1000-event appenders into a
 * store on disk (classic-level, real WAL), then scans them all. If anything kept what it loaded
 * (the unapplied tail, decoded chunks, …), the child dies with "JavaScript heap out of memory".
 *
 * FACT_MEMORY_EVENTS=<n> sets the number of events (default 400,000; the README's figures are
 * for FACT_MEMORY_EVENTS=2000000).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const childScript = join(here, 'fixtures', 'memory-child.ts');

const EVENTS = Number.parseInt(process.env.FACT_MEMORY_EVENTS ?? '400000', 10);
/** The V8 heap (old space) the child may use: what the README states a load and a scan need. */
const MEMORY_HEAP_SIZE_MB_MAX = 64;
/** Load at ≥ 50k events/s even on a busy machine, plus the child's start-up. */
const MEMORY_TEST_TIMEOUT_MS = 30_000 + EVENTS / 50;

const tempDirs: string[] = [];

afterEach(async () => {
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function runChild(dir: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${MEMORY_HEAP_SIZE_MB_MAX}`, '--import', 'tsx', childScript, dir, String(EVENTS)], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe('memory (real process with a heap limit)', () => {
  it(
    `loads ${EVENTS} events from 8 concurrent 1000-event appenders and scans them all within a ${MEMORY_HEAP_SIZE_MB_MAX} MiB heap`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'factstore-memory-'));
      tempDirs.push(dir);
      const { code, signal, stdout, stderr } = await runChild(join(dir, 'db'));
      expect(stderr, 'the child ran out of heap').not.toMatch(/heap out of memory/);
      expect({ code, signal }, `child failed; stderr:\n${stderr.slice(-4000)}`).toEqual({ code: 0, signal: null });
      const report = JSON.parse(stdout) as { events: number; load: { ms: number }; scan: { ms: number } };
      expect(report.events).toBe(EVENTS);
      expect(report.load.ms).toBeGreaterThan(0);
      expect(report.scan.ms).toBeGreaterThan(0);
    },
    MEMORY_TEST_TIMEOUT_MS,
  );
});
