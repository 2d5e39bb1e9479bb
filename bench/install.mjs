/**
 * Installs bench/'s own dependencies (`npm ci` in bench/) when bench/node_modules is missing or
 * older than bench/package-lock.json. The root bench:* scripts run this first, so that the root
 * install never compiles better-sqlite3, which only the benchmarks use.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const benchDir = fileURLToPath(new URL('.', import.meta.url));
const mtimeMs = (file) => statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs;

// npm writes node_modules/.package-lock.json when an install completes: its age is the install's.
const installedMs = mtimeMs('node_modules/.package-lock.json');
const lockedMs = mtimeMs('package-lock.json');
if (installedMs === undefined || lockedMs === undefined || installedMs < lockedMs) {
  process.stderr.write('bench: installing bench/ dependencies (npm ci in bench/; building better-sqlite3 from source takes about a minute)\n');
  // npm is npm.cmd on Windows, which only a shell runs.
  const result = spawnSync('npm', ['ci'], { cwd: benchDir, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}
