#!/usr/bin/env node
/**
 * `npm run test:mutants`: applies each known durability bug (scripts/mutants-table.mjs) to a
 * scratch copy of the repository and runs the tests that must catch it. A mutant is
 *
 * - caught: its tests fail (what we want);
 * - survived: its tests pass; the suite misses this bug (exit 1, unless it is listed equivalent);
 * - error: the patched copy does not type-check, or its search string is not found exactly once
 *   (the table rotted when the code changed: fix the table; exit 1).
 *
 * Before the mutants, the same test files run once on an unpatched copy (the baseline): a test
 * that fails there would make every mutant look caught.
 *
 * Options: --only <id>[,<id>…] (repeatable), --tests <file>[,<file>…] (run these test files
 * instead of each mutant's own: which tests catch it?), --jobs <n> (default 1), --timeout <seconds> (per
 * run, default 300), --no-baseline, --no-typecheck, --keep (leave the scratch copies), --list,
 * --verbose (print the failing tests of each caught mutant).
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MUTANTS } from './mutants-table.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** What a scratch copy leaves out: git, build output, the bench package and its dependencies. */
const NOT_COPIED = new Set(['.git', 'node_modules', 'dist', 'bench', 'data', '.tmp']);
const DEFAULT_TIMEOUT_SECONDS = 300;
/** tsc's incremental state, from the baseline's type check: a mutant's then rechecks only what its edit touches. */
const TSC_BUILD_INFO = '.tmp/mutants.tsbuildinfo';
const TSC_ARGS = ['tsc', '--noEmit', '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', TSC_BUILD_INFO];
/** Printed output of a run kept for the report of an error (its end says why). */
const OUTPUT_TAIL_CHARS = 4000;

function parseArgs(argv) {
  const options = { only: [], tests: null, jobs: 1, timeoutSeconds: DEFAULT_TIMEOUT_SECONDS, baseline: true, typecheck: true, keep: false, list: false, verbose: false };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    const value = () => {
      const next = argv[++index];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--only') options.only.push(...value().split(',').filter((id) => id !== ''));
    else if (arg === '--tests') options.tests = value().split(',').filter((test) => test !== '');
    else if (arg === '--jobs') options.jobs = positiveInteger(arg, value());
    else if (arg === '--timeout') options.timeoutSeconds = positiveInteger(arg, value());
    else if (arg === '--no-baseline') options.baseline = false;
    else if (arg === '--no-typecheck') options.typecheck = false;
    else if (arg === '--keep') options.keep = true;
    else if (arg === '--list') options.list = true;
    else if (arg === '--verbose') options.verbose = true;
    else throw new Error(`unknown option ${arg} (see the comment at the top of scripts/mutants.mjs)`);
  }
  return options;
}

function positiveInteger(name, raw) {
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return value;
}

/** Checks the table itself: unique ids, every field present, test files that exist. */
function checkTable(mutants) {
  const ids = new Set();
  for (const mutant of mutants) {
    for (const field of ['id', 'description', 'file']) {
      if (typeof mutant[field] !== 'string') throw new Error(`mutant ${mutant.id ?? '?'}: ${field} must be a string`);
    }
    if (ids.has(mutant.id)) throw new Error(`mutant ${mutant.id} is listed twice`);
    ids.add(mutant.id);
    if ((mutant.edits === undefined) === (mutant.search === undefined)) throw new Error(`mutant ${mutant.id}: give either search and replace, or edits`);
    for (const edit of editsOf(mutant)) {
      if (typeof edit.search !== 'string' || typeof edit.replace !== 'string' || edit.search === '') throw new Error(`mutant ${mutant.id}: search and replace must be strings, search non-empty`);
      if (edit.search === edit.replace) throw new Error(`mutant ${mutant.id}: replace equals search`);
    }
    if (!Array.isArray(mutant.tests) || mutant.tests.length === 0) throw new Error(`mutant ${mutant.id}: tests must list the test files that catch it`);
    for (const test of mutant.tests) {
      if (!existsSync(join(ROOT, test))) throw new Error(`mutant ${mutant.id}: test file ${test} does not exist`);
    }
    if (mutant.testNamePattern !== undefined && typeof mutant.testNamePattern !== 'string') throw new Error(`mutant ${mutant.id}: testNamePattern must be a string`);
    if (mutant.equivalent !== undefined && (typeof mutant.equivalent !== 'string' || mutant.equivalent.length === 0)) {
      throw new Error(`mutant ${mutant.id}: equivalent must be the reason, as a string`);
    }
  }
}

function editsOf(mutant) {
  return mutant.edits ?? [{ search: mutant.search, replace: mutant.replace }];
}

/** The patched text, or the reason it cannot be patched. Each search must occur exactly once in the original. */
function patch(mutant, original) {
  let text = original;
  for (const [index, { search, replace }] of editsOf(mutant).entries()) {
    const which = mutant.edits === undefined ? 'search string' : `search string of edit ${index + 1}`;
    const first = original.indexOf(search);
    if (first === -1) return { error: `${which} not found in ${mutant.file}: ${JSON.stringify(search)}` };
    if (original.indexOf(search, first + 1) !== -1) return { error: `${which} found more than once in ${mutant.file}: ${JSON.stringify(search)}` };
    if (text.indexOf(search) === -1) return { error: `${which} overlaps an earlier edit` };
    text = text.replace(search, () => replace);
  }
  return { text };
}

/** A copy of the repository (without the heavy parts) with node_modules linked to the real one. */
function scratchCopy(label) {
  const dir = mkdtempSync(join(tmpdir(), `factstore-mutant-${label}-`));
  cpSync(ROOT, dir, { recursive: true, filter: (source) => !NOT_COPIED.has(relative(ROOT, source).split('/')[0]) });
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'), 'dir');
  return dir;
}

/** Runs a command in `cwd`; resolves with its exit code (null on timeout) and output. */
function run(command, args, cwd, env, timeoutSeconds) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const collect = (chunk) => {
      output += chunk.toString();
      if (output.length > 4 * OUTPUT_TAIL_CHARS) output = output.slice(-2 * OUTPUT_TAIL_CHARS);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The whole process group: vitest's workers too.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutSeconds * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: timedOut ? null : code, output: output.slice(-OUTPUT_TAIL_CHARS) });
    });
  });
}

/** The names of the failed tests in vitest's JSON report, or null when there is no report. */
function failedTests(reportPath, dir) {
  if (!existsSync(reportPath)) return null;
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  const failed = [];
  for (const file of report.testResults ?? []) {
    const name = relative(dir, file.name ?? '');
    const failing = (file.assertionResults ?? []).filter((test) => test.status === 'failed');
    for (const test of failing) failed.push(`${name} > ${test.fullName ?? test.title}`);
    // A file that failed without a failing test: it did not load or a hook failed.
    if (failing.length === 0 && file.status === 'failed') failed.push(`${name} (file failed: ${(file.message ?? '').split('\n')[0]})`);
  }
  return failed;
}

async function vitest(dir, tests, testNamePattern, env, timeoutSeconds, label) {
  const reportPath = join(dir, `.vitest-report-${label}.json`);
  const started = Date.now();
  const pattern = testNamePattern === undefined ? [] : ['--testNamePattern', testNamePattern];
  const result = await run('npx', ['vitest', 'run', '--reporter=dot', '--reporter=json', `--outputFile.json=${reportPath}`, ...pattern, ...tests], dir, { FACT_END_ON_FAILURE: '1', ...env }, timeoutSeconds);
  const ran = existsSync(reportPath) ? JSON.parse(readFileSync(reportPath, 'utf8')).numPassedTests ?? 0 : 0;
  return { ...result, seconds: (Date.now() - started) / 1000, failed: failedTests(reportPath, dir), passed: ran };
}

async function runMutant(mutant, options, buildInfo) {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  const source = readFileSync(join(ROOT, mutant.file), 'utf8');
  const patched = patch(mutant, source);
  if ('error' in patched) return { mutant, status: 'error', detail: patched.error, seconds: seconds() };
  const dir = scratchCopy(mutant.id);
  try {
    writeFileSync(join(dir, mutant.file), patched.text);
    if (options.typecheck) {
      if (buildInfo !== null) {
        mkdirSync(join(dir, dirname(TSC_BUILD_INFO)), { recursive: true });
        writeFileSync(join(dir, TSC_BUILD_INFO), buildInfo);
      }
      const tsc = await run('npx', TSC_ARGS, dir, {}, options.timeoutSeconds);
      if (tsc.code !== 0) return { mutant, status: 'error', detail: `the patched copy does not type-check:\n${tsc.output}`, seconds: seconds() };
    }
    const tests = await vitest(dir, mutant.tests, mutant.testNamePattern, mutant.env ?? {}, options.timeoutSeconds, 'mutant');
    if (tests.code === null) return { mutant, status: 'error', detail: `timed out after ${options.timeoutSeconds} s:\n${tests.output}`, seconds: seconds() };
    if (tests.code === 0 && tests.passed === 0) return { mutant, status: 'error', detail: 'no test ran: check tests and testNamePattern', seconds: seconds() };
    if (tests.code === 0) return { mutant, status: mutant.equivalent === undefined ? 'survived' : 'equivalent', detail: '', seconds: seconds() };
    if (tests.failed === null || tests.failed.length === 0) {
      return { mutant, status: 'error', detail: `vitest failed without a failing test (exit ${tests.code}):\n${tests.output}`, seconds: seconds() };
    }
    // An equivalent mutant that is caught means the reason given is wrong (or a test is flaky).
    return { mutant, status: mutant.equivalent === undefined ? 'caught' : 'error', detail: (mutant.equivalent === undefined ? '' : 'listed as equivalent, but caught by:\n') + tests.failed.join('\n'), seconds: seconds() };
  } finally {
    if (options.keep) console.log(`  (kept ${dir})`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The unpatched copy: it type-checks (its tsc state is returned for the mutants' checks) and the
 * mutants' test files pass, whole (a superset of what each mutant runs), grouped by environment.
 */
async function runBaseline(mutants, options) {
  const groups = new Map();
  for (const mutant of mutants) {
    const key = JSON.stringify(mutant.env ?? {});
    const group = groups.get(key) ?? { env: mutant.env ?? {}, tests: new Set() };
    for (const test of mutant.tests) group.tests.add(test);
    groups.set(key, group);
  }
  const dir = scratchCopy('baseline');
  try {
    let buildInfo = null;
    if (options.typecheck) {
      const tsc = await run('npx', TSC_ARGS, dir, {}, options.timeoutSeconds);
      if (tsc.code !== 0) throw new Error(`baseline: the unpatched copy does not type-check:\n${tsc.output}`);
      buildInfo = readFileSync(join(dir, TSC_BUILD_INFO));
    }
    let index = 0;
    for (const { env, tests } of groups.values()) {
      const result = await vitest(dir, [...tests], undefined, env, options.timeoutSeconds * 2, `baseline-${index++}`);
      const where = `${[...tests].join(' ')}${Object.keys(env).length > 0 ? ` with ${JSON.stringify(env)}` : ''}`;
      if (result.code !== 0) {
        const failed = result.failed?.join('\n') ?? '';
        throw new Error(`baseline: the tests fail without any mutant (${where}); fix them first:\n${failed || result.output}`);
      }
      console.log(`baseline: ${tests.size} test files pass unpatched (${result.seconds.toFixed(0)} s)`);
    }
    return buildInfo;
  } finally {
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  }
}

function printTable(results) {
  const testsOf = (mutant) => mutant.tests.join(', ') + (mutant.testNamePattern === undefined ? '' : ` -t ${JSON.stringify(mutant.testNamePattern)}`);
  const rows = results.map(({ mutant, status, seconds }) => [mutant.id, status, `${seconds.toFixed(0)} s`, mutant.equivalent === undefined ? testsOf(mutant) : `equivalent: ${mutant.equivalent}`]);
  const header = ['mutant', 'status', 'time', 'tests (or why equivalent)'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (column === 3 ? 0 : row[column].length))));
  const line = (row) => row.map((cell, column) => (column === 3 ? cell : cell.padEnd(widths[column]))).join('  ');
  console.log('');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  checkTable(MUTANTS);
  const unknown = options.only.filter((id) => !MUTANTS.some((mutant) => mutant.id === id));
  if (unknown.length > 0) throw new Error(`no mutant ${unknown.join(', ')}; --list shows them`);
  const chosen = options.only.length > 0 ? MUTANTS.filter((mutant) => options.only.includes(mutant.id)) : MUTANTS;
  const mutants = options.tests === null ? chosen : chosen.map((mutant) => ({ ...mutant, tests: options.tests }));
  if (options.list) {
    for (const mutant of mutants) console.log(`${mutant.id}: ${mutant.description} (${mutant.file})`);
    return 0;
  }
  const started = Date.now();
  const buildInfo = options.baseline ? await runBaseline(mutants, options) : null;
  const results = new Array(mutants.length);
  let next = 0;
  const worker = async () => {
    while (next < mutants.length) {
      const index = next++;
      const mutant = mutants[index];
      const result = await runMutant(mutant, options, buildInfo);
      results[index] = result;
      console.log(`${mutant.id}: ${result.status} (${result.seconds.toFixed(0)} s)`);
      if (result.status === 'error' || (result.status === 'caught' && options.verbose)) console.log(result.detail.replace(/^/gm, '    '));
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.jobs, mutants.length) }, worker));
  printTable(results);
  const count = (status) => results.filter((result) => result.status === status).length;
  console.log(
    `\n${count('caught')} caught, ${count('survived')} survived, ${count('equivalent')} equivalent, ${count('error')} errors; ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  return count('survived') + count('error') > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
