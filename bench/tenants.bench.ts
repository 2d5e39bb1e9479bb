/**
 * Many small databases in one process (`npm run bench:tenants`): one database per tenant or per
 * test pays its creation cost and its disk footprint many times (issue 11).
 *
 * BENCH_TENANTS (default 200) fresh databases are opened one after another in one process and
 * kept open; each gets one appendStream of one event. Measured per database: the time of
 * FactStore.open on a fresh path (the target), of the first append, and of open + append +
 * close; the file descriptors an open database holds (entries of /proc/self/fd, Linux only,
 * before and after all are open); and after closing, its bytes on disk, both as file sizes and
 * as allocated blocks (du). Results: bench/results/tenants.json and a Markdown table on stdout.
 * A missed target is printed, never turned into a failing exit code.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FactStore } from '../src/index.js';
import { diskBytes, fmtInt, fmtMs, freshDir, judge, latency, log, machine, median, removeDir, targetTable, writeResults } from './support.js';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 200);
const CREATE_MS_TARGET = 10;
const DISK_BYTES_TARGET = 1024 * 1024;

/** Allocated bytes under a directory (st_blocks × 512, what du counts). */
function allocatedBytes(target: string): number {
  const stat = fs.statSync(target, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return stat.blocks * 512;
  return fs.readdirSync(target).reduce((sum, name) => sum + allocatedBytes(path.join(target, name)), 0);
}

function openFds(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return Number.NaN;
  }
}

const mean = (values: readonly number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;

async function main(): Promise<void> {
  const loadAtStart = os.loadavg()[0]!;
  const root = freshDir('tenants');
  const openMs: number[] = [];
  const appendMs: number[] = [];
  const closeMs: number[] = [];
  const stores: FactStore[] = [];
  try {
    // Warm-up: the first open loads modules and the native addon; not a tenant.
    const warm = await FactStore.open(path.join(root, 'warm-up'));
    await warm.appendStream('tenant-warm-up', { type: 'TenantCreated', data: { name: 'warm-up' } }, { expect: 'none' });
    await warm.close();
    removeDir(path.join(root, 'warm-up'));

    const fdsBefore = openFds();
    for (let index = 0; index < TENANTS; index++) {
      const started = performance.now();
      const db = await FactStore.open(path.join(root, `tenant-${index}`));
      const opened = performance.now();
      await db.appendStream(`tenant-${index}`, { type: 'TenantCreated', data: { name: `tenant ${index}`, plan: 'free' } }, { expect: 'none' });
      appendMs.push(performance.now() - opened);
      openMs.push(opened - started);
      stores.push(db);
    }
    const fdsPerDatabase = (openFds() - fdsBefore) / TENANTS;
    for (const db of stores.splice(0)) {
      const started = performance.now();
      await db.close();
      closeMs.push(performance.now() - started);
    }
    const sizes = Array.from({ length: TENANTS }, (_, index) => diskBytes(path.join(root, `tenant-${index}`)));
    const allocated = Array.from({ length: TENANTS }, (_, index) => allocatedBytes(path.join(root, `tenant-${index}`)));
    const files = fs
      .readdirSync(path.join(root, 'tenant-0'), { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => {
        const file = path.join(entry.parentPath, entry.name);
        return { file: path.relative(path.join(root, 'tenant-0'), file), bytes: fs.statSync(file).size, allocatedBytes: allocatedBytes(file) };
      });
    const createMs = openMs.map((ms, index) => ms + appendMs[index]! + closeMs[index]!);

    const open = { ...latency(openMs), meanMs: mean(openMs) };
    const create = { ...latency(createMs), meanMs: mean(createMs) };
    const append = { ...latency(appendMs), meanMs: mean(appendMs) };
    const close = { ...latency(closeMs), meanMs: mean(closeMs) };
    const disk = { bytes: median(sizes), allocatedBytes: median(allocated), maxAllocatedBytes: Math.max(...allocated) };
    const targets = judge([
      { name: `FactStore.open of a fresh path, p50 < ${CREATE_MS_TARGET} ms`, measured: open.p50Ms, unit: 'ms', target: CREATE_MS_TARGET, kind: 'max' },
      { name: `FactStore.open of a fresh path, mean < ${CREATE_MS_TARGET} ms`, measured: open.meanMs, unit: 'ms', target: CREATE_MS_TARGET, kind: 'max' },
      {
        name: 'disk per database after one event < 1 MiB (allocated, median)',
        measured: disk.allocatedBytes,
        unit: 'bytes',
        target: DISK_BYTES_TARGET,
        kind: 'max',
      },
      { name: 'disk per database after one event < 1 MiB (file sizes, median)', measured: disk.bytes, unit: 'bytes', target: DISK_BYTES_TARGET, kind: 'max' },
    ]);
    const row = (name: string, l: { p50Ms: number; p99Ms: number; meanMs: number }) => `| ${name} | ${fmtMs(l.p50Ms)} | ${fmtMs(l.meanMs)} | ${fmtMs(l.p99Ms)} |`;
    const lines = [
      `Tenants bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${machine().cpu.model} × ${machine().cpu.count}; ` +
        `${TENANTS} fresh databases in one process, FactStore defaults (WAL sync 'always'), one 1-event appendStream each; ` +
        `1-min load average ${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end.`,
      '',
      '| per database | p50 ms | mean ms | p99 ms |',
      '| --- | ---: | ---: | ---: |',
      row('FactStore.open (fresh path)', open),
      row('first appendStream (1 event)', append),
      row('close', close),
      row('open + append + close', create),
      '',
      `Disk per database after one event (median): ${fmtInt(disk.bytes)} B in file sizes, ${fmtInt(disk.allocatedBytes)} B allocated ` +
        `(max ${fmtInt(disk.maxAllocatedBytes)} B). File descriptors per open database: ${Number.isFinite(fdsPerDatabase) ? fdsPerDatabase.toFixed(1) : '–'}.`,
      '',
      'Files of one database:',
      '',
      '| file | bytes | allocated |',
      '| --- | ---: | ---: |',
      ...files.map((f) => `| ${f.file} | ${fmtInt(f.bytes)} | ${fmtInt(f.allocatedBytes)} |`),
      '',
      ...targetTable(targets),
    ];
    const file = writeResults('tenants', {
      machine: machine(),
      tenants: TENANTS,
      openMs: open,
      appendMs: append,
      closeMs: close,
      createMs: create,
      fdsPerDatabase,
      diskPerDatabase: disk,
      files,
      targets,
    });
    console.log(lines.join('\n'));
    log(`results: ${file}`);
  } finally {
    for (const db of stores) await db.close().catch(() => undefined);
    removeDir(root);
  }
}

await main();
