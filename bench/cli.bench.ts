/**
 * The command line's bulk paths (`npm run bench:cli`): `factstore export` and `factstore import`
 * of BENCH_CLI_EVENTS events (default 1,000,000), each run as the real command in a child process
 * (node dist/cli/main.js, the package's `factstore` bin; `npm run bench:cli` builds dist/ first),
 * timed from spawn to exit (startup included). The store is
 * loaded in 1000-event appends to 10 streams (2 tags, a small data object; every 100th event
 * carries bytes and a Date, so the tagged encoding is on the path). Checks that exporting the
 * imported database gives the same bytes. Results: bench/results/cli.json and a table on stdout.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { FactStore, type EventInput } from '../src/index.js';
import { diskBytes, fmtInt, freshDir, judge, log, machine, removeDir, targetTable, writeResults } from './support.js';

const EVENTS = Number(process.env.BENCH_CLI_EVENTS ?? 1_000_000);
const APPEND_EVENTS = 1000;
const STREAMS = 10;
const IMPORT_TARGET_EVENTS_PER_SECOND = 150_000;
const EXPORT_TARGET_EVENTS_PER_SECOND = 300_000;

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

function cli(args: string[]): number {
  const start = performance.now();
  const result = spawnSync(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`factstore ${args.join(' ')} exited with ${result.status}`);
  return performance.now() - start;
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

async function load(dir: string): Promise<void> {
  const db = await FactStore.open(dir);
  for (let first = 0; first < EVENTS; first += APPEND_EVENTS) {
    const events: EventInput[] = [];
    for (let n = first; n < Math.min(first + APPEND_EVENTS, EVENTS); n++) {
      const data: Record<string, unknown> = { n, name: `item-${n}`, amount: n % 997 };
      if (n % 100 === 0) Object.assign(data, { bytes: new Uint8Array([n & 255, 1, 2, 3]), at: new Date(1_700_000_000_000 + n) });
      events.push({ type: n % 3 === 0 ? 'ItemAdded' : 'ItemChanged', tags: [`item:${n % 5000}`, `shard:${n % 16}`], data });
    }
    await db.appendStream(`cart-${(first / APPEND_EVENTS) % STREAMS}`, events);
  }
  await db.close();
}

async function main(): Promise<void> {
  const work = freshDir('cli');
  try {
    const source = path.join(work, 'source');
    const loadStart = performance.now();
    await load(source);
    log(`loaded ${fmtInt(EVENTS)} events in ${fmtInt(performance.now() - loadStart)} ms`);
    const exported = path.join(work, 'export.ndjson');
    const exportMs = cli(['export', source, '--out', exported]);
    const target = path.join(work, 'imported');
    const importMs = cli(['import', target, '--in', exported]);
    const again = path.join(work, 'again.ndjson');
    cli(['export', target, '--out', again]);
    const identical = sha256(exported) === sha256(again);
    const exportPerSecond = EVENTS / (exportMs / 1000);
    const importPerSecond = EVENTS / (importMs / 1000);
    const targets = judge([
      { name: `export ≥ ${fmtInt(EXPORT_TARGET_EVENTS_PER_SECOND)} events/s (× target)`, measured: exportPerSecond / EXPORT_TARGET_EVENTS_PER_SECOND, unit: 'ratio', target: 1, kind: 'min' },
      { name: `import ≥ ${fmtInt(IMPORT_TARGET_EVENTS_PER_SECOND)} events/s (× target)`, measured: importPerSecond / IMPORT_TARGET_EVENTS_PER_SECOND, unit: 'ratio', target: 1, kind: 'min' },
    ]);
    const lines = [
      `factstore export / import of ${fmtInt(EVENTS)} events (child processes, startup included)`,
      '',
      '| command | ms | events/s |',
      '| --- | ---: | ---: |',
      `| export | ${fmtInt(exportMs)} | ${fmtInt(exportPerSecond)} |`,
      `| import | ${fmtInt(importMs)} | ${fmtInt(importPerSecond)} |`,
      '',
      `export of the imported database identical: ${identical ? 'yes' : 'NO'}; export file ${fmtInt(fs.statSync(exported).size)} B; ledger ${fmtInt(diskBytes(path.join(source, 'ledger')))} B → ${fmtInt(diskBytes(path.join(target, 'ledger')))} B`,
      '',
      ...targetTable(targets),
    ];
    console.log(lines.join('\n'));
    const file = writeResults('cli', {
      machine: machine(),
      events: EVENTS,
      export: { ms: exportMs, eventsPerSecond: exportPerSecond },
      import: { ms: importMs, eventsPerSecond: importPerSecond },
      identical,
      exportFileBytes: fs.statSync(exported).size,
      targets,
    });
    log(`results: ${file}`);
  } finally {
    removeDir(work);
  }
}

await main();
