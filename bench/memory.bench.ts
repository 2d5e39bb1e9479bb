/**
 * The heap a bulk load and a full scan need (`npm run bench:memory`).
 *
 * Runs test/fixtures/memory-child.ts in child processes with `--max-old-space-size=N`: the load
 * (BENCH_MEMORY_EVENTS events, default 2,000,000, from 8 concurrent appenders of 1000-event
 * appendStream calls, classic-level + real WAL with sync 'always' in a temp dir) for each N of
 * HEAP_LIMITS_MB from the smallest up, until one completes; then the scan of that store, the
 * same way; then both once with Node's default heap limit, for the RSS a long run reaches when V8
 * may grow its heap freely. Each run reports whether it completed and its peak RSS (anonymous
 * memory and mapped files apart, on Linux) and heap use. Results: bench/results/memory.json and a
 * Markdown table on stdout.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshDir, log, machine, removeDir, writeResults } from './support.js';
import type { Peak } from '../test/fixtures/memory-child.js';

const EVENTS = Number(process.env.BENCH_MEMORY_EVENTS ?? 2_000_000);
const HEAP_LIMITS_MB = [16, 24, 32, 40, 48, 64, 96, 128, 160, 256];

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.join(here, '..');
const childScript = path.join(repoRoot, 'test', 'fixtures', 'memory-child.ts');

interface PhaseReport {
  ms: number;
  peak: Peak;
}

interface Run {
  phases: 'load' | 'scan' | 'load+scan';
  heapLimitMB: number | 'default';
  completed: boolean;
  /** Why it did not complete: V8's out-of-heap error, or the tail of stderr. */
  failure: string | null;
  wallMs: number;
  load?: PhaseReport;
  scan?: PhaseReport;
}

function runChild(dir: string, phases: Run['phases'], heapLimitMB: Run['heapLimitMB']): Promise<Run> {
  const flags = heapLimitMB === 'default' ? [] : [`--max-old-space-size=${heapLimitMB}`];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, '--import', 'tsx', childScript, dir, String(EVENTS), phases], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - started;
      if (code === 0) {
        const report = JSON.parse(stdout) as { load?: PhaseReport; scan?: PhaseReport };
        resolve({ phases, heapLimitMB, completed: true, failure: null, wallMs, ...report });
        return;
      }
      const failure = /heap out of memory/.test(stderr) ? 'JavaScript heap out of memory' : stderr.trim().split('\n').slice(-3).join(' | ');
      resolve({ phases, heapLimitMB, completed: false, failure, wallMs });
    });
  });
}

const fmt = (value: number | undefined) => (value === undefined ? '' : value.toFixed(0));

function row(run: Run): string {
  const phase = run.phases === 'scan' ? run.scan : run.load;
  const scanPart = run.phases === 'load+scan' ? run.scan : undefined;
  const limit = run.heapLimitMB === 'default' ? 'default' : `${run.heapLimitMB}`;
  if (!run.completed) return `| ${run.phases} | ${limit} | no: ${run.failure} | | | | | |`;
  const peak = (select: (peak: Peak) => number) => fmt(Math.max(select(phase!.peak), scanPart ? select(scanPart.peak) : 0));
  const seconds = ((phase!.ms + (scanPart?.ms ?? 0)) / 1000).toFixed(1);
  return `| ${run.phases} | ${limit} | yes | ${seconds} | ${peak((p) => p.heapUsedMB)} | ${peak((p) => p.rssMB)} | ${peak((p) => p.rssAnonMB)} | ${peak((p) => p.rssFileMB)} |`;
}

async function smallestPassing(phases: 'load' | 'scan', dirFor: () => string): Promise<Run[]> {
  const runs: Run[] = [];
  for (const heapLimitMB of HEAP_LIMITS_MB) {
    const dir = dirFor();
    const run = await runChild(dir, phases, heapLimitMB);
    runs.push(run);
    log(`${phases} with a ${heapLimitMB} MiB heap: ${run.completed ? `completed in ${(run.wallMs / 1000).toFixed(1)} s` : `failed (${run.failure})`}`);
    if (run.completed) break;
  }
  return runs;
}

async function main(): Promise<void> {
  const started = performance.now();
  const root = freshDir('memorybench');
  try {
    let attempt = 0;
    let loaded = '';
    const loadRuns = await smallestPassing('load', () => {
      if (loaded !== '') removeDir(loaded);
      loaded = path.join(root, `load-${attempt++}`);
      return loaded;
    });
    if (!loadRuns.at(-1)!.completed) throw new Error(`no heap limit up to ${HEAP_LIMITS_MB.at(-1)} MiB completed the load`);
    const scanRuns = await smallestPassing('scan', () => loaded);
    removeDir(loaded);
    const both = await runChild(path.join(root, 'default'), 'load+scan', 'default');
    log(`load + scan with Node's default heap limit: ${both.completed ? 'completed' : `failed (${both.failure})`}`);
    const runs = [...loadRuns, ...scanRuns, both];

    const lines = [
      `Memory bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}; ${EVENTS.toLocaleString('en-US')} events, ` +
        '8 concurrent appendStream(1000 events) calls, then read(\'all\'); heap limit = --max-old-space-size (MiB); peaks in MiB.',
      '',
      '| phases | heap limit | completed | s | peak heap used | peak RSS | of it anonymous | of it mapped files |',
      '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
      ...runs.map(row),
    ];
    console.log(lines.join('\n'));
    const file = writeResults('memory', {
      ...machine(),
      config: { events: EVENTS, appenders: 8, appendEvents: 1000, heapLimitsMB: HEAP_LIMITS_MB, child: 'test/fixtures/memory-child.ts' },
      smallestHeapLimitMB: { load: loadRuns.at(-1)!.heapLimitMB, scan: scanRuns.at(-1)?.completed ? scanRuns.at(-1)!.heapLimitMB : null },
      runs,
      durationSec: (performance.now() - started) / 1000,
    });
    log(`wrote ${file} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    removeDir(root);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
