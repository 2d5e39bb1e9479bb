/**
 * Installs bench/'s own dependencies (`npm ci` in bench/) when bench/node_modules is missing or
 * does not hold what bench/package-lock.json lists. The root bench:* scripts run this first, so that the root
 * install never compiles better-sqlite3, which only the benchmarks use.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const benchDir = fileURLToPath(new URL('.', import.meta.url));
const packagesOf = (file) => {
  try {
    return JSON.parse(readFileSync(new URL(file, import.meta.url), 'utf8')).packages ?? {};
  } catch {
    return undefined;
  }
};

// npm writes node_modules/.package-lock.json when an install completes: it lists what is
// installed. Compared by content, not age (a checkout's lock file is as new as the checkout).
const installed = packagesOf('node_modules/.package-lock.json');
const locked = packagesOf('package-lock.json');
const upToDate =
  installed !== undefined &&
  locked !== undefined &&
  Object.entries(locked).every(([name, entry]) => name === '' || entry.optional === true || installed[name]?.version === entry.version);
if (!upToDate) {
  process.stderr.write('bench: installing bench/ dependencies (npm ci in bench/; building better-sqlite3 from source takes about a minute)\n');
  // npm is npm.cmd on Windows, which only a shell runs.
  const result = spawnSync('npm', ['ci'], { cwd: benchDir, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}
