#!/usr/bin/env node
/**
 * The `factstore` command line (README, "Command line"). Exit codes: 0 ok, 1 failure, 2 usage
 * error. Data goes to stdout; errors (one line each) and progress bars to stderr.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isFactError } from '../index.js';
import { append } from './append.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, integerOption } from './common.js';
import { formatInfo, info } from './info.js';
import { backup, formatVerify, rebuildIndexes, restore, verify } from './maintenance.js';
import { read, type ReadCommandOptions } from './read.js';
import { exportLedger, importLedger } from './transfer.js';

/** Runs a command's work, turning a failure into one line on stderr and its exit code. */
function action<A extends unknown[]>(name: string, work: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await work(...args)) ?? EXIT_OK;
    } catch (error) {
      const exitCode = error instanceof CliError ? error.exitCode : EXIT_FAILURE;
      const message = error instanceof CliError ? error.message : isFactError(error) ? `${error.code}: ${error.message}` : String((error as Error).stack ?? error);
      process.stderr.write(`factstore: ${name}: ${message}\n`);
      process.exitCode = exitCode;
    }
  };
}

/** The package's version: package.json is two levels up from src/cli/ and from dist/cli/. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const json = (value: unknown) => process.stdout.write(JSON.stringify(value, null, 2) + '\n');
const progressOption = () => new Option('--progress', 'show a progress bar on stderr even when it is not a terminal');

export function program(): Command {
  const cli = new Command('factstore')
    .description('Look inside a factstore database, move events in and out, check it is intact.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`factstore: ${text}`) });

  cli
    .command('info')
    .description('head, counts, WAL segments and checkpoint, LevelDB size, consumers and their lag')
    .argument('<path>', 'database directory')
    .option('--counts', 'also count distinct event types and tags (reads the whole ledger)')
    .option('--json', 'machine-readable output')
    .action(
      action('info', async (path: string, options: { counts?: boolean; json?: boolean }) => {
        const report = await info(path, options);
        if (options.json) json(report);
        else process.stdout.write(formatInfo(report));
      }),
    );

  cli
    .command('read')
    .description('events of the whole ledger or one source as NDJSON on stdout')
    .argument('<path>', 'database directory')
    .option('--stream <id>', 'the events of one stream (--from is a stream position)')
    .option('--type <type>', 'events of one type')
    .option('--tag <tag>', 'events with one tag')
    .option('--category <category>', 'events of the streams "<category>-…"')
    .option('--query <json>', 'a DCB query: a JSON list of items [{"types":[…],"tags":[…],"data":{…}}]')
    .option('--from <n>', 'inclusive start position', integerOption(0))
    .option('--backward', 'newest first')
    .option('--limit <n>', 'at most n events', integerOption(1))
    .option('--follow', 'then tail live events until interrupted (Ctrl-C exits 0)')
    .action(action('read', (path: string, options: ReadCommandOptions) => read(path, options)));

  cli
    .command('append')
    .description('append events from stdin (a JSON array or NDJSON), atomically per batch of 1000')
    .argument('<path>', 'database directory (created when missing)')
    .option('--stream <id>', 'append to this stream')
    .option('--expect <version>', 'with --stream: any, none, exists, or the stream version it must have')
    .action(
      action('append', async (path: string, options: { stream?: string; expect?: string }) => {
        json(await append(path, options, process.stdin));
      }),
    );

  cli
    .command('export')
    .description('the whole ledger as NDJSON: every field, binary and other non-JSON values tagged (README)')
    .argument('<path>', 'database directory')
    .option('--out <file>', 'write to a file instead of stdout')
    .addOption(progressOption())
    .action(
      action('export', async (path: string, options: { out?: string; progress?: boolean }) => {
        const { count } = await exportLedger(path, options);
        if (options.out !== undefined) process.stderr.write(`exported ${count} events to ${options.out}\n`);
      }),
    );

  cli
    .command('import')
    .description('events of an export into an empty database (or one whose head is where the file continues)')
    .argument('<path>', 'database directory (created when missing)')
    .option('--in <file>', 'read from a file instead of stdin')
    .option('--resume', 'skip the events the database already holds (after an interrupted import)')
    .addOption(progressOption())
    .action(
      action('import', async (path: string, options: { in?: string; resume?: boolean; progress?: boolean }) => {
        json(await importLedger(path, options, process.stdin));
      }),
    );

  cli
    .command('backup')
    .description('a consistent copy of a database (itself a database), restorable with restore')
    .argument('<path>', 'database directory')
    .argument('<dest>', 'a new path (or an empty directory) for the backup')
    .addOption(progressOption())
    .action(
      action('backup', async (path: string, dest: string, options: { progress?: boolean }) => {
        const result = await backup(path, dest, options);
        process.stdout.write(`backed up the events through position ${result.position} to ${result.path} (${result.entries} LevelDB entries, ${result.bytes} bytes)\n`);
      }),
    );

  cli
    .command('restore')
    .description('copy a backup to a database path; an existing database is replaced only with --force')
    .argument('<backup>', 'a backup directory (written by backup)')
    .argument('<path>', 'database directory to restore to')
    .option('--force', 'replace the database at <path> (refused while it is open)')
    .action(
      action('restore', async (backupPath: string, path: string, options: { force?: boolean }) => {
        const result = await restore(backupPath, path, options);
        process.stdout.write(`restored the events through position ${result.position} to ${result.path}\n`);
      }),
    );

  cli
    .command('verify')
    .description('check WAL checksums, ledger contiguity and every index against a rebuild; exit 1 on problems')
    .argument('<path>', 'database directory')
    .option('--repair', 'rebuild the indexes when they are wrong, and report what changed')
    .option('--json', 'machine-readable output')
    .addOption(progressOption())
    .action(
      action('verify', async (path: string, options: { repair?: boolean; json?: boolean; progress?: boolean }) => {
        const outcome = await verify(path, options);
        if (options.json) json(outcome);
        else process.stdout.write(formatVerify(outcome));
        const ok = outcome.repair === null ? outcome.report.ok : outcome.repair.after.ok;
        return ok ? EXIT_OK : EXIT_FAILURE;
      }),
    );

  cli
    .command('rebuild-indexes')
    .description('rebuild every index from the ledger')
    .argument('<path>', 'database directory')
    .addOption(progressOption())
    .action(
      action('rebuild-indexes', async (path: string, options: { progress?: boolean }) => {
        const { events } = await rebuildIndexes(path, options);
        process.stdout.write(`rebuilt the indexes of ${events} events\n`);
      }),
    );
  return cli;
}

async function main(): Promise<void> {
  // A closed pipe (`factstore read db | head`) ends the output, not with an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT_OK);
    throw error;
  });
  try {
    await program().parseAsync(process.argv);
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    // --help and --version exit 0; everything else commander refuses is a usage error.
    process.exitCode = error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
}

await main();
